//! Change → enforcement: watched pairs in namespace `bp-watch` (a client on node i
//! probing a server on node i+1, IPv4 on even nodes and IPv6 on odd ones), servers
//! isolated by a standing policy, and a cycle of changes that each flip every pair's
//! verdict: create the `allow` policy, relabel each client out and back, update `allow`'s
//! selector away and back, relabel the namespace out and back, delete `allow`. Latency
//! of a pair = its write's response (kubectl returned) → the first probe of the new
//! verdict that held.

use crate::fleet::{Fleet, PodRef, PodSpec};
use crate::prober::Prober;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use weft_e2e::{binary, wait_until, Background};

pub(crate) const WATCH_NAMESPACE: &str = "bp-watch";
/// How long one change may take to show before it counts as not enforced.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause between changes: the machine settles, and a change's tail (other nodes'
/// passes) does not overlap the next one.
const BETWEEN_CHANGES: Duration = Duration::from_millis(300);

/// The kinds of changes, in cycle order, and the verdict each leaves.
const CYCLE: [(Change, bool); 8] = [
    (Change::PolicyCreate, true),
    (Change::PodLabel, false),
    (Change::PodLabel, true),
    (Change::PolicyUpdate, false),
    (Change::PolicyUpdate, true),
    (Change::NamespaceLabel, false),
    (Change::NamespaceLabel, true),
    (Change::PolicyDelete, false),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Change {
    PolicyCreate,
    PolicyUpdate,
    PolicyDelete,
    PodLabel,
    NamespaceLabel,
}

impl Change {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Change::PolicyCreate => "policy create",
            Change::PolicyUpdate => "policy update",
            Change::PolicyDelete => "policy delete",
            Change::PodLabel => "pod label",
            Change::NamespaceLabel => "namespace label",
        }
    }
}

/// One pair's sample: the change, whether the pair probes over IPv6, its latency
/// (None: not enforced within [`CHANGE_TIMEOUT`]).
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    pub(crate) change: Change,
    /// The verdict the change led to.
    pub(crate) allowed: bool,
    pub(crate) ipv6: bool,
    pub(crate) latency: Option<Duration>,
}

/// A watched pair: client pod, server pod, its prober and the server's agent.
struct Pair {
    client: PodRef,
    ipv6: bool,
    prober: Prober,
    _server: Background,
}

/// The watched namespace, pods and probers.
pub(crate) struct Watched {
    pairs: Vec<Pair>,
}

