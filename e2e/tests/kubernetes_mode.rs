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
    // second. (Allowed: kubectl's apply, weftd's read before its first report, and the
    // first list of the peer source's watch on the WeftNetwork, which keeps the plan
    // peers are checked against.)
    let reads = object_reads(&cp) - before;
    assert!(
        reads <= 4.0,
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

/// The routes of `proto` on node `i`, both families.
fn routes(topology: &Topology, i: usize, proto: &str) -> String {
    let netns = &topology.nodes[i].netns;
    netns.ip(&["route", "show", "proto", proto])
        + &netns.ip(&["-6", "route", "show", "proto", proto])
}

fn metric(topology: &Topology, i: usize, name: &str) -> f64 {
    topology.nodes[i].metric(name).unwrap_or(-1.0)
}

#[test]
fn weftd_keeps_its_identity_ignores_peers_outside_the_plan_and_leaves_foreign_routes() {
    let mut topology = cluster(1, 5);
    // Node 1 resyncs every 2 s; the controller stops, so only weftd writes WeftNodes and
    // nothing deletes the forged ones below.
    let node = &mut topology.nodes[0];
    node.options_mut()
        .extra_args
        .extend(["--resync-seconds".into(), "2".into()]);
    node.restart();
    topology.kube.as_mut().unwrap().kill_controller(0);
    topology.wait_converged(Duration::from_secs(30));
    let subnet3 = topology.ipv4_subnet(2);
    assert!(routes(&topology, 0, "119").contains(&subnet3));

    // Someone removes weftd's fields from node-1's WeftNode: the next resync restores them.
    let field = |path: &str| {
        let jsonpath = format!("jsonpath={{.spec.{path}}}");
        kubectl(&topology, &["get", "weftnode", "node-1", "-o", &jsonpath])
    };
    let published = (field("underlayIPv6"), field("vtepMAC"));
    assert_eq!(published.0, "2001:db8:ffff::11");
    assert_eq!(published.1.len(), 17, "{published:?}");
    kubectl(
        &topology,
        &[
            "patch",
            "weftnode",
            "node-1",
            "--type=json",
            "-p",
            r#"[{"op":"remove","path":"/spec/underlayIPv6"},{"op":"remove","path":"/spec/vtepMAC"}]"#,
        ],
    );
    wait_until(
        "node-1's identity restored",
        Duration::from_secs(15),
        || (field("underlayIPv6"), field("vtepMAC")) == published,
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", topology.nodes[0].log()));
    wait_until("the restore counted", Duration::from_secs(5), || {
        metric(&topology, 0, "weft_identity_restored_total") >= 1.0
    })
    .unwrap();

    // Two forged WeftNodes: one inside the plan (programmed on node-2, the legitimate
    // path), one outside (ignored everywhere, counted, said).
    let forged = |name: &str, v6: &str, v4: &str, underlay: &str| {
        json!({"apiVersion": "weft.dev/v1alpha1", "kind": "WeftNode", "metadata": {"name": name},
            "spec": {"nodeName": name, "ipv6Prefix": v6, "ipv4Subnet": v4,
                     "underlayIPv6": underlay, "underlayIPv4": "192.0.2.99"}})
    };
    // Node-1 holds the inside one's subnet with a route of its own (proto static).
    topology.nodes[0].netns.ip(&[
        "route",
        "add",
        "blackhole",
        "10.255.99.0/24",
        "proto",
        "static",
    ]);
    let kube = topology.kube.as_ref().unwrap();
    kube.apply(&forged(
        "inside",
        "2001:db8:1000:1:99::/80",
        "10.255.99.0/24",
        "2001:db8:ffff::99",
    ));
    kube.apply(&forged(
        "outside",
        "2001:db8:3000::/80",
        "10.254.9.0/24",
        "2001:db8:ffff::98",
    ));
    wait_until(
        "node-2 programs the inside node",
        Duration::from_secs(15),
        || {
            let r = routes(&topology, 1, "119");
            r.contains("10.255.99.0/24") && r.contains("2001:db8:1000:1:99::/80")
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", topology.nodes[1].log()));
    for i in 0..3 {
        wait_until("the outside node counted", Duration::from_secs(10), || {
            metric(&topology, i, "weft_peers_outside_plan") == 1.0
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", topology.nodes[i].log()));
        let r = routes(&topology, i, "119");
        assert!(
            !r.contains("10.254.9.0") && !r.contains("2001:db8:3000:"),
            "{r}"
        );
        assert!(topology.nodes[i]
            .log()
            .contains("ignoring a WeftNode outside the WeftNetwork's plan"));
    }
    // Node-1 left its static route alone and says so.
    wait_until(
        "node-1 reports the foreign route",
        Duration::from_secs(10),
        || metric(&topology, 0, "weft_routes_foreign") == 1.0,
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", topology.nodes[0].log()));
    assert!(routes(&topology, 0, "static").contains("blackhole 10.255.99.0/24"));
    assert!(!routes(&topology, 0, "119").contains("10.255.99.0/24"));

    // An operator replaces weft's route to node-3's subnet with their own: weft does not
    // take it back at the next full passes, and programs it again once it is gone.
    topology.nodes[0]
        .netns
        .ip(&["route", "replace", "blackhole", &subnet3, "proto", "static"]);
    wait_until(
        "node-1 reports two foreign routes",
        Duration::from_secs(10),
        || metric(&topology, 0, "weft_routes_foreign") == 2.0,
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", topology.nodes[0].log()));
    std::thread::sleep(Duration::from_secs(5));
    assert!(routes(&topology, 0, "static").contains(&subnet3));
    assert!(!routes(&topology, 0, "119").contains(&subnet3));
    for destination in [subnet3.as_str(), "10.255.99.0/24"] {
        topology.nodes[0]
            .netns
            .ip(&["route", "del", destination, "proto", "static"]);
    }
    wait_until(
        "node-1 programs both again",
        Duration::from_secs(10),
        || {
            let r = routes(&topology, 0, "119");
            r.contains(&subnet3) && r.contains("10.255.99.0/24")
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", topology.nodes[0].log()));
    assert_eq!(metric(&topology, 0, "weft_routes_foreign"), 0.0);
    let log = topology.nodes[0].log();
    assert!(
        log.contains("a route weftd did not install holds this peer's destination"),
        "{log}"
    );
}
