//! The markdown report: the machine's facts, one column per controller, the ratios and
//! the verdicts against the targets.

use crate::apiserver::{Counters, Kind, WRITES};
use crate::{
    Args, Measurement, IPV4_NETWORK, IPV4_SUBNET_LENGTH, IPV6_PREFIX_LENGTH, IPV6_RANGE, SETTLE,
    TARGET_RSS_MIB, TARGET_TIME,
};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::Command;
use std::time::Duration;
use weft_e2e::bench::{
    self, fraction, mib, percentile, report_header, secs, ticks_per_second, tool_version, verdict,
    MachineTicks, Table,
};
use weft_e2e::KubeBinaries;

pub(crate) fn machine_facts(args: &Args, bins: &KubeBinaries) -> Vec<String> {
    let (mut facts, profile) = bench::machine_facts("bench_controller");
    let apiserver = tool_version(&bins.kube_apiserver, "--version");
    facts.extend([
        format!("weft build profile: {profile}; source: {}", source_state()),
        format!(
            "control plane: {apiserver} and etcd (data on tmpfs, no fsync), a fresh one per \
             controller, in a namespace of its own"
        ),
        format!(
            "plan: IPv6 /{IPV6_PREFIX_LENGTH}s from {IPV6_RANGE}, IPv4 /{IPV4_SUBNET_LENGTH}s \
             from {IPV4_NETWORK}; both controllers with the admin kubeconfig"
        ),
        format!(
            "{} Nodes created by {} parallel `kubectl create -f -` (one List each) {}",
            args.nodes,
            args.create_parallel,
            if args.backlog {
                "before the controller starts; the clock starts when it is spawned (its \
                 start-up, Lease and initial lists included)"
            } else {
                "while the controller runs"
            }
        ),
        if args.kubelet_nodes {
            "Nodes shaped as a kubelet keeps them: labels, annotations, status with 50 \
             images, conditions, addresses, capacity, node info (about 12 KiB of JSON each)"
                .to_owned()
        } else {
            "bare Nodes: a name only".to_owned()
        },
    ]);
    facts
}

/// The commit the weft binaries were built from, and whether the tree differed from it.
fn source_state() -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(env!("CARGO_MANIFEST_DIR"))
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    };
    let Some(commit) = git(&["rev-parse", "--short", "HEAD"]) else {
        return "unknown (no git)".into();
    };
    let commit = commit.trim();
    // Porcelain lines are `XY path`: X may be a space, so no trimming before slicing.
    match git(&["status", "--porcelain", "--untracked-files=no"]) {
        Some(s) if s.trim().is_empty() => format!("commit {commit}, clean"),
        Some(s) => format!(
            "commit {commit} with uncommitted changes to {}",
            s.lines()
                .map(|l| l.get(3..).unwrap_or(l))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        None => format!("commit {commit}"),
    }
}

/// One table cell and, when it is a number, the value for the ratio.
struct Cell(String, Option<f64>);

fn secs_cell(d: Duration) -> Cell {
    Cell(secs(d, 1), Some(d.as_secs_f64()))
}

fn number_cell(v: f64, unit: &str, decimals: usize) -> Cell {
    let text = if unit.is_empty() {
        format!("{v:.decimals$}")
    } else {
        format!("{v:.decimals$} {unit}")
    };
    Cell(text, Some(v))
}

impl Measurement {
    fn delta(&self, f: impl Fn(&Counters) -> f64) -> f64 {
        f(&self.after) - f(&self.before)
    }

    /// The machine's (busy, total) ticks in the window; busy with the hypervisor's steal.
    fn machine_window(&self) -> (u64, u64) {
        let busy = |t: &MachineTicks| t.busy + t.steal;
        let (after, before) = (&self.after.machine, &self.before.machine);
        (busy(after) - busy(before), after.total() - before.total())
    }

    /// The machine's busy CPU seconds in the window that none of the measured processes
    /// used: other work on a shared machine, and the kernel's work for the namespace.
    fn others_cpu(&self) -> f64 {
        let busy = self.machine_window().0 as f64 / ticks_per_second();
        let ours = self.delta(|c| c.controller_cpu + c.apiserver_cpu + c.etcd_cpu + c.bench_cpu)
            + self.created.kubectl_cpu;
        (busy - ours).max(0.0)
    }

    /// (kind, failed) -> requests in the window.
    pub(crate) fn requests(&self) -> BTreeMap<(Kind, bool), f64> {
        let mut out = BTreeMap::new();
        for (key, after) in &self.after.requests {
            let n = after - self.before.requests.get(key).copied().unwrap_or(0.0);
            if n > 0.0 {
                out.insert(key.clone(), n);
            }
        }
        out
    }

