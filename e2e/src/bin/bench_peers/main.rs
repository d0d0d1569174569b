//! Peer-scale convergence of weftd next to the same kernel state installed by `ip -batch`
//! and `bridge -batch`, side by side in one run on one machine (issue 3: "converging
//! 5,000 peers from empty completes in <= 10 s with weftd RSS <= 40 MiB; one peer change
//! costs O(1) netlink work, not a full resync").
//!
//! Each scenario is one node namespace with an uplink veth (`uplink`, up, its peer end
//! up too) and a peers file of N synthetic peers (5,000 by default). Peer i (1..=N):
//! `ipv6Prefix` 2001:db8:1000:<i hex>::/80, `ipv4Subnet` 10.<i / 256>.<i % 256>.0/24,
//! `underlayIPv6` 2001:db8:ffff::1:<i hex>. The node itself holds 2001:db8:1000::/80 and
//! 10.0.0.0/24. Two underlays:
//!
//! - `ipv4`: the uplink has 192.0.2.10/24 and 2001:db8:ffff::10/64, so the VXLAN runs over
//!   IPv4. Peers also carry an `underlayIPv4`; the documentation prefix has room for only
//!   240 of them, so peer i gets 192.0.2.(11 + (i - 1) % 240): several peers share an
//!   underlay address, which is fine for the kernel (FDB entries are keyed by VTEP MAC,
//!   neighbours by overlay gateway).
//! - `ipv6`: the uplink has only 2001:db8:ffff::10/64; VXLAN over IPv6, every peer's FDB
//!   destination is its own `underlayIPv6`.
//!
//! weftd runs `--mode dual --ipv6-routing direct`, so per peer it owns 4 kernel objects:
//! the IPv4 route via the peer's overlay gateway on `weft-vxlan`, the permanent neighbour
//! of that gateway, the permanent FDB entry of the peer's VTEP MAC, and the IPv6 route to
//! the peer's prefix via its underlay address. Its nftables tables (`ip weft-nat`:
//! egress NAT; `inet weft`: untracked tunnel packets) name no peer: created once at
//! start, never touched by a peer change.
//!
//! Measured, per round (rounds interleave weft and the anchor, A B B A ...):
//!
//! - weft, from empty: the wall time from spawning weftd (`ip netns exec`, so the
//!   process and its start-up are included) until its /metrics show
//!   `weft_peers_programmed == N`, polled from inside the namespace every 20 ms (the
//!   time resolution). Then, untimed, the kernel is checked: `ip -4/-6 route show proto
//!   119`, `ip neigh show dev weft-vxlan nud permanent`, `bridge fdb show dev weft-vxlan`
//!   must each hold N entries. weftd's own `weft_convergence_duration_seconds{kind="full"}`
//!   is reported beside the wall time, and its peak RSS (`VmHWM`) after everything.
//! - weft, one peer change: one peer's `ipv4Subnet` moves to a fresh /24 and the file is
//!   rewritten atomically (temp file + rename). Timed from the rename until the
//!   incremental-convergence histogram counts one more pass (wall time, so it includes
//!   weftd's file poll, up to ~250 ms), beside weftd's own duration of that pass. The
//!   kernel is then checked: the new route, neighbour and FDB entry present, the old ones
//!   gone, every count still N. `ip monitor` and `bridge monitor` run through all changes:
//!   the kernel change events per peer change are the O(1) evidence on the kernel's side;
//!   a last, untimed change runs under `strace` and counts weftd's netlink syscalls and
//!   bytes, beside the bytes a dump of the same state costs (the O(1) evidence on
//!   weftd's side).
//! - anchor, from empty: in a fresh namespace with the same uplink, one `ip -batch` file
//!   (create `weft-vxlan` as the contract describes, its address, then per peer the IPv4
//!   route, the neighbour and the IPv6 route) and one `bridge -batch` file (the FDB
//!   entries), timed together from the first spawn until both exited; `nft -f` of
//!   weftd's own table (the script weftd's first firewall pass runs,
//!   [`anchor::weftd_table`]) is timed separately and shown in its own column, so that
//!   column does the work weftd does. The notes say whether the two sides' `nft list
//!   ruleset` are the same.
//! - anchor, one peer change: the same change as `ip -batch` (delete + add route and
//!   neighbour) and `bridge -batch` (delete + add FDB entry); like weftd's, it touches no
//!   nftables.
//!
//! This file runs the scenarios; [`cluster`] holds the synthetic peers and the node
//! namespace, [`kernel`] what the kernel holds, [`weft`] weftd's rounds, [`trace`] its
//! netlink traffic under strace, [`anchor`] the batches, and [`report`] the table.
//!
//! weftd runs with `--resync-seconds 3600` so that no periodic full resync falls into a
//! measurement. Addresses are documentation prefixes and 10.0.0.0/8, only inside the
//! namespaces this program creates; everything is removed on exit (a panic hook removes
//! the namespaces too, since release builds abort on panic; e2e/bench-peers.sh also
//! cleans up on Ctrl-C).
//!
//! ```text
//! e2e/bench-peers.sh [--peers 5000] [--rounds 3] [--changes 5] [--underlay ipv4|ipv6|both]
//!                    [--anchor-only] [--out PATH]
//! ```
#![allow(clippy::unwrap_used)]
use clap::builder::RangedU64ValueParser as Ranged;
use clap::Parser as _;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;
use weft_e2e::bench::{publish, turns};
use weft_e2e::install_namespace_cleanup_hook;

mod anchor;
mod cluster;
mod kernel;
mod report;
mod trace;
mod weft;

