use super::*;
use serde_json::json;

fn policy(spec: serde_json::Value) -> NetworkPolicy {
    serde_json::from_value(json!({
        "metadata": {"namespace": "x", "name": "web", "uid": "u1", "generation": 3},
        "spec": spec,
    }))
    .unwrap()
}

fn compiled(spec: serde_json::Value) -> CompiledPolicy {
    let c = compile(&policy(spec)).unwrap();
    assert_eq!(c.spec.problems(), vec![], "weftd's validator takes it");
    c
}

fn error(spec: serde_json::Value) -> PolicyError {
    compile(&policy(spec)).unwrap_err()
}

fn ingress_peers(c: &CompiledPolicy) -> Vec<PolicyPeer> {
    let rules = c.spec.ingress.as_ref().unwrap();
    rules[0].peers.clone().unwrap()
}

#[test]
fn policy_types_default_as_the_api_says() {
    // No policyTypes: Ingress always, Egress only with egress rules.
    let c = compiled(json!({"podSelector": {}}));
    assert_eq!(c.spec.ingress, Some(vec![]));
    assert_eq!(c.spec.egress, None);
    let c = compiled(json!({"podSelector": {}, "egress": []}));
    assert_eq!(
        c.spec.egress, None,
        "an empty egress list is no egress rule"
    );
    let c = compiled(json!({"podSelector": {}, "egress": [{}]}));
    assert_eq!(c.spec.egress, Some(vec![PolicyRule::default()]));
    // An empty policyTypes is defaulted like an absent one.
    let c = compiled(json!({"podSelector": {}, "policyTypes": [], "egress": [{}]}));
    assert!(c.spec.ingress.is_some() && c.spec.egress.is_some());
    // Given: exactly those, whatever rules there are.
    let c = compiled(json!({"podSelector": {}, "policyTypes": ["Egress"], "ingress": [{}]}));
    assert_eq!((c.spec.ingress, c.spec.egress), (None, Some(vec![])));
    let e = error(json!({"podSelector": {}, "policyTypes": ["Ingress", "ingress"]}));
    assert_eq!(e.field, "spec.policyTypes[1]");
    assert_eq!(e.value, "ingress");
    assert_eq!(e.problem, Problem::PolicyType);
}

#[test]
fn the_source_names_the_policy_and_its_generation() {
    let c = compiled(json!({"podSelector": {"matchLabels": {"app": "web"}}}));
    assert_eq!(c.name(), "x.web");
    assert_eq!(c.key, Key::new("x", "web"));
    assert_eq!(c.spec.source.uid, "u1");
    assert_eq!(c.spec.source.generation, 3);
    assert!(c
        .pods
        .matches(&Labels::from([("app".into(), "web".into())])));
    assert!(!c.pods.matches(&Labels::new()));
}

#[test]
fn a_pod_selector_peer_is_scoped_to_the_policy_namespace_a_namespace_selector_to_the_cluster() {
    let c = compiled(json!({"podSelector": {}, "ingress": [{"from": [
        {"podSelector": {"matchLabels": {"app": "db"}}},
        {"namespaceSelector": {"matchLabels": {"team": "a"}}},
        {"namespaceSelector": {"matchLabels": {"team": "a"}}, "podSelector": {"matchLabels": {"app": "db"}}},
    ]}]}));
    let keys: Vec<&GroupKey> = c.groups.values().map(|g| &g.key).collect();
    let texts: BTreeSet<String> = keys.iter().map(|k| k.text()).collect();
    let expected = [
        "x||app in (db)",
        "*|team in (a)|",
        "*|team in (a)|app in (db)",
    ];
    assert_eq!(texts, expected.iter().map(|t| t.to_string()).collect());
    // The rule's peers name those groups, in order.
    let names: Vec<String> = ingress_peers(&c)
        .into_iter()
        .map(|p| p.group.unwrap())
        .collect();
    let by_text = |t: &str| keys.iter().find(|k| k.text() == t).unwrap().name();
    assert_eq!(names, expected.map(by_text));
    assert!(
        names.iter().all(|n| n.len() == 14 && n.starts_with("g-")),
        "{names:?}"
    );
    // Both: pods that match the pod selector in namespaces that match the other.
    let both = keys.iter().find(|k| k.text() == expected[2]).unwrap();
    let team_a = Labels::from([("team".into(), "a".into())]);
    let db = Labels::from([("app".into(), "db".into())]);
    assert!(both.selects("y", Some(&team_a), &db));
    assert!(!both.selects("y", Some(&Labels::new()), &db));
    assert!(!both.selects("y", Some(&team_a), &Labels::new()));
    assert!(
        !both.selects("y", None, &db),
        "an unseen namespace is picked by no selector"
    );
}

