//! The property of the policy model: after every event of a random sequence (pods,
//! namespaces and policies created, relabelled, moved, finished, deleted), the
//! incremental [`Model`] holds exactly what a from-scratch evaluation of the API text
//! says, and its deltas carry it there.
//!
//! The oracle below is written from the NetworkPolicy API reference, not from the
//! model: it evaluates the raw `LabelSelector`s of the raw policies against every pod
//! and namespace. It takes from the model only the compiled `WeftPolicy` specs (tested
//! on their own in `policy_model.rs`) and, through them, the group names a peer maps
//! to; when two raw peers share a name, their members must agree (normalization).
//!
//! Checked after every event:
//! - `Model::snapshot()` equals the oracle: every group's selector, members (UID, IPs,
//!   named ports) and span; every policy's spec, applied-to pods and span; every node's
//!   `WeftNodePolicy` spec; the `WeftPolicyIndex`;
//! - the previous snapshot with the event's delta applied equals the new one, and every
//!   entry of the delta is a real change;
//! - at the end, all deltas merged and applied to nothing equal the final snapshot.
//!
//! `PROPTEST_CASES=N` runs N sequences (default 512, a few seconds).

use super::model::compile;
use super::*;
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use weft_api::{
    policy_name, GroupMember, NamedPort, PodPolicies, PolicedNamespace, Protocol,
    WeftNodePolicySpec, ALL_PODS_GROUP,
};

const NAMESPACES: [&str; 3] = ["x", "y", "z"];
const POD_NAMES: [&str; 4] = ["a", "b", "c", "d"];
const POLICY_NAMES: [&str; 3] = ["p", "q", "r"];
const NODES: [&str; 3] = ["node-1", "node-2", "node-3"];
const KEYS: [&str; 2] = ["app", "tier"];
const VALUES: [&str; 2] = ["1", "2"];
const PORT_NAMES: [&str; 2] = ["http", "dns"];

#[derive(Debug, Clone)]
enum Op {
    Pod(PolicyPod),
    DeletePod(Key),
    Namespace(String, Labels),
    DeleteNamespace(String),
    Policy(NetworkPolicy),
    /// A policy the model cannot compile (the apiserver would have refused it).
    BadPolicy(NetworkPolicy),
    DeletePolicy(Key),
}

fn labels() -> impl Strategy<Value = Labels> {
    prop::collection::btree_map(
        prop::sample::select(&KEYS[..]).prop_map(str::to_owned),
        prop::sample::select(&VALUES[..]).prop_map(str::to_owned),
        0..=2,
    )
}

fn pod() -> impl Strategy<Value = PolicyPod> {
    let ports = prop::collection::btree_set(0..PORT_NAMES.len(), 0..=2);
    (
        (0..NAMESPACES.len(), 0..POD_NAMES.len(), 0..2u8),
        labels(),
        prop::option::weighted(0.85, 0..NODES.len()),
        prop::bool::weighted(0.1),
        prop::sample::select(vec![
            None,
            Some("Pending"),
            Some("Running"),
            Some("Running"),
            Some("Running"),
            Some("Running"),
            Some("Succeeded"),
            Some("Failed"),
        ]),
        (0..6u8, ports, prop::bool::weighted(0.1)),
    )
        .prop_map(
            |(
                (ns, name, generation),
                labels,
                node,
                host_network,
                phase,
                (ips, ports, family_off),
            )| {
                let namespace = NAMESPACES[ns].to_owned();
                let name = POD_NAMES[name].to_owned();
                let uid = format!("{namespace}-{name}-{generation}");
                let host = 10 * ns + name.len() + usize::from(generation);
                let ips = match ips {
                    0 => vec![],
                    1 => vec![format!("2001:db8::{host:x}")],
                    _ => vec![format!("2001:db8::{host:x}"), format!("192.0.2.{host}")],
                };
                let ports = ports
                    .into_iter()
                    .map(|i| NamedPort {
                        name: PORT_NAMES[i].to_owned(),
                        protocol: if i == 0 { Protocol::Tcp } else { Protocol::Udp },
                        port: if i == 0 { 8080 } else { 53 },
                    })
                    .collect();
                PolicyPod {
                    namespace,
                    name,
                    uid,
                    labels,
                    node: node.map(|n| NODES[n].to_owned()),
                    host_network,
                    phase: phase.map(str::to_owned),
                    ips,
                    ports,
                    ip_families: family_off.then(|| vec!["IPv6".to_owned()]),
                }
            },
        )
}

