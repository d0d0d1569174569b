use super::egress_nat::{POD_SUBNETS, TUNNEL_PORTS};
use super::table::{element_script, rule_marker, Element};
use super::*;

fn nat(uplink: Option<&str>) -> Firewall {
    Firewall::new(vec![Concern::EgressNat(EgressNat {
        subnet: "10.255.1.0/24".parse().unwrap(),
        uplink: uplink.map(str::to_owned),
        tunnel_port: 4789,
    })])
}

fn prefix(text: &str) -> Element {
    Element::Prefix(text.parse().unwrap())
}

#[test]
fn creation_declares_one_inet_table_with_its_elements_in_one_script() {
    let (declaration, elements) = nat(Some("eth0")).declaration();
    let script = declaration.creation_script(&elements);
    let lines: Vec<&str> = script.lines().map(str::trim).collect();
    assert_eq!(
        lines[..5],
        [
            "add table inet weft",
            "delete table inet weft",
            "add table ip weft",
            "delete table ip weft",
            "table inet weft {"
        ],
        "{script}"
    );
    for expected in [
        "set pod-subnets-v4 { type ipv4_addr; flags interval; }",
        "set tunnel-ports { type inet_service; }",
        "type nat hook postrouting priority srcnat; policy accept;",
        "type filter hook prerouting priority raw; policy accept;",
        "type filter hook output priority raw; policy accept;",
        "add element inet weft pod-subnets-v4 { 10.255.1.0/24 }",
        "add element inet weft tunnel-ports { 4789 }",
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
    assert!(script.contains("iifname \"eth0\" udp dport @tunnel-ports notrack"));
    assert!(script.contains("\tudp dport @tunnel-ports notrack"));
}

/// The table is `inet`, so the guarantee that IPv6 is never NATed rests on every NAT
/// rule matching IPv4 sources only.
#[test]
fn ipv6_is_never_nated() {
    let (declaration, elements) = nat(Some("eth0")).declaration();
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

#[test]
fn without_an_uplink_there_is_no_tunnel_in_chain() {
    let (declaration, _) = nat(None).declaration();
    let chains: Vec<&str> = declaration.chains.iter().map(|c| c.name).collect();
    assert_eq!(chains, ["postrouting", "tunnel-out"]);
}

#[test]
fn element_changes_add_and_delete_only_what_differs() {
    let (_, desired) = nat(Some("eth0")).declaration();
    assert_eq!(element_script(&desired, &desired), "");
    let mut actual = desired.clone();
    let subnets = actual.get_mut(POD_SUBNETS).unwrap();
    subnets.clear();
    subnets.insert(prefix("10.255.9.0/24"));
    actual
        .get_mut(TUNNEL_PORTS)
        .unwrap()
        .insert(Element::Port(8472));
    assert_eq!(
        element_script(&actual, &desired),
        "delete element inet weft pod-subnets-v4 { 10.255.9.0/24 }\n\
         delete element inet weft tunnel-ports { 8472 }\n\
         add element inet weft pod-subnets-v4 { 10.255.1.0/24 }\n"
    );
    actual.clear();
    assert_eq!(
        element_script(&actual, &desired),
        "add element inet weft pod-subnets-v4 { 10.255.1.0/24 }\n\
         add element inet weft tunnel-ports { 4789 }\n"
    );
}

/// `nft -j list table inet weft` as nftables 1.0.6 prints the egress NAT table (rule
/// expressions elided: weftd compares rule markers, not expressions).
fn listed(rules: &[(&str, String)], pod_subnets: &str) -> Vec<u8> {
    let mut objects = vec![
        r#"{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}"#.to_owned(),
        r#"{"table": {"family": "inet", "name": "weft", "handle": 1}}"#.to_owned(),
        format!(r#"{{"set": {{"family": "inet", "name": "pod-subnets-v4", "table": "weft", "type": "ipv4_addr", "handle": 3, "flags": ["interval"], "elem": [{pod_subnets}]}}}}"#),
        r#"{"set": {"family": "inet", "name": "tunnel-ports", "table": "weft", "type": "inet_service", "handle": 4, "elem": [4789]}}"#.to_owned(),
        r#"{"chain": {"family": "inet", "table": "weft", "name": "postrouting", "handle": 1, "type": "nat", "hook": "postrouting", "prio": 100, "policy": "accept"}}"#.to_owned(),
        r#"{"chain": {"family": "inet", "table": "weft", "name": "tunnel-in", "handle": 2, "type": "filter", "hook": "prerouting", "prio": -300, "policy": "accept"}}"#.to_owned(),
        r#"{"chain": {"family": "inet", "table": "weft", "name": "tunnel-out", "handle": 5, "type": "filter", "hook": "output", "prio": -300, "policy": "accept"}}"#.to_owned(),
    ];
    for (chain, comment) in rules {
        objects.push(format!(
            r#"{{"rule": {{"family": "inet", "table": "weft", "chain": "{chain}", "handle": 9, "comment": "{comment}", "expr": []}}}}"#
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
    let (declaration, elements) = nat(Some("eth0")).declaration();
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
        element_script(&actual, &elements),
        "add element inet weft pod-subnets-v4 { 10.255.1.0/24 }\n"
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