#[test]
fn the_same_selection_written_differently_is_one_group() {
    let a = compiled(json!({"podSelector": {}, "ingress": [{"from": [
        {"podSelector": {"matchLabels": {"app": "db", "tier": "2"}}},
    ]}]}));
    let b = compiled(json!({"podSelector": {}, "ingress": [{"from": [
        {"podSelector": {"matchExpressions": [
            {"key": "tier", "operator": "In", "values": ["2"]},
            {"key": "app", "operator": "In", "values": ["db", "db"]},
        ]}},
    ]}]}));
    assert_eq!(ingress_peers(&a), ingress_peers(&b));
    // Values are sets: their order does not matter.
    let c = compiled(json!({"podSelector": {}, "ingress": [{"from": [
        {"podSelector": {"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["b", "a"]}]}},
    ]}]}));
    let d = compiled(json!({"podSelector": {}, "ingress": [{"from": [
        {"podSelector": {"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["a", "b"]}]}},
    ]}]}));
    assert_eq!(ingress_peers(&c), ingress_peers(&d));
    assert_eq!(
        c.groups.values().next().unwrap().key.text(),
        "x||app notin (a,b)"
    );
    // A namespace selector of everything is not the policy's namespace.
    let e = compiled(json!({"podSelector": {}, "ingress": [{"from": [
        {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "db", "tier": "2"}}},
    ]}]}));
    assert_ne!(ingress_peers(&a), ingress_peers(&e));
    // Every pod of the cluster is the shared all-pods group.
    let f =
        compiled(json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {}}]}]}));
    assert_eq!(ingress_peers(&f)[0].group.as_deref(), Some(ALL_PODS_GROUP));
}

#[test]
fn absent_or_empty_peers_and_ports_mean_all() {
    let c = compiled(json!({"podSelector": {}, "ingress": [{"from": [], "ports": []}, {}]}));
    let all = PolicyRule::default();
    assert_eq!(c.spec.ingress, Some(vec![all.clone(), all]));
    assert!(c.groups.is_empty());
}

#[test]
fn ip_blocks_are_canonical_and_their_exceptions_inside() {
    let c = compiled(json!({"podSelector": {}, "ingress": [{"from": [
        {"ipBlock": {"cidr": "192.0.2.7/24", "except": ["192.0.2.130/25"]}},
        {"ipBlock": {"cidr": "2001:db8::1/64"}},
    ]}]}));
    let blocks: Vec<IpBlock> = ingress_peers(&c)
        .into_iter()
        .map(|p| p.ip_block.unwrap())
        .collect();
    assert_eq!(blocks[0].cidr, "192.0.2.0/24");
    assert_eq!(blocks[0].except, vec!["192.0.2.128/25"]);
    assert_eq!(blocks[1].cidr, "2001:db8::/64");
    assert!(c.groups.is_empty());
    let e = error(json!({"podSelector": {}, "egress": [{"to": [
        {"ipBlock": {"cidr": "192.0.2.0/24", "except": ["198.51.100.0/25"]}},
    ]}]}));
    assert_eq!(e.field, "spec.egress[0].to[0].ipBlock.except[0]");
    assert_eq!(e.value, "198.51.100.0/25");
    assert_eq!(e.problem, Problem::ExceptOutside);
    let e = error(json!({"podSelector": {}, "egress": [{"to": [
        {"ipBlock": {"cidr": "2001:db8::/64", "except": ["2001:db8::1/64"]}},
    ]}]}));
    assert_eq!(e.field, "spec.egress[0].to[0].ipBlock.except[0]");
    assert_eq!(
        e.problem,
        Problem::ExceptOutside,
        "the apiserver asks for a strict subset"
    );
    let e = error(
        json!({"podSelector": {}, "ingress": [{}, {"from": [{"ipBlock": {"cidr": "192.0.2.0"}}]}]}),
    );
    assert_eq!(
        e.to_string(),
        "spec.ingress[1].from[0].ipBlock.cidr: '192.0.2.0' is not a CIDR"
    );
}

#[test]
fn ports_by_number_range_or_name_with_tcp_by_default() {
    let c = compiled(json!({"podSelector": {}, "ingress": [{"ports": [
        {"port": 80},
        {"protocol": "UDP", "port": 30000, "endPort": 30100},
        {"protocol": "SCTP"},
        {"port": "http"},
    ]}]}));
    let ports = &c.spec.ingress.as_ref().unwrap()[0].ports;
    let expected = [
        PolicyPort {
            protocol: Protocol::Tcp,
            port: Some(80),
            ..PolicyPort::default()
        },
        PolicyPort {
            protocol: Protocol::Udp,
            port: Some(30000),
            end_port: Some(30100),
            named_port: None,
        },
        PolicyPort {
            protocol: Protocol::Sctp,
            ..PolicyPort::default()
        },
        PolicyPort {
            protocol: Protocol::Tcp,
            named_port: Some("http".into()),
            ..PolicyPort::default()
        },
    ];
    assert_eq!(ports, &expected);
    assert_eq!(c.ingress_ports, BTreeSet::from(["http".to_owned()]));
}

