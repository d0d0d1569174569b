//! Peers: the other nodes of the cluster as weftd needs to know them to reach their pods.
//! The standalone peers file (`weftd --peers FILE`) and, later, the Kubernetes source
//! both produce [`Peer`]s; the JSON shape below is a contract:
//!
//! ```json
//! [{"name": "node-b", "underlayIPv4": "192.0.2.12", "underlayIPv6": "2001:db8:ffff::12",
//!   "ipv6Prefix": "2001:db8:1000:2::/80", "ipv4Subnet": "10.255.2.0/24",
//!   "vtepMAC": "ee:ee:0a:ff:02:00"}]
//! ```
//!
//! Every field but `name` may be absent; `vtepMAC` defaults to [`vtep_mac`] of the subnet.

use crate::addr::{parse_ip, parse_ipv4_subnet, parse_ipv6_prefix};
use crate::names::parse_mac;
use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Delegated IPv6 prefix lengths a node may hold.
pub const PEER_IPV6_LENGTHS: std::ops::RangeInclusive<u8> = 64..=120;
/// IPv4 overlay subnet lengths a node may hold.
pub const PEER_IPV4_LENGTHS: std::ops::RangeInclusive<u8> = 16..=28;

/// One entry of the peers file as written, before validation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerEntry {
    /// The node's name.
    pub name: String,
    /// Its underlay IPv4 address (VXLAN over IPv4).
    #[serde(
        rename = "underlayIPv4",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub underlay_ipv4: Option<String>,
    /// Its underlay IPv6 address (VXLAN over IPv6, direct IPv6 routing).
    #[serde(
        rename = "underlayIPv6",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub underlay_ipv6: Option<String>,
    /// Its delegated IPv6 prefix.
    #[serde(
        rename = "ipv6Prefix",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv6_prefix: Option<String>,
    /// Its IPv4 overlay subnet.
    #[serde(
        rename = "ipv4Subnet",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv4_subnet: Option<String>,
    /// Its VXLAN device's MAC.
    #[serde(rename = "vtepMAC", default, skip_serializing_if = "Option::is_none")]
    pub vtep_mac: Option<String>,
}

/// A validated peer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Peer {
    /// The node's name.
    pub name: String,
    /// Underlay IPv4 address.
    pub underlay_ipv4: Option<Ipv4Addr>,
    /// Underlay IPv6 address.
    pub underlay_ipv6: Option<Ipv6Addr>,
    /// Delegated IPv6 prefix.
    pub ipv6_prefix: Option<Ipv6Net>,
    /// IPv4 overlay subnet.
    pub ipv4_subnet: Option<Ipv4Net>,
    /// VXLAN device MAC (given, or derived from the subnet).
    pub vtep_mac: Option<[u8; 6]>,
}

/// A peers-file entry that cannot be used, naming the entry, the field and the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("peer {index} ({name:?}): {problem}")]
pub struct PeerError {
    /// Position in the file.
    pub index: usize,
    /// The entry's name as given.
    pub name: String,
    /// What is wrong.
    pub problem: String,
}

