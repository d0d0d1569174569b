//! What a pod reaches on its own node, a choice (`--pod-host-access`), and which of
//! the node's weft addresses it answers ARP for where, not a choice.
//!
//! ```text
//! table arp weft {                                   when the node serves IPv4
//!   chain input { type filter hook input priority filter; policy accept;
//!     iifname != "weft*" arp operation request arp daddr ip { 169.254.1.1, <overlay gateway> } drop }
//! }
//! table inet weft {                                  --pod-host-access drop only
//!   chain host-guard { type filter hook input priority filter; policy accept;
//!     iifname != "weft*" accept
//!     iifname "weft-vxlan" accept
//!     ct state established,related accept
//!     ct status dnat accept
//!     meta l4proto { icmp, ipv6-icmp } accept
//!     meta l4proto { tcp, udp } th dport 53 accept
//!     drop }
//! }
//! ```
//!
//! - `accept` (the default): a pod reaches every port of its node, as on a node
//!   without weft, as with Cilium (its host firewall is off by default) and with the
//!   `ACCEPT` Calico's manifests set for `defaultEndpointToHostAction`. A real cluster
//!   counts on it: Prometheus and metrics-server (pods) scrape the node-exporter, the
//!   kubelet and weftd of their own node on the node's address; agents on the host
//!   network (logging, tracing) are sent to at `status.hostIP`. Those endpoints
//!   authenticate (the kubelet) or are read-only (`/metrics`).
//! - `drop`: a pod opens no connection to its node, but for what a pod cannot work
//!   without: ICMP and ICMPv6 (ping, errors, path MTU, neighbour discovery and MLD on
//!   its veth), replies to connections the node opened (kubelet probes come from the
//!   node), connections kube-proxy DNATed to the node itself (a Service whose endpoint
//!   is on the host network, such as the apiserver on a control-plane node; hostPort
//!   and NodePort), and DNS (a node-local resolver such as NodeLocal DNSCache). Only
//!   the pods' own veths are filtered: pods of other nodes reach this node like any
//!   host. `ct` turns connection tracking on for both families of `inet weft` (kube-proxy
//!   does anyway on a cluster node).
//! - ARP: the pods' gateway (169.254.1.1 on `lo`) and the overlay gateway (on
//!   `weft-vxlan`) are the node's addresses, and Linux answers ARP for any of its
//!   addresses on any interface (`arp_ignore` 0). Asked on the uplink, the node would
//!   claim 169.254.1.1 on the underlay's link. Requests for them are answered on weft's
//!   interfaces only; the rest of the node's ARP is untouched (a per-interface
//!   `arp_ignore` would change it for every address of the uplink).

use super::table::{Chain, ChainKind, Hook, Priority, Table, Tables};
use crate::allocation::NodeAllocation;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;
use weft_wire::{GATEWAY_V4, HOST_VETH_PREFIX};

/// What a pod may reach on its own node (`--pod-host-access`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PodHostAccess {
    /// Every port.
    #[default]
    Accept,
    /// ICMP, replies, DNATed Services and DNS only.
    Drop,
}

impl FromStr for PodHostAccess {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "accept" => Ok(PodHostAccess::Accept),
            "drop" => Ok(PodHostAccess::Drop),
            other => Err(format!("'{other}': expected accept or drop")),
        }
    }
}

impl fmt::Display for PodHostAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PodHostAccess::Accept => "accept",
            PodHostAccess::Drop => "drop",
        })
    }
}

/// The node's protection from its pods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostProtection {
    pub access: PodHostAccess,
    /// The node's IPv4 addresses that only weft's interfaces answer ARP for.
    pub gateways: Vec<Ipv4Addr>,
}

impl HostProtection {
    /// The protection a node needs; `None` when there is nothing to declare (pods reach
    /// every port, and no IPv4 gateway is served).
    pub fn for_node(allocation: &NodeAllocation, access: PodHostAccess) -> Option<HostProtection> {
        let gateways: Vec<Ipv4Addr> = match allocation.ipv4_subnet {
            Some(subnet) if allocation.mode.has_ipv4() => vec![GATEWAY_V4, subnet.network()],
            _ => Vec::new(),
        };
        if access == PodHostAccess::Accept && gateways.is_empty() {
            return None;
        }
        Some(HostProtection { access, gateways })
    }

    pub fn declare(&self, tables: &mut Tables) {
        if !self.gateways.is_empty() {
            self.declare_arp(tables);
        }
        if self.access == PodHostAccess::Drop {
            self.declare_host_guard(tables);
        }
    }

    fn declare_arp(&self, tables: &mut Tables) {
        let (declaration, _) = tables.table(Table::WeftArp);
        let gateways: Vec<String> = self.gateways.iter().map(ToString::to_string).collect();
        declaration.chains.push(Chain {
            name: "input",
            kind: ChainKind::Filter,
            hook: Hook::Input,
            priority: Priority::Filter,
            rules: vec![format!(
                "iifname != \"{HOST_VETH_PREFIX}*\" arp operation request arp daddr ip {{ {} }} drop",
                gateways.join(", ")
            )],
        });
    }

    fn declare_host_guard(&self, tables: &mut Tables) {
        let (declaration, _) = tables.table(Table::Weft);
        let overlay = crate::datapath::VXLAN_DEVICE;
        declaration.chains.push(Chain {
            name: "host-guard",
            kind: ChainKind::Filter,
            hook: Hook::Input,
            priority: Priority::Filter,
            rules: vec![
                format!("iifname != \"{HOST_VETH_PREFIX}*\" accept"),
                format!("iifname \"{overlay}\" accept"),
                "ct state established,related accept".into(),
                "ct status dnat accept".into(),
                "meta l4proto { icmp, ipv6-icmp } accept".into(),
                "meta l4proto { tcp, udp } th dport 53 accept".into(),
                "drop".into(),
            ],
        });
    }
}

#[cfg(test)]
#[path = "../tests/host_protection.rs"]
mod tests;
