//! Several nodes, real kernel: weftd converges each node to its peers file and pods reach
//! each other across nodes, IPv4 over VXLAN and IPv6 routed (by the fabric or by weftd),
//! at the pod MTU, through weftd restarts and peer removals; IPv4 egress is SNATed to the
//! node while IPv6 keeps the pod's address. The topology is `weft_e2e::Topology`: node N
//! has underlay 192.0.2.(10+N) / 2001:db8:ffff::(10+N), pods from 2001:db8:1000:N::/80
//! and 10.255.N.0/24.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::time::Duration;
use weft_e2e::{
    iperf3_client, iperf3_remote_host, iperf3_server, tcp_transfer, wait_until, Background, Pod,
    Topology, TopologyOptions, Underlay, EXTERNAL_V4, EXTERNAL_V6,
};

const CONVERGE: Duration = Duration::from_secs(20);

fn converged(options: TopologyOptions) -> Topology {
    let topology = Topology::start(options);
    topology.wait_converged(CONVERGE);
    topology
}

/// Every pod reaches every other pod on every address; the failures listed otherwise.
fn assert_full_matrix(topology: &Topology) {
    let outcomes = topology.ping_matrix();
    let pods = topology.pods.len();
    let families = topology.pods[0].addrs().len();
    assert_eq!(outcomes.len(), pods * (pods - 1) * families);
    let failed: Vec<String> = outcomes
        .iter()
        .filter(|o| !o.ok)
        .map(ToString::to_string)
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} pings failed:\n{}\n{}",
        failed.len(),
        outcomes.len(),
        failed.join("\n"),
        logs(topology)
    );
}

fn logs(topology: &Topology) -> String {
    topology
        .nodes
        .iter()
        .map(|n| format!("--- weftd log of {}:\n{}", n.name(), n.log()))
        .collect()
}

/// `ip ARGS` in node i.
fn ip(topology: &Topology, i: usize, args: &[&str]) -> String {
    topology.nodes[i].netns.ip(args)
}

/// weft's IPv4 overlay on node i matches the contract for every other node: route via
/// the peer's gateway, permanent neighbour to its VTEP MAC, FDB entry to its underlay.
fn assert_overlay_programmed(topology: &Topology, i: usize, vxlan_over_v6: bool) {
    let routes = ip(topology, i, &["-4", "route", "show", "proto", "119"]);
    let neigh = ip(topology, i, &["neigh", "show", "dev", "weft-vxlan"]);
    let fdb = topology.nodes[i]
        .netns
        .run("bridge", &["fdb", "show", "dev", "weft-vxlan"]);
    let fdb = String::from_utf8_lossy(&fdb.stdout);
    for p in (0..topology.nodes.len()).filter(|&p| p != i) {
        let (subnet, gw, mac) = (
            topology.ipv4_subnet(p),
            topology.overlay_gateway(p),
            topology.vtep_mac(p),
        );
        assert!(
            routes.contains(&format!("{subnet} via {gw} dev weft-vxlan")),
            "node {} lacks the route to {subnet}:\n{routes}",
            i + 1
        );
        assert!(
            neigh.contains(&format!("{gw} lladdr {mac} PERMANENT")),
            "node {} lacks the neighbour {gw}:\n{neigh}",
            i + 1
        );
        let dst = if vxlan_over_v6 {
            topology.underlay_v6(p)
        } else {
            topology.underlay_v4(p)
        };
        let want = format!("{mac} dst {}", dst.unwrap());
        assert!(
            fdb.contains(&want),
            "node {} lacks fdb {want}:\n{fdb}",
            i + 1
        );
    }
    let link = ip(topology, i, &["-d", "link", "show", "weft-vxlan"]);
    let local = if vxlan_over_v6 {
        topology.underlay_v6(i)
    } else {
        topology.underlay_v4(i)
    };
    assert!(
        link.contains(&format!("local {}", local.unwrap())) && link.contains("nolearning"),
        "{link}"
    );
}

