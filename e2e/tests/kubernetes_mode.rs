//! weftd in Kubernetes mode on a real kube-apiserver with weft-controller: three
//! namespace nodes get their ranges from the controller and their peers from the
//! WeftNode objects; a deleted Node is dropped by its peers and its prefix comes back
//! only after the cooldown; a stopped apiserver stops nothing on the nodes; a weftd
//! waiting for its allocation watches for it instead of polling.
#![allow(clippy::unwrap_used)]

use serde_json::json;
use std::time::{Duration, Instant};
use weft_e2e::{
    node_beside, serving_namespace, wait_until, ControlPlane, Node, NodeOptions, Topology,
    TopologyOptions, Underlay, SOLO_APISERVER, SOLO_NODE_V6,
};

fn cluster(pods_per_node: usize, cooldown: u64) -> Topology {
    let topology = Topology::start(TopologyOptions {
        nodes: 3,
        mode: "dual",
        ipv6_routing: "direct",
        underlay: Underlay::Dual,
        pods_per_node,
        kubernetes: true,
        release_cooldown_seconds: cooldown,
        ..TopologyOptions::default()
    });
    topology.wait_converged(Duration::from_secs(30));
    topology
}

fn assert_full_matrix(topology: &Topology) {
    let outcomes = topology.ping_matrix();
    let failed: Vec<_> = outcomes.iter().filter(|o| !o.ok).collect();
    assert!(!outcomes.is_empty());
    assert!(failed.is_empty(), "failed pings: {failed:#?}");
}

fn kubectl(topology: &Topology, args: &[&str]) -> String {
    topology
        .kube
        .as_ref()
        .unwrap()
        .control_plane
        .kubectl_ok(args)
}

#[test]
fn three_nodes_get_their_ranges_and_peers_from_the_apiserver() {
    let mut topology = cluster(2, 5);
    assert_full_matrix(&topology);
    // Each node's ranges are unique and the ones its weftd serves.
    let mut subnets: Vec<String> = (0..3).map(|i| topology.ipv4_subnet(i)).collect();
    subnets.sort();
    subnets.dedup();
    assert_eq!(subnets.len(), 3, "{subnets:?}");
    for (i, node) in topology.nodes.iter().enumerate() {
        assert_eq!(
            node.metric("weft_peers_programmed"),
            Some(2.0),
            "{}",
            node.log()
        );
        let pod = &topology.pods_of(i)[0];
        let v6 = pod.v6.as_deref().unwrap();
        assert!(
            v6.starts_with(&format!("2001:db8:1000:{:x}::", i + 1)),
            "{v6}"
        );
        let net: ipnet::Ipv4Net = topology.ipv4_subnet(i).parse().unwrap();
        assert!(net.contains(
            &pod.v4
                .as_deref()
                .unwrap()
                .parse::<std::net::Ipv4Addr>()
                .unwrap()
        ));
    }
    // kubectl shows node, prefix, subnet and usage at a glance, and weftd's identity.
    wait_until("usage reports", Duration::from_secs(20), || {
        kubectl(&topology, &["get", "weftnodes"]).contains("2/254")
    })
    .unwrap();
    let table = kubectl(&topology, &["get", "weftnodes", "-o", "wide"]);
    for i in 0..3 {
        assert!(
            table.contains(&format!("2001:db8:1000:{}::/80", i + 1)),
            "{table}"
        );
        assert!(table.contains(&topology.ipv4_subnet(i)), "{table}");
        assert!(
            table.contains(&format!("2001:db8:ffff::{}", 11 + i)),
            "{table}"
        );
    }
    // A later usage report moves reportedAt, not Ready's lastTransitionTime: Ready did
    // not change status.
    let ready_and_report = |topology: &Topology| {
        kubectl(
            topology,
            &[
                "get",
                "weftnode",
                "node-1",
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].lastTransitionTime} {.status.reportedAt}",
            ],
        )
    };
    let before = ready_and_report(&topology);
    topology.add_pod(0);
    wait_until("the next usage report", Duration::from_secs(20), || {
        kubectl(&topology, &["get", "weftnode", "node-1"]).contains("3/254")
    })
    .unwrap();
    let after = ready_and_report(&topology);
    let (ready_before, reported_before) = before.split_once(' ').unwrap();
    let (ready_after, reported_after) = after.split_once(' ').unwrap();
    assert!(!ready_before.is_empty(), "{before}");
    assert_eq!(ready_after, ready_before, "{before} -> {after}");
    assert_ne!(reported_after, reported_before, "{before} -> {after}");
    let pod_cidrs = kubectl(
        &topology,
        &["get", "node", "node-1", "-o", "jsonpath={.spec.podCIDRs}"],
    );
    assert!(
        pod_cidrs.contains("2001:db8:1000:1::/80") && pod_cidrs.contains(&topology.ipv4_subnet(0)),
        "{pod_cidrs}"
    );
}

