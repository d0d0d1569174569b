//! The pod guard: a pod sends only from its own addresses, and never as a router or a
//! DHCP server.
//!
//! ```text
//! table inet weft {
//!   set pod-sources-v4 { type ifname . ipv4_addr; }   elements: "<host veth>" . <pod IPv4>
//!   set pod-sources-v6 { type ifname . ipv6_addr; }   elements: "<host veth>" . <pod IPv6>
//!   chain pod-guard { type filter hook prerouting priority -310; policy accept;
//!     iifname != "weft*" return
//!     iifname "weft-vxlan" return
//!     icmpv6 type { nd-router-advert, nd-redirect } drop
//!     icmp type redirect drop
//!     udp sport { 67, 547 } drop
//!     iifname . ip saddr @pod-sources-v4 return
//!     iifname . ip6 saddr @pod-sources-v6 return
//!     ip6 saddr { ::, fe80::/10 } ip6 daddr { fe80::/10, ff02::/16 } return
//!     drop
//!   }
//! }
//! ```
//!
//! - Every packet a pod sends enters the node through its host veth, whatever its
//!   destination (a pod here, another node, outside), so one prerouting chain sees them
//!   all. Priority -310 runs before everything else of weft's (the tunnel's `notrack` at
//!   raw, -300) and before connection tracking (-200): a dropped spoof leaves no
//!   conntrack entry, and any policy weft adds later (forward/input, filter priority)
//!   only ever sees packets the guard let through.
//! - Router advertisements and redirects (RFC 4861 types 134, 137; ICMP redirect, RFC
//!   792 type 5) and DHCP/DHCPv6 server messages (source port 67, 547) are dropped
//!   first, whatever their source: on a veth the node is the only router and no pod
//!   serves addresses. Router and neighbour solicitations, neighbour advertisements and
//!   MLD are not named and pass like any packet of their source.
//! - A source is the pod's only if the pair (host veth, address) is in a set: another
//!   pod's address, or any foreign one, from this veth is dropped. A veth with no
//!   elements drops everything but link-local neighbour discovery (fail closed): weftd
//!   puts a pod's elements in over nfnetlink when it allocates its addresses, before
//!   the plugin creates the veth, so ADD returns with them in place.
//! - Link-local (fe80::/10) and unspecified (::, duplicate address detection, RFC 4862)
//!   sources pass only towards link-local unicast and link-scope multicast (ff02::/16)
//!   destinations, which by scope stay on the veth, whose other end is the node.
//! - weft-vxlan also starts with the host veths' prefix: its packets are other nodes'
//!   pods' (checked there), never this chain's business.
//!
//! The elements are not in the `nft` scripts: [`GuardSets`] adds and deletes a pod's
//! over nfnetlink (an `nft` process per ADD would cost milliseconds), and every firewall
//! pass replaces both sets with the IPAM's allocations in one transaction
//! ([`PodGuard::repair`]), so a lost or stray element lives one resync at most and a
//! re-created table is refilled at once.

use super::table::{Chain, ChainKind, Hook, Priority, Set, Table, Tables};
use crate::datapath::VXLAN_DEVICE;
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use weft_netlink::nft_set::{is_missing, FAMILY_INET};
use weft_netlink::{interface_address_key, NetlinkError, NftSets, SetChange};
use weft_wire::{host_veth_name, Allocation, HOST_VETH_PREFIX};

/// The (host veth, pod IPv4) pairs allowed as sources.
pub const SOURCES_V4: &str = "pod-sources-v4";
/// The (host veth, pod IPv6) pairs allowed as sources.
pub const SOURCES_V6: &str = "pod-sources-v6";
/// The guard's chain.
pub const CHAIN: &str = "pod-guard";

/// One allowed source: a pod's address on its host veth.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PodSource {
    pub veth: String,
    pub address: IpAddr,
}

/// The sources of one allocation: each of its addresses on its host veth.
pub fn sources_of(allocation: &Allocation) -> Vec<PodSource> {
    let veth = host_veth_name(&allocation.attachment);
    let v6 = allocation.ipv6.map(IpAddr::V6);
    let v4 = allocation.ipv4.map(IpAddr::V4);
    v6.into_iter()
        .chain(v4)
        .map(|address| PodSource {
            veth: veth.clone(),
            address,
        })
        .collect()
}

/// The guard's sets in the kernel, over one nfnetlink socket opened on first use
/// (and again after a failure). ADD, DEL, GC and the firewall's repair all go through
/// its lock, so a repair never interleaves with a pod's own change.
#[derive(Debug, Clone, Default)]
pub struct GuardSets {
    socket: Arc<Mutex<Option<NftSets>>>,
}

/// What the guard's sets failed at.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error("pod guard: {0}")]
    Kernel(#[from] NetlinkError),
    #[error("pod guard: host veth name {0:?} cannot key a set element")]
    BadName(String),
}

impl GuardSets {
    /// Allows `sources`; those already allowed stay.
    pub fn admit(&self, sources: &[PodSource]) -> Result<(), GuardError> {
        self.admit_with(sources, &[])
    }

