//! The dynamic state NetworkPolicy wants in `inet weft`: sets with their elements,
//! profile chains with their rules, and the per-pod elements of the static maps and
//! sets. Plain data: [`super::compile`] makes it, [`super::script`] turns two of them
//! into the `nft` transaction between them.

use ipnet::IpNet;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Display};
use std::net::IpAddr;
use weft_api::Protocol;

/// An address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub const BOTH: [Family; 2] = [Family::V4, Family::V6];

    pub fn of(address: &IpAddr) -> Family {
        match address {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    pub fn of_net(net: &IpNet) -> Family {
        Family::of(&net.addr())
    }

    /// The suffix of its sets' names.
    pub fn suffix(self) -> &'static str {
        match self {
            Family::V4 => "v4",
            Family::V6 => "v6",
        }
    }

    /// nft's payload keyword for its header (`ip saddr`, `ip6 saddr`).
    pub fn header(self) -> &'static str {
        match self {
            Family::V4 => "ip",
            Family::V6 => "ip6",
        }
    }

    /// nft's address type.
    pub fn address_type(self) -> &'static str {
        match self {
            Family::V4 => "ipv4_addr",
            Family::V6 => "ipv6_addr",
        }
    }
}

/// What a dynamic set holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SetKind {
    /// Addresses of one family (group members).
    Addresses(Family),
    /// Prefixes of one family (an ipBlock's CIDR or exceptions): `flags interval`.
    Prefixes(Family),
    /// (address, protocol, port) of one family: named ports.
    AddressPorts(Family),
}

impl SetKind {
    /// The body of its `set` statement.
    pub fn declaration(self) -> String {
        match self {
            SetKind::Addresses(family) => format!("type {};", family.address_type()),
            SetKind::Prefixes(family) => {
                format!("type {}; flags interval;", family.address_type())
            }
            SetKind::AddressPorts(family) => format!(
                "type {} . inet_proto . inet_service;",
                family.address_type()
            ),
        }
    }
}

/// One element of a dynamic set, in its nft form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SetElement {
    Address(IpAddr),
    Prefix(IpNet),
    AddressPort(IpAddr, Protocol, u16),
}

impl Display for SetElement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetElement::Address(address) => write!(f, "{address}"),
            SetElement::Prefix(net) => write!(f, "{net}"),
            SetElement::AddressPort(address, protocol, port) => {
                write!(f, "{address} . {} . {port}", protocol_name(*protocol))
            }
        }
    }
}

/// nft's name of a protocol (`meta l4proto tcp`).
pub fn protocol_name(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
        Protocol::Sctp => "sctp",
    }
}

/// A dynamic set: its type and elements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynamicSet {
    pub kind: SetKind,
    pub elements: BTreeSet<SetElement>,
}

/// A local pod's verdict in one direction (its element in `np-ingress-pods` or
/// `np-egress-pods`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verdict {
    /// Not isolated in that direction.
    Accept,
    /// Isolated while its policies are not known (pending).
    Drop,
    /// Judged by its profile's chain.
    Jump(String),
}

impl Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Accept => f.write_str("accept"),
            Verdict::Drop => f.write_str("drop"),
            Verdict::Jump(chain) => write!(f, "jump {chain}"),
        }
    }
}

/// Everything NetworkPolicy keeps in `inet weft` beyond the static declaration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    /// Dynamic sets by name.
    pub sets: BTreeMap<String, DynamicSet>,
    /// Profile chains by name, each with its rules in order.
    pub chains: BTreeMap<String, Vec<String>>,
    /// `np-ingress-pods`: host veth → verdict.
    pub ingress: BTreeMap<String, Verdict>,
    /// `np-egress-pods`: host veth → verdict.
    pub egress: BTreeMap<String, Verdict>,
    /// `np-self`: host veths whose pod may reach itself (every local pod).
    pub own: BTreeSet<String>,
    /// `np-v4-off`: host veths of pods keeping IPv6 only.
    pub v4_off: BTreeSet<String>,
    /// `np-v6-off`: host veths of pods keeping IPv4 only.
    pub v6_off: BTreeSet<String>,
}

impl Desired {
    /// The host veths with `family` off: `np-v4-off` or `np-v6-off`.
    pub fn off_mut(&mut self, family: Family) -> &mut BTreeSet<String> {
        match family {
            Family::V4 => &mut self.v4_off,
            Family::V6 => &mut self.v6_off,
        }
    }
}