    /// Successful writes per node, besides the Nodes' creates and Lease renewals.
    fn writes_per_node(&self) -> f64 {
        let n: f64 = self
            .requests()
            .iter()
            .filter(|(((verb, resource), failed), _)| {
                WRITES.contains(&verb.as_str()) && !failed && resource != "leases"
            })
            .map(|(_, n)| n)
            .sum();
        let (creates, allocations) = self.window_nodes();
        (n - creates) / allocations
    }

    /// (Node creates, allocations) in the window: the timed Nodes, and with `--backlog`
    /// none created but the warm-up Node allocated too.
    fn window_nodes(&self) -> (f64, f64) {
        let n = self.allocated as f64;
        if self.backlog {
            (0.0, n + 1.0)
        } else {
            (n, n)
        }
    }

    /// One line per request kind: count (failed ones apart) and mean apiserver time.
    fn request_notes(&self) -> Vec<String> {
        let requests = self.requests();
        let mut kinds: Vec<&Kind> = requests.keys().map(|(k, _)| k).collect();
        kinds.dedup();
        kinds
            .into_iter()
            .map(|kind| {
                let ok = requests.get(&(kind.clone(), false)).copied().unwrap_or(0.0);
                let failed = requests.get(&(kind.clone(), true)).copied().unwrap_or(0.0);
                let mut text = format!("{} {} {ok}", kind.0, kind.1);
                if failed > 0.0 {
                    let _ = write!(text, " (+{failed} failed)");
                }
                let seconds = self.after.request_seconds.get(kind).copied().unwrap_or(0.0)
                    - self
                        .before
                        .request_seconds
                        .get(kind)
                        .copied()
                        .unwrap_or(0.0);
                if kind.0 != "WATCH" && ok + failed > 0.0 {
                    let _ = write!(text, " x {:.1} ms", 1000.0 * seconds / (ok + failed));
                }
                text
            })
            .collect()
    }

    fn rows(&self) -> Vec<Cell> {
        let nodes = self.allocated as f64;
        let (busy, total) = self.machine_window();
        vec![
            Cell(
                format!(
                    "{}, {}",
                    self.allocated,
                    if self.unique.is_ok() {
                        "unique"
                    } else {
                        "SHARED"
                    }
                ),
                None,
            ),
            secs_cell(self.total),
            number_cell(nodes / self.total.as_secs_f64(), "", 0),
            secs_cell(self.created.took),
            if self.backlog {
                secs_cell(percentile(&self.latencies, 0))
            } else {
                secs_cell(self.total.saturating_sub(self.created.took))
            },
            number_cell(
                percentile(&self.latencies, 50).as_secs_f64() * 1000.0,
                "ms",
                0,
            ),
            number_cell(
                percentile(&self.latencies, 99).as_secs_f64() * 1000.0,
                "ms",
                0,
            ),
            number_cell(mib(self.peak_rss_kib), "MiB", 1),
            number_cell(self.delta(|c| c.controller_cpu), "s", 1),
            number_cell(self.delta(|c| c.apiserver_cpu), "s", 1),
            number_cell(self.delta(|c| c.etcd_cpu), "s", 1),
            number_cell(self.created.kubectl_cpu, "s", 1),
            number_cell(self.delta(|c| c.bench_cpu), "s", 1),
            number_cell(self.others_cpu(), "s", 1),
            number_cell(100.0 * busy as f64 / total.max(1) as f64, "%", 0),
            number_cell(mib(self.apiserver_peak_rss_kib), "MiB", 0),
            number_cell(self.writes_per_node(), "", 2),
            number_cell(
                ((self.after.revision - self.before.revision) as f64 - self.window_nodes().0)
                    / self.window_nodes().1,
                "",
                2,
            ),
            match self.reported {
                Some((d, early)) => Cell(
                    format!("{:.1} s ({early} by the last allocation)", d.as_secs_f64()),
                    Some(d.as_secs_f64()),
                ),
                None => Cell("none written".into(), None),
            },
        ]
    }
}

/// The rows' names; some differ with `--backlog`.
fn row_names(backlog: bool) -> [&'static str; 19] {
    let mut rows = ROWS;
    if backlog {
        rows[1] = "**time to allocate every node** (controller start -> last allocation)";
        rows[3] = "creating the Nodes, before the controller starts (untimed)";
        rows[4] = "the controller's start -> its first allocation";
        rows[5] = "per node, controller start -> allocated: median";
        rows[6] = "per node, controller start -> allocated: p99";
        rows[11] = "kubectl create CPU (before the window)";
        rows[18] = "every node's `Allocated=True` condition (controller start -> last)";
    }
    rows
}