#[test]
fn a_deleted_node_is_dropped_by_its_peers_and_its_prefix_returns_after_the_cooldown() {
    let cooldown = 8;
    let mut topology = cluster(1, cooldown);
    let subnet3 = topology.ipv4_subnet(2);
    let route = |topology: &Topology| {
        topology.nodes[0]
            .netns
            .ip(&["route", "show", "proto", "119"])
    };
    assert!(route(&topology).contains(&subnet3));
    let deleted = Instant::now();
    topology.delete_node(2);
    wait_until("node-1 to drop node-3", Duration::from_secs(15), || {
        !route(&topology).contains(&subnet3)
            && !topology.nodes[0]
                .netns
                .ip(&["-6", "route", "show", "proto", "119"])
                .contains("2001:db8:1000:3::/80")
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", topology.nodes[0].log()));
    // node-2 still reaches node-1.
    let (a, b) = (&topology.pods_of(0)[0], &topology.pods_of(1)[0]);
    assert!(b.ping(a.v6.as_deref().unwrap()) && b.ping(a.v4.as_deref().unwrap()));

    // While node-3's prefix cools down, a new node in zone-3 gets the next one.
    let kube = topology.kube.as_ref().unwrap();
    kube.create_node("node-4", "zone-3");
    let allocated = kube.wait_allocated("node-4", "dual", Duration::from_secs(20));
    assert_eq!(allocated["spec"]["ipv6Prefix"], "2001:db8:1000:3:1::/80");
    assert_ne!(allocated["spec"]["ipv4Subnet"], subnet3.as_str());
    // The claim goes after the cooldown, not before; then the prefix is given again.
    let claim = "\"cidr\":\"2001:db8:1000:3::/80\"";
    let claims = || kubectl(&topology, &["get", "weftclaimblocks", "-o", "json"]).replace(' ', "");
    assert!(claims().contains(claim), "{}", claims());
    wait_until(
        "the released claim to go",
        Duration::from_secs(cooldown + 20),
        || !claims().contains(claim),
    )
    .unwrap();
    assert!(
        deleted.elapsed() >= Duration::from_secs(cooldown),
        "released after {:?}",
        deleted.elapsed()
    );
    kube.create_node("node-5", "zone-3");
    let allocated = kube.wait_allocated("node-5", "dual", Duration::from_secs(20));
    assert_eq!(allocated["spec"]["ipv6Prefix"], "2001:db8:1000:3::/80");
}

#[test]
fn a_stopped_apiserver_stops_nothing_on_the_nodes() {
    let mut topology = cluster(1, 5);
    topology
        .kube
        .as_mut()
        .unwrap()
        .control_plane
        .stop_apiserver();
    let stopped = Instant::now();
    // A weftd restarted while the apiserver is down serves from its saved allocation.
    topology.restart_weftd(1);
    assert_full_matrix(&topology);
    // New pods still get addresses, and reach the others.
    for i in 0..3 {
        topology.add_pod(i);
    }
    while stopped.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_secs(5));
    }
    assert_full_matrix(&topology);
    topology
        .kube
        .as_mut()
        .unwrap()
        .control_plane
        .start_apiserver();
    topology.wait_converged(Duration::from_secs(30));
    assert_full_matrix(&topology);
}

/// GET requests the apiserver has served for WeftNodes and WeftNetworks.
fn object_reads(cp: &ControlPlane) -> f64 {
    cp.kubectl_ok(&["get", "--raw", "/metrics"])
        .lines()
        .filter(|l| l.starts_with("apiserver_request_total{") && l.contains("verb=\"GET\""))
        .filter(|l| l.contains("resource=\"weftnodes\"") || l.contains("resource=\"weftnetworks\""))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

#[test]
fn weftd_waits_for_its_allocation_by_watching_not_polling() {
    let cp_ns = serving_namespace("kw", &[&format!("{SOLO_APISERVER}/64")]);
    let cp = ControlPlane::start(&cp_ns, SOLO_APISERVER.parse().unwrap());
    cp.install_weft_crds();
    let network = json!({"apiVersion": "weft.dev/v1alpha1", "kind": "WeftNetwork",
        "metadata": {"name": "default"},
        "spec": {"mode": "dual", "ipv6Ranges": [{"range": "2001:db8:1000::/64"}]}});
    cp.kubectl_input_ok(&["apply", "-f", "-"], &network.to_string());
    let name = "waiting-node";
    let before = object_reads(&cp);
    let waited = Duration::from_secs(6);
    // The controller's write arrives while weftd waits (no controller runs here).
    let allocation = json!({"apiVersion": "weft.dev/v1alpha1", "kind": "WeftNode",
        "metadata": {"name": name},
        "spec": {"nodeName": name, "ipv6Prefix": "2001:db8:1000:0:7::/80",
                 "ipv4Subnet": "10.255.7.0/24"}});
    let node = std::thread::scope(|scope| {
        scope.spawn(|| {
            std::thread::sleep(waited);
            cp.kubectl_input_ok(
                &[
                    "apply",
                    "--server-side",
                    "--field-manager=weft-controller",
                    "-f",
                    "-",
                ],
                &allocation.to_string(),
            );
        });
        let began = Instant::now();
        let node = Node::start_in(
            node_beside(&cp_ns, "kw"),
            NodeOptions {
                node_name: Some(name.into()),
                kubeconfig: Some(cp.kubeconfig()),
                ipv6_prefix: None,
                ipv4_subnet: None,
                ..NodeOptions::default()
            },
        );
        assert!(
            began.elapsed() >= waited,
            "ready before its allocation existed"
        );
        node
    });
    // While it waited it read nothing: polling would have read both objects about once a
    // second. (Allowed: kubectl's apply, and weftd's read before its first report.)
    let reads = object_reads(&cp) - before;
    assert!(
        reads <= 3.0,
        "{reads} reads while waiting {waited:?}\n{}",
        node.log()
    );
    // It serves the allocation, having published its identity and said why it waited.
    let wn = cp.kubectl_ok(&["get", "weftnode", name, "-o", "json"]);
    let wn: serde_json::Value = serde_json::from_str(&wn).unwrap();
    assert_eq!(wn["spec"]["underlayIPv6"], SOLO_NODE_V6, "{}", node.log());
    assert!(
        node.log().contains("no IPv6 prefix allocated yet"),
        "{}",
        node.log()
    );
    assert_eq!(
        node.metric("weft_ipam_addresses_capacity{family=\"ipv4\"}"),
        Some(254.0),
        "{}",
        node.log()
    );
}
