//! Who may send the node VXLAN packets: the current peers, from their underlay
//! addresses, and nobody else. The VXLAN device decapsulates any UDP packet to its port
//! and delivers the inner frame as if it came from the overlay, so without this guard
//! any host that reaches the node's port (an underlay neighbour, a pod of this node, a
//! pod elsewhere through the overlay itself) injects packets that look like another
//! node's pods. RFC 7348 section 7 names this attack (spurious MAC-over-UDP frames) and
//! leaves the defence to mechanisms outside VXLAN, such as 5-tuple ACLs: this is one.
//!
//! ```text
//! table inet weft {
//!   set tunnel-ports    { type inet_service; }   elements: the VXLAN port (egress_nat)
//!   set tunnel-peers-v4 { type ipv4_addr; }      elements: every peer's underlay IPv4
//!   set tunnel-peers-v6 { type ipv6_addr; }      elements: every peer's underlay IPv6
//!   chain tunnel-guard { type filter hook input priority filter; policy accept;
//!     udp dport @tunnel-ports iifname "weft*" drop
//!     udp dport @tunnel-ports ip saddr != @tunnel-peers-v4 drop
//!     udp dport @tunnel-ports ip6 saddr != @tunnel-peers-v6 drop }
//!   chain tunnel-guard-forward { type filter hook forward priority filter; policy accept;
//!     udp dport @tunnel-ports iifname "weft*" ip daddr @tunnel-peers-v4 drop
//!     udp dport @tunnel-ports iifname "weft*" ip6 daddr @tunnel-peers-v6 drop }
//! }
//! ```
//!
//! - Nothing that enters through a weft interface (a pod's host veth, or the VXLAN
//!   device: a frame that itself carried a VXLAN packet) reaches the port, whatever its
//!   source address: pods are never peers.
//! - Anything else must come from a peer's underlay address, of either family: the
//!   peers the datapath accepted (see [`crate::datapath`]), each with both of its
//!   underlay addresses.
//! - A pod's packet to a peer's VXLAN port is dropped where it leaves its own node:
//!   egress NAT would give it the node's address, which the peer trusts.
//! - A peer change adds and deletes set elements only: O(change) statements, the chain
//!   and its rules untouched. Until the first peer list arrives the sets are left as the
//!   kernel holds them, so a restarting weftd does not cut the overlay off.

use super::egress_nat::{EgressNat, TUNNEL_PORTS};
use super::table::{Chain, ChainKind, Element, Hook, Priority, Set, Table, Tables};
use crate::allocation::NodeAllocation;
use crate::node::Uplink;
use ipnet::IpNet;
use std::collections::BTreeSet;
use std::net::IpAddr;
use weft_wire::HOST_VETH_PREFIX;

/// The set of the peers' underlay IPv4 addresses.
pub const PEERS_V4: &str = "tunnel-peers-v4";
/// The set of the peers' underlay IPv6 addresses.
pub const PEERS_V6: &str = "tunnel-peers-v6";

/// The guard of the overlay's port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelGuard {
    /// The peers' underlay addresses; `None` until the first peer list arrives.
    pub peers: Option<BTreeSet<IpAddr>>,
}

impl TunnelGuard {
    /// The guard a node needs: one where the overlay runs, the nodes whose IPv4 egress
    /// is NATed (IPv4 pods, an uplink with an address); peers unknown yet.
    pub fn for_node(allocation: &NodeAllocation, uplink: &Uplink) -> Option<TunnelGuard> {
        EgressNat::for_node(allocation, uplink).map(|_| TunnelGuard { peers: None })
    }

    /// Its sets and chain in `inet weft`. The port set is [`super::EgressNat`]'s, which
    /// every node with an overlay declares.
    pub fn declare(&self, tables: &mut Tables) {
        let (declaration, elements) = tables.table(Table::Weft);
        for (name, kind) in [(PEERS_V4, "ipv4_addr"), (PEERS_V6, "ipv6_addr")] {
            declaration.sets.push(Set {
                name,
                kind,
                interval: false,
            });
        }
        declaration.chains.push(Chain {
            name: "tunnel-guard",
            kind: ChainKind::Filter,
            hook: Hook::Input,
            priority: Priority::Filter,
            rules: vec![
                format!("udp dport @{TUNNEL_PORTS} iifname \"{HOST_VETH_PREFIX}*\" drop"),
                format!("udp dport @{TUNNEL_PORTS} ip saddr != @{PEERS_V4} drop"),
                format!("udp dport @{TUNNEL_PORTS} ip6 saddr != @{PEERS_V6} drop"),
            ],
        });
        declaration.chains.push(Chain {
            name: "tunnel-guard-forward",
            kind: ChainKind::Filter,
            hook: Hook::Forward,
            priority: Priority::Filter,
            rules: vec![
                format!("udp dport @{TUNNEL_PORTS} iifname \"{HOST_VETH_PREFIX}*\" ip daddr @{PEERS_V4} drop"),
                format!("udp dport @{TUNNEL_PORTS} iifname \"{HOST_VETH_PREFIX}*\" ip6 daddr @{PEERS_V6} drop"),
            ],
        });
        let Some(peers) = &self.peers else {
            return;
        };
        let (v4, v6): (BTreeSet<Element>, BTreeSet<Element>) = (
            addresses(peers, IpAddr::is_ipv4),
            addresses(peers, IpAddr::is_ipv6),
        );
        elements.insert(PEERS_V4, v4);
        elements.insert(PEERS_V6, v6);
    }
}

fn addresses(peers: &BTreeSet<IpAddr>, family: fn(&IpAddr) -> bool) -> BTreeSet<Element> {
    peers
        .iter()
        .filter(|a| family(a))
        .map(|a| Element::Prefix(IpNet::from(*a)))
        .collect()
}

#[cfg(test)]
#[path = "../tests/tunnel_guard.rs"]
mod tests;
