//! IPv4 egress NAT for pods, and the tunnel's exemption from connection tracking.
//!
//! ```text
//! table ip weft-nat {
//!   set pod-subnets-v4 { type ipv4_addr; flags interval; }   elements: the node's subnet
//!   chain postrouting { type nat hook postrouting priority srcnat; policy accept;
//!     ip saddr @pod-subnets-v4 oifname != "weft*" masquerade }
//! }
//! table inet weft {
//!   set tunnel-ports   { type inet_service; }                 elements: the VXLAN port
//!   chain tunnel-in   { type filter hook prerouting priority raw; policy accept;
//!     iifname <uplink> udp dport @tunnel-ports notrack }
//!   chain tunnel-out  { type filter hook output priority raw; policy accept;
//!     udp dport @tunnel-ports notrack }
//! }
//! ```
//!
//! - Pod traffic leaving through a weft interface (`weft-vxlan` to another node's pods,
//!   a host veth to this node's) is pod-to-pod and never NATed; anything else from the
//!   pods' subnet leaves the overlay and is masqueraded to the node's address. The rule
//!   names no peer, so peer changes never touch nftables.
//! - IPv6 is never NATed, nor tracked for NAT's sake: the NAT chain is in an `ip` table,
//!   so its `masquerade` turns connection tracking on for IPv4 only (see [`super`] for why an
//!   `inet` NAT chain would not do). A pod's IPv6 address is routable as it is.
//! - The `notrack` chains are in `inet weft`: the underlay may be IPv6, and a filter
//!   chain with `notrack` turns no connection tracking on.
//! - The VXLAN packets themselves (the node's own, to and from the tunnel port) need no
//!   connection tracking; `notrack` spares every encapsulated packet a conntrack lookup
//!   and entry. Pods' own flows stay tracked (kube-proxy's Service NAT needs that).

use super::table::{Chain, ChainKind, Element, Hook, Priority, Set, Table, Tables};
use crate::allocation::NodeAllocation;
use crate::node::Uplink;
use ipnet::{IpNet, Ipv4Net};
use weft_wire::HOST_VETH_PREFIX;

/// The set of pod subnets whose egress is masqueraded.
pub const POD_SUBNETS: &str = "pod-subnets-v4";
/// The set of the overlay's UDP ports.
pub const TUNNEL_PORTS: &str = "tunnel-ports";

/// What the NAT needs of the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressNat {
    /// The pods' subnet.
    pub subnet: Ipv4Net,
    /// The uplink, where tunnel packets arrive.
    pub uplink: Option<String>,
    /// The VXLAN UDP port.
    pub tunnel_port: u16,
}

impl EgressNat {
    /// The NAT a node needs: one serving IPv4 pods over the overlay, which needs an
    /// uplink with an address (the VXLAN source). Pods of a node without one reach only
    /// that node, so nothing of theirs leaves to be masqueraded.
    pub fn for_node(allocation: &NodeAllocation, uplink: &Uplink) -> Option<EgressNat> {
        let subnet = allocation.ipv4_subnet?;
        if !allocation.mode.has_ipv4() || uplink.vtep_address().is_none() || uplink.index.is_none()
        {
            return None;
        }
        Some(EgressNat {
            subnet,
            uplink: uplink.name.clone(),
            tunnel_port: allocation.vxlan_port,
        })
    }

    /// The NAT in `ip weft-nat`, the tunnel's exemption in `inet weft`.
    pub fn declare(&self, tables: &mut Tables) {
        self.declare_nat(tables);
        self.declare_untracked_tunnel(tables);
    }

    fn declare_nat(&self, tables: &mut Tables) {
        let (declaration, elements) = tables.table(Table::WeftNat);
        declaration.sets.push(Set {
            name: POD_SUBNETS,
            kind: "ipv4_addr",
            interval: true,
        });
        declaration.chains.push(Chain {
            name: "postrouting",
            kind: ChainKind::Nat,
            hook: Hook::Postrouting,
            priority: Priority::SrcNat,
            rules: vec![format!(
                "ip saddr @{POD_SUBNETS} oifname != \"{HOST_VETH_PREFIX}*\" masquerade"
            )],
        });
        elements
            .entry(POD_SUBNETS)
            .or_default()
            .insert(Element::Prefix(IpNet::V4(self.subnet)));
    }

    fn declare_untracked_tunnel(&self, tables: &mut Tables) {
        let (declaration, elements) = tables.table(Table::Weft);
        declaration.sets.push(Set {
            name: TUNNEL_PORTS,
            kind: "inet_service",
            interval: false,
        });
        if let Some(uplink) = &self.uplink {
            let rule = format!("iifname {uplink:?} udp dport @{TUNNEL_PORTS} notrack");
            declaration
                .chains
                .push(untracked("tunnel-in", Hook::Prerouting, rule));
        }
        let rule = format!("udp dport @{TUNNEL_PORTS} notrack");
        declaration
            .chains
            .push(untracked("tunnel-out", Hook::Output, rule));
        elements
            .entry(TUNNEL_PORTS)
            .or_default()
            .insert(Element::Port(self.tunnel_port));
    }
}

/// A chain before connection tracking (priority raw) holding one `notrack` rule.
fn untracked(name: &'static str, hook: Hook, rule: String) -> Chain {
    Chain {
        name,
        kind: ChainKind::Filter,
        hook,
        priority: Priority::Raw,
        rules: vec![rule],
    }
}