use anchor::{anchor_round, AnchorRound};
use cluster::{peers, Underlay};
use weft::{weft_round, WeftRound};

/// The issue's targets.
const TARGET_CONVERGENCE: Duration = Duration::from_secs(10);
const TARGET_RSS_KIB: u64 = 40 * 1024;

/// The node's own ranges and uplink addresses.
const NODE_PREFIX: &str = "2001:db8:1000::/80";
const NODE_SUBNET: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 0);
const NODE_V4: &str = "192.0.2.10";
const NODE_V6: &str = "2001:db8:ffff::10";
/// weftd's default VXLAN parameters (the contract's defaults; the anchor uses the same).
const VNI: u32 = 1;
const VXLAN_PORT: u16 = 4789;
/// How often /metrics is polled while waiting.
const POLL: Duration = Duration::from_millis(20);
/// How long convergence may take before the round is reported as failed (3x the target).
const CONVERGENCE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one peer change may take (the file poll is ~250 ms).
const CHANGE_TIMEOUT: Duration = Duration::from_secs(10);

fn main() {
    let args = Args::parse();
    install_namespace_cleanup_hook();
    let facts = report::machine_facts(&args);
    let results: Vec<ScenarioResult> = args
        .underlay
        .list()
        .into_iter()
        .map(|underlay| run_scenario(&args, underlay))
        .collect();
    let report = report::render(&args, &facts, &results);
    publish("bench_peers", &report, args.out.as_deref());
}

// ---- command line -----------------------------------------------------------------

/// Converging thousands of peers: weftd beside `ip -batch` and `bridge -batch` (see the
/// module documentation).
#[derive(Debug, clap::Parser)]
struct Args {
    /// Peers in the synthetic cluster (subnets 10.0.1.0/24 .. stay below 10.200.0.0,
    /// where changed subnets go; prefixes need an index up to 0xffff).
    #[arg(long, default_value_t = 5000, value_parser = Ranged::<u32>::new().range(1..=50_000))]
    peers: u32,
    /// Rounds.
    #[arg(long, default_value_t = 3, value_parser = Ranged::<usize>::new().range(1..))]
    rounds: usize,
    /// Single-peer changes timed per round.
    #[arg(long, default_value_t = 5, value_parser = Ranged::<u32>::new().range(1..=200))]
    changes: u32,
    /// The underlays measured.
    #[arg(long = "underlay", value_enum, default_value_t = Underlays::Both)]
    underlay: Underlays,
    /// Only the `ip -batch` anchor.
    #[arg(long)]
    anchor_only: bool,
    /// Also write the report here.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// `--underlay`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Underlays {
    Ipv4,
    Ipv6,
    Both,
}

impl Underlays {
    fn list(self) -> Vec<Underlay> {
        match self {
            Underlays::Ipv4 => vec![Underlay::Ipv4],
            Underlays::Ipv6 => vec![Underlay::Ipv6],
            Underlays::Both => vec![Underlay::Ipv4, Underlay::Ipv6],
        }
    }
}

// ---- one scenario -----------------------------------------------------------------

#[derive(Debug)]
struct ScenarioResult {
    underlay: Underlay,
    weft: Vec<WeftRound>,
    anchor: Vec<AnchorRound>,
    /// One weft round with a tenth of the peers: a change must cost the same there.
    small: Option<WeftRound>,
    small_n: usize,
}

fn run_scenario(args: &Args, underlay: Underlay) -> ScenarioResult {
    let peers = peers(args.peers, underlay);
    let mut result = ScenarioResult {
        underlay,
        weft: Vec::new(),
        anchor: Vec::new(),
        small: None,
        small_n: (args.peers as usize / 10).max(10).min(args.peers as usize),
    };
    // Nodes stay until the scenario is done: deleting a namespace with 20,000 objects
    // makes the kernel tear it down in the background, which would compete with the
    // next measurement.
    let (mut nodes, mut namespaces) = (Vec::new(), Vec::new());
    for round in 0..args.rounds {
        // A B, B A, A B ...: each side goes first equally often.
        for side in turns(round, 2) {
            let is_weft = side == 0;
            // A weftd that did not converge once is not timed again (each try would
            // cost the whole timeout); the report says so.
            let weft_failed = result.weft.iter().any(|w| w.converge.is_none());
            let which = if is_weft { "weft" } else { "anchor" };
            if is_weft && args.anchor_only {
                continue;
            } else if is_weft && weft_failed {
                eprintln!("bench_peers: weft round skipped: an earlier round did not converge");
                continue;
            }
            eprintln!(
                "bench_peers: {} round {}/{} {which}",
                underlay.label(),
                round + 1,
                args.rounds
            );
            if is_weft {
                let (node, r) = weft_round(args, underlay, &peers);
                result.weft.push(r);
                nodes.push(node);
            } else {
                let (ns, r) = anchor_round(args, underlay, &peers);
                result.anchor.push(r);
                namespaces.push(ns);
            }
            settle();
        }
    }
    if !args.anchor_only {
        eprintln!(
            "bench_peers: {} weft with {} peers (the O(1) comparison)",
            underlay.label(),
            result.small_n
        );
        let small = &peers[..result.small_n];
        let (node, r) = weft_round(args, underlay, small);
        result.small = Some(r);
        nodes.push(node);
    }
    drop(nodes);
    drop(namespaces);
    settle();
    result
}

/// Lets background work of the previous step (namespace teardown, page cache) finish.
fn settle() {
    std::thread::sleep(Duration::from_millis(500));
}
