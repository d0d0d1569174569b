//! NetworkPolicy's nft side: the static declaration, the shape compare and every rule
//! form here; the family invariant over many generated policies in
//! `network_policy_invariant.rs`, the compiler and the diff scripts in
//! `network_policy_diff.rs` (all pure); the kernel tests in `network_policy_kernel.rs`.
use super::super::listing::Listing;
use super::super::table::{rule_marker, Declaration};
use super::names::{block_sets, group_ports_set, group_set, local_ports_set, profile_chain};
use super::rules::{rule_forms, Needs};
use super::*;
use serde_json::json;
use weft_api::{GroupMember, PodPolicies, PolicyRule, WeftPolicySpec};

#[path = "network_policy_diff.rs"]
mod diff;
#[path = "network_policy_invariant.rs"]
mod invariant;
#[path = "network_policy_kernel.rs"]
mod kernel;

const GROUP_A: &str = "g-00000000000a";
const GROUP_B: &str = "g-00000000000b";

fn rule(value: serde_json::Value) -> PolicyRule {
    serde_json::from_value(value).unwrap()
}

fn spec(value: serde_json::Value) -> WeftPolicySpec {
    let mut value = value;
    value["source"] = json!({"namespace": "x", "name": "p", "uid": "u", "generation": 1});
    serde_json::from_value(value).unwrap()
}

fn entry(ingress: &[&str], egress: &[&str]) -> PodPolicies {
    PodPolicies {
        namespace: "x".into(),
        name: "pod".into(),
        uid: "uid".into(),
        ingress: ingress.iter().map(|s| s.to_string()).collect(),
        egress: egress.iter().map(|s| s.to_string()).collect(),
        named_ports: Vec::new(),
        ip_families: None,
    }
}

fn member(uid: &str, ips: &[&str], ports: serde_json::Value) -> GroupMember {
    serde_json::from_value(json!({"uid": uid, "ips": ips, "ports": ports})).unwrap()
}

/// The rules of `rule` in `direction`, with what they need.
fn forms(rule_json: serde_json::Value, direction: Direction) -> (Vec<String>, Needs) {
    let mut needs = Needs::default();
    let rules = rule_forms(&rule(rule_json), direction, Some("g-all"), "r", &mut needs);
    (rules, needs)
}

fn declared() -> Declaration {
    let mut tables = Tables::default();
    NetworkPolicy::default().declare(&mut tables);
    tables.table(Table::Weft).0.clone()
}

#[test]
fn the_static_part_judges_weft_veths_only_and_drops_the_unjudged() {
    let declaration = declared();
    let maps: Vec<(&str, &str, &str)> = declaration
        .maps
        .iter()
        .map(|m| (m.name, m.key, m.data))
        .collect();
    assert_eq!(
        maps,
        [
            (INGRESS_PODS, "ifname", "verdict"),
            (EGRESS_PODS, "ifname", "verdict")
        ]
    );
    let sets: Vec<(&str, &str)> = declaration.sets.iter().map(|s| (s.name, s.kind)).collect();
    assert_eq!(
        sets,
        [
            (SELF, "ifname . ifname"),
            (V4_OFF, "ifname"),
            (V6_OFF, "ifname")
        ]
    );
    let chain = |name: &str| {
        declaration
            .chains
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no chain {name}"))
    };
    let egress = chain(EGRESS_CHAIN);
    assert_eq!((egress.hook, egress.priority.value()), (Hook::Forward, -5));
    assert_eq!(
        egress.rules,
        [
            "iifname != \"weft*\" return",
            "iifname \"weft-vxlan\" return",
            "iifname . oifname @np-self accept",
            "iifname vmap @np-egress-pods",
            "drop"
        ]
    );
    let ingress = chain(INGRESS_CHAIN);
    assert_eq!(
        (ingress.hook, ingress.priority.value()),
        (Hook::Forward, -4)
    );
    assert_eq!(ingress.rules[0], "oifname != \"weft*\" return");
    assert_eq!(ingress.rules[3], "oifname vmap @np-ingress-pods");
    assert_eq!(ingress.rules.last().unwrap(), "drop");
    // After the guard, before notrack and conntrack; the policy chains after DNAT
    // (-100), egress before ingress, both before kube-proxy's filter (0).
    assert!(Priority::PodGuard.value() < Priority::PolicyFamily.value());
    assert!(Priority::PolicyFamily.value() < Priority::Raw.value());
    assert!(-100 < Priority::PolicyEgress.value());
    assert!(Priority::PolicyEgress.value() < Priority::PolicyIngress.value());
    assert!(Priority::PolicyIngress.value() < Priority::Filter.value());
    for (name, hook) in [
        (FAMILY_FROM_CHAIN, Hook::Prerouting),
        (FAMILY_TO_CHAIN, Hook::Postrouting),
    ] {
        let family = chain(name);
        assert_eq!(
            (family.hook, family.priority),
            (hook, Priority::PolicyFamily)
        );
        let nd = family
            .rules
            .iter()
            .position(|r| r.contains("nd-neighbor-solicit"));
        let drop = family.rules.iter().position(|r| r.ends_with("drop"));
        assert!(
            nd < drop && nd.is_some(),
            "ND/MLD first: {:?}",
            family.rules
        );
        assert!(
            family.rules.iter().all(|r| !r.contains("!=")),
            "{:?}",
            family.rules
        );
    }
    // Nothing static is named like a kept object, and every static object is np-*.
    let names = declaration
        .maps
        .iter()
        .map(|m| m.name)
        .chain(declaration.sets.iter().map(|s| s.name))
        .chain(declaration.chains.iter().map(|c| c.name));
    for name in names {
        assert!(name.starts_with("np-"), "{name}");
        assert!(
            KEPT_PREFIXES.iter().all(|p| !name.starts_with(p)),
            "{name} looks kept"
        );
    }
    assert_eq!(declaration.kept, KEPT_PREFIXES);
    let script = declaration.creation_script(&Default::default());
    assert!(script.contains("\tmap np-egress-pods { type ifname : verdict; }"));
    assert!(script.contains("type filter hook forward priority -5; policy accept;"));
    assert!(script.contains("type filter hook prerouting priority -305; policy accept;"));
}

