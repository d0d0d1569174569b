//! CNI ADD and DEL latency of weft next to the reference `bridge` + `host-local` plugins,
//! both dual-stack, side by side in one run on one machine.
//!
//! What is measured: the wall-clock time of one plugin call as a runtime makes it, from
//! spawning a fresh process (environment = only CNI_COMMAND, CNI_CONTAINERID, CNI_NETNS,
//! CNI_IFNAME, CNI_PATH; config JSON on stdin) until it has exited. The process is
//! spawned from inside the plugin's node namespace (the spawning thread enters it, as
//! `weft_e2e::run_in` does), so no `ip netns exec` is paid. Pod namespaces are created
//! before timing starts. Each (scenario, plugin) set is: ADD of every pod (110 by
//! default), then DEL of every pod, once one call at a time ("sequential") and once with
//! 16 calls in flight ("parallel"). Samples of all rounds are pooled; the table shows
//! median and p99 (nearest rank) per call, the ratio weft/bridge and the issue's targets:
//! weft's median ADD and DEL at most 1/8 of bridge's, weft's p99 ADD at most 10 ms.
//! weft's DEL returns before its host veth is gone (weftd removes it in the background);
//! every set waits for that removal, untimed, and the report shows how long it took.
//!
//! Plugins: weft (weftd in a node namespace with `NodeOptions::default()`, except a 0 s
//! address cooldown: every round reuses ~110 addresses of the /24, and a 30 s cooldown
//! would exhaust it; a benchmark does not need the cooldown); Debian's bridge +
//! host-local from /usr/lib/cni (1.1.1, CNI up to 1.0.0; the anchor of the targets); and,
//! when e2e/setup.sh built them, the upstream v1.9.1 bridge + host-local as a second
//! anchor (`--no-go-bridge` skips it). Each bridge runs in a plain node namespace of its
//! own, with a host-local data directory of its own.
//!
//! Run it with release builds (the script builds them and passes arguments through):
//!
//! ```text
//! e2e/bench-cni.sh [--pods 110] [--parallel 16] [--rounds 6] [--warmup 8]
//!                  [--no-go-bridge] [--out PATH] [--also-weft PATH]
//! ```
//!
//! Needs root (namespaces), like the e2e tests. weftd's state directory and host-local's
//! dataDir are created under TMPDIR; bench-cni.sh points it at tmpfs (/dev/shm) unless set,
//! since weftd's default state dir (/run/weft/state) is on tmpfs on real nodes.
//! The report also shows each plugin's process floor: the median of VERSION calls.
#![allow(clippy::unwrap_used)]

use clap::builder::RangedU64ValueParser as Ranged;
use clap::Parser as _;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use weft_e2e::{
    binary, busy_cpu, children_cpu, reference_plugins_dir, report_header, unique_name, Netns, Node,
    NodeOptions, TempDir,
};

/// The issue's targets.
const TARGET_MEDIAN_FRACTION: f64 = 1.0 / 8.0;
const TARGET_WEFT_P99_ADD: Duration = Duration::from_millis(10);
/// VERSION calls per plugin for the process floor.
const FLOOR_CALLS: usize = 50;

fn main() {
    let args = Args::parse();
    let mut facts = machine_facts(&args);
    eprintln!("bench_cni: setting up ({} pods per set)", args.pods);
    let mut subjects = vec![
        Subject::weft("weft", binary("weft"), args.pods),
        Subject::debian_bridge(args.pods),
    ];
    if let Some(other) = &args.also_weft {
        subjects.push(Subject::weft(
            "weft-b",
            other.canonicalize().unwrap(),
            args.pods,
        ));
    }
    if args.go_bridge {
        match Subject::go_bridge(args.pods) {
            Some(s) => subjects.push(s),
            None => eprintln!("bench_cni: no upstream bridge in the tools cache; skipped"),
        }
    }
    let scenarios = [
        Scenario::new("sequential", 1),
        Scenario::new("parallel", args.parallel),
    ];
    for subject in &subjects {
        subject.warm_up(args.warmup);
        facts.push(subject.process_floor());
    }
    let samples = run_rounds(&subjects, &scenarios, args.rounds);
    let report = render(&facts, &subjects, &scenarios, &samples);
    print!("{report}");
    if let Some(out) = &args.out {
        std::fs::write(out, &report).unwrap();
        eprintln!("bench_cni: wrote {}", out.display());
    }
}

