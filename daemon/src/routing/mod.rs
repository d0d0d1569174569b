//! How peers are reached: one file per routing mode, each turning a peer into the kernel
//! entries it needs on this node ([`Key`] and [`Value`]). The datapath owns the generic
//! part (overlap checks, diff, apply, convergence) and asks the node's modes for entries.
//!
//! | mode | family | file |
//! |---|---|---|
//! | VXLAN overlay | IPv4 | [`vxlan`] |
//! | `direct` (`--ipv6-routing direct`) | IPv6 | [`direct`] |
//! | `fabric` (`--ipv6-routing fabric`) | IPv6 | [`fabric`] |
//!
//! A new mode is one more file and one more [`Routing`] variant.

mod direct;
mod entry;
mod fabric;
mod vxlan;

pub use direct::Direct;
pub use entry::{Entries, Key, Value};
pub use fabric::Fabric;
pub use vxlan::Vxlan;

use crate::error::Error;
use tracing::warn;
use weft_api::Ipv6Routing;
use weft_wire::{Mode, Peer};

/// One routing mode in force on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routing {
    Vxlan(Vxlan),
    Direct(Direct),
    Fabric(Fabric),
}

impl Routing {
    /// The entries `peer` needs in this mode; `Err` when it cannot be reached so (the
    /// datapath then leaves the peer out whole).
    pub fn peer_entries(&self, peer: &Peer) -> Result<Entries, Error> {
        match self {
            Routing::Vxlan(mode) => mode.peer_entries(peer),
            Routing::Direct(mode) => mode.peer_entries(peer),
            Routing::Fabric(mode) => Ok(mode.peer_entries(peer)),
        }
    }

    /// The IPv6 mode `routing` names, for a node serving `mode` with the uplink at
    /// `uplink` (none when the node has no IPv6).
    pub fn ipv6(mode: Mode, routing: Ipv6Routing, uplink: Option<u32>) -> Option<Routing> {
        if !mode.has_ipv6() {
            return None;
        }
        match (routing, uplink) {
            (Ipv6Routing::Fabric, _) => Some(Routing::Fabric(Fabric)),
            (Ipv6Routing::Direct, Some(uplink)) => Some(Routing::Direct(Direct { uplink })),
            (Ipv6Routing::Direct, None) => {
                warn!("--ipv6-routing direct needs an uplink (--underlay-interface): no IPv6 peer routes");
                None
            }
        }
    }
}

/// A peer this mode cannot program, and why.
fn rejected(peer: &Peer, problem: String) -> Error {
    Error::PeerRejected {
        peer: peer.name.clone(),
        problem,
    }
}
