//! N namespace nodes on a routed underlay, each running weftd with a peers file, and an
//! "external" host beyond the underlay's router.
//!
//! ```text
//!  external (198.51.100.100, 2001:db8:eeee::100)
//!     | eth0 <-> ext
//!  fabric: router, forwarding on; bridge fabric0 = 192.0.2.1/24, 2001:db8:ffff::1/64
//!     | nN (one bridge port per node) <-> uplink
//!  node N: 192.0.2.(10+N)/24 and/or 2001:db8:ffff::(10+N)/64, weftd with
//!          2001:db8:1000:N::/80 and 10.255.N.0/24; pods via the CNI binary
//! ```
//!
//! The fabric routes a node's /80 to it only in `fabric` IPv6 routing; in `direct` it
//! knows no pod prefix, so pod IPv6 crosses nodes only over routes weftd installed. No
//! namespace but the nodes knows 10.255.0.0/16: IPv4 that weftd did not tunnel or NAT
//! goes nowhere. `nodes[i]` is node i+1 (node numbers are 1-based, as in the addresses).
//!
//! In Kubernetes mode ([`TopologyOptions::kubernetes`]) a control-plane namespace joins
//! the fabric ([`KubeCluster`]): node N is a Node object in zone `zone-N`, weft-controller
//! allocates its ranges (zone N's range makes its prefix 2001:db8:1000:N::/80 again; its
//! IPv4 subnet is whatever the controller picked) and weftd runs with `--kubeconfig`.

use crate::kubernetes::{KubeCluster, NetworkOptions};
use crate::traffic::Slot;
use crate::underlay::{self, Underlay};
use crate::{Netns, Node, NodeOptions, TempDir};
use serde_json::{json, Value};
use std::fs;
use std::path::PathBuf;
use std::time::Duration;

/// What to build.
#[derive(Debug, Clone)]
pub struct TopologyOptions {
    /// Number of nodes (at most 200).
    pub nodes: usize,
    /// weftd `--mode`: `dual`, `ipv6` or `ipv4`.
    pub mode: &'static str,
    /// weftd `--ipv6-routing`: `fabric` or `direct`.
    pub ipv6_routing: &'static str,
    /// Address families of the underlay.
    pub underlay: Underlay,
    /// MTU of every uplink and of the fabric bridge.
    pub uplink_mtu: u32,
    /// Pods added to every node at start.
    pub pods_per_node: usize,
    /// Kubernetes mode: allocation and peers through a real apiserver and controller.
    pub kubernetes: bool,
    /// Kubernetes mode: the network's release cooldown.
    pub release_cooldown_seconds: u64,
    /// Kubernetes mode: weftd's NetworkPolicy span watches go to the controllers'
    /// policy relay (weftd --policy-relay, with a ServiceAccount token) instead of the
    /// apiserver.
    pub policy_relay: bool,
}

impl Default for TopologyOptions {
    fn default() -> Self {
        TopologyOptions {
            nodes: 3,
            mode: "dual",
            ipv6_routing: "fabric",
            underlay: Underlay::Dual,
            uplink_mtu: 1500,
            pods_per_node: 0,
            kubernetes: false,
            release_cooldown_seconds: 5,
            policy_relay: false,
        }
    }
}

/// A pod wired by the CNI plugin on one node.
#[derive(Debug)]
pub struct Pod {
    /// The pod's namespace.
    pub netns: Netns,
    /// Index into `Topology::nodes`.
    pub node: usize,
    /// Its container ID.
    pub id: String,
    /// Its IPv4 address, when the mode serves IPv4.
    pub v4: Option<String>,
    /// Its IPv6 address, when the mode serves IPv6.
    pub v6: Option<String>,
    /// The CNI ADD result.
    pub result: Value,
}

impl Pod {
    /// Its addresses, IPv6 first.
    pub fn addrs(&self) -> Vec<&str> {
        self.v6.iter().chain(&self.v4).map(String::as_str).collect()
    }

    /// One ping to `addr`; true when answered.
    pub fn ping(&self, addr: &str) -> bool {
        self.netns.ping(addr)
    }

