//! NetworkPolicy in `inet weft` (docs/networkpolicy-design.md §2.2): a verdict per
//! local pod and direction, kept in two maps keyed by the pod's host veth, each
//! jumping to the chain of the pod's profile (the sorted policies of that direction),
//! whose rules match peers against shared address sets.
//!
//! ```text
//! table inet weft {
//!   map np-egress-pods  { type ifname : verdict; }   host veth -> accept | drop | jump np-e-<profile>
//!   map np-ingress-pods { type ifname : verdict; }   host veth -> accept | drop | jump np-i-<profile>
//!   set np-self   { type ifname . ifname; }          "<veth>" . "<veth>": a pod reaching itself
//!   set np-v4-off { type ifname; }                   pods keeping IPv6 only
//!   set np-v6-off { type ifname; }                   pods keeping IPv4 only
//!   chain np-egress  { type filter hook forward priority -5; policy accept;
//!     iifname != "weft*" return
//!     iifname "weft-vxlan" return
//!     iifname . oifname @np-self accept
//!     iifname vmap @np-egress-pods
//!     drop }
//!   chain np-ingress { type filter hook forward priority -4; policy accept;
//!     oifname != "weft*" return
//!     oifname "weft-vxlan" return
//!     iifname . oifname @np-self accept
//!     oifname vmap @np-ingress-pods
//!     drop }
//!   chain np-family-from { type filter hook prerouting priority -305; policy accept;
//!     iifname @np-v6-off icmpv6 type { nd-router-solicit, nd-neighbor-solicit,
//!       nd-neighbor-advert, mld-listener-report, mld-listener-done, mld2-listener-report } accept
//!     meta nfproto ipv6 iifname @np-v6-off drop
//!     meta nfproto ipv4 iifname @np-v4-off drop }
//!   chain np-family-to { type filter hook postrouting priority -305; policy accept;
//!     oifname @np-v6-off icmpv6 type { nd-router-advert, nd-neighbor-solicit,
//!       nd-neighbor-advert, mld-listener-query } accept
//!     meta nfproto ipv6 oifname @np-v6-off drop
//!     meta nfproto ipv4 oifname @np-v4-off drop }
//! }
//! ```
//!
//! - `accept` ends only its own base chain (nft(8), VERDICT STATEMENT): a packet
//!   between two local pods passes the source's egress chain (-5) and then the
//!   destination's ingress chain (-4); a drop in either ends it.
//! - A weft veth in neither map (weftd has not judged its pod) is dropped: fail closed.
//!   `weft-vxlan` shares the veths' prefix and carries other nodes' pods, judged there
//!   on egress and here on ingress by their real addresses (weft never NATs pod to pod).
//! - Node↔pod traffic never crosses `forward`, so it is never judged (the API allows
//!   it); neighbour discovery and MLD are link-scoped and never forwarded, and the
//!   family chains accept them before dropping an IPv6-off pod's IPv6.
//! - The family chains run after the pod guard (-310) and before connection tracking
//!   (-200): a dropped packet leaves no conntrack entry.
//!
//! The dynamic part ([`Desired`]: profile chains `np-i-…`/`np-e-…`, group sets
//! `np-g-…`, ipBlock sets `np-b-…`/`np-x-…`, named-port sets `np-lp-…`/`np-gp-…`, the
//! maps' and sets' elements) is [`compile`]d from the controller's objects and applied
//! as the difference from what the kernel holds ([`PolicyTables::apply`]); the shape
//! compare leaves those names out ([`Declaration::kept`](super::table::Declaration)),
//! a table created again is refilled in the same pass, and dynamic chains or sets
//! changed by hand are written again ([`NetworkPolicy::repair`]).
//! Rule forms: [`rules`].

mod compile;
mod elements;
mod names;
mod rules;
mod script;
mod state;
mod tables;

pub use compile::{compile, LocalPod, PodState, PolicyView};
pub use state::Family;
pub use tables::PolicyTables;

use names::KEPT_PREFIXES;
#[cfg(test)]
use {
    compile::{Compiled, DENIED, ESTABLISHED},
    names::Direction,
    script::{diff_script, full_script},
    state::{SetKind, Verdict},
};

use super::listing::Listing;
use super::table::{Chain, ChainKind, Hook, Map, Priority, Set, Table, Tables};
use crate::datapath::VXLAN_DEVICE;
use crate::error::Result;
use std::fmt;
use weft_wire::HOST_VETH_PREFIX;

