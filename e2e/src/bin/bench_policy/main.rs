//! NetworkPolicy at scale on Kubernetes-mode namespace nodes (issue 17's benchmark,
//! docs/networkpolicy-design.md §4.5), weft and its anchors side by side in one run:
//!
//! 1. change → enforcement: N generated pods and P generated policies (the design's mix,
//!    [`generate`]) over namespace nodes; a cycle of changes (policy create, update,
//!    delete, pod label, namespace label), each flipping the verdict of one watched pair
//!    per node, timed from the write's response to the first probe of the new verdict
//!    ([`enforcement`]), cross-checked with weftd's `weft_policy_apply_duration_seconds`;
//! 2. pod ADD with policy against without, and against a weftd with no policy engine
//!    ([`admission`]);
//! 3. watch load of node 1's six weftd watches against a watch-everything design
//!    (all Pods, Namespaces, NetworkPolicies), counted on the apiserver's side
//!    ([`watches`]).
//!
//! ```text
//! e2e/bench-policy.sh [--nodes 5] [--pods 1000] [--namespaces 50] [--policies 500]
//!                     [--changes 120] [--add-pods 32] [--add-rounds 3] [--out PATH]
//! ```
#![allow(clippy::unwrap_used)]

mod admission;
mod enforcement;
mod fleet;
mod generate;
mod prober;
mod report;
mod throughput;
mod watches;

use clap::builder::RangedU64ValueParser as Ranged;
use clap::Parser as _;
use std::path::PathBuf;
use std::time::Instant;
use weft_e2e::bench::{machine_facts, publish};
use weft_e2e::{install_namespace_cleanup_hook, KubeBinaries};

/// NetworkPolicy change → enforcement, ADD with and without policy, watch load.
#[derive(Debug, clap::Parser)]
pub(crate) struct Args {
    /// Namespace nodes. The last one also runs the ADD benchmark, whose pods need room in
    /// its IPv4 /24: 1,000 generated pods fit on 5 nodes, not on 4.
    #[arg(long, default_value_t = 5, value_parser = Ranged::<usize>::new().range(2..=16))]
    nodes: usize,
    /// Generated pods, spread over nodes and namespaces (each node's IPv4 subnet is a
    /// /24: at most ~250 pods per node, the ADD benchmark's included).
    #[arg(long, default_value_t = 1000)]
    pods: usize,
    /// Generated namespaces.
    #[arg(long, default_value_t = 50, value_parser = Ranged::<usize>::new().range(1..))]
    namespaces: usize,
    /// Generated policies.
    #[arg(long, default_value_t = 500)]
    policies: usize,
    /// Sequential changes (the cycle has 8 kinds of steps).
    #[arg(long, default_value_t = 120)]
    changes: usize,
    /// Pods per ADD set.
    #[arg(long = "add-pods", default_value_t = 32, value_parser = Ranged::<usize>::new().range(1..))]
    add_pods: usize,
    /// Calls in flight in the parallel ADD scenario.
    #[arg(long, default_value_t = 16, value_parser = Ranged::<usize>::new().range(1..))]
    parallel: usize,
    /// ADD rounds (the subjects' order rotates; 4 subjects).
    #[arg(long = "add-rounds", default_value_t = 3, value_parser = Ranged::<usize>::new().range(1..))]
    add_rounds: usize,
    /// Fresh pods ADDed right after their Pod object's creation.
    #[arg(long, default_value_t = 20)]
    fresh: usize,
    /// Throughput alternations (each: no policy, the 20-policy profile, a standalone
    /// weftd); 0 skips the measurement.
    #[arg(long = "tput-runs", default_value_t = 2)]
    tput_runs: usize,
    /// Seconds per iperf3 run.
    #[arg(long = "tput-time", default_value_t = 3)]
    tput_time: u32,
    /// Also write the report here.
    #[arg(long)]
    out: Option<PathBuf>,
}

fn main() {
    let args = Args::parse();
    install_namespace_cleanup_hook();
    let (mut facts, _) = machine_facts("bench_policy");
    let began = Instant::now();
    eprintln!("bench_policy: starting {} nodes", args.nodes);
    let mut fleet = fleet::Fleet::start(args.nodes);
    let kubectl = KubeBinaries::find().kubectl.display().to_string();
    let node_one = fleet.node(0).name().to_owned();
    let streams = watches::Watches::start(fleet.kube_plane(), &kubectl, &node_one);
    let setup = load(&mut fleet, &args);
    facts.push(format!(
        "scale: {} nodes, {} generated pods in {} namespaces, {} generated policies; setup took {:.0} s",
        args.nodes,
        args.pods,
        args.namespaces,
        args.policies,
        setup.as_secs_f64()
    ));
    facts.push(generate::mix(args.policies));
    let watched = enforcement::Watched::start(&mut fleet, args.nodes);
    let apply_before = report::apply_histograms(&fleet);
    let before_changes = streams.snapshot();
    let changed_at = Instant::now();
    let samples = watched.run(&fleet, args.changes);
    let change_time = changed_at.elapsed();
    let after_changes = streams.snapshot();
    let apply_after = report::apply_histograms(&fleet);
    drop(watched);
    let rates = throughput::run(&mut fleet, args.tput_runs, args.tput_time);
    let adds = admission::run(
        &fleet,
        args.nodes - 1,
        args.add_pods,
        args.parallel,
        args.add_rounds,
        args.fresh,
    );
    facts.push(format!("whole run {:.0} s", began.elapsed().as_secs_f64()));
    let text = report::render(&report::Inputs {
        facts: &facts,
        samples: &samples,
        apply: (&apply_before, &apply_after),
        watch_names: streams.names(),
        watch_phases: [
            ("setup (pods, policies)", before_changes.clone()),
            (
                "changes",
                after_changes
                    .iter()
                    .zip(&before_changes)
                    .map(|(a, b)| *a - *b)
                    .collect(),
            ),
            ("whole run", streams.snapshot()),
        ],
        change_time,
        adds: &adds,
        rates: &rates,
    });
    publish("bench_policy", &text, args.out.as_deref());
}

/// Creates the generated namespaces, policies and pods (policies first, as a running
/// cluster has them when pods come and go); how long it took.
fn load(fleet: &mut fleet::Fleet, args: &Args) -> std::time::Duration {
    let began = Instant::now();
    fleet.create_all(&generate::namespaces(args.namespaces));
    let policies: Vec<_> = (0..args.policies)
        .map(|j| generate::policy(j, args.namespaces, args.nodes))
        .collect();
    fleet.create_all(&policies);
    eprintln!(
        "bench_policy: {} policies created; starting {} pods",
        args.policies, args.pods
    );
    let specs: Vec<fleet::PodSpec> = (0..args.pods)
        .map(|k| fleet::PodSpec {
            namespace: generate::namespace_name(k % args.namespaces),
            name: format!("p-{k:04}"),
            node: k % args.nodes,
            labels: generate::pod_labels(k),
        })
        .collect();
    for chunk in specs.chunks(200) {
        fleet.start_pods(chunk);
        eprintln!(
            "bench_policy: {} pods started ({:.0} s)",
            fleet.topology.pods.len(),
            began.elapsed().as_secs_f64()
        );
    }
    began.elapsed()
}
