//! Before the first packet (docs/networkpolicy-design.md §3, §4.2): a pod that starts
//! under a deny policy never gets a packet through, measured with senders already
//! hammering its addresses when it starts.
//!
//! The truth table's cluster (three Kubernetes-mode namespace nodes, the real apiserver
//! and weft-controller, upstream's 9 pods). A new pod starts on node-1 in a namespace of
//! its own. Its addresses are known before its ADD: weft allocates the lowest free
//! address past its cooldown, else the next never used (README "Addresses"), and this
//! test never releases one, so the new pod gets one past the highest its node gave; the
//! ADD's result is checked against that prediction. Before the Pod object exists, two
//! pods flood both addresses with TCP SYNs, UDP datagrams and ICMP echo requests
//! (2,000 a second each): y/c on the same node and y/a on another (the node itself is
//! always allowed by the API, so it is no sender). Before the ADD, the test makes the
//! pod's namespace and taps it (`AF_PACKET`, `ETH_P_ALL`, no interface), so every packet
//! reaching any interface of it is counted from the first instant.
//!
//! - unpoliced, and an allow-all policy: every sender's packets of each kind and family
//!   arrive within the first milliseconds after ADD returns (the path works);
//! - default deny ingress existing before the pod: 0 packets from either sender (ND/MLD
//!   from the node counted apart), then an allowing policy lets them all in;
//! - the controller SIGKILLed (its only replica) and the pod created in a namespace with
//!   a policy: ADD returns after weftd's `--policy-wait-seconds` (2) with the pod
//!   isolated, 0 packets; a new controller replica writes the pod's entry: still 0; a
//!   policy allowing y/a lets y/a in, and y/c stays out;
//! - no controller again and node-1's weftd started afresh (no saved copy), so its span
//!   watches on the relay cannot list: a pod of a namespace without policy is admitted
//!   at once and every sender gets through; a pod under default deny waits
//!   `--policy-wait-seconds`, then starts isolated: 0 packets.
//!
//! Printed: ADD latencies, packets per sender, kind and family with the first arrival
//! against ADD's return, and weftd's `weft_policy_admission_wait_seconds` histogram.
#![allow(clippy::unwrap_used)]

#[path = "support/sniffer.rs"]
mod sniffer;

use serde_json::{json, Value};
use sniffer::{Seen, Sniffer};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};
use weft_e2e::netpol::{cni_args, network_policy, Client, Flood, PodId, PolicyCluster};
use weft_e2e::{wait_until, Netns, Topology};

/// The node the new pods start on (node-1).
const NODE: usize = 0;
/// Packets a second of each kind, per sender and address.
const PPS: u32 = 2_000;
/// The port the SYNs and datagrams go to (nothing listens in the new pods).
const PORT: u16 = 80;
/// How long a pod under deny is watched after its ADD returned.
const QUIET: Duration = Duration::from_secs(2);
/// weftd's `--policy-wait-seconds` default.
const POLICY_WAIT: Duration = Duration::from_secs(2);
/// An allowed sender's first packet of each kind and family after ADD returned.
const FIRST_ARRIVAL: Duration = Duration::from_millis(300);
/// A policy change reaching the pod's verdicts.
const ENFORCED: Duration = Duration::from_secs(10);
const KINDS: [&str; 3] = ["tcp", "udp", "icmp"];

/// A pod flooding the new pod.
#[derive(Debug, Clone)]
struct Sender {
    id: PodId,
    v4: IpAddr,
    v6: IpAddr,
}

impl Sender {
    fn of(cluster: &PolicyCluster, namespace: &str, name: &str) -> Sender {
        let id = PodId::new(namespace, name);
        let pod = cluster.model().pod(&id).unwrap();
        Sender {
            v4: pod.v4.unwrap().into(),
            v6: pod.v6.unwrap().into(),
            id,
        }
    }