/// Host veth → egress verdict.
pub const EGRESS_PODS: &str = "np-egress-pods";
/// Host veth → ingress verdict.
pub const INGRESS_PODS: &str = "np-ingress-pods";
/// `veth . veth` pairs: a pod reaching itself (hairpin through a Service).
pub const SELF: &str = "np-self";
/// Host veths of pods with IPv4 off.
pub const V4_OFF: &str = "np-v4-off";
/// Host veths of pods with IPv6 off.
pub const V6_OFF: &str = "np-v6-off";
/// The egress base chain.
pub const EGRESS_CHAIN: &str = "np-egress";
/// The ingress base chain.
pub const INGRESS_CHAIN: &str = "np-ingress";
/// The family-off chain of packets from pods.
pub const FAMILY_FROM_CHAIN: &str = "np-family-from";
/// The family-off chain of packets to pods.
pub const FAMILY_TO_CHAIN: &str = "np-family-to";

/// Declares the static part (see the module's documentation).
pub fn declare(tables: &mut Tables) {
    let (declaration, _) = tables.table(Table::Weft);
    declaration.kept.extend(KEPT_PREFIXES);
    for name in [INGRESS_PODS, EGRESS_PODS] {
        declaration.maps.push(Map {
            name,
            key: "ifname",
            data: "verdict",
        });
    }
    for (name, kind) in [
        (SELF, "ifname . ifname"),
        (V4_OFF, "ifname"),
        (V6_OFF, "ifname"),
    ] {
        declaration.sets.push(Set {
            name,
            kind,
            interval: false,
        });
    }
    let chain = |name, hook, priority, rules| Chain {
        name,
        kind: ChainKind::Filter,
        hook,
        priority,
        rules,
    };
    declaration.chains.extend([
        chain(
            EGRESS_CHAIN,
            Hook::Forward,
            Priority::PolicyEgress,
            judging("iifname", EGRESS_PODS),
        ),
        chain(
            INGRESS_CHAIN,
            Hook::Forward,
            Priority::PolicyIngress,
            judging("oifname", INGRESS_PODS),
        ),
        chain(
            FAMILY_FROM_CHAIN,
            Hook::Prerouting,
            Priority::PolicyFamily,
            family_off(
                "iifname",
                "nd-router-solicit, nd-neighbor-solicit, nd-neighbor-advert, \
                 mld-listener-report, mld-listener-done, mld2-listener-report",
            ),
        ),
        chain(
            FAMILY_TO_CHAIN,
            Hook::Postrouting,
            Priority::PolicyFamily,
            family_off(
                "oifname",
                "nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert, mld-listener-query",
            ),
        ),
    ]);
}

/// A direction's base chain, judging the pod on `pod_side` (`iifname` for egress).
fn judging(pod_side: &str, map: &str) -> Vec<String> {
    vec![
        format!("{pod_side} != \"{HOST_VETH_PREFIX}*\" return"),
        format!("{pod_side} \"{VXLAN_DEVICE}\" return"),
        format!("iifname . oifname @{SELF} accept"),
        format!("{pod_side} vmap @{map}"),
        "drop".into(),
    ]
}

/// A family-off chain on `pod_side`: ND/MLD of `link_types` accepted first (a
/// negated type match would let every non-ICMPv6 packet through), then each family's
/// off pods dropped.
fn family_off(pod_side: &str, link_types: &str) -> Vec<String> {
    vec![
        format!("{pod_side} @{V6_OFF} icmpv6 type {{ {link_types} }} accept"),
        format!("meta nfproto ipv6 {pod_side} @{V6_OFF} drop"),
        format!("meta nfproto ipv4 {pod_side} @{V4_OFF} drop"),
    ]
}

/// NetworkPolicy as a firewall concern: the static part, and its dynamic state
/// refilled when a pass created the table again.
#[derive(Clone, Default)]
pub struct NetworkPolicy {
    pub tables: PolicyTables,
}

impl fmt::Debug for NetworkPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetworkPolicy").finish_non_exhaustive()
    }
}

/// Two concerns are the same when they keep the same state.
impl PartialEq for NetworkPolicy {
    fn eq(&self, other: &NetworkPolicy) -> bool {
        self.tables.same(&other.tables)
    }
}

impl Eq for NetworkPolicy {}

impl NetworkPolicy {
    pub fn declare(&self, tables: &mut Tables) {
        declare(tables);
    }

    /// Refills the dynamic state when `inet weft` was just created, else writes it
    /// whole when `listing` (the pass's) shows its chains or sets drifted.
    pub fn repair(&self, created: bool, listing: Option<&Listing>) -> Result<()> {
        if created {
            self.tables.refill()
        } else if let Some(listing) = listing {
            self.tables.check(listing).map(drop)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
#[path = "../tests/network_policy.rs"]
mod tests;
