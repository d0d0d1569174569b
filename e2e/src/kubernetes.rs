//! The Kubernetes side of a [`Topology`](crate::Topology) in Kubernetes mode: a control
//! plane namespace on the fabric (etcd and kube-apiserver from [`ControlPlane`], serving
//! on 2001:db8:ffff::2), weft's CRDs and `WeftNetwork`, a Node object per namespace node,
//! and weft-controller replicas. weftd on the nodes reaches the apiserver over the
//! underlay with a kubeconfig of its own.

use crate::{binary, underlay, wait_until, Background, ControlPlane, Metrics, Netns, TempDir};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;

/// The control plane's underlay addresses.
pub const CONTROL_PLANE_V6: &str = "2001:db8:ffff::2";
/// See [`CONTROL_PLANE_V6`].
pub const CONTROL_PLANE_V4: &str = "192.0.2.2";

/// Controller replica i serves /metrics on this port + i, in the control plane's
/// namespace.
const CONTROLLER_METRICS_PORT: usize = 9650;
/// Every controller replica's policy relay listens here (SO_REUSEPORT: the kernel
/// spreads connections over the live replicas, as a Service would).
pub const RELAY_PORT: u16 = 9643;
/// The name on the relay's certificate, as the chart's Service is named.
const RELAY_NAME: &str = "weft-policy-relay.kube-system.svc";

/// What the `WeftNetwork` says.
#[derive(Debug, Clone)]
pub struct NetworkOptions {
    /// `spec.mode`.
    pub mode: &'static str,
    /// `spec.ipv6Routing`.
    pub ipv6_routing: &'static str,
    /// Zones: node N is labelled `zone-N` and zone N's range is 2001:db8:1000:N::/64,
    /// so node N's prefix is 2001:db8:1000:N::/80, as in standalone topologies.
    pub zones: usize,
    /// `spec.releaseCooldownSeconds`.
    pub cooldown_seconds: u64,
}

/// A control plane with weft's API and controllers. Field order is drop order.
#[derive(Debug)]
pub struct KubeCluster {
    controllers: Vec<Option<Background>>,
    /// The relay's serving certificate and key.
    relay_cert: (PathBuf, PathBuf),
    /// etcd and kube-apiserver.
    pub control_plane: ControlPlane,
    /// The control plane's namespace (on the fabric).
    pub netns: Netns,
    dir: TempDir,
}

impl KubeCluster {
    /// Wires a control-plane namespace to `fabric`, starts the control plane, installs
    /// the CRDs and the `default` WeftNetwork, and starts one controller.
    pub fn start(fabric: &Netns, mtu: u32, network: &NetworkOptions) -> KubeCluster {
        let netns = Netns::new("cp");
        underlay::wire_node(
            fabric,
            &netns,
            0,
            mtu,
            (Some(CONTROL_PLANE_V4.into()), Some(CONTROL_PLANE_V6.into())),
            None,
        );
        let control_plane = ControlPlane::start(&netns, CONTROL_PLANE_V6.parse().unwrap());
        let dir = TempDir::new("kube");
        // Its Service's name only, as the chart's: weftd connects to an address and
        // checks the name (--policy-relay-server-name).
        let relay_cert = control_plane.write_serving_cert(RELAY_NAME, &format!("DNS:{RELAY_NAME}"));
        let mut cluster = KubeCluster {
            controllers: Vec::new(),
            relay_cert,
            control_plane,
            netns,
            dir,
        };
        cluster.install_api(network);
        cluster.start_controller();
        cluster
    }

    fn install_api(&self, network: &NetworkOptions) {
        self.control_plane.install_weft_crds();
        let ranges: Vec<Value> = (1..=network.zones)
            .map(|n| json!({"range": format!("2001:db8:1000:{n:x}::/64"), "zone": format!("zone-{n}"), "prefixLength": 80}))
            .collect();
        self.apply(&json!({
            "apiVersion": "weft.dev/v1alpha1", "kind": "WeftNetwork",
            "metadata": {"name": "default"},
            "spec": {"mode": network.mode, "ipv6Routing": network.ipv6_routing,
                "ipv6Ranges": ranges, "ipv4Network": "10.255.0.0/16", "ipv4SubnetLength": 24,
                "releaseCooldownSeconds": network.cooldown_seconds}
        }));
    }

    /// `kubectl apply` of one object.
    pub fn apply(&self, object: &Value) {
        self.control_plane
            .kubectl_input_ok(&["apply", "-f", "-"], &object.to_string());
    }

