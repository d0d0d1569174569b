//! The oracle against the Kubernetes documentation's own examples
//! (kubernetes.io/docs/concepts/services-networking/network-policies/) and the API
//! reference's field descriptions, each test quoting the sentence it checks.

use super::model::{
    Connection, ContainerPort, Family, Labels, Model, Namespace, Pod, PodId, Protocol, Source,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde_json::{json, Value};
use std::net::IpAddr;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn namespace(name: &str, extra: &[(&str, &str)]) -> Namespace {
    let mut labels = labels(extra);
    labels.insert("kubernetes.io/metadata.name".into(), name.into());
    Namespace {
        name: name.into(),
        labels,
    }
}

/// A pod on `node` with upstream's named ports, its IPv4 address `10.B.C.D` and its IPv6
/// address `2001:db8:B:C::D`.
fn pod(namespace: &str, name: &str, node: &str, pod_labels: &[(&str, &str)], v4: &str) -> Pod {
    let octets: Vec<&str> = v4.split('.').collect();
    let ports = [
        (80, Protocol::Tcp),
        (81, Protocol::Udp),
        (81, Protocol::Tcp),
    ]
    .into_iter()
    .map(|(port, protocol)| ContainerPort {
        name: format!("serve-{port}-{protocol}"),
        protocol,
        port,
    })
    .collect();
    Pod {
        id: PodId::new(namespace, name),
        node: node.into(),
        labels: labels(pod_labels),
        v4: Some(v4.parse().unwrap()),
        v6: Some(
            format!("2001:db8:{}:{}::{}", octets[1], octets[2], octets[3])
                .parse()
                .unwrap(),
        ),
        ports,
    }
}

/// default: db (role=db), frontend (role=frontend), plain; myproject (project=myproject):
/// worker; other: frontend (role=frontend); dbhost: a pod at 10.0.0.5, inside the
/// example's egress block.
fn docs_model() -> Model {
    Model {
        nodes: Vec::new(),
        namespaces: vec![
            namespace("default", &[]),
            namespace("myproject", &[("project", "myproject")]),
            namespace("other", &[]),
        ],
        pods: vec![
            pod("default", "db", "node-1", &[("role", "db")], "10.1.0.1"),
            pod(
                "default",
                "frontend",
                "node-2",
                &[("role", "frontend")],
                "10.1.0.2",
            ),
            pod("default", "plain", "node-2", &[], "10.1.0.3"),
            pod("myproject", "worker", "node-1", &[], "10.1.0.4"),
            pod(
                "other",
                "frontend",
                "node-2",
                &[("role", "frontend")],
                "10.1.0.5",
            ),
            pod("other", "dbhost", "node-2", &[], "10.0.0.5"),
        ],
    }
}

fn policies(objects: &[Value]) -> Vec<NetworkPolicy> {
    objects
        .iter()
        .map(|o| serde_json::from_value(o.clone()).unwrap())
        .collect()
}

fn policy(namespace: &str, spec: Value) -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "p", "namespace": namespace}, "spec": spec})
}

/// The documentation's first example, `test-network-policy`, verbatim.
fn test_network_policy() -> Vec<NetworkPolicy> {
    policies(&[json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "test-network-policy", "namespace": "default"},
        "spec": {
            "podSelector": {"matchLabels": {"role": "db"}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": [
                {"ipBlock": {"cidr": "172.17.0.0/16", "except": ["172.17.1.0/24"]}},
                {"namespaceSelector": {"matchLabels": {"project": "myproject"}}},
                {"podSelector": {"matchLabels": {"role": "frontend"}}}],
                "ports": [{"protocol": "TCP", "port": 6379}]}],
            "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/24"}}],
                "ports": [{"protocol": "TCP", "port": 5978}]}]
        }
    })])
}

