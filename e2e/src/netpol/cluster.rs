//! The truth table's cluster: three namespace nodes in Kubernetes mode (real apiserver,
//! weft-controller, weftd with `--kubeconfig`) and upstream's model of 9 pods
//! (`test/e2e/network/netpol/model.go`): namespaces x, y, z labelled `ns=<name>`, pods
//! a, b, c in each labelled `pod=<name>`, every pod serving TCP and UDP on 80 and 81 from
//! its own namespace with [`netpol_agent`](../../bin/netpol_agent.rs).
//!
//! The harness plays kubelet for each pod, in kubelet's order: the Pod object (labels,
//! `spec.nodeName`, one container per port named `cont-80-tcp` with its port named
//! `serve-80-tcp`, as upstream's model names them) is created, then the sandbox gets its
//! network from a real CNI ADD through weft with the runtime's `CNI_ARGS`
//! (`K8S_POD_NAMESPACE`, `K8S_POD_NAME`, `K8S_POD_UID` of that very object), then
//! `status.podIPs`, `podIP`, `phase: Running` and `Ready` are written through the status
//! subresource. The pod of namespace n and name p (0-based) runs on node (n + p) mod 3, so
//! every node holds one pod of each namespace and one of each name: each pair is tested
//! on one node and across nodes.
//!
//! Each node also probes every pod from its own namespace, as kubelet's probes do. The
//! oracle places a node, per family, at the source address its routing picks towards a
//! pod on another node (`ip route get`): what that pod's policies see. For IPv4 that is
//! the node's address on weft-vxlan, inside the pod network, so an ipBlock of the pod
//! network lets other nodes in.

use super::matrix::{all_probes, compare, Client, Comparison, Matrix, Probe, PROBED_PORTS};
use super::model::{ContainerPort, Labels, Model, Namespace, Node, Pod, PodId};
use crate::{
    binary, wait_until, Background, KubeCluster, Netns, Topology, TopologyOptions, Underlay,
};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// The model's namespaces.
pub const NAMESPACES: [&str; 3] = ["x", "y", "z"];
/// The model's pod names, in every namespace.
pub const POD_NAMES: [&str; 3] = ["a", "b", "c"];
/// How long one probe waits for its answer.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(300);
/// The pause between two rounds of probes while waiting for a table: a round takes ~70 ms
/// when every probe is allowed (~350 ms with denied ones), and back-to-back rounds would
/// take the CPU the enforcement being waited for needs (2-core machines).
const BETWEEN_ROUNDS: Duration = Duration::from_millis(50);
/// The image the Pod objects name; nothing pulls it (the harness is the runtime).
const IMAGE: &str = "registry.k8s.io/e2e-test-images/agnhost:2.53";

/// One pod of the model: its identity, its index in `Topology::pods` and its server.
#[derive(Debug)]
struct ClusterPod {
    id: PodId,
    index: usize,
    server: Option<Background>,
}

/// The running cluster. Field order is drop order: the servers stop before their
/// namespaces go.
#[derive(Debug)]
pub struct PolicyCluster {
    pods: Vec<ClusterPod>,
    model: Model,
    /// The nodes, the control plane and the pods' namespaces.
    pub topology: Topology,
}

impl PolicyCluster {
    /// Builds the topology and the 9 pods, each serving, weftd's span watches through
    /// the controllers' policy relay (as the chart installs it); panics (after cleaning
    /// up) when anything fails.
    pub fn start() -> PolicyCluster {
        PolicyCluster::start_with(true)
    }

    /// As [`PolicyCluster::start`], weftd's span watches on the apiserver.
    pub fn start_watching_apiserver() -> PolicyCluster {
        PolicyCluster::start_with(false)
    }