    /// Creates the Node object `name` in `zone`.
    pub fn create_node(&self, name: &str, zone: &str) {
        self.apply(&json!({"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"topology.kubernetes.io/zone": zone}}}));
    }

    /// Starts another weft-controller replica; its index.
    pub fn start_controller(&mut self) -> usize {
        let index = self.controllers.len();
        let kubeconfig = self.control_plane.kubeconfig().display().to_string();
        let weft_controller = binary("weft-controller").display().to_string();
        let identity = format!("controller-{index}");
        let metrics = format!("[::]:{}", CONTROLLER_METRICS_PORT + index);
        let relay = format!("[::]:{RELAY_PORT}");
        let (cert, key) = (
            self.relay_cert.0.display().to_string(),
            self.relay_cert.1.display().to_string(),
        );
        self.controllers.push(Some(Background::spawn(
            &self.netns,
            &weft_controller,
            &[
                "--kubeconfig",
                &kubeconfig,
                "--identity",
                &identity,
                "--metrics-addr",
                &metrics,
                "--relay-addr",
                &relay,
                "--relay-cert",
                &cert,
                "--relay-key",
                &key,
            ],
        )));
        index
    }

    /// weftd's flags that send its span watches to the relay, in the chart's form: the
    /// address as a Service's link variable gives it, the certificate's name apart.
    pub fn relay_flags(&self) -> Vec<String> {
        vec![
            "--policy-relay".into(),
            format!("tcp://[{CONTROL_PLANE_V6}]:{RELAY_PORT}"),
            "--policy-relay-ca".into(),
            self.control_plane.ca_cert().display().to_string(),
            "--policy-relay-server-name".into(),
            RELAY_NAME.into(),
        ]
    }

    /// A kubeconfig for weftd on `node` that authenticates with a ServiceAccount token
    /// (the relay checks tokens with the apiserver; it cannot check client
    /// certificates): ServiceAccount `weftd-NODE` in kube-system, bound to
    /// cluster-admin as the client-certificate identity is by `system:masters`.
    pub fn node_token_kubeconfig(&self, node: &str) -> PathBuf {
        let account = format!("weftd-{node}");
        self.apply(&json!({"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": account, "namespace": "kube-system"}}));
        self.apply(&json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": account},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": "kube-system"}]}));
        let token = self.control_plane.kubectl_ok(&[
            "create",
            "token",
            &account,
            "-n",
            "kube-system",
            "--duration=24h",
        ]);
        self.control_plane.token_kubeconfig(&account, &token)
    }

    /// One scrape of controller `index`'s /metrics (empty while it does not answer).
    pub fn controller_metrics(&self, index: usize) -> Metrics {
        let addr = format!("[::1]:{}", CONTROLLER_METRICS_PORT + index);
        Metrics(self.netns.http_get(&addr, "/metrics").1)
    }

    /// Kills controller `index` (SIGKILL).
    pub fn kill_controller(&mut self, index: usize) {
        self.controllers[index] = None;
    }

    /// A kubeconfig for weftd on `node`, reaching the apiserver over the underlay.
    pub fn node_kubeconfig(&self, node: &str) -> PathBuf {
        let path = self.dir.path().join(format!("{node}.kubeconfig"));
        if !path.exists() {
            self.control_plane.write_kubeconfig(
                &path,
                &format!("system:node:{node}"),
                &["system:masters"],
            );
        }
        path
    }

    /// Every WeftNode, by name.
    pub fn weft_nodes(&self) -> Vec<Value> {
        let out = self
            .control_plane
            .kubectl_ok(&["get", "weftnodes", "-o", "json"]);
        let list: Value = serde_json::from_str(&out).unwrap();
        list["items"].as_array().cloned().unwrap_or_default()
    }

    /// The WeftNode of `node`, once it has the ranges the mode needs.
    pub fn wait_allocated(&self, node: &str, mode: &str, timeout: Duration) -> Value {
        let mut found = Value::Null;
        wait_until(&format!("{node}'s allocation"), timeout, || {
            found = self
                .weft_nodes()
                .into_iter()
                .find(|n| n["metadata"]["name"] == node)
                .unwrap_or(Value::Null);
            let spec = &found["spec"];
            (mode == "ipv4" || spec["ipv6Prefix"].is_string())
                && (mode == "ipv6" || spec["ipv4Subnet"].is_string())
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", self.controller_logs()));
        found
    }

    /// The controllers' output so far.
    pub fn controller_logs(&self) -> String {
        let mut out = String::new();
        for (i, c) in self.controllers.iter().enumerate() {
            if let Some(c) = c {
                out.push_str(&format!("--- controller {i}\n{}\n", c.output()));
            }
        }
        out
    }
}
