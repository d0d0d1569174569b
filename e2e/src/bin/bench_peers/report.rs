//! The markdown report: the table beside the anchor, notes per round, the verdicts.

use crate::trace::Traced;
use crate::weft::{ChangeSample, WeftRound};
use crate::{Args, ScenarioResult, CONVERGENCE_TIMEOUT, POLL, TARGET_CONVERGENCE, TARGET_RSS_KIB};
use std::fmt::Write as _;
use std::time::Duration;
use weft_e2e::bench::{
    self, median, mib_text, ratio, report_header, time, tool_version, verdict, Table, NONE,
};

pub(crate) fn machine_facts(args: &Args) -> Vec<String> {
    let (mut facts, profile) = bench::machine_facts("bench_peers");
    facts.extend([
        format!(
            "weftd build profile: {profile}; anchor: {}, {}",
            tool_version("ip", "-V"),
            tool_version("nft", "--version")
        ),
        format!(
            "{} peers, {} rounds (weft and anchor interleaved), {} timed changes per round; \
             weftd --mode dual --ipv6-routing direct --resync-seconds 3600; state under {}",
            args.peers,
            args.rounds,
            args.changes,
            std::env::temp_dir().display()
        ),
    ]);
    facts
}

pub(crate) fn render(args: &Args, facts: &[String], results: &[ScenarioResult]) -> String {
    let n = args.peers;
    let mut out = report_header(
        &format!("Peer-scale convergence: weftd vs ip -batch + bridge -batch ({n} peers)"),
        facts,
    );
    writeln!(
        out,
        "- per peer: IPv4 route + permanent neighbour + permanent FDB entry on weft-vxlan, \
         IPv6 route via the peer's underlay (4 kernel objects); per node: weftd's nftables \
         tables (egress NAT in `ip weft-nat`, untracked tunnel packets in `inet weft`), \
         which name no peer\n"
    )
    .unwrap();
    let mut table = Table::new([
        "scenario",
        "weft",
        "anchor (ip -batch + bridge -batch)",
        "ratio",
        "anchor + nft -f",
        "ratio",
    ]);
    let mut verdicts = Vec::new();
    let mut notes = String::new();
    for r in results {
        rows(&mut table, n, r);
        render_notes(&mut notes, r);
        if !args.anchor_only {
            verdicts.extend(scenario_verdicts(n, r));
        }
    }
    write!(out, "{table}").unwrap();
    writeln!(
        out,
        "\nweft's times are wall-clock from the outside, resolved to the {} ms /metrics poll; \
         ratios are weft / anchor (lower is better for weft). A peer change touches no \
         nftables on either side, so its anchor + nft -f is the batches alone.\n",
        POLL.as_millis()
    )
    .unwrap();
    writeln!(out, "Notes:\n\n{notes}").unwrap();
    if !verdicts.is_empty() {
        writeln!(out, "Targets:\n").unwrap();
        for v in verdicts {
            writeln!(out, "- {v}").unwrap();
        }
    }
    out
}

/// weft over the anchor, `—` where either is missing.
fn ratio_of(a: Option<Duration>, b: Option<Duration>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if !b.is_zero() => ratio(a.as_secs_f64() / b.as_secs_f64(), 2),
        _ => NONE.into(),
    }
}

/// Median of weftd's own incremental passes over `rounds`.
fn median_pass<'a>(rounds: impl Iterator<Item = &'a WeftRound>) -> Option<Duration> {
    median(rounds.flat_map(|w| &w.changes).map(|c| c.pass).collect())
}

/// Kernel change events per peer change.
fn per_change(events: usize, changes: usize) -> String {
    if changes == 0 {
        "—".to_owned()
    } else {
        format!("{:.1}", events as f64 / changes as f64)
    }
}

