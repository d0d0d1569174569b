//! The node's allocation: its ranges and how the overlay runs. From the flags in
//! standalone mode, from the apiserver in Kubernetes mode (see [`crate::kube`]).

use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};
use weft_api::Ipv6Routing;
use weft_wire::Mode;

/// What a node needs before it can serve pods.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeAllocation {
    pub mode: Mode,
    pub ipv6_prefix: Option<Ipv6Net>,
    pub ipv4_subnet: Option<Ipv4Net>,
    pub ipv6_routing: Ipv6Routing,
    #[serde(rename = "vxlanVNI")]
    pub vxlan_vni: u32,
    pub vxlan_port: u16,
}

#[cfg(test)]
#[path = "tests/node_allocation.rs"]
pub mod fixture;