#[test]
fn egress_named_ports_are_listed_by_the_groups_they_resolve_on() {
    let c = compiled(json!({"podSelector": {}, "egress": [
        {"to": [{"podSelector": {"matchLabels": {"app": "dns"}}}], "ports": [{"protocol": "UDP", "port": "dns"}]},
        {"ports": [{"port": "http"}]},
        {"to": [{"ipBlock": {"cidr": "192.0.2.0/24"}}], "ports": [{"port": "metrics"}]},
        {"to": [{"podSelector": {"matchLabels": {"app": "web"}}}], "ports": [{"port": 80}]},
    ]}));
    let ports = |name: &str| c.groups[name].ports.iter().cloned().collect::<Vec<_>>();
    let dns = GroupKey {
        scope: Scope::Namespace("x".into()),
        pods: Selector::parse(
            &serde_json::from_value(json!({"matchLabels": {"app": "dns"}})).unwrap(),
            "s",
        )
        .unwrap(),
    };
    assert_eq!(ports(&dns.name()), vec!["dns"]);
    // With no pod peer, the port is resolved on every pod of the cluster.
    assert_eq!(ports(ALL_PODS_GROUP), vec!["http", "metrics"]);
    assert_eq!(c.groups.len(), 3);
    assert!(
        c.ingress_ports.is_empty(),
        "egress ports resolve on the remote pods"
    );
}

#[test]
fn what_the_apiserver_would_refuse_is_an_error_naming_field_and_value() {
    let cases = [
        (
            json!({"podSelector": {}, "ingress": [{"ports": [{"protocol": "ICMP"}]}]}),
            "spec.ingress[0].ports[0].protocol",
            "ICMP",
            Problem::Protocol,
        ),
        (
            json!({"podSelector": {"matchExpressions": [{"key": "a", "operator": "Has"}]}}),
            "spec.podSelector.matchExpressions[0].operator",
            "Has",
            Problem::Operator,
        ),
        (
            json!({"podSelector": {}, "egress": [{"to": [{"namespaceSelector": {"matchExpressions": [{"key": "a", "operator": "In", "values": []}]}}]}]}),
            "spec.egress[0].to[0].namespaceSelector.matchExpressions[0].values",
            "[]",
            Problem::ValuesMissing,
        ),
        (
            json!({"podSelector": {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["b"]}]}}),
            "spec.podSelector.matchExpressions[0].values",
            "b",
            Problem::ValuesForbidden,
        ),
        (
            json!({"podSelector": {}, "ingress": [{"ports": [{"port": 0}]}]}),
            "spec.ingress[0].ports[0].port",
            "0",
            Problem::Port,
        ),
        (
            json!({"podSelector": {}, "ingress": [{"ports": [{"port": 70000}]}]}),
            "spec.ingress[0].ports[0].port",
            "70000",
            Problem::Port,
        ),
        (
            json!({"podSelector": {}, "ingress": [{"ports": [{"port": 90, "endPort": 80}]}]}),
            "spec.ingress[0].ports[0].endPort",
            "80",
            Problem::EndPort,
        ),
        (
            json!({"podSelector": {}, "ingress": [{"ports": [{"port": "http", "endPort": 80}]}]}),
            "spec.ingress[0].ports[0].endPort",
            "80",
            Problem::EndPort,
        ),
        (
            json!({"podSelector": {}, "ingress": [{"ports": [{"port": "80"}]}]}),
            "spec.ingress[0].ports[0].port",
            "80",
            Problem::PortName,
        ),
        (
            json!({"podSelector": {}, "ingress": [{"from": [{}]}]}),
            "spec.ingress[0].from[0]",
            "{}",
            Problem::EmptyPeer,
        ),
        (
            json!({"podSelector": {}, "ingress": [{"from": [{"podSelector": {}, "ipBlock": {"cidr": "192.0.2.0/24"}}]}]}),
            "spec.ingress[0].from[0]",
            "ipBlock",
            Problem::MixedPeer,
        ),
    ];
    for (spec, field, value, problem) in cases {
        let e = error(spec);
        assert_eq!(
            (e.field.as_str(), e.value.as_str(), e.problem),
            (field, value, problem),
            "{e}"
        );
    }
}
