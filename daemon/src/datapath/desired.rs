//! What the node's kernel should hold for its peers, computed from the peer list alone,
//! and the difference between two such states. Pure: no I/O, so convergence's decisions
//! are unit-tested here and the kernel module only carries them out.
//!
//! A full resync diffs the kernel's actual entries against the desired state; a peer
//! change diffs the previous desired state against the new one, so it costs work
//! proportional to the change, not to the cluster.

use ipnet::{IpNet, Ipv4Net};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use weft_wire::{Peer, UnderlayFamily};

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

/// What this node contributes to the desired state.
#[derive(Debug, Clone)]
pub struct LocalView {
    pub node_name: String,
    /// The node's IPv6 prefix and IPv4 subnet, to reject peers overlapping them.
    pub ipv6_prefix: Option<ipnet::Ipv6Net>,
    pub ipv4_subnet: Option<Ipv4Net>,
    /// The IPv4 overlay, when this node serves IPv4 and has a VXLAN device.
    pub vxlan: Option<VxlanView>,
    /// The uplink and direct-mode routing, when weftd routes peers' IPv6 prefixes.
    pub direct_ipv6: Option<u32>,
}

/// The VXLAN device as convergence needs it.
#[derive(Debug, Clone, Copy)]
pub struct VxlanView {
    pub index: u32,
    pub family: UnderlayFamily,
    /// This node's overlay gateway address, the source of its own overlay traffic.
    pub source: Ipv4Addr,
}

/// The desired state: every entry with the peer it is for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Desired {
    pub entries: BTreeMap<Key, (Value, String)>,
    /// Peers that made it in whole, by name.
    pub peers: BTreeSet<String>,
    /// Peers, other than this node, that the source listed as valid.
    pub known: usize,
}

/// A change to make: upserts (add or replace) and removals, each with its value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub upserts: Vec<(Key, Value, String)>,
    pub removals: Vec<(Key, Value)>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.upserts.is_empty() && self.removals.is_empty()
    }
}

impl Desired {
    /// Builds the desired state. Peers that cannot be programmed (overlapping ranges, a
    /// missing underlay address of the family in use, a clashing MAC) are left out
    /// whole and described in the returned problems; the node itself is skipped.
    pub fn build(local: &LocalView, peers: &[Peer]) -> (Desired, Vec<String>) {
        let mut desired = Desired::default();
        let mut problems = Vec::new();
        let mut names = BTreeSet::new();
        let mut v6_ranges = Ranges::default();
        let mut v4_ranges = Ranges::default();
        if let Some(p) = local.ipv6_prefix {
            v6_ranges.insert(IpNet::V6(p), "this node");
        }
        if let Some(s) = local.ipv4_subnet {
            v4_ranges.insert(IpNet::V4(s), "this node");
        }
        let mut macs: HashMap<[u8; 6], String> = HashMap::new();
        for peer in peers {
            if peer.name == local.node_name {
                continue;
            }
            desired.known += 1;
            if !names.insert(peer.name.clone()) {
                problems.push(format!(
                    "peer {:?}: listed twice; the later entry is ignored",
                    peer.name
                ));
                continue;
            }
            match peer_entries(local, peer, &v6_ranges, &v4_ranges, &macs) {
                Ok(entries) => {
                    if let Some(p) = peer.ipv6_prefix {
                        v6_ranges.insert(IpNet::V6(p), &peer.name);
                    }
                    if let Some(s) = peer.ipv4_subnet {
                        v4_ranges.insert(IpNet::V4(s), &peer.name);
                    }
                    for (key, value) in entries {
                        if let (Key::Fdb(mac), _) = (key, &value) {
                            macs.insert(mac, peer.name.clone());
                        }
                        desired.entries.insert(key, (value, peer.name.clone()));
                    }
                    desired.peers.insert(peer.name.clone());
                }
                Err(problem) => problems.push(format!("peer {:?}: {problem}", peer.name)),
            }
        }
        (desired, problems)
    }

    /// The entries as a plain map, for diffing.
    #[cfg(test)]
    pub fn values(&self) -> BTreeMap<Key, Value> {
        self.entries
            .iter()
            .map(|(k, (v, _))| (*k, v.clone()))
            .collect()
    }
}

/// Route entries among `keys`, per family: (IPv4, IPv6).
pub fn route_counts<'a>(keys: impl Iterator<Item = &'a Key>) -> (usize, usize) {
    keys.fold((0, 0), |(v4, v6), k| match k {
        Key::Route(IpNet::V4(_)) => (v4 + 1, v6),
        Key::Route(IpNet::V6(_)) => (v4, v6 + 1),
        _ => (v4, v6),
    })
}

