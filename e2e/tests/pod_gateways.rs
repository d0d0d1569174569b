//! A pod's default gateways answer it over both families (the first thing an operator
//! tries), without the node taking the gateway addresses as its own source towards pods.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::time::Duration;
use weft_e2e::{pod_address, wait_until, Netns, Node, NodeOptions};

/// The IPv4 gateway as weftd holds it on the node's loopback.
const GATEWAY_ON_LO: &str = "169.254.1.1/32";

/// The node's `lo` IPv4 addresses, one line each.
fn lo_ipv4(node: &Node) -> String {
    node.netns.ip(&["-4", "-o", "addr", "show", "dev", "lo"])
}

/// The `src` the node would use towards `addr` (`ip route get`).
fn node_source_towards(node: &Node, addr: &str) -> String {
    let route = node.netns.ip(&["route", "get", addr]);
    let mut words = route.split_whitespace();
    words.find(|w| *w == "src");
    words.next().unwrap_or_default().to_owned()
}

#[test]
fn both_gateways_answer_the_pod_and_the_node_keeps_its_own_source() {
    let node = Node::start(NodeOptions::default());
    let (pod, other) = (Netns::new("gw"), Netns::new("gw"));
    let result = node.add("gateways", &pod).expect_ok();
    let other_result = node.add("gateways-other", &other).expect_ok();

    // The legitimate path first: the pod reaches the node's other pod, so the gateways'
    // neighbour entries and routes are in place.
    assert!(
        pod.ping(&pod_address(&other_result, true)),
        "pod to pod, IPv6"
    );
    assert!(
        pod.ping(&pod_address(&other_result, false)),
        "pod to pod, IPv4"
    );

    assert!(pod.ping("169.254.1.1"), "the IPv4 gateway is silent");
    assert!(pod.ping("fe80::1%eth0"), "the IPv6 gateway is silent");
    assert!(
        other.ping("fe80::1%eth0"),
        "each host veth answers its own pod"
    );

    // The node still talks to pods from its own addresses: the gateways are not picked
    // as a source (kubelet's probes, NetworkPolicy's "from the node" match on that).
    let v4 = pod_address(&result, false);
    let v6 = pod_address(&result, true);
    let src4 = node_source_towards(&node, &v4);
    let src6 = node_source_towards(&node, &v6);
    assert_ne!(
        src4, "169.254.1.1",
        "node to pod {v4} would leave from the gateway"
    );
    assert_ne!(
        src6, "fe80::1",
        "node to pod {v6} would leave from the gateway"
    );

    // CHECK names a host veth that lost its gateway address.
    node.check("gateways", &pod, &result).expect_ok();
    let host_veth = result["interfaces"][0]["name"].as_str().unwrap();
    node.netns
        .ip(&["-6", "addr", "del", "fe80::1/128", "dev", host_veth]);
    let drift = node.check("gateways", &pod, &result);
    assert_eq!(drift.error_code(), Some(104), "{drift:?}");
    assert!(
        drift.json()["msg"].as_str().unwrap().contains("fe80::1"),
        "{drift:?}"
    );
}

#[test]
fn an_ipv4_only_node_answers_on_its_ipv4_gateway() {
    let node = Node::start(NodeOptions {
        mode: "ipv4",
        ipv6_prefix: None,
        ..NodeOptions::default()
    });
    let pod = Netns::new("gw4");
    node.add("gateway-v4", &pod).expect_ok();
    assert!(pod.ping("169.254.1.1"), "the IPv4 gateway is silent");
}

#[test]
fn the_ipv4_gateway_is_link_scoped_on_lo_and_restored_by_a_resync() {
    let node = Node::start(NodeOptions {
        extra_args: vec!["--resync-seconds".into(), "1".into()],
        ..NodeOptions::default()
    });
    let on_lo = lo_ipv4(&node);
    let line = on_lo
        .lines()
        .find(|l| l.contains(GATEWAY_ON_LO))
        .unwrap_or_else(|| panic!("no {GATEWAY_ON_LO} on lo: {on_lo}"));
    assert!(line.contains("scope link"), "{line}");

    let pod = Netns::new("gwr");
    node.add("gateway-restored", &pod).expect_ok();
    node.netns.ip(&["addr", "del", GATEWAY_ON_LO, "dev", "lo"]);
    wait_until(
        "weftd to put the gateway back",
        Duration::from_secs(5),
        || lo_ipv4(&node).contains(GATEWAY_ON_LO),
    )
    .unwrap_or_else(|e| panic!("{e}:\n{}", node.log()));
    assert!(pod.ping("169.254.1.1"), "the restored gateway is silent");
}

#[test]
fn an_ipv6_only_node_holds_no_ipv4_gateway() {
    let node = Node::start(NodeOptions {
        mode: "ipv6",
        ipv4_subnet: None,
        ..NodeOptions::default()
    });
    let on_lo = lo_ipv4(&node);
    assert!(!on_lo.contains("169.254.1.1"), "{on_lo}");
}
