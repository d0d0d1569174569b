//! The one place weft talks to the kernel's network stack: rtnetlink requests, network
//! namespace switches and per-interface sysctls. Every other crate calls these.
//!
//! A [`Netlink`] is one rtnetlink socket, bound for life to the namespace it was opened
//! in (like netavark, weft opens one per namespace and then works on both from the same
//! thread). Requests are async because rtnetlink is; [`run`] drives them on a
//! current-thread runtime, which is all the short-lived CNI plugin needs.
#![warn(missing_docs)]

mod error;
mod links;
mod netns;
mod objects;
pub mod sysctl;

pub use error::{Errno, NetlinkError};
pub use links::{LinkInfo, Netlink, VethSpec};
pub use netns::{Netns, NetnsGuard};
pub use objects::{NeighbourInfo, RouteInfo, RouteSpec, SCOPE_LINK, SCOPE_UNIVERSE};

use std::future::Future;

/// Runs `future` to completion on a fresh current-thread runtime. Cheap to build (no
/// thread pool), so the CNI plugin pays microseconds for it.
pub fn run<F: Future>(future: F) -> std::io::Result<F::Output> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    Ok(runtime.block_on(future))
}
