use super::*;
use serde_json::json;
use weft_api::WeftNetworkSpec;

fn network(ipv4_network: &str) -> WeftNetwork {
    let spec: WeftNetworkSpec = serde_json::from_value(json!({
        "mode": "dual",
        "ipv6Ranges": [{"range": "2001:db8:1000::/64", "prefixLength": 80}],
        "ipv4Network": ipv4_network,
        "ipv4SubnetLength": 24,
    }))
    .unwrap();
    WeftNetwork::new("default", spec)
}

fn entry(name: &str, v6: &str, v4: &str) -> PeerEntry {
    serde_json::from_value(json!({"name": name, "underlayIPv6": "2001:db8:ffff::9",
        "ipv6Prefix": v6, "ipv4Subnet": v4}))
    .unwrap()
}

fn state() -> State {
    let mut state = State::new("node-1", Metrics::new("node-1").unwrap());
    for (name, v6, v4) in [
        ("node-1", "2001:db8:1000::/80", "10.255.1.0/24"),
        ("node-2", "2001:db8:1000:0:2::/80", "10.255.2.0/24"),
        ("forged", "2001:db8:3000::/80", "10.255.3.0/24"),
    ] {
        state.nodes.insert(name.into(), entry(name, v6, v4));
    }
    state
}

fn names(peers: &[Peer]) -> Vec<&str> {
    peers.iter().map(|p| p.name.as_str()).collect()
}

#[test]
fn no_peer_list_before_the_plan_is_known() {
    let mut state = state();
    assert!(state.peers().is_none());
    assert!(!state.network(Event::Delete(network("10.255.0.0/16")), "default"));
    assert!(state.peers().is_none());
}

#[test]
fn weftnodes_outside_the_plan_are_ignored_and_counted() {
    let mut state = state();
    assert!(state.network(Event::InitApply(network("10.255.0.0/16")), "default"));
    let peers = state.peers().unwrap();
    assert_eq!(names(&peers), ["node-1", "node-2"]);
    assert_eq!(state.metrics.peers_outside_plan.get(), 1);
    assert_eq!(state.own().map(|e| e.name.as_str()), Some("node-1"));
    // A narrower plan: node-3's subnet lies outside it.
    assert!(state.network(Event::Apply(network("10.255.0.0/20")), "default"));
    state.nodes.insert(
        "node-3".into(),
        entry("node-3", "2001:db8:1000:0:3::/80", "10.255.16.0/24"),
    );
    let peers = state.peers().unwrap();
    assert_eq!(names(&peers), ["node-1", "node-2"]);
    assert_eq!(state.metrics.peers_outside_plan.get(), 2);
}

#[test]
fn an_invalid_or_deleted_network_keeps_the_last_valid_plan() {
    let mut state = state();
    assert!(state.network(Event::Apply(network("10.255.0.0/16")), "default"));
    for event in [
        Event::Apply(network("not a network")),
        Event::Delete(network("10.255.0.0/16")),
    ] {
        assert!(!state.network(event, "default"));
        assert_eq!(names(&state.peers().unwrap()), ["node-1", "node-2"]);
    }
    // The same plan again changes nothing.
    assert!(!state.network(Event::Apply(network("10.255.0.0/16")), "default"));
}
