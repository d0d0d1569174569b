//! weft's Kubernetes API (group `weft.dev`, version `v1alpha1`), shared by the controller
//! and weftd: the custom resources, generated from these Rust types (the schemas are
//! checked in under `crds/`; a test fails when they are stale), and the validation of
//! the network plan.
//!
//! | kind | scope | written by | what |
//! |---|---|---|---|
//! | `WeftNetwork` | cluster | the operator | the address plan: IPv6 ranges per zone, IPv4 overlay, VXLAN, modes |
//! | `WeftNode` | cluster, owned by its Node | controller (ranges), weftd (underlay, usage) | one node's allocation and identity |
//! | `WeftClaimBlock` | cluster | controller | the claims of 64 consecutive ranges, named after their block: the apiserver enforces uniqueness |
//! | `WeftPolicy` | cluster, spanned | controller | one NetworkPolicy compiled: rules over address groups and ipBlocks |
//! | `WeftAddressGroup` | cluster, spanned | controller | one slice of the pods a peer selector picks, as addresses and named ports |
//! | `WeftNodePolicy` | cluster, owned by its Node | controller (spec), weftd (status) | which policies apply to each pod of the node; how far weftd programmed them |
//! | `WeftPolicyIndex` | cluster, one | controller | the namespaces that have policies |
//!
//! "Spanned" objects carry labels naming the nodes that need them (`span`), and each
//! weftd watches only its own.
#![forbid(unsafe_code)]
// kube's derive takes one `printcolumn(...)` per column, which this lint misreads as
// repeated attributes.
#![allow(clippy::duplicated_attributes)]
#![warn(missing_docs)]

mod address_group;
mod claim_block;
mod conditions;
mod network;
mod node;
mod node_policy;
mod policy;
pub mod span;

pub use address_group::{
    slice_name, GroupMember, NamedPort, WeftAddressGroup, WeftAddressGroupSpec, ALL_PODS_GROUP,
    GROUP_SLICE_MEMBERS,
};
pub use claim_block::{
    block_name, block_of, claim_name, BlockClaim, WeftClaimBlock, WeftClaimBlockSpec, BLOCK_BITS,
};
pub use conditions::{condition, conditions_differ};
pub use network::{
    Ipv6Range, Ipv6Routing, Plan, PlannedRange, RangeUsage, SpecError, WeftNetwork,
    WeftNetworkSpec, WeftNetworkStatus,
};
pub use node::{WeftNode, WeftNodeSpec, WeftNodeStatus};
pub use node_policy::{
    PodPolicies, PolicedNamespace, WeftNodePolicy, WeftNodePolicySpec, WeftNodePolicyStatus,
    WeftPolicyIndex, WeftPolicyIndexSpec, POLICY_INDEX_NAME,
};
pub use policy::{
    policy_name, IpBlock, PolicyPeer, PolicyPort, PolicyRule, PolicySource, Protocol, WeftPolicy,
    WeftPolicySpec, WeftPolicyStatus,
};

/// The CRDs, for `kubectl apply` and for the checked-in files.
pub fn crds(
) -> Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>
{
    use kube::CustomResourceExt;
    vec![
        WeftNetwork::crd(),
        WeftNode::crd(),
        WeftClaimBlock::crd(),
        WeftPolicy::crd(),
        WeftAddressGroup::crd(),
        WeftNodePolicy::crd(),
        WeftPolicyIndex::crd(),
    ]
}

#[cfg(test)]
mod tests;
