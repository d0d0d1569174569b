use super::super::table::{element_script, Element, Table, Tables};
use super::*;
use std::net::IpAddr;

fn guard(peers: Option<&[&str]>) -> TunnelGuard {
    TunnelGuard {
        peers: peers.map(|p| p.iter().map(|a| a.parse::<IpAddr>().unwrap()).collect()),
    }
}

fn declared(guard: &TunnelGuard) -> Tables {
    let mut tables = Tables::default();
    guard.declare(&mut tables);
    tables
}

fn elements(guard: &TunnelGuard) -> super::super::table::Elements {
    let tables = declared(guard);
    let (_, elements) = tables.iter().next().unwrap();
    elements.clone()
}

#[test]
fn the_guard_is_an_input_chain_of_inet_weft_dropping_weft_interfaces_and_strangers() {
    let tables = declared(&guard(Some(&["192.0.2.12", "2001:db8:ffff::12"])));
    let (declaration, elements) = tables.iter().next().unwrap();
    assert_eq!(declaration.table, Table::Weft);
    let script = declaration.creation_script(elements);
    for expected in [
        "set tunnel-peers-v4 { type ipv4_addr; }",
        "set tunnel-peers-v6 { type ipv6_addr; }",
        "type filter hook input priority filter; policy accept;",
        "add element inet weft tunnel-peers-v4 { 192.0.2.12 }",
        "add element inet weft tunnel-peers-v6 { 2001:db8:ffff::12 }",
    ] {
        assert!(script.contains(expected), "{expected:?} missing:\n{script}");
    }
    let rules = &declaration.chains[0].rules;
    assert_eq!(
        rules,
        &[
            "udp dport @tunnel-ports iifname \"weft*\" drop",
            "udp dport @tunnel-ports ip saddr != @tunnel-peers-v4 drop",
            "udp dport @tunnel-ports ip6 saddr != @tunnel-peers-v6 drop",
        ]
    );
    let forward = &declaration.chains[1];
    assert_eq!(forward.hook.name(), "forward");
    assert_eq!(
        forward.rules,
        [
            "udp dport @tunnel-ports iifname \"weft*\" ip daddr @tunnel-peers-v4 drop",
            "udp dport @tunnel-ports iifname \"weft*\" ip6 daddr @tunnel-peers-v6 drop",
        ],
        "a pod's packet to a peer's port would leave NATed to the node's address"
    );
}

#[test]
fn a_one_peer_change_is_one_statement_and_a_replaced_peer_two() {
    let before = elements(&guard(Some(&["192.0.2.12", "192.0.2.13"])));
    let added = elements(&guard(Some(&["192.0.2.12", "192.0.2.13", "192.0.2.14"])));
    assert_eq!(
        element_script(Table::Weft, &before, &added),
        "add element inet weft tunnel-peers-v4 { 192.0.2.14 }\n"
    );
    let removed = elements(&guard(Some(&["192.0.2.12"])));
    assert_eq!(
        element_script(Table::Weft, &before, &removed),
        "delete element inet weft tunnel-peers-v4 { 192.0.2.13 }\n"
    );
    let moved = elements(&guard(Some(&["192.0.2.12", "192.0.2.99"])));
    assert_eq!(
        element_script(Table::Weft, &before, &moved).lines().count(),
        2
    );
}

#[test]
fn before_the_first_peer_list_the_kernel_keeps_its_peers() {
    let kernel = elements(&guard(Some(&["192.0.2.12", "2001:db8:ffff::12"])));
    let unknown = elements(&guard(None));
    assert!(!unknown.contains_key(PEERS_V4) && !unknown.contains_key(PEERS_V6));
    assert_eq!(element_script(Table::Weft, &kernel, &unknown), "");
    // Known and empty: every peer goes.
    let none = elements(&guard(Some(&[])));
    let script = element_script(Table::Weft, &kernel, &none);
    assert!(
        script.contains("delete element inet weft tunnel-peers-v4 { 192.0.2.12 }")
            && script.contains("delete element inet weft tunnel-peers-v6 { 2001:db8:ffff::12 }"),
        "{script}"
    );
}

#[test]
fn each_family_goes_to_its_own_set() {
    let elements = elements(&guard(Some(&["192.0.2.12", "2001:db8:ffff::12"])));
    let v4 = &elements[PEERS_V4];
    let v6 = &elements[PEERS_V6];
    assert_eq!(v4.len(), 1);
    assert_eq!(v6.len(), 1);
    assert!(v4
        .iter()
        .all(|e| matches!(e, Element::Prefix(ipnet::IpNet::V4(n)) if n.prefix_len() == 32)));
}