/// The fabric's routes to pod prefixes.
fn fabric_pod_routes(topology: &Topology) -> String {
    topology
        .fabric
        .ip(&["-6", "route", "show", "root", "2001:db8:1000::/48"])
}

#[test]
fn topology_underlay_is_wired_as_documented() {
    let topology = Topology::start(TopologyOptions {
        nodes: 2,
        ..TopologyOptions::default()
    });
    let node = &topology.nodes[0].netns;
    for addr in [
        "192.0.2.1",
        "2001:db8:ffff::1",
        "192.0.2.12",
        "2001:db8:ffff::12",
    ] {
        assert!(node.ping(addr), "node 1 reaches {addr} on the underlay");
    }
    assert!(node.ping(EXTERNAL_V4) && node.ping(EXTERNAL_V6));
    let routes = fabric_pod_routes(&topology);
    assert!(
        routes.contains("2001:db8:1000:1::/80 via 2001:db8:ffff::11")
            && routes.contains("2001:db8:1000:2::/80 via 2001:db8:ffff::12"),
        "fabric mode: the fabric routes each node's /80:\n{routes}"
    );
    // The external host cannot answer un-NATed overlay IPv4.
    let out = topology.external.run("ip", &["route", "get", "10.255.1.1"]);
    assert!(
        !out.status.success(),
        "external must have no route to 10.255/16"
    );
    let peers: serde_json::Value =
        serde_json::from_slice(&std::fs::read(topology.peers_file(0)).unwrap()).unwrap();
    assert_eq!(
        peers.as_array().unwrap().len(),
        2,
        "the file lists node 1 itself too"
    );
    assert_eq!(peers[1]["underlayIPv4"], "192.0.2.12");
    assert_eq!(peers[1]["ipv6Prefix"], "2001:db8:1000:2::/80");
}

#[test]
fn matrix_dual_stack_ipv6_fabric_over_an_ipv4_underlay() {
    let topology = converged(TopologyOptions {
        pods_per_node: 3,
        ..TopologyOptions::default()
    });
    assert_full_matrix(&topology);
    for i in 0..3 {
        assert_overlay_programmed(&topology, i, false);
        // Its own prefix's unreachable route aside (type unreachable, not unicast).
        let v6 = ip(
            &topology,
            i,
            &["-6", "route", "show", "proto", "119", "type", "unicast"],
        );
        assert!(
            v6.trim().is_empty(),
            "fabric mode: weftd adds no IPv6 routes to peers:\n{v6}"
        );
    }
}

#[test]
fn matrix_dual_stack_ipv6_direct_over_an_ipv4_underlay() {
    let topology = converged(TopologyOptions {
        ipv6_routing: "direct",
        pods_per_node: 3,
        ..TopologyOptions::default()
    });
    let fabric = fabric_pod_routes(&topology);
    assert!(
        fabric.trim().is_empty(),
        "direct mode: only weftd's routes may carry pod IPv6:\n{fabric}"
    );
    assert_full_matrix(&topology);
    for i in 0..3 {
        assert_overlay_programmed(&topology, i, false);
        let v6 = ip(&topology, i, &["-6", "route", "show", "proto", "119"]);
        for p in (0..3).filter(|&p| p != i) {
            let want = format!(
                "{} via {} dev uplink",
                topology.ipv6_prefix(p),
                topology.underlay_v6(p).unwrap()
            );
            assert!(v6.contains(&want), "node {}: {want} missing:\n{v6}", i + 1);
        }
    }
}

#[test]
fn matrix_dual_stack_over_an_ipv6_underlay() {
    let topology = converged(TopologyOptions {
        underlay: Underlay::Ipv6,
        pods_per_node: 3,
        ..TopologyOptions::default()
    });
    for i in 0..3 {
        let addrs = ip(&topology, i, &["-4", "addr", "show", "dev", "uplink"]);
        assert!(
            addrs.trim().is_empty(),
            "an IPv6 underlay has no IPv4: {addrs}"
        );
        assert_overlay_programmed(&topology, i, true);
    }
    assert_full_matrix(&topology);
}

