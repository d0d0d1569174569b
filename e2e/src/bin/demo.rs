//! weft's demo (`sudo ./e2e/demo.sh`): a local control plane (etcd and kube-apiserver)
//! with weft-controller, three namespace nodes on a routed underlay running weftd in
//! Kubernetes mode, two pods per node wired by the real CNI plugin; `kubectl get` of the
//! allocations, then every pod pings every other pod over both families. IPv4 crosses
//! nodes over weft's VXLAN overlay, IPv6 is routed natively (the fabric routes each
//! node's /80 to it). `--standalone` runs weftd with peers files instead, no apiserver.
//! Everything it creates is removed when it ends, also on Ctrl-C or a failure.
//!
//! ```text
//! demo [--standalone] [--nodes 3] [--pods 2] [--ipv6-routing fabric|direct] [--underlay dual|ipv6]
//! ```
#![allow(clippy::unwrap_used)] // a demo: a failed step ends it, and Drop cleans up

use std::time::{Duration, Instant};
use weft_e2e::{stop_requested, watch_stop_signals, Topology, TopologyOptions, Underlay};

fn main() {
    watch_stop_signals("demo");
    let options = parse_args();
    let code = run(options);
    std::process::exit(code);
}

fn parse_args() -> TopologyOptions {
    let mut options = TopologyOptions {
        nodes: 3,
        pods_per_node: 2,
        kubernetes: true,
        ..TopologyOptions::default()
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        if flag == "--standalone" {
            options.kubernetes = false;
            continue;
        }
        let value = it.next().map(String::as_str).unwrap_or_default();
        match (flag.as_str(), value) {
            ("--nodes", n) => options.nodes = n.parse().expect("--nodes N"),
            ("--pods", n) => options.pods_per_node = n.parse().expect("--pods N"),
            ("--ipv6-routing", "fabric") => options.ipv6_routing = "fabric",
            ("--ipv6-routing", "direct") => options.ipv6_routing = "direct",
            ("--underlay", "dual") => options.underlay = Underlay::Dual,
            ("--underlay", "ipv6") => options.underlay = Underlay::Ipv6,
            _ => {
                eprintln!(
                    "usage: demo [--standalone] [--nodes N] [--pods N] \
                     [--ipv6-routing fabric|direct] [--underlay dual|ipv6]"
                );
                std::process::exit(2);
            }
        }
    }
    options
}

/// In Kubernetes mode: the plan, the allocations, the claims and the Nodes' podCIDRs,
/// as an operator sees them.
fn show_kubernetes(topology: &Topology) {
    let Some(kube) = &topology.kube else {
        return;
    };
    // weftd reports address use at most every 10 s: wait for the pods to show.
    let want = format!("{}/254", topology.options.pods_per_node);
    let _ = weft_e2e::wait_until("usage reports", Duration::from_secs(15), || {
        let out = kube.control_plane.kubectl(&["get", "weftnodes"]);
        String::from_utf8_lossy(&out.stdout).matches(&want).count() == topology.nodes.len()
    });
    say(&format!(
        "the cluster as kubectl shows it (apiserver {}, weft-controller allocating)",
        kube.control_plane.server()
    ));
    for args in [
        &["get", "weftnetworks"][..],
        &["get", "weftnodes", "-o", "wide"],
        &[
            "get",
            "weftclaimblocks",
            "-o",
            "custom-columns=BLOCK:.metadata.name,RANGES:.spec.claims[*].cidr,NODES:.spec.claims[*].nodeName",
        ],
        &[
            "get",
            "nodes",
            "-o",
            "custom-columns=NODE:.metadata.name,ZONE:.metadata.labels.topology\\.kubernetes\\.io/zone,POD CIDRS:.spec.podCIDRs",
        ],
    ] {
        println!("  $ kubectl {}", args.join(" "));
        let out = kube.control_plane.kubectl(args);
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            println!("    {line}");
        }
    }
}

