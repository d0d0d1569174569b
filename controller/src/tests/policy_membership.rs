//! The policy model as the writers use it: events in, deltas out, slices from them.
use super::*;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use weft_api::{
    GroupMember, NamedPort, PodPolicies, PolicedNamespace, Protocol, WeftNodePolicySpec,
};

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn pod(namespace: &str, name: &str, app: &str, node: &str, host: u8) -> PolicyPod {
    PolicyPod {
        namespace: namespace.into(),
        name: name.into(),
        uid: format!("uid-{name}"),
        labels: labels(&[("app", app)]),
        node: Some(node.into()),
        phase: Some("Running".into()),
        ips: vec![format!("2001:db8::{host}"), format!("192.0.2.{host}")],
        ..PolicyPod::default()
    }
}

fn port(name: &str, protocol: Protocol, port: u16) -> NamedPort {
    NamedPort {
        name: name.into(),
        protocol,
        port,
    }
}

fn member(pod: &PolicyPod, ports: Vec<NamedPort>) -> GroupMember {
    GroupMember {
        uid: pod.uid.clone(),
        ips: pod.ips.clone(),
        ports,
    }
}

fn network_policy(spec: serde_json::Value) -> NetworkPolicy {
    serde_json::from_value(json!({
        "metadata": {"namespace": "x", "name": "allow", "uid": "p1", "generation": 1},
        "spec": spec,
    }))
    .unwrap()
}

/// web (x, node-1) may receive http from db pods of x, and send dns to namespaces of
/// team b.
fn allow_policy() -> NetworkPolicy {
    network_policy(json!({
        "podSelector": {"matchLabels": {"app": "web"}},
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "db"}}}], "ports": [{"port": "http"}]}],
        "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"team": "b"}}}], "ports": [{"protocol": "UDP", "port": "dns"}]}],
    }))
}