impl PeerEntry {
    /// Validates one entry (`index` is its position, for messages).
    pub fn validate(&self, index: usize) -> Result<Peer, PeerError> {
        let fail = |problem: String| PeerError {
            index,
            name: self.name.clone(),
            problem,
        };
        if self.name.trim().is_empty() {
            return Err(fail("name: must not be empty".into()));
        }
        let underlay_ipv4 = match self
            .underlay_ipv4
            .as_deref()
            .map(|t| parse_ip("underlayIPv4", t))
        {
            None => None,
            Some(Ok(IpAddr::V4(a))) => Some(a),
            Some(Ok(IpAddr::V6(_))) => {
                return Err(fail(format!(
                    "underlayIPv4: '{}' is an IPv6 address",
                    self.underlay_ipv4.as_deref().unwrap_or_default()
                )))
            }
            Some(Err(e)) => return Err(fail(e.to_string())),
        };
        let underlay_ipv6 = match self
            .underlay_ipv6
            .as_deref()
            .map(|t| parse_ip("underlayIPv6", t))
        {
            None => None,
            Some(Ok(IpAddr::V6(a))) => Some(a),
            Some(Ok(IpAddr::V4(_))) => {
                return Err(fail(format!(
                    "underlayIPv6: '{}' is an IPv4 address",
                    self.underlay_ipv6.as_deref().unwrap_or_default()
                )))
            }
            Some(Err(e)) => return Err(fail(e.to_string())),
        };
        let ipv6_prefix = self
            .ipv6_prefix
            .as_deref()
            .map(|t| parse_ipv6_prefix("ipv6Prefix", t, PEER_IPV6_LENGTHS))
            .transpose()
            .map_err(|e| fail(e.to_string()))?;
        let ipv4_subnet = self
            .ipv4_subnet
            .as_deref()
            .map(|t| parse_ipv4_subnet("ipv4Subnet", t, PEER_IPV4_LENGTHS))
            .transpose()
            .map_err(|e| fail(e.to_string()))?;
        let vtep_mac = match &self.vtep_mac {
            Some(text) => Some(parse_mac(text).map_err(|e| fail(format!("vtepMAC: {e}")))?),
            None => ipv4_subnet.map(vtep_mac),
        };
        if underlay_ipv4.is_none() && underlay_ipv6.is_none() {
            return Err(fail("has neither underlayIPv4 nor underlayIPv6".into()));
        }
        if ipv6_prefix.is_none() && ipv4_subnet.is_none() {
            return Err(fail("has neither ipv6Prefix nor ipv4Subnet".into()));
        }
        Ok(Peer {
            name: self.name.trim().to_owned(),
            underlay_ipv4,
            underlay_ipv6,
            ipv6_prefix,
            ipv4_subnet,
            vtep_mac,
        })
    }
}

impl Peer {
    /// The peer's overlay gateway: its subnet's network address, held by its VXLAN
    /// device (the Silk scheme: the route to a peer's subnet goes via this address).
    pub fn overlay_gateway(&self) -> Option<Ipv4Addr> {
        self.ipv4_subnet.map(|s| s.network())
    }
}

/// The VXLAN device MAC of the node holding `subnet`: `ee:ee` and the subnet's network
/// address (10.255.1.0/24 -> ee:ee:0a:ff:01:00), locally administered unicast. Derived,
/// so a restarted weftd keeps its MAC and peers need not be told.
pub fn vtep_mac(subnet: Ipv4Net) -> [u8; 6] {
    let [a, b, c, d] = subnet.network().octets();
    [0xee, 0xee, a, b, c, d]
}

/// Parses a peers file: a JSON array of [`PeerEntry`]. A document that is not such an
/// array is an error; each bad entry is returned beside the good ones, never fatal.
pub fn parse_peers(json: &[u8]) -> Result<(Vec<Peer>, Vec<PeerError>), String> {
    let entries: Vec<serde_json::Value> =
        serde_json::from_slice(json).map_err(|e| format!("not a JSON array of peers: {e}"))?;
    let mut peers = Vec::new();
    let mut errors = Vec::new();
    for (index, value) in entries.into_iter().enumerate() {
        let name = value
            .get("name")
            .and_then(|n| n.as_str())
            .unwrap_or_default()
            .to_owned();
        match serde_json::from_value::<PeerEntry>(value) {
            Ok(entry) => match entry.validate(index) {
                Ok(peer) => peers.push(peer),
                Err(e) => errors.push(e),
            },
            Err(e) => errors.push(PeerError {
                index,
                name,
                problem: e.to_string(),
            }),
        }
    }
    Ok((peers, errors))
}

#[cfg(test)]
#[path = "tests/peers.rs"]
mod tests;
