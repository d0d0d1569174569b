//! Pod-to-pod throughput and round-trip time across two nodes: weft next to a
//! hand-built reference topology with the same hops made with plain `ip` commands, in
//! the same run on the same machine (issue 3: "iperf3 pod-to-pod across two nodes, single
//! stream and 4 streams, TCP, for IPv6 routed and IPv4 over VXLAN, beside a hand-built
//! reference topology ... Target >= 0.95 of the reference for both families; also the
//! round-trip latency").
//!
//! weft: `weft_e2e::Topology` with 2 nodes, `--mode dual --ipv6-routing direct`, a dual
//! underlay (so the VXLAN runs over IPv4), one pod per node added through the CNI binary.
//! The hops:
//!
//! ```text
//! pod A -veth- node A -veth(uplink)- bridge fabric0 (fabric ns) -veth(uplink)- node B -veth- pod B
//! IPv6: routed natively; node A routes pod B's /80 via node B's underlay IPv6
//! IPv4: node A routes pod B's /24 into weft-vxlan (VNI 1, UDP 4789, over IPv4)
//! ```
//!
//! Reference: the same namespaces and links built with `ip`/`bridge` only, as the issue-3
//! contract describes weft's state: the same pod addresses (read from weft's pods), the
//! pod's link MTU and per-family route MTUs read from weft's pod (`ip route`), pod /128
//! and /32 with link-local gateways and permanent neighbours both ways, host routes to
//! the pod, the peer /80 via the other node's underlay IPv6, a VXLAN device `weft-vxlan`
//! (same VNI, port, source, MTU, MAC and /32 address, `nolearning`), the peer /24 via the
//! peer's gateway `onlink`, a permanent neighbour and a permanent FDB entry; the VXLAN
//! device is bound to the uplink (`dev uplink`) as weftd binds its own. What weft
//! adds beyond that (its nftables NAT table, which turns on connection tracking in the
//! node) is not copied: it is part of what weft costs (the README's benchmark section
//! measured its share). The notes list both VXLAN devices' `ip -d` details so any
//! difference is visible.
//!
//! Measured: `iperf3 -c <pod B> -t 4 -O 1 -P {1,4}` (TCP; the first second is omitted,
//! receiver's rate) from pod A to pod B, per family and stream count; `ping -c 200 -i
//! 0.005` for the RTT (median and mean of the replies). Every run measures every cell
//! on both sides, back to back, alternating which side goes first (A B, B A, ...), so
//! drifts of a noisy 2-core machine spread evenly; the table shows medians over runs.
//! Before measuring, both sides must pass a ping of each family at the largest size the
//! MTU allows with fragmentation forbidden.
//!
//! ```text
//! e2e/bench-datapath.sh [--runs 4] [--time 4] [--omit 1] [--pings 200] [--mtu 1500]
//!                       [--out PATH] [--pod-guard]
//! ```
//!
//! `--pod-guard` measures weft against itself without its pod guard instead of against
//! the reference ([`ablation`]).
//!
//! This file runs the cells; [`plan`] holds what both topologies share (addresses,
//! MTUs), [`reference`] builds the hand-made one, [`measure`] runs iperf3 and ping, and
//! [`report`] the tables.
//!
//! Addresses are the topology's (documentation prefixes, 10.255.0.0/16) inside the
//! namespaces this program creates; everything is removed on exit (a panic hook removes
//! the namespaces too, since release builds abort on panic; e2e/bench-datapath.sh also
//! cleans up on Ctrl-C).
#![allow(clippy::unwrap_used)]

use clap::builder::RangedU64ValueParser as Ranged;
use clap::Parser as _;
use std::path::PathBuf;
use std::time::Duration;
use weft_e2e::bench::{publish, turns};
use weft_e2e::{install_namespace_cleanup_hook, Background, Topology, TopologyOptions, Underlay};

mod ablation;
mod measure;
mod plan;
mod reference;
mod report;

use ablation::PodGuardAblation;
use measure::{Cell, Samples, Side};
use plan::{link_details, one_line, vxlan_details, Family, Plan};
use reference::Reference;

/// The issue's target: weft's throughput at least this fraction of the reference's.
const TARGET_RATIO: f64 = 0.95;
/// Issue 16's: with the pod guard at least this fraction of without it.
const TARGET_GUARD_RATIO: f64 = 0.97;

