//! Netlink failures, carrying what was attempted.

/// The errno values weft decides on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Errno {
    /// EEXIST: the object is there already.
    Exists,
    /// ENODEV / ENOENT / ESRCH: the object is not there.
    NotFound,
    /// Anything else.
    Other(i32),
}

/// A failed netlink operation.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// The kernel refused.
    #[error("{operation}: {message}")]
    Kernel {
        /// What weft tried, e.g. "create veth weft0123 / eth0".
        operation: String,
        /// The kernel's answer.
        message: String,
        /// Its errno, when it gave one.
        errno: Option<i32>,
    },
    /// Opening a socket or switching namespace failed.
    #[error("{operation}: {source}")]
    Io {
        /// What weft tried.
        operation: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
}

const EEXIST: i32 = 17;
const ENODEV: i32 = 19;
const ENOENT: i32 = 2;
const ESRCH: i32 = 3;

impl NetlinkError {
    pub(crate) fn from_errno(operation: impl Into<String>, errno: i32) -> Self {
        NetlinkError::Kernel {
            operation: operation.into(),
            message: std::io::Error::from_raw_os_error(errno).to_string(),
            errno: Some(errno),
        }
    }

    pub(crate) fn io(operation: impl Into<String>, source: std::io::Error) -> Self {
        NetlinkError::Io {
            operation: operation.into(),
            source,
        }
    }

    /// The errno class, for callers that treat "already there" or "already gone" as fine.
    pub fn errno(&self) -> Option<Errno> {
        let n = match self {
            NetlinkError::Kernel { errno, .. } => (*errno)?,
            NetlinkError::Io { source, .. } => source.raw_os_error()?,
        };
        Some(match n {
            EEXIST => Errno::Exists,
            ENODEV | ENOENT | ESRCH => Errno::NotFound,
            other => Errno::Other(other),
        })
    }
}