fn requirement() -> impl Strategy<Value = LabelSelectorRequirement> {
    (
        prop::sample::select(&KEYS[..]),
        prop::sample::select(&["In", "NotIn", "Exists", "DoesNotExist"][..]),
        prop::collection::vec(prop::sample::select(&VALUES[..]), 1..=2),
    )
        .prop_map(|(key, operator, values)| LabelSelectorRequirement {
            key: key.to_owned(),
            operator: operator.to_owned(),
            values: matches!(operator, "In" | "NotIn")
                .then(|| values.into_iter().map(str::to_owned).collect()),
        })
}

fn selector() -> impl Strategy<Value = LabelSelector> {
    (
        prop::option::of(labels()),
        prop::option::of(prop::collection::vec(requirement(), 0..=2)),
    )
        .prop_map(|(match_labels, match_expressions)| LabelSelector {
            match_labels,
            match_expressions,
        })
}

fn peer() -> impl Strategy<Value = NetworkPolicyPeer> {
    let block = (0..3u8, prop::bool::ANY).prop_map(|(which, except)| match which {
        0 => IPBlock {
            cidr: "192.0.2.7/24".into(),
            except: except.then(|| vec!["192.0.2.128/25".into()]),
        },
        1 => IPBlock {
            cidr: "2001:db8::/64".into(),
            except: except.then(|| vec!["2001:db8::/120".into()]),
        },
        _ => IPBlock {
            cidr: "0.0.0.0/0".into(),
            except: None,
        },
    });
    prop_oneof![
        selector().prop_map(|s| NetworkPolicyPeer {
            pod_selector: Some(s),
            ..NetworkPolicyPeer::default()
        }),
        (selector(), prop::option::of(selector())).prop_map(|(n, p)| NetworkPolicyPeer {
            namespace_selector: Some(n),
            pod_selector: p,
            ..NetworkPolicyPeer::default()
        }),
        block.prop_map(|b| NetworkPolicyPeer {
            ip_block: Some(b),
            ..NetworkPolicyPeer::default()
        }),
    ]
}

fn port() -> impl Strategy<Value = NetworkPolicyPort> {
    prop_oneof![
        (prop::sample::select(&PORT_NAMES[..])).prop_map(|name| NetworkPolicyPort {
            port: Some(IntOrString::String(name.to_owned())),
            protocol: Some(if name == "http" { "TCP" } else { "UDP" }.to_owned()),
            end_port: None,
        }),
        (1..100i32, prop::option::of(100..200i32)).prop_map(|(port, end_port)| {
            NetworkPolicyPort {
                port: Some(IntOrString::Int(port)),
                protocol: None,
                end_port,
            }
        }),
    ]
}

type RawRule = (
    Option<Vec<NetworkPolicyPeer>>,
    Option<Vec<NetworkPolicyPort>>,
);

fn rules() -> impl Strategy<Value = Option<Vec<RawRule>>> {
    let rule = (
        prop::option::of(prop::collection::vec(peer(), 0..=2)),
        prop::option::of(prop::collection::vec(port(), 0..=2)),
    );
    prop::option::of(prop::collection::vec(rule, 0..=2))
}

fn policy() -> impl Strategy<Value = NetworkPolicy> {
    let types = prop::sample::select(vec![
        None,
        Some(vec![]),
        Some(vec!["Ingress"]),
        Some(vec!["Egress"]),
        Some(vec!["Ingress", "Egress"]),
    ]);
    (
        (0..NAMESPACES.len(), 0..POLICY_NAMES.len(), 0..2u8),
        selector(),
        types,
        rules(),
        rules(),
    )
        .prop_map(
            |((ns, name, generation), pod_selector, types, ingress, egress)| {
                let namespace = NAMESPACES[ns];
                let name = POLICY_NAMES[name];
                NetworkPolicy {
                    metadata: ObjectMeta {
                        namespace: Some(namespace.to_owned()),
                        name: Some(name.to_owned()),
                        uid: Some(format!("{namespace}-{name}-{generation}")),
                        generation: Some(1),
                        ..ObjectMeta::default()
                    },
                    spec: Some(NetworkPolicySpec {
                        pod_selector: Some(pod_selector),
                        policy_types: types.map(|t| t.into_iter().map(str::to_owned).collect()),
                        ingress: ingress.map(|rules| {
                            let rule = |(from, ports)| NetworkPolicyIngressRule { from, ports };
                            rules.into_iter().map(rule).collect()
                        }),
                        egress: egress.map(|rules| {
                            let rule = |(to, ports)| NetworkPolicyEgressRule { to, ports };
                            rules.into_iter().map(rule).collect()
                        }),
                    }),
                }
            },
        )
}

