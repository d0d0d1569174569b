//! A pod's own elements over nfnetlink: when two states differ only in the per-pod
//! elements (the verdict maps, the member sets, `np-self`, the family-off sets), as
//! they do when a pod
//! of an existing profile or of an unpoliced namespace starts, the difference is one
//! nfnetlink transaction instead of an `nft` process, whose start costs milliseconds
//! against a CNI ADD of about two (README, benchmarks).

use std::collections::{BTreeMap, BTreeSet};

use weft_netlink::{set_key, BadInterfaceName, KeyField, SetChange, VerdictElement};

use super::dispatch::{verdict_map, MapVerdict, Placed};
use super::names::Direction;
use super::state::Desired;
use super::{SELF, V4_OFF, V6_OFF};

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
    added: Vec<(Vec<u8>, MapVerdict)>,
    replaced: Vec<(Vec<u8>, MapVerdict)>,
    removed: Vec<Vec<u8>>,
}

#[derive(Debug, PartialEq, Eq)]
struct SetChanges {
    set: String,
    added: Vec<Vec<u8>>,
    removed: Vec<Vec<u8>>,
}

impl PodElements {
    /// The changes from `old` to `new`, when chains and dynamic sets are the same in
    /// both (`None` otherwise: that difference needs `nft`).
    pub fn between(old: &Desired, new: &Desired) -> Option<Result<PodElements, BadInterfaceName>> {
        if old.chains != new.chains || old.sets != new.sets {
            return None;
        }
        Some(PodElements::of(old, new))
    }

    fn of(old: &Desired, new: &Desired) -> Result<PodElements, BadInterfaceName> {
        let pair = |veth: &str| set_key(&[KeyField::Ifname(veth), KeyField::Ifname(veth)]);
        let one = |veth: &str| set_key(&[KeyField::Ifname(veth)]);
        let mut maps = Vec::new();
        let mut sets = Vec::new();
        for (direction, old_verdicts, new_verdicts) in [
            (Direction::Ingress, &old.ingress, &new.ingress),
            (Direction::Egress, &old.egress, &new.egress),
        ] {
            let before = Placed::of(old_verdicts, old.chains.keys(), direction);
            let after = Placed::of(new_verdicts, new.chains.keys(), direction);
            maps.push(map_changes(
                verdict_map(direction),
                &before.map,
                &after.map,
            )?);
            let none = BTreeSet::new();
            let names: BTreeSet<&String> =
                before.members.keys().chain(after.members.keys()).collect();
            for name in names {
                let old = before.members.get(name).unwrap_or(&none);
                let new = after.members.get(name).unwrap_or(&none);
                sets.push(set_changes(name, old, new, one)?);
            }
        }
        sets.push(set_changes(SELF, &old.own, &new.own, pair)?);
        sets.push(set_changes(V4_OFF, &old.v4_off, &new.v4_off, one)?);
        sets.push(set_changes(V6_OFF, &old.v6_off, &new.v6_off, one)?);
        Ok(PodElements { maps, sets })
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
    old: &BTreeMap<&str, MapVerdict>,
    new: &BTreeMap<&str, MapVerdict>,
) -> Result<MapChanges, BadInterfaceName> {
    let key = |veth: &str| set_key(&[KeyField::Ifname(veth)]);
    let mut changes = MapChanges {
        map,
        added: Vec::new(),
        replaced: Vec::new(),
        removed: Vec::new(),
    };
    for (veth, verdict) in new {
        match old.get(veth) {
            None => changes.added.push((key(veth)?, *verdict)),
            Some(before) if before != verdict => changes.replaced.push((key(veth)?, *verdict)),
            Some(_) => {}
        }
    }
    for veth in old.keys().filter(|veth| !new.contains_key(*veth)) {
        changes.removed.push(key(veth)?);
    }
    Ok(changes)
}

fn set_changes<T: AsRef<str> + Ord>(
    set: &str,
    old: &BTreeSet<T>,
    new: &BTreeSet<T>,
    key: impl Fn(&str) -> Result<Vec<u8>, BadInterfaceName>,
) -> Result<SetChanges, BadInterfaceName> {
    Ok(SetChanges {
        set: set.to_owned(),
        added: new
            .difference(old)
            .map(|v| key(v.as_ref()))
            .collect::<Result<_, _>>()?,
        removed: old
            .difference(new)
            .map(|v| key(v.as_ref()))
            .collect::<Result<_, _>>()?,
    })
}

fn verdict_elements(elements: &[(Vec<u8>, MapVerdict)]) -> Vec<VerdictElement<'_>> {
    elements
        .iter()
        .map(|(key, verdict)| VerdictElement {
            key: key.clone(),
            verdict: match verdict {
                MapVerdict::Accept => weft_netlink::Verdict::Accept,
                MapVerdict::Drop => weft_netlink::Verdict::Drop,
            },
        })
        .collect()
}