    fn start_with(policy_relay: bool) -> PolicyCluster {
        let topology = Topology::start(TopologyOptions {
            nodes: 3,
            mode: "dual",
            ipv6_routing: "direct",
            underlay: Underlay::Dual,
            kubernetes: true,
            policy_relay,
            ..TopologyOptions::default()
        });
        topology.wait_converged(Duration::from_secs(30));
        if policy_relay {
            // Each weftd's four span watches are on the relay, none on the apiserver.
            let kube = topology.kube.as_ref().expect("Kubernetes mode");
            let watches = 2.0 * topology.nodes.len() as f64;
            wait_until(
                "every weftd's span watches on the relay",
                Duration::from_secs(30),
                || {
                    let metrics = kube.controller_metrics(0);
                    ["weftpolicies", "weftaddressgroups"]
                        .iter()
                        .all(|resource| {
                            metrics.get(&format!("weft_relay_watches{{resource=\"{resource}\"}}"))
                                == Some(watches)
                        })
                },
            )
            .unwrap_or_else(|e| panic!("{e}\n{}", kube.controller_logs()));
        }
        let mut cluster = PolicyCluster {
            pods: Vec::new(),
            model: Model::default(),
            topology,
        };
        cluster.create_namespaces();
        for (n, namespace) in NAMESPACES.iter().enumerate() {
            for (p, name) in POD_NAMES.iter().enumerate() {
                cluster.start_pod(namespace, name, (n + p) % 3);
            }
        }
        cluster.locate_nodes();
        for server in cluster.pods.iter().filter_map(|p| p.server.as_ref()) {
            wait_until("a pod's agent to serve", Duration::from_secs(10), || {
                server.output().starts_with("serving")
            })
            .unwrap_or_else(|e| panic!("{e}: {}", server.output()));
        }
        cluster
    }

    /// Puts each node in the model at the source addresses it sends to other nodes' pods
    /// from.
    fn locate_nodes(&mut self) {
        self.model.nodes = self
            .topology
            .nodes
            .iter()
            .map(|node| {
                let remote = self.model.pods.iter().find(|p| p.node != node.name());
                let remote = remote.expect("a pod on another node");
                let v4 = remote
                    .v4
                    .map(|a| source_towards(&node.netns, &a.to_string()));
                let v6 = remote
                    .v6
                    .map(|a| source_towards(&node.netns, &a.to_string()));
                Node {
                    name: node.name().to_owned(),
                    v4: v4.map(|a| a.parse().unwrap()),
                    v6: v6.map(|a| a.parse().unwrap()),
                }
            })
            .collect();
    }

    /// Nodes, namespaces and pods as the apiserver holds them.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The model, for a change the apiserver is told of too.
    pub(super) fn model_mut(&mut self) -> &mut Model {
        &mut self.model
    }

    /// The control plane and controller.
    pub fn kube(&self) -> &KubeCluster {
        self.topology.kube.as_ref().expect("Kubernetes mode")
    }

    /// The control plane and controllers, to stop and start them.
    pub fn kube_mut(&mut self) -> &mut KubeCluster {
        self.topology.kube.as_mut().expect("Kubernetes mode")
    }

    /// `kubectl ARGS` as the cluster's admin, asserting success; stdout.
    pub fn kubectl(&self, args: &[&str]) -> String {
        self.kube().control_plane.kubectl_ok(args)
    }

    /// `kubectl ARGS` with `input` on stdin, asserting success; stdout.
    pub fn kubectl_input(&self, args: &[&str], input: &Value) -> String {
        self.kube()
            .control_plane
            .kubectl_input_ok(args, &input.to_string())
    }

