//! The node's own ranges end on the node: an `unreachable` route for its IPv6 prefix and
//! one for its IPv4 subnet, below every pod's route. A pod's /128 or /32 route is longer,
//! so it always wins; an address no pod holds (never given, released, or cooling down)
//! meets the unreachable route, and the node answers with ICMP destination unreachable
//! (RFC 792 code 1, RFC 4443 code 0) instead of forwarding the packet by its default
//! route. Without it a packet from the fabric for an unused address of the node's prefix
//! goes back to the fabric, which routes the prefix to the node again: a loop until the
//! hop limit runs out, and for an overlay IPv4 address a leak to the default route.
//!
//! The routes carry weft's protocol (`ip route show proto 119 type unreachable`) and the
//! lowest priority a route can have ([`METRIC`]), so any route another party installs
//! for the same prefix wins; they are put in place before pods are served and checked by
//! every full convergence pass. Peer convergence never touches them: it reads unicast
//! routes only.

use super::kernel::ROUTE_PROTOCOL;
use crate::allocation::NodeAllocation;
use crate::error::{Error, Result};
use ipnet::IpNet;
use std::collections::BTreeSet;
use weft_netlink::overlay::{delete_unreachable_route, unreachable_route};
use weft_netlink::{Errno, Netlink};

/// The metric of the unreachable routes: the largest there is, so the routes lose to
/// every other route to the same prefix (the kernel prefers the lowest metric).
pub const METRIC: u32 = u32::MAX;

/// The kernel's main routing table.
const MAIN_TABLE: u32 = 254;

/// The ranges that must end on the node: its IPv6 prefix and IPv4 subnet, when served.
pub fn node_ranges(allocation: &NodeAllocation) -> BTreeSet<IpNet> {
    let ipv6 = allocation
        .ipv6_prefix
        .filter(|_| allocation.mode.has_ipv6())
        .map(IpNet::V6);
    let ipv4 = allocation
        .ipv4_subnet
        .filter(|_| allocation.mode.has_ipv4())
        .map(IpNet::V4);
    ipv6.into_iter().chain(ipv4).collect()
}

/// What [`ensure`] changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub added: Vec<IpNet>,
    pub removed: Vec<IpNet>,
}

/// Brings weft's unreachable routes to exactly `ranges`: adds the missing ones, removes
/// those of ranges the node no longer has (an allocation changed across a restart).
pub fn ensure(nl: &mut Netlink, ranges: &BTreeSet<IpNet>) -> Result<Changes> {
    let present = present(nl)?;
    let mut changes = Changes::default();
    for &stale in present.difference(ranges) {
        let request =
            delete_unreachable_route(stale, ROUTE_PROTOCOL, METRIC).map_err(route_error(stale))?;
        match nl.execute_one(request) {
            Err(e) if e.errno() != Some(Errno::NotFound) => return Err(route_error(stale)(e)),
            _ => changes.removed.push(stale),
        }
    }
    for &missing in ranges.difference(&present) {
        let request =
            unreachable_route(missing, ROUTE_PROTOCOL, METRIC).map_err(route_error(missing))?;
        nl.execute_one(request).map_err(route_error(missing))?;
        changes.added.push(missing);
    }
    Ok(changes)
}

/// The destinations of weft's unreachable routes in the main table, both families.
fn present(nl: &mut Netlink) -> Result<BTreeSet<IpNet>> {
    let mut present = BTreeSet::new();
    for ipv6 in [false, true] {
        let routes = nl
            .routes(ipv6)
            .map_err(Error::netlink("listing the node's unreachable routes"))?;
        present.extend(
            routes
                .into_iter()
                .filter(|r| r.protocol == ROUTE_PROTOCOL && r.table == MAIN_TABLE && !r.unicast)
                .map(|r| r.destination),
        );
    }
    Ok(present)
}

fn route_error(range: IpNet) -> impl FnOnce(weft_netlink::NetlinkError) -> Error {
    Error::netlink(format!("unreachable route for the node's range {range}"))
}

#[cfg(test)]
#[path = "../tests/blackhole.rs"]
mod tests;
