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
#![forbid(unsafe_code)]
// kube's derive takes one `printcolumn(...)` per column, which this lint misreads as
// repeated attributes.
#![allow(clippy::duplicated_attributes)]
#![warn(missing_docs)]

mod claim_block;
mod conditions;
mod network;
mod node;

pub use claim_block::{
    block_name, block_of, claim_name, BlockClaim, WeftClaimBlock, WeftClaimBlockSpec, BLOCK_BITS,
};
pub use conditions::{condition, conditions_differ};
pub use network::{
    Ipv6Range, Ipv6Routing, Plan, PlannedRange, RangeUsage, SpecError, WeftNetwork,
    WeftNetworkSpec, WeftNetworkStatus,
};
pub use node::{WeftNode, WeftNodeSpec, WeftNodeStatus};

/// The CRDs, for `kubectl apply` and for the checked-in files.
pub fn crds(
) -> Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>
{
    use kube::CustomResourceExt;
    vec![WeftNetwork::crd(), WeftNode::crd(), WeftClaimBlock::crd()]
}

#[cfg(test)]
mod tests;
