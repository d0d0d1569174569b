//! [`Slices`]: one address group's members split into `WeftAddressGroup` objects of at
//! most [`GROUP_SLICE_MEMBERS`], so a member change rewrites one slice.
//!
//! A live member never moves (a move is a removal in one write and an addition in
//! another: a moment in which its traffic is denied, design §1.2). A new member takes
//! the first slice with room, else the lowest free slice number; a slice emptied is
//! deleted; slices are never compacted. Members are sorted by UID within a slice, so
//! the same assignment always renders the same objects, and a new leader rebuilding it
//! from the listed slices ([`Slices::from_listed`]) then syncing it with the model
//! ([`Slices::sync`]) touches nothing when nothing changed: zero writes on failover.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use weft_api::{slice_name, GroupMember, WeftAddressGroupSpec, GROUP_SLICE_MEMBERS};

/// The slices of one group.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Slices {
    group: String,
    selector: String,
    /// Slice number → its members by UID.
    slices: BTreeMap<usize, BTreeMap<String, GroupMember>>,
    /// Member UID → its slice number.
    slice_of: HashMap<String, usize>,
}

impl Slices {
    /// No slices yet, for a group and its selector text.
    pub fn new(group: &str, selector: &str) -> Slices {
        Slices {
            group: group.to_owned(),
            selector: selector.to_owned(),
            ..Slices::default()
        }
    }

    /// The assignment the listed slice objects (name, spec) record. A member listed in
    /// several keeps the lowest-numbered one; the slices it is dropped from, those of
    /// another group's or selector's text, and names that are no slice of this group
    /// (deleted then) are returned as needing a write.
    pub fn from_listed(
        group: &str,
        selector: &str,
        listed: impl IntoIterator<Item = (String, WeftAddressGroupSpec)>,
    ) -> (Slices, BTreeSet<usize>) {
        let mut slices = Slices::new(group, selector);
        let mut stale = BTreeSet::new();
        let mut numbered: BTreeMap<usize, WeftAddressGroupSpec> = BTreeMap::new();
        for (name, spec) in listed {
            if let Some(n) = slice_number(group, &name) {
                numbered.insert(n, spec);
            }
        }
        for (n, spec) in numbered {
            if spec.group != group || spec.selector != selector {
                stale.insert(n);
            }
            let members = slices.slices.entry(n).or_default();
            for member in spec.members {
                if slices.slice_of.contains_key(&member.uid) || members.contains_key(&member.uid) {
                    stale.insert(n);
                    continue;
                }
                slices.slice_of.insert(member.uid.clone(), n);
                members.insert(member.uid.clone(), member);
            }
            if members.is_empty() {
                slices.slices.remove(&n);
                stale.insert(n);
            }
        }
        (slices, stale)
    }

    /// Applies a group's member changes (by UID: new content, or `None` for gone);
    /// returns the slices to rewrite (an empty one is to be deleted).
    pub fn apply(&mut self, changes: &BTreeMap<String, Option<GroupMember>>) -> BTreeSet<usize> {
        let mut touched = BTreeSet::new();
        for uid in changes
            .iter()
            .filter(|(_, m)| m.is_none())
            .map(|(uid, _)| uid)
        {
            touched.extend(self.remove(uid));
        }
        for member in changes.values().flatten() {
            touched.extend(self.upsert(member));
        }
        touched
    }

    /// Makes the slices hold exactly `members` (a new leader's first pass over its
    /// model); returns the slices to rewrite.
    pub fn sync<'a>(
        &mut self,
        members: impl IntoIterator<Item = &'a GroupMember>,
    ) -> BTreeSet<usize> {
        let wanted: BTreeMap<&str, &GroupMember> =
            members.into_iter().map(|m| (m.uid.as_str(), m)).collect();
        let gone: Vec<String> = self
            .slice_of
            .keys()
            .filter(|uid| !wanted.contains_key(uid.as_str()))
            .cloned()
            .collect();
        let mut touched = BTreeSet::new();
        for uid in gone {
            touched.extend(self.remove(&uid));
        }
        for member in wanted.values() {
            touched.extend(self.upsert(member));
        }
        touched
    }

    /// The spec of slice `n`; `None` when it holds no member (delete the object).
    pub fn spec(&self, n: usize) -> Option<WeftAddressGroupSpec> {
        let members = self.slices.get(&n)?;
        Some(WeftAddressGroupSpec {
            group: self.group.clone(),
            selector: self.selector.clone(),
            members: members.values().cloned().collect(),
        })
    }

    /// The object name of slice `n`.
    pub fn name(&self, n: usize) -> String {
        slice_name(&self.group, n)
    }

    /// The numbers of the slices holding members.
    pub fn numbers(&self) -> impl Iterator<Item = usize> + '_ {
        self.slices.keys().copied()
    }

    fn remove(&mut self, uid: &str) -> Option<usize> {
        let n = self.slice_of.remove(uid)?;
        if let Some(members) = self.slices.get_mut(&n) {
            members.remove(uid);
            if members.is_empty() {
                self.slices.remove(&n);
            }
        }
        Some(n)
    }

    /// Puts `member` in its slice, or a new one; the slice touched, if its content changed.
    fn upsert(&mut self, member: &GroupMember) -> Option<usize> {
        let n = match self.slice_of.get(&member.uid) {
            Some(n) => *n,
            None => self.slice_with_room(),
        };
        let members = self.slices.entry(n).or_default();
        if members.get(&member.uid) == Some(member) {
            return None;
        }
        members.insert(member.uid.clone(), member.clone());
        self.slice_of.insert(member.uid.clone(), n);
        Some(n)
    }

    fn slice_with_room(&self) -> usize {
        let room = self
            .slices
            .iter()
            .find(|(_, m)| m.len() < GROUP_SLICE_MEMBERS);
        match room {
            Some((n, _)) => *n,
            None => (0..).find(|n| !self.slices.contains_key(n)).unwrap_or(0),
        }
    }
}

/// The slice number of object `name` if it is a slice of `group`.
pub fn slice_number(group: &str, name: &str) -> Option<usize> {
    let n = name.strip_prefix(group)?.strip_prefix('-')?;
    let number: usize = n.parse().ok()?;
    (slice_name(group, number) == name).then_some(number)
}

#[cfg(test)]
#[path = "../tests/policy_slices.rs"]
mod tests;
