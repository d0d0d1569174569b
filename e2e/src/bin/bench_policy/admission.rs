//! Pod ADD latency with the policy engine on and off, `bench_cni`'s method: the wall
//! time of one plugin call as a runtime makes it (a fresh process spawned inside the
//! node's namespace; pod namespaces made before timing), every pod of a set ADDed then
//! DELeted, once one call at a time and once 16 in flight, the subjects' order rotating
//! every round. Subjects, all the same weftd binary and plugin:
//!
//! - `policed`: the fleet's last node (Kubernetes mode, its share of the generated pods
//!   and policies: weftd's pass at ADD covers every pod of the node), pods of namespace `bp-add-pol`, which has
//!   policies selecting every pod, each pod's entry already in the WeftNodePolicy (a
//!   cluster's steady state: the controller saw the pod at scheduling);
//! - `unpoliced`: the same node, pods of `bp-add-free`, a namespace without policies;
//! - `standalone`: a weftd without `--kubeconfig` (no policy engine at all) and no
//!   other pod: an empty node, whose kernel tables are small;
//! - `same pods`: such a weftd holding as many other pods as the policed node (their
//!   veths, routes and guard elements): the node without NetworkPolicy, so the ratio to
//!   it is what policy costs, not what a populated node costs.
//!
//! Separately, `fresh`: a Pod object of `bp-add-pol` created and its sandbox ADDed at
//! once, so ADD waits for the pod's entry (docs/networkpolicy-design.md §3).

use crate::fleet::{cni_args, Fleet, PodSpec};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use weft_e2e::bench::{busy_cpu, children_cpu, proc_stat, turns};
use weft_e2e::{wait_until, Netns, Node, NodeOptions};

pub(crate) const POLICED: &str = "bp-add-pol";
const POLICED_LABEL: &str = "policed";
const UNPOLICED: &str = "bp-add-free";
/// Policies in the policed namespace, all selecting every pod there.
const POLICIES: usize = 5;

/// One subject: where its ADDs go and with which pod identities.
struct Subject {
    label: &'static str,
    /// None: the fleet's ADD node.
    standalone: Option<Node>,
    /// Pods the standalone weftd holds besides the subject's (kept for their netns).
    _filler: Vec<Netns>,
    node: usize,
    /// (namespace, name, uid) per pod; None for standalone (no identity).
    identities: Vec<Option<(String, String, String)>>,
    pods: Vec<Netns>,
}

/// Latencies per (subject label, scenario, command).
pub(crate) type Latencies = Vec<(&'static str, &'static str, &'static str, Vec<Duration>)>;

/// CPU time over a subject's ADD calls, summed over the rounds: where an ADD's cost
/// lands, which wall time alone does not say.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct AddCpu {
    pub(crate) calls: usize,
    /// The plugin processes (this process's reaped children).
    pub(crate) plugins: Duration,
    /// The subject's weftd.
    pub(crate) weftd: Duration,
    /// The whole machine, busy (every process, the kernel's softirqs; steal left out).
    pub(crate) machine: Duration,
}

impl AddCpu {
    /// The three readings now, for `weftd`.
    fn now(weftd: &Node) -> [Duration; 3] {
        let own = weftd
            .weftd_pid()
            .and_then(proc_stat)
            .map_or(0.0, |s| s.cpu_seconds());
        [children_cpu(), Duration::from_secs_f64(own), busy_cpu()]
    }

    fn add(&mut self, calls: usize, before: [Duration; 3], after: [Duration; 3]) {
        self.calls += calls;
        self.plugins += after[0].saturating_sub(before[0]);
        self.weftd += after[1].saturating_sub(before[1]);
        self.machine += after[2].saturating_sub(before[2]);
    }
}

/// Results: steady-state latencies, and the fresh-pod ADDs.
pub(crate) struct AddResults {
    pub(crate) latencies: Latencies,
    pub(crate) fresh: Vec<Duration>,
    /// weft_policy_admission_wait_seconds on the ADD node over the fresh ADDs: (count, sum).
    pub(crate) fresh_wait: (f64, f64),
    /// The same over the steady rounds, outcomes `ready` and `unisolated`.
    pub(crate) steady_waits: [(f64, f64); 2],
    /// CPU over the ADD calls per (scenario, subject label).
    pub(crate) cpu: BTreeMap<(&'static str, &'static str), AddCpu>,
}

const ADMISSION_WAIT: &str = "weft_policy_admission_wait_seconds";

/// `weft_policy_admission_wait_seconds{outcome}` of `node`: (count, sum).
fn admission_wait(node: &Node, outcome: &str) -> (f64, f64) {
    let labels = format!("{{outcome=\"{outcome}\"}}");
    node.metrics()
        .unwrap_or_default()
        .histogram(ADMISSION_WAIT, &labels)
}