    /// Creates x, y, z and reads their labels back (the apiserver adds
    /// `kubernetes.io/metadata.name`).
    fn create_namespaces(&mut self) {
        let items: Vec<Value> = NAMESPACES
            .iter()
            .map(|ns| {
                json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": ns, "labels": {"ns": ns}}})
            })
            .collect();
        self.kubectl_input(
            &["create", "-f", "-"],
            &json!({"apiVersion": "v1", "kind": "List", "items": items}),
        );
        let mut get = vec!["get", "namespaces", "-o", "json"];
        get.extend(NAMESPACES);
        let created: Value = serde_json::from_str(&self.kubectl(&get)).unwrap();
        self.model.namespaces = created["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|ns| Namespace {
                name: ns["metadata"]["name"].as_str().unwrap().to_owned(),
                labels: labels_of(&ns["metadata"]["labels"]),
            })
            .collect();
    }

    /// Creates the Pod object, ADDs the sandbox on node `node` with its identity, writes
    /// its status and starts its server.
    fn start_pod(&mut self, namespace: &str, name: &str, node: usize) {
        let object = self.create_pod_object(namespace, name, node);
        let uid = object["metadata"]["uid"].as_str().unwrap();
        let cni_args = cni_args(namespace, name, uid);
        let pod = self.topology.add_pod_with_args(node, Some(&cni_args));
        let (v4, v6) = (pod.v4.clone().unwrap(), pod.v6.clone().unwrap());
        let server = Background::spawn(
            &pod.netns,
            binary("netpol_agent").to_str().unwrap(),
            &["serve", "80", "81"],
        );
        let index = self.topology.pods.len() - 1;
        self.report_running(namespace, name, node, &v4, &v6);
        let id = PodId::new(namespace, name);
        self.model.pods.push(Pod {
            id: id.clone(),
            node: self.topology.nodes[node].name().to_owned(),
            labels: labels_of(&object["metadata"]["labels"]),
            v4: Some(v4.parse().unwrap()),
            v6: Some(v6.parse().unwrap()),
            ports: container_ports(&object),
        });
        self.pods.push(ClusterPod {
            id,
            index,
            server: Some(server),
        });
    }

    /// Creates the Pod object `namespace/name` as upstream's model declares it (label
    /// `pod=<name>`, a container per probed port), bound to node `node`; the object as
    /// the apiserver returned it (with its UID). The model does not learn of it.
    pub fn create_pod_object(&self, namespace: &str, name: &str, node: usize) -> Value {
        let node_name = self.topology.nodes[node].name();
        let object = self.kubectl_input(
            &["create", "-f", "-", "-o", "json"],
            &pod_object(namespace, name, node_name),
        );
        serde_json::from_str(&object).unwrap()
    }

    /// Writes pod `namespace/name`'s status as kubelet does once its sandbox has its
    /// addresses: `Running`, `Ready`, `podIP(s)`, `hostIP`.
    pub fn report_running(&self, namespace: &str, name: &str, node: usize, v4: &str, v6: &str) {
        let host_ip = self.topology.underlay_v4(node).unwrap();
        let status = running_status(&host_ip, v4, v6);
        let plane = &self.kube().control_plane;
        plane.patch_status("pod", Some(namespace), name, &status);
    }

    /// Stops pod `id`'s server: every probe to it fails from then on (the harness's check
    /// that a refused probe shows in the table).
    pub fn stop_server(&mut self, id: &PodId) {
        let pod = self.pods.iter_mut().find(|p| p.id == *id).unwrap();
        pod.server = None;
    }

    /// Every probe of the table, observed: one agent per client (9 pods, 3 nodes), all at
    /// once, each trying its 72 targets at once with [`PROBE_TIMEOUT`], so that a round
    /// with denied probes takes one timeout, not one per wave: a round is how finely a
    /// change's time to enforcement is seen.
    pub fn probe_matrix(&self) -> Matrix {
        let probes = all_probes(&self.model);
        let mut clients: Vec<&Client> = probes.iter().map(|p| &p.from).collect();
        clients.dedup();
        std::thread::scope(|s| {
            let rows: Vec<_> = clients
                .into_iter()
                .map(|client| {
                    let row: Vec<&Probe> = probes.iter().filter(|p| p.from == *client).collect();
                    s.spawn(move || self.probe_row(client, &row))
                })
                .collect();
            rows.into_iter()
                .flat_map(|row| row.join().unwrap())
                .collect()
        })
    }

    /// The network namespace of `client`: a pod's, or a node's.
    pub fn netns_of(&self, client: &Client) -> &Netns {
        match client {
            Client::Pod(id) => {
                let pod = self.pods.iter().find(|p| p.id == *id).unwrap();
                &self.topology.pods[pod.index].netns
            }
            Client::Node(name) => {
                &self
                    .topology
                    .nodes
                    .iter()
                    .find(|n| n.name() == name)
                    .unwrap()
                    .netns
            }
        }
    }

    /// Waits (10 s at most) until every one of `targets` (`tcp|udp/ADDR/PORT`), probed
    /// from pod `from` with 300 ms each, answers as `expected` says of it; panics with
    /// the last verdicts otherwise.
    pub fn wait_for_verdicts(
        &self,
        from: &PodId,
        targets: &[String],
        expected: impl Fn(&str) -> bool,
    ) {
        let client = Client::Pod(from.clone());
        let mut last = BTreeMap::new();
        wait_until("the verdicts", Duration::from_secs(10), || {
            last = self.probe(&client, targets, Duration::from_millis(300));
            last.iter().all(|(t, ok)| *ok == expected(t))
        })
        .unwrap_or_else(|e| panic!("{e}: {last:?}"));
    }

    /// Deletes every node's conntrack entries of flows to `port` (both families, TCP
    /// and UDP), so the next probes of it are new flows. An established flow outlives a
    /// policy that no longer allows it (docs/networkpolicy-design.md, "Replies via
    /// conntrack"), and a UDP probe's flow is its 5-tuple: a later probe that picks the
    /// same ephemeral source port within the entry's 30 s (`nf_conntrack_udp_timeout`)
    /// continues the flow a probe before the policy opened.
    pub fn forget_flows_to(&self, port: u16) {
        let port = port.to_string();
        for node in &self.topology.nodes {
            for (family, protocol) in [
                ("ipv4", "tcp"),
                ("ipv4", "udp"),
                ("ipv6", "tcp"),
                ("ipv6", "udp"),
            ] {
                let out = node.netns.run(
                    "conntrack",
                    &["-D", "-f", family, "-p", protocol, "--orig-port-dst", &port],
                );
                // conntrack exits 1 when nothing matched, saying so like any count.
                let said = String::from_utf8_lossy(&out.stderr);
                assert!(
                    said.contains("flow entries have been deleted"),
                    "conntrack -D in {}: {out:?}",
                    node.name()
                );
            }
        }
    }

    /// One probe of each of `targets` from `client`, all at once, each given `timeout`:
    /// target → answered.
    fn probe(
        &self,
        client: &Client,
        targets: &[String],
        timeout: Duration,
    ) -> BTreeMap<String, bool> {
        let timeout = timeout.as_millis().to_string();
        let in_flight = targets.len().to_string();
        let mut args = vec!["probe", "--timeout-ms", &timeout, "--in-flight", &in_flight];
        args.extend(targets.iter().map(String::as_str));
        let agent = binary("netpol_agent");
        let out = self.netns_of(client).run(agent.to_str().unwrap(), &args);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "netpol_agent probe in {client}: {}{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
            .lines()
            .filter_map(|line| line.rsplit_once(' '))
            .map(|(target, verdict)| (target.to_owned(), verdict == "ok"))
            .collect()
    }

    /// Runs the agent in `client`'s namespace on `row`; verdicts of the targets it
    /// reported.
    fn probe_row(&self, client: &Client, row: &[&Probe]) -> Vec<(Probe, bool)> {
        let by_target: HashMap<String, &Probe> = row.iter().map(|p| (self.target(p), *p)).collect();
        let targets: Vec<String> = by_target.keys().cloned().collect();
        self.probe(client, &targets, PROBE_TIMEOUT)
            .into_iter()
            .filter_map(|(target, ok)| Some(((*by_target.get(&target)?).clone(), ok)))
            .collect()
    }

    /// The agent's target for `probe`: `tcp|udp/ADDR/PORT`.
    fn target(&self, probe: &Probe) -> String {
        let to = self.model.pod(&probe.to).unwrap();
        format!(
            "{}/{}/{}",
            probe.port.protocol.lower(),
            to.addr(probe.family).unwrap(),
            probe.port.port
        )
    }

    /// Probes the table until it equals `expected`: the time from the call to the end of
    /// the first matching round (so within one round plus [`BETWEEN_ROUNDS`] of the
    /// change), or the last table's differences once `timeout` has passed.
    pub fn wait_for_matrix(
        &self,
        expected: &Matrix,
        timeout: Duration,
    ) -> Result<Duration, Box<Comparison>> {
        let began = Instant::now();
        loop {
            let comparison = compare(&self.probe_matrix(), expected);
            if comparison.matches() {
                return Ok(began.elapsed());
            }
            if began.elapsed() >= timeout {
                return Err(Box::new(comparison));
            }
            std::thread::sleep(BETWEEN_ROUNDS);
        }
    }
}

