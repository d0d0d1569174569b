//! [`State`]: what the policy writer knows, pure. The model's view of every object
//! ([`Snapshot`], kept current by the deltas), each group's slice assignment
//! ([`Slices`]), and what is written (as last listed or written, with its
//! resourceVersion). An object is rendered from the first two and compared with the
//! third: only a difference is an operation, so a new leader that lists, recomputes and
//! renders the same content writes nothing.

use super::objects::{Kind, ObjectId, Rendered};
use super::progress::{groups_named, watch_key, Needs, Programming};
use crate::policy::{is_wide, span_labels, Delta, Slices, Snapshot};
use std::collections::{BTreeMap, BTreeSet};
use weft_api::{WeftAddressGroupSpec, POLICY_INDEX_NAME};

/// A written object: what the controller owns of it, and its resourceVersion.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub rendered: Rendered,
    pub version: String,
}

/// One write to make.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Server-side apply of this content.
    Apply(ObjectId, Rendered),
    Delete(ObjectId),
}

impl Op {
    pub fn id(&self) -> &ObjectId {
        match self {
            Op::Apply(id, _) | Op::Delete(id) => id,
        }
    }
}

/// The objects as listed on taking the lead, by id, with the slices' specs apart (the
/// slice assignment is read back from them).
#[derive(Debug, Default)]
pub struct Listed {
    pub objects: BTreeMap<ObjectId, Stored>,
    pub slices: BTreeMap<String, WeftAddressGroupSpec>,
}

/// See the module documentation.
#[derive(Debug)]
pub struct State {
    snapshot: Snapshot,
    slices: BTreeMap<String, Slices>,
    written: BTreeMap<ObjectId, Stored>,
}

impl State {
    /// The state of a new leader: the model's `snapshot` and what `listed` found; with
    /// every object to compare (all listed and all the snapshot has).
    pub fn new(snapshot: Snapshot, listed: Listed) -> (State, BTreeSet<ObjectId>) {
        let mut by_group: BTreeMap<&str, Vec<(String, WeftAddressGroupSpec)>> = BTreeMap::new();
        for (name, spec) in &listed.slices {
            by_group
                .entry(spec.group.as_str())
                .or_default()
                .push((name.clone(), spec.clone()));
        }
        let mut slices = BTreeMap::new();
        for (group, state) in &snapshot.groups {
            let found = by_group.remove(group.as_str()).unwrap_or_default();
            let (mut assigned, _stale) = Slices::from_listed(group, &state.selector, found);
            // Stale slices differ from their rendering, so the comparison below finds
            // them without being told.
            assigned.sync(state.members.values());
            slices.insert(group.clone(), assigned);
        }
        let state = State {
            snapshot,
            slices,
            written: listed.objects,
        };
        let mut touched: BTreeSet<ObjectId> = state.written.keys().cloned().collect();
        touched.extend(state.all_ids());
        (state, touched)
    }

    /// Every object the snapshot renders.
    fn all_ids(&self) -> Vec<ObjectId> {
        let mut ids = vec![ObjectId::new(Kind::Index, POLICY_INDEX_NAME)];
        ids.extend(self.slice_ids(self.slices.keys()));
        let names = self.snapshot.policies.keys();
        ids.extend(names.map(|n| ObjectId::new(Kind::Policy, n)));
        let nodes = self.snapshot.nodes.keys();
        ids.extend(nodes.map(|n| ObjectId::new(Kind::Node, n)));
        ids
    }

