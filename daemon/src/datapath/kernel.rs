//! Carries convergence decisions out on the kernel through weft-netlink: reads the
//! entries weft owns, applies a [`Plan`] in batches, and reports exactly which entries
//! failed so their peers are not counted as programmed.
//!
//! weftd never replaces a route it did not install ([`ForeignRoutes`]): a route of
//! another protocol (an operator's static route, a routing daemon's) that holds a
//! peer's destination in the main table is left alone and reported, and the peer is not
//! programmed until it is gone. A new route is created exclusively (NLM_F_EXCL), so one
//! appearing between full passes is found by its EEXIST, never overwritten; only weft's
//! own routes are replaced.

use super::desired::{Key, Plan, Value};
use crate::error::Error;
use ipnet::IpNet;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use tracing::{info, warn};
use weft_netlink::overlay::{delete_fdb, delete_neighbour, delete_route, fdb_entry};
use weft_netlink::{messages, Netlink, NetlinkError, Request, RouteSpec, SCOPE_UNIVERSE};

/// rtm_protocol of every route weftd installs for a peer ('w'): how it finds its own
/// routes among everyone else's (`ip route show proto 119`).
pub const ROUTE_PROTOCOL: u8 = 119;

/// The main routing table, the one weft's peer routes live in.
const MAIN_TABLE: u32 = 254;

/// Main-table destinations held by routes weft did not install, and which of them
/// block a peer route weft wants, for reporting changes once.
#[derive(Debug, Default)]
pub struct ForeignRoutes {
    /// Destination -> protocol, as of the last full pass (and EEXISTs since).
    held: BTreeMap<IpNet, u8>,
    /// Destinations weft wanted and left alone in the last pass.
    blocking: BTreeSet<IpNet>,
}

impl ForeignRoutes {
    /// Reports the destinations a pass left to others: each newly blocked one logged
    /// once, each freed one too. Returns how many block a peer now.
    pub fn report(&mut self, left: &[(IpNet, String)]) -> usize {
        let now: BTreeSet<IpNet> = left.iter().map(|(d, _)| *d).collect();
        for (destination, peer) in left {
            if !self.blocking.contains(destination) {
                let protocol = self.held.get(destination).copied();
                warn!(%destination, %peer, ?protocol, "a route weftd did not install holds this peer's destination: left alone, the peer is not programmed");
            }
        }
        for destination in self.blocking.difference(&now) {
            info!(%destination, "no longer held by another route: weftd programs it");
        }
        self.blocking = now;
        self.blocking.len()
    }
}

/// Reads the entries weft owns: its protocol-tagged main-table routes of both families,
/// and every IPv4 neighbour and FDB entry of the VXLAN device (weft's own device). The
/// destinations of main-table routes of other protocols go to `foreign`.
pub fn read_actual(
    nl: &mut Netlink,
    vxlan_index: Option<u32>,
    foreign: &mut ForeignRoutes,
) -> Result<BTreeMap<Key, Value>, NetlinkError> {
    let mut actual = BTreeMap::new();
    foreign.held.clear();
    for ipv6 in [false, true] {
        for r in nl.routes(ipv6)? {
            if r.table != MAIN_TABLE {
                continue;
            }
            if r.protocol != ROUTE_PROTOCOL {
                foreign.held.insert(r.destination, r.protocol);
                continue;
            }
            // The node's own unreachable routes are kept by the blackhole module.
            if !r.unicast {
                continue;
            }
            let (Some(gateway), Some(oif)) = (r.gateway, r.oif) else {
                // Not a shape weft installs: remove it by giving it an impossible value.
                actual.insert(
                    Key::Route(r.destination),
                    Value::Route {
                        gateway: IpAddr::from([0, 0, 0, 0]),
                        oif: 0,
                        source: None,
                    },
                );
                continue;
            };
            actual.insert(
                Key::Route(r.destination),
                Value::Route {
                    gateway,
                    oif,
                    source: r.source,
                },
            );
        }
    }
    if let Some(index) = vxlan_index {
        for n in nl.neighbours(index)? {
            let (IpAddr::V4(ip), Ok(mac)) = (n.ip, <[u8; 6]>::try_from(n.mac.as_slice())) else {
                continue;
            };
            actual.insert(
                Key::Neighbour(ip),
                Value::Neighbour {
                    mac,
                    permanent: n.permanent,
                },
            );
        }
        for f in nl.fdb(index)? {
            let Some(destination) = f.destination else {
                continue;
            };
            actual.insert(
                Key::Fdb(f.mac),
                Value::Fdb {
                    destination,
                    permanent: f.permanent,
                },
            );
        }
    }
    Ok(actual)
}

