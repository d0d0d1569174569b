//! The report: one markdown table per measurement, weft beside its anchor as a ratio.

use crate::admission::AddResults;
use crate::enforcement::{Change, Sample};
use crate::fleet::Fleet;
use crate::throughput::Rates;
use crate::watches::{Design, Snapshot};
use std::time::Duration;
use weft_e2e::bench::{median, median_f64, percentile, ratio, report_header, time, verdict, Table};

const TARGET_P99: Duration = Duration::from_secs(1);
const TARGET_ADD_RATIO: f64 = 1.2;
const TARGET_THROUGHPUT: f64 = 0.95;
const APPLY: &str = "weft_policy_apply_duration_seconds";

/// A histogram's (count, sum).
pub(crate) type Histogram = (f64, f64);

/// Each node's `weft_policy_apply_duration_seconds`.
pub(crate) fn apply_histograms(fleet: &Fleet) -> Vec<Histogram> {
    fleet
        .topology
        .nodes
        .iter()
        .map(|n| n.metrics().unwrap_or_default().histogram(APPLY, ""))
        .collect()
}

pub(crate) struct Inputs<'a> {
    pub(crate) facts: &'a [String],
    pub(crate) samples: &'a [Sample],
    pub(crate) apply: (&'a [Histogram], &'a [Histogram]),
    pub(crate) watch_names: Vec<(String, Design)>,
    pub(crate) watch_phases: [(&'static str, Snapshot); 3],
    pub(crate) change_time: Duration,
    pub(crate) adds: &'a AddResults,
    pub(crate) rates: &'a Rates,
}

pub(crate) fn render(inputs: &Inputs<'_>) -> String {
    let mut out = report_header("bench_policy: NetworkPolicy at scale", inputs.facts);
    out.push_str(&enforcement_table(inputs));
    out.push_str(&add_table(inputs.adds));
    if !inputs.rates.is_empty() {
        out.push_str(&throughput_table(inputs.rates));
    }
    out.push_str(&watch_table(inputs));
    out
}

fn latency_row(table: &mut Table, label: &str, samples: &[&Sample]) {
    let done: Vec<Duration> = samples.iter().filter_map(|s| s.latency).collect();
    let missed = samples.len() - done.len();
    if done.is_empty() {
        table.row([label.to_owned(), samples.len().to_string(), "—".into()]);
        return;
    }
    let p99 = percentile(&done, 99);
    table.row([
        label.to_owned(),
        samples.len().to_string(),
        time(median(done.clone())),
        time(Some(p99)),
        time(done.iter().max().copied()),
        missed.to_string(),
        ratio(p99.as_secs_f64() / TARGET_P99.as_secs_f64(), 2),
        verdict(missed == 0 && p99 <= TARGET_P99).into(),
    ]);
}

fn enforcement_table(inputs: &Inputs<'_>) -> String {
    let mut table = Table::new([
        "change (pairs × changes)",
        "samples",
        "p50",
        "p99",
        "max",
        "not enforced in 30 s",
        "p99 / 1 s target",
        "target p99 ≤ 1 s",
    ]);
    let all: Vec<&Sample> = inputs.samples.iter().collect();
    latency_row(&mut table, "all", &all);
    let mut kinds: Vec<Change> = inputs.samples.iter().map(|s| s.change).collect();
    kinds.sort();
    kinds.dedup();
    for kind in kinds {
        let of: Vec<&Sample> = all.iter().copied().filter(|s| s.change == kind).collect();
        latency_row(&mut table, kind.name(), &of);
    }
    for (direction, allowed) in [("→ allowed", true), ("→ denied", false)] {
        let of: Vec<&Sample> = all
            .iter()
            .copied()
            .filter(|s| s.allowed == allowed)
            .collect();
        latency_row(&mut table, direction, &of);
    }
    for (family, v6) in [("IPv4 pairs", false), ("IPv6 pairs", true)] {
        let of: Vec<&Sample> = all.iter().copied().filter(|s| s.ipv6 == v6).collect();
        latency_row(&mut table, family, &of);
    }
    let mut apply = Table::new([
        "node",
        "policy passes that changed the kernel",
        "mean pass",
        "passes per change",
    ]);
    let changes = (inputs.samples.len() / inputs.apply.0.len().max(1)).max(1) as f64;
    for (i, (before, after)) in inputs.apply.0.iter().zip(inputs.apply.1).enumerate() {
        let (count, sum) = (after.0 - before.0, after.1 - before.1);
        apply.row([
            format!("node-{}", i + 1),
            format!("{count:.0}"),
            time((count > 0.0).then(|| Duration::from_secs_f64(sum / count))),
            ratio(count / changes, 2),
        ]);
    }
    format!(
        "### Change → enforcement\n\nLatency = the write's response (kubectl returned) → the \
         first probe of the new verdict that then held ({} pairs, one client per node probing \
         a server on the next node; SYNs every few ms). Anchor: Cilium publishes ≤ 600 ms per \
         endpoint. Change phase took {:.0} s.\n\n{table}\n\
         Cross-check, weftd's `{APPLY}` over the change phase (includes background passes):\n\n{apply}\n",
        inputs.apply.0.len(),
        inputs.change_time.as_secs_f64()
    )
}

fn add_table(adds: &AddResults) -> String {
    let mut table = Table::new([
        "scenario",
        "call",
        "policed p50 / p99",
        "unpoliced p50 / p99",
        "same pods p50 / p99",
        "standalone p50 / p99",
        "policed / unpoliced (p50)",
        "policed / same pods (p50)",
        "policed / standalone (p50)",
        "per round: / unpoliced",
        "per round: / same pods",
        "target ≤ 1.2×",
    ]);
    // One entry per round, in round order.
    let rounds = |label: &str, scenario: &str, call: &str| -> Vec<Vec<Duration>> {
        adds.latencies
            .iter()
            .filter(|l| l.0 == label && l.1 == scenario && l.2 == call)
            .map(|l| l.3.clone())
            .collect()
    };
    let cell = |s: &[Duration]| {
        format!(
            "{} / {}",
            time(median(s.to_vec())),
            time(Some(percentile(s, 99)))
        )
    };
    let mid = |s: &[Duration]| median(s.to_vec()).unwrap().as_secs_f64();
    // Each round's p50 ratio, its subjects a few seconds apart: the VM's drift over the
    // run cancels out of the pair. Median (min–max) of the rounds.
    let paired = |a: &[Vec<Duration>], b: &[Vec<Duration>]| -> (f64, String) {
        let each: Vec<f64> = a.iter().zip(b).map(|(a, b)| mid(a) / mid(b)).collect();
        let (low, high) = each
            .iter()
            .fold((f64::MAX, f64::MIN), |(l, h), r| (l.min(*r), h.max(*r)));
        let middle = median_f64(each.iter().copied());
        (
            middle,
            format!(
                "{} ({}–{})",
                ratio(middle, 2),
                ratio(low, 2),
                ratio(high, 2)
            ),
        )
    };
    for scenario in ["sequential", "parallel"] {
        for call in ["ADD", "DEL"] {
            let [p, u, f, s] = ["policed", "unpoliced", "same pods", "standalone"]
                .map(|label| rounds(label, scenario, call));
            if [&p, &u, &f, &s].iter().any(|r| r.is_empty()) {
                continue;
            }
            let [pp, up, fp, sp] = [&p, &u, &f, &s].map(|r| r.concat());
            let (by_unpoliced, by_unpoliced_cell) = paired(&p, &u);
            let (by_same, by_same_cell) = paired(&p, &f);
            // Policy's cost: against the same weftd without policies and against a
            // node as populated without the engine (an empty node is shown, not judged),
            // round by round.
            let worst = by_unpoliced.max(by_same);
            table.row([
                scenario.to_owned(),
                call.to_owned(),
                cell(&pp),
                cell(&up),
                cell(&fp),
                cell(&sp),
                ratio(mid(&pp) / mid(&up), 2),
                ratio(mid(&pp) / mid(&fp), 2),
                ratio(mid(&pp) / mid(&sp), 2),
                by_unpoliced_cell,
                by_same_cell,
                verdict(worst <= TARGET_ADD_RATIO).into(),
            ]);
        }
    }
    let steady = rounds("policed", "sequential", "ADD").concat();
    let mut fresh = Table::new([
        "ADD of a policed pod",
        "n",
        "p50",
        "p99",
        "max",
        "× steady p50",
    ]);
    if !adds.fresh.is_empty() && !steady.is_empty() {
        for (label, s) in [
            ("steady (entry present)", &steady),
            ("right after Pod create", &adds.fresh),
        ] {
            fresh.row([
                label.to_owned(),
                s.len().to_string(),
                time(median(s.clone())),
                time(Some(percentile(s, 99))),
                time(s.iter().max().copied()),
                ratio(mid(s) / mid(&steady), 2),
            ]);
        }
    }
    let mean = |(count, sum): (f64, f64)| {
        format!(
            "{count:.0} waits, mean {}",
            time((count > 0.0).then(|| Duration::from_secs_f64(sum / count)))
        )
    };
    let (fresh_wait, steady_ready, steady_unisolated) = (
        mean(adds.fresh_wait),
        mean(adds.steady_waits[0]),
        mean(adds.steady_waits[1]),
    );
    let cpu = cpu_table(adds);
    format!(
        "### Pod ADD with policy against without\n\n`policed`: Kubernetes-mode weftd, a namespace \
         with policies selecting the pod, its WeftNodePolicy entry already present; `unpoliced`: \
         the same weftd, a namespace without policies; `same pods`: a weftd with no policy \
         engine holding as many other pods as the policed node (the node without \
         NetworkPolicy, judged against the target); `standalone`: such a weftd with no other \
         pod (an empty node: smaller kernel tables, shown, not judged). Same binaries; bench_cni's method (wall time of one plugin process spawned in \
         the node's namespace). `per round`: each round's policed p50 over the baseline's \
         (the subjects seconds apart, so the VM's drift over the run cancels out of the \
         pair), median (min–max) over the rounds; the target is judged on those \
         medians.\n\n{table}\n{fresh}\n\
         weftd's `weft_policy_admission_wait_seconds` on the ADD node: steady rounds \
         `ready` {steady_ready}, `unisolated` {steady_unisolated}; fresh pods `ready` \
         {fresh_wait}.\n\n{cpu}"
    )
}

/// CPU per ADD call by subject: the plugin processes, the subject's weftd, the machine.
fn cpu_table(adds: &AddResults) -> String {
    let mut table = Table::new([
        "scenario",
        "subject",
        "ADDs",
        "plugin CPU / ADD",
        "weftd CPU / ADD",
        "machine busy / ADD",
    ]);
    for ((scenario, label), cpu) in &adds.cpu {
        let per = |d: Duration| time(Some(d / cpu.calls.max(1) as u32));
        table.row([
            scenario.to_string(),
            label.to_string(),
            cpu.calls.to_string(),
            per(cpu.plugins),
            per(cpu.weftd),
            per(cpu.machine),
        ]);
    }
    format!(
        "CPU over the ADD calls (10 ms ticks summed over the rounds; `machine busy` also \
         holds whatever else ran meanwhile: the fleet's apiserver, etcd, controller and \
         other weftds):\n\n{table}\n"
    )
}

fn watch_table(inputs: &Inputs<'_>) -> String {
    let mut table = Table::new(["stream (node-1)", "design"]);
    for (phase, _) in &inputs.watch_phases {
        table.column(format!("{phase}: bytes"));
        table.column(format!("{phase}: events"));
    }
    let mut totals = [[(0u64, 0u64); 2]; 3];
    for (i, (name, design)) in inputs.watch_names.iter().enumerate() {
        let d = usize::from(*design == Design::WatchEverything);
        let mut row = vec![
            name.clone(),
            if d == 0 { "weft" } else { "watch everything" }.to_owned(),
        ];
        for (p, (_, snapshot)) in inputs.watch_phases.iter().enumerate() {
            row.push(snapshot[i].bytes.to_string());
            row.push(snapshot[i].events.to_string());
            totals[p][d].0 += snapshot[i].bytes;
            totals[p][d].1 += snapshot[i].events;
        }
        table.row(row);
    }
    for (d, label) in ["weft, all six", "watch everything, all three"]
        .iter()
        .enumerate()
    {
        let mut row = vec![label.to_string(), "total".into()];
        for total in &totals {
            row.push(total[d].0.to_string());
            row.push(total[d].1.to_string());
        }
        table.row(row);
    }
    let mut row = vec!["weft / watch everything".to_owned(), "ratio".into()];
    for total in &totals {
        row.push(ratio(total[0].0 as f64 / total[1].0 as f64, 3));
        row.push(ratio(total[0].1 as f64 / total[1].1 as f64, 3));
    }
    table.row(row);
    format!(
        "### Watch load per node\n\nCounted on the apiserver's side: `kubectl get --raw` watch \
         streams with weftd's own selectors for node-1, and the three streams a design that \
         watches every Pod, Namespace and NetworkPolicy on every node would hold, in the same \
         run.\n\n{table}\n"
    )
}

fn throughput_table(rates: &Rates) -> String {
    let of = |profile: &str, route: &str, family: &str| -> Option<&Vec<f64>> {
        rates
            .iter()
            .find(|r| r.0 == profile && r.1 == route && r.2 == family)
            .map(|r| &r.3)
    };
    let cell = |s: Option<&Vec<f64>>| match s {
        Some(s) => format!("{:.2} ({})", median_f64(s.iter().copied()), s.len()),
        None => "—".into(),
    };
    let mid = |s: Option<&Vec<f64>>| s.map_or(f64::NAN, |s| median_f64(s.iter().copied()));
    let mut table = Table::new([
        "path",
        "family",
        "20 policies / 49 rules",
        "none (tracked)",
        "standalone weftd (untracked)",
        "policed / none",
        "policed / untracked",
        "target ≥ 0.95 (vs tracked)",
    ]);
    for route in ["same node", "across nodes"] {
        for family in ["IPv4", "IPv6"] {
            let (p, n, u) = (
                of("policed", route, family),
                of("none", route, family),
                of("untracked", route, family),
            );
            let against_none = mid(p) / mid(n);
            table.row([
                route.to_owned(),
                family.to_owned(),
                cell(p),
                cell(n),
                cell(u),
                ratio(against_none, 3),
                ratio(mid(p) / mid(u), 3),
                verdict(against_none >= TARGET_THROUGHPUT).into(),
            ]);
        }
    }
    format!(
        "### Pod-to-pod throughput with policy against without\n\niperf3, TCP, 1 stream, \
         Gbit/s median (runs), profiles alternating in one run. The server's profile: 19 \
         policies whose rules match none of this traffic, then one allowing the clients \
         (the longest first-packet path). `none`: the same pods, no policy; every node of \
         this fleet has isolated pods, so weft's `ct state` rules have connection tracking \
         on already (the tracked baseline). `standalone weftd`: no policy engine, no \
         conntrack user (untracked; same node only).\n\n{table}\n"
    )
}
