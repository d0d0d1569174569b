//! Carries convergence decisions out on the kernel through weft-netlink: reads the
//! entries weft owns, applies a [`Plan`] in batches, and reports exactly which entries
//! failed so their peers are not counted as programmed.

use super::desired::{Key, Plan, Value};
use crate::error::Error;
use ipnet::IpNet;
use std::collections::BTreeMap;
use std::net::IpAddr;
use weft_netlink::overlay::{delete_fdb, delete_neighbour, delete_route, fdb_entry};
use weft_netlink::{messages, Netlink, NetlinkError, Request, RouteSpec, SCOPE_UNIVERSE};

/// rtm_protocol of every route weftd installs for a peer ('w'): how it finds its own
/// routes among everyone else's (`ip route show proto 119`).
pub const ROUTE_PROTOCOL: u8 = 119;

/// Reads the entries weft owns: its protocol-tagged main-table routes of both families,
/// and every IPv4 neighbour and FDB entry of the VXLAN device (weft's own device).
pub fn read_actual(
    nl: &mut Netlink,
    vxlan_index: Option<u32>,
) -> Result<BTreeMap<Key, Value>, NetlinkError> {
    let mut actual = BTreeMap::new();
    for ipv6 in [false, true] {
        for r in nl.routes(ipv6)? {
            // The node's own unreachable routes are kept by the blackhole module.
            if r.protocol != ROUTE_PROTOCOL || r.table != 254 || !r.unicast {
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
}

/// Applies `plan`: removals first, then upserts, each group as batches in one system
/// call per batch. A removal of something already gone counts as done.
pub fn apply(nl: &mut Netlink, plan: &Plan, vxlan_index: u32) -> Result<Outcome, NetlinkError> {
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

    let mut requests = Vec::with_capacity(plan.upserts.len());
    let mut entries = Vec::with_capacity(plan.upserts.len());
    for (key, value, owner) in &plan.upserts {
        match upsert(*key, value, vxlan_index) {
            Ok(r) => {
                requests.push(r);
                entries.push((*key, value, owner));
            }
            Err(e) => outcome.failed.push((*key, Some(owner.clone()), e)),
        }
    }
    let failures = nl.execute_all(&requests)?;
    let mut failed = vec![false; entries.len()];
    for (index, error) in failures {
        failed[index] = true;
        let (key, _, owner) = entries[index];
        let error = Error::netlink(format!("adding {key:?}"))(error);
        outcome.failed.push((key, Some(owner.clone()), error));
    }
    outcome.upserted.extend(
        entries
            .iter()
            .zip(&failed)
            .filter(|(_, f)| !**f)
            .map(|((k, v, _), _)| (*k, (*v).clone())),
    );
    Ok(outcome)
}
