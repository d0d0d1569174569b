//! NetworkPolicy resolution (design §1.3), pure: no client, no task. NetworkPolicies are
//! compiled into `WeftPolicy` specs whose peers name address groups ([`model`]); pods,
//! namespaces and policies feed an incremental [`Model`] (lookups in `index`,
//! resolution in `membership`) that answers every event with the [`Delta`] of the
//! objects to write; a group's members are split into `WeftAddressGroup` slices by
//! [`Slices`], which never moves a live member; spanned objects are labelled by
//! [`span_labels`].

mod delta;
mod error;
mod index;
mod labels;
mod membership;
mod model;
mod pod;
mod selector;
mod slices;

pub use delta::{Delta, GroupState, PolicyState, Snapshot, SpanChanges};
pub use error::{PolicyError, Problem};
pub use labels::{is_wide, span_labels};
pub use membership::Model;
pub use model::Key;
pub use pod::{PolicyPod, IP_FAMILIES_ANNOTATION};
pub use selector::Labels;
pub use slices::{slice_number, Slices};

#[cfg(test)]
#[path = "../tests/policy_membership.rs"]
mod tests;

#[cfg(test)]
#[path = "../tests/policy_properties.rs"]
mod properties;

#[cfg(test)]
#[path = "../tests/policy_scale.rs"]
mod scale;