fn main() {
    let args = Args::parse();
    install_namespace_cleanup_hook();
    let mut facts = report::machine_facts(&args);

    eprintln!("bench_datapath: starting the weft topology (2 nodes, 1 pod each)");
    let mut weft = Topology::start(TopologyOptions {
        nodes: 2,
        mode: "dual",
        ipv6_routing: "direct",
        underlay: Underlay::Dual,
        uplink_mtu: args.mtu,
        pods_per_node: 1,
        ..TopologyOptions::default()
    });
    weft.wait_converged(Duration::from_secs(30));
    let plan = Plan::from_weft(&weft);
    eprintln!("bench_datapath: building the reference topology with ip commands");
    let reference = Reference::build(&plan);
    let facts_before = weft_facts(&weft, &reference);
    if args.pod_guard {
        // Nothing may restore the chain while it is out (see [`ablation`]).
        for node in &mut weft.nodes {
            node.stop();
        }
    }
    let weft = &weft;
    let ablation = args.pod_guard.then(|| PodGuardAblation::take(weft));
    let second = match &ablation {
        Some(_) => Side {
            label: "no guard",
            client: &weft.pods_of(0)[0].netns,
            server: &weft.pods_of(1)[0].netns,
        },
        None => Side {
            label: "reference",
            client: &reference.pods[0],
            server: &reference.pods[1],
        },
    };
    let sides = [
        Side {
            label: "weft",
            client: &weft.pods_of(0)[0].netns,
            server: &weft.pods_of(1)[0].netns,
        },
        second,
    ];
    // Side 0 is weft as it is; side 1 without the guard when ablating.
    let prepare = |si: usize| {
        if let Some(ablation) = &ablation {
            ablation.set(si == 0);
        }
    };
    for (si, side) in sides.iter().enumerate() {
        prepare(si);
        side.check_path(&plan);
    }
    facts.extend(plan.facts());
    facts.extend(facts_before);
    facts.extend(ablation.as_ref().map(PodGuardAblation::fact));

    let servers: Vec<Background> = sides.iter().map(Side::serve).collect();
    let cells = [
        Cell::new(Family::V6, 1),
        Cell::new(Family::V6, 4),
        Cell::new(Family::V4, 1),
        Cell::new(Family::V4, 4),
    ];
    let mut samples = Samples::default();
    for run in 0..args.runs {
        for (ci, cell) in cells.iter().enumerate() {
            for si in turns(run + ci, 2) {
                prepare(si);
                let side = &sides[si];
                eprintln!(
                    "bench_datapath: run {}/{} {} x{} {}",
                    run + 1,
                    args.runs,
                    cell.family.label(),
                    cell.streams,
                    side.label
                );
                let r = side.iperf(&plan, cell, &args);
                samples.throughput[ci][si].push(r);
            }
        }
        for (fi, family) in Family::BOTH.into_iter().enumerate() {
            for si in turns(run + fi, 2) {
                prepare(si);
                let rtt = sides[si].ping(&plan, family, args.pings);
                samples.rtt[fi][si].push(rtt);
            }
        }
    }
    drop(servers);

    let report = report::render(&args, &facts, &cells, &samples);
    publish("bench_datapath", &report, args.out.as_deref());
    drop(ablation);
    drop(reference);
}

/// What the report says of both topologies' nodes: nftables, VXLAN devices, host veths.
fn weft_facts(weft: &Topology, reference: &Reference) -> Vec<String> {
    let weft_host = weft.nodes[0].weft_veths().pop().unwrap_or_default();
    vec![
        format!(
            "weft node A nftables: {}",
            one_line(&weft.nodes[0].netns.run("nft", &["list", "tables"]).stdout)
        ),
        format!(
            "reference node A nftables: {}",
            one_line(&reference.nodes[0].run("nft", &["list", "tables"]).stdout)
        ),
        format!(
            "weft-vxlan on weft node A: {}",
            vxlan_details(&weft.nodes[0].netns)
        ),
        format!(
            "weft-vxlan on reference node A: {}",
            vxlan_details(&reference.nodes[0])
        ),
        format!(
            "pod A's host veth on weft node A: {}",
            link_details(&weft.nodes[0].netns, &weft_host)
        ),
        format!(
            "pod A's host veth on reference node A: {}",
            link_details(&reference.nodes[0], "refpod1")
        ),
    ]
}

// ---- command line -----------------------------------------------------------------

/// Pod-to-pod throughput and RTT across two nodes: weft beside the same hops made with
/// `ip` (see the module documentation).
#[derive(Debug, clap::Parser)]
struct Args {
    /// Runs; every run measures every cell on both sides.
    #[arg(long, default_value_t = 4, value_parser = Ranged::<usize>::new().range(1..))]
    runs: usize,
    /// iperf3 seconds per cell.
    #[arg(long, default_value_t = 4, value_parser = Ranged::<u32>::new().range(1..))]
    time: u32,
    /// iperf3's omitted first seconds.
    #[arg(long, default_value_t = 1)]
    omit: u32,
    /// Pings per RTT series.
    #[arg(long, default_value_t = 200, value_parser = Ranged::<u32>::new().range(1..))]
    pings: u32,
    /// The uplinks' MTU.
    #[arg(long, default_value_t = 1500, value_parser = Ranged::<u32>::new().range(1280..=9000))]
    mtu: u32,
    /// Also write the report here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Measure weft against weft without its pod guard (same namespaces, same run)
    /// instead of against the reference.
    #[arg(long = "pod-guard")]
    pod_guard: bool,
}
