//! IPv6 `fabric` routing (`--ipv6-routing fabric`, the default): the network itself
//! routes each node's delegated prefix to the node (AWS VPC prefix delegation, a BOSH
//! network), so a peer needs no kernel entry on this node.

use super::entry::Entries;
use weft_wire::Peer;

/// The `fabric` mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fabric;

impl Fabric {
    /// Nothing: the fabric delivers the peer's prefix.
    pub fn peer_entries(&self, _peer: &Peer) -> Entries {
        Entries::new()
    }
}
