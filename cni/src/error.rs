//! Every way the plugin can fail, and the one place each maps to a CNI error code
//! (CNI spec 1.1 "Error"). The snake-case label of each variant is also its metric label.
//!
//! weft's own codes (100+):
//!
//! | code | meaning |
//! |------|---------|
//! | 100 | an address family's range is exhausted |
//! | 101 | the attachment (container ID, ifname) already has addresses: ADD twice |
//! | 102 | the interface name already exists in the pod's namespace |
//! | 103 | the kernel refused a network change (the message names the operation) |
//! | 104 | CHECK found drift (the message says what) |
//! | 105 | GC finished with errors (details list them) |
//! | 106 | weftd failed internally (e.g. its state store) |

use serde::Serialize;
use weft_netlink::NetlinkError;

/// A plugin failure.
#[derive(Debug, thiserror::Error)]
pub enum CniError {
    /// The config's cniVersion is not one weft speaks, or the command needs a newer one.
    #[error("{0}")]
    IncompatibleVersion(String),
    /// A required environment variable is missing or malformed.
    #[error("{0}")]
    InvalidEnv(String),
    /// The config or CNI_ARGS did not decode (broken JSON, wrong types).
    #[error("{0}")]
    Decode(String),
    /// The config decoded but a value is not acceptable.
    #[error("{0}")]
    InvalidConfig(String),
    /// The pod's network namespace cannot be opened.
    #[error("{0}")]
    UnknownContainer(String),
    /// Reading input or talking to the kernel's files failed.
    #[error("{0}")]
    Io(String),
    /// A transient condition: retry later.
    #[error("{0}")]
    TryAgainLater(String),
    /// weftd is not there or did not answer like weftd.
    #[error("{0}")]
    DaemonUnavailable(String),
    /// No free address.
    #[error("{0}")]
    Exhausted(String),
    /// ADD for an attachment that exists.
    #[error("{0}")]
    AlreadyAllocated(String),
    /// CNI_IFNAME exists in the pod.
    #[error("{0}")]
    InterfaceExists(String),
    /// The kernel refused a change.
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    /// CHECK found drift.
    #[error("{0}")]
    Drift(String),
    /// GC could not remove everything.
    #[error("{0}")]
    GcIncomplete(String),
    /// weftd failed.
    #[error("{0}")]
    DaemonInternal(String),
}

impl CniError {
    /// The CNI error code.
    pub fn code(&self) -> u32 {
        match self {
            CniError::IncompatibleVersion(_) => 1,
            CniError::UnknownContainer(_) => 3,
            CniError::InvalidEnv(_) => 4,
            CniError::Io(_) => 5,
            CniError::Decode(_) => 6,
            CniError::InvalidConfig(_) => 7,
            CniError::TryAgainLater(_) => 11,
            CniError::DaemonUnavailable(_) => 50,
            CniError::Exhausted(_) => 100,
            CniError::AlreadyAllocated(_) => 101,
            CniError::InterfaceExists(_) => 102,
            CniError::Netlink(_) => 103,
            CniError::Drift(_) => 104,
            CniError::GcIncomplete(_) => 105,
            CniError::DaemonInternal(_) => 106,
        }
    }

    /// The metric label.
    pub fn label(&self) -> &'static str {
        match self {
            CniError::IncompatibleVersion(_) => "incompatible_version",
            CniError::UnknownContainer(_) => "unknown_container",
            CniError::InvalidEnv(_) => "invalid_env",
            CniError::Io(_) => "io",
            CniError::Decode(_) => "decode",
            CniError::InvalidConfig(_) => "invalid_config",
            CniError::TryAgainLater(_) => "try_again_later",
            CniError::DaemonUnavailable(_) => "daemon_unavailable",
            CniError::Exhausted(_) => "exhausted",
            CniError::AlreadyAllocated(_) => "already_allocated",
            CniError::InterfaceExists(_) => "interface_exists",
            CniError::Netlink(_) => "netlink",
            CniError::Drift(_) => "drift",
            CniError::GcIncomplete(_) => "gc_incomplete",
            CniError::DaemonInternal(_) => "daemon_internal",
        }
    }

    /// The spec's error object.
    pub fn to_json(&self, cni_version: &str, details: Option<String>) -> String {
        #[derive(Serialize)]
        struct ErrorJson<'a> {
            #[serde(rename = "cniVersion")]
            cni_version: &'a str,
            code: u32,
            msg: String,
            #[serde(skip_serializing_if = "Option::is_none")]
            details: Option<String>,
        }
        let body = ErrorJson {
            cni_version,
            code: self.code(),
            msg: self.to_string(),
            details,
        };
        serde_json::to_string(&body).unwrap_or_else(|_| {
            format!(r#"{{"cniVersion":"{cni_version}","code":{}}}"#, self.code())
        })
    }
}

/// Plugin result.
pub type Result<T, E = CniError> = std::result::Result<T, E>;

#[cfg(test)]
#[path = "tests/error.rs"]
mod tests;