// ---- command line -----------------------------------------------------------------

/// CNI ADD/DEL latency of weft beside bridge + host-local (see the module documentation).
#[derive(Debug, clap::Parser)]
struct Args {
    /// Pods per set.
    #[arg(long, default_value_t = 110, value_parser = Ranged::<usize>::new().range(1..))]
    pods: usize,
    /// Calls in flight in the parallel scenario.
    #[arg(long, default_value_t = 16, value_parser = Ranged::<usize>::new().range(1..))]
    parallel: usize,
    /// Rounds per scenario (the plugin order rotates).
    #[arg(long, default_value_t = 6, value_parser = Ranged::<usize>::new().range(1..))]
    rounds: usize,
    /// Untimed warm-up pods per plugin.
    #[arg(long, default_value_t = 8)]
    warmup: usize,
    /// Skip the upstream Go-module bridge (the second anchor).
    #[arg(long = "no-go-bridge", action = clap::ArgAction::SetFalse)]
    go_bridge: bool,
    /// Also write the report here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Also measure this other build of the plugin (as `weft-b`, with a weftd of its
    /// own), to compare two builds in one run: this VM drifts more between runs than
    /// most changes move ADD.
    #[arg(long = "also-weft")]
    also_weft: Option<PathBuf>,
}

// ---- plugins under test -----------------------------------------------------------

/// Where a plugin runs, and what must be owned (and dropped) with it.
#[derive(Debug)]
enum Site {
    /// weftd's node; dropping it kills weftd and deletes the namespace.
    Weft(Node),
    /// A plain node namespace (the bridge dies with it) and host-local's dataDir.
    Bridge { node: Netns, _data_dir: TempDir },
}

impl Site {
    fn node(&self) -> &Netns {
        match self {
            Site::Weft(node) => &node.netns,
            Site::Bridge { node, .. } => node,
        }
    }
}

/// One plugin with its node, its config, and its own pod namespaces (reused every
/// round: every set DELs all its pods, and weft's host veths are gone before the next).
#[derive(Debug)]
struct Subject {
    label: String,
    version: String,
    binary: PathBuf,
    cni_path: String,
    config: String,
    pods: Vec<Netns>,
    node_ns: weft_netlink::Netns,
    site: Site,
}

impl Subject {
    fn weft(label: &str, binary: PathBuf, pods: usize) -> Subject {
        let node = Node::start(NodeOptions {
            cooldown_seconds: 0,
            ..NodeOptions::default()
        });
        let config = node.plugin_config("1.1.0").to_string();
        let version = format!("weft {} ({})", env!("CARGO_PKG_VERSION"), binary.display());
        let cni_path = binary.parent().unwrap().display().to_string();
        Subject::new(
            label,
            version,
            binary,
            cni_path,
            config,
            Site::Weft(node),
            pods,
        )
    }

    fn debian_bridge(pods: usize) -> Subject {
        let dir = PathBuf::from("/usr/lib/cni");
        let version = format!(
            "bridge + host-local, Debian containernetworking-plugins {} ({})",
            debian_package_version(),
            dir.display()
        );
        Subject::bridge("bridge", version, &dir, pods)
    }

    fn go_bridge(pods: usize) -> Option<Subject> {
        let dir = reference_plugins_dir();
        if !dir.join("bridge").exists() || !dir.join("host-local").exists() {
            return None;
        }
        let version = format!(
            "bridge + host-local, {} ({})",
            about(&dir.join("bridge")),
            dir.display()
        );
        Some(Subject::bridge("bridge-go", version, &dir, pods))
    }