fn op() -> impl Strategy<Value = Op> {
    let namespace = prop::sample::select(&NAMESPACES[..]).prop_map(str::to_owned);
    let pod_key = (
        prop::sample::select(&NAMESPACES[..]),
        prop::sample::select(&POD_NAMES[..]),
    );
    let policy_key = (
        prop::sample::select(&NAMESPACES[..]),
        prop::sample::select(&POLICY_NAMES[..]),
    );
    prop_oneof![
        6 => pod().prop_map(Op::Pod),
        2 => pod_key.prop_map(|(n, p)| Op::DeletePod(Key::new(n, p))),
        3 => (namespace.clone(), labels()).prop_map(|(n, l)| Op::Namespace(n, l)),
        1 => namespace.prop_map(Op::DeleteNamespace),
        4 => policy().prop_map(Op::Policy),
        1 => policy().prop_map(|mut p| {
            let spec = p.spec.as_mut().unwrap();
            spec.policy_types = Some(vec!["Ingress".into()]);
            spec.ingress = Some(vec![NetworkPolicyIngressRule {
                from: None,
                ports: Some(vec![NetworkPolicyPort { protocol: Some("ICMP".into()), ..NetworkPolicyPort::default() }]),
            }]);
            Op::BadPolicy(p)
        }),
        1 => policy_key.prop_map(|(n, p)| Op::DeletePolicy(Key::new(n, p))),
    ]
}

/// The cluster's objects as the apiserver holds them.
#[derive(Debug, Default)]
struct World {
    pods: BTreeMap<Key, PolicyPod>,
    namespaces: BTreeMap<String, Labels>,
    policies: BTreeMap<Key, NetworkPolicy>,
}

impl World {
    /// Applies `op` to the world and the model; returns the model's delta.
    fn apply(&mut self, model: &mut Model, op: Op) -> Delta {
        match op {
            Op::Pod(pod) => {
                self.pods.insert(pod.key(), pod.clone());
                model.upsert_pod(pod)
            }
            Op::DeletePod(key) => {
                self.pods.remove(&key);
                model.delete_pod(&key)
            }
            Op::Namespace(name, labels) => {
                self.namespaces.insert(name.clone(), labels.clone());
                model.upsert_namespace(&name, labels)
            }
            Op::DeleteNamespace(name) => {
                self.namespaces.remove(&name);
                model.delete_namespace(&name)
            }
            Op::Policy(policy) => {
                let key = Key::new(
                    policy.metadata.namespace.clone().unwrap(),
                    policy.metadata.name.clone().unwrap(),
                );
                match model.upsert_policy(&policy) {
                    Ok(delta) => {
                        self.policies.insert(key, policy);
                        delta
                    }
                    Err(e) => panic!("a valid policy refused: {e}"),
                }
            }
            Op::BadPolicy(policy) => {
                let refused = model
                    .upsert_policy(&policy)
                    .expect_err("ICMP is no protocol");
                assert_eq!(refused.problem, Problem::Protocol);
                Delta::default()
            }
            Op::DeletePolicy(key) => {
                self.policies.remove(&key);
                model.delete_policy(&key)
            }
        }
    }
}

// ---- The oracle: the API text, evaluated from scratch. ----