fn from_pod(from: &str, to: &str, family: Family, protocol: Protocol, port: u16) -> Connection {
    let id = |s: &str| {
        let (namespace, name) = s.split_once('/').unwrap();
        PodId::new(namespace, name)
    };
    Connection {
        source: Source::Pod(id(from)),
        destination: id(to),
        family,
        protocol,
        port,
    }
}

fn tcp4(from: &str, to: &str, port: u16) -> Connection {
    from_pod(from, to, Family::V4, Protocol::Tcp, port)
}

fn from_address(addr: &str, to: &str, port: u16) -> Connection {
    let addr: IpAddr = addr.parse().unwrap();
    let (namespace, name) = to.split_once('/').unwrap();
    Connection {
        source: Source::External(addr),
        destination: PodId::new(namespace, name),
        family: Family::of(addr),
        protocol: Protocol::Tcp,
        port,
    }
}

#[test]
fn no_policy_allows_everything() {
    // "By default, a pod is non-isolated for egress ... [and] for ingress".
    let model = docs_model();
    for from in &model.pods {
        for to in &model.pods {
            for family in Family::BOTH {
                let c = from_pod(
                    &from.id.to_string(),
                    &to.id.to_string(),
                    family,
                    Protocol::Udp,
                    9,
                );
                assert!(model.allows(&[], &c), "{c:?}");
            }
        }
    }
}

#[test]
fn the_first_example_allows_what_its_explanation_says() {
    let model = docs_model();
    let p = test_network_policy();
    // "allows connections to all pods in the default namespace with the label role=db on
    // TCP port 6379 from: any pod in the default namespace with the label role=frontend"
    assert!(model.allows(&p, &tcp4("default/frontend", "default/db", 6379)));
    assert!(!model.allows(&p, &tcp4("default/frontend", "default/db", 6380)));
    assert!(!model.allows(
        &p,
        &from_pod(
            "default/frontend",
            "default/db",
            Family::V4,
            Protocol::Udp,
            6379
        )
    ));
    assert!(!model.allows(&p, &tcp4("default/plain", "default/db", 6379)));
    // "any pod in a namespace with the label project=myproject"
    assert!(model.allows(&p, &tcp4("myproject/worker", "default/db", 6379)));
    // A podSelector alone selects in the policy's own namespace.
    assert!(!model.allows(&p, &tcp4("other/frontend", "default/db", 6379)));
    // "IP addresses in the ranges 172.17.0.0–172.17.0.255 and 172.17.2.0–172.17.255.255"
    assert!(model.allows(&p, &from_address("172.17.0.255", "default/db", 6379)));
    assert!(model.allows(&p, &from_address("172.17.2.0", "default/db", 6379)));
    assert!(!model.allows(&p, &from_address("172.17.1.7", "default/db", 6379)));
    assert!(!model.allows(&p, &from_address("172.18.0.1", "default/db", 6379)));
    // An IPv4 block opens nothing of IPv6.
    assert!(!model.allows(&p, &from_address("2001:db8:9::1", "default/db", 6379)));
    // "allows connections from any pod in the default namespace with the label role=db to
    // CIDR 10.0.0.0/24 on TCP port 5978"
    assert!(model.allows(&p, &tcp4("default/db", "other/dbhost", 5978)));
    assert!(!model.allows(&p, &tcp4("default/db", "other/dbhost", 5979)));
    assert!(!model.allows(
        &p,
        &from_pod(
            "default/db",
            "other/dbhost",
            Family::V6,
            Protocol::Tcp,
            5978
        )
    ));
    assert!(!model.allows(&p, &tcp4("default/db", "default/plain", 80)));
    // Pods the policy does not select stay open both ways.
    assert!(model.allows(&p, &tcp4("other/frontend", "default/plain", 1)));
    assert!(model.allows(&p, &tcp4("default/plain", "other/frontend", 1)));
}