    /// Allows `sources` and makes `with`, another concern's changes to `inet weft` for
    /// the same pod (its NetworkPolicy verdicts), in one transaction: a starting pod's
    /// kernel state lands whole, in one commit.
    pub fn admit_with(
        &self,
        sources: &[PodSource],
        with: &[SetChange<'_>],
    ) -> Result<(), GuardError> {
        let mut changes: Vec<SetChange<'_>> =
            by_set(sources, |set, keys| SetChange::Add { set, keys })?;
        changes.extend_from_slice(with);
        self.apply(&mut self.lock(), &changes)
    }

    /// Removes `sources`; those already gone are fine.
    pub fn forget(&self, sources: &[PodSource]) -> Result<(), GuardError> {
        let mut socket = self.lock();
        let changes = by_set(sources, |set, keys| SetChange::Delete { set, keys })?;
        match self.apply(&mut socket, &changes) {
            // One absent element fails the whole transaction: retry each alone.
            Err(GuardError::Kernel(e)) if is_missing(&e) => {
                for change in changes.into_iter().flat_map(one_per_key) {
                    match self.apply(&mut socket, &[change]) {
                        Err(GuardError::Kernel(e)) if is_missing(&e) => {}
                        other => other?,
                    }
                }
                Ok(())
            }
            other => other,
        }
    }

    /// Replaces both sets' contents with `sources()`, read under the lock, in one
    /// transaction: packets see the old sets or the new, never an empty one. Returns
    /// how many elements the sets now hold.
    pub fn replace_all(
        &self,
        sources: impl FnOnce() -> Vec<PodSource>,
    ) -> Result<usize, GuardError> {
        let mut socket = self.lock();
        let sources = sources();
        let mut changes = vec![
            SetChange::Flush { set: SOURCES_V4 },
            SetChange::Flush { set: SOURCES_V6 },
        ];
        changes.extend(by_set(&sources, |set, keys| SetChange::Add { set, keys })?);
        self.apply(&mut socket, &changes)?;
        Ok(sources.len())
    }

    fn lock(&self) -> MutexGuard<'_, Option<NftSets>> {
        self.socket
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Sends one transaction, opening the socket if needed; a failed socket is dropped
    /// so the next call opens a fresh one.
    fn apply(
        &self,
        socket: &mut Option<NftSets>,
        changes: &[SetChange<'_>],
    ) -> Result<(), GuardError> {
        Ok(NftSets::apply_kept(
            socket,
            FAMILY_INET,
            Table::Weft.name(),
            changes,
        )?)
    }
}

/// One change per family set that has sources, made by `change(set, keys)`.
fn by_set(
    sources: &[PodSource],
    change: impl Fn(&'static str, Vec<Vec<u8>>) -> SetChange<'static>,
) -> Result<Vec<SetChange<'static>>, GuardError> {
    let (mut v4, mut v6) = (Vec::new(), Vec::new());
    for source in sources {
        let key = interface_address_key(&source.veth, source.address)
            .ok_or_else(|| GuardError::BadName(source.veth.clone()))?;
        match source.address {
            IpAddr::V4(_) => v4.push(key),
            IpAddr::V6(_) => v6.push(key),
        }
    }
    Ok([(SOURCES_V4, v4), (SOURCES_V6, v6)]
        .into_iter()
        .filter(|(_, keys)| !keys.is_empty())
        .map(|(set, keys)| change(set, keys))
        .collect())
}

/// A deletion split into one deletion per key.
fn one_per_key(change: SetChange<'static>) -> Vec<SetChange<'static>> {
    match change {
        SetChange::Delete { set, keys } => keys
            .into_iter()
            .map(|key| SetChange::Delete {
                set,
                keys: vec![key],
            })
            .collect(),
        other => vec![other],
    }
}

/// Every pod's sources, as the IPAM knows them.
pub type Sources = Arc<dyn Fn() -> Vec<PodSource> + Send + Sync>;

/// The guard as a firewall concern: its sets and chain in `inet weft`, and the repair
/// of its elements from the IPAM after every pass.
#[derive(Clone)]
pub struct PodGuard {
    pub sets: GuardSets,
    pub sources: Sources,
}

impl fmt::Debug for PodGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PodGuard").finish_non_exhaustive()
    }
}

/// Two guards are the same when they keep the same sets from the same source.
impl PartialEq for PodGuard {
    fn eq(&self, other: &PodGuard) -> bool {
        Arc::ptr_eq(&self.sets.socket, &other.sets.socket)
            && Arc::ptr_eq(&self.sources, &other.sources)
    }
}

impl Eq for PodGuard {}

impl PodGuard {
    /// The chain and its (empty) sets; elements go in over nfnetlink.
    pub fn declare(&self, tables: &mut Tables) {
        let (declaration, _) = tables.table(Table::Weft);
        for (name, kind) in [
            (SOURCES_V4, "ifname . ipv4_addr"),
            (SOURCES_V6, "ifname . ipv6_addr"),
        ] {
            declaration.sets.push(Set {
                name,
                kind,
                interval: false,
            });
        }
        declaration.chains.push(Chain {
            name: CHAIN,
            kind: ChainKind::Filter,
            hook: Hook::Prerouting,
            priority: Priority::PodGuard,
            rules: rules(),
        });
    }

    /// Puts every allocated pod's sources in the sets, and only those.
    pub fn repair(&self) -> Result<usize, GuardError> {
        self.sets.replace_all(|| (self.sources)())
    }
}

/// The chain's rules, in order (see the module's documentation).
pub fn rules() -> Vec<String> {
    vec![
        format!("iifname != \"{HOST_VETH_PREFIX}*\" return"),
        format!("iifname \"{VXLAN_DEVICE}\" return"),
        "icmpv6 type { nd-router-advert, nd-redirect } drop".into(),
        "icmp type redirect drop".into(),
        "udp sport { 67, 547 } drop".into(),
        format!("iifname . ip saddr @{SOURCES_V4} return"),
        format!("iifname . ip6 saddr @{SOURCES_V6} return"),
        "ip6 saddr { ::, fe80::/10 } ip6 daddr { fe80::/10, ff02::/16 } return".into(),
        "drop".into(),
    ]
}

#[cfg(test)]
#[path = "../tests/pod_guard.rs"]
mod tests;