fn say(text: &str) {
    println!("\n\x1b[1m== {text}\x1b[0m");
}

/// The demo; its exit code. The topology is dropped (cleaned up) before it returns.
fn run(options: TopologyOptions) -> i32 {
    let vxlan = match options.underlay {
        Underlay::Ipv6 => "VXLAN over IPv6",
        _ => "VXLAN over IPv4",
    };
    let source = if options.kubernetes {
        "Kubernetes mode: kube-apiserver + weft-controller on 2001:db8:ffff::2 allocate the ranges"
    } else {
        "standalone: ranges and peers files given"
    };
    say(&format!(
        "{} nodes on a routed underlay (fabric router 192.0.2.1, 2001:db8:ffff::1), {source}; \
         dual-stack pods, IPv6 {} routing, IPv4 over {vxlan}",
        options.nodes, options.ipv6_routing
    ));
    let started = Instant::now();
    let topology = Topology::start(options);
    for (i, node) in topology.nodes.iter().enumerate() {
        let underlay: Vec<String> = [topology.underlay_v4(i), topology.underlay_v6(i)]
            .into_iter()
            .flatten()
            .collect();
        println!(
            "  {:<7} underlay {:<32} pods {} + {}",
            node.name(),
            underlay.join(", "),
            topology.ipv6_prefix(i),
            topology.ipv4_subnet(i)
        );
    }
    if stop_requested() {
        return 130;
    }
    topology.wait_converged(Duration::from_secs(20));
    say(&format!(
        "{} pods wired by the CNI plugin, every node converged to its peers ({} ms in all)",
        topology.pods.len(),
        started.elapsed().as_millis()
    ));
    for pod in &topology.pods {
        println!(
            "  {:<9} on {:<7} {:<22} {}",
            pod.id,
            topology.nodes[pod.node].name(),
            pod.v6.as_deref().unwrap_or("-"),
            pod.v4.as_deref().unwrap_or("-")
        );
    }
    show_node_state(&topology);
    show_kubernetes(&topology);
    if stop_requested() {
        return 130;
    }

    say("ping matrix: every pod to every other pod, both families");
    let outcomes = topology.ping_matrix();
    for o in &outcomes {
        println!("  {o}");
    }
    let ok = outcomes.iter().filter(|o| o.ok).count();
    let cross = outcomes.iter().filter(|o| o.ok && !o.same_node).count();
    say(&format!(
        "{ok} of {} pings answered ({cross} of them across nodes)",
        outcomes.len()
    ));
    if stop_requested() {
        return 130;
    }
    if ok == outcomes.len() {
        0
    } else {
        1
    }
}

/// What weftd put into node 1's kernel for its peers, and its peer metrics.
fn show_node_state(topology: &Topology) {
    let node = &topology.nodes[0];
    say(&format!(
        "{}: weft's routes (proto 119), overlay neighbours and FDB",
        node.name()
    ));
    let fdb = node
        .netns
        .run("bridge", &["fdb", "show", "dev", "weft-vxlan"]);
    let text = [
        node.netns.ip(&["route", "show", "proto", "119"]),
        node.netns.ip(&["-6", "route", "show", "proto", "119"]),
        node.netns.ip(&["neigh", "show", "dev", "weft-vxlan"]),
        String::from_utf8_lossy(&fdb.stdout).into_owned(),
    ]
    .concat();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        println!("  {line}");
    }
    let fabric = topology
        .fabric
        .ip(&["-6", "route", "show", "root", "2001:db8:1000::/48"]);
    if !fabric.trim().is_empty() {
        println!("  (the fabric routes the pods' IPv6 prefixes:)");
        for line in fabric.lines() {
            println!("    {line}");
        }
    }
    let (_, body) = node.http_get("/metrics");
    for line in body
        .lines()
        .filter(|l| l.starts_with("weft_peers_") || l.starts_with("weft_routes_installed"))
    {
        println!("  {line}");
    }
}