const ROWS: [&str; 19] = [
    "nodes allocated, ranges",
    "**time to allocate every node** (first create -> last allocation)",
    "nodes/s",
    "creating the Nodes (first create -> last create returned)",
    "last allocation after the last create",
    "per node, Node seen -> allocated: median",
    "per node, Node seen -> allocated: p99",
    "**controller peak RSS** (VmHWM)",
    "controller CPU",
    "kube-apiserver CPU",
    "etcd CPU",
    "kubectl create CPU",
    "benchmark's watches CPU",
    "CPU of other processes on the machine (not this benchmark)",
    "machine CPU busy (2 cores = 100 %)",
    "kube-apiserver peak RSS",
    "apiserver writes per node (besides its create, Leases apart)",
    "etcd revisions per node (besides its create)",
    "every node's `Allocated=True` condition (first create -> last)",
];

pub(crate) fn render(args: &Args, facts: &[String], results: &[Measurement]) -> String {
    let title = format!(
        "Node allocation: weft-controller vs kube-controller-manager node IPAM \
         ({} Nodes, dual-stack, {})",
        args.nodes,
        if args.backlog {
            "all created before the controller starts"
        } else {
            "created while the controller runs"
        }
    );
    let mut out = report_header(&title, facts);
    for m in results {
        writeln!(out, "- {}: {}", m.subject.label(), m.version).unwrap();
    }
    writeln!(
        out,
        "- allocated: weft when its WeftNode names both ranges and the Node's podCIDRs \
         hold both; KCM when the Node's podCIDRs hold both (as the apiserver's watch \
         delivers them); CPU and writes over first create -> last allocation (weft: \
         last `Allocated=True` condition, which may follow) + {} s\n",
        SETTLE.as_secs()
    )
    .unwrap();
    let weft = &results[0];
    let mut table = Table::new(["measure"]);
    for m in results {
        table.column(m.subject.label());
    }
    for a in &results[1..] {
        table.column(format!("weft / {}", a.subject.short()));
    }
    let rows: Vec<Vec<Cell>> = results.iter().map(Measurement::rows).collect();
    for (r, name) in row_names(args.backlog).iter().enumerate() {
        let values = rows.iter().map(|cells| cells[r].0.clone());
        let ratios = rows[1..]
            .iter()
            .map(|anchor| match (rows[0][r].1, anchor[r].1) {
                (Some(w), Some(k)) if w >= 0.05 && k >= 0.05 => fraction(w / k, 2),
                _ => String::new(),
            });
        table.row(
            std::iter::once(name.to_string())
                .chain(values)
                .chain(ratios),
        );
    }
    write!(out, "{table}").unwrap();
    writeln!(
        out,
        "\napiserver requests in the window (verb resource count, x mean time serving \
         one{}):\n",
        if args.backlog {
            "; the Nodes were created before, the warm-up Node is allocated in it too".to_owned()
        } else {
            format!("; POST nodes includes the {} creates", args.nodes)
        }
    )
    .unwrap();
    for m in results {
        let notes = m.request_notes();
        writeln!(out, "- {}: {}", m.subject.label(), notes.join(", ")).unwrap();
        let watches: Vec<String> = m
            .controller_watches
            .iter()
            .map(|(resource, n)| format!("{resource} {n}"))
            .collect();
        writeln!(
            out,
            "- {}: its watches open at the end: {}",
            m.subject.label(),
            watches.join(", ")
        )
        .unwrap();
        for line in &m.health {
            writeln!(out, "- {}: {line}", m.subject.label()).unwrap();
        }
        if let Err(e) = &m.unique {
            writeln!(out, "- {}: RANGES WRONG: {e}", m.subject.label()).unwrap();
        }
    }
    writeln!(
        out,
        "\nTargets (weft-controller, {} Nodes {}):\n",
        args.nodes,
        if args.backlog {
            "created before it starts"
        } else {
            "created while it runs"
        }
    )
    .unwrap();
    for line in verdicts(weft, args.nodes) {
        writeln!(out, "- {line}").unwrap();
    }
    out
}

fn verdicts(weft: &Measurement, nodes: usize) -> Vec<String> {
    let rss = mib(weft.peak_rss_kib);
    let mut lines = vec![
        format!(
            "time until every node has its allocation <= {} s: {:.1} s -> {}",
            TARGET_TIME.as_secs(),
            weft.total.as_secs_f64(),
            verdict(weft.total <= TARGET_TIME && weft.unique.is_ok())
        ),
        format!(
            "controller peak RSS <= {TARGET_RSS_MIB} MiB: {rss:.1} MiB -> {}",
            verdict(rss <= TARGET_RSS_MIB)
        ),
    ];
    if nodes != 5000 {
        lines.push(format!(
            "(the targets are for 5,000 Nodes; this run created {nodes})"
        ));
    }
    lines
}
