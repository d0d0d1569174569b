//! weft's real-part test harness. Everything runs against the real kernel in network
//! namespaces this harness creates and always removes (guards delete them on drop, also
//! when a test panics): a "node" namespace runs weftd and the CNI plugin, pod namespaces
//! receive interfaces. Names carry the process ID and a counter, so tests run in parallel.
//!
//! `Topology` builds several nodes on a routed underlay with an external host, for the
//! multi-node datapath.
//!
//! Underlay and host addresses are documentation prefixes (192.0.2.0/24, 2001:db8::/32);
//! pod addresses come from the overlay configured for the test node.
#![allow(clippy::unwrap_used)]

pub mod bench;
mod controlplane;
mod kubernetes;
mod metrics;
mod netns;
pub mod netpol;
mod node;
mod plugin;
mod scratch;
mod tools;
mod topology;
mod traffic;
mod underlay;

pub use controlplane::{
    node_beside, serving_namespace, ControlPlane, KubeBinaries, APISERVER_PORT, SOLO_APISERVER,
    SOLO_NODE_V6,
};
pub use kubernetes::{KubeCluster, NetworkOptions, CONTROL_PLANE_V4, CONTROL_PLANE_V6};
pub use metrics::Metrics;
pub use netns::{spawn_logged, unique_name, Netns};
pub use node::{Node, NodeOptions, HOST_V4, HOST_V6};
pub use plugin::{pod_address, run_in, Plugin, PluginOutput};
pub use scratch::{
    install_namespace_cleanup_hook, log_tail, read_trimmed, remove_own_namespaces, stop_requested,
    watch_stop_signals, TempDir,
};
pub use tools::{binary, reference_plugins_dir, tools_bin, Tools};
pub use topology::{Pod, Topology, TopologyOptions};
pub use traffic::{
    iperf3_client, iperf3_remote_host, iperf3_server, tcp_transfer, wait_until, Background,
    PingOutcome,
};
pub use underlay::{build_fabric, wire_node, Underlay, EXTERNAL_V4, EXTERNAL_V6};