fn rows(table: &mut Table, n: u32, r: &ScenarioResult) {
    let label = r.underlay.label();
    let converge = median(r.weft.iter().filter_map(|w| w.converge).collect());
    let full_pass = median(
        r.weft
            .iter()
            .filter(|w| w.converge.is_some() && w.full_passes.0 > 0.0)
            .map(|w| Duration::from_secs_f64(w.full_passes.1 / w.full_passes.0))
            .collect(),
    );
    let install = median(r.anchor.iter().map(|a| a.install).collect());
    let install_nft = median(r.anchor.iter().map(|a| a.install + a.nft).collect());
    let rounds = r.weft.len().max(r.anchor.len());
    table.row([
        format!("{n} peers from empty, {label}: spawn to all programmed (median of {rounds})"),
        time(converge),
        time(install),
        ratio_of(converge, install),
        time(install_nft),
        ratio_of(converge, install_nft),
    ]);
    table.row([
        "… of which weftd's full convergence pass (its metric)".into(),
        time(full_pass),
    ]);
    let samples: Vec<&ChangeSample> = r.weft.iter().flat_map(|w| &w.changes).collect();
    let wall = median(samples.iter().map(|s| s.wall).collect());
    let pass = median_pass(r.weft.iter());
    let a_change = median(r.anchor.iter().flat_map(|a| a.changes.clone()).collect());
    table.row([
        format!(
            "one peer change, {label}: rename to converged (incl. weftd's ~250 ms file poll; \
             median of {})",
            samples.len()
        ),
        time(wall),
    ]);
    table.row([
        "… of which weftd's incremental pass (its metric) vs the same change as batches".into(),
        time(pass),
        time(a_change),
        ratio_of(pass, a_change),
        time(a_change),
        ratio_of(pass, a_change),
    ]);
    if let Some(small) = &r.small {
        table.row([
            format!(
                "… weftd's incremental pass with {} peers instead (O(1): about the same)",
                r.small_n
            ),
            time(median_pass(std::iter::once(small))),
        ]);
    }
    let (weft_events, anchor_events) = events_per_change(r);
    table.row([
        format!("kernel change events per peer change, {label}"),
        weft_events,
        anchor_events,
    ]);
    let hwm = r.weft.iter().map(|w| w.rss_hwm_kib).max().unwrap_or(0);
    table.row([
        format!("weftd peak RSS (VmHWM, max over rounds), {label}"),
        mib_text(hwm),
        format!("target {}", mib_text(TARGET_RSS_KIB)),
    ]);
}

/// (kernel change events, peer changes) over every round: weft's, the anchor's.
fn event_totals(r: &ScenarioResult) -> [(usize, usize); 2] {
    [
        (
            r.weft.iter().map(|w| w.events).sum(),
            r.weft.iter().map(|w| w.changes.len()).sum(),
        ),
        (
            r.anchor.iter().map(|a| a.events).sum(),
            r.anchor.iter().map(|a| a.changes.len()).sum(),
        ),
    ]
}

/// Kernel change events per peer change: (weft's, the anchor's).
fn events_per_change(r: &ScenarioResult) -> (String, String) {
    let [(weft_events, weft_changes), (anchor_events, anchor_changes)] = event_totals(r);
    (
        per_change(weft_events, weft_changes),
        per_change(anchor_events, anchor_changes),
    )
}

fn render_notes(notes: &mut String, r: &ScenarioResult) {
    let label = r.underlay.label();
    let rounds = r
        .weft
        .iter()
        .enumerate()
        .map(|(i, w)| (format!("weft round {}", i + 1), w))
        .chain(
            r.small
                .iter()
                .map(|w| (format!("weft with {} peers", r.small_n), w)),
        );
    for (name, w) in rounds {
        let kinds: Vec<&str> = w.changes.iter().map(|c| c.kind).collect();
        let kernel_ok = w.changes.iter().all(|c| c.kernel_ok);
        writeln!(
            notes,
            "- {label}, {name}: converged in {}; kernel: {}; full passes {} ({:.3} s total); \
             {} changes, passes of kind {:?}, kernel right after each: {}; VmHWM {}, VmRSS {}; \
             weft_convergence_errors_total {}; {} WARN/ERROR log lines{}",
            time(w.converge),
            w.counts,
            w.full_passes.0,
            w.full_passes.1,
            w.changes.len(),
            kinds,
            kernel_ok,
            mib_text(w.rss_hwm_kib),
            mib_text(w.rss_kib),
            w.errors_total,
            w.complaints.len(),
            w.complaints
                .first()
                .map(|c| format!(" (first: {c})"))
                .unwrap_or_default()
        )
        .unwrap();
        if let Some(f) = &w.failure {
            writeln!(notes, "  - FAILURE: {}", f.replace('\n', "\n    ")).unwrap();
        }
        if let Some(t) = w.traced {
            writeln!(
                notes,
                "  - one more change under strace: weftd's rtnetlink: {}; its children (nft): \
                 {}; a dump of this node's routes, neighbours and FDB receives {} B",
                t.own, t.children, t.dump_bytes
            )
            .unwrap();
        }
    }
    let weft_ruleset = r.weft.iter().map(|w| &w.ruleset).find(|t| !t.is_empty());
    for (i, a) in r.anchor.iter().enumerate() {
        let same = match weft_ruleset {
            Some(w) if *w == a.ruleset => "the same as weftd's",
            Some(_) => "DIFFERENT from weftd's",
            None => "not compared (no weft round converged)",
        };
        writeln!(
            notes,
            "- {label}, anchor round {}: ip + bridge batches {}, nft -f {}; kernel: {}; \
             nftables ruleset {same}",
            i + 1,
            time(Some(a.install)),
            time(Some(a.nft)),
            a.counts
        )
        .unwrap();
    }
}