fn flags(items: &[(&str, bool)]) -> BTreeMap<String, bool> {
    items.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

fn entry(
    pod: &PolicyPod,
    ingress: &[&str],
    egress: &[&str],
    named_ports: Vec<NamedPort>,
) -> PodPolicies {
    PodPolicies {
        namespace: pod.namespace.clone(),
        name: pod.name.clone(),
        uid: pod.uid.clone(),
        ingress: ingress.iter().map(|s| s.to_string()).collect(),
        egress: egress.iter().map(|s| s.to_string()).collect(),
        named_ports,
        ip_families: None,
    }
}

fn node(name: &str, pods: Vec<PodPolicies>) -> (String, WeftNodePolicySpec) {
    (
        name.to_owned(),
        WeftNodePolicySpec {
            node_name: name.into(),
            pods,
        },
    )
}

#[test]
fn a_policy_resolves_its_peers_its_pods_their_nodes_and_follows_changes() {
    let mut model = Model::new();
    assert!(model
        .upsert_namespace("x", labels(&[("team", "a")]))
        .is_empty());
    assert!(model
        .upsert_namespace("y", labels(&[("team", "b")]))
        .is_empty());
    let mut web = pod("x", "web", "web", "node-1", 1);
    web.ports = vec![
        port("http", Protocol::Tcp, 8080),
        port("metrics", Protocol::Tcp, 9090),
    ];
    let db = pod("x", "db", "db", "node-2", 2);
    let mut client = pod("y", "client", "client", "node-2", 3);
    client.ports = vec![
        port("dns", Protocol::Udp, 53),
        port("http", Protocol::Tcp, 80),
    ];
    let host = PolicyPod {
        host_network: true,
        ..pod("x", "host", "db", "node-1", 4)
    };
    let done = PolicyPod {
        phase: Some("Succeeded".into()),
        ..pod("x", "done", "db", "node-1", 5)
    };
    for p in [&web, &db, &client, &host, &done] {
        assert!(
            model.upsert_pod(p.clone()).is_empty(),
            "no policy yet: nothing to write"
        );
    }

    let delta = model.upsert_policy(&allow_policy()).unwrap();
    let [db_group, team_b] = [0, 1].map(|i| {
        let rules = delta.policies["x.allow"].as_ref().unwrap();
        let rule = if i == 0 {
            &rules.ingress
        } else {
            &rules.egress
        };
        rule.as_ref().unwrap()[0].peers.as_ref().unwrap()[0]
            .group
            .clone()
            .unwrap()
    });
    let groups: BTreeMap<String, Option<String>> = [
        (db_group.clone(), Some("x||app in (db)".to_owned())),
        (team_b.clone(), Some("*|team in (b)|".to_owned())),
    ]
    .into();
    assert_eq!(delta.groups, groups);
    // Neither the host-network pod nor the finished one is a member; members list the
    // named ports egress rules resolve on them.
    let members: BTreeMap<String, BTreeMap<String, Option<GroupMember>>> = [
        (
            db_group.clone(),
            [(db.uid.clone(), Some(member(&db, vec![])))].into(),
        ),
        (
            team_b.clone(),
            [(
                client.uid.clone(),
                Some(member(&client, vec![port("dns", Protocol::Udp, 53)])),
            )]
            .into(),
        ),
    ]
    .into();
    assert_eq!(delta.members, members);
    assert_eq!(
        delta.applied_to,
        [("x.allow".to_owned(), flags(&[("uid-web", true)]))].into()
    );
    assert_eq!(
        delta.policy_spans,
        [("x.allow".to_owned(), flags(&[("node-1", true)]))].into()
    );
    let spans = [db_group.clone(), team_b.clone()].map(|g| (g, flags(&[("node-1", true)])));
    assert_eq!(delta.group_spans, spans.into());
    // Every running pod of x gets an entry, with or without a policy; ingress named
    // ports are the pod's own.
    let nodes = [
        node(
            "node-1",
            vec![entry(
                &web,
                &["x.allow"],
                &["x.allow"],
                vec![port("http", Protocol::Tcp, 8080)],
            )],
        ),
        node("node-2", vec![entry(&db, &[], &[], vec![])]),
    ];
    assert_eq!(delta.nodes, nodes.into());
    let policed = PolicedNamespace {
        name: "x".into(),
        ingress: true,
        egress: true,
    };
    assert_eq!(delta.index.as_ref().unwrap().namespaces, vec![policed]);
    // The policy object is labelled for node-1's weftd.
    let mut written = Snapshot::default();
    written.apply(&delta);
    let span = span_labels(&written.policies["x.allow"].span, false);
    assert_eq!(span.len(), 1);
    assert!(span.contains_key(&weft_api::span::span_label("node-1")));
    assert!(!is_wide(&span));
    assert!(
        model.upsert_policy(&allow_policy()).unwrap().is_empty(),
        "the same policy again"
    );

    // db relabelled: it leaves the group; its entry (no policy) stays as it was.
    let delta = model.upsert_pod(PolicyPod {
        labels: labels(&[("app", "cache")]),
        ..db.clone()
    });
    let expected = Delta {
        members: [(db_group.clone(), [(db.uid.clone(), None)].into())].into(),
        ..Delta::default()
    };
    assert_eq!(delta, expected);

    // y no longer team b: client leaves the namespace-selected group.
    let delta = model.upsert_namespace("y", labels(&[("team", "c")]));
    let expected = Delta {
        members: [(team_b.clone(), [(client.uid.clone(), None)].into())].into(),
        ..Delta::default()
    };
    assert_eq!(delta, expected);

    // web moves to node-3 (a new pod of the same name): spans follow.
    let moved = PolicyPod {
        uid: "uid-web-2".into(),
        node: Some("node-3".into()),
        ..web.clone()
    };
    let delta = model.upsert_pod(moved.clone());
    assert_eq!(
        delta.policy_spans["x.allow"],
        flags(&[("node-1", false), ("node-3", true)])
    );
    assert_eq!(
        delta.group_spans[&team_b],
        flags(&[("node-1", false), ("node-3", true)])
    );
    assert_eq!(
        delta.applied_to["x.allow"],
        flags(&[("uid-web", false), ("uid-web-2", true)])
    );
    assert_eq!(delta.nodes["node-1"].pods, vec![]);

    // The policy deleted: its groups go, x is no longer policed.
    let delta = model.delete_policy(&Key::new("x", "allow"));
    assert_eq!(delta.groups, [(db_group, None), (team_b, None)].into());
    assert_eq!(delta.policies, [("x.allow".to_owned(), None)].into());
    assert_eq!(delta.index.unwrap().namespaces, vec![]);
    let emptied: BTreeSet<&String> = delta
        .nodes
        .iter()
        .filter(|(_, s)| s.pods.is_empty())
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        emptied,
        BTreeSet::from([&"node-2".to_owned(), &"node-3".to_owned()])
    );
    assert_eq!(model.snapshot(), Snapshot::default());
}