/// `LabelSelector` semantics (apimachinery `LabelSelectorAsSelector`): every
/// `matchLabels` pair and every expression must hold.
fn raw_matches(selector: Option<&LabelSelector>, labels: &Labels) -> bool {
    let Some(selector) = selector else {
        return true;
    };
    let pairs = selector.match_labels.iter().flatten();
    let pairs_hold = pairs.into_iter().all(|(k, v)| labels.get(k) == Some(v));
    let expressions = selector.match_expressions.iter().flatten();
    pairs_hold
        && expressions.into_iter().all(|e| {
            let values = e.values.clone().unwrap_or_default();
            let value = labels.get(&e.key);
            match e.operator.as_str() {
                "In" => value.is_some_and(|v| values.contains(v)),
                "NotIn" => value.is_none() || !values.contains(value.unwrap()),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                other => panic!("operator {other}"),
            }
        })
}

fn runs(pod: &PolicyPod) -> bool {
    !pod.host_network
        && pod.phase.as_deref() != Some("Succeeded")
        && pod.phase.as_deref() != Some("Failed")
}

/// Does the raw peer pick the pod? (the peer has selectors)
fn peer_picks(world: &World, namespace: &str, peer: &NetworkPolicyPeer, pod: &PolicyPod) -> bool {
    let in_scope = match &peer.namespace_selector {
        Some(selector) => world
            .namespaces
            .get(&pod.namespace)
            .is_some_and(|labels| raw_matches(Some(selector), labels)),
        None => pod.namespace == namespace,
    };
    in_scope && raw_matches(peer.pod_selector.as_ref(), &pod.labels)
}

/// Whether the policy isolates ingress, egress (policyTypes as the API defaults them).
fn isolation(spec: &NetworkPolicySpec) -> (bool, bool) {
    match spec.policy_types.as_deref() {
        None | Some([]) => (true, spec.egress.as_ref().is_some_and(|e| !e.is_empty())),
        Some(types) => (
            types.iter().any(|t| t == "Ingress"),
            types.iter().any(|t| t == "Egress"),
        ),
    }
}

fn port_names(ports: Option<&Vec<NetworkPolicyPort>>) -> BTreeSet<String> {
    let names = ports.into_iter().flatten().filter_map(|p| match &p.port {
        Some(IntOrString::String(name)) => Some(name.clone()),
        _ => None,
    });
    names.collect()
}

/// A raw rule, direction-free: peers and ports.
struct RuleView<'a> {
    peers: Option<&'a Vec<NetworkPolicyPeer>>,
    ports: Option<&'a Vec<NetworkPolicyPort>>,
}

fn ingress_rules(spec: &NetworkPolicySpec) -> Vec<RuleView<'_>> {
    let rules = spec.ingress.iter().flatten();
    rules
        .map(|r| RuleView {
            peers: r.from.as_ref(),
            ports: r.ports.as_ref(),
        })
        .collect()
}

fn egress_rules(spec: &NetworkPolicySpec) -> Vec<RuleView<'_>> {
    let rules = spec.egress.iter().flatten();
    rules
        .map(|r| RuleView {
            peers: r.to.as_ref(),
            ports: r.ports.as_ref(),
        })
        .collect()
}

/// A pod's policies by direction, and the port names its ingress rules use.
type Entry = (Vec<String>, Vec<String>, BTreeSet<String>);