#[test]
fn ipv6_only_cluster() {
    let topology = converged(TopologyOptions {
        mode: "ipv6",
        ipv6_routing: "direct",
        underlay: Underlay::Ipv6,
        pods_per_node: 2,
        ..TopologyOptions::default()
    });
    assert!(topology.pods.iter().all(|p| p.v4.is_none()));
    assert_full_matrix(&topology);
    let out = topology.nodes[0]
        .netns
        .run("ip", &["link", "show", "weft-vxlan"]);
    assert!(!out.status.success(), "no VXLAN device without IPv4");
}

#[test]
fn ipv4_only_cluster() {
    let topology = converged(TopologyOptions {
        mode: "ipv4",
        underlay: Underlay::Ipv4,
        pods_per_node: 2,
        ..TopologyOptions::default()
    });
    assert!(topology.pods.iter().all(|p| p.v6.is_none()));
    assert_full_matrix(&topology);
    for i in 0..3 {
        assert_overlay_programmed(&topology, i, false);
    }
    assert_eq!(pod_mtus(&topology.pods[0]), (1450, None));
}

/// (pod link MTU, MTU of the pod's IPv4 default route when it sets one), from the result.
fn pod_mtus(pod: &Pod) -> (u64, Option<u64>) {
    let r = &pod.result;
    let eth0 = r["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["sandbox"].is_string())
        .unwrap();
    let v4_route = r["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["dst"] == "0.0.0.0/0")
        .and_then(|r| r["mtu"].as_u64());
    (eth0["mtu"].as_u64().unwrap(), v4_route)
}

/// Largest DF pings pass and one byte more fails, per family, from node 1's pod to node
/// 2's; then a TCP transfer per family delivers every byte.
fn assert_mtu_and_tcp(topology: &Topology, v4_mtu: u32) {
    let (a, b) = (&topology.pods[0], &topology.pods[1]);
    assert_ne!(a.node, b.node);
    assert_eq!(pod_mtus(a), (1500, Some(u64::from(v4_mtu))));
    let (v4, v6) = (b.v4.as_deref().unwrap(), b.v6.as_deref().unwrap());
    // IPv4: 20 IP + 8 ICMP; IPv6: 40 + 8. IPv6 is routed natively at the full 1500.
    assert!(
        a.ping_sized(v4, v4_mtu - 28),
        "IPv4 at {v4_mtu}\n{}",
        logs(topology)
    );
    assert!(
        !a.ping_sized(v4, v4_mtu - 27),
        "IPv4 one byte over {v4_mtu}"
    );
    assert!(
        a.ping_sized(v6, 1500 - 48),
        "IPv6 at 1500\n{}",
        logs(topology)
    );
    assert!(!a.ping_sized(v6, 1500 - 47), "IPv6 one byte over 1500");
    // (Echo replies carry the request's payload: the way back is as full as the way out.)

    for addr in [v6, v4] {
        tcp_transfer(&a.netns, &b.netns, addr, 32 << 20)
            .unwrap_or_else(|e| panic!("{e}\n{}", logs(topology)));
    }
    assert_ipv6_untracked(topology);
}

/// The connections the kernel tracks in node i, one line per entry (`ipv4 2 tcp ...`,
/// `ipv6 10 icmpv6 ...`).
fn conntrack_entries(topology: &Topology, i: usize) -> Vec<String> {
    let out = topology.nodes[i]
        .netns
        .run("cat", &["/proc/net/nf_conntrack"]);
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// After pod-to-pod traffic of both families, the nodes track IPv4 flows (weft's
/// egress NAT needs conntrack) but not one IPv6 flow: weft never NATs IPv6, and NAT in
/// a table of both families would make the kernel track every forwarded IPv6 packet.
fn assert_ipv6_untracked(topology: &Topology) {
    for i in 0..topology.nodes.len() {
        let entries = conntrack_entries(topology, i);
        let of = |family: &str| {
            entries
                .iter()
                .filter(|e| e.split_whitespace().next() == Some(family))
                .count()
        };
        let rules = topology.nodes[i].netns.run("nft", &["list", "ruleset"]);
        let rules = String::from_utf8_lossy(&rules.stdout);
        assert!(of("ipv4") > 0, "node {i} tracks no IPv4 flow:\n{rules}");
        assert_eq!(
            of("ipv6"),
            0,
            "node {i} tracks IPv6:\n{}\n{rules}",
            entries.join("\n")
        );
    }
}

#[test]
fn mtu_is_exact_and_tcp_flows_over_an_ipv4_underlay() {
    let topology = converged(TopologyOptions {
        nodes: 2,
        pods_per_node: 1,
        ..TopologyOptions::default()
    });
    assert_mtu_and_tcp(&topology, 1450);
}

#[test]
fn mtu_is_exact_and_tcp_flows_over_an_ipv6_underlay() {
    let topology = converged(TopologyOptions {
        nodes: 2,
        ipv6_routing: "direct",
        underlay: Underlay::Ipv6,
        pods_per_node: 1,
        ..TopologyOptions::default()
    });
    assert_mtu_and_tcp(&topology, 1430);
}

#[test]
fn removing_a_peer_cleans_up_its_state_and_keeps_the_others() {
    let mut topology = converged(TopologyOptions {
        ipv6_routing: "direct",
        pods_per_node: 1,
        ..TopologyOptions::default()
    });
    let node1 = &topology.nodes[0];
    let state = |node: &weft_e2e::Node| {
        let fdb = node
            .netns
            .run("bridge", &["fdb", "show", "dev", "weft-vxlan"]);
        [
            node.netns.ip(&["route", "show", "proto", "119"]),
            node.netns.ip(&["-6", "route", "show", "proto", "119"]),
            node.netns.ip(&["neigh", "show", "dev", "weft-vxlan"]),
            String::from_utf8_lossy(&fdb.stdout).into_owned(),
        ]
    };
    // What node 3 leaves behind on node 1, per kind of state (same order as `state`).
    let node3 = [
        "10.255.3.0/24",
        "2001:db8:1000:3::/80",
        "10.255.3.0 ",
        "ee:ee:0a:ff:03:00",
    ];
    let before = state(node1);
    for (text, needle) in before.iter().zip(node3) {
        assert!(
            text.contains(needle),
            "before removal, {needle} in:\n{text}"
        );
    }

    topology.remove_peer(0, 2);
    let node1 = &topology.nodes[0];
    wait_until("node 1 to forget node 3", Duration::from_secs(10), || {
        state(node1).iter().zip(node3).all(|(t, n)| !t.contains(n))
    })
    .unwrap_or_else(|e| panic!("{e}: {:#?}\n{}", state(node1), node1.log()));
    let after = state(node1);
    assert_eq!(node1.metric("weft_peers_known"), Some(1.0));
    assert_eq!(node1.metric("weft_peers_programmed"), Some(1.0));
    // Node 2's entries are untouched.
    for (text, needle) in after.iter().zip([
        "10.255.2.0/24",
        "2001:db8:1000:2::/80",
        "10.255.2.0 ",
        "ee:ee:0a:ff:02:00",
    ]) {
        assert!(
            text.contains(needle),
            "node 2's {needle} went missing:\n{text}"
        );
    }
    let (p1, p2, p3) = (&topology.pods[0], &topology.pods[1], &topology.pods[2]);
    for addr in p2.addrs() {
        assert!(p1.ping(addr), "node 2's pod at {addr} stays reachable");
    }
    for addr in p3.addrs() {
        assert!(
            !p1.ping(addr),
            "node 3's pod at {addr} is no peer of node 1 any more"
        );
    }
    // Node 2 still knows node 3.
    assert!(topology.pods[1].ping(p3.v4.as_deref().unwrap()));
}

/// Node i's weft state as text: the VXLAN device (with its ifindex), weft's routes, the
/// overlay neighbours and FDB entries.
fn weft_state(topology: &Topology, i: usize) -> String {
    let fdb = topology.nodes[i]
        .netns
        .run("bridge", &["fdb", "show", "dev", "weft-vxlan"]);
    [
        ip(topology, i, &["-d", "link", "show", "weft-vxlan"]),
        ip(topology, i, &["route", "show", "proto", "119"]),
        ip(topology, i, &["-6", "route", "show", "proto", "119"]),
        ip(topology, i, &["neigh", "show", "dev", "weft-vxlan"]),
        String::from_utf8_lossy(&fdb.stdout).into_owned(),
    ]
    .join("\n")
}

/// (sent, received) from `ping -q` output.
fn ping_counts(out: &str) -> (u64, u64) {
    let line = out
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or("");
    let numbers: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    assert!(numbers.len() >= 2, "no ping summary in {out}");
    (numbers[0], numbers[1])
}

#[test]
fn weftd_restart_keeps_running_tcp_streams_alive() {
    let mut topology = converged(TopologyOptions {
        nodes: 2,
        ipv6_routing: "direct",
        pods_per_node: 1,
        ..TopologyOptions::default()
    });
    let state_before = [weft_state(&topology, 0), weft_state(&topology, 1)];
    let (a, b) = (&topology.pods[0], &topology.pods[1]);
    let (v6, v4) = (b.v6.clone().unwrap(), b.v4.clone().unwrap());
    // Per family: a rate-limited TCP stream (6 s, 1 s intervals) and a ping every 15 ms
    // beside it. iperf3 makes up for a short stall by sending faster afterwards, so lost
    // pings are what show a brief gap. (TCP retransmits do not: on 2 busy cores, any
    // process start, weftd's or not, causes the odd spurious one.)
    let servers = [iperf3_server(&b.netns, 5201), iperf3_server(&b.netns, 5202)];
    let stream = ["-t", "6", "-i", "1", "-b", "100M"];
    let clients = [
        iperf3_client(&a.netns, &v6, &[&stream[..], &["-p", "5201"]].concat()),
        iperf3_client(&a.netns, &v4, &[&stream[..], &["-p", "5202"]].concat()),
    ];
    let pings = [&v6, &v4].map(|addr| {
        Background::spawn(
            &a.netns,
            "ping",
            &["-q", "-n", "-c", "400", "-i", "0.015", "-W", "1", addr],
        )
    });
    std::thread::sleep(Duration::from_secs(2));
    let pids: Vec<_> = topology.nodes.iter().map(|n| n.weftd_pid()).collect();
    topology.restart_weftd(0);
    topology.restart_weftd(1);
    let restarted_at = std::time::Instant::now();
    assert_ne!(pids[0], topology.nodes[0].weftd_pid());
    assert_ne!(pids[1], topology.nodes[1].weftd_pid());
    for (client, addr) in clients.into_iter().zip([&v6, &v4]) {
        let report = client.finish_json(Duration::from_secs(20));
        assert!(report.get("error").is_none(), "stream to {addr}: {report}");
        let intervals = report["intervals"].as_array().unwrap();
        assert!(intervals.len() >= 6, "{report}");
        for interval in intervals {
            let bps = interval["sum"]["bits_per_second"].as_f64().unwrap();
            assert!(
                bps > 50e6,
                "stream to {addr} stalled: {bps} bit/s in {}\n{}",
                interval["sum"],
                logs(&topology)
            );
        }
    }
    for (ping, addr) in pings.into_iter().zip([&v6, &v4]) {
        let (_, out) = ping.finish(Duration::from_secs(20));
        let (sent, received) = ping_counts(&out);
        assert!(sent >= 300, "{out}");
        assert_eq!(
            sent, received,
            "pings to {addr} lost around the restart:\n{out}"
        );
    }
    assert!(
        restarted_at.elapsed() > Duration::from_secs(2),
        "the streams outlived the restarts"
    );
    drop(servers);
    topology.wait_converged(CONVERGE);
    // A restart that finds the state right changes nothing: same device (same ifindex),
    // same routes, neighbours and FDB entries.
    for (i, before) in state_before.iter().enumerate() {
        assert_eq!(*before, weft_state(&topology, i), "node {}", i + 1);
    }
}

#[test]
fn egress_ipv4_is_snat_to_the_node_and_ipv6_keeps_the_pod_address() {
    let topology = converged(TopologyOptions {
        nodes: 2,
        pods_per_node: 1,
        ..TopologyOptions::default()
    });
    let seen_by = |server_ns: &weft_e2e::Netns, from: &Pod, addr: &str| {
        let server = iperf3_server(server_ns, 5201);
        let report =
            iperf3_client(&from.netns, addr, &["-n", "1M"]).finish_json(Duration::from_secs(20));
        assert!(
            report.get("error").is_none(),
            "{} to {addr}: {report}",
            from.id
        );
        iperf3_remote_host(&server.finish_json(Duration::from_secs(5)))
    };
    for (i, pod) in topology.pods.iter().enumerate() {
        assert_eq!(
            seen_by(&topology.external, pod, EXTERNAL_V4),
            topology.underlay_v4(i).unwrap(),
            "IPv4 egress leaves as the node's underlay address"
        );
        assert_eq!(
            seen_by(&topology.external, pod, EXTERNAL_V6),
            pod.v6.clone().unwrap(),
            "IPv6 egress keeps the pod's address"
        );
    }
    // Pod to pod across nodes is never NATed.
    let (a, b) = (&topology.pods[0], &topology.pods[1]);
    assert_eq!(
        seen_by(&b.netns, a, b.v4.as_deref().unwrap()),
        a.v4.clone().unwrap()
    );
    assert_eq!(
        seen_by(&b.netns, a, b.v6.as_deref().unwrap()),
        a.v6.clone().unwrap()
    );
}

#[test]
fn metrics_reflect_the_topology() {
    let mut topology = converged(TopologyOptions {
        ipv6_routing: "direct",
        ..TopologyOptions::default()
    });
    for node in &topology.nodes {
        let m = |s: &str| node.metric(s);
        assert_eq!(m("weft_peers_known"), Some(2.0), "{}", node.name());
        assert_eq!(m("weft_peers_programmed"), Some(2.0));
        assert_eq!(m(r#"weft_routes_installed{family="ipv4"}"#), Some(2.0));
        assert_eq!(m(r#"weft_routes_installed{family="ipv6"}"#), Some(2.0));
        assert_eq!(m("weft_convergence_errors_total"), Some(0.0));
        let full = m(r#"weft_convergence_duration_seconds_count{kind="full"}"#);
        assert!(
            full.is_some_and(|n| n >= 1.0),
            "a full convergence ran: {full:?}"
        );
    }
    // A bad entry is skipped, not fatal, and not counted.
    let mut entries = topology.peer_entries(1);
    entries.push(serde_json::json!({"name": "bad", "ipv4Subnet": "10.255.300.0/24"}));
    topology.write_peers_json(1, &serde_json::Value::Array(entries));
    // The removal on node 1 shows in its gauges.
    topology.remove_peer(0, 2);
    let node1 = &topology.nodes[0];
    wait_until("node 1's gauges to drop", Duration::from_secs(10), || {
        node1.metric("weft_peers_programmed") == Some(1.0)
            && node1.metric(r#"weft_routes_installed{family="ipv4"}"#) == Some(1.0)
            && node1.metric(r#"weft_routes_installed{family="ipv6"}"#) == Some(1.0)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", node1.log()));
    assert_eq!(node1.metric("weft_peers_known"), Some(1.0));
    let node2 = &topology.nodes[1];
    wait_until(
        "node 2 to report the bad entry",
        Duration::from_secs(5),
        || node2.log().contains("10.255.300.0/24"),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", node2.log()));
    assert_eq!(
        node2.metric("weft_peers_known"),
        Some(2.0),
        "{}",
        node2.log()
    );
    assert_eq!(node2.metric("weft_peers_programmed"), Some(2.0));
    assert_eq!(node2.http_get("/readyz").0, 200, "still serving");
}
