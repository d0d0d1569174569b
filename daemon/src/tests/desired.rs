use super::*;
use crate::routing::{Direct, Fabric, Vxlan};
use std::net::{IpAddr, Ipv4Addr};
use weft_wire::{parse_peers, UnderlayFamily};

const VXLAN: u32 = 7;
const UPLINK: u32 = 3;

fn local(direct: bool, family: UnderlayFamily) -> LocalView {
    let ipv6 = if direct {
        Routing::Direct(Direct { uplink: UPLINK })
    } else {
        Routing::Fabric(Fabric)
    };
    let vxlan = Routing::Vxlan(Vxlan {
        index: VXLAN,
        family,
        source: "10.255.1.0".parse().unwrap(),
    });
    LocalView {
        node_name: "node-a".into(),
        ipv6_prefix: Some("2001:db8:1000:1::/80".parse().unwrap()),
        ipv4_subnet: Some("10.255.1.0/24".parse().unwrap()),
        routing: vec![ipv6, vxlan],
    }
}

fn peers(json: &str) -> Vec<Peer> {
    let (peers, errors) = parse_peers(json.as_bytes()).unwrap();
    assert!(errors.is_empty(), "{errors:?}");
    peers
}

const B: &str = r#"{"name": "node-b", "underlayIPv4": "192.0.2.12", "underlayIPv6": "2001:db8:ffff::12",
    "ipv6Prefix": "2001:db8:1000:2::/80", "ipv4Subnet": "10.255.2.0/24"}"#;
const C: &str = r#"{"name": "node-c", "underlayIPv4": "192.0.2.13", "underlayIPv6": "2001:db8:ffff::13",
    "ipv6Prefix": "2001:db8:1000:3::/80", "ipv4Subnet": "10.255.3.0/24"}"#;
const SELF: &str = r#"{"name": "node-a", "underlayIPv4": "192.0.2.11",
    "ipv6Prefix": "2001:db8:1000:1::/80", "ipv4Subnet": "10.255.1.0/24"}"#;

#[test]
fn a_peer_gets_route_neighbour_and_fdb_and_the_node_itself_is_skipped() {
    let list = peers(&format!("[{SELF}, {B}]"));
    let (desired, problems) = Desired::build(&local(false, UnderlayFamily::Ipv4), &list);
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(desired.known, 1);
    let mac = [0xee, 0xee, 10, 255, 2, 0];
    let gw: Ipv4Addr = "10.255.2.0".parse().unwrap();
    let expected: BTreeMap<Key, Value> = [
        (
            Key::Route("10.255.2.0/24".parse().unwrap()),
            Value::Route {
                gateway: IpAddr::V4(gw),
                oif: VXLAN,
                source: Some("10.255.1.0".parse().unwrap()),
            },
        ),
        (
            Key::Neighbour(gw),
            Value::Neighbour {
                mac,
                permanent: true,
            },
        ),
        (
            Key::Fdb(mac),
            Value::Fdb {
                destination: "192.0.2.12".parse().unwrap(),
                permanent: true,
            },
        ),
    ]
    .into();
    assert_eq!(
        desired.values(),
        expected,
        "fabric mode adds no IPv6 routes"
    );
}

#[test]
fn direct_mode_routes_the_prefix_via_the_underlay_and_an_ipv6_underlay_carries_vxlan() {
    let list = peers(&format!("[{B}]"));
    let (desired, _) = Desired::build(&local(true, UnderlayFamily::Ipv6), &list);
    let values = desired.values();
    assert_eq!(
        values.get(&Key::Route("2001:db8:1000:2::/80".parse().unwrap())),
        Some(&Value::Route {
            gateway: "2001:db8:ffff::12".parse().unwrap(),
            oif: UPLINK,
            source: None
        })
    );
    assert_eq!(
        values.get(&Key::Fdb([0xee, 0xee, 10, 255, 2, 0])),
        Some(&Value::Fdb {
            destination: "2001:db8:ffff::12".parse().unwrap(),
            permanent: true
        })
    );
    assert_eq!(route_counts(values.keys()), (1, 1));
}

#[test]
fn unusable_peers_are_left_out_whole_with_a_reason() {
    let list = peers(
        r#"[
        {"name": "overlaps-me", "underlayIPv4": "192.0.2.20", "ipv4Subnet": "10.255.1.0/25"},
        {"name": "node-b", "underlayIPv4": "192.0.2.12", "ipv4Subnet": "10.255.2.0/24", "ipv6Prefix": "2001:db8:1000:2::/80"},
        {"name": "overlaps-b", "underlayIPv4": "192.0.2.21", "ipv6Prefix": "2001:db8:1000:2::/96"},
        {"name": "v6-underlay-only", "underlayIPv6": "2001:db8:ffff::22", "ipv4Subnet": "10.255.22.0/24"},
        {"name": "same-mac", "underlayIPv4": "192.0.2.23", "ipv4Subnet": "10.255.23.0/24", "vtepMAC": "ee:ee:0a:ff:02:00"},
        {"name": "node-b", "underlayIPv4": "192.0.2.24", "ipv4Subnet": "10.255.24.0/24"}
    ]"#,
    );
    let (desired, problems) = Desired::build(&local(false, UnderlayFamily::Ipv4), &list);
    let problems: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    assert_eq!(desired.peers, BTreeSet::from(["node-b".to_owned()]));
    assert_eq!(desired.known, 6);
    assert_eq!(problems.len(), 5, "{problems:#?}");
    assert!(
        problems[0].contains("10.255.1.0/25 overlaps this node's"),
        "{}",
        problems[0]
    );
    assert!(problems[1].contains("overlaps node-b's"), "{}", problems[1]);
    assert!(
        problems[2].contains("needs underlayIPv4"),
        "{}",
        problems[2]
    );
    assert!(
        problems[3].contains("vtepMAC ee:ee:0a:ff:02:00 is already node-b's"),
        "{}",
        problems[3]
    );
    assert!(problems[4].contains("listed twice"), "{}", problems[4]);
    assert!(desired.entries.values().all(|(_, owner)| owner == "node-b"));
}

