//! NetworkPolicy against a real kernel: a node namespace with three pod namespaces on
//! veths named like weft's, the static part through a firewall pass and compiled
//! states through `PolicyTables::apply` (nft scripts), then real TCP and UDP
//! connections of both families. Every denial is preceded by the same path passing.
//! Addresses: 192.0.2.0/24 and 2001:db8::/32 (documentation), inside the test's own
//! namespaces only.
use super::super::super::Pass;
use super::super::*;
use super::{entry, member, spec};
use serde_json::json;
use std::collections::BTreeMap;
use weft_api::{GroupMember, PodPolicies, WeftPolicySpec};

#[path = "network_policy_netns.rs"]
mod netns;

#[path = "network_policy_elements.rs"]
mod elements;

use netns::*;

/// Everything open: the legitimate path of every later denial.
fn baseline(cluster: &Cluster) -> Vec<Probe> {
    let mut probes = Vec::new();
    for (from, to) in [(A, B), (B, A), (C, A), (A, C), (B, C), (C, B)] {
        for port in PORTS {
            probes.extend(cluster.probes(from, to, port, &BOTH, true));
        }
    }
    probes.push(cluster.service(B, true));
    probes.push(cluster.service(A, true));
    probes
}

fn policies(list: &[(&str, serde_json::Value)]) -> BTreeMap<String, WeftPolicySpec> {
    list.iter()
        .map(|(name, value)| (name.to_string(), spec(value.clone())))
        .collect()
}

fn view<'a>(
    specs: &'a BTreeMap<String, WeftPolicySpec>,
    groups: &'a BTreeMap<String, Vec<GroupMember>>,
) -> PolicyView<'a> {
    PolicyView {
        policies: specs.iter().map(|(n, s)| (n.as_str(), s)).collect(),
        groups: groups
            .iter()
            .map(|(n, m)| (n.as_str(), m.iter().collect()))
            .collect(),
        all_pods_group: Some("g-all"),
        entries: Vec::new(),
    }
}