/// Non-overlapping ranges with their owners, for the overlap check: a lookup of the
/// one range starting at or before a new range's end, O(log n), so building the desired
/// state of 5,000 peers is not 25 million comparisons.
#[derive(Debug, Default)]
struct Ranges(BTreeMap<u128, (u128, String)>);

fn bounds(net: IpNet) -> (u128, u128) {
    match net {
        IpNet::V4(n) => (
            u128::from(u32::from(n.network())),
            u128::from(u32::from(n.broadcast())),
        ),
        IpNet::V6(n) => (u128::from(n.network()), u128::from(n.broadcast())),
    }
}

impl Ranges {
    fn insert(&mut self, net: IpNet, owner: &str) {
        let (start, end) = bounds(net);
        self.0.insert(start, (end, owner.to_owned()));
    }

    /// The owner of a held range overlapping `net`. Held ranges never overlap each
    /// other, so only the last one starting at or before `net`'s end can.
    fn overlapping(&self, net: IpNet) -> Option<&str> {
        let (start, end) = bounds(net);
        self.0
            .range(..=end)
            .next_back()
            .filter(|(_, (held_end, _))| *held_end >= start)
            .map(|(_, (_, owner))| owner.as_str())
    }
}

fn peer_entries(
    local: &LocalView,
    peer: &Peer,
    v6_ranges: &Ranges,
    v4_ranges: &Ranges,
    macs: &HashMap<[u8; 6], String>,
) -> Result<Vec<(Key, Value)>, String> {
    let mut entries = Vec::new();
    if let Some(prefix) = peer.ipv6_prefix {
        if let Some(owner) = v6_ranges.overlapping(IpNet::V6(prefix)) {
            return Err(format!("ipv6Prefix {prefix} overlaps {owner}'s"));
        }
        if let Some(uplink) = local.direct_ipv6 {
            let gateway = peer.underlay_ipv6.ok_or_else(|| {
                format!("ipv6Prefix {prefix} needs underlayIPv6 for --ipv6-routing direct")
            })?;
            entries.push((
                Key::Route(IpNet::V6(prefix)),
                Value::Route {
                    gateway: IpAddr::V6(gateway),
                    oif: uplink,
                    source: None,
                },
            ));
        }
    }
    if let Some(subnet) = peer.ipv4_subnet {
        if let Some(owner) = v4_ranges.overlapping(IpNet::V4(subnet)) {
            return Err(format!("ipv4Subnet {subnet} overlaps {owner}'s"));
        }
        if let Some(vxlan) = local.vxlan {
            let destination = match vxlan.family {
                UnderlayFamily::Ipv4 => peer.underlay_ipv4.map(IpAddr::V4),
                UnderlayFamily::Ipv6 => peer.underlay_ipv6.map(IpAddr::V6),
            }
            .ok_or_else(|| {
                let field = match vxlan.family {
                    UnderlayFamily::Ipv4 => "underlayIPv4",
                    UnderlayFamily::Ipv6 => "underlayIPv6",
                };
                format!(
                    "ipv4Subnet {subnet} needs {field}: this node's VXLAN underlay is that family"
                )
            })?;
            let mac = peer.vtep_mac.unwrap_or_else(|| weft_wire::vtep_mac(subnet));
            if let Some(owner) = macs.get(&mac) {
                return Err(format!(
                    "vtepMAC {} is already {owner}'s",
                    weft_netlink::overlay::format_mac(&mac)
                ));
            }
            let gateway = subnet.network();
            entries.push((
                Key::Route(IpNet::V4(subnet)),
                Value::Route {
                    gateway: IpAddr::V4(gateway),
                    oif: vxlan.index,
                    source: Some(IpAddr::V4(vxlan.source)),
                },
            ));
            entries.push((
                Key::Neighbour(gateway),
                Value::Neighbour {
                    mac,
                    permanent: true,
                },
            ));
            entries.push((
                Key::Fdb(mac),
                Value::Fdb {
                    destination,
                    permanent: true,
                },
            ));
        }
    }
    Ok(entries)
}

/// What turns `actual` into `desired`: entries missing or different are upserted,
/// entries weft owns that are not desired are removed, equal ones are left alone.
pub fn diff(actual: &BTreeMap<Key, Value>, desired: &Desired) -> Plan {
    let mut plan = Plan::default();
    for (key, (value, owner)) in &desired.entries {
        if actual.get(key) != Some(value) {
            plan.upserts.push((*key, value.clone(), owner.clone()));
        }
    }
    for (key, value) in actual {
        if !desired.entries.contains_key(key) {
            plan.removals.push((*key, value.clone()));
        }
    }
    // FDB, then neighbour, then route: a route never points at a missing neighbour.
    plan.upserts
        .sort_by_key(|(key, _, _)| std::cmp::Reverse(*key));
    plan
}

#[cfg(test)]
#[path = "../tests/desired.rs"]
mod tests;