    /// bridge + host-local, dual-stack, in a node namespace of its own.
    fn bridge(label: &str, version: String, dir: &Path, pods: usize) -> Subject {
        let node = Netns::new("bn");
        let data_dir = TempDir::new("hl");
        let config = json!({
            "cniVersion": "1.0.0",
            "name": format!("bench-{}", node.name()),
            "type": "bridge",
            "bridge": unique_name("br"),
            "isGateway": true,
            "ipMasq": false,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": "10.254.0.0/16"}], [{"subnet": "2001:db8:2000::/64"}]],
                "dataDir": data_dir.path().display().to_string(),
            },
        })
        .to_string();
        let site = Site::Bridge {
            node,
            _data_dir: data_dir,
        };
        let cni_path = dir.display().to_string();
        Subject::new(
            label,
            version,
            dir.join("bridge"),
            cni_path,
            config,
            site,
            pods,
        )
    }

    fn new(
        label: &str,
        version: String,
        binary: PathBuf,
        cni_path: String,
        config: String,
        site: Site,
        pods: usize,
    ) -> Subject {
        let node_ns = weft_netlink::Netns::open(Path::new(&site.node().path())).unwrap();
        let pods = (0..pods).map(|_| Netns::new("b")).collect();
        Subject {
            label: label.to_owned(),
            version,
            binary,
            cni_path,
            config,
            pods,
            node_ns,
            site,
        }
    }

    /// One call as a runtime makes it; the wall-clock time from spawn to exit.
    fn call(&self, command: &str, container_id: &str, pod: &Netns) -> (Duration, String) {
        let pod_path = pod.path();
        let mut cmd = Command::new(&self.binary);
        cmd.env_clear()
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", container_id)
            .env("CNI_NETNS", &pod_path)
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", &self.cni_path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // The child inherits the namespace of the thread that spawns it.
        let (started, mut child) = {
            let _inside = self.node_ns.enter().unwrap();
            let started = Instant::now();
            (started, cmd.spawn().unwrap())
        };
        // A config is far smaller than a pipe's buffer: this write never blocks, and
        // dropping the handle closes stdin.
        child
            .stdin
            .take()
            .unwrap()
            .write_all(self.config.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let elapsed = started.elapsed();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{} {command} {container_id} failed ({}): {stdout} {}",
            self.label,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        (elapsed, stdout)
    }

    /// What being a process costs this plugin: the median of VERSION calls, which start,
    /// parse the config, answer and exit, touching no network state.
    fn process_floor(&self) -> String {
        let mut times: Vec<Duration> = (0..FLOOR_CALLS)
            .map(|_| self.call("VERSION", "floor", &self.pods[0]).0)
            .collect();
        times.sort();
        format!(
            "{} process floor (VERSION, median of {FLOOR_CALLS}): {}",
            self.label,
            ms(times[times.len() / 2])
        )
    }

    /// Untimed ADD + DEL of a few pods: binaries in the page cache, the bridge and its
    /// gateway addresses created, weftd's first requests served. Also checks that every
    /// plugin really wires both families.
    fn warm_up(&self, pods: usize) {
        eprintln!("bench_cni: warming up {}", self.label);
        let pods = pods.min(self.pods.len());
        for (i, pod) in self.pods.iter().take(pods).enumerate() {
            let (_, result) = self.call("ADD", &format!("warm-{i}"), pod);
            assert_dual_stack(&self.label, &result);
        }
        for (i, pod) in self.pods.iter().take(pods).enumerate() {
            self.call("DEL", &format!("warm-{i}"), pod);
        }
        self.settle();
    }

    /// Waits until nothing of the last DELs is still being torn down; returns how long
    /// that took. weftd removes host veths in the background after DEL returns; the next
    /// set (of any plugin) must not compete with that work. bridge's DEL is synchronous.
    fn settle(&self) -> Duration {
        let started = Instant::now();
        let Site::Weft(node) = &self.site else {
            return Duration::ZERO;
        };
        let deadline = started + Duration::from_secs(60);
        loop {
            let left = node.weft_veths();
            if left.is_empty() {
                return started.elapsed();
            }
            assert!(
                Instant::now() < deadline,
                "weftd did not remove {} host veths within 60 s",
                left.len()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn assert_dual_stack(label: &str, result: &str) {
    let result: Value = serde_json::from_str(result).unwrap();
    let addresses: Vec<&str> = result["ips"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|ip| ip["address"].as_str())
        .collect();
    assert!(
        addresses.iter().any(|a| a.contains(':')) && addresses.iter().any(|a| a.contains('.')),
        "{label} did not wire both families: {result}"
    );
}

/// `CNI bridge plugin v1.9.1`: what a reference plugin prints when run without a command.
fn about(plugin: &Path) -> String {
    let out = Command::new(plugin).env_clear().output().unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    text.lines()
        .next()
        .unwrap_or("version unknown")
        .trim()
        .to_owned()
}

fn debian_package_version() -> String {
    Command::new("dpkg-query")
        .args(["-W", "-f", "${Version}", "containernetworking-plugins"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_else(|| "(version unknown)".into())
}

// ---- the measurement --------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
struct Scenario {
    name: &'static str,
    parallel: usize,
}

impl Scenario {
    fn new(name: &'static str, parallel: usize) -> Scenario {
        Scenario { name, parallel }
    }
}

/// (scenario index, subject index, "ADD"/"DEL") -> call latencies. With [`SETTLE`]: how
/// long each set's background teardown went on after its last DEL returned; with
/// [`ADD_CPU`]: per set, the plugin processes' own CPU per ADD; with [`ADD_BUSY`]: per
/// set, the whole machine's busy CPU over the set's ADDs per call.
type Samples = BTreeMap<(usize, usize, &'static str), Vec<Duration>>;
const SETTLE: &str = "settle";
const ADD_CPU: &str = "ADD CPU";
const ADD_BUSY: &str = "ADD busy";

/// Fairness: within a round, each scenario runs one complete set per plugin, back to
/// back, and the order of the plugins rotates every round (weft first, then bridge first,
/// ...). Whole sets keep each plugin's 110-pod node state realistic (no other plugin's
/// calls in between), while rotation spreads slow drifts of the machine (thermal, page
/// cache, background work) evenly over the plugins. Between sets everything has settled
/// (weft's background veth removal), so no set pays for another. The default of 6 rounds
/// is a multiple of 2 and 3 plugins: each plugin goes first equally often.
fn run_rounds(subjects: &[Subject], scenarios: &[Scenario], rounds: usize) -> Samples {
    let mut samples = Samples::new();
    for round in 0..rounds {
        for (si, scenario) in scenarios.iter().enumerate() {
            for k in 0..subjects.len() {
                let pi = (round + k) % subjects.len();
                let subject = &subjects[pi];
                eprintln!(
                    "bench_cni: round {}/{rounds} {} {}",
                    round + 1,
                    scenario.name,
                    subject.label
                );
                let (add, add_cpu, del, settle) = run_set(subject, scenario, round);
                samples
                    .entry((si, pi, ADD_CPU))
                    .or_default()
                    .push(add_cpu.plugin);
                samples
                    .entry((si, pi, ADD_BUSY))
                    .or_default()
                    .push(add_cpu.machine);
                samples.entry((si, pi, "ADD")).or_default().extend(add);
                samples.entry((si, pi, "DEL")).or_default().extend(del);
                samples.entry((si, pi, SETTLE)).or_default().push(settle);
            }
        }
    }
    samples
}

/// What one ADD of a set cost in CPU, on average.
struct CpuPerCall {
    /// The plugin process's own (user + system, its children included: host-local for
    /// bridge): a lower bound of what a call costs the machine.
    plugin: Duration,
    /// The whole machine's busy CPU over the set (steal excluded): also weftd, the
    /// kernel's deferred work and the harness's spawning; 10 ms ticks.
    machine: Duration,
}

/// ADD every pod, then DEL every pod, `scenario.parallel` calls in flight; then settle.
/// Returns the ADD latencies, the CPU per ADD, the DEL latencies and the settle time.
fn run_set(
    subject: &Subject,
    scenario: &Scenario,
    round: usize,
) -> (Vec<Duration>, CpuPerCall, Vec<Duration>, Duration) {
    let ids: Vec<String> = (0..subject.pods.len())
        .map(|i| format!("bench-{}-r{round}-p{i}", scenario.name))
        .collect();
    let calls = ids.len() as u32;
    let (busy_before, children_before) = (busy_cpu(), children_cpu());
    let add = timed_calls(subject, "ADD", &ids, scenario.parallel);
    let add_cpu = CpuPerCall {
        plugin: (children_cpu() - children_before) / calls,
        machine: (busy_cpu() - busy_before) / calls,
    };
    let del = timed_calls(subject, "DEL", &ids, scenario.parallel);
    let settle = subject.settle();
    (add, add_cpu, del, settle)
}

/// `command` for pod i with container ID ids[i], for every i, from `parallel` workers
/// that each take the next pod as soon as their previous call has exited.
fn timed_calls(subject: &Subject, command: &str, ids: &[String], parallel: usize) -> Vec<Duration> {
    let next = AtomicUsize::new(0);
    let times = Mutex::new(Vec::with_capacity(ids.len()));
    std::thread::scope(|scope| {
        for _ in 0..parallel.min(ids.len()) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= ids.len() {
                    break;
                }
                let (elapsed, _) = subject.call(command, &ids[i], &subject.pods[i]);
                times.lock().unwrap().push(elapsed);
            });
        }
    });
    times.into_inner().unwrap()
}

// ---- statistics and the report ----------------------------------------------------

#[derive(Debug, Clone, Copy)]
struct Stats {
    mean: Duration,
    median: Duration,
    p99: Duration,
    n: usize,
}

impl Stats {
    fn of(samples: &[Duration]) -> Stats {
        let mut sorted = samples.to_vec();
        sorted.sort();
        let n = sorted.len();
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2
        };
        // Nearest rank: the smallest sample with at least 99 % of samples at or below it.
        let rank = (n * 99).div_ceil(100).max(1);
        Stats {
            mean: sorted.iter().sum::<Duration>() / n as u32,
            median,
            p99: sorted[rank - 1],
            n,
        }
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn ratio(a: Duration, b: Duration) -> String {
    let r = a.as_secs_f64() / b.as_secs_f64();
    format!("{r:.3} (1/{:.1})", 1.0 / r)
}

fn machine_facts(args: &Args) -> Vec<String> {
    let (mut facts, profile) = weft_e2e::machine_facts("bench_cni");
    facts.extend([
        format!("weft build profile: {profile}"),
        temp_dir_fact(),
        format!(
            "pods per set: {}; parallel: {}; rounds: {}; warm-up pods: {} (untimed)",
            args.pods, args.parallel, args.rounds, args.warmup
        ),
    ]);
    facts
}

/// weftd's state (in the harness node's directory) and host-local's dataDir live under
/// TMPDIR; on a disk file system every allocation record costs weftd file-system work that
/// its default state dir (/run/weft/state, tmpfs on real nodes) does not.
fn temp_dir_fact() -> String {
    let dir = std::env::temp_dir();
    let fs = Command::new("stat")
        .args(["-f", "-c", "%T"])
        .arg(&dir)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    if fs != "tmpfs" {
        eprintln!(
            "bench_cni: {} is on {fs}, not tmpfs: weftd's state costs disk work",
            dir.display()
        );
    }
    format!(
        "weftd state dir and host-local dataDir under {} ({fs})",
        dir.display()
    )
}

fn render(
    facts: &[String],
    subjects: &[Subject],
    scenarios: &[Scenario],
    samples: &Samples,
) -> String {
    let stats = |si: usize, pi: usize, op: &'static str| Stats::of(&samples[&(si, pi, op)]);
    let mut out = report_header(
        "CNI ADD/DEL latency: weft vs bridge + host-local (dual-stack)",
        facts,
    );
    for subject in subjects {
        writeln!(out, "- {}: {}", subject.label, subject.version).unwrap();
    }
    writeln!(
        out,
        "- time: spawn to exit of one fresh plugin process per call (wall clock)\n"
    )
    .unwrap();
    writeln!(
        out,
        "| scenario | plugin | ADD median | ADD p99 | DEL median | DEL p99 | n |"
    )
    .unwrap();
    writeln!(out, "|---|---|---|---|---|---|---|").unwrap();
    for (si, scenario) in scenarios.iter().enumerate() {
        let label = format!("{} (x{})", scenario.name, scenario.parallel);
        for (pi, subject) in subjects.iter().enumerate() {
            let (add, del) = (stats(si, pi, "ADD"), stats(si, pi, "DEL"));
            writeln!(
                out,
                "| {label} | {} | {} | {} | {} | {} | {} |",
                subject.label,
                ms(add.median),
                ms(add.p99),
                ms(del.median),
                ms(del.p99),
                add.n
            )
            .unwrap();
        }
        for (pi, anchor) in subjects.iter().enumerate().skip(1) {
            let (wa, wd) = (stats(si, 0, "ADD"), stats(si, 0, "DEL"));
            let (ba, bd) = (stats(si, pi, "ADD"), stats(si, pi, "DEL"));
            writeln!(
                out,
                "| {label} | weft/{} | {} | {} | {} | {} | |",
                anchor.label,
                ratio(wa.median, ba.median),
                ratio(wa.p99, ba.p99),
                ratio(wd.median, bd.median),
                ratio(wd.p99, bd.p99)
            )
            .unwrap();
        }
    }
    writeln!(out, "\nNotes:\n").unwrap();
    for (si, scenario) in scenarios.iter().enumerate() {
        for (pi, subject) in subjects.iter().enumerate() {
            let (add, del) = (stats(si, pi, "ADD"), stats(si, pi, "DEL"));
            writeln!(
                out,
                "- {} (x{}) {}: mean ADD {}, mean DEL {}",
                scenario.name,
                scenario.parallel,
                subject.label,
                ms(add.mean),
                ms(del.mean)
            )
            .unwrap();
            if matches!(subject.site, Site::Weft(_)) {
                writeln!(
                    out,
                    "- {} (x{}) {}: host veths gone {} (median of {} sets) after the \
                     last DEL returned; weftd removes them in the background, untimed \
                     (bridge's DEL deletes its veth before returning)",
                    scenario.name,
                    scenario.parallel,
                    subject.label,
                    ms(stats(si, pi, SETTLE).median),
                    stats(si, pi, SETTLE).n
                )
                .unwrap();
            }
        }
    }
    for (si, scenario) in scenarios.iter().enumerate() {
        for (pi, subject) in subjects.iter().enumerate() {
            writeln!(
                out,
                "- {} (x{}) {}: CPU per ADD {} in the plugin process, {} for the whole \
                 machine (medians of {} sets; the machine's is its busy CPU over the set's \
                 ADDs, steal excluded, so also weftd and the harness)",
                scenario.name,
                scenario.parallel,
                subject.label,
                ms(stats(si, pi, ADD_CPU).median),
                ms(stats(si, pi, ADD_BUSY).median),
                stats(si, pi, ADD_CPU).n
            )
            .unwrap();
        }
    }
    writeln!(out, "\nTargets (weft against {}):\n", subjects[1].label).unwrap();
    for (si, scenario) in scenarios.iter().enumerate() {
        for line in verdicts(
            stats(si, 0, "ADD"),
            stats(si, 0, "DEL"),
            stats(si, 1, "ADD"),
            stats(si, 1, "DEL"),
        ) {
            writeln!(out, "- {} (x{}): {line}", scenario.name, scenario.parallel).unwrap();
        }
        if scenario.parallel > 1 {
            writeln!(
                out,
                "- {} (x{}): {}",
                scenario.name,
                scenario.parallel,
                littles_law_floor(
                    scenario.parallel,
                    stats(si, 0, ADD_CPU).median,
                    stats(si, 0, "ADD").mean
                )
            )
            .unwrap();
        }
    }
    out
}

/// The lowest mean ADD latency the machine allows with `parallel` calls in flight.
/// Little's law: calls in flight = throughput x mean latency, and throughput is at most
/// cores / CPU per call. The plugin process's own CPU is a lower bound of a call's cost
/// (weftd's share and the kernel's deferred work come on top); the set's first and last
/// calls run with fewer in flight, so a set's mean can dip a little under the bound.
fn littles_law_floor(parallel: usize, plugin_cpu: Duration, mean: Duration) -> String {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let floor = plugin_cpu * parallel as u32 / cores as u32;
    let (cpu, floor, mean) = (ms(plugin_cpu), ms(floor), ms(mean));
    format!(
        "Little's law: {parallel} ADDs in flight, each taking {cpu} of CPU in the plugin \
         process alone, on {cores} cores: mean ADD >= {parallel} x {cpu} / {cores} = \
         {floor} (measured mean {mean})"
    )
}

fn verdicts(weft_add: Stats, weft_del: Stats, bridge_add: Stats, bridge_del: Stats) -> Vec<String> {
    let verdict = |met: bool| if met { "MET" } else { "MISSED" };
    let fraction = |weft: Duration, bridge: Duration, op: &str| {
        let limit = bridge.mul_f64(TARGET_MEDIAN_FRACTION);
        format!(
            "median {op} <= 1/8 of bridge's: {} vs {} -> {}",
            ms(weft),
            ms(limit),
            verdict(weft <= limit)
        )
    };
    vec![
        fraction(weft_add.median, bridge_add.median, "ADD"),
        fraction(weft_del.median, bridge_del.median, "DEL"),
        format!(
            "p99 ADD <= {}: {} -> {}",
            ms(TARGET_WEFT_P99_ADD),
            ms(weft_add.p99),
            verdict(weft_add.p99 <= TARGET_WEFT_P99_ADD)
        ),
    ]
}
