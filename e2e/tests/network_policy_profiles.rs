//! A profile's chain is laid when a pod's `WeftNodePolicy` entry names it, before the
//! pod's ADD (docs/networkpolicy-design.md §2.3), so the ADD writes only the pod's own
//! elements, and it goes with the last entry naming it.
//!
//! The truth table's cluster (three Kubernetes-mode namespace nodes, the real apiserver
//! and weft-controller, upstream's 9 pods). In a namespace of its own, one policy lets in
//! pod `a` of namespace y, and y's pod `b` on the named port `serve-81-tcp` only. Pod
//! `one` is created on node-1:
//!
//! 1. Once node-1's weftd has its entry, and before its ADD, a new ingress profile chain
//!    is in node-1's `inet weft`.
//! 2. The ADD: no pass wrote to the kernel during it (`weft_policy_apply_duration_seconds`
//!    counts every pass that did), its ingress verdict jumps to that chain, its named
//!    port is in the local named-port sets, pings from y/a (another node) are answered
//!    on both families, from y/c (the same node) not, and y/b reaches TCP 81, not 80.
//! 3. DEL and the object deleted: the verdicts and the chain go.
#![allow(clippy::unwrap_used)]

use serde_json::{json, Value};
use std::time::Duration;
use weft_e2e::netpol::{cni_args, network_policy, Client, PodId, PolicyCluster};
use weft_e2e::{binary, wait_until, Background, Netns};

/// The node the pod starts on (node-1).
const NODE: usize = 0;
const NAMESPACE: &str = "lg";
/// A change reaching node-1's kernel.
const ENFORCED: Duration = Duration::from_secs(10);
const APPLIED: &str = "weft_policy_apply_duration_seconds_count";

/// The one policy of the namespace: ingress from y's pod `a`, and from y's pod `b` on
/// the named port `serve-81-tcp` (upstream's pods name each served port so).
fn from_y() -> Value {
    let peer = |pod: &str| {
        json!({
            "namespaceSelector": {"matchLabels": {"ns": "y"}},
            "podSelector": {"matchLabels": {"pod": pod}},
        })
    };
    let named =
        json!({"from": [peer("b")], "ports": [{"protocol": "TCP", "port": "serve-81-tcp"}]});
    network_policy(
        NAMESPACE,
        "from-y",
        json!({"podSelector": {}, "ingress": [{"from": [peer("a")]}, named]}),
    )
}

