//! The only code that drives nftables. weftd owns three tables, and each concern
//! contributes its sets, chains and set elements to the one of the family it needs:
//!
//! - `inet weft` (both families): every concern of both families, such as the tunnel's
//!   `notrack` chains and its guard (the underlay may be IPv6), pod anti-spoofing and
//!   host protection, and NetworkPolicy.
//! - `ip weft-nat` (IPv4 only): NAT. A NAT statement (`masquerade`) turns connection
//!   tracking on for every family its table carries (nft_masq takes conntrack for the
//!   table's family; `inet` is both). weft never NATs IPv6, so NAT in `inet weft`
//!   would put every forwarded IPv6 packet through conntrack for nothing: one IPv6
//!   ping leaves a conntrack entry with it and none with the NAT in an `ip` table, and
//!   on a 2-core machine pod-to-pod IPv6 throughput fell to 0.84-0.90 of the untracked
//!   datapath while CPU per GB rose 11-19 %. In a real cluster kube-proxy's `ip6` NAT
//!   table turns IPv6 tracking on anyway, and so will NetworkPolicy's `ct state` on
//!   nodes with policies; a node without them must not pay for it.
//! - `arp weft`: which of the node's addresses it answers ARP for where (host
//!   protection).
//!
//! | concern | file | tables | what |
//! |---|---|---|---|
//! | [`Concern::EgressNat`] | [`egress_nat`] | `ip weft-nat`, `inet weft` | IPv4 masquerade of pod egress, `notrack` for the tunnel |
//! | [`Concern::PodGuard`] | [`pod_guard`] | `inet weft` | a pod sends only from its own addresses, never RAs, redirects or DHCP replies; its elements over nfnetlink |
//! | [`Concern::TunnelGuard`] | [`tunnel_guard`] | `inet weft` | VXLAN accepted from the peers' underlay addresses only |
//! | [`Concern::HostProtection`] | [`host_protection`] | `inet weft`, `arp weft` | what pods reach on their node; the pods' gateway answered on weft's interfaces only |
//! | [`Concern::NetworkPolicy`] | [`network_policy`] | `inet weft` | Kubernetes NetworkPolicy: per-pod verdict maps, per-profile chains, address sets it keeps itself |
//!
//! A new concern is one more file and one more [`Concern`] variant.
//!
//! Each table is kept incrementally, on its own. A pass lists it (`nft -j list table
//! ip weft-nat`) and compares its shape, the chains with their hooks and rule markers and
//! the sets with their types, with the declaration: a missing or different table is
//! created again whole, in one transaction with its elements. Otherwise only the set
//! elements that differ are added or deleted, in one `nft -f -` transaction. The first
//! pass runs before pods are served, then one every `--resync-seconds` (repairing
//! drift), or a second after a failure. Established flows keep their NAT binding in
//! conntrack across a re-creation. A new set of peer underlay addresses
//! ([`Firewall::with_tunnel_peers`]) runs a pass at once: it changes the tunnel guard's
//! elements only.

mod egress_nat;
mod host_protection;
mod listing;
mod network_policy;
mod nft;
mod pod_guard;
mod table;
mod tunnel_guard;

pub use egress_nat::EgressNat;
pub use host_protection::{HostProtection, PodHostAccess};
pub use network_policy::{
    compile, Family, LocalPod, NetworkPolicy, PodState, PolicyTables, PolicyView,
};
pub use pod_guard::{sources_of, GuardSets, PodGuard, PodSource};
pub use tunnel_guard::TunnelGuard;

use crate::error::Result;
use crate::metrics::Metrics;
use crate::task::{self, Task};
use futures::FutureExt;
use listing::Listing;
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;
use table::{Table, Tables};
use tracing::{debug, info, warn};

/// How soon a failed pass is retried.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// One concern's part of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Concern {
    EgressNat(EgressNat),
    TunnelGuard(TunnelGuard),
    HostProtection(HostProtection),
    PodGuard(PodGuard),
    NetworkPolicy(NetworkPolicy),
}

impl Concern {
    /// Adds the concern's sets, chains and elements to the tables it needs.
    fn declare(&self, tables: &mut Tables) {
        match self {
            Concern::EgressNat(nat) => nat.declare(tables),
            Concern::TunnelGuard(guard) => guard.declare(tables),
            Concern::HostProtection(protection) => protection.declare(tables),
            Concern::PodGuard(guard) => guard.declare(tables),
            Concern::NetworkPolicy(policy) => policy.declare(tables),
        }
    }

    /// Brings what the concern keeps outside the `nft` scripts in line, once its
    /// tables are in place: `weft_created` when `inet weft` was just created (empty of
    /// it), else `weft_listing`, the pass's listing of it.
    fn repair(&self, weft_created: bool, weft_listing: Option<&Listing>) -> Result<()> {
        match self {
            Concern::NetworkPolicy(policy) => policy.repair(weft_created, weft_listing),
            Concern::EgressNat(_) | Concern::TunnelGuard(_) | Concern::HostProtection(_) => Ok(()),
            Concern::PodGuard(guard) => guard
                .repair()
                .map(drop)
                .map_err(|e| crate::error::Error::Firewall(e.to_string())),
        }
    }
}

/// What a pass did to one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pass {
    /// The table was missing or different, and was created.
    Created,
    /// The table was right; this many `add element`/`delete element` statements were
    /// applied (0: none).
    Elements(usize),
}

