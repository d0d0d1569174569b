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
//!                  [--no-go-bridge] [--out PATH] [--also-weft PATH | --also-weftd PATH]
//! ```
//!
//! `--also-weft` adds another plugin build, `--also-weftd` another weftd build behind
//! the same plugin, as `weft-b`: two builds compared in one run.
//!
//! This file runs the rounds; [`subjects`] holds the plugins under test and [`report`]
//! the table and the verdicts.
//!
//! Needs root (namespaces), like the e2e tests. weftd's state directory and host-local's
//! dataDir are created under TMPDIR; bench-cni.sh points it at tmpfs (/dev/shm) unless set,
//! since weftd's default state dir (/run/weft/state) is on tmpfs on real nodes.
//! The report also shows each plugin's process floor: the median of VERSION calls.
#![allow(clippy::unwrap_used)]

use clap::builder::RangedU64ValueParser as Ranged;
use clap::Parser as _;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use weft_e2e::bench::{busy_cpu, children_cpu, publish, turns};
use weft_e2e::{binary, install_namespace_cleanup_hook};

mod report;
mod subjects;

use report::{machine_facts, render};
use subjects::Subject;

/// The issue's targets.
const TARGET_MEDIAN_FRACTION: f64 = 1.0 / 8.0;
const TARGET_WEFT_P99_ADD: Duration = Duration::from_millis(10);

fn main() {
    let args = Args::parse();
    install_namespace_cleanup_hook();
    let mut facts = machine_facts(&args);
    eprintln!("bench_cni: setting up ({} pods per set)", args.pods);
    let mut subjects = vec![
        Subject::weft("weft", binary("weft"), args.pods),
        Subject::debian_bridge(args.pods),
    ];
    if let Some(weftd) = &args.also_weftd {
        subjects.push(Subject::weft_with_weftd(
            "weft-b",
            binary("weft"),
            weftd,
            args.pods,
        ));
    }
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
    publish("bench_cni", &report, args.out.as_deref());
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
    #[arg(long = "also-weft", conflicts_with = "also_weftd")]
    also_weft: Option<PathBuf>,
    /// Also measure this other build of weftd (as `weft-b`, behind the same plugin).
    #[arg(long = "also-weftd")]
    also_weftd: Option<PathBuf>,
}

// ---- the measurement --------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
pub(crate) struct Scenario {
    pub(crate) name: &'static str,
    pub(crate) parallel: usize,
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
pub(crate) type Samples = BTreeMap<(usize, usize, &'static str), Vec<Duration>>;
pub(crate) const SETTLE: &str = "settle";
pub(crate) const ADD_CPU: &str = "ADD CPU";
pub(crate) const ADD_BUSY: &str = "ADD busy";

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
            for pi in turns(round, subjects.len()) {
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