/// The request that puts `value` at `key`.
fn upsert(key: Key, value: &Value, vxlan_index: u32) -> Result<Request, Error> {
    match (key, value) {
        (
            Key::Route(destination),
            Value::Route {
                gateway,
                oif,
                source,
            },
        ) => messages::route(&RouteSpec {
            destination,
            gateway: Some(*gateway),
            oif: *oif,
            mtu: None,
            scope: SCOPE_UNIVERSE,
            // An overlay gateway is a peer's address, outside every local subnet.
            onlink: matches!(destination, IpNet::V4(_)),
            protocol: ROUTE_PROTOCOL,
            source: *source,
        })
        .map_err(Error::netlink(format!("route to {destination}"))),
        (Key::Neighbour(ip), Value::Neighbour { mac, .. }) => Ok(messages::permanent_neighbour(
            vxlan_index,
            IpAddr::V4(ip),
            *mac,
        )),
        (Key::Fdb(mac), Value::Fdb { destination, .. }) => {
            Ok(fdb_entry(vxlan_index, mac, *destination))
        }
        (key, value) => Err(mismatch(key, value)),
    }
}

/// The request that removes `key` (whose current content is `value`).
fn removal(key: Key, value: &Value, vxlan_index: u32) -> Result<Request, Error> {
    match (key, value) {
        (Key::Route(destination), _) => delete_route(destination, ROUTE_PROTOCOL)
            .map_err(Error::netlink(format!("route to {destination}"))),
        (Key::Neighbour(ip), _) => Ok(delete_neighbour(vxlan_index, IpAddr::V4(ip))),
        (Key::Fdb(mac), Value::Fdb { destination, .. }) => {
            Ok(delete_fdb(vxlan_index, mac, *destination))
        }
        (key, value) => Err(mismatch(key, value)),
    }
}

fn mismatch(key: Key, value: &Value) -> Error {
    Error::Entry(format!("{key:?}: value {value:?} does not fit the key"))
}

/// What applying a plan did.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Keys now holding their desired value.
    pub upserted: Vec<(Key, Value)>,
    /// Keys now gone.
    pub removed: Vec<Key>,
    /// Failures: the key, the peer it was for (upserts), the error.
    pub failed: Vec<(Key, Option<String>, Error)>,
    /// Route destinations held by a route weft did not install, with the peer that
    /// wanted them: not touched.
    pub left_to_others: Vec<(IpNet, String)>,
}

