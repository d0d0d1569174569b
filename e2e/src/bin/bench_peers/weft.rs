//! weft's side: weftd converging the peers from a peers file, then single changes.

use crate::anchor::ruleset;
use crate::cluster::{change, node_netns, write_peers, Peer, Underlay};
use crate::kernel::{holds, Counts, Monitors};
use crate::trace::{traced_change, Traced};
use crate::{
    Args, CHANGE_TIMEOUT, CONVERGENCE_TIMEOUT, NODE_PREFIX, NODE_SUBNET, POLL, VNI, VXLAN_PORT,
};
use std::path::Path;
use std::time::{Duration, Instant};
use weft_e2e::bench::proc_status_kib;
use weft_e2e::{Metrics, Node, NodeOptions, TempDir};

/// What one round of weft measured.
#[derive(Debug, Default)]
pub(crate) struct WeftRound {
    /// Spawn to `weft_peers_programmed == N`.
    pub(crate) converge: Option<Duration>,
    /// weftd's own full passes (count, total seconds) by then.
    pub(crate) full_passes: (f64, f64),
    pub(crate) counts: Counts,
    /// Per change: wall time from the rename, weftd's own incremental pass (or the
    /// full pass it ran instead), and whether the kernel was right afterwards.
    pub(crate) changes: Vec<ChangeSample>,
    /// Kernel change events during all changes.
    pub(crate) events: usize,
    /// Netlink syscalls and bytes of one traced change.
    pub(crate) traced: Option<Traced>,
    pub(crate) rss_hwm_kib: u64,
    pub(crate) rss_kib: u64,
    pub(crate) errors_total: f64,
    pub(crate) complaints: Vec<String>,
    pub(crate) failure: Option<String>,
    /// `nft list ruleset` once converged.
    pub(crate) ruleset: String,
}

#[derive(Debug, Clone)]
pub(crate) struct ChangeSample {
    pub(crate) wall: Duration,
    pub(crate) pass: Duration,
    pub(crate) kind: &'static str,
    pub(crate) kernel_ok: bool,
}

/// weftd with `peers` from a peers file in a fresh node: from spawn to every peer
/// programmed, then single changes. weftd is stopped at the end; the node is returned so
/// that the caller decides when its namespace goes.
pub(crate) fn weft_round(args: &Args, underlay: Underlay, peers: &[Peer]) -> (Node, WeftRound) {
    let dir = TempDir::new("pk");
    let peers_file = dir.path().join("peers.json");
    let mut current = peers.to_vec();
    write_peers(&peers_file, &current);
    let n = peers.len();
    let mut round = WeftRound::default();

    let started = Instant::now();
    let mut node = Node::spawn_in(node_netns(underlay), weftd_options(&peers_file));
    let converged = wait(&mut node, started + CONVERGENCE_TIMEOUT, |m| {
        programmed(m) == Some(n as f64)
    });
    // Whatever fails, the round ends with weftd's memory, errors and log (below).
    'measure: {
        match converged {
            Ok((at, m)) => {
                round.converge = Some(at - started);
                round.full_passes = passes(&m, "full");
                round.ruleset = ruleset(&node.netns);
            }
            Err(e) => {
                round.failure = Some(format!("convergence of {n} peers: {e}"));
                round.counts = Counts::of(&node.netns);
                break 'measure;
            }
        }
        round.counts = Counts::of(&node.netns);
        if round.counts != Counts::all(n) {
            round.failure = Some(format!(
                "weft_peers_programmed == {n}, but the kernel holds {}",
                round.counts
            ));
        }

        // One peer change at a time, timed; kernel events counted throughout.
        let monitors = Monitors::start(&node.netns, dir.path());
        for k in 0..args.changes {
            match weft_change(&mut node, &peers_file, &mut current, k) {
                Ok(sample) => round.changes.push(sample),
                Err(e) => {
                    round.failure.get_or_insert(format!("change {k}: {e}"));
                    break;
                }
            }
        }
        round.events = monitors.finish();
        if round.failure.is_some() {
            break 'measure;
        }
        round.traced = traced_change(&mut node, &peers_file, &mut current, args.changes)
            .map_err(|e| eprintln!("bench_peers: traced change: {e}"))
            .ok();
        let after = Counts::of(&node.netns);
        if after != Counts::all(n) {
            round.failure = Some(format!("after the changes the kernel holds {after}"));
        }
    }
    if let Some(f) = &round.failure {
        eprintln!("bench_peers: weft failed: {f}");
    }
    if let Some(pid) = node.weftd_pid() {
        (round.rss_hwm_kib, round.rss_kib) =
            (proc_status_kib(pid, "VmHWM"), proc_status_kib(pid, "VmRSS"));
    }
    round.errors_total = node
        .metrics()
        .map_or(0.0, |m| m.or_zero("weft_convergence_errors_total"));
    round.complaints = node.complaints();
    node.kill9();
    (node, round)
}

