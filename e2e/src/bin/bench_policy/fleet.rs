//! The benchmark's cluster: Kubernetes-mode namespace nodes (real apiserver,
//! weft-controller, weftd with `--kubeconfig`) and many pods, each set up as kubelet
//! would: the Pod object (bound to its node), then a real CNI ADD through weft with the
//! runtime's `CNI_ARGS`, then `status.podIPs` and `Ready` through the status subresource.
//! Most pods are only a network namespace and a veth: nothing runs in them.

use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use weft_e2e::{Netns, Node, Pod, Topology, TopologyOptions, Underlay};

/// The image the Pod objects name; nothing pulls it (the harness is the runtime).
const IMAGE: &str = "registry.k8s.io/pause:3.10";
/// Concurrent `kubectl` status writes while loading pods (2 cores: more only queue).
const STATUS_WRITERS: usize = 4;
/// Pod objects per `kubectl create` call.
const CREATE_BATCH: usize = 100;

/// A pod the harness started: its Pod object's identity and its sandbox.
#[derive(Debug, Clone)]
pub(crate) struct PodRef {
    pub(crate) namespace: String,
    pub(crate) name: String,
    /// Index into `Topology::pods`.
    pub(crate) index: usize,
}

/// What a Pod object says besides its name.
#[derive(Debug, Clone)]
pub(crate) struct PodSpec {
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) node: usize,
    pub(crate) labels: Value,
}

/// The running cluster.
#[derive(Debug)]
pub(crate) struct Fleet {
    pub(crate) topology: Topology,
}

impl Fleet {
    /// `nodes` Kubernetes-mode nodes, dual-stack, IPv6 routed directly between nodes,
    /// each weftd with a 0 s address cooldown (the ADD benchmark reuses addresses).
    pub(crate) fn start(nodes: usize) -> Fleet {
        let mut topology = Topology::start(TopologyOptions {
            nodes,
            mode: "dual",
            ipv6_routing: "direct",
            underlay: Underlay::Dual,
            kubernetes: true,
            ..TopologyOptions::default()
        });
        for node in &mut topology.nodes {
            node.options_mut().cooldown_seconds = 0;
            node.restart();
        }
        topology.wait_converged(Duration::from_secs(60));
        Fleet { topology }
    }

    /// `kubectl ARGS` as the cluster's admin, asserting success; stdout.
    pub(crate) fn kubectl(&self, args: &[&str]) -> String {
        self.kube_plane().kubectl_ok(args)
    }

    /// `kubectl ARGS` with `input` on stdin, asserting success; stdout.
    pub(crate) fn kubectl_input(&self, args: &[&str], input: &Value) -> String {
        self.kube_plane().kubectl_input_ok(args, &input.to_string())
    }

    pub(crate) fn kube_plane(&self) -> &weft_e2e::ControlPlane {
        &self
            .topology
            .kube
            .as_ref()
            .expect("Kubernetes mode")
            .control_plane
    }

    pub(crate) fn node(&self, i: usize) -> &Node {
        &self.topology.nodes[i]
    }