#[test]
fn a_policy_that_does_not_compile_leaves_the_previous_version_in_force() {
    let mut model = Model::new();
    model.upsert_pod(pod("x", "web", "web", "node-1", 1));
    model.upsert_policy(&allow_policy()).unwrap();
    let before = model.snapshot();
    let bad =
        network_policy(json!({"podSelector": {}, "ingress": [{"ports": [{"protocol": "GRE"}]}]}));
    let error: PolicyError = model.upsert_policy(&bad).unwrap_err();
    assert_eq!(
        error.to_string(),
        "spec.ingress[0].ports[0].protocol: 'GRE' is not a protocol (TCP, UDP or SCTP)"
    );
    assert_eq!(error.problem, Problem::Protocol);
    assert_eq!(model.snapshot(), before);
}

#[test]
fn a_pod_turning_a_family_off_has_an_entry_without_any_policy() {
    let mut model = Model::new();
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"namespace": "x", "name": "v6", "uid": "u6", "labels": {"app": "v6"},
                     "annotations": {IP_FAMILIES_ANNOTATION: "IPv6"}},
        "spec": {"nodeName": "node-1", "containers": [{"name": "c", "ports": [{"containerPort": 80}]}]},
        "status": {"phase": "Running", "podIPs": [{"ip": "2001:db8::6"}]},
    }))
    .unwrap();
    let delta = model.upsert_pod(PolicyPod::from_pod(&pod).unwrap());
    let mut expected = entry(&PolicyPod::from_pod(&pod).unwrap(), &[], &[], vec![]);
    expected.ip_families = Some(vec!["IPv6".into()]);
    assert_eq!(delta.nodes["node-1"].pods, vec![expected]);
}

