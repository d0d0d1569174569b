//! IPv6 `direct` routing (`--ipv6-routing direct`): the nodes share a link, and each
//! peer's delegated prefix is routed via the peer's underlay IPv6 address on the uplink.

use super::entry::{Entries, Key, Value};
use super::rejected;
use crate::error::Error;
use ipnet::IpNet;
use std::net::IpAddr;
use weft_wire::Peer;

/// The `direct` mode: routes leave through the uplink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Direct {
    /// The uplink's interface index.
    pub uplink: u32,
}

impl Direct {
    /// `route <ipv6Prefix> via <underlayIPv6> dev <uplink>`; a peer with a prefix but
    /// no underlay IPv6 address cannot be reached this way.
    pub fn peer_entries(&self, peer: &Peer) -> Result<Entries, Error> {
        let Some(prefix) = peer.ipv6_prefix else {
            return Ok(Entries::new());
        };
        let gateway = peer.underlay_ipv6.ok_or_else(|| {
            rejected(
                peer,
                format!("ipv6Prefix {prefix} needs underlayIPv6 for --ipv6-routing direct"),
            )
        })?;
        Ok(vec![(
            Key::Route(IpNet::V6(prefix)),
            Value::Route {
                gateway: IpAddr::V6(gateway),
                oif: self.uplink,
                source: None,
            },
        )])
    }
}
