//! NetworkPolicy on the node: what the controller compiled for this node's pods
//! (`WeftPolicy`, `WeftAddressGroup`, `WeftNodePolicy`, `WeftPolicyIndex`, each watched
//! through its span label) turned into the firewall's NetworkPolicy concern.
//! docs/networkpolicy-design.md §2 and §3.

mod counts;
mod engine;
mod gate;
mod inputs;
mod report;
mod saved;
mod spanned;
mod watch;

pub use engine::{EngineNode, Pods, PolicyEngine};
pub use gate::PolicyGate;
pub use report::{report, Applied};
pub use saved::load as load_saved;
pub use watch::{feed, Progress};
