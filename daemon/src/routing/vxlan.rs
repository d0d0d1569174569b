//! IPv4 over the VXLAN overlay, the Silk/Flannel scheme: per peer a route to its subnet
//! via its overlay gateway (onlink), a permanent neighbour entry gateway -> VTEP MAC and
//! a permanent FDB entry VTEP MAC -> underlay address. The device learns nothing: every
//! remote MAC is one weftd wrote.

use super::entry::{Entries, Key, Value};
use super::rejected;
use crate::error::Error;
use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr};
use weft_wire::{Peer, UnderlayFamily};

/// The VXLAN device as the mode needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vxlan {
    /// The device's interface index.
    pub index: u32,
    /// The underlay family, which decides the peer address used as FDB destination.
    pub family: UnderlayFamily,
    /// This node's overlay gateway address, the source of its own overlay traffic.
    pub source: Ipv4Addr,
}

impl Vxlan {
    /// The route, neighbour and FDB entry of a peer with an IPv4 subnet.
    pub fn peer_entries(&self, peer: &Peer) -> Result<Entries, Error> {
        let Some(subnet) = peer.ipv4_subnet else {
            return Ok(Entries::new());
        };
        let (address, field) = match self.family {
            UnderlayFamily::Ipv4 => (peer.underlay_ipv4.map(IpAddr::V4), "underlayIPv4"),
            UnderlayFamily::Ipv6 => (peer.underlay_ipv6.map(IpAddr::V6), "underlayIPv6"),
        };
        let destination = address.ok_or_else(|| {
            rejected(
                peer,
                format!(
                    "ipv4Subnet {subnet} needs {field}: this node's VXLAN underlay is that family"
                ),
            )
        })?;
        let mac = peer.vtep_mac.unwrap_or_else(|| weft_wire::vtep_mac(subnet));
        let gateway = subnet.network();
        Ok(vec![
            (
                Key::Route(IpNet::V4(subnet)),
                Value::Route {
                    gateway: IpAddr::V4(gateway),
                    oif: self.index,
                    source: Some(IpAddr::V4(self.source)),
                },
            ),
            (
                Key::Neighbour(gateway),
                Value::Neighbour {
                    mac,
                    permanent: true,
                },
            ),
            (
                Key::Fdb(mac),
                Value::Fdb {
                    destination,
                    permanent: true,
                },
            ),
        ])
    }
}