    /// Creates `objects` (any kinds) in batches; the created objects.
    pub(crate) fn create_all(&self, objects: &[Value]) -> Vec<Value> {
        objects
            .chunks(CREATE_BATCH)
            .flat_map(|batch| {
                let list = json!({"apiVersion": "v1", "kind": "List", "items": batch});
                let out = self.kubectl_input(&["create", "-f", "-", "-o", "json"], &list);
                // kubectl prints a List, or one object after the other.
                serde_json::Deserializer::from_str(&out)
                    .into_iter::<Value>()
                    .flat_map(|created| match created.unwrap() {
                        Value::Object(o) if o.contains_key("items") => {
                            o["items"].as_array().unwrap().clone()
                        }
                        object => vec![object],
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Starts every pod of `specs` as kubelet would: Pod objects first (in batches),
    /// then the ADDs (one worker per node), then the status writes. The pods, in the
    /// order of `specs`.
    pub(crate) fn start_pods(&mut self, specs: &[PodSpec]) -> Vec<PodRef> {
        let objects: Vec<Value> = specs.iter().map(|s| self.pod_object(s)).collect();
        let uids: Vec<String> = self
            .create_all(&objects)
            .iter()
            .map(|o| o["metadata"]["uid"].as_str().unwrap().to_owned())
            .collect();
        let sandboxes = self.add_sandboxes(specs, &uids);
        let first = self.topology.pods.len();
        self.topology.pods.extend(sandboxes);
        let refs: Vec<PodRef> = specs
            .iter()
            .enumerate()
            .map(|(i, spec)| PodRef {
                namespace: spec.namespace.clone(),
                name: spec.name.clone(),
                index: first + i,
            })
            .collect();
        self.write_statuses(&refs);
        refs
    }

    /// The Pod object of `spec`: one container serving TCP 80 and 8080, the latter named
    /// `http` (the named-port policies' port).
    pub(crate) fn pod_object(&self, spec: &PodSpec) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": spec.name, "namespace": spec.namespace, "labels": spec.labels},
            "spec": {"nodeName": self.node(spec.node).name(), "containers": [{
                "name": "main", "image": IMAGE,
                "ports": [{"containerPort": 80, "protocol": "TCP"},
                          {"name": "http", "containerPort": 8080, "protocol": "TCP"}]}]}})
    }

    /// ADDs every sandbox of `specs`, one worker per node in parallel.
    fn add_sandboxes(&self, specs: &[PodSpec], uids: &[String]) -> Vec<Pod> {
        let slots: Vec<Mutex<Option<Pod>>> = specs.iter().map(|_| Mutex::new(None)).collect();
        let next = AtomicUsize::new(0);
        let workers = self.topology.nodes.len().max(1);
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(spec) = specs.get(i) else { break };
                    let pod = self.add_sandbox(spec, &uids[i]);
                    *slots[i].lock().unwrap() = Some(pod);
                });
            }
        });
        slots
            .into_iter()
            .map(|s| s.into_inner().unwrap().unwrap())
            .collect()
    }

    /// One sandbox: a fresh network namespace and an ADD with the pod's identity.
    pub(crate) fn add_sandbox(&self, spec: &PodSpec, uid: &str) -> Pod {
        let netns = Netns::new("p");
        let id = format!("{}-{}", spec.namespace, spec.name);
        let args = cni_args(&spec.namespace, &spec.name, uid);
        let result = self
            .node(spec.node)
            .add_with_args(&id, &netns, &args)
            .expect_ok();
        let (v4, v6) = addresses(&result);
        Pod {
            netns,
            node: spec.node,
            id,
            v4,
            v6,
            result,
        }
    }

    /// Writes each pod's addresses, `Running` and `Ready` through the status subresource.
    fn write_statuses(&self, refs: &[PodRef]) {
        let next = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..STATUS_WRITERS {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(pod) = refs.get(i) else { break };
                    self.write_status(pod);
                });
            }
        });
    }

    fn write_status(&self, pod: &PodRef) {
        let sandbox = &self.topology.pods[pod.index];
        let (v4, v6) = (sandbox.v4.clone().unwrap(), sandbox.v6.clone().unwrap());
        let host_ip = self.topology.underlay_v4(sandbox.node).unwrap();
        let status = weft_e2e::netpol::running_status(&host_ip, &v4, &v6);
        let plane = self.kube_plane();
        plane.patch_status("pod", Some(&pod.namespace), &pod.name, &status);
    }

    /// The pod UIDs node `i`'s WeftNodePolicy lists.
    pub(crate) fn node_policy_uids(&self, i: usize) -> Vec<String> {
        let out = self.kube_plane().kubectl(&[
            "get",
            "weftnodepolicies",
            self.node(i).name(),
            "-o",
            "json",
        ]);
        let object: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        object["spec"]["pods"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["uid"].as_str().map(str::to_owned))
            .collect()
    }
}

/// `CNI_ARGS` as containerd passes a pod's identity.
pub(crate) fn cni_args(namespace: &str, name: &str, uid: &str) -> String {
    format!("K8S_POD_NAMESPACE={namespace};K8S_POD_NAME={name};K8S_POD_UID={uid}")
}

/// A CNI result's IPv4 and IPv6 addresses.
pub(crate) fn addresses(result: &Value) -> (Option<String>, Option<String>) {
    let (mut v4, mut v6) = (None, None);
    for ip in result["ips"].as_array().into_iter().flatten() {
        let cidr = ip["address"].as_str().unwrap_or_default();
        let (addr, len) = cidr.split_once('/').unwrap();
        match len {
            "32" => v4 = Some(addr.to_owned()),
            "128" => v6 = Some(addr.to_owned()),
            _ => panic!("unexpected pod address {cidr}"),
        }
    }
    (v4, v6)
}