fn since(after: (f64, f64), before: (f64, f64)) -> (f64, f64) {
    (after.0 - before.0, after.1 - before.1)
}

/// Runs `rounds` rounds of `pods` pods per set; `parallel` calls in flight in the second
/// scenario; then `fresh` fresh pods.
pub(crate) fn run(
    fleet: &Fleet,
    node: usize,
    pods: usize,
    parallel: usize,
    rounds: usize,
    fresh: usize,
) -> AddResults {
    fleet.create_all(&setup_objects());
    let policed = kube_subject(fleet, node, POLICED_LABEL, POLICED, pods);
    let unpoliced = kube_subject(fleet, node, "unpoliced", UNPOLICED, pods);
    let uids: Vec<String> = policed
        .identities
        .iter()
        .flatten()
        .map(|i| i.2.clone())
        .collect();
    wait_until(
        "the policed pods' entries",
        Duration::from_secs(120),
        || {
            let listed = fleet.node_policy_uids(node);
            uids.iter().all(|u| listed.contains(u))
        },
    )
    .unwrap();
    let standalone = standalone_subject("standalone", node, pods, 0);
    let populated = fleet.node(node).allocation_records().len();
    let same_pods = standalone_subject("same pods", node, pods, populated);
    let subjects = [policed, unpoliced, standalone, same_pods];
    let scenarios = [("sequential", 1), ("parallel", parallel)];
    let mut latencies: Latencies = Vec::new();
    let mut cpu: BTreeMap<(&'static str, &'static str), AddCpu> = BTreeMap::new();
    let outcomes = ["ready", "unisolated"];
    let before = outcomes.map(|o| admission_wait(fleet.node(node), o));
    for round in 0..rounds {
        for &(scenario, in_flight) in &scenarios {
            for s in turns(round, subjects.len()) {
                let subject = &subjects[s];
                eprintln!(
                    "bench_policy: ADD round {}/{rounds} {scenario} {}",
                    round + 1,
                    subject.label
                );
                let ids: Vec<String> = (0..pods)
                    .map(|i| format!("add-r{round}-{scenario}-{i}"))
                    .collect();
                let on = subject_node(fleet, subject);
                let jumps = ingress_jumps(on);
                let before = AddCpu::now(on);
                let added = timed_calls(fleet, subject, "ADD", &ids, in_flight);
                let after = AddCpu::now(on);
                cpu.entry((scenario, subject.label))
                    .or_default()
                    .add(ids.len(), before, after);
                latencies.push((subject.label, scenario, "ADD", added));
                if subject.label == POLICED_LABEL {
                    // Each ADD returned with its pod's verdicts in place.
                    assert_eq!(
                        ingress_jumps(on) - jumps,
                        pods,
                        "every policed pod's ingress verdict jumps to its profile"
                    );
                }
                let deleted = timed_calls(fleet, subject, "DEL", &ids, in_flight);
                latencies.push((subject.label, scenario, "DEL", deleted));
                settle(on, &subject.pods);
            }
        }
    }
    let steady_waits =
        [0, 1].map(|i| since(admission_wait(fleet.node(node), outcomes[i]), before[i]));
    let (fresh, fresh_wait) = fresh_adds(fleet, node, fresh);
    AddResults {
        latencies,
        fresh,
        fresh_wait,
        steady_waits,
        cpu,
    }
}

/// The two namespaces and the policed one's policies (each selects every pod: ingress
/// from pods of the namespace and from an ipBlock, on a port and on the pods' named port
/// `http`, egress to DNS).
fn setup_objects() -> Vec<Value> {
    let mut objects: Vec<Value> = [POLICED, UNPOLICED]
        .iter()
        .map(|n| json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}}))
        .collect();
    objects.extend((0..POLICIES).map(|j| {
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": format!("add-{j}"), "namespace": POLICED},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"],
                "ingress": [{"from": [{"podSelector": {}},
                    {"ipBlock": {"cidr": "10.255.0.0/16", "except": [format!("10.255.9.{}/32", j)]}}],
                    "ports": [{"protocol": "TCP", "port": 80 + j}, {"protocol": "TCP", "port": "http"}]}],
                "egress": [{"ports": [{"protocol": "UDP", "port": 53}]}]}})
    }));
    objects
}

/// A subject on a weftd of its own without `--kubeconfig`, holding `filler` other pods.
fn standalone_subject(label: &'static str, node: usize, pods: usize, filler: usize) -> Subject {
    let weftd = Node::start(NodeOptions {
        cooldown_seconds: 0,
        ..NodeOptions::default()
    });
    let filler: Vec<Netns> = (0..filler)
        .map(|i| {
            let netns = Netns::new("f");
            weftd.add(&format!("filler-{i}"), &netns).expect_ok();
            netns
        })
        .collect();
    Subject {
        label,
        node,
        standalone: Some(weftd),
        _filler: filler,
        identities: vec![None; pods],
        pods: (0..pods).map(|_| Netns::new("p")).collect(),
    }
}