/// weftd standalone, dual-stack with direct IPv6 routes, its peers from `peers_file`,
/// and no periodic full resync that could fall into a measurement.
fn weftd_options(peers_file: &Path) -> NodeOptions {
    let flags = [
        ("--ipv6-routing", "direct".to_owned()),
        ("--peers", peers_file.display().to_string()),
        ("--resync-seconds", "3600".to_owned()),
        ("--vxlan-vni", VNI.to_string()),
        ("--vxlan-port", VXLAN_PORT.to_string()),
    ];
    NodeOptions {
        node_name: Some("node-0".into()),
        ipv6_prefix: Some(NODE_PREFIX.into()),
        ipv4_subnet: Some(format!("{NODE_SUBNET}/24")),
        extra_args: flags
            .into_iter()
            .flat_map(|(flag, value)| [flag.to_owned(), value])
            .collect(),
        ..NodeOptions::default()
    }
}

/// Scrapes weftd every [`POLL`] until `done` holds.
fn wait(
    node: &mut Node,
    deadline: Instant,
    done: impl Fn(&Metrics) -> bool,
) -> Result<(Instant, Metrics), String> {
    let shown = ["weft_peers_known", "weft_peers_programmed"];
    node.wait_metrics(deadline, POLL, &shown, done)
}

fn programmed(m: &Metrics) -> Option<f64> {
    m.get("weft_peers_programmed")
}

/// (count, total seconds) of weftd's convergence passes of `kind`.
fn passes(m: &Metrics, kind: &str) -> (f64, f64) {
    m.histogram(
        "weft_convergence_duration_seconds",
        &format!("{{kind=\"{kind}\"}}"),
    )
}

/// Applies change `k` to `current`, writes the file, waits for weftd's next pass.
pub(crate) fn weft_change(
    node: &mut Node,
    peers_file: &Path,
    current: &mut [Peer],
    k: u32,
) -> Result<ChangeSample, String> {
    let before = node.metrics().ok_or("no /metrics")?;
    let (inc0, full0) = (passes(&before, "incremental"), passes(&before, "full"));
    let (at, subnet) = change(current, k);
    let old = current[at].subnet;
    current[at].subnet = subnet;
    let n = current.len() as f64;
    let started = Instant::now();
    write_peers(peers_file, current);
    let (seen, m) = wait(node, started + CHANGE_TIMEOUT, |m| {
        (passes(m, "incremental").0 > inc0.0 || passes(m, "full").0 > full0.0)
            && programmed(m) == Some(n)
    })?;
    let (inc1, full1) = (passes(&m, "incremental"), passes(&m, "full"));
    let (kind, pass) = if inc1.0 > inc0.0 {
        ("incremental", (inc1.1 - inc0.1) / (inc1.0 - inc0.0))
    } else {
        ("full", (full1.1 - full0.1) / (full1.0 - full0.0))
    };
    let new_ok = holds(&node.netns, subnet, &current[at]);
    let old_gone = holds(&node.netns, old, &current[at]);
    Ok(ChangeSample {
        wall: seen - started,
        pass: Duration::from_secs_f64(pass.max(0.0)),
        kind,
        kernel_ok: new_ok.iter().all(|&b| b) && old_gone.iter().all(|&b| !b),
    })
}