#[test]
fn a_pod_reaches_itself_and_its_node_reaches_it() {
    // "a pod cannot block access to itself"; "traffic to and from the node where a Pod
    // is running is always allowed, regardless of the IP address of the Pod or the node".
    let model = docs_model();
    let deny_all = policies(&[policy(
        "default",
        json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
    )]);
    assert!(model.allows(&deny_all, &tcp4("default/db", "default/db", 80)));
    let kubelet = |node: &str| Connection {
        source: Source::Node {
            name: node.into(),
            addr: "192.0.2.11".parse().unwrap(),
        },
        destination: PodId::new("default", "db"),
        family: Family::V4,
        protocol: Protocol::Tcp,
        port: 80,
    };
    assert!(model.allows(&deny_all, &kubelet("node-1")));
    assert!(!model.allows(&deny_all, &kubelet("node-2")));
    assert!(!model.allows(&deny_all, &tcp4("default/plain", "default/db", 80)));
}

#[test]
fn default_deny_ingress_isolates_ingress_only() {
    // "default-deny-ingress ... ensures that even pods that aren't selected by any other
    // NetworkPolicy will still be isolated for ingress. This policy does not affect
    // isolation for egress from any pod."
    let model = docs_model();
    let p = policies(&[policy(
        "default",
        json!({"podSelector": {}, "policyTypes": ["Ingress"]}),
    )]);
    assert!(!model.allows(&p, &tcp4("other/frontend", "default/plain", 80)));
    assert!(!model.allows(&p, &tcp4("default/frontend", "default/plain", 80)));
    assert!(model.allows(&p, &tcp4("default/plain", "other/frontend", 80)));
    // "allow-all-ingress": with `ingress: [{}]` beside it, the union allows everything.
    let mut both = p.clone();
    both.extend(policies(&[policy(
        "default",
        json!({"podSelector": {}, "ingress": [{}], "policyTypes": ["Ingress"]}),
    )]));
    assert!(model.allows(&both, &tcp4("other/frontend", "default/plain", 80)));
}

#[test]
fn default_deny_egress_isolates_egress_only() {
    // "default-deny-egress ... ensures that even pods that aren't selected by any other
    // NetworkPolicy will not be allowed egress traffic. This policy does not change the
    // ingress isolation behavior of any pod."
    let model = docs_model();
    let p = policies(&[policy(
        "default",
        json!({"podSelector": {}, "policyTypes": ["Egress"]}),
    )]);
    assert!(!model.allows(&p, &tcp4("default/plain", "other/frontend", 80)));
    assert!(model.allows(&p, &tcp4("other/frontend", "default/plain", 80)));
    // "allow-all-egress": `egress: [{}]`.
    let allow = policies(&[policy(
        "default",
        json!({"podSelector": {}, "egress": [{}], "policyTypes": ["Egress"]}),
    )]);
    assert!(model.allows(&allow, &tcp4("default/plain", "other/frontend", 80)));
}

#[test]
fn policy_types_default_from_the_rules_present() {
    // policyTypes: "If this field is not specified, it will default based on the
    // existence of ingress or egress rules; policies that contain an egress section are
    // assumed to affect egress, and all policies (whether or not they contain an ingress
    // section) are assumed to affect ingress."
    let model = docs_model();
    let egress_rule = policies(&[policy(
        "default",
        json!({"podSelector": {}, "egress": [{"ports": [{"port": 53, "protocol": "UDP"}]}]}),
    )]);
    assert!(!model.allows(&egress_rule, &tcp4("default/plain", "other/frontend", 80)));
    assert!(!model.allows(&egress_rule, &tcp4("other/frontend", "default/plain", 80)));
    let no_egress = policies(&[policy("default", json!({"podSelector": {}, "egress": []}))]);
    assert!(model.allows(&no_egress, &tcp4("default/plain", "other/frontend", 80)));
    assert!(!model.allows(&no_egress, &tcp4("other/frontend", "default/plain", 80)));
}