#[test]
fn policies_hold_against_real_connections_of_both_families() {
    let cluster = Cluster::new();
    assert_eq!(cluster.sync(), [(Table::Weft, Pass::Created)]);
    cluster.add_service();
    let (a, b) = (&cluster.pods[A], &cluster.pods[B]);
    let ips = |pod: &Pod| [pod.v4.to_string(), pod.v6.to_string()];
    let groups: BTreeMap<String, Vec<GroupMember>> = [
        (
            super::GROUP_B.to_owned(),
            vec![member(
                "ub",
                &ips(b).each_ref().map(String::as_str),
                json!([]),
            )],
        ),
        (
            super::GROUP_A.to_owned(),
            vec![member(
                "ua",
                &ips(a).each_ref().map(String::as_str),
                json!([{"name": "http", "protocol": "TCP", "port": 81}]),
            )],
        ),
    ]
    .into_iter()
    .collect();
    let specs = policies(&[
        ("x.deny-in", json!({"ingress": []})),
        ("x.deny-out", json!({"egress": []})),
        (
            "x.from-b",
            json!({"ingress": [{"peers": [{"group": super::GROUP_B}],
                "ports": [{"protocol": "TCP", "port": 80}, {"protocol": "UDP", "port": 80}]}]}),
        ),
        (
            "x.block",
            json!({"ingress": [{"peers": [{"ipBlock": {"cidr": "192.0.2.0/24",
                "except": [format!("{}/32", b.v4)]}}]}]}),
        ),
        (
            "x.named-in",
            json!({"ingress": [{"ports": [{"protocol": "TCP", "namedPort": "http"}]}]}),
        ),
        (
            "x.named-out",
            json!({"egress": [{"peers": [{"group": super::GROUP_A}],
                "ports": [{"namedPort": "http"}]}]}),
        ),
    ]);
    let view = view(&specs, &groups);
    let unpoliced = [PodState::Unpoliced; 3];

    // 0. Nobody isolated: every path of the later denials passes.
    cluster.judge(&view, unpoliced);
    cluster.expect("unpoliced", &baseline(&cluster));

    // 1. Default deny ingress on a: nothing reaches a, a reaches out with replies, a
    //    reaches itself through the Service.
    let deny_in = entry(&["x.deny-in"], &[]);
    cluster.judge(
        &view,
        [
            PodState::Policed(&deny_in),
            PodState::Unpoliced,
            PodState::Unpoliced,
        ],
    );
    let mut probes = cluster.probes(B, A, 80, &BOTH, false);
    probes.extend(cluster.probes(C, A, 81, &BOTH, false));
    probes.extend(cluster.probes(A, B, 80, &BOTH, true));
    probes.extend(cluster.probes(B, C, 80, &BOTH, true));
    probes.push(cluster.service(B, false));
    probes.push(cluster.service(A, true));
    cluster.expect("default deny ingress", &probes);

    // 2. A podSelector group opens exactly that peer, on both families, on its ports.
    let from_b = entry(&["x.deny-in", "x.from-b"], &[]);
    cluster.judge(
        &view,
        [
            PodState::Policed(&from_b),
            PodState::Unpoliced,
            PodState::Unpoliced,
        ],
    );
    let mut probes = cluster.probes(B, A, 80, &BOTH, true);
    probes.extend(cluster.probes(B, A, 81, &BOTH, false));
    probes.extend(cluster.probes(C, A, 80, &BOTH, false));
    cluster.expect("group allow", &probes);

    // 3. An IPv4 ipBlock opens IPv4 only, minus its exception.
    let block = entry(&["x.block"], &[]);
    cluster.judge(
        &view,
        [
            PodState::Policed(&block),
            PodState::Unpoliced,
            PodState::Unpoliced,
        ],
    );
    let probes = [
        cluster.one(C, A, Family::V4, 80, true),
        cluster.one(C, A, Family::V4, 81, true),
        cluster.one(C, A, Family::V6, 80, false),
        cluster.one(C, A, Family::V6, 81, false),
        cluster.one(B, A, Family::V4, 80, false),
        cluster.one(B, A, Family::V6, 80, false),
    ];
    cluster.expect("IPv4 ipBlock", &probes);

    // 4. Named ports: a's ingress allows its own "http" (TCP 81) from anyone; b's
    //    egress allows only "http" of group a's members.
    let mut named_in = entry(&["x.named-in"], &[]);
    named_in.named_ports =
        vec![
            serde_json::from_value(json!({"name": "http", "protocol": "TCP", "port": 81})).unwrap(),
        ];
    let named_out = entry(&[], &["x.named-out"]);
    cluster.judge(
        &view,
        [
            PodState::Policed(&named_in),
            PodState::Policed(&named_out),
            PodState::Unpoliced,
        ],
    );
    let mut probes = cluster.probes(B, A, 81, &[Transport::Tcp], true);
    probes.extend(cluster.probes(C, A, 81, &[Transport::Tcp], true));
    probes.extend(cluster.probes(B, A, 80, &[Transport::Tcp], false));
    probes.extend(cluster.probes(C, A, 80, &[Transport::Tcp], false));
    probes.extend(cluster.probes(B, A, 81, &[Transport::Udp], false));
    probes.extend(cluster.probes(B, C, 81, &BOTH, false));
    probes.extend(cluster.probes(C, B, 81, &BOTH, true));
    cluster.expect("named ports", &probes);

    // 5. Deny-all egress on b: b reaches no pod, replies to b's clients pass, and b
    //    still resolves its gateway (neighbour discovery and ARP never cross forward).
    let deny_out = entry(&[], &["x.deny-out"]);
    cluster.judge(
        &view,
        [
            PodState::Unpoliced,
            PodState::Policed(&deny_out),
            PodState::Unpoliced,
        ],
    );
    b.ns.ip(&["neigh", "flush", "dev", "eth0"]);
    b.ns.ip(&["-6", "neigh", "flush", "dev", "eth0"]);
    let mut probes = cluster.probes(B, A, 80, &BOTH, false);
    probes.extend(cluster.probes(B, C, 80, &BOTH, false));
    probes.extend(cluster.probes(A, B, 80, &BOTH, true));
    probes.extend(cluster.probes(C, B, 81, &BOTH, true));
    cluster.expect("default deny egress", &probes);
    let neighbours = b.ns.ip(&["-6", "neigh", "show", "dev", "eth0"]);
    assert!(
        neighbours
            .lines()
            .any(|l| l.starts_with(GATEWAY_V6) && l.contains("lladdr")),
        "b resolved its gateway under deny-all egress: {neighbours:?}"
    );
    let gateway = format!("{GATEWAY_V6}%eth0");
    assert!(b
        .ns
        .run("ping", &["-6", "-c1", "-W2", &gateway])
        .status
        .success());
    assert!(b
        .ns
        .run("ping", &["-c1", "-W2", GATEWAY_V4])
        .status
        .success());

    // 6. A pending pod is isolated both ways; a veth weftd has not judged at all too;
    //    judged again, it passes.
    cluster.judge(
        &view,
        [PodState::Unpoliced, PodState::Unpoliced, PodState::Pending],
    );
    let mut probes = cluster.probes(A, C, 80, &BOTH, false);
    probes.extend(cluster.probes(C, A, 80, &BOTH, false));
    probes.extend(cluster.probes(A, B, 80, &BOTH, true));
    cluster.expect("pending", &probes);
    cluster.apply(&view, &[(A, PodState::Unpoliced), (B, PodState::Unpoliced)]);
    cluster.expect("unjudged", &cluster.probes(C, A, 80, &BOTH, false));
    cluster.judge(&view, unpoliced);
    cluster.expect("judged again", &cluster.probes(C, A, 80, &BOTH, true));
}

