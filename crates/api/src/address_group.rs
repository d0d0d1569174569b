//! `WeftAddressGroup`: the pods one peer selector picks, as addresses (and the named ports
//! rules ask for), in slices of at most [`GROUP_SLICE_MEMBERS`] members so a member change
//! rewrites one slice, not the group.
//!
//! A group is named `g-<12 hex digits>` after its normalized selector (Antrea's
//! `GenerateNormalizedName`): every policy naming the same peers shares it. Slice objects
//! are named `<group>-<n>`; a member stays in its slice while it lives (moving it would be
//! a removal in one write and an addition in another: a moment of deny).

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::policy::Protocol;

/// The group of every pod of the cluster, which named ports of egress rules resolve
/// against when the rule names no pod peer (every peer, or only ipBlocks): the port's
/// number is the destination pod's. The controller writes it (slices `g-all-<n>`, span:
/// the nodes of pods such rules select) only while some rule needs it.
pub const ALL_PODS_GROUP: &str = "g-all";

/// Members per slice at most: a full slice is ~7 KiB of JSON.
pub const GROUP_SLICE_MEMBERS: usize = 100;

/// One slice of an address group.
#[derive(CustomResource, Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "weft.dev",
    version = "v1alpha1",
    kind = "WeftAddressGroup",
    plural = "weftaddressgroups",
    shortname = "wgroup",
    derive = "PartialEq",
    derive = "Default",
    printcolumn(name = "Group", type_ = "string", json_path = ".spec.group"),
    printcolumn(name = "Selector", type_ = "string", json_path = ".spec.selector"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct WeftAddressGroupSpec {
    /// The group this slice belongs to (`g-<hash>`), as `WeftPolicy` peers name it.
    pub group: String,
    /// The normalized selector, for people: `<scope>|<namespace selector>|<pod selector>`.
    pub selector: String,
    /// The members in this slice.
    #[serde(default)]
    pub members: Vec<GroupMember>,
}

/// One pod of the group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupMember {
    /// The pod's UID (slices keep a member in place by it).
    pub uid: String,
    /// Its addresses, as its `status.podIPs`.
    pub ips: Vec<String>,
    /// Its named container ports that some rule naming this group uses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<NamedPort>,
}

/// A named container port.
#[derive(
    Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub struct NamedPort {
    /// The name.
    pub name: String,
    /// The protocol.
    #[serde(default)]
    pub protocol: Protocol,
    /// The number.
    pub port: u16,
}

/// The object name of slice `index` of `group`.
pub fn slice_name(group: &str, index: usize) -> String {
    format!("{group}-{index}")
}