#[test]
fn diff_touches_only_what_changed_and_orders_dependencies() {
    let l = local(true, UnderlayFamily::Ipv4);
    let (before, _) = Desired::build(&l, &peers(&format!("[{B}, {C}]")));
    // Nothing to do when the kernel already matches: a restart disturbs nothing.
    assert!(diff(&before.values(), &before).is_empty());

    // node-c leaves, node-b moves to another underlay address.
    let moved = B.replace("192.0.2.12", "192.0.2.99");
    let (after, _) = Desired::build(&l, &peers(&format!("[{moved}]")));
    let plan = diff(&before.values(), &after);
    assert_eq!(plan.upserts.len(), 1, "{plan:?}");
    assert!(matches!(plan.upserts[0].0, Key::Fdb(_)));
    let removed: Vec<Key> = plan.removals.iter().map(|(k, _)| *k).collect();
    assert_eq!(
        removed,
        vec![
            Key::Route("10.255.3.0/24".parse().unwrap()),
            Key::Route("2001:db8:1000:3::/80".parse().unwrap()),
            Key::Neighbour("10.255.3.0".parse().unwrap()),
            Key::Fdb([0xee, 0xee, 10, 255, 3, 0]),
        ],
        "routes go before the neighbours and FDB entries they use"
    );

    // From empty: FDB, then neighbour, then routes.
    let plan = diff(&BTreeMap::new(), &before);
    let kinds: Vec<u8> = plan
        .upserts
        .iter()
        .map(|(k, _, _)| match k {
            Key::Fdb(_) => 0,
            Key::Neighbour(_) => 1,
            Key::Route(_) => 2,
        })
        .collect();
    assert!(kinds.windows(2).all(|w| w[0] <= w[1]), "{kinds:?}");
    assert_eq!(plan.upserts.len(), 8);
}

#[test]
fn a_non_permanent_kernel_entry_is_replaced() {
    let (desired, _) = Desired::build(
        &local(false, UnderlayFamily::Ipv4),
        &peers(&format!("[{B}]")),
    );
    let mut actual = desired.values();
    let gw = Key::Neighbour("10.255.2.0".parse().unwrap());
    actual.insert(
        gw,
        Value::Neighbour {
            mac: [0xee, 0xee, 10, 255, 2, 0],
            permanent: false,
        },
    );
    let plan = diff(&actual, &desired);
    assert_eq!(plan.upserts.len(), 1);
    assert_eq!(plan.upserts[0].0, gw);
}

#[test]
fn the_ipv6_routing_mode_follows_the_setting_the_node_mode_and_the_uplink() {
    use weft_api::Ipv6Routing;
    use weft_wire::Mode;
    let direct = Routing::ipv6(Mode::Dual, Ipv6Routing::Direct, Some(UPLINK));
    assert_eq!(direct, Some(Routing::Direct(Direct { uplink: UPLINK })));
    let fabric = Routing::ipv6(Mode::Ipv6, Ipv6Routing::Fabric, Some(UPLINK));
    assert_eq!(fabric, Some(Routing::Fabric(Fabric)));
    // Direct routes need the uplink; an IPv4-only node routes no IPv6 at all.
    assert_eq!(Routing::ipv6(Mode::Dual, Ipv6Routing::Direct, None), None);
    assert_eq!(
        Routing::ipv6(Mode::Ipv4, Ipv6Routing::Direct, Some(UPLINK)),
        None
    );
}

#[test]
fn the_tunnel_guard_trusts_both_underlay_addresses_of_accepted_peers_only() {
    let overlapping = r#"{"name": "node-x", "underlayIPv4": "192.0.2.99",
        "ipv6Prefix": "2001:db8:1000:2::/80", "ipv4Subnet": "10.255.9.0/24"}"#;
    let list = peers(&format!("[{SELF}, {B}, {overlapping}]"));
    let (desired, problems) = Desired::build(&local(false, UnderlayFamily::Ipv4), &list);
    assert_eq!(problems.len(), 1, "node-x overlaps node-b: {problems:?}");
    let underlays: Vec<String> = desired
        .underlays(&list)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(underlays, ["192.0.2.12", "2001:db8:ffff::12"]);
}
