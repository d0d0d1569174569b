//! The NetworkPolicy truth table (docs/networkpolicy-design.md §4.1), and the cluster the
//! first-packet and restart tests (§4.2, §4.3) run on. Modules, each using
//! only those before it: `model` (nodes, namespaces, pods, connections: plain data),
//! `oracle` (what the Kubernetes API text says policies allow, not weft's code), `matrix`
//! (the table: every client × pod × family × port, and the comparison of two tables),
//! `cluster` (upstream's 9 pods on three Kubernetes-mode namespace nodes, probed by real
//! connections with `netpol_agent`), `case` (cases and changes as data, each waited for);
//! `flood` (senders hammering an address, for the first-packet tests) uses none of them.

mod case;
mod cluster;
mod flood;
mod matrix;
mod model;
mod oracle;
#[cfg(test)]
mod oracle_tests;

pub use case::{network_policy, parse_policies, LabelChange, PolicyCase, Step};
pub use cluster::{cni_args, running_status, PolicyCluster, NAMESPACES, POD_NAMES, PROBE_TIMEOUT};
pub use flood::Flood;
pub use matrix::{
    all_probes, compare, expected_matrix, Client, Comparison, Matrix, Probe, ProbedPort,
    PROBED_PORTS,
};
pub use model::{
    Connection, ContainerPort, Family, Labels, Model, Namespace, Node, Pod, PodId, Protocol, Source,
};