/// Pod `c`'s IPv6 turned off by its entry: its IPv6 is dropped both ways, its IPv4 and
/// its neighbour discovery are not.
#[test]
fn a_family_turned_off_drops_that_family_only() {
    let cluster = Cluster::new();
    assert_eq!(cluster.sync(), [(Table::Weft, Pass::Created)]);
    let specs = BTreeMap::new();
    let groups = BTreeMap::new();
    let view = view(&specs, &groups);
    cluster.judge(
        &view,
        [
            PodState::Unpoliced,
            PodState::Unpoliced,
            PodState::Unpoliced,
        ],
    );
    let mut probes = cluster.probes(A, C, 80, &BOTH, true);
    probes.extend(cluster.probes(C, A, 80, &BOTH, true));
    cluster.expect("both families", &probes);
    let mut v4_only: PodPolicies = entry(&[], &[]);
    v4_only.ip_families = Some(vec!["IPv4".into()]);
    cluster.judge(
        &view,
        [
            PodState::Unpoliced,
            PodState::Unpoliced,
            PodState::Policed(&v4_only),
        ],
    );
    let c = &cluster.pods[C];
    c.ns.ip(&["-6", "neigh", "flush", "dev", "eth0"]);
    let probes = [
        cluster.one(A, C, Family::V4, 80, true),
        cluster.one(C, A, Family::V4, 80, true),
        cluster.one(A, C, Family::V6, 80, false),
        cluster.one(C, A, Family::V6, 80, false),
    ];
    cluster.expect("IPv6 off", &probes);
    let gateway = format!("{GATEWAY_V6}%eth0");
    let ping = c.ns.run("ping", &["-6", "-c1", "-W2", &gateway]);
    assert!(!ping.status.success(), "the node's IPv6 is that family too");
    let neighbours = c.ns.ip(&["-6", "neigh", "show", "dev", "eth0"]);
    assert!(
        neighbours
            .lines()
            .any(|l| l.starts_with(GATEWAY_V6) && l.contains("lladdr")),
        "neighbour discovery passes: {neighbours:?}"
    );
}