    fn family_of(&self, addr: IpAddr) -> Option<&'static str> {
        match addr {
            a if a == self.v4 => Some("IPv4"),
            a if a == self.v6 => Some("IPv6"),
            _ => None,
        }
    }
}

/// What arrived from senders: (sender, family, kind) -> (packets, first seen).
type Arrivals = BTreeMap<(String, &'static str, String), (usize, Instant)>;

/// A new pod started under a flood, its namespace tapped since before its ADD.
struct Watched {
    sniffer: Sniffer,
    add_returned: Instant,
    add_took: Duration,
    floods: Vec<Flood>,
}

impl Watched {
    fn arrivals(&self, senders: &[Sender]) -> Arrivals {
        let mut arrivals = Arrivals::new();
        for seen in self.sniffer.seen() {
            for sender in senders {
                if let Some(family) = sender.family_of(seen.source) {
                    let key = (sender.id.to_string(), family, seen.protocol_name());
                    arrivals.entry(key).or_insert((0, seen.at)).0 += 1;
                }
            }
        }
        arrivals
    }

    /// Packets not from a sender, as "source kind/type": count.
    fn others(&self, senders: &[Sender]) -> BTreeMap<String, usize> {
        let mut others = BTreeMap::new();
        let from_sender = |s: &Seen| {
            senders
                .iter()
                .any(|sender| sender.family_of(s.source).is_some())
        };
        for seen in self.sniffer.seen().iter().filter(|s| !from_sender(s)) {
            let what = match (seen.is_nd_or_mld(), seen.icmp_type) {
                (true, Some(t)) => format!("{} ND/MLD type {t}", seen.source),
                _ => format!("{} {}", seen.source, seen.protocol_name()),
            };
            *others.entry(what).or_default() += 1;
        }
        others
    }

    /// The arrivals, one line each, first arrival against ADD's return.
    fn show(&self, senders: &[Sender]) -> String {
        let mut lines = Vec::new();
        for ((sender, family, kind), (count, first)) in self.arrivals(senders) {
            let after = signed_ms(first, self.add_returned);
            lines.push(format!(
                "  {sender:<4} {family} {kind:<4} {count:>6} packets, first {after:+.1} ms after ADD returned"
            ));
        }
        for (what, count) in self.others(senders) {
            lines.push(format!("  (other source) {what}: {count}"));
        }
        lines.join("\n")
    }

    fn assert_none_from(&self, senders: &[Sender], when: &str) {
        let arrivals = self.arrivals(senders);
        assert!(
            arrivals.is_empty(),
            "{when}: packets from denied senders reached the pod:\n{}",
            self.show(senders)
        );
    }

    /// Waits until every kind of packet of both families from each of `senders` has
    /// arrived; the time that took from `since`.
    fn wait_for_all_from(&self, senders: &[Sender], since: Instant, what: &str) -> Duration {
        wait_until(what, ENFORCED, || {
            self.arrivals(senders).len() == senders.len() * 2 * KINDS.len()
        })
        .unwrap_or_else(|e| panic!("{e}:\n{}", self.show(senders)));
        let arrivals = self.arrivals(senders);
        let last_first = arrivals.values().map(|(_, first)| *first).max().unwrap();
        last_first.saturating_duration_since(since)
    }
}

fn signed_ms(at: Instant, reference: Instant) -> f64 {
    match at.checked_duration_since(reference) {
        Some(after) => after.as_secs_f64() * 1000.0,
        None => -(reference - at).as_secs_f64() * 1000.0,
    }
}

/// The addresses node `node` gives next: one past the highest it gave, as no address was
/// ever released.
fn next_addresses(topology: &Topology, node: usize) -> (Ipv4Addr, Ipv6Addr) {
    let pods = topology.pods_of(node);
    let v4 = pods
        .iter()
        .map(|p| u32::from(p.v4.as_ref().unwrap().parse::<Ipv4Addr>().unwrap()))
        .max()
        .unwrap();
    let v6 = pods
        .iter()
        .map(|p| u128::from(p.v6.as_ref().unwrap().parse::<Ipv6Addr>().unwrap()))
        .max()
        .unwrap();
    (Ipv4Addr::from(v4 + 1), Ipv6Addr::from(v6 + 1))
}

/// Creates namespace `name` with `policies`, and waits until node-1's weftd has saved
/// an index naming it (when it has policies): what its gate judges new pods by.
fn namespace_with(cluster: &PolicyCluster, name: &str, policies: &[Value]) {
    cluster.kubectl(&["create", "namespace", name]);
    apply(cluster, policies);
    if policies.is_empty() {
        return;
    }
    let saved = cluster.topology.nodes[NODE]
        .state_dir()
        .join("kubernetes-policy.json");
    wait_until(
        &format!("node-1's weftd to know namespace {name} has policies"),
        ENFORCED,
        || {
            let Ok(text) = std::fs::read_to_string(&saved) else {
                return false;
            };
            let saved: Value = serde_json::from_str(&text).unwrap_or_default();
            let namespaces = saved["index"]["namespaces"].as_array().cloned();
            namespaces
                .unwrap_or_default()
                .iter()
                .any(|n| n["name"] == name)
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", cluster.topology.nodes[NODE].log()));
}

fn apply(cluster: &PolicyCluster, policies: &[Value]) {
    if !policies.is_empty() {
        cluster.kubectl_input(
            &["apply", "-f", "-"],
            &json!({"apiVersion": "v1", "kind": "List", "items": policies}),
        );
    }
}

/// One outcome's count in weftd's admission histogram on node-1.
fn admissions(cluster: &PolicyCluster, outcome: &str) -> f64 {
    let node = &cluster.topology.nodes[NODE];
    node.metrics().unwrap().or_zero(&format!(
        "weft_policy_admission_wait_seconds_count{{outcome=\"{outcome}\"}}"
    ))
}

/// Floods the addresses node-1 gives next from `senders`, taps a new namespace, creates
/// the Pod object `namespace/new` and ADDs it there as kubelet would; checks the
/// prediction and that weftd judged it with `outcome`.
fn start_under_flood(
    cluster: &mut PolicyCluster,
    namespace: &str,
    senders: &[Sender],
    outcome: &str,
) -> Watched {
    let (v4, v6) = next_addresses(&cluster.topology, NODE);
    let floods: Vec<Flood> = senders
        .iter()
        .map(|s| {
            let from = cluster.netns_of(&Client::Pod(s.id.clone()));
            Flood::start(from, &[v4.into(), v6.into()], PPS, PORT)
        })
        .collect();
    // The floods are under way, hitting addresses nobody has yet.
    std::thread::sleep(Duration::from_millis(300));
    let netns = Netns::new("fp");
    let sniffer = Sniffer::start(&netns);
    let object = cluster.create_pod_object(namespace, "new", NODE);
    let uid = object["metadata"]["uid"].as_str().unwrap().to_owned();
    let judged_before = admissions(cluster, outcome);
    let began = Instant::now();
    let pod = cluster
        .topology
        .add_pod_in(NODE, netns, Some(&cni_args(namespace, "new", &uid)));
    let add_returned = Instant::now();
    let given = (pod.v4.clone().unwrap(), pod.v6.clone().unwrap());
    assert_eq!(
        given,
        (v4.to_string(), v6.to_string()),
        "weft gave {namespace}/new other addresses than the flooded ones (README \"Addresses\" \
         says lowest free past its cooldown, else the next never used): the test measured nothing"
    );
    cluster.report_running(namespace, "new", NODE, &given.0, &given.1);
    assert_eq!(
        admissions(cluster, outcome),
        judged_before + 1.0,
        "{namespace}/new not judged {outcome}"
    );
    Watched {
        sniffer,
        add_returned,
        add_took: add_returned - began,
        floods,
    }
}

/// The path works: every sender's packets of each kind and family arrive within
/// [`FIRST_ARRIVAL`] of ADD's return.
fn assert_arrive_at_once(watched: &mut Watched, senders: &[Sender], case: &str) {
    watched.wait_for_all_from(senders, watched.add_returned, case);
    eprintln!(
        "{case}: ADD took {:?}\n{}",
        watched.add_took,
        watched.show(senders)
    );
    for (key, (_, first)) in watched.arrivals(senders) {
        let after = first.saturating_duration_since(watched.add_returned);
        assert!(
            after <= FIRST_ARRIVAL,
            "{case}: {key:?} first after {after:?}"
        );
    }
    assert!(watched.floods.iter_mut().all(Flood::running));
}

fn default_deny(namespace: &str) -> Value {
    network_policy(
        namespace,
        "deny-ingress",
        json!({"podSelector": {}, "policyTypes": ["Ingress"]}),
    )
}

/// A policy letting in pods of namespace y, those labelled `pod` only when given.
fn allow_from_y(namespace: &str, pod: Option<&str>) -> Value {
    let mut peer = json!({"namespaceSelector": {"matchLabels": {"ns": "y"}}});
    if let Some(pod) = pod {
        peer["podSelector"] = json!({"matchLabels": {"pod": pod}});
    }
    network_policy(
        namespace,
        "from-y",
        json!({"podSelector": {}, "ingress": [{"from": [peer]}]}),
    )
}

#[test]
fn a_pod_starting_under_deny_gets_no_packet_from_senders_hammering_it() {
    let began = Instant::now();
    let mut cluster = PolicyCluster::start();
    let same_node = Sender::of(&cluster, "y", "c");
    let other_node = Sender::of(&cluster, "y", "a");
    assert_eq!(cluster.model().pod(&same_node.id).unwrap().node, "node-1");
    assert_ne!(cluster.model().pod(&other_node.id).unwrap().node, "node-1");
    let senders = [same_node.clone(), other_node.clone()];

    // The path: unpoliced, then allowed by a policy.
    namespace_with(&cluster, "fp-free", &[]);
    let mut free = start_under_flood(&mut cluster, "fp-free", &senders, "unisolated");
    assert_arrive_at_once(&mut free, &senders, "unpoliced namespace");
    let mut add_latencies = vec![("unpoliced", free.add_took)];
    drop(free);
    let allow_all = network_policy(
        "fp-open",
        "allow-all",
        json!({"podSelector": {}, "ingress": [{}]}),
    );
    namespace_with(&cluster, "fp-open", &[allow_all]);
    let mut open = start_under_flood(&mut cluster, "fp-open", &senders, "ready");
    assert_arrive_at_once(&mut open, &senders, "allow-all policy");
    add_latencies.push(("allow-all", open.add_took));
    drop(open);

    // Deny before the pod: nothing, until a policy lets the senders in.
    namespace_with(&cluster, "fp-deny", &[default_deny("fp-deny")]);
    let denied = start_under_flood(&mut cluster, "fp-deny", &senders, "ready");
    std::thread::sleep(QUIET);
    denied.assert_none_from(&senders, "default deny ingress");
    eprintln!(
        "default deny ingress: ADD took {:?}; {QUIET:?} after it, 0 packets from senders; others:\n{}",
        denied.add_took,
        denied.show(&senders)
    );
    let allowed_at = Instant::now();
    apply(&cluster, &[allow_from_y("fp-deny", None)]);
    let enforced = denied.wait_for_all_from(&senders, allowed_at, "the senders let in");
    eprintln!("then allowed from namespace y: every kind from both senders within {enforced:?}");
    add_latencies.push(("default deny", denied.add_took));
    drop(denied);

    // The controller down: the pod waits, then starts isolated.
    namespace_with(&cluster, "fp-late", &[default_deny("fp-late")]);
    cluster.kube_mut().kill_controller(0);
    let late = start_under_flood(&mut cluster, "fp-late", &senders, "timeout");
    assert!(
        late.add_took >= POLICY_WAIT && late.add_took < POLICY_WAIT + Duration::from_secs(2),
        "ADD with the controller down took {:?}, not weftd's policy wait ({POLICY_WAIT:?}) and a little",
        late.add_took
    );
    let node = &cluster.topology.nodes[NODE];
    assert_eq!(
        node.metric("weft_policy_pods{state=\"pending\"}"),
        Some(1.0)
    );
    std::thread::sleep(QUIET);
    late.assert_none_from(&senders, "controller down");
    eprintln!(
        "controller down: ADD took {:?} (isolated), 0 packets from senders",
        late.add_took
    );
    let restarted = Instant::now();
    let controller = cluster.kube_mut().start_controller();
    let node = &cluster.topology.nodes[NODE];
    wait_until(
        "the new controller to write the pod's entry",
        Duration::from_secs(40),
        || node.metric("weft_policy_pods{state=\"pending\"}") == Some(0.0),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", cluster.kube().controller_logs()));
    let entry_after = restarted.elapsed();
    std::thread::sleep(Duration::from_secs(1));
    late.assert_none_from(&senders, "controller back, deny in force");
    let allowed_at = Instant::now();
    apply(&cluster, &[allow_from_y("fp-late", Some("a"))]);
    let enforced =
        late.wait_for_all_from(std::slice::from_ref(&other_node), allowed_at, "y/a let in");
    std::thread::sleep(Duration::from_secs(1));
    late.assert_none_from(std::slice::from_ref(&same_node), "only y/a allowed");
    eprintln!(
        "controller restarted: the pod's entry after {entry_after:?} (lease takeover included), \
         still 0 packets; y/a allowed: all its kinds within {enforced:?}, y/c still 0:\n{}",
        late.show(&senders)
    );
    add_latencies.push(("controller down", late.add_took));
    drop(late);

    // A weftd starting afresh (no saved copy) while no controller runs: its span watches
    // cannot list (the relay is the controllers'), its own WeftNodePolicy and the index
    // can (they are the apiserver's). A pod of a namespace without policy is admitted at
    // once; a pod of a policed namespace waits, then starts isolated.
    namespace_with(&cluster, "fp-fresh-deny", &[default_deny("fp-fresh-deny")]);
    namespace_with(&cluster, "fp-fresh", &[]);
    cluster.kube_mut().kill_controller(controller);
    let node = &mut cluster.topology.nodes[NODE];
    node.kill9();
    std::fs::remove_file(node.state_dir().join("kubernetes-policy.json")).unwrap();
    cluster.topology.restart_weftd(NODE);
    let mut fresh = start_under_flood(&mut cluster, "fp-fresh", &senders, "unisolated");
    assert!(
        fresh.add_took < POLICY_WAIT,
        "a fresh weftd without the relay took {:?} to ADD a pod no policy selects",
        fresh.add_took
    );
    assert_arrive_at_once(
        &mut fresh,
        &senders,
        "fresh weftd, no relay, unpoliced namespace",
    );
    add_latencies.push(("fresh weftd, no relay, unpoliced", fresh.add_took));
    drop(fresh);
    let fresh_denied = start_under_flood(&mut cluster, "fp-fresh-deny", &senders, "timeout");
    std::thread::sleep(QUIET);
    fresh_denied.assert_none_from(&senders, "fresh weftd, no relay, policed namespace");
    eprintln!(
        "fresh weftd, no relay: policed namespace's pod ADD took {:?} (isolated), 0 packets",
        fresh_denied.add_took
    );
    add_latencies.push(("fresh weftd, no relay, policed", fresh_denied.add_took));
    drop(fresh_denied);

    let metrics = cluster.topology.nodes[NODE].metrics().unwrap();
    let histogram: Vec<&str> = metrics
        .0
        .lines()
        .filter(|l| l.starts_with("weft_policy_admission_wait_seconds"))
        .collect();
    eprintln!(
        "ADD latencies: {add_latencies:?}\nnode-1's admission waits:\n{}\nrun time {:?}",
        histogram.join("\n"),
        began.elapsed()
    );
}
