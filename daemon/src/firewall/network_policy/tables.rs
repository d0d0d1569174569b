//! NetworkPolicy's dynamic state in the kernel: what was applied last, and whether the
//! kernel is known to hold it. The engine applies each new state as a difference; the
//! firewall's passes refill it after re-creating the table and write it whole when the
//! listing shows a dynamic chain or set drifted. One lock orders them.

use super::compile::{pod_elements, LocalPod, PodOwn, PodState};
use super::elements::PodElements;
use super::names::KEPT_PREFIXES;
use super::script::{diff_script, full_script};
use super::state::{Desired, DynamicSet, SetKind};
use crate::error::Result;
use crate::firewall::listing::{ChainShape, Listing, Shape};
use crate::firewall::nft;
use crate::firewall::table::{rule_marker, Table};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};
use tracing::warn;
use weft_netlink::nft_set::FAMILY_INET;
use weft_netlink::{NftSets, SetChange};

/// The dynamic state: applied by the policy engine, repaired by the firewall.
#[derive(Debug, Clone, Default)]
pub struct PolicyTables {
    kept: Arc<Mutex<Kept>>,
}

#[derive(Debug, Default)]
struct Kept {
    /// The last state applied.
    applied: Desired,
    kernel: Kernel,
    /// For [`PolicyTables::apply_elements`]; opened on first use, dropped after an I/O
    /// failure.
    socket: Option<NftSets>,
}

/// What the kernel is known to hold of the dynamic state.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Kernel {
    /// Nothing applied since weftd started: the kernel holds what a previous weftd
    /// wrote, which keeps judging pods until the first state is applied whole.
    #[default]
    Unknown,
    /// A write failed: the next one writes everything.
    Stale,
    /// Exactly `applied`.
    Whole,
}

/// How a state reached the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// Element changes in one nfnetlink transaction (0: nothing changed).
    Elements(usize),
    /// Lines of an `nft` script.
    Script(usize),
}

impl Written {
    /// The elements or lines written.
    pub fn count(self) -> usize {
        match self {
            Written::Elements(count) | Written::Script(count) => count,
        }
    }
}

impl PolicyTables {
    /// Brings the kernel from the last applied state to `next`: only the differences,
    /// or everything when the kernel's state is not known (first use, after a
    /// failure or drift). Returns the number of script lines run (0: nothing changed).
    pub fn apply(&self, next: Desired) -> Result<usize> {
        let mut kept = self.lock();
        let mut script = String::new();
        if kept.kernel == Kernel::Whole {
            script = diff_script(&kept.applied, &next);
            if script.is_empty() {
                return Ok(0);
            }
            kept.kernel = Kernel::Stale;
            if let Err(e) = nft::apply(&script) {
                warn!(error = %e, "NetworkPolicy change refused; writing the whole state");
                script.clear();
            }
        }
        if script.is_empty() {
            kept.kernel = Kernel::Stale;
            script = full_script(&next, &listed_names(&listed()?));
            nft::apply(&script)?;
        }
        kept.applied = next;
        kept.kernel = Kernel::Whole;
        Ok(script.lines().count())
    }