/// The dynamic objects survive passes (the shape compare leaves them out), a table
/// deleted by hand comes back refilled in the same pass, and a change after drift
/// rewrites the whole state.
#[test]
fn passes_keep_the_dynamic_state_and_refill_it_after_re_creation() {
    let cluster = Cluster::new();
    assert_eq!(cluster.sync(), [(Table::Weft, Pass::Created)]);
    let specs = policies(&[(
        "x.from-b",
        json!({"ingress": [{"peers": [{"group": super::GROUP_B}, {"ipBlock": {"cidr": "198.51.100.0/24", "except": ["198.51.100.0/28"]}}],
            "ports": [{"protocol": "TCP", "port": 80, "endPort": 90}, {"protocol": "SCTP"}]}]}),
    )]);
    let groups: BTreeMap<String, Vec<GroupMember>> = [(
        super::GROUP_B.to_owned(),
        vec![member("ub", &["192.0.2.12", "2001:db8:1::12"], json!([]))],
    )]
    .into_iter()
    .collect();
    let view = view(&specs, &groups);
    let from_b = entry(&["x.from-b"], &[]);
    cluster.judge(
        &view,
        [
            PodState::Policed(&from_b),
            PodState::Unpoliced,
            PodState::Pending,
        ],
    );
    let listed = || {
        check(
            "nft list",
            cluster.node.run("nft", &["list", "table", "inet", "weft"]),
        )
    };
    let before = listed();
    assert!(before.contains("chain np-i-"), "{before}");
    assert!(before.contains("tcp . 80-90"), "{before}");
    assert_eq!(cluster.sync(), [(Table::Weft, Pass::Elements(0))]);
    assert_eq!(listed(), before);

    // A pass leaves intact chains alone: the drop counter a denied probe raised stays.
    let mut probes = cluster.probes(B, A, 80, &[Transport::Tcp], true);
    probes.extend(cluster.probes(B, A, 80, &[Transport::Udp], false));
    cluster.expect("from b on TCP 80-90 only", &probes);
    let dropped = || {
        listed()
            .split("counter packets ")
            .skip(1)
            .map(|rest| rest.split(' ').next().unwrap().parse::<u64>().unwrap())
            .sum::<u64>()
    };
    assert!(dropped() >= 2, "{}", listed());
    assert_eq!(cluster.sync(), [(Table::Weft, Pass::Elements(0))]);
    assert!(
        dropped() >= 2,
        "a pass rewrote an intact chain: {}",
        listed()
    );

    // A profile chain emptied by hand is written again by the next pass.
    let chain = before
        .lines()
        .find_map(|l| l.trim().strip_prefix("chain np-i-"))
        .unwrap()
        .trim_end_matches(" {")
        .to_owned();
    cluster
        .node
        .nft(&format!("flush chain inet weft np-i-{chain}\n"));
    assert!(!listed().contains("tcp . 80-90"));
    assert_eq!(cluster.sync(), [(Table::Weft, Pass::Elements(0))]);
    assert_eq!(listed(), before, "rewritten whole, counters from 0");

    check(
        "nft delete table",
        cluster
            .node
            .run("nft", &["delete", "table", "inet", "weft"]),
    );
    assert_eq!(cluster.sync(), [(Table::Weft, Pass::Created)]);
    assert_eq!(listed(), before, "refilled in the same pass");

    // Drift: a profile chain's rules and c's verdict removed by hand. The next change
    // (c's verdict) fails as a difference, so the whole state is written.
    cluster.node.nft(&format!(
        "flush chain inet weft np-i-{chain}\ndelete element inet weft np-ingress-pods {{ \"{}\" }}\n",
        cluster.pods[C].veth
    ));
    cluster.judge(
        &view,
        [
            PodState::Policed(&from_b),
            PodState::Unpoliced,
            PodState::Unpoliced,
        ],
    );
    let after = listed();
    let a_verdict = format!("\"{}\" : jump np-i-{chain}", cluster.pods[A].veth);
    assert!(after.contains(&a_verdict), "{after}");
    assert!(after.contains("tcp . 80-90"), "{after}");
    assert!(
        after.contains(&format!("\"{}\" : accept", cluster.pods[C].veth)),
        "{after}"
    );

    // A pod's start with its profile in place is elements only: one nfnetlink
    // transaction, no nft process; then a difference including a chain goes by script.
    let b_veth = cluster.pods[B].veth.clone();
    let elements = cluster.apply_elements(
        &view,
        &[
            (A, PodState::Policed(&from_b)),
            (B, PodState::Pending),
            (C, PodState::Unpoliced),
        ],
    );
    assert_eq!(
        elements,
        Written::Elements(2),
        "b's two verdicts replaced: accept -> drop"
    );
    let dropped_b = format!("\"{b_veth}\" : drop");
    assert!(listed().contains(&dropped_b), "{}", listed());
    cluster.expect(
        "b pending: isolated, while a still reaches c",
        &[
            Probe {
                from: B,
                to: cluster.pods[C].v4,
                port: 80,
                transport: Transport::Tcp,
                pass: false,
            },
            Probe {
                from: A,
                to: cluster.pods[C].v6,
                port: 80,
                transport: Transport::Tcp,
                pass: true,
            },
        ],
    );
    let none = cluster.apply_elements(
        &view,
        &[
            (A, PodState::Policed(&from_b)),
            (B, PodState::Pending),
            (C, PodState::Unpoliced),
        ],
    );
    assert_eq!(none, Written::Elements(0), "nothing to change");
    cluster.judge(
        &view,
        [
            PodState::Policed(&from_b),
            PodState::Unpoliced,
            PodState::Unpoliced,
        ],
    );
    assert!(!listed().contains(&dropped_b), "{}", listed());

    // A starting pod whose profile the kernel holds: its own elements only, no compile.
    let c_veth = cluster.pods[C].veth.clone();
    let admit = |entry: Option<PodPolicies>| cluster.admit(C, entry);
    assert_eq!(admit(None), Some(0), "already so");
    assert_eq!(admit(Some(from_b.clone())), Some(1), "a's profile, ingress");
    assert!(listed().contains(&format!("\"{c_veth}\" : jump np-i-{chain}")));
    cluster.expect(
        "c under a's profile: from b only",
        &[
            Probe {
                from: B,
                to: cluster.pods[C].v6,
                port: 80,
                transport: Transport::Tcp,
                pass: true,
            },
            Probe {
                from: A,
                to: cluster.pods[C].v6,
                port: 80,
                transport: Transport::Tcp,
                pass: false,
            },
        ],
    );
    let other = entry(&["x.other"], &[]);
    assert_eq!(admit(Some(other)), None, "no chain yet: a whole pass");
}