/// A Pod object of the model: labels `pod=<name>`, bound to `node`, one container per
/// probed port as upstream's model declares them.
fn pod_object(namespace: &str, name: &str, node: &str) -> Value {
    let containers: Vec<Value> = PROBED_PORTS
        .iter()
        .map(|p| {
            json!({"name": format!("cont-{}-{}", p.port, p.protocol.lower()), "image": IMAGE,
                "ports": [{"name": format!("serve-{}-{}", p.port, p.protocol.lower()),
                    "containerPort": p.port, "protocol": p.protocol.api_name()}]})
        })
        .collect();
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"pod": name}},
        "spec": {"nodeName": node, "containers": containers}})
}

/// `CNI_ARGS` as a runtime passes them for a Kubernetes pod.
pub fn cni_args(namespace: &str, name: &str, uid: &str) -> String {
    format!("K8S_POD_NAMESPACE={namespace};K8S_POD_NAME={name};K8S_POD_UID={uid}")
}

/// The source address `netns` picks for `addr` (`ip route get`'s `src`).
fn source_towards(netns: &Netns, addr: &str) -> String {
    let route = netns.ip(&["-o", "route", "get", addr]);
    let mut words = route.split_whitespace().skip_while(|w| *w != "src");
    words
        .nth(1)
        .unwrap_or_else(|| panic!("no source address in {route:?}"))
        .to_owned()
}

/// The named container ports of a Pod object.
fn container_ports(object: &Value) -> Vec<ContainerPort> {
    let containers = object["spec"]["containers"].as_array().unwrap();
    containers
        .iter()
        .flat_map(|c| c["ports"].as_array().unwrap())
        .map(|p| {
            let protocol = PROBED_PORTS
                .iter()
                .map(|probed| probed.protocol)
                .find(|proto| p["protocol"] == proto.api_name())
                .unwrap();
            ContainerPort {
                name: p["name"].as_str().unwrap().to_owned(),
                protocol,
                port: p["containerPort"].as_u64().unwrap().try_into().unwrap(),
            }
        })
        .collect()
}

fn labels_of(labels: &Value) -> Labels {
    labels
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
        .collect()
}

/// A pod's status as kubelet writes it once the sandbox has its addresses: `Running`,
/// `Ready`, `podIP(s)` (IPv4 first), `hostIP`.
pub fn running_status(host_ip: &str, v4: &str, v6: &str) -> Value {
    json!({"phase": "Running", "hostIP": host_ip, "podIP": v4,
        "podIPs": [{"ip": v4}, {"ip": v6}],
        "conditions": [{"type": "Ready", "status": "True"}]})
}
