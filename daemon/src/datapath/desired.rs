//! What the node's kernel should hold for its peers, computed from the peer list alone,
//! and the difference between two such states. Pure: no I/O, so convergence's decisions
//! are unit-tested here and the kernel module only carries them out.
//!
//! A full resync diffs the kernel's actual entries against the desired state; a peer
//! change diffs the previous desired state against the new one, so it costs work
//! proportional to the change, not to the cluster.

use crate::error::Error;
use crate::routing::{Entries, Routing};
pub use crate::routing::{Key, Value};
use ipnet::{IpNet, Ipv4Net};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use weft_wire::Peer;

/// What this node contributes to the desired state.
#[derive(Debug, Clone)]
pub struct LocalView {
    pub node_name: String,
    /// The node's IPv6 prefix and IPv4 subnet, to reject peers overlapping them.
    pub ipv6_prefix: Option<ipnet::Ipv6Net>,
    pub ipv4_subnet: Option<Ipv4Net>,
    /// The routing modes in force, each yielding its entries per peer.
    pub routing: Vec<Routing>,
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
    pub fn build(local: &LocalView, peers: &[Peer]) -> (Desired, Vec<Error>) {
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
                problems.push(Error::PeerRejected {
                    peer: peer.name.clone(),
                    problem: "listed twice; the later entry is ignored".into(),
                });
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
                Err(problem) => problems.push(problem),
            }
        }
        (desired, problems)
    }

    /// The underlay addresses, both families, of the peers that made it in: where VXLAN
    /// may come from (the firewall's tunnel guard).
    pub fn underlays(&self, peers: &[Peer]) -> BTreeSet<IpAddr> {
        peers
            .iter()
            .filter(|p| self.peers.contains(&p.name))
            .flat_map(|p| {
                [
                    p.underlay_ipv4.map(IpAddr::V4),
                    p.underlay_ipv6.map(IpAddr::V6),
                ]
            })
            .flatten()
            .collect()
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

/// Every entry the node's routing modes need for `peer`, once its ranges are checked
/// against those already held and its VTEP MAC against the MACs already in use.
fn peer_entries(
    local: &LocalView,
    peer: &Peer,
    v6_ranges: &Ranges,
    v4_ranges: &Ranges,
    macs: &HashMap<[u8; 6], String>,
) -> Result<Entries, Error> {
    let reject = |problem: String| Error::PeerRejected {
        peer: peer.name.clone(),
        problem,
    };
    if let Some(prefix) = peer.ipv6_prefix {
        if let Some(owner) = v6_ranges.overlapping(IpNet::V6(prefix)) {
            return Err(reject(format!("ipv6Prefix {prefix} overlaps {owner}'s")));
        }
    }
    if let Some(subnet) = peer.ipv4_subnet {
        if let Some(owner) = v4_ranges.overlapping(IpNet::V4(subnet)) {
            return Err(reject(format!("ipv4Subnet {subnet} overlaps {owner}'s")));
        }
    }
    let mut entries = Entries::new();
    for mode in &local.routing {
        entries.extend(mode.peer_entries(peer)?);
    }
    for (key, _) in &entries {
        if let Key::Fdb(mac) = key {
            if let Some(owner) = macs.get(mac) {
                return Err(reject(format!(
                    "vtepMAC {} is already {owner}'s",
                    weft_netlink::overlay::format_mac(mac)
                )));
            }
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