#[test]
fn namespace_and_pod_selector_in_one_peer_is_and_in_two_peers_or() {
    // "contains a single from element allowing connections from Pods with the label
    // role=client in namespaces with the label user=alice. But the following policy is
    // different: ... allows connections from Pods in the local Namespace with the label
    // role=client, or from any Pod in any namespace with the label user=alice."
    let model = Model {
        nodes: Vec::new(),
        namespaces: vec![
            namespace("local", &[]),
            namespace("alice", &[("user", "alice")]),
        ],
        pods: vec![
            pod("local", "server", "n", &[], "10.2.0.1"),
            pod("local", "client", "n", &[("role", "client")], "10.2.0.2"),
            pod("alice", "client", "n", &[("role", "client")], "10.2.0.3"),
            pod("alice", "other", "n", &[], "10.2.0.4"),
        ],
    };
    let one_peer = policies(&[policy(
        "local",
        json!({"podSelector": {}, "ingress": [{"from": [{
            "namespaceSelector": {"matchLabels": {"user": "alice"}},
            "podSelector": {"matchLabels": {"role": "client"}}}]}]}),
    )]);
    let two_peers = policies(&[policy(
        "local",
        json!({"podSelector": {}, "ingress": [{"from": [
            {"namespaceSelector": {"matchLabels": {"user": "alice"}}},
            {"podSelector": {"matchLabels": {"role": "client"}}}]}]}),
    )]);
    let verdicts = |p: &[NetworkPolicy]| -> Vec<bool> {
        ["alice/client", "alice/other", "local/client"]
            .iter()
            .map(|from| model.allows(p, &tcp4(from, "local/server", 80)))
            .collect()
    };
    assert_eq!(verdicts(&one_peer), [true, false, false]);
    assert_eq!(verdicts(&two_peers), [true, true, true]);
}

#[test]
fn a_namespace_is_targeted_by_its_name_label() {
    // "The Kubernetes control plane sets an immutable label kubernetes.io/metadata.name on
    // all namespaces ... the value of the label is the namespace name."
    let model = docs_model();
    let p = policies(&[policy(
        "default",
        json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector":
            {"matchLabels": {"kubernetes.io/metadata.name": "myproject"}}}]}]}),
    )]);
    assert!(model.allows(&p, &tcp4("myproject/worker", "default/db", 80)));
    assert!(!model.allows(&p, &tcp4("other/frontend", "default/db", 80)));
}

#[test]
fn match_expressions_follow_their_operators() {
    // LabelSelectorRequirement: "operator represents a key's relationship to a set of
    // values. Valid operators are In, NotIn, Exists and DoesNotExist."
    let model = docs_model();
    let with = |expression: Value| {
        policies(&[policy(
            "default",
            json!({"podSelector": {}, "ingress": [{"from": [
                {"podSelector": {"matchExpressions": [expression]}}]}]}),
        )])
    };
    let from_frontend = tcp4("default/frontend", "default/db", 80);
    let from_plain = tcp4("default/plain", "default/db", 80);
    let cases = [
        (
            json!({"key": "role", "operator": "In", "values": ["frontend"]}),
            [true, false],
        ),
        (
            json!({"key": "role", "operator": "NotIn", "values": ["frontend"]}),
            [false, true],
        ),
        (json!({"key": "role", "operator": "Exists"}), [true, false]),
        (
            json!({"key": "role", "operator": "DoesNotExist"}),
            [false, true],
        ),
    ];
    for (expression, want) in cases {
        let p = with(expression.clone());
        let got = [
            model.allows(&p, &from_frontend),
            model.allows(&p, &from_plain),
        ];
        assert_eq!(got, want, "{expression}");
    }
}

#[test]
fn end_port_makes_a_range_inclusive_at_both_ends() {
    // "allows ... to any IP within the range 10.0.0.0/24 over TCP, provided that the target
    // port is between the range 32000 and 32768."
    let model = docs_model();
    let p = policies(&[policy(
        "default",
        json!({"podSelector": {"matchLabels": {"role": "db"}}, "policyTypes": ["Egress"],
            "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/24"}}],
                "ports": [{"protocol": "TCP", "port": 32000, "endPort": 32768}]}]}),
    )]);
    let verdicts: Vec<bool> = [31999, 32000, 32768, 32769]
        .iter()
        .map(|port| model.allows(&p, &tcp4("default/db", "other/dbhost", *port)))
        .collect();
    assert_eq!(verdicts, [false, true, true, false]);
}