    fn slice_ids<'a>(&self, groups: impl Iterator<Item = &'a String>) -> Vec<ObjectId> {
        let mut ids = Vec::new();
        for group in groups {
            if let Some(slices) = self.slices.get(group) {
                let names = slices.numbers().map(|n| slices.name(n));
                ids.extend(names.map(|name| ObjectId::new(Kind::Slice, name)));
            }
        }
        ids
    }

    /// Applies the model's `delta`; returns the objects it may have changed.
    pub fn apply(&mut self, delta: &Delta) -> BTreeSet<ObjectId> {
        let mut touched = BTreeSet::new();
        for (group, selector) in &delta.groups {
            // The slices of a group gone are deleted; a group gone and back within one
            // merged delta keeps its slices, as the snapshot keeps its members.
            touched.extend(self.slice_ids(std::iter::once(group)));
            match selector {
                Some(text) => {
                    let slices = self.slices.entry(group.clone());
                    slices.or_insert_with(|| Slices::new(group, text));
                }
                None => {
                    self.slices.remove(group);
                }
            }
        }
        self.snapshot.apply(delta);
        for (group, members) in &delta.members {
            if let Some(slices) = self.slices.get_mut(group) {
                let numbers = slices.apply(members);
                let names = numbers.into_iter().map(|n| slices.name(n));
                touched.extend(names.map(|name| ObjectId::new(Kind::Slice, name)));
            }
        }
        touched.extend(self.slice_ids(delta.group_spans.keys()));
        let policies = delta.policies.keys().chain(delta.policy_spans.keys());
        touched.extend(policies.map(|n| ObjectId::new(Kind::Policy, n)));
        let nodes = delta.nodes.keys();
        touched.extend(nodes.map(|n| ObjectId::new(Kind::Node, n)));
        if delta.index.is_some() {
            touched.insert(ObjectId::new(Kind::Index, POLICY_INDEX_NAME));
        }
        touched
    }

    /// The writes that make `touched` objects what the model says. A `WeftNodePolicy`
    /// whose Node `node_uid` does not know yet is left out and returned: it is written
    /// owned by its Node or not at all.
    pub fn ops(
        &self,
        touched: &BTreeSet<ObjectId>,
        node_uid: impl Fn(&str) -> Option<String>,
    ) -> (Vec<Op>, BTreeSet<ObjectId>) {
        let mut ops = Vec::new();
        let mut waiting = BTreeSet::new();
        for id in touched {
            let wanted = match self.render(id, &node_uid) {
                Ok(wanted) => wanted,
                Err(NodeUnknown) => {
                    waiting.insert(id.clone());
                    continue;
                }
            };
            let written = self.written.get(id).map(|s| &s.rendered);
            match (wanted, written) {
                (Some(w), Some(was)) if w == *was => {}
                (Some(w), _) => ops.push(Op::Apply(id.clone(), w)),
                (None, Some(_)) => ops.push(Op::Delete(id.clone())),
                (None, None) => {}
            }
        }
        (ops, waiting)
    }

    /// Records a write done: the object as applied (`None`: deleted).
    pub fn wrote(&mut self, id: &ObjectId, applied: Option<Stored>) {
        match applied {
            Some(stored) => self.written.insert(id.clone(), stored),
            None => self.written.remove(id),
        };
    }

    /// How many objects of `kind` are written.
    pub fn count(&self, kind: Kind) -> usize {
        self.written.keys().filter(|id| id.kind == kind).count()
    }

    /// What each written policy's nodes must have observed (progress.rs).
    pub fn programming(&self) -> Programming {
        let mut programming = Programming::new();
        for (name, policy) in &self.snapshot.policies {
            let Some(written) = self.written.get(&ObjectId::new(Kind::Policy, name)) else {
                continue;
            };
            let wide = is_wide(&written.rendered.labels);
            let mut objects = vec![(watch_key(true, wide), Some(written.version.clone()))];
            for group in groups_named(&policy.spec) {
                let Some(slices) = self.slices.get(&group) else {
                    continue;
                };
                for n in slices.numbers() {
                    let stored = self
                        .written
                        .get(&ObjectId::new(Kind::Slice, slices.name(n)));
                    let wide = stored.is_some_and(|s| is_wide(&s.rendered.labels));
                    objects.push((watch_key(false, wide), stored.map(|s| s.version.clone())));
                }
            }
            let span = policy.span.clone();
            programming.insert(name.clone(), Needs { span, objects });
        }
        programming
    }

    /// What object `id` should be; `Ok(None)`: it should not exist.
    fn render(
        &self,
        id: &ObjectId,
        node_uid: &impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Rendered>, NodeUnknown> {
        let was_wide = || {
            self.written
                .get(id)
                .is_some_and(|s| is_wide(&s.rendered.labels))
        };
        let rendered = match id.kind {
            Kind::Index => Some(unlabelled(&self.snapshot.index, None)),
            Kind::Policy => self.snapshot.policies.get(&id.name).map(|p| Rendered {
                labels: span_labels(&p.span, was_wide()),
                ..unlabelled(&p.spec, None)
            }),
            Kind::Slice => self.render_slice(&id.name, was_wide()),
            Kind::Node => match self.snapshot.nodes.get(&id.name) {
                None => None,
                Some(spec) => {
                    let uid = node_uid(&id.name).ok_or(NodeUnknown)?;
                    Some(unlabelled(spec, Some((id.name.clone(), uid))))
                }
            },
        };
        Ok(rendered)
    }

    fn render_slice(&self, name: &str, was_wide: bool) -> Option<Rendered> {
        let (group, _) = name.rsplit_once('-')?;
        let n = crate::policy::slice_number(group, name)?;
        let spec = self.slices.get(group)?.spec(n)?;
        let span = &self.snapshot.groups.get(group)?.span;
        Some(Rendered {
            labels: span_labels(span, was_wide),
            ..unlabelled(&spec, None)
        })
    }
}

/// A `WeftNodePolicy` whose Node is not (yet) known.
#[derive(Debug)]
struct NodeUnknown;

fn unlabelled(spec: &impl serde::Serialize, owner: Option<(String, String)>) -> Rendered {
    Rendered {
        labels: BTreeMap::new(),
        owner,
        spec: serde_json::to_value(spec).unwrap_or_default(),
    }
}

#[cfg(test)]
#[path = "../tests/policy_sync_state.rs"]
mod tests;