/// Applies `plan`: removals first, then upserts, each group as batches in one system
/// call per batch. A removal of something already gone counts as done. `current` (what
/// weft believes it has) tells a new route from one of weft's to replace; a route
/// whose destination `foreign` holds, or that turns out held, is left alone.
pub fn apply(
    nl: &mut Netlink,
    plan: &Plan,
    current: &BTreeMap<Key, Value>,
    foreign: &mut ForeignRoutes,
    vxlan_index: u32,
) -> Result<Outcome, NetlinkError> {
    let mut outcome = Outcome::default();
    let mut requests = Vec::with_capacity(plan.removals.len());
    let mut keys = Vec::with_capacity(plan.removals.len());
    for (key, value) in &plan.removals {
        match removal(*key, value, vxlan_index) {
            Ok(r) => {
                requests.push(r);
                keys.push(*key);
            }
            Err(e) => outcome.failed.push((*key, None, e)),
        }
    }
    let failures = nl.execute_all(&requests)?;
    let mut failed = vec![false; keys.len()];
    for (index, error) in failures {
        if error.errno() != Some(weft_netlink::Errno::NotFound) {
            failed[index] = true;
            let error = Error::netlink(format!("removing {:?}", keys[index]))(error);
            outcome.failed.push((keys[index], None, error));
        }
    }
    outcome.removed.extend(
        keys.iter()
            .zip(&failed)
            .filter(|(_, f)| !**f)
            .map(|(k, _)| *k),
    );

    let upserts: Vec<(Key, &Value, &String)> = plan
        .upserts
        .iter()
        .filter(|(key, _, owner)| match key {
            Key::Route(destination) if foreign.held.contains_key(destination) => {
                outcome.left_to_others.push((*destination, owner.clone()));
                false
            }
            _ => true,
        })
        .map(|(key, value, owner)| (*key, value, owner))
        .collect();
    // A route weft does not believe it has is created exclusively: whatever holds its
    // destination meanwhile is found, not replaced.
    let new_route = |key: &Key| matches!(key, Key::Route(_)) && !current.contains_key(key);
    let clashes = upsert_batch(nl, &upserts, vxlan_index, new_route, &mut outcome)?;
    if clashes.is_empty() {
        return Ok(outcome);
    }
    // EEXIST: weft's own route when `current` lagged (after a failed pass), replaced
    // now; another protocol's, recorded and left alone; none any more, created again
    // exclusively.
    let protocols = route_protocols(nl)?;
    let mut retry = Vec::new();
    let mut ours = BTreeSet::new();
    for (key, value, owner) in clashes {
        let Key::Route(destination) = key else {
            continue;
        };
        let held = protocols
            .get(&destination)
            .map(Vec::as_slice)
            .unwrap_or_default();
        if held.contains(&ROUTE_PROTOCOL) {
            ours.insert(key);
        } else if let Some(protocol) = held.first() {
            foreign.held.insert(destination, *protocol);
            outcome.left_to_others.push((destination, owner.clone()));
            continue;
        }
        retry.push((key, value, owner));
    }
    let exclusive = |key: &Key| !ours.contains(key);
    for (key, _, owner) in upsert_batch(nl, &retry, vxlan_index, exclusive, &mut outcome)? {
        let error = Error::Entry(format!(
            "{key:?}: another route took its destination meanwhile"
        ));
        outcome.failed.push((key, Some(owner.clone()), error));
    }
    Ok(outcome)
}

/// Upserts `entries` in batches, `exclusive` ones without replacing; records each
/// result in `outcome`, except exclusive creates refused with EEXIST, returned.
fn upsert_batch<'a>(
    nl: &mut Netlink,
    entries: &[(Key, &'a Value, &'a String)],
    vxlan_index: u32,
    exclusive: impl Fn(&Key) -> bool,
    outcome: &mut Outcome,
) -> Result<Vec<(Key, &'a Value, &'a String)>, NetlinkError> {
    let mut requests = Vec::with_capacity(entries.len());
    let mut sent = Vec::with_capacity(entries.len());
    for (key, value, owner) in entries {
        let exclusive = exclusive(key);
        match upsert(*key, value, vxlan_index) {
            Ok(r) if exclusive => requests.push(r.exclusive()),
            Ok(r) => requests.push(r),
            Err(e) => {
                outcome.failed.push((*key, Some((*owner).clone()), e));
                continue;
            }
        }
        sent.push((*key, *value, *owner, exclusive));
    }
    let mut failed = vec![false; sent.len()];
    let mut clashes = Vec::new();
    for (index, error) in nl.execute_all(&requests)? {
        failed[index] = true;
        let (key, value, owner, exclusive) = sent[index];
        if exclusive && error.errno() == Some(weft_netlink::Errno::Exists) {
            clashes.push((key, value, owner));
            continue;
        }
        let error = Error::netlink(format!("adding {key:?}"))(error);
        outcome.failed.push((key, Some(owner.clone()), error));
    }
    outcome.upserted.extend(
        sent.iter()
            .zip(&failed)
            .filter(|(_, f)| !**f)
            .map(|((k, v, _, _), _)| (*k, (*v).clone())),
    );
    Ok(clashes)
}

/// The protocols of the main-table routes of both families, by destination.
fn route_protocols(nl: &mut Netlink) -> Result<BTreeMap<IpNet, Vec<u8>>, NetlinkError> {
    let mut protocols: BTreeMap<IpNet, Vec<u8>> = BTreeMap::new();
    for ipv6 in [false, true] {
        for r in nl.routes(ipv6)? {
            if r.table == MAIN_TABLE {
                protocols.entry(r.destination).or_default().push(r.protocol);
            }
        }
    }
    Ok(protocols)
}

#[cfg(test)]
#[path = "../tests/foreign_routes.rs"]
mod tests;