impl Watched {
    /// Creates `bp-watch` (label `watch=on`), the standing `isolate` policy, a client
    /// (`role=client, access=yes`) and a server (`role=server`, serving TCP 80) per node,
    /// and a prober per pair; waits until every pair is denied.
    pub(crate) fn start(fleet: &mut Fleet, nodes: usize) -> Watched {
        fleet.create_all(&[
            json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": WATCH_NAMESPACE, "labels": {"watch": "on"}}}),
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"name": "isolate", "namespace": WATCH_NAMESPACE},
                "spec": {"podSelector": {"matchLabels": {"role": "server"}},
                         "policyTypes": ["Ingress"]}}),
        ]);
        let mut specs = Vec::new();
        for i in 0..nodes {
            specs.push(watched_spec(
                &format!("server-{i}"),
                i,
                json!({"role": "server"}),
            ));
            specs.push(watched_spec(
                &format!("client-{i}"),
                i,
                json!({"role": "client", "access": "yes"}),
            ));
        }
        let pods = fleet.start_pods(&specs);
        let agent = binary("netpol_agent").display().to_string();
        let pairs = (0..nodes)
            .map(|i| {
                let server = &pods[2 * ((i + 1) % nodes)];
                let client = pods[2 * i + 1].clone();
                let ipv6 = i % 2 == 1;
                let sandbox = &fleet.topology.pods[server.index];
                let serving = Background::spawn(&sandbox.netns, &agent, &["serve", "80"]);
                wait_until("a watched server to serve", Duration::from_secs(10), || {
                    serving.output().starts_with("serving")
                })
                .unwrap();
                let addr = if ipv6 { &sandbox.v6 } else { &sandbox.v4 };
                let target = SocketAddr::new(addr.as_ref().unwrap().parse().unwrap(), 80);
                let client_ns = &fleet.topology.pods[client.index].netns;
                Pair {
                    client,
                    ipv6,
                    prober: Prober::start(client_ns, target),
                    _server: serving,
                }
            })
            .collect();
        let watched = Watched { pairs };
        watched.wait_all(false, Duration::from_secs(120));
        watched
    }

    /// Waits until every pair shows `verdict`; panics after `timeout`.
    fn wait_all(&self, verdict: bool, timeout: Duration) {
        wait_until(&format!("every watched pair at {verdict}"), timeout, || {
            self.pairs
                .iter()
                .all(|p| p.prober.verdict(5) == Some(verdict))
        })
        .unwrap();
    }

    /// Runs `changes` changes of the cycle, one after the other; a sample per pair.
    pub(crate) fn run(&self, fleet: &Fleet, changes: usize) -> Vec<Sample> {
        let mut samples = Vec::new();
        for (n, (change, verdict)) in CYCLE.iter().cycle().take(changes).enumerate() {
            std::thread::sleep(BETWEEN_CHANGES);
            let now = Instant::now();
            for pair in &self.pairs {
                pair.prober.forget_before(now);
            }
            let written = self.apply(fleet, *change, *verdict);
            for (pair, written) in self.pairs.iter().zip(written) {
                let latency = wait_flip(&pair.prober, *verdict)
                    .map(|at| at.saturating_duration_since(written));
                samples.push(Sample {
                    change: *change,
                    allowed: *verdict,
                    ipv6: pair.ipv6,
                    latency,
                });
            }
            let last = &samples[samples.len() - self.pairs.len()..];
            let worst = last.iter().map(|s| s.latency).max().flatten();
            eprintln!(
                "bench_policy: change {}/{changes} {} -> {}: worst pair {worst:?} ({} attempts)",
                n + 1,
                change.name(),
                if *verdict { "allowed" } else { "denied" },
                self.pairs[0].prober.attempts()
            );
            if last.iter().any(|s| s.latency.is_none()) {
                // A change that did not show leaves the cycle out of step: wait for it.
                self.wait_all(*verdict, CHANGE_TIMEOUT * 2);
            }
        }
        samples
    }

    /// Makes `change` towards `verdict`; the instant each pair's write returned.
    fn apply(&self, fleet: &Fleet, change: Change, verdict: bool) -> Vec<Instant> {
        let once = |args: &[&str], input: Option<&Value>| {
            match input {
                Some(input) => fleet.kubectl_input(args, input),
                None => fleet.kubectl(args),
            };
            vec![Instant::now(); self.pairs.len()]
        };
        let access = if verdict { "yes" } else { "no" };
        match change {
            Change::PolicyCreate => once(&["create", "-f", "-"], Some(&allow_policy("yes"))),
            Change::PolicyUpdate => once(
                &["replace", "-f", "-"],
                Some(&allow_policy(if verdict { "yes" } else { "never" })),
            ),
            Change::PolicyDelete => once(
                &["delete", "networkpolicy", "allow", "-n", WATCH_NAMESPACE],
                None,
            ),
            Change::NamespaceLabel => once(
                &[
                    "label",
                    "--overwrite",
                    "namespace",
                    WATCH_NAMESPACE,
                    &format!("watch={}", if verdict { "on" } else { "off" }),
                ],
                None,
            ),
            Change::PodLabel => self
                .pairs
                .iter()
                .map(|pair| {
                    fleet.kubectl(&[
                        "label",
                        "--overwrite",
                        "pod",
                        &pair.client.name,
                        "-n",
                        WATCH_NAMESPACE,
                        &format!("access={access}"),
                    ]);
                    Instant::now()
                })
                .collect(),
        }
    }
}

/// The `allow` policy: servers accept TCP 80 from pods labelled `access=<access>` in
/// namespaces labelled `watch=on`.
fn allow_policy(access: &str) -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "allow", "namespace": WATCH_NAMESPACE},
        "spec": {"podSelector": {"matchLabels": {"role": "server"}},
                 "policyTypes": ["Ingress"],
                 "ingress": [{"from": [{
                     "podSelector": {"matchLabels": {"access": access}},
                     "namespaceSelector": {"matchLabels": {"watch": "on"}}}],
                     "ports": [{"protocol": "TCP", "port": 80}]}]}})
}

fn watched_spec(name: &str, node: usize, labels: Value) -> PodSpec {
    PodSpec {
        namespace: WATCH_NAMESPACE.into(),
        name: name.into(),
        node,
        labels,
    }
}

/// Polls `prober` until its verdict has flipped to `verdict` for good; when.
fn wait_flip(prober: &Prober, verdict: bool) -> Option<Instant> {
    let deadline = Instant::now() + CHANGE_TIMEOUT;
    loop {
        if let Some(at) = prober.flip_after(verdict) {
            return Some(at);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