/// Brings one table to its declaration: created when missing or different, else only
/// its elements changed. Returns the pass and, when the table was kept, its listing.
fn sync_table(
    declaration: &table::Declaration,
    elements: &table::Elements,
) -> Result<(Pass, Option<Listing>)> {
    let table = declaration.table;
    let listing = nft::list_table(table)?
        .and_then(|json| Listing::parse(&json))
        .filter(|l| declaration.describes(l));
    let actual = listing
        .as_ref()
        .and_then(|l| l.declared_elements(declaration));
    let Some(actual) = actual else {
        nft::apply(&declaration.creation_script(elements))?;
        return Ok((Pass::Created, None));
    };
    let script = table::element_script(table, &actual, elements);
    if !script.is_empty() {
        nft::apply(&script)?;
    }
    Ok((Pass::Elements(script.lines().count()), listing))
}

/// weft's tables and the concerns they are made of.
#[derive(Debug)]
pub struct Firewall {
    concerns: Vec<Concern>,
    /// The peers' underlay addresses, each time the complete set, for the tunnel guard.
    tunnel_peers: Option<Receiver<BTreeSet<IpAddr>>>,
}

impl Firewall {
    pub fn new(concerns: Vec<Concern>) -> Firewall {
        Firewall {
            concerns,
            tunnel_peers: None,
        }
    }

    /// The firewall with `more` concerns.
    pub fn with_concerns(mut self, more: impl IntoIterator<Item = Concern>) -> Firewall {
        self.concerns.extend(more);
        self
    }

    /// Takes the tunnel guard's peer addresses from `updates`: each set received runs a
    /// pass at once.
    pub fn with_tunnel_peers(mut self, updates: Receiver<BTreeSet<IpAddr>>) -> Firewall {
        self.tunnel_peers = Some(updates);
        self
    }

    /// Puts `addresses` in the tunnel guard, if there is one.
    fn set_tunnel_peers(&mut self, addresses: BTreeSet<IpAddr>) {
        for concern in &mut self.concerns {
            if let Concern::TunnelGuard(guard) = concern {
                guard.peers = Some(addresses.clone());
            }
        }
    }

    fn tables(&self) -> Tables {
        let mut tables = Tables::default();
        for concern in &self.concerns {
            concern.declare(&mut tables);
        }
        tables
    }

    /// Brings each declared table in the kernel to its declaration: created when
    /// missing or different, else only its elements changed. Stops at the first table
    /// that fails. Then each concern repairs what it keeps itself (the pod guard's
    /// elements), at once, so a table just created is refilled.
    pub fn sync(&self) -> Result<Vec<(Table, Pass)>> {
        let mut passes = Vec::new();
        let mut weft_listing = None;
        for (declaration, elements) in self.tables().iter() {
            let (pass, listing) = sync_table(declaration, elements)?;
            if declaration.table == Table::Weft {
                weft_listing = listing;
            }
            passes.push((declaration.table, pass));
        }
        let weft_created = passes.contains(&(Table::Weft, Pass::Created));
        for concern in &self.concerns {
            concern.repair(weft_created, weft_listing.as_ref())?;
        }
        Ok(passes)
    }

    /// Runs the first pass now, before pods are served, then keeps the tables on a
    /// thread of its own (`nft` is a program weftd waits for): a pass per peer change,
    /// and one every `resync`. A firewall without concerns keeps no table, and its task
    /// never ends.
    pub fn start(mut self, resync: Duration, metrics: Metrics) -> Result<Task> {
        if self.concerns.is_empty() {
            return Ok(futures::future::pending().boxed());
        }
        let mut ok = self.pass(&metrics);
        task::thread("firewall", move || loop {
            let wait = if ok { resync } else { RETRY_AFTER };
            if let Some(addresses) = self.next_tunnel_peers(wait) {
                self.set_tunnel_peers(addresses);
            }
            ok = self.pass(&metrics);
        })
    }

    /// Waits up to `wait` for new peer addresses; the newest of a burst.
    fn next_tunnel_peers(&self, wait: Duration) -> Option<BTreeSet<IpAddr>> {
        let Some(updates) = &self.tunnel_peers else {
            std::thread::sleep(wait);
            return None;
        };
        match updates.recv_timeout(wait) {
            Ok(addresses) => Some(updates.try_iter().last().unwrap_or(addresses)),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => {
                // The datapath is gone (weftd is stopping): keep resyncing.
                std::thread::sleep(wait);
                None
            }
        }
    }

    /// One pass, logged and counted; false when it failed.
    fn pass(&self, metrics: &Metrics) -> bool {
        let passes = match self.sync() {
            Ok(passes) => passes,
            Err(e) => {
                warn!(error = %e, "nftables tables not in place (egress NAT, tunnel guard, host protection)");
                metrics.convergence_error(&e);
                return false;
            }
        };
        for (table, pass) in passes {
            let table = table.to_string();
            match pass {
                Pass::Created => info!(table, "nftables table created"),
                Pass::Elements(0) => debug!(table, "nftables table unchanged"),
                Pass::Elements(changes) => {
                    info!(table, changes, "nftables set elements changed")
                }
            }
        }
        true
    }
}

#[cfg(test)]
#[path = "../tests/firewall.rs"]
mod tests;