    /// Puts one starting pod's own elements in place when the kernel holds its profiles
    /// already ([`pod_elements`]): `transact` makes them one nfnetlink transaction, with
    /// the pod guard's sources ([`crate::firewall::GuardSets::admit_with`]). `None`
    /// when the pod needs a whole pass or `transact` failed (said here): nothing
    /// changed, the caller admits the pod the long way.
    ///
    /// Before the first whole write (or after a failed one) the kernel's profiles are
    /// not known, so only a pod no policy selects (`accept`, or `drop` while its entry
    /// is awaited) is admitted; its elements are left out of what is known to be
    /// applied, and the next whole write lays them again with everything else.
    pub fn admit_pod<E: std::fmt::Display>(
        &self,
        pod: &LocalPod<'_>,
        transact: impl FnOnce(&[SetChange<'_>]) -> std::result::Result<(), E>,
    ) -> Result<Option<usize>> {
        let mut kept = self.lock();
        let whole = kept.kernel == Kernel::Whole;
        if !whole && matches!(pod.state, PodState::Policed(_)) {
            return Ok(None);
        }
        let Some(own) = pod_elements(pod, &kept.applied) else {
            return Ok(None);
        };
        let before = match whole {
            true => one_pod(&kept.applied, &own),
            false => Desired::default(),
        };
        let mut after = before.clone();
        own.apply_to(&mut after);
        let Some(elements) = PodElements::between(&before, &after) else {
            return Ok(None);
        };
        if let Err(e) = transact(&elements.changes()) {
            warn!(error = %e, "a starting pod's elements over nfnetlink refused");
            return Ok(None);
        }
        if whole {
            own.apply_to(&mut kept.applied);
        }
        Ok(Some(elements.count()))
    }

    /// As [`PolicyTables::apply`], but a difference in elements only (a pod starting
    /// or going, a peer group gaining or losing a member; [`PodElements::between`])
    /// goes in one nfnetlink transaction instead of an `nft` process. Says which path
    /// wrote, and how much.
    pub fn apply_elements(&self, next: Desired) -> Result<Written> {
        let mut kept = self.lock();
        if kept.kernel == Kernel::Whole {
            if let Some(elements) = PodElements::between(&kept.applied, &next) {
                if elements.is_empty() {
                    return Ok(Written::Elements(0));
                }
                match NftSets::apply_kept(
                    &mut kept.socket,
                    FAMILY_INET,
                    Table::Weft.name(),
                    &elements.changes(),
                ) {
                    Ok(()) => {
                        kept.applied = next;
                        return Ok(Written::Elements(elements.count()));
                    }
                    // The script path writes the same, and the whole state if need be.
                    Err(e) => warn!(error = %e, "NetworkPolicy elements over nfnetlink refused"),
                }
            }
        }
        drop(kept);
        self.apply(next).map(Written::Script)
    }

    /// Writes the last applied state whole into a table just created without it.
    pub fn refill(&self) -> Result<()> {
        let mut kept = self.lock();
        kept.kernel = Kernel::Stale;
        nft::apply(&full_script(&kept.applied, &BTreeSet::new()))?;
        kept.kernel = Kernel::Whole;
        Ok(())
    }

    /// Compares the dynamic chains (by rule markers) and sets (by type) `listing`
    /// shows with the applied state, and writes the state whole when they differ.
    /// True when it did. Only once a state was applied: before, the kernel's is the
    /// previous weftd's, which keeps judging pods. A state applied after `listing`
    /// was taken also differs, and is written again: the same result.
    pub fn check(&self, listing: &Listing) -> Result<bool> {
        let mut kept = self.lock();
        if kept.kernel != Kernel::Whole
            || listing.shape.clone().only(&KEPT_PREFIXES) == kept_shape(&kept.applied)
        {
            return Ok(false);
        }
        warn!("NetworkPolicy chains or sets changed outside weftd; writing them again");
        kept.kernel = Kernel::Stale;
        nft::apply(&full_script(&kept.applied, &listed_names(listing)))?;
        kept.kernel = Kernel::Whole;
        Ok(true)
    }

    /// Whether both keep the same state.
    pub fn same(&self, other: &PolicyTables) -> bool {
        Arc::ptr_eq(&self.kept, &other.kept)
    }

    fn lock(&self) -> MutexGuard<'_, Kept> {
        self.kept
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// `state`'s elements of `own`'s veth only, and of the sets `own` has elements in
/// (those of its elements `state` holds already).
fn one_pod(state: &Desired, own: &PodOwn) -> Desired {
    let veth = &own.veth;
    let mut one = Desired::default();
    if let Some(verdict) = state.ingress.get(veth) {
        one.ingress.insert(veth.to_owned(), verdict.clone());
    }
    if let Some(verdict) = state.egress.get(veth) {
        one.egress.insert(veth.to_owned(), verdict.clone());
    }
    for (from, to) in [
        (&state.own, &mut one.own),
        (&state.v4_off, &mut one.v4_off),
        (&state.v6_off, &mut one.v6_off),
    ] {
        if from.contains(veth) {
            to.insert(veth.to_owned());
        }
    }
    for (name, elements) in &own.ports {
        if let Some(set) = state.sets.get(name) {
            let held = set.elements.intersection(elements).copied().collect();
            let kind = set.kind;
            one.sets.insert(
                name.clone(),
                DynamicSet {
                    kind,
                    elements: held,
                },
            );
        }
    }
    one
}

/// `inet weft` as listed now (empty when absent).
fn listed() -> Result<Listing> {
    Ok(nft::list_table(Table::Weft)?
        .and_then(|json| Listing::parse(&json))
        .unwrap_or_default())
}

/// The dynamic chains and sets `listing` shows.
fn listed_names(listing: &Listing) -> BTreeSet<String> {
    let shape = listing.shape.clone().only(&KEPT_PREFIXES);
    shape
        .chains
        .into_keys()
        .chain(shape.sets.into_keys())
        .collect()
}

/// The shape the kernel lists for `desired`'s chains and sets.
pub fn kept_shape(desired: &Desired) -> Shape {
    let chains = desired
        .chains
        .iter()
        .map(|(name, rules)| {
            let markers = rules
                .iter()
                .enumerate()
                .map(|(index, rule)| rule_marker(name, index, rule))
                .collect();
            let shape = ChainShape {
                kind: String::new(),
                hook: String::new(),
                priority: 0,
                policy: String::new(),
                rules: markers,
            };
            (name.clone(), shape)
        })
        .collect();
    let sets = desired
        .sets
        .iter()
        .map(|(name, set)| (name.clone(), listed_type(set.kind)))
        .collect();
    Shape {
        chains,
        sets,
        maps: Default::default(),
    }
}

/// A set kind as the listing shows it: its type and whether it has `flags interval`.
fn listed_type(kind: SetKind) -> (String, bool) {
    match kind {
        SetKind::Addresses(family) => (family.address_type().to_owned(), false),
        SetKind::Prefixes(family) => (family.address_type().to_owned(), true),
        SetKind::AddressPorts(family) => (
            format!("{} . inet_proto . inet_service", family.address_type()),
            false,
        ),
    }
}