#[test]
fn a_pod_from_the_apiserver_is_trimmed_to_what_policy_reads() {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"namespace": "x", "name": "a", "uid": "u1", "labels": {"app": "web"},
                     "annotations": {"other": "1"}, "managedFields": [{"manager": "kubelet"}]},
        "spec": {
            "nodeName": "node-1",
            "containers": [
                {"name": "web", "ports": [{"name": "http", "containerPort": 8080}, {"containerPort": 9000}]},
                {"name": "dns", "ports": [{"name": "dns", "containerPort": 53, "protocol": "UDP"}]},
            ],
            "initContainers": [
                {"name": "sidecar", "restartPolicy": "Always", "ports": [{"name": "proxy", "containerPort": 15001}]},
                {"name": "setup", "ports": [{"name": "setup", "containerPort": 1}]},
            ],
        },
        "status": {"phase": "Running", "podIPs": [{"ip": "2001:db8::1"}, {"ip": "192.0.2.1"}]},
    }))
    .unwrap();
    let trimmed = PolicyPod::from_pod(&pod).unwrap();
    let expected = PolicyPod {
        namespace: "x".into(),
        name: "a".into(),
        uid: "u1".into(),
        labels: labels(&[("app", "web")]),
        node: Some("node-1".into()),
        host_network: false,
        phase: Some("Running".into()),
        ips: vec!["2001:db8::1".into(), "192.0.2.1".into()],
        // Sorted; unnamed ports and a non-restartable init container's are not named ports.
        ports: vec![
            port("dns", Protocol::Udp, 53),
            port("http", Protocol::Tcp, 8080),
            port("proxy", Protocol::Tcp, 15001),
        ],
        ip_families: None,
    };
    assert_eq!(trimmed, expected);
    assert_eq!(trimmed.key(), Key::new("x", "a"));
    assert!(trimmed.addressable());
    let pending: Pod =
        serde_json::from_value(json!({"metadata": {"namespace": "x", "name": "b", "uid": "u2"}}))
            .unwrap();
    let pending = PolicyPod::from_pod(&pending).unwrap();
    assert!(pending.policed() && !pending.addressable(), "no IPs yet");
    let unnamed: Pod = serde_json::from_value(json!({"metadata": {"namespace": "x"}})).unwrap();
    assert_eq!(PolicyPod::from_pod(&unnamed), None);
}

#[test]
fn slices_written_from_deltas_are_read_back_on_failover_with_nothing_to_write() {
    let mut model = Model::new();
    model.upsert_namespace("x", Labels::new());
    let everyone =
        network_policy(json!({"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]}));
    let mut delta = model.upsert_policy(&everyone).unwrap();
    let count = weft_api::GROUP_SLICE_MEMBERS + 30;
    for i in 0..count {
        let mut p = pod("x", &format!("p{i:03}"), "any", "node-1", 0);
        p.ips = vec![format!("2001:db8::{i:x}")];
        delta.merge(model.upsert_pod(p));
    }
    let (group, selector) = delta
        .groups
        .iter()
        .next()
        .map(|(g, s)| (g.clone(), s.clone().unwrap()))
        .unwrap();
    let mut slices = Slices::new(&group, &selector);
    let touched = slices.apply(&delta.members[&group]);
    assert_eq!(touched, BTreeSet::from([0, 1]));
    let listed: Vec<_> = touched
        .iter()
        .map(|n| (slices.name(*n), slices.spec(*n).unwrap()))
        .collect();
    assert_eq!(listed[0].1.members.len(), weft_api::GROUP_SLICE_MEMBERS);
    assert_eq!(slice_number(&group, &listed[1].0), Some(1));
    // A new leader: the same model, the slices as listed.
    let (mut read_back, stale) = Slices::from_listed(&group, &selector, listed);
    assert!(stale.is_empty());
    assert_eq!(read_back.sync(model.group_members(&group)), BTreeSet::new());
    assert_eq!(read_back, slices);
}

#[test]
fn merged_deltas_say_what_the_sequence_did() {
    let mut model = Model::new();
    model.upsert_namespace("x", Labels::new());
    model.upsert_policy(&allow_policy()).unwrap();
    let mut written = model.snapshot();
    let web = pod("x", "web", "web", "node-1", 1);
    let db = pod("x", "db", "db", "node-1", 2);
    let mut merged: Delta = model.upsert_pod(web.clone());
    merged.merge(model.upsert_pod(db.clone()));
    merged.merge(model.delete_pod(&web.key()));
    let spans: &SpanChanges = &merged.policy_spans["x.allow"];
    assert_eq!(spans, &flags(&[("node-1", false)]), "the later change wins");
    written.apply(&merged);
    assert_eq!(written, model.snapshot());
    let policy: &PolicyState = &written.policies["x.allow"];
    assert!(policy.applied_to.is_empty() && policy.span.is_empty());
    let groups: Vec<&GroupState> = written
        .groups
        .values()
        .filter(|g| !g.members.is_empty())
        .collect();
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].members.keys().collect::<Vec<_>>(), vec![&db.uid]);
}
