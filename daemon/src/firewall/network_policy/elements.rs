//! A pod's own elements over nfnetlink: when two states differ only in the per-pod
//! elements (the verdict maps, `np-self`, the family-off sets), as they do when a pod
//! of an existing profile or of an unpoliced namespace starts, the difference is one
//! nfnetlink transaction instead of an `nft` process, whose start costs milliseconds
//! against a CNI ADD of about two (README, benchmarks).

use std::collections::{BTreeMap, BTreeSet};

use weft_netlink::{set_key, BadInterfaceName, KeyField, SetChange, VerdictElement};

use super::state::{Desired, Verdict};
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
    set: &'static str,
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
        let maps = vec![
            map_changes(INGRESS_PODS, &old.ingress, &new.ingress)?,
            map_changes(EGRESS_PODS, &old.egress, &new.egress)?,
        ];
        let pair = |veth: &str| set_key(&[KeyField::Ifname(veth), KeyField::Ifname(veth)]);
        let one = |veth: &str| set_key(&[KeyField::Ifname(veth)]);
        let sets = vec![
            set_changes(SELF, &old.own, &new.own, pair)?,
            set_changes(V4_OFF, &old.v4_off, &new.v4_off, one)?,
            set_changes(V6_OFF, &old.v6_off, &new.v6_off, one)?,
        ];
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
                    set: set.set,
                    keys: set.removed.clone(),
                });
            }
            if !set.added.is_empty() {
                changes.push(SetChange::Add {
                    set: set.set,
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
    Ok(changes)
}

fn set_changes(
    set: &'static str,
    old: &BTreeSet<String>,
    new: &BTreeSet<String>,
    key: impl Fn(&str) -> Result<Vec<u8>, BadInterfaceName>,
) -> Result<SetChanges, BadInterfaceName> {
    Ok(SetChanges {
        set,
        added: new
            .difference(old)
            .map(|v| key(v))
            .collect::<Result<_, _>>()?,
        removed: old
            .difference(new)
            .map(|v| key(v))
            .collect::<Result<_, _>>()?,
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
