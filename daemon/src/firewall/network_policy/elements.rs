//! Element changes over nfnetlink: when two states differ only in elements (the
//! verdict maps, `np-self`, the family-off sets, and the members of the dynamic sets
//! that are not intervals), as they do when a pod of an existing profile or of an
//! unpoliced namespace starts, or a peer group gains or loses a pod, the difference is
//! one nfnetlink transaction instead of an `nft` process, whose start costs
//! milliseconds against a CNI ADD of about two (README, benchmarks).

use std::collections::{BTreeMap, BTreeSet};

use weft_netlink::{set_key, KeyField, SetChange, VerdictElement};

use super::state::{Desired, DynamicSet, SetElement, Verdict};
use super::{EGRESS_PODS, INGRESS_PODS, SELF, V4_OFF, V6_OFF};

/// The element changes between two states, owned; [`PodElements::changes`] lends them
/// as one transaction.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PodElements {
    maps: Vec<MapChanges>,
    sets: Vec<SetChanges>,
}

#[derive(Debug, PartialEq, Eq)]
struct MapChanges {
    map: &'static str,
    added: Vec<(Vec<u8>, Verdict)>,
    replaced: Vec<(Vec<u8>, Verdict)>,
    removed: Vec<Vec<u8>>,
}

#[derive(Debug, PartialEq, Eq)]
struct SetChanges {
    set: String,
    added: Vec<Vec<u8>>,
    removed: Vec<Vec<u8>>,
}

impl PodElements {
    /// The changes from `old` to `new`, when both have the same chains and the same
    /// dynamic sets, whose elements differ only in sets that are not intervals. `None`
    /// otherwise (that difference needs `nft`, which writes a prefix as a range) or
    /// when a key cannot be made (`nft` then says what is wrong).
    pub fn between(old: &Desired, new: &Desired) -> Option<PodElements> {
        if old.chains != new.chains || !same_sets(&old.sets, &new.sets) {
            return None;
        }
        let maps = vec![
            map_changes(INGRESS_PODS, &old.ingress, &new.ingress)?,
            map_changes(EGRESS_PODS, &old.egress, &new.egress)?,
        ];
        let pair = |veth: &String| set_key(&[KeyField::Ifname(veth), KeyField::Ifname(veth)]).ok();
        let one = |veth: &String| set_key(&[KeyField::Ifname(veth)]).ok();
        let mut sets = vec![
            set_changes(SELF, &old.own, &new.own, pair)?,
            set_changes(V4_OFF, &old.v4_off, &new.v4_off, one)?,
            set_changes(V6_OFF, &old.v6_off, &new.v6_off, one)?,
        ];
        for ((name, old_set), new_set) in old.sets.iter().zip(new.sets.values()) {
            if old_set.elements != new_set.elements {
                sets.push(set_changes(
                    name,
                    &old_set.elements,
                    &new_set.elements,
                    element_key,
                )?);
            }
        }
        Some(PodElements { maps, sets })
    }

    /// Whether there is nothing to change.
    pub fn is_empty(&self) -> bool {
        self.count() == 0
    }

    /// How many elements change.
    pub fn count(&self) -> usize {
        let maps = self
            .maps
            .iter()
            .map(|m| m.added.len() + m.replaced.len() + m.removed.len());
        let sets = self.sets.iter().map(|s| s.added.len() + s.removed.len());
        maps.chain(sets).sum()
    }

    /// The changes, as one transaction: removals first, so a key removed and added back
    /// under another name never collides.
    pub fn changes(&self) -> Vec<SetChange<'_>> {
        let mut changes = Vec::new();
        for map in &self.maps {
            if !map.removed.is_empty() {
                changes.push(SetChange::Delete {
                    set: map.map,
                    keys: map.removed.clone(),
                });
            }
        }
        for set in &self.sets {
            if !set.removed.is_empty() {
                changes.push(SetChange::Delete {
                    set: &set.set,
                    keys: set.removed.clone(),
                });
            }
            if !set.added.is_empty() {
                changes.push(SetChange::Add {
                    set: &set.set,
                    keys: set.added.clone(),
                });
            }
        }
        for map in &self.maps {
            if !map.added.is_empty() {
                changes.push(SetChange::AddVerdicts {
                    map: map.map,
                    elements: verdict_elements(&map.added),
                });
            }
            if !map.replaced.is_empty() {
                changes.push(SetChange::ReplaceVerdicts {
                    map: map.map,
                    elements: verdict_elements(&map.replaced),
                });
            }
        }
        changes
    }
}

fn map_changes(
    map: &'static str,
    old: &BTreeMap<String, Verdict>,
    new: &BTreeMap<String, Verdict>,
) -> Option<MapChanges> {
    let key = |veth: &str| set_key(&[KeyField::Ifname(veth)]).ok();
    let mut changes = MapChanges {
        map,
        added: Vec::new(),
        replaced: Vec::new(),
        removed: Vec::new(),
    };
    for (veth, verdict) in new {
        match old.get(veth) {
            None => changes.added.push((key(veth)?, verdict.clone())),
            Some(before) if before != verdict => {
                changes.replaced.push((key(veth)?, verdict.clone()))
            }
            Some(_) => {}
        }
    }
    for veth in old.keys().filter(|veth| !new.contains_key(*veth)) {
        changes.removed.push(key(veth)?);
    }
    Some(changes)
}

/// Whether `old` and `new` name the same sets, of the same kinds.
fn same_sets(old: &BTreeMap<String, DynamicSet>, new: &BTreeMap<String, DynamicSet>) -> bool {
    old.len() == new.len()
        && old
            .iter()
            .zip(new)
            .all(|((old_name, old), (new_name, new))| old_name == new_name && old.kind == new.kind)
}

/// The key of an element of an address or address·protocol·port set; `None` for a
/// prefix, an interval's two keys.
fn element_key(element: &SetElement) -> Option<Vec<u8>> {
    let fields = match *element {
        SetElement::Address(address) => vec![KeyField::from(address)],
        SetElement::AddressPort(address, protocol, port) => vec![
            KeyField::from(address),
            KeyField::Proto(protocol.number()),
            KeyField::Service(port),
        ],
        SetElement::Prefix(_) => return None,
    };
    set_key(&fields).ok()
}

fn set_changes<T: Ord>(
    set: &str,
    old: &BTreeSet<T>,
    new: &BTreeSet<T>,
    key: impl Fn(&T) -> Option<Vec<u8>>,
) -> Option<SetChanges> {
    Some(SetChanges {
        set: set.to_owned(),
        added: new.difference(old).map(&key).collect::<Option<_>>()?,
        removed: old.difference(new).map(&key).collect::<Option<_>>()?,
    })
}

fn verdict_elements(elements: &[(Vec<u8>, Verdict)]) -> Vec<VerdictElement<'_>> {
    elements
        .iter()
        .map(|(key, verdict)| VerdictElement {
            key: key.clone(),
            verdict: match verdict {
                Verdict::Accept => weft_netlink::Verdict::Accept,
                Verdict::Drop => weft_netlink::Verdict::Drop,
                Verdict::Jump(chain) => weft_netlink::Verdict::Jump(chain),
            },
        })
        .collect()
}