fn oracle(world: &World) -> Snapshot {
    let mut snapshot = Snapshot::default();
    // Members of each group, as (UID → pod), and the port names members list.
    let mut group_pods: BTreeMap<String, BTreeMap<String, &PolicyPod>> = BTreeMap::new();
    let mut group_ports: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut group_users: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let addressable = |p: &&PolicyPod| runs(p) && !p.ips.is_empty();
    let mut entries: BTreeMap<Key, Entry> = BTreeMap::new();
    for (key, raw) in &world.policies {
        let compiled = compile(raw).expect("valid");
        assert_eq!(
            compiled.spec.problems(),
            vec![],
            "weftd's validator takes it"
        );
        let name = policy_name(&key.namespace, &key.name);
        let spec = raw.spec.as_ref().unwrap();
        let (ingress, egress) = isolation(spec);
        let applied: Vec<&PolicyPod> = world
            .pods
            .values()
            .filter(|p| p.namespace == key.namespace && runs(p))
            .filter(|p| raw_matches(spec.pod_selector.as_ref(), &p.labels))
            .collect();
        let ingress_ports: BTreeSet<String> = match ingress {
            true => ingress_rules(spec)
                .iter()
                .flat_map(|r| port_names(r.ports))
                .collect(),
            false => BTreeSet::new(),
        };
        for pod in &applied {
            let entry = entries.entry(pod.key()).or_default();
            if ingress {
                entry.0.push(name.clone());
                entry.2.extend(ingress_ports.iter().cloned());
            }
            if egress {
                entry.1.push(name.clone());
            }
        }
        let compiled_rules = [
            (
                ingress,
                ingress_rules(spec),
                compiled.spec.ingress.clone(),
                false,
            ),
            (
                egress,
                egress_rules(spec),
                compiled.spec.egress.clone(),
                true,
            ),
        ];
        for (isolated, raw_rules, compiled_rules, is_egress) in compiled_rules {
            if !isolated {
                assert!(compiled_rules.is_none());
                continue;
            }
            let compiled_rules = compiled_rules.expect("an isolated direction has rules");
            assert_eq!(raw_rules.len(), compiled_rules.len());
            for (raw_rule, rule) in raw_rules.iter().zip(&compiled_rules) {
                let ports = if is_egress {
                    port_names(raw_rule.ports)
                } else {
                    BTreeSet::new()
                };
                let raw_peers = raw_rule.peers.filter(|p| !p.is_empty());
                let mut users = Vec::new();
                match raw_peers {
                    None => assert!(rule.peers.is_none()),
                    Some(raw_peers) => {
                        let peers = rule.peers.as_ref().expect("peers");
                        for (raw_peer, peer) in raw_peers.iter().zip(peers) {
                            if raw_peer.ip_block.is_some() {
                                assert!(peer.group.is_none());
                                continue;
                            }
                            let group = peer.group.clone().expect("a selector peer names a group");
                            let members: BTreeMap<String, &PolicyPod> = world
                                .pods
                                .values()
                                .filter(addressable)
                                .filter(|p| peer_picks(world, &key.namespace, raw_peer, p))
                                .map(|p| (p.uid.clone(), p))
                                .collect();
                            users.push((group, members));
                        }
                    }
                }
                let groupless = raw_peers.is_none_or(|ps| ps.iter().any(|p| p.ip_block.is_some()));
                if is_egress && groupless && !ports.is_empty() {
                    let everyone = world
                        .pods
                        .values()
                        .filter(addressable)
                        .filter(|p| world.namespaces.contains_key(&p.namespace))
                        .map(|p| (p.uid.clone(), p))
                        .collect();
                    users.push((ALL_PODS_GROUP.to_owned(), everyone));
                }
                for (group, members) in users {
                    if let Some(known) = group_pods.get(&group) {
                        let (a, b): (BTreeSet<_>, BTreeSet<_>) =
                            (known.keys().collect(), members.keys().collect());
                        assert_eq!(a, b, "two peers named {group} select different pods");
                    }
                    group_pods.insert(group.clone(), members);
                    group_ports
                        .entry(group.clone())
                        .or_default()
                        .extend(ports.iter().cloned());
                    group_users.entry(group).or_default().insert(name.clone());
                }
            }
        }
        let span = applied.iter().filter_map(|p| p.node.clone()).collect();
        let state = PolicyState {
            spec: compiled.spec.clone(),
            applied_to: applied.iter().map(|p| p.uid.clone()).collect(),
            span,
        };
        snapshot.policies.insert(name, state);
        let namespace = snapshot
            .index
            .namespaces
            .iter_mut()
            .find(|n| n.name == key.namespace);
        let entry = match namespace {
            Some(entry) => entry,
            None => {
                snapshot.index.namespaces.push(PolicedNamespace {
                    name: key.namespace.clone(),
                    ..PolicedNamespace::default()
                });
                snapshot.index.namespaces.last_mut().unwrap()
            }
        };
        entry.ingress |= ingress;
        entry.egress |= egress;
    }
    snapshot
        .index
        .namespaces
        .sort_by(|a, b| a.name.cmp(&b.name));
    for (group, pods) in group_pods {
        let ports = &group_ports[&group];
        let members = pods
            .into_iter()
            .map(|(uid, pod)| {
                let member = GroupMember {
                    uid: uid.clone(),
                    ips: pod.ips.clone(),
                    ports: pod
                        .ports
                        .iter()
                        .filter(|p| ports.contains(&p.name))
                        .cloned()
                        .collect(),
                };
                (uid, member)
            })
            .collect();
        let span = group_users[&group]
            .iter()
            .flat_map(|policy| snapshot.policies[policy].span.iter().cloned())
            .collect();
        let selector = GroupState::default().selector;
        snapshot.groups.insert(
            group,
            GroupState {
                selector,
                members,
                span,
            },
        );
    }
    for pod in world.pods.values() {
        let policed = snapshot
            .index
            .namespaces
            .iter()
            .any(|n| n.name == pod.namespace);
        let Some(node) = &pod.node else { continue };
        if !runs(pod) || !(policed || pod.ip_families.is_some()) {
            continue;
        }
        let (mut ingress, mut egress, ports) = entries.remove(&pod.key()).unwrap_or_default();
        ingress.sort();
        egress.sort();
        let spec = snapshot
            .nodes
            .entry(node.clone())
            .or_insert_with(|| WeftNodePolicySpec {
                node_name: node.clone(),
                pods: Vec::new(),
            });
        spec.pods.push(PodPolicies {
            namespace: pod.namespace.clone(),
            name: pod.name.clone(),
            uid: pod.uid.clone(),
            ingress,
            egress,
            named_ports: pod
                .ports
                .iter()
                .filter(|p| ports.contains(&p.name))
                .cloned()
                .collect(),
            ip_families: pod.ip_families.clone(),
        });
    }
    snapshot
}

