use super::egress_nat::{POD_SUBNETS, TUNNEL_PORTS};
use super::table::{element_script, rule_marker, ChainKind, Declaration, Element, Elements};
use super::*;

fn nat(uplink: Option<&str>) -> Firewall {
    Firewall::new(vec![Concern::EgressNat(EgressNat {
        subnet: "10.255.1.0/24".parse().unwrap(),
        uplink: uplink.map(str::to_owned),
        tunnel_port: 4789,
    })])
}

/// The declaration and elements of `table`, which the firewall must declare.
fn declared(firewall: &Firewall, table: Table) -> (Declaration, Elements) {
    firewall
        .tables()
        .iter()
        .find(|(declaration, _)| declaration.table == table)
        .cloned()
        .unwrap_or_else(|| panic!("{table} is not declared"))
}

fn prefix(text: &str) -> Element {
    Element::Prefix(text.parse().unwrap())
}

#[test]
fn egress_nat_declares_an_ip_nat_table_and_an_inet_tunnel_table() {
    let tables: Vec<String> = nat(Some("eth0"))
        .tables()
        .iter()
        .map(|(d, _)| d.table.to_string())
        .collect();
    assert_eq!(tables, ["inet weft", "ip weft-nat"]);
}

#[test]
fn creation_replaces_one_table_with_its_elements_in_one_script() {
    let (declaration, elements) = declared(&nat(Some("eth0")), Table::WeftNat);
    let script = declaration.creation_script(&elements);
    let lines: Vec<&str> = script.lines().map(str::trim).collect();
    assert_eq!(
        lines[..3],
        [
            "add table ip weft-nat",
            "delete table ip weft-nat",
            "table ip weft-nat {"
        ],
        "{script}"
    );
    for expected in [
        "set pod-subnets-v4 { type ipv4_addr; flags interval; }",
        "type nat hook postrouting priority srcnat; policy accept;",
        "add element ip weft-nat pod-subnets-v4 { 10.255.1.0/24 }",
    ] {
        assert!(lines.contains(&expected), "{expected:?} missing:\n{script}");
    }
    let masquerade = format!(
        "ip saddr @pod-subnets-v4 oifname != \"weft*\" masquerade comment \"{}\"",
        rule_marker(
            "postrouting",
            0,
            "ip saddr @pod-subnets-v4 oifname != \"weft*\" masquerade"
        )
    );
    assert!(lines.contains(&masquerade.as_str()), "{script}");
    assert!(
        !script.contains("notrack") && !script.contains("tunnel"),
        "{script}"
    );

    let (declaration, elements) = declared(&nat(Some("eth0")), Table::Weft);
    let script = declaration.creation_script(&elements);
    let lines: Vec<&str> = script.lines().map(str::trim).collect();
    assert_eq!(
        lines[..2],
        ["add table inet weft", "delete table inet weft"]
    );
    assert!(lines.contains(&"table inet weft {"), "{script}");
    for expected in [
        "set tunnel-ports { type inet_service; }",
        "type filter hook prerouting priority raw; policy accept;",
        "type filter hook output priority raw; policy accept;",
        "add element inet weft tunnel-ports { 4789 }",
    ] {
        assert!(lines.contains(&expected), "{expected:?} missing:\n{script}");
    }
    assert!(script.contains("iifname \"eth0\" udp dport @tunnel-ports notrack"));
    assert!(script.contains("\tudp dport @tunnel-ports notrack"));
    assert!(
        !script.contains("masquerade") && !script.contains("type nat"),
        "{script}"
    );
}

/// NAT turns connection tracking on for every family of its table, and weft never
/// NATs IPv6: every NAT chain is in the `ip` table, and nothing of IPv6 is there.
#[test]
fn nat_chains_are_ipv4_only() {
    for (declaration, _) in nat(Some("eth0")).tables().iter() {
        for chain in &declaration.chains {
            if chain.kind == ChainKind::Nat {
                assert_eq!(declaration.table.family(), "ip", "{chain:?}");
            }
        }
    }
}

/// IPv6 is never NATed: every NAT rule matches IPv4 sources, and no set holds IPv6.
#[test]
fn ipv6_is_never_nated() {
    for (declaration, elements) in nat(Some("eth0")).tables().iter() {
        for chain in &declaration.chains {
            for rule in &chain.rules {
                if rule.contains("masquerade") || rule.contains("snat") {
                    assert!(rule.starts_with("ip saddr "), "{rule}");
                }
                assert!(!rule.contains("ip6") && !rule.contains("ipv6"), "{rule}");
            }
        }
        for set in &declaration.sets {
            assert_ne!(set.kind, "ipv6_addr", "{set:?}");
        }
        assert!(elements
            .values()
            .flatten()
            .all(|e| !matches!(e, Element::Prefix(ipnet::IpNet::V6(_)))));
    }
}

#[test]
fn without_an_uplink_there_is_no_tunnel_in_chain() {
    let chains: Vec<&str> = nat(None)
        .tables()
        .iter()
        .flat_map(|(d, _)| d.chains.iter().map(|c| c.name))
        .collect();
    assert_eq!(chains, ["tunnel-out", "postrouting"]);
}