#[test]
fn named_ports_resolve_on_the_destination_with_their_protocol() {
    // NetworkPolicyPort.port: "If present, only traffic on the specified protocol AND port
    // will be matched ... this can either be a numerical or named port on a pod."
    let model = docs_model();
    let ingress = policies(&[policy(
        "default",
        json!({"podSelector": {}, "ingress": [{"ports": [
            {"protocol": "UDP", "port": "serve-81-udp"}]}]}),
    )]);
    let probe = |p: &[NetworkPolicy], to: &str, protocol: Protocol, port: u16| {
        model.allows(
            p,
            &from_pod("other/frontend", to, Family::V6, protocol, port),
        )
    };
    assert!(probe(&ingress, "default/db", Protocol::Udp, 81));
    assert!(!probe(&ingress, "default/db", Protocol::Udp, 80));
    assert!(!probe(&ingress, "default/db", Protocol::Tcp, 81));
    // The protocol defaults to TCP: a UDP port's name under it matches nothing.
    let tcp_default = policies(&[policy(
        "default",
        json!({"podSelector": {}, "ingress": [{"ports": [{"port": "serve-81-udp"}]}]}),
    )]);
    assert!(!probe(&tcp_default, "default/db", Protocol::Udp, 81));
    assert!(!probe(&tcp_default, "default/db", Protocol::Tcp, 81));
    // Egress: the name is the destination's port, whatever the source's ports are.
    let egress = policies(&[policy(
        "other",
        json!({"podSelector": {}, "policyTypes": ["Egress"],
            "egress": [{"ports": [{"protocol": "TCP", "port": "serve-80-tcp"}]}]}),
    )]);
    assert!(probe(&egress, "default/db", Protocol::Tcp, 80));
    assert!(!probe(&egress, "default/db", Protocol::Tcp, 81));
}

#[test]
fn ip_blocks_match_only_their_own_family_and_honour_except() {
    // IPBlock: "cidr is a string representing the IPBlock. Valid examples are
    // \"192.168.1.0/24\" or \"2001:db8::/64\"", "except ... Except values will be rejected
    // if they are outside the cidr range".
    let model = docs_model();
    let v6 = policies(&[policy(
        "default",
        json!({"podSelector": {}, "ingress": [{"from": [{"ipBlock":
            {"cidr": "2001:db8:1::/64", "except": ["2001:db8:1::5/128"]}}]}]}),
    )]);
    let probe = |from: &str, family: Family| {
        model.allows(
            &v6,
            &from_pod(from, "default/db", family, Protocol::Tcp, 80),
        )
    };
    assert!(probe("default/plain", Family::V6));
    assert!(!probe("default/plain", Family::V4));
    assert!(!probe("other/frontend", Family::V6), "excepted");
    let v4_host = policies(&[policy(
        "default",
        json!({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.1.0.3/32"}}]}]}),
    )]);
    let c = |family| from_pod("default/plain", "default/db", family, Protocol::Tcp, 80);
    assert!(model.allows(&v4_host, &c(Family::V4)));
    assert!(!model.allows(&v4_host, &c(Family::V6)));
}

#[test]
fn policies_of_other_namespaces_do_not_select() {
    // "podSelector selects the grouping of pods to which the policy applies ... in the
    // namespace of the NetworkPolicy".
    let model = docs_model();
    let p = policies(&[policy(
        "other",
        json!({"podSelector": {}, "policyTypes": ["Ingress"]}),
    )]);
    assert!(model.allows(&p, &tcp4("other/frontend", "default/db", 80)));
    assert!(!model.allows(&p, &tcp4("default/db", "other/frontend", 80)));
}