/// Twice the small cluster's, plus slack for a longer name or address.
fn same_order(large: u64, small: u64) -> bool {
    large <= 2 * small + 4096
}

fn scenario_verdicts(n: u32, r: &ScenarioResult) -> Vec<String> {
    let label = r.underlay.label();
    let all_converged = !r.weft.is_empty() && r.weft.iter().all(|w| w.converge.is_some());
    let worst = r.weft.iter().filter_map(|w| w.converge).max();
    let hwm = r.weft.iter().map(|w| w.rss_hwm_kib).max().unwrap_or(0);
    let mut verdicts = vec![
        format!(
            "{label}: {n} peers from empty <= {}: worst of {} rounds {}{} -> {}",
            time(Some(TARGET_CONVERGENCE)),
            r.weft.len(),
            time(worst),
            if all_converged {
                String::new()
            } else {
                format!(
                    " (a round did not converge within {} s; later rounds were not run)",
                    CONVERGENCE_TIMEOUT.as_secs()
                )
            },
            verdict(all_converged && worst.is_some_and(|w| w <= TARGET_CONVERGENCE))
        ),
        format!(
            "{label}: weftd RSS <= {}: peak {} -> {}",
            mib_text(TARGET_RSS_KIB),
            mib_text(hwm),
            verdict(hwm > 0 && hwm <= TARGET_RSS_KIB)
        ),
    ];
    let samples: Vec<&ChangeSample> = r.weft.iter().flat_map(|w| &w.changes).collect();
    let incremental = !samples.is_empty() && samples.iter().all(|s| s.kind == "incremental");
    let kernel_ok = !samples.is_empty() && samples.iter().all(|s| s.kernel_ok);
    // The same change made by hand emits a handful of events; a resync would emit
    // thousands. Allow twice the anchor's (weftd may replace where the anchor adds).
    let [(weft_events, weft_changes), (anchor_events, anchor_changes)] = event_totals(r);
    let few_events = weft_changes > 0
        && anchor_changes > 0
        && weft_events * anchor_changes <= 2 * anchor_events * weft_changes;
    // Netlink bytes of one change with N peers against N/10 peers.
    let large: Vec<Traced> = r.weft.iter().filter_map(|w| w.traced).collect();
    let small = r.small.as_ref().and_then(|w| w.traced);
    let (own_same, children_same, bytes) = match (large.first(), small) {
        (Some(l), Some(s)) => (
            large
                .iter()
                .all(|l| same_order(l.own.bytes(), s.own.bytes())),
            large
                .iter()
                .all(|l| same_order(l.children.bytes(), s.children.bytes())),
            format!(
                "weftd's rtnetlink {} B at {n} vs {} B at {}; nft's {} B vs {} B",
                l.own.bytes(),
                s.own.bytes(),
                r.small_n,
                l.children.bytes(),
                s.children.bytes()
            ),
        ),
        _ => (false, false, "no traced change to compare".to_owned()),
    };
    // weftd's own incremental pass with N peers against N/10 (plus slack for noise).
    let pass_large = median_pass(r.weft.iter());
    let pass_small = r
        .small
        .as_ref()
        .and_then(|w| median_pass(std::iter::once(w)));
    let pass_same = match (pass_large, pass_small) {
        (Some(l), Some(s)) => l <= s * 2 + Duration::from_millis(10),
        _ => false,
    };
    let events = events_per_change(r);
    verdicts.push(format!(
        "{label}: one peer change is O(1) work: incremental passes only ({incremental}), \
         kernel right after each ({kernel_ok}), {} kernel events per change vs the anchor's {} \
         ({few_events}); independent of the peer count: netlink bytes of weftd itself \
         ({own_same}) and of nft ({children_same}) [{bytes}], weftd's incremental pass \
         ({pass_same}) [{} at {n} vs {} at {}] -> {}",
        events.0,
        events.1,
        time(pass_large),
        time(pass_small),
        r.small_n,
        verdict(incremental && kernel_ok && few_events && own_same && children_same && pass_same)
    ));
    verdicts
}