/// A Kubernetes-mode subject: `pods` Pod objects in `namespace` bound to `node` (no
/// sandbox yet).
fn kube_subject(
    fleet: &Fleet,
    node: usize,
    label: &'static str,
    namespace: &str,
    pods: usize,
) -> Subject {
    let objects: Vec<Value> = (0..pods)
        .map(|i| {
            fleet.pod_object(&PodSpec {
                namespace: namespace.into(),
                name: format!("add-{i}"),
                node,
                labels: json!({"bench": "add"}),
            })
        })
        .collect();
    let identities = fleet
        .create_all(&objects)
        .iter()
        .map(|o| {
            let m = &o["metadata"];
            Some((
                m["namespace"].as_str().unwrap().to_owned(),
                m["name"].as_str().unwrap().to_owned(),
                m["uid"].as_str().unwrap().to_owned(),
            ))
        })
        .collect();
    Subject {
        label,
        node,
        standalone: None,
        _filler: Vec::new(),
        identities,
        pods: (0..pods).map(|_| Netns::new("p")).collect(),
    }
}

fn subject_node<'a>(fleet: &'a Fleet, subject: &'a Subject) -> &'a Node {
    subject
        .standalone
        .as_ref()
        .unwrap_or_else(|| fleet.node(subject.node))
}

/// `command` for every pod, `parallel` workers each taking the next pod when its call
/// has returned; each call's wall time.
fn timed_calls(
    fleet: &Fleet,
    subject: &Subject,
    command: &str,
    ids: &[String],
    parallel: usize,
) -> Vec<Duration> {
    let node = subject_node(fleet, subject);
    let next = AtomicUsize::new(0);
    let times = Mutex::new(Vec::with_capacity(ids.len()));
    std::thread::scope(|s| {
        for _ in 0..parallel.min(ids.len()) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(id) = ids.get(i) else { break };
                let args = subject.identities[i]
                    .as_ref()
                    .map(|(ns, name, uid)| cni_args(ns, name, uid));
                let began = Instant::now();
                let out = match (command, &args) {
                    ("ADD", Some(args)) => node.add_with_args(id, &subject.pods[i], args),
                    ("ADD", None) => node.add(id, &subject.pods[i]),
                    _ => node.del(id, Some(&subject.pods[i])),
                };
                let elapsed = began.elapsed();
                out.expect_ok();
                times.lock().unwrap().push(elapsed);
            });
        }
    });
    times.into_inner().unwrap()
}

/// The node's ingress verdicts that jump to a profile chain (0 without NetworkPolicy's
/// table).
fn ingress_jumps(node: &Node) -> usize {
    let listed = node
        .netns
        .run("nft", &["list", "map", "inet", "weft", "np-ingress-pods"]);
    String::from_utf8_lossy(&listed.stdout)
        .matches(": jump np-i-")
        .count()
}

/// Waits until weftd has removed the veths the DELs left (it does so in the background:
/// a pod's `eth0` goes with its host end) and their records, so the next set neither
/// pays for this one's teardown nor finds an `eth0` in its pods.
fn settle(node: &Node, pods: &[Netns]) {
    wait_until(
        "DEL's veths and records to go",
        Duration::from_secs(60),
        || {
            pods.iter()
                .all(|pod| !pod.ip(&["-o", "link", "show"]).contains(": eth0@"))
                && node
                    .allocation_records()
                    .iter()
                    .all(|r| !r.contains("add-r"))
        },
    )
    .unwrap_or_else(|e| eprintln!("bench_policy: {e}"));
}

/// `count` Pod objects of the policed namespace, each ADDed as soon as it is created.
fn fresh_adds(fleet: &Fleet, node_index: usize, count: usize) -> (Vec<Duration>, (f64, f64)) {
    let node = fleet.node(node_index);
    let before = admission_wait(node, "ready");
    let mut times = Vec::new();
    for i in 0..count {
        let spec = PodSpec {
            namespace: POLICED.into(),
            name: format!("fresh-{i}"),
            node: node_index,
            labels: json!({"bench": "fresh"}),
        };
        let created = fleet.create_all(&[fleet.pod_object(&spec)]);
        let uid = created[0]["metadata"]["uid"].as_str().unwrap().to_owned();
        let netns = Netns::new("p");
        let id = format!("fresh-{i}");
        let began = Instant::now();
        let out = node.add_with_args(&id, &netns, &cni_args(POLICED, &spec.name, &uid));
        times.push(began.elapsed());
        out.expect_ok();
        node.del(&id, Some(&netns)).expect_ok();
    }
    (times, since(admission_wait(node, "ready"), before))
}
