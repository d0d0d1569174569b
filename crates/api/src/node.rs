//! `WeftNode`: one node's share of the plan, cluster-scoped, named after the Node and
//! owned by it (deleting the Node deletes it).
//!
//! Two writers, each with its own fields (server-side apply, one field manager each):
//! the controller writes `ipv6Prefix`, `ipv4Subnet` and `zone`; the node's weftd writes
//! `underlayIPv4`, `underlayIPv6`, `vtepMAC` and the usage in `status`. Every weftd
//! reads all `WeftNode`s as its peers.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A node's allocation and its underlay identity.
#[derive(CustomResource, Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "weft.dev",
    version = "v1alpha1",
    kind = "WeftNode",
    plural = "weftnodes",
    shortname = "wnode",
    status = "WeftNodeStatus",
    derive = "PartialEq",
    derive = "Default",
    printcolumn(name = "Node", type_ = "string", json_path = ".spec.nodeName"),
    printcolumn(name = "IPv6 prefix", type_ = "string", json_path = ".spec.ipv6Prefix"),
    printcolumn(name = "IPv4 subnet", type_ = "string", json_path = ".spec.ipv4Subnet"),
    printcolumn(name = "IPv6 used", type_ = "integer", json_path = ".status.ipv6InUse"),
    printcolumn(name = "IPv4 used", type_ = "string", json_path = ".status.ipv4Usage"),
    printcolumn(
        name = "Underlay",
        type_ = "string",
        json_path = ".spec.underlayIPv6",
        priority = 1
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct WeftNodeSpec {
    /// The Node's name.
    pub node_name: String,
    /// The zone the node's prefix was taken for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// The node's delegated IPv6 prefix (written by the controller).
    #[serde(
        rename = "ipv6Prefix",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv6_prefix: Option<String>,
    /// The node's IPv4 overlay subnet (written by the controller).
    #[serde(
        rename = "ipv4Subnet",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv4_subnet: Option<String>,
    /// The node's underlay IPv4 address (written by weftd).
    #[serde(
        rename = "underlayIPv4",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub underlay_ipv4: Option<String>,
    /// The node's underlay IPv6 address (written by weftd).
    #[serde(
        rename = "underlayIPv6",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub underlay_ipv6: Option<String>,
    /// The node's VXLAN device MAC (written by weftd).
    #[serde(rename = "vtepMAC", default, skip_serializing_if = "Option::is_none")]
    pub vtep_mac: Option<String>,
}

/// Conditions and address use as the node's weftd reports them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WeftNodeStatus {
    /// `Allocated` (the controller gave the node its ranges, or says why not) and
    /// `Ready` (weftd serves pods from them).
    ///
    /// A map keyed by `type` for server-side apply, so each writer (the controller,
    /// weftd) owns only its own conditions.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Pod IPv6 addresses in use.
    #[serde(rename = "ipv6InUse", default, skip_serializing_if = "Option::is_none")]
    pub ipv6_in_use: Option<u64>,
    /// Pod IPv4 addresses in use.
    #[serde(rename = "ipv4InUse", default, skip_serializing_if = "Option::is_none")]
    pub ipv4_in_use: Option<u64>,
    /// Usable pod IPv4 addresses of the subnet.
    #[serde(
        rename = "ipv4Capacity",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv4_capacity: Option<u64>,
    /// `in use/capacity` of IPv4, for `kubectl get`.
    #[serde(rename = "ipv4Usage", default, skip_serializing_if = "Option::is_none")]
    pub ipv4_usage: Option<String>,
    /// When weftd last reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reported_at: Option<Time>,
}

impl WeftNodeSpec {
    /// The range of `family` the controller wrote, as written.
    pub fn range(&self, family: weft_wire::Family) -> Option<&str> {
        match family {
            weft_wire::Family::Ipv6 => self.ipv6_prefix.as_deref(),
            weft_wire::Family::Ipv4 => self.ipv4_subnet.as_deref(),
        }
    }
}

impl WeftNode {
    /// The node as a peer of the others, when it has what peers need.
    pub fn peer_entry(&self) -> weft_wire::PeerEntry {
        weft_wire::PeerEntry {
            name: self.spec.node_name.clone(),
            underlay_ipv4: self.spec.underlay_ipv4.clone(),
            underlay_ipv6: self.spec.underlay_ipv6.clone(),
            ipv6_prefix: self.spec.ipv6_prefix.clone(),
            ipv4_subnet: self.spec.ipv4_subnet.clone(),
            vtep_mac: self.spec.vtep_mac.clone(),
        }
    }
}
