//! `WeftClaim`: one object per delegated IPv6 prefix or IPv4 subnet, named after it.
//!
//! The apiserver refuses a second object of the same name, so two controllers racing
//! (or one killed mid-write and restarted with a stale cache) can never give the same
//! range to two nodes: whoever creates the claim owns the range. A claim outlives its
//! Node on purpose: when the Node goes, the controller marks the claim released and
//! deletes it only after the network's cooldown, so late packets to a recycled range
//! cannot reach a new node.

use ipnet::IpNet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A range held by a node.
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "weft.dev",
    version = "v1alpha1",
    kind = "WeftClaim",
    plural = "weftclaims",
    shortname = "wclaim",
    derive = "PartialEq",
    printcolumn(name = "CIDR", type_ = "string", json_path = ".spec.cidr"),
    printcolumn(name = "Node", type_ = "string", json_path = ".spec.nodeName"),
    printcolumn(name = "Released", type_ = "date", json_path = ".spec.releasedAt"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct WeftClaimSpec {
    /// The prefix or subnet.
    pub cidr: String,
    /// The range (IPv6) or network (IPv4) it was cut from.
    pub from: String,
    /// The Node holding it.
    pub node_name: String,
    /// That Node's UID: a Node re-created under the same name is another node.
    #[serde(rename = "nodeUID")]
    pub node_uid: String,
    /// Set when the Node is gone; the claim is deleted a cooldown later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released_at: Option<Time>,
}

/// The claim object's name for `cidr`: the family, every address group written out
/// and the length (`2001:db8:1000:1::/80` -> `ipv6-2001-db8-1000-1-0-0-0-0-80`,
/// `10.255.1.0/24` -> `ipv4-10-255-1-0-24`). One text per range whatever form it came
/// in, and a valid object name.
pub fn claim_name(cidr: IpNet) -> String {
    match cidr {
        IpNet::V6(net) => {
            let groups: Vec<String> = net
                .network()
                .segments()
                .iter()
                .map(|s| format!("{s:x}"))
                .collect();
            format!("ipv6-{}-{}", groups.join("-"), net.prefix_len())
        }
        IpNet::V4(net) => {
            let octets: Vec<String> = net.network().octets().iter().map(u8::to_string).collect();
            format!("ipv4-{}-{}", octets.join("-"), net.prefix_len())
        }
    }
}