    /// One ping of `size` payload bytes, fragmentation forbidden.
    pub fn ping_sized(&self, addr: &str, size: u32) -> bool {
        self.netns.ping_sized(addr, Some(size))
    }
}

/// A running topology. Dropping it removes every namespace, process and file it made.
/// Field order is drop order: pods, then nodes (weftd and their namespaces), then the rest.
#[derive(Debug)]
pub struct Topology {
    /// Pods, in the order added.
    pub pods: Vec<Pod>,
    /// The nodes; `nodes[i]` is node i+1.
    pub nodes: Vec<Node>,
    /// Kubernetes mode: the control plane and controllers.
    pub kube: Option<KubeCluster>,
    /// The underlay router.
    pub fabric: Netns,
    /// A host beyond the router that knows no route to the IPv4 overlay.
    pub external: Netns,
    /// What it was built with.
    pub options: TopologyOptions,
    /// For each node, the nodes its peers file lists (itself included).
    listed: Vec<Vec<usize>>,
    /// Each node's IPv4 subnet.
    subnets: Vec<String>,
    dir: TempDir,
    _slot: Slot,
}

impl Topology {
    /// Builds the fabric, the external host and the nodes, starts weftd on each and adds
    /// `pods_per_node` pods to each node. Does not wait for convergence (see
    /// [`Topology::wait_converged`]). Panics (after cleaning up) when anything fails.
    pub fn start(options: TopologyOptions) -> Topology {
        assert!((1..=200).contains(&options.nodes), "1 to 200 nodes");
        assert!(
            options.mode == "ipv4" || options.underlay.has_v6(),
            "pod IPv6 is routed natively: mode {} needs an IPv6 underlay",
            options.mode
        );
        let slot = Slot::acquire();
        let dir = TempDir::new("topo");
        let fabric = underlay::build_fabric(options.uplink_mtu);
        let external = underlay::build_external(&fabric);
        let listed: Vec<Vec<usize>> = vec![(0..options.nodes).collect(); options.nodes];
        let kube = options.kubernetes.then(|| {
            KubeCluster::start(
                &fabric,
                options.uplink_mtu,
                &NetworkOptions {
                    mode: options.mode,
                    ipv6_routing: options.ipv6_routing,
                    zones: options.nodes,
                    cooldown_seconds: options.release_cooldown_seconds,
                },
            )
        });
        let subnets = (1..=options.nodes)
            .map(|n| format!("10.255.{n}.0/24"))
            .collect();
        let mut topology = Topology {
            pods: Vec::new(),
            nodes: Vec::new(),
            kube,
            subnets,
            fabric,
            external,
            options: options.clone(),
            listed,
            dir,
            _slot: slot,
        };
        for i in 0..options.nodes {
            match &topology.kube {
                None => topology.write_peers(i),
                Some(kube) => kube.create_node(&Topology::node_name(i), &format!("zone-{}", i + 1)),
            }
            let node = topology.start_node(i);
            topology.nodes.push(node);
        }
        if let Some(kube) = &topology.kube {
            for i in 0..options.nodes {
                let allocated = kube.wait_allocated(
                    &Topology::node_name(i),
                    options.mode,
                    Duration::from_secs(30),
                );
                if let Some(subnet) = allocated["spec"]["ipv4Subnet"].as_str() {
                    topology.subnets[i] = subnet.to_owned();
                }
            }
        }
        for i in 0..options.nodes {
            for _ in 0..options.pods_per_node {
                topology.add_pod(i);
            }
        }
        topology
    }

    fn has_v4(&self) -> bool {
        self.options.mode != "ipv6"
    }

    fn has_v6(&self) -> bool {
        self.options.mode != "ipv4"
    }

    /// Node i's underlay IPv4 address, when the underlay has IPv4.
    pub fn underlay_v4(&self, i: usize) -> Option<String> {
        let n = i + 1;
        self.options
            .underlay
            .has_v4()
            .then(|| format!("192.0.2.{}", 10 + n))
    }