/// `nft list <what> inet weft [name]` in node-1.
fn listed(cluster: &PolicyCluster, what: &[&str]) -> String {
    let node = &cluster.topology.nodes[NODE];
    let args = [&["list", what[0], "inet", "weft"], &what[1..]].concat();
    let out = node.netns.run("nft", &args);
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// node-1's `inet weft`, listed.
fn table(cluster: &PolicyCluster) -> String {
    listed(cluster, &["table"])
}

/// node-1's ingress verdict map, listed.
fn ingress_map(cluster: &PolicyCluster) -> String {
    listed(cluster, &["map", "np-ingress-pods"])
}

/// node-1's ingress profile chains.
fn ingress_chains(cluster: &PolicyCluster) -> Vec<String> {
    table(cluster)
        .lines()
        .filter_map(|line| line.trim().strip_prefix("chain np-i-"))
        .map(|rest| format!("np-i-{}", rest.trim_end_matches(" {")))
        .collect()
}

/// The chain `veth`'s ingress verdict jumps to, if any.
fn ingress_jump(cluster: &PolicyCluster, veth: &str) -> Option<String> {
    let map = ingress_map(cluster);
    let element = format!("\"{veth}\" : jump ");
    let rest = &map[map.find(&element)? + element.len()..];
    Some(rest.split([',', ' ', '\n', '}']).next()?.to_owned())
}

/// Creates `lg/name`'s object and waits until node-1's weftd has its entry (saved with
/// the inputs of the pass it ran); its UID.
fn create(cluster: &PolicyCluster, name: &str) -> String {
    let object = cluster.create_pod_object(NAMESPACE, name, NODE);
    let uid = object["metadata"]["uid"].as_str().unwrap().to_owned();
    let saved = cluster.topology.nodes[NODE]
        .state_dir()
        .join("kubernetes-policy.json");
    wait_until(
        &format!("node-1's weftd to have {name}'s entry"),
        ENFORCED,
        || std::fs::read_to_string(&saved).is_ok_and(|text| text.contains(&uid)),
    )
    .unwrap();
    uid
}

/// ADDs `lg/name` on node-1 as kubelet would: (container ID, host veth, addresses).
fn start(cluster: &mut PolicyCluster, name: &str, uid: &str) -> (String, String, [String; 2]) {
    let before = cluster.topology.nodes[NODE].weft_veths();
    let pod = cluster.topology.add_pod_in(
        NODE,
        Netns::new("lg"),
        Some(&cni_args(NAMESPACE, name, uid)),
    );
    let (id, v4, v6) = (
        pod.id.clone(),
        pod.v4.clone().unwrap(),
        pod.v6.clone().unwrap(),
    );
    let veth = cluster.topology.nodes[NODE]
        .weft_veths()
        .into_iter()
        .find(|v| !before.contains(v))
        .unwrap();
    cluster.report_running(NAMESPACE, name, NODE, &v4, &v6);
    (id, veth, [v4, v6])
}

/// Whether y's pod `from` gets an answer from each of `addresses`.
fn answered(cluster: &PolicyCluster, from: &str, addresses: &[String; 2]) -> [bool; 2] {
    let netns = cluster.netns_of(&Client::Pod(PodId::new("y", from)));
    [netns.ping(&addresses[0]), netns.ping(&addresses[1])]
}

#[test]
fn a_profile_chain_is_laid_at_its_entry_before_the_pods_add_and_goes_with_it() {
    let mut cluster = PolicyCluster::start();
    assert_eq!(
        cluster.model().pod(&PodId::new("y", "c")).unwrap().node,
        "node-1"
    );
    cluster.kubectl(&["create", "namespace", NAMESPACE]);
    cluster.kubectl_input(&["apply", "-f", "-"], &from_y());
    let before = ingress_chains(&cluster);

    // 1. The entry brings the chain.
    let uid = create(&cluster, "one");
    let laid = wait_until("one's profile chain before its ADD", ENFORCED, || {
        ingress_chains(&cluster).len() > before.len()
    });
    laid.unwrap_or_else(|e| panic!("{e}:\n{}", table(&cluster)));
    let chain = ingress_chains(&cluster)
        .into_iter()
        .find(|c| !before.contains(c))
        .unwrap();

    // 2. The ADD writes only the pod's elements; the policy holds.
    let node = &cluster.topology.nodes[NODE];
    let writes = node.metrics().unwrap().or_zero(APPLIED);
    let (id, veth, addresses) = start(&mut cluster, "one", &uid);
    let node = &cluster.topology.nodes[NODE];
    assert_eq!(
        node.metrics().unwrap().or_zero(APPLIED),
        writes,
        "a pass wrote to the kernel during one's ADD:\n{}",
        node.log()
    );
    assert_eq!(ingress_jump(&cluster, &veth), Some(chain.clone()));
    for address in &addresses {
        let element = format!("{address} . tcp . 81");
        assert!(table(&cluster).contains(&element), "{}", table(&cluster));
    }
    assert_eq!(answered(&cluster, "a", &addresses), [true, true]);
    assert_eq!(answered(&cluster, "c", &addresses), [false, false]);
    let netns = &cluster.topology.pods_of(NODE).last().unwrap().netns;
    let _server = Background::spawn(
        netns,
        &binary("netpol_agent").display().to_string(),
        &["serve", "80", "81"],
    );
    let targets: Vec<String> = ["81", "80"]
        .iter()
        .flat_map(|port| addresses.iter().map(move |a| format!("tcp/{a}/{port}")))
        .collect();
    cluster.wait_for_verdicts(&PodId::new("y", "b"), &targets, |t| t.ends_with("/81"));

    // 3. The pod gone, its verdicts and its chain go.
    node.del(&id, Some(netns)).expect_ok();
    let force = ["--grace-period=0", "--force"];
    cluster.kubectl(&[&["delete", "pod", "-n", NAMESPACE, "one"][..], &force].concat());
    wait_until("one's verdicts and chain to go", ENFORCED, || {
        !ingress_map(&cluster).contains(&veth) && !ingress_chains(&cluster).contains(&chain)
    })
    .unwrap_or_else(|e| panic!("{e}:\n{}", table(&cluster)));
}