#[test]
fn element_changes_add_and_delete_only_what_differs() {
    let (_, desired) = declared(&nat(Some("eth0")), Table::WeftNat);
    assert_eq!(element_script(Table::WeftNat, &desired, &desired), "");
    let mut actual = desired.clone();
    let subnets = actual.get_mut(POD_SUBNETS).unwrap();
    subnets.clear();
    subnets.insert(prefix("10.255.9.0/24"));
    subnets.insert(prefix("10.255.8.0/24"));
    assert_eq!(
        element_script(Table::WeftNat, &actual, &desired),
        "delete element ip weft-nat pod-subnets-v4 { 10.255.8.0/24, 10.255.9.0/24 }\n\
         add element ip weft-nat pod-subnets-v4 { 10.255.1.0/24 }\n"
    );

    let (_, desired) = declared(&nat(Some("eth0")), Table::Weft);
    let mut actual = desired.clone();
    actual
        .get_mut(TUNNEL_PORTS)
        .unwrap()
        .insert(Element::Port(8472));
    assert_eq!(
        element_script(Table::Weft, &actual, &desired),
        "delete element inet weft tunnel-ports { 8472 }\n"
    );
    actual.clear();
    assert_eq!(
        element_script(Table::Weft, &actual, &desired),
        "add element inet weft tunnel-ports { 4789 }\n"
    );
}

/// `nft -j list table ip weft-nat` as nftables 1.0.6 prints the egress NAT table (rule
/// expressions elided: weftd compares rule markers, not expressions).
fn listed(rules: &[(&str, String)], pod_subnets: &str) -> Vec<u8> {
    let mut objects = vec![
        r#"{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}"#.to_owned(),
        r#"{"table": {"family": "ip", "name": "weft-nat", "handle": 1}}"#.to_owned(),
        format!(r#"{{"set": {{"family": "ip", "name": "pod-subnets-v4", "table": "weft-nat", "type": "ipv4_addr", "handle": 2, "flags": ["interval"], "elem": [{pod_subnets}]}}}}"#),
        r#"{"chain": {"family": "ip", "table": "weft-nat", "name": "postrouting", "handle": 1, "type": "nat", "hook": "postrouting", "prio": 100, "policy": "accept"}}"#.to_owned(),
    ];
    for (chain, comment) in rules {
        objects.push(format!(
            r#"{{"rule": {{"family": "ip", "table": "weft-nat", "chain": "{chain}", "handle": 9, "comment": "{comment}", "expr": []}}}}"#
        ));
    }
    format!("{{\"nftables\": [{}]}}", objects.join(", ")).into_bytes()
}

fn markers(declaration: &Declaration) -> Vec<(&'static str, String)> {
    declaration
        .chains
        .iter()
        .flat_map(|c| {
            c.rules
                .iter()
                .enumerate()
                .map(|(i, r)| (c.name, rule_marker(c.name, i, r)))
        })
        .collect()
}

#[test]
fn a_listing_matches_its_declaration_until_a_rule_or_set_drifts() {
    let (declaration, elements) = declared(&nat(Some("eth0")), Table::WeftNat);
    let rules = markers(&declaration);
    let subnet = r#"{"prefix": {"addr": "10.255.1.0", "len": 24}}"#;

    let listing = Listing::parse(&listed(&rules, subnet)).unwrap();
    assert_eq!(listing.shape, declaration.shape());
    assert_eq!(
        listing.declared_elements(&declaration),
        Some(elements.clone())
    );

    // An element removed by hand: same shape, and the element script puts it back.
    let listing = Listing::parse(&listed(&rules, "")).unwrap();
    assert_eq!(listing.shape, declaration.shape());
    let actual = listing.declared_elements(&declaration).unwrap();
    assert_eq!(
        element_script(Table::WeftNat, &actual, &elements),
        "add element ip weft-nat pod-subnets-v4 { 10.255.1.0/24 }\n"
    );

    // A rule deleted, a foreign rule added, a rule of another text: the shape differs.
    let deleted = Listing::parse(&listed(&rules[1..], subnet)).unwrap();
    assert_ne!(deleted.shape, declaration.shape());
    let mut foreign = rules.clone();
    foreign.push(("postrouting", String::new()));
    let foreign = Listing::parse(&listed(&foreign, subnet)).unwrap();
    assert_ne!(foreign.shape, declaration.shape());
    let mut changed = rules.clone();
    changed[0].1 = rule_marker("postrouting", 0, "ip saddr 10.0.0.0/8 masquerade");
    let changed = Listing::parse(&listed(&changed, subnet)).unwrap();
    assert_ne!(changed.shape, declaration.shape());

    // An element of a form weftd never writes makes the table count as different.
    let odd = Listing::parse(&listed(&rules, r#"{"range": ["10.0.0.1", "10.0.0.9"]}"#)).unwrap();
    assert_eq!(odd.declared_elements(&declaration), None);
}