    /// Node i's underlay IPv6 address, when the underlay has IPv6.
    pub fn underlay_v6(&self, i: usize) -> Option<String> {
        let n = i + 1;
        self.options
            .underlay
            .has_v6()
            .then(|| format!("2001:db8:ffff::{}", 10 + n))
    }

    /// Node i's delegated IPv6 prefix.
    pub fn ipv6_prefix(&self, i: usize) -> String {
        format!("2001:db8:1000:{:x}::/80", i + 1)
    }

    /// Node i's overlay IPv4 subnet.
    pub fn ipv4_subnet(&self, i: usize) -> String {
        self.subnets[i].clone()
    }

    /// Node i's overlay gateway address (its subnet's network address, on weft-vxlan).
    pub fn overlay_gateway(&self, i: usize) -> String {
        self.subnets[i]
            .split('/')
            .next()
            .unwrap_or_default()
            .to_owned()
    }

    /// Node i's VTEP MAC as the contract derives it: ee:ee + its subnet's network address.
    pub fn vtep_mac(&self, i: usize) -> String {
        let octets: Vec<u8> = self
            .overlay_gateway(i)
            .split('.')
            .map(|o| o.parse().unwrap())
            .collect();
        format!(
            "ee:ee:{:02x}:{:02x}:{:02x}:{:02x}",
            octets[0], octets[1], octets[2], octets[3]
        )
    }

    /// Kubernetes mode: deletes node i's Node object and stops its weftd; the others no
    /// longer count it as a peer.
    pub fn delete_node(&mut self, i: usize) {
        let kube = self.kube.as_ref().expect("Kubernetes mode");
        kube.control_plane
            .kubectl_ok(&["delete", "node", &Topology::node_name(i)]);
        self.nodes[i].stop();
        for listed in &mut self.listed {
            listed.retain(|&p| p != i);
        }
    }

