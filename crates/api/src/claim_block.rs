//! `WeftClaimBlock`: the claims of 64 consecutive ranges of one length in one object,
//! named after the aligned block that holds them.
//!
//! Every range belongs to exactly one block (`block_of`), so the block object is the one
//! place its claim can be written, and every write of a block carries the
//! `resourceVersion` it was read at: of two writers, the apiserver lets one through and
//! the other re-reads and finds the range taken. Uniqueness is still the apiserver's to
//! enforce, as with one `WeftClaim` per range, but a burst of joining nodes costs one
//! write per block touched instead of one per range: the controller folds every claim
//! waiting for the same block into one update.

use crate::claim::{claim_name, WeftClaimSpec};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
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
    /// One entry per range held, in the shape of a `WeftClaim`'s spec.
    #[serde(default)]
    pub claims: Vec<WeftClaimSpec>,
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