/// Every entry of `delta` changes `before`.
fn assert_exact(before: &Snapshot, delta: &Delta) {
    for (name, selector) in &delta.groups {
        assert_ne!(
            before.groups.get(name).map(|g| &g.selector),
            selector.as_ref(),
            "group {name}"
        );
    }
    for (group, members) in &delta.members {
        for (uid, member) in members {
            let was = before.groups.get(group).and_then(|g| g.members.get(uid));
            assert_ne!(was, member.as_ref(), "member {uid} of {group}");
        }
    }
    for (group, span) in &delta.group_spans {
        for (node, now) in span {
            let was = before
                .groups
                .get(group)
                .is_some_and(|g| g.span.contains(node));
            assert_ne!(was, *now, "span {node} of {group}");
        }
    }
    for (name, spec) in &delta.policies {
        assert_ne!(
            before.policies.get(name).map(|p| &p.spec),
            spec.as_ref(),
            "policy {name}"
        );
    }
    let flags = [(&delta.policy_spans, true), (&delta.applied_to, false)];
    for (changes, span) in flags {
        for (name, flags) in changes {
            for (item, now) in flags {
                let was = before.policies.get(name).is_some_and(|p| match span {
                    true => p.span.contains(item),
                    false => p.applied_to.contains(item),
                });
                assert_ne!(was, *now, "{item} of policy {name}");
            }
        }
    }
    for (node, spec) in &delta.nodes {
        let was = before
            .nodes
            .get(node)
            .map(|s| s.pods.as_slice())
            .unwrap_or_default();
        assert_ne!(was, spec.pods.as_slice(), "node {node}");
    }
    if let Some(index) = &delta.index {
        assert_ne!(&before.index, index);
    }
}

/// The oracle leaves selector texts empty (they are the model's rendering, checked in
/// policy_model.rs); compare the rest.
fn without_selectors(mut snapshot: Snapshot) -> Snapshot {
    for group in snapshot.groups.values_mut() {
        group.selector.clear();
    }
    snapshot
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(512)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_incremental_model_agrees_with_the_api_evaluated_from_scratch(
        ops in prop::collection::vec(op(), 1..60)
    ) {
        let mut world = World::default();
        let mut model = Model::new();
        let mut mirror = Snapshot::default();
        let mut merged = Delta::default();
        for op in ops {
            let delta = world.apply(&mut model, op);
            let now = model.snapshot();
            prop_assert_eq!(without_selectors(now.clone()), oracle(&world));
            assert_exact(&mirror, &delta);
            mirror.apply(&delta);
            prop_assert_eq!(&mirror, &now);
            merged.merge(delta);
        }
        let mut from_nothing = Snapshot::default();
        from_nothing.apply(&merged);
        prop_assert_eq!(from_nothing, model.snapshot());
    }
}
