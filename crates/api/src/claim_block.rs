//! `WeftClaimBlock`: the claims of 64 consecutive ranges of one length in one object,
//! named after the aligned block that holds them.
//!
//! Every range belongs to exactly one block (`block_of`), so the block object is the one
//! place its claim can be written, and every write of a block carries the
//! `resourceVersion` it was read at: of two writers, the apiserver lets one through and
//! the other re-reads and finds the range taken. Uniqueness is the apiserver's to
//! enforce, and a burst of joining nodes costs one write per block touched instead of
//! one per range: the controller folds every claim waiting for the same block into one
//! update.
//!
//! A claim outlives its Node on purpose: when the Node goes, the controller marks the
//! claim released and drops it only after the network's cooldown, so late packets to a
//! recycled range cannot reach a new node.

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Ranges per block: 2^6.
pub const BLOCK_BITS: u8 = 6;

/// The claims of one aligned block of ranges.
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "weft.dev",
    version = "v1alpha1",
    kind = "WeftClaimBlock",
    plural = "weftclaimblocks",
    shortname = "wblock",
    derive = "PartialEq",
    printcolumn(name = "Block", type_ = "string", json_path = ".spec.cidr"),
    printcolumn(name = "Length", type_ = "integer", json_path = ".spec.rangeLength"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct WeftClaimBlockSpec {
    /// The block (`2001:db8::/74` holds 64 /80 prefixes, `10.255.0.0/18` 64 /24 subnets).
    pub cidr: String,
    /// The length of every range claimed in it.
    pub range_length: u8,
    /// One entry per range held.
    #[serde(default)]
    pub claims: Vec<BlockClaim>,
}

/// A range held by a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BlockClaim {
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

/// The canonical name of `cidr`: the family, every address group written out and the
/// length (`2001:db8:1000:1::/80` -> `ipv6-2001-db8-1000-1-0-0-0-0-80`, `10.255.1.0/24`
/// -> `ipv4-10-255-1-0-24`). One text per range whatever form it came in, and a valid
/// object name: block names are built from it.
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

/// The block holding `range`: its CIDR and its object name ([`block_name`]).
pub fn block_of(range: IpNet) -> (IpNet, String) {
    let len = range.prefix_len();
    let block_len = len.saturating_sub(BLOCK_BITS);
    let block = match range {
        IpNet::V6(n) => IpNet::V6(Ipv6Net::new(n.network(), block_len).map_or(n, |b| b.trunc())),
        IpNet::V4(n) => IpNet::V4(Ipv4Net::new(n.network(), block_len).map_or(n, |b| b.trunc())),
    };
    (block, block_name(block, len))
}

/// The object name of the block `block` of ranges `range_length` long: the block's
/// claim name and the range length (`ipv6-2001-db8-0-0-0-0-0-0-74-80`,
/// `ipv4-10-255-0-0-18-24`).
pub fn block_name(block: IpNet, range_length: u8) -> String {
    format!("{}-{range_length}", claim_name(block))
}
