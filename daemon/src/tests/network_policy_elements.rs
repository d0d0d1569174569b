//! The elements path against a real kernel: a pod starting under a laid profile with a
//! named port, and a peer group's members changing, each written as nfnetlink element
//! changes (no `nft` process), then judged by real connections of both families.
use super::super::super::super::Pass;
use super::super::super::*;
use super::super::{entry, member, spec};
use super::netns::*;
use serde_json::json;
use std::collections::BTreeMap;
use weft_api::{GroupMember, PodPolicies, WeftPolicySpec};

/// `x.named`: ingress from the group's members on the pod's named port `http` only.
fn named_port_policy() -> BTreeMap<String, WeftPolicySpec> {
    let spec = spec(
        json!({"ingress": [{"peers": [{"group": super::super::GROUP_B}],
        "ports": [{"namedPort": "http"}]}]}),
    );
    [("x.named".to_owned(), spec)].into_iter().collect()
}

/// The entry of a pod under `x.named` whose container port `http` is TCP 80.
fn named_port_entry() -> PodPolicies {
    let mut entry = entry(&["x.named"], &[]);
    entry.named_ports = vec![serde_json::from_value(json!({"name": "http", "port": 80})).unwrap()];
    entry
}

/// The group holding `pod`'s two addresses.
fn group_of(pod: &Pod) -> BTreeMap<String, Vec<GroupMember>> {
    let ips = [pod.v4.to_string(), pod.v6.to_string()];
    let ips: Vec<&str> = ips.iter().map(String::as_str).collect();
    let members = vec![member("peer", &ips, json!([]))];
    [(super::super::GROUP_B.to_owned(), members)]
        .into_iter()
        .collect()
}

fn view<'a>(
    specs: &'a BTreeMap<String, WeftPolicySpec>,
    groups: &'a BTreeMap<String, Vec<GroupMember>>,
    entries: Vec<&'a PodPolicies>,
) -> PolicyView<'a> {
    PolicyView {
        entries,
        ..super::view(specs, groups)
    }
}

#[test]
fn a_pod_under_a_named_port_profile_starts_with_elements_only() {
    let cluster = Cluster::new();
    assert_eq!(cluster.sync(), [(Table::Weft, Pass::Created)]);
    let (specs, groups, a_entry) = (
        named_port_policy(),
        group_of(&cluster.pods[B]),
        named_port_entry(),
    );
    // The pass a's entry ran before its ADD: the profile and its sets laid, a not started.
    let unpoliced = [(B, PodState::Unpoliced), (C, PodState::Unpoliced)];
    cluster.apply(&view(&specs, &groups, vec![&a_entry]), &unpoliced);
    let listed = || {
        check(
            "nft list",
            cluster.node.run("nft", &["list", "table", "inet", "weft"]),
        )
    };
    let a = &cluster.pods[A];
    let port_element = format!("{} . tcp . 80", a.v4);
    assert!(listed().contains("set np-lp-http-v4"), "{}", listed());
    assert!(!listed().contains(&port_element), "{}", listed());

    // Two verdicts, np-self, and a's named port in the IPv4 and the IPv6 set.
    assert_eq!(cluster.admit(A, Some(a_entry.clone())), Some(5));
    assert!(listed().contains(&port_element), "{}", listed());
    let mut probes = cluster.probes(B, A, 80, &[Transport::Tcp], true);
    probes.extend(cluster.probes(B, A, 81, &[Transport::Tcp], false));
    probes.extend(cluster.probes(C, A, 80, &[Transport::Tcp], false));
    cluster.expect("a reachable from b on its named port only", &probes);

    // What the kernel holds is what a pass computes with a started.
    let started = [(A, PodState::Policed(&a_entry)), unpoliced[0], unpoliced[1]];
    let written = cluster.apply_elements(&view(&specs, &groups, vec![&a_entry]), &started);
    assert_eq!(written, Written::Elements(0));
    assert_eq!(cluster.sync(), [(Table::Weft, Pass::Elements(0))]);
}

#[test]
fn a_peer_group_changing_members_is_elements_only() {
    let cluster = Cluster::new();
    assert_eq!(cluster.sync(), [(Table::Weft, Pass::Created)]);
    let (specs, a_entry) = (named_port_policy(), named_port_entry());
    let states = [
        (A, PodState::Policed(&a_entry)),
        (B, PodState::Unpoliced),
        (C, PodState::Unpoliced),
    ];
    let from_b = group_of(&cluster.pods[B]);
    cluster.apply(&view(&specs, &from_b, Vec::new()), &states);
    let mut probes = cluster.probes(B, A, 80, &[Transport::Tcp], true);
    probes.extend(cluster.probes(C, A, 80, &[Transport::Tcp], false));
    cluster.expect("the group holds b", &probes);

    // b leaves the group and c joins: two addresses out, two in.
    let from_c = group_of(&cluster.pods[C]);
    let written = cluster.apply_elements(&view(&specs, &from_c, Vec::new()), &states);
    assert_eq!(written, Written::Elements(4));
    let mut probes = cluster.probes(C, A, 80, &[Transport::Tcp], true);
    probes.extend(cluster.probes(B, A, 80, &[Transport::Tcp], false));
    cluster.expect("the group holds c", &probes);
    assert_eq!(cluster.sync(), [(Table::Weft, Pass::Elements(0))]);
}
