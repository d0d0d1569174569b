//! What the model hands the writers: [`Delta`], the changes one event (or a batch of
//! them, [`Delta::merge`]) made to the objects the controller writes, and [`Snapshot`],
//! all of them at once (a new leader's first write, and the reference a delta applies
//! to). Imports nothing of this crate.

use std::collections::{BTreeMap, BTreeSet};
use weft_api::{GroupMember, WeftNodePolicySpec, WeftPolicyIndexSpec, WeftPolicySpec};

/// Node names in which an object changed: `true` entered its span, `false` left it.
pub type SpanChanges = BTreeMap<String, bool>;

/// The changes to the written objects. Each entry is a real change: an event whose
/// effects cancel out leaves none.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Delta {
    /// Groups that came into use (their selector text) or went out of use (`None`:
    /// delete their slices).
    pub groups: BTreeMap<String, Option<String>>,
    /// Per group, members by pod UID: the new content, or `None` when the pod left.
    pub members: BTreeMap<String, BTreeMap<String, Option<GroupMember>>>,
    /// Per group, nodes entering or leaving its span.
    pub group_spans: BTreeMap<String, SpanChanges>,
    /// Per `WeftPolicy` name, the new spec, or `None` when the policy is gone.
    pub policies: BTreeMap<String, Option<WeftPolicySpec>>,
    /// Per `WeftPolicy` name, nodes entering or leaving its span.
    pub policy_spans: BTreeMap<String, SpanChanges>,
    /// Per `WeftPolicy` name, pods (by UID) it came to apply to (`true`) or stopped.
    pub applied_to: BTreeMap<String, BTreeMap<String, bool>>,
    /// Nodes whose `WeftNodePolicy` spec changed, with the new spec (no pods: none left).
    pub nodes: BTreeMap<String, WeftNodePolicySpec>,
    /// The new `WeftPolicyIndex` spec, when it changed.
    pub index: Option<WeftPolicyIndexSpec>,
}

impl Delta {
    pub fn is_empty(&self) -> bool {
        self == &Delta::default()
    }

    /// Folds in `later`, which happened after `self`: per key, the later change wins,
    /// so applying the merged delta equals applying both in order.
    pub fn merge(&mut self, later: Delta) {
        self.groups.extend(later.groups);
        merge_nested(&mut self.members, later.members);
        merge_nested(&mut self.group_spans, later.group_spans);
        self.policies.extend(later.policies);
        merge_nested(&mut self.policy_spans, later.policy_spans);
        merge_nested(&mut self.applied_to, later.applied_to);
        self.nodes.extend(later.nodes);
        if later.index.is_some() {
            self.index = later.index;
        }
    }
}

fn merge_nested<V>(
    into: &mut BTreeMap<String, BTreeMap<String, V>>,
    later: BTreeMap<String, BTreeMap<String, V>>,
) {
    for (object, changes) in later {
        into.entry(object).or_default().extend(changes);
    }
}

/// Every object the model would have written.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub groups: BTreeMap<String, GroupState>,
    /// By `WeftPolicy` name.
    pub policies: BTreeMap<String, PolicyState>,
    /// Nodes with at least one pod entry.
    pub nodes: BTreeMap<String, WeftNodePolicySpec>,
    pub index: WeftPolicyIndexSpec,
}

/// One group: its selector text, members by pod UID, and span.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GroupState {
    pub selector: String,
    pub members: BTreeMap<String, GroupMember>,
    pub span: BTreeSet<String>,
}

/// One policy: its spec, the pods (by UID) it applies to, and span.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PolicyState {
    pub spec: WeftPolicySpec,
    pub applied_to: BTreeSet<String>,
    pub span: BTreeSet<String>,
}

impl Snapshot {
    /// Applies `delta`: what a writer keeping its own copy does.
    pub fn apply(&mut self, delta: &Delta) {
        apply_objects(&mut self.groups, &delta.groups, |g, selector| {
            g.selector = selector.clone();
        });
        for (name, members) in &delta.members {
            if let Some(group) = self.groups.get_mut(name) {
                for (uid, member) in members {
                    match member {
                        Some(m) => group.members.insert(uid.clone(), m.clone()),
                        None => group.members.remove(uid),
                    };
                }
            }
        }
        apply_flags(&mut self.groups, &delta.group_spans, |g| &mut g.span);
        apply_objects(&mut self.policies, &delta.policies, |p, spec| {
            p.spec = spec.clone();
        });
        apply_flags(&mut self.policies, &delta.policy_spans, |p| &mut p.span);
        apply_flags(&mut self.policies, &delta.applied_to, |p| &mut p.applied_to);
        for (name, spec) in &delta.nodes {
            if spec.pods.is_empty() {
                self.nodes.remove(name);
            } else {
                self.nodes.insert(name.clone(), spec.clone());
            }
        }
        if let Some(index) = &delta.index {
            self.index = index.clone();
        }
    }
}

/// Objects created or updated by `set`, or removed (`None`).
fn apply_objects<T: Default, V>(
    objects: &mut BTreeMap<String, T>,
    changes: &BTreeMap<String, Option<V>>,
    set: impl Fn(&mut T, &V),
) {
    for (name, change) in changes {
        match change {
            Some(value) => set(objects.entry(name.clone()).or_default(), value),
            None => {
                objects.remove(name);
            }
        }
    }
}

/// Items entering (`true`) or leaving a set of each object, the set picked by `field`.
fn apply_flags<T>(
    objects: &mut BTreeMap<String, T>,
    changes: &BTreeMap<String, BTreeMap<String, bool>>,
    field: impl Fn(&mut T) -> &mut BTreeSet<String>,
) {
    for (name, flags) in changes {
        let Some(object) = objects.get_mut(name) else {
            continue;
        };
        let set = field(object);
        for (item, present) in flags {
            if *present {
                set.insert(item.clone());
            } else {
                set.remove(item);
            }
        }
    }
}

/// The value each key had before its first change in an event, so the event's delta
/// holds only what differs at its end (a remove then an add of the same thing is no
/// change).
#[derive(Debug)]
pub struct Before<K, V>(BTreeMap<K, V>);

impl<K, V> Default for Before<K, V> {
    fn default() -> Before<K, V> {
        Before(BTreeMap::new())
    }
}

impl<K: Ord, V: PartialEq> Before<K, V> {
    /// Records `key`'s value unless already recorded in this event.
    pub fn record(&mut self, key: K, value: impl FnOnce() -> V) {
        self.0.entry(key).or_insert_with(value);
    }

    /// Whether `key`'s value is recorded in this event.
    pub fn recorded<Q>(&self, key: &Q) -> bool
    where
        K: std::borrow::Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.0.contains_key(key)
    }

    /// The keys whose value `now` differs from the recorded one, with the new value;
    /// clears the record.
    pub fn changed(&mut self, now: impl Fn(&K) -> V) -> Vec<(K, V)> {
        let recorded = std::mem::take(&mut self.0);
        recorded
            .into_iter()
            .filter_map(|(key, before)| {
                let value = now(&key);
                (value != before).then_some((key, value))
            })
            .collect()
    }
}