    /// Node i's peers file.
    pub fn peers_file(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("peers-{}.json", i + 1))
    }

    fn node_name(i: usize) -> String {
        format!("node-{}", i + 1)
    }

    /// Node i's entry in a peers file: only the families in use.
    fn peer_entry(&self, i: usize) -> Value {
        let mut entry = json!({"name": Topology::node_name(i)});
        if let Some(a) = self.underlay_v4(i) {
            entry["underlayIPv4"] = a.into();
        }
        if let Some(a) = self.underlay_v6(i) {
            entry["underlayIPv6"] = a.into();
        }
        if self.has_v6() {
            entry["ipv6Prefix"] = self.ipv6_prefix(i).into();
        }
        if self.has_v4() {
            entry["ipv4Subnet"] = self.ipv4_subnet(i).into();
        }
        entry
    }

    /// Writes node i's peers file from the nodes it lists.
    fn write_peers(&self, i: usize) {
        self.write_peers_json(i, &Value::Array(self.peer_entries(i)));
    }

    /// Node i's peers file entries as the topology writes them (all nodes listed).
    pub fn peer_entries(&self, i: usize) -> Vec<Value> {
        self.listed[i].iter().map(|&p| self.peer_entry(p)).collect()
    }

    /// Replaces node i's peers file with `peers`, atomically (temp file + rename: weftd
    /// may be reading it). [`Topology::expected_peers`] does not follow this.
    pub fn write_peers_json(&self, i: usize, peers: &Value) {
        let path = self.peers_file(i);
        let tmp = path.with_extension("tmp");
        fs::write(&tmp, serde_json::to_vec_pretty(peers).unwrap()).unwrap();
        fs::rename(&tmp, &path).unwrap();
    }

    /// Peers node i's file lists, itself excluded: what weftd should program.
    pub fn expected_peers(&self, i: usize) -> usize {
        self.listed[i].iter().filter(|&&p| p != i).count()
    }

    /// Removes `peer` from node i's peers file (the other files are left alone).
    pub fn remove_peer(&mut self, i: usize, peer: usize) {
        self.listed[i].retain(|&p| p != peer);
        self.write_peers(i);
    }

    /// kill -9 node i's weftd and start it again on the same state and peers file.
    pub fn restart_weftd(&mut self, i: usize) {
        self.nodes[i].restart();
    }

    /// Adds a pod to node i through the CNI plugin; panics if ADD fails.
    pub fn add_pod(&mut self, i: usize) -> &Pod {
        self.add_pod_with_args(i, None)
    }

    /// [`Topology::add_pod`] with `CNI_ARGS` (a Kubernetes pod's identity), when given.
    pub fn add_pod_with_args(&mut self, i: usize, cni_args: Option<&str>) -> &Pod {
        self.add_pod_in(i, Netns::new("p"), cni_args)
    }

    /// [`Topology::add_pod_with_args`] into `netns`, made by the caller (who may watch
    /// it from before the pod's interface exists).
    pub fn add_pod_in(&mut self, i: usize, netns: Netns, cni_args: Option<&str>) -> &Pod {
        let id = format!("pod-{}-{}", i + 1, self.pods_of(i).len() + 1);
        let output = match cni_args {
            Some(args) => self.nodes[i].add_with_args(&id, &netns, args),
            None => self.nodes[i].add(&id, &netns),
        };
        let result = output.expect_ok();
        let mut pod = Pod {
            netns,
            node: i,
            id,
            v4: None,
            v6: None,
            result,
        };
        for ip in pod.result["ips"].as_array().into_iter().flatten() {
            let cidr = ip["address"].as_str().unwrap_or_default();
            let (addr, len) = cidr.split_once('/').unwrap();
            match len {
                "32" => pod.v4 = Some(addr.to_owned()),
                "128" => pod.v6 = Some(addr.to_owned()),
                _ => panic!("unexpected pod address {cidr}"),
            }
        }
        self.pods.push(pod);
        self.pods.last().unwrap()
    }

    /// The pods of node i.
    pub fn pods_of(&self, i: usize) -> Vec<&Pod> {
        self.pods.iter().filter(|p| p.node == i).collect()
    }

    /// Waits until every node's weftd reports every listed peer known and programmed;
    /// panics with the laggard's log after `timeout`.
    pub fn wait_converged(&self, timeout: Duration) {
        for (i, node) in self.nodes.iter().enumerate() {
            let want = self.expected_peers(i) as f64;
            crate::wait_until(
                &format!("{} to program {want} peers", node.name()),
                timeout,
                || {
                    node.metric("weft_peers_known") == Some(want)
                        && node.metric("weft_peers_programmed") == Some(want)
                },
            )
            .unwrap_or_else(|e| panic!("{e}\nweftd log of {}:\n{}", node.name(), node.log()));
        }
    }

    fn start_node(&self, i: usize) -> Node {
        let n = i + 1;
        let netns = Netns::new("n");
        let fabric_route =
            (self.options.ipv6_routing == "fabric" && self.has_v6()).then(|| self.ipv6_prefix(i));
        underlay::wire_node(
            &self.fabric,
            &netns,
            n,
            self.options.uplink_mtu,
            (self.underlay_v4(i), self.underlay_v6(i)),
            fabric_route,
        );
        let mut options = NodeOptions {
            mode: self.options.mode,
            ipv6_prefix: self.has_v6().then(|| self.ipv6_prefix(i)),
            ipv4_subnet: self.has_v4().then(|| self.ipv4_subnet(i)),
            uplink_mtu: self.options.uplink_mtu,
            ipv6_underlay: !self.options.underlay.has_v4(),
            node_name: Some(Topology::node_name(i)),
            extra_args: vec![
                "--peers".into(),
                self.peers_file(i).display().to_string(),
                "--ipv6-routing".into(),
                self.options.ipv6_routing.into(),
            ],
            ..NodeOptions::default()
        };
        if let Some(kube) = &self.kube {
            // Ranges, mode, routing and peers come from the apiserver.
            options.ipv6_prefix = None;
            options.ipv4_subnet = None;
            let node = Topology::node_name(i);
            options.extra_args = Vec::new();
            options.kubeconfig = Some(if self.options.policy_relay {
                options.extra_args = kube.relay_flags();
                kube.node_token_kubeconfig(&node)
            } else {
                kube.node_kubeconfig(&node)
            });
        }
        Node::start_in(netns, options)
    }
}