/// `nft -j list table inet weft` as nftables 1.0.6 prints it: the static part with
/// elements in its maps and interface sets, and `extra` objects.
fn listed(declaration: &Declaration, extra: &[String]) -> Vec<u8> {
    let mut objects =
        vec![r#"{"table": {"family": "inet", "name": "weft", "handle": 1}}"#.to_owned()];
    objects.push(r#"{"map": {"family": "inet", "name": "np-ingress-pods", "table": "weft", "type": "ifname", "handle": 2, "map": "verdict", "elem": [["weft0001", {"jump": {"target": "np-i-00"}}]]}}"#.into());
    objects.push(r#"{"map": {"family": "inet", "name": "np-egress-pods", "table": "weft", "type": "ifname", "handle": 3, "map": "verdict", "elem": [["weft0001", {"accept": null}]]}}"#.into());
    objects.push(r#"{"set": {"family": "inet", "name": "np-self", "table": "weft", "type": ["ifname", "ifname"], "handle": 4, "elem": [{"concat": ["weft0001", "weft0001"]}]}}"#.into());
    objects.push(r#"{"set": {"family": "inet", "name": "np-v4-off", "table": "weft", "type": "ifname", "handle": 5, "elem": ["weft0001"]}}"#.into());
    objects.push(r#"{"set": {"family": "inet", "name": "np-v6-off", "table": "weft", "type": "ifname", "handle": 6}}"#.into());
    for chain in &declaration.chains {
        objects.push(format!(
            r#"{{"chain": {{"family": "inet", "table": "weft", "name": "{}", "handle": 7, "type": "filter", "hook": "{}", "prio": {}, "policy": "accept"}}}}"#,
            chain.name,
            chain.hook.name(),
            chain.priority.value()
        ));
    }
    objects.extend(extra.iter().cloned());
    for chain in &declaration.chains {
        for (i, rule) in chain.rules.iter().enumerate() {
            objects.push(format!(
                r#"{{"rule": {{"family": "inet", "table": "weft", "chain": "{}", "handle": 9, "comment": "{}", "expr": []}}}}"#,
                chain.name,
                rule_marker(chain.name, i, rule)
            ));
        }
    }
    format!("{{\"nftables\": [{}]}}", objects.join(", ")).into_bytes()
}

#[test]
fn the_shape_compare_sees_the_static_part_and_leaves_out_the_kept_objects() {
    let declaration = declared();
    let plain = Listing::parse(&listed(&declaration, &[])).unwrap();
    assert!(declaration.describes(&plain));
    assert!(
        plain.declared_elements(&declaration).is_some(),
        "interface elements belong to the concern, not the element scripts"
    );

    let dynamic = [
        r#"{"chain": {"family": "inet", "table": "weft", "name": "np-i-0123456789abcdef", "handle": 20}}"#.to_owned(),
        r#"{"rule": {"family": "inet", "table": "weft", "chain": "np-i-0123456789abcdef", "handle": 21, "expr": []}}"#.to_owned(),
        r#"{"set": {"family": "inet", "name": "np-b-0123456789abcdef-v4", "table": "weft", "type": "ipv4_addr", "handle": 22, "flags": ["interval"], "elem": [{"range": ["10.0.0.1", "10.0.0.9"]}]}}"#.to_owned(),
        r#"{"set": {"family": "inet", "name": "np-g-00000000000a-v6", "table": "weft", "type": "ipv6_addr", "handle": 23, "elem": ["2001:db8::1"]}}"#.to_owned(),
        r#"{"set": {"family": "inet", "name": "np-lp-http-v4", "table": "weft", "type": ["ipv4_addr", "inet_proto", "inet_service"], "handle": 24}}"#.to_owned(),
    ];
    let with_dynamic = Listing::parse(&listed(&declaration, &dynamic)).unwrap();
    assert!(declaration.describes(&with_dynamic));
    assert_eq!(
        with_dynamic.declared_elements(&declaration),
        plain.declared_elements(&declaration)
    );

    // A static object gone or foreign: different.
    let mut missing = Listing::parse(&listed(&declaration, &[])).unwrap();
    missing.shape.maps.remove(EGRESS_PODS);
    assert!(!declaration.describes(&missing));
    let foreign = [r#"{"set": {"family": "inet", "name": "np-other", "table": "weft", "type": "ipv4_addr", "handle": 30}}"#.to_owned()];
    let foreign = Listing::parse(&listed(&declaration, &foreign)).unwrap();
    assert!(!declaration.describes(&foreign));
    let mut changed = Listing::parse(&listed(&declaration, &[])).unwrap();
    changed
        .shape
        .chains
        .get_mut(EGRESS_CHAIN)
        .unwrap()
        .rules
        .pop();
    assert!(!declaration.describes(&changed));
}

#[test]
fn a_rule_without_peers_or_ports_allows_everything_of_both_families() {
    let (rules, needs) = forms(json!({}), Direction::Ingress);
    assert_eq!(rules, ["accept"]);
    assert!(needs.sets.is_empty() && needs.problems.is_empty());
}

#[test]
fn numbered_ports_share_one_anonymous_set_with_ranges_merged() {
    let ports = json!({"ports": [
        {"protocol": "UDP", "port": 53},
        {"protocol": "TCP", "port": 8000, "endPort": 8080},
        {"protocol": "TCP", "port": 80},
        {"protocol": "TCP", "port": 8080, "endPort": 8090},
        {"protocol": "TCP", "port": 81},
        {"protocol": "SCTP"}
    ]});
    let (rules, _) = forms(ports, Direction::Ingress);
    assert_eq!(
        rules,
        [
            "meta l4proto . th dport { tcp . 80-81, tcp . 8000-8090, udp . 53 } accept",
            "meta l4proto { sctp } accept"
        ]
    );
}

#[test]
fn a_group_peer_emits_one_rule_per_family_on_its_sets() {
    let (rules, _) = forms(
        json!({"peers": [{"group": GROUP_A}], "ports": [{"port": 80}]}),
        Direction::Ingress,
    );
    assert_eq!(
        rules,
        [
            "ip saddr @np-g-00000000000a-v4 meta l4proto . th dport { tcp . 80 } accept",
            "ip6 saddr @np-g-00000000000a-v6 meta l4proto . th dport { tcp . 80 } accept"
        ]
    );
    let (rules, _) = forms(json!({"peers": [{"group": GROUP_A}]}), Direction::Egress);
    assert_eq!(
        rules,
        [
            "ip daddr @np-g-00000000000a-v4 accept",
            "ip6 daddr @np-g-00000000000a-v6 accept"
        ]
    );
}

#[test]
fn an_ip_block_emits_rules_of_its_own_family_only_minus_its_aggregated_exceptions() {
    let block = json!({"peers": [{"ipBlock": {"cidr": "198.51.100.0/24",
        "except": ["198.51.100.128/26", "198.51.100.192/26", "198.51.100.130/32"]}}]});
    let (rules, needs) = forms(block, Direction::Ingress);
    let key = "198.51.100.0/24 198.51.100.128/25";
    let (cidr_set, except_set) = block_sets(key, Family::V4);
    assert_eq!(
        rules,
        [format!(
            "ip saddr @{cidr_set} ip saddr != @{except_set} accept"
        )]
    );
    assert_eq!(needs.sets.len(), 1, "{:?}", needs.sets);

    let (rules, _) = forms(
        json!({"peers": [{"ipBlock": {"cidr": "2001:db8::/32"}}], "ports": [{"protocol": "UDP"}]}),
        Direction::Egress,
    );
    let (cidr_set, _) = block_sets("2001:db8::/32", Family::V6);
    assert_eq!(
        rules,
        [format!(
            "ip6 daddr @{cidr_set} meta l4proto {{ udp }} accept"
        )]
    );

    let (rules, needs) = forms(
        json!({"peers": [{"ipBlock": {"cidr": "10.0.0.1/8"}}]}),
        Direction::Ingress,
    );
    assert!(rules.is_empty(), "a block weftd cannot read allows nothing");
    assert_eq!(needs.problems.len(), 1, "{:?}", needs.problems);
    assert!(
        needs.problems[0].contains("10.0.0.1/8"),
        "{:?}",
        needs.problems
    );
}

#[test]
fn named_ports_resolve_on_the_pod_that_owns_them() {
    // Ingress: the local pods' ports, with the rule's protocol.
    let (rules, _) = forms(
        json!({"ports": [{"protocol": "TCP", "namedPort": "http"}]}),
        Direction::Ingress,
    );
    assert_eq!(
        rules,
        [
            "meta l4proto tcp ip daddr . meta l4proto . th dport @np-lp-http-v4 accept",
            "meta l4proto tcp ip6 daddr . meta l4proto . th dport @np-lp-http-v6 accept"
        ]
    );
    let (rules, _) = forms(
        json!({"peers": [{"group": GROUP_B}], "ports": [{"protocol": "UDP", "namedPort": "dns"}]}),
        Direction::Ingress,
    );
    assert_eq!(
        rules[0],
        "ip saddr @np-g-00000000000b-v4 meta l4proto udp ip daddr . meta l4proto . th dport @np-lp-dns-v4 accept"
    );
    // Egress to a group: its members' ports, which hold only its members' addresses.
    let (rules, _) = forms(
        json!({"peers": [{"group": GROUP_A}], "ports": [{"namedPort": "http"}]}),
        Direction::Egress,
    );
    assert_eq!(
        rules,
        [
            "meta l4proto tcp ip daddr . meta l4proto . th dport @np-gp-00000000000a-http-v4 accept",
            "meta l4proto tcp ip6 daddr . meta l4proto . th dport @np-gp-00000000000a-http-v6 accept"
        ]
    );
    // Egress to every peer or a block: the group of every pod.
    let (rules, _) = forms(
        json!({"peers": [{"ipBlock": {"cidr": "2001:db8::/32"}}], "ports": [{"namedPort": "http"}]}),
        Direction::Egress,
    );
    let (cidr_set, _) = block_sets("2001:db8::/32", Family::V6);
    assert_eq!(
        rules,
        [format!(
            "ip6 daddr @{cidr_set} meta l4proto tcp ip6 daddr . meta l4proto . th dport @np-gp-all-http-v6 accept"
        )]
    );
    let mut needs = Needs::default();
    let without_all = rule(json!({"ports": [{"namedPort": "http"}]}));
    let rules = rule_forms(&without_all, Direction::Egress, None, "r", &mut needs);
    assert!(rules.is_empty());
    assert_eq!(needs.problems.len(), 1, "{:?}", needs.problems);
}

#[test]
fn names_are_short_deterministic_and_keep_readable_content() {
    assert_eq!(group_set(GROUP_A, Family::V4), "np-g-00000000000a-v4");
    assert_eq!(group_set("g-all", Family::V6), "np-g-all-v6");
    let odd = group_set("G-00000000000A", Family::V4);
    assert!(
        odd.starts_with("np-g-x") && odd.len() == "np-g-x-v4".len() + 16,
        "{odd}"
    );
    assert_eq!(local_ports_set("http", Family::V6), "np-lp-http-v6");
    let long = local_ports_set(&"p".repeat(300), Family::V4);
    assert!(long.len() < 40, "{long}");
    assert_ne!(long, local_ports_set(&"p".repeat(301), Family::V4));
    assert_eq!(
        group_ports_set(GROUP_A, "http", Family::V4),
        "np-gp-00000000000a-http-v4"
    );
    let profile = profile_chain(Direction::Ingress, &["x.a".into(), "x.b".into()]);
    assert!(
        profile.starts_with("np-i-") && profile.len() == 21,
        "{profile}"
    );
    assert_eq!(
        profile,
        profile_chain(Direction::Ingress, &["x.a".into(), "x.b".into()])
    );
    assert_ne!(
        profile,
        profile_chain(Direction::Egress, &["x.a".into(), "x.b".into()])
    );
}
