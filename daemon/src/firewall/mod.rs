//! The only code that drives nftables. weftd owns one table, `inet weft` (both
//! families), and each concern contributes its sets, chains and set elements to it:
//!
//! | concern | file | what |
//! |---|---|---|
//! | [`Concern::EgressNat`] | [`egress_nat`] | IPv4 masquerade of pod egress, `notrack` for the tunnel |
//!
//! A new concern (pod anti-spoofing, NetworkPolicy, host protection) is one more file
//! and one more [`Concern`] variant.
//!
//! The table is kept incrementally. A pass lists the table (`nft -j list table inet
//! weft`) and compares its shape, the chains with their hooks and rule markers and the
//! sets with their types, with the declaration: a missing or different table is
//! created again whole, in one transaction with its elements. Otherwise only the set
//! elements that differ are added or deleted, in one `nft -f -` transaction. The first
//! pass runs before pods are served, then one every `--resync-seconds` (repairing
//! drift), or a second after a failure. Established flows keep their NAT binding in
//! conntrack across a re-creation.

mod egress_nat;
mod listing;
mod nft;
mod table;

pub use egress_nat::EgressNat;

use crate::error::Result;
use crate::metrics::Metrics;
use crate::task::{self, Task};
use futures::FutureExt;
use listing::Listing;
use std::time::Duration;
use table::{Declaration, Elements};
use tracing::{debug, info, warn};

/// How soon a failed pass is retried.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// One concern's part of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Concern {
    EgressNat(EgressNat),
}

impl Concern {
    fn declare(&self, declaration: &mut Declaration) {
        match self {
            Concern::EgressNat(nat) => nat.declare(declaration),
        }
    }

    fn elements(&self, elements: &mut Elements) {
        match self {
            Concern::EgressNat(nat) => nat.elements(elements),
        }
    }
}

/// What a pass did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pass {
    /// The table was missing or different, and was created.
    Created,
    /// The table was right; this many `add element`/`delete element` statements were
    /// applied (0: none).
    Elements(usize),
}

/// weft's table and the concerns it is made of.
#[derive(Debug, Clone)]
pub struct Firewall {
    concerns: Vec<Concern>,
}

impl Firewall {
    pub fn new(concerns: Vec<Concern>) -> Firewall {
        Firewall { concerns }
    }

    fn declaration(&self) -> (Declaration, Elements) {
        let mut declaration = Declaration::default();
        let mut elements = Elements::new();
        for concern in &self.concerns {
            concern.declare(&mut declaration);
            concern.elements(&mut elements);
        }
        (declaration, elements)
    }

    /// Brings the kernel's table to the declaration: created when missing or different,
    /// else only its elements changed.
    pub fn sync(&self) -> Result<Pass> {
        let (declaration, elements) = self.declaration();
        let listing = nft::list_table()?.and_then(|json| Listing::parse(&json));
        let actual = listing
            .filter(|l| l.shape == declaration.shape())
            .and_then(|l| l.declared_elements(&declaration));
        let Some(actual) = actual else {
            nft::apply(&declaration.creation_script(&elements))?;
            return Ok(Pass::Created);
        };
        let script = table::element_script(&actual, &elements);
        if !script.is_empty() {
            nft::apply(&script)?;
        }
        Ok(Pass::Elements(script.lines().count()))
    }

    /// Runs the first pass now, before pods are served, then keeps the table on a
    /// thread of its own (`nft` is a program weftd waits for). A firewall without
    /// concerns keeps no table, and its task never ends.
    pub fn start(self, resync: Duration, metrics: Metrics) -> Result<Task> {
        if self.concerns.is_empty() {
            return Ok(futures::future::pending().boxed());
        }
        let mut ok = self.pass(&metrics);
        task::thread("firewall", move || loop {
            std::thread::sleep(if ok { resync } else { RETRY_AFTER });
            ok = self.pass(&metrics);
        })
    }

    /// One pass, logged and counted; false when it failed.
    fn pass(&self, metrics: &Metrics) -> bool {
        match self.sync() {
            Ok(Pass::Created) => info!(table = "inet weft", "nftables table created"),
            Ok(Pass::Elements(0)) => debug!("nftables table unchanged"),
            Ok(Pass::Elements(changes)) => {
                info!(changes, "nftables set elements brought back in line")
            }
            Err(e) => {
                warn!(error = %e, "nftables table not in place (IPv4 egress NAT)");
                metrics.convergence_error(&e);
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
#[path = "../tests/firewall.rs"]
mod tests;
