//! The kernel entries a routing mode asks for, by identity. Shared by the routing modes
//! (which yield them) and the datapath (which diffs and applies them); imports nothing
//! of weftd.

use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr};

/// One kernel object weft owns, by identity. Variant order is the order removals are
/// applied in (a route goes before the neighbour it uses; upserts run the other way).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Key {
    /// A route (protocol-tagged, main table) to a peer's subnet or prefix.
    Route(IpNet),
    /// A permanent neighbour entry on the VXLAN device: a peer's overlay gateway.
    Neighbour(Ipv4Addr),
    /// A permanent FDB entry on the VXLAN device: a peer's VTEP MAC.
    Fdb([u8; 6]),
}

/// The content a [`Key`] should have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// Next hop, output interface, preferred source.
    Route {
        gateway: IpAddr,
        oif: u32,
        source: Option<IpAddr>,
    },
    /// The MAC; `permanent` is false only for entries read from the kernel that are
    /// not (they never equal a desired value, so they get replaced).
    Neighbour { mac: [u8; 6], permanent: bool },
    /// The underlay address the MAC's frames are sent to.
    Fdb {
        destination: IpAddr,
        permanent: bool,
    },
}

/// The entries one peer needs from one routing mode.
pub type Entries = Vec<(Key, Value)>;
