//! What every other module uses, importing nothing of this crate: the reconcile's
//! [`Error`] (whose variant names are the metric labels), the field manager, the zone
//! label, why a node waits, and small helpers over ranges and owners.

use ipnet::IpNet;
use kube::ResourceExt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use weft_api::WeftNode;
use weft_wire::Family;

/// The field manager of every write, and the Events' reporting controller.
pub const MANAGER: &str = "weft-controller";
/// The Node label naming its zone.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// A reconcile that did not settle its node. [`Error::metric_label`] is the `error` label
/// of `weft_controller_reconcile_errors_total` and the reason of the node's condition.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("WeftNetwork {0} does not exist")]
    NetworkMissing(String),
    #[error("WeftNetwork {name} is invalid: {problems}")]
    InvalidNetwork { name: String, problems: String },
    #[error("{0}")]
    RangeExhausted(String),
    #[error("{0} candidates in a row were held by others")]
    Contention(usize),
    #[error("writing a claim: {0}")]
    ClaimWrite(#[source] Arc<kube::Error>),
    #[error("writing the WeftNode: {0}")]
    WeftNodeWrite(#[source] kube::Error),
    #[error("the WeftNode changed since it was read; retrying with what it says now")]
    WeftNodeChanged,
    #[error("writing the Node's podCIDRs: {0}")]
    NodeWrite(#[source] kube::Error),
}

impl Error {
    /// The metric label: the variant's name. The one place errors map to labels.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::NetworkMissing(_) => "NetworkMissing",
            Error::InvalidNetwork { .. } => "InvalidNetwork",
            Error::RangeExhausted(_) => "RangeExhausted",
            Error::Contention(_) => "Contention",
            Error::ClaimWrite(_) => "ClaimWrite",
            Error::WeftNodeWrite(_) => "WeftNodeWrite",
            Error::WeftNodeChanged => "WeftNodeChanged",
            Error::NodeWrite(_) => "NodeWrite",
        }
    }

    /// Whether the node waits for something outside the controller (space, a valid
    /// network) rather than a reconcile having failed.
    pub fn is_waiting(&self) -> bool {
        matches!(
            self,
            Error::RangeExhausted(_) | Error::InvalidNetwork { .. } | Error::NetworkMissing(_)
        )
    }

    /// When the node is tried again.
    pub fn retry_after(&self) -> Duration {
        match self {
            // The network watch and freed claims re-trigger these at once; the requeue is
            // a safety net.
            Error::NetworkMissing(_) | Error::InvalidNetwork { .. } => Duration::from_secs(30),
            Error::RangeExhausted(_) => Duration::from_secs(15),
            Error::Contention(_) | Error::WeftNodeChanged => Duration::from_millis(200),
            _ => Duration::from_secs(2),
        }
    }
}

/// Why a node waits: a condition reason and its message.
#[derive(Debug, Clone, PartialEq)]
pub struct Waiting {
    pub reason: &'static str,
    pub message: String,
}

/// Any text form of either family.
pub fn parse_cidr(text: &str) -> Option<IpNet> {
    weft_wire::parse_ipv6_prefix("cidr", text, 0..=128)
        .map(IpNet::V6)
        .or_else(|_| weft_wire::parse_ipv4_subnet("cidr", text, 0..=32).map(IpNet::V4))
        .ok()
}

pub fn family_of(net: IpNet) -> Family {
    match net {
        IpNet::V6(_) => Family::Ipv6,
        IpNet::V4(_) => Family::Ipv4,
    }
}

/// Whether the WeftNode belongs to the Node incarnation with this UID.
pub fn owned_by(wn: &WeftNode, uid: &str) -> bool {
    wn.owner_references()
        .iter()
        .any(|o| o.kind == "Node" && o.uid == uid)
}

/// Locks `m`. A panic while holding one of this crate's locks leaves consistent data
/// (each update is whole), so a poisoned lock is taken as it is.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_labels_are_the_variant_names() {
        let e = Error::InvalidNetwork {
            name: "default".into(),
            problems: "spec.mode: 'x'".into(),
        };
        assert_eq!(e.metric_label(), "InvalidNetwork");
        assert_eq!(
            e.to_string(),
            "WeftNetwork default is invalid: spec.mode: 'x'"
        );
        assert_eq!(
            Error::RangeExhausted(String::new()).metric_label(),
            "RangeExhausted"
        );
        assert_eq!(Error::Contention(64).metric_label(), "Contention");
    }

    #[test]
    fn cidrs_parse_in_any_text_form() {
        assert_eq!(parse_cidr("[2001:db8::]/80"), parse_cidr("2001:db8::/80"));
        assert_eq!(
            parse_cidr("2001:0DB8:0000:0000:0000:0000:0000:0000/80"),
            parse_cidr("2001:db8::/80")
        );
        assert_eq!(parse_cidr("2001:db8::5/80"), None);
        assert_eq!(
            parse_cidr("10.255.1.0/24").unwrap().to_string(),
            "10.255.1.0/24"
        );
    }
}
