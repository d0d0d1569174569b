//! What the controller sent this node, as weftd's policy engine reads it: the compiled
//! policies and address-group slices of its span, its `WeftNodePolicy` and the policy
//! index. Pure: the watch task feeds events in, the engine reads the views out.
//!
//! A policy weftd cannot enforce as written (`WeftPolicySpec::problems`) is refused
//! whole: the previous version stays in force and the problem is reported in
//! `WeftNodePolicy.status.errors`, naming the object, the field and the value.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use weft_api::{
    GroupMember, PodPolicies, WeftAddressGroupSpec, WeftNodePolicySpec, WeftPolicyIndexSpec,
    WeftPolicySpec,
};

use super::spanned::{SpanWatch, Spanned};

/// The controller's objects for this node.
#[derive(Debug, Default)]
pub struct PolicyInputs {
    policies: Spanned<WeftPolicySpec>,
    slices: Spanned<WeftAddressGroupSpec>,
    node: Option<WeftNodePolicySpec>,
    index: Option<WeftPolicyIndexSpec>,
    refused: BTreeMap<String, Vec<String>>,
    complete: bool,
    /// The node's `WeftNodePolicy` and the index, both watched on the apiserver, have
    /// listed once: whether a starting pod can be selected by any policy is known, even
    /// while the span watches (on the relay) have not listed.
    own_listed: bool,
    /// Counts changes, so a copy is saved only when there is news.
    revision: u64,
}

impl PolicyInputs {
    /// A `WeftPolicy` added or changed on `watch`.
    pub fn apply_policy(&mut self, watch: SpanWatch, name: &str, spec: WeftPolicySpec) {
        self.revision += 1;
        let problems = spec.problems();
        if problems.is_empty() {
            self.refused.remove(name);
            self.policies.apply(watch, name, spec);
        } else {
            let texts = problems
                .iter()
                .map(|p| format!("WeftPolicy {name}: {}: {}", p.field, p.problem))
                .collect();
            self.refused.insert(name.to_owned(), texts);
        }
    }

    /// A `WeftPolicy` gone from `watch`.
    pub fn delete_policy(&mut self, watch: SpanWatch, name: &str, now: Instant) {
        self.revision += 1;
        self.refused.remove(name);
        self.policies.delete(watch, name, now);
    }

    /// A complete listing of a `WeftPolicy` watch.
    pub fn relist_policies(
        &mut self,
        watch: SpanWatch,
        listed: BTreeMap<String, WeftPolicySpec>,
        now: Instant,
    ) {
        self.revision += 1;
        let (good, bad): (BTreeMap<_, _>, BTreeMap<_, _>) = listed
            .into_iter()
            .partition(|(_, spec)| spec.problems().is_empty());
        let kept: BTreeMap<String, WeftPolicySpec> = bad
            .keys()
            .filter_map(|name| {
                self.policies
                    .get(name)
                    .map(|spec| (name.clone(), spec.clone()))
            })
            .collect();
        self.policies
            .relist(watch, good.into_iter().chain(kept).collect(), now);
        for (name, spec) in bad {
            self.apply_policy(watch, &name, spec);
        }
    }

    /// An address-group slice added or changed on `watch`.
    pub fn apply_slice(&mut self, watch: SpanWatch, name: &str, spec: WeftAddressGroupSpec) {
        self.revision += 1;
        self.slices.apply(watch, name, spec);
    }

    /// An address-group slice gone from `watch`.
    pub fn delete_slice(&mut self, watch: SpanWatch, name: &str, now: Instant) {
        self.revision += 1;
        self.slices.delete(watch, name, now);
    }

    /// A complete listing of a `WeftAddressGroup` watch.
    pub fn relist_slices(
        &mut self,
        watch: SpanWatch,
        listed: BTreeMap<String, WeftAddressGroupSpec>,
        now: Instant,
    ) {
        self.revision += 1;
        self.slices.relist(watch, listed, now);
    }

    /// The node's `WeftNodePolicy`, or `None` when it was deleted.
    pub fn set_node(&mut self, spec: Option<WeftNodePolicySpec>) {
        self.revision += 1;
        self.node = spec;
    }

    /// The `WeftPolicyIndex`, or `None` when it was deleted.
    pub fn set_index(&mut self, spec: Option<WeftPolicyIndexSpec>) {
        self.revision += 1;
        self.index = spec;
    }

    /// Every watch has listed once: what is absent now is absent, not on its way.
    pub fn set_complete(&mut self) {
        self.complete = true;
        self.own_listed = true;
    }

    /// The node's `WeftNodePolicy` and the index have listed once.
    pub fn set_own_listed(&mut self) {
        self.own_listed = true;
    }

    /// Whether every watch has listed once.
    pub fn complete(&self) -> bool {
        self.complete
    }

    /// Drops objects deleted more than the grace ago; true when any went.
    pub fn expire(&mut self, now: Instant) -> bool {
        let policies = self.policies.expire(now);
        let expired = self.slices.expire(now) || policies;
        self.revision += u64::from(expired);
        expired
    }

    /// Which change the inputs are at.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// What a restarted weftd needs to judge pods before the apiserver answers.
    pub fn saved(&self) -> SavedInputs {
        SavedInputs {
            policies: self
                .policies
                .iter()
                .map(|(name, spec)| (name.to_owned(), spec.clone()))
                .collect(),
            slices: self
                .slices
                .iter()
                .map(|(name, spec)| (name.to_owned(), spec.clone()))
                .collect(),
            node: self.node.clone(),
            index: self.index.clone(),
        }
    }

    /// Inputs restored from a saved copy: complete, as they were when saved. The
    /// watches' first listings replace them (objects no longer listed leave as
    /// deletions do).
    pub fn restored(saved: SavedInputs) -> PolicyInputs {
        let mut inputs = PolicyInputs::default();
        for (name, spec) in saved.policies {
            inputs.apply_policy(SpanWatch::Node, &name, spec);
        }
        for (name, spec) in saved.slices {
            inputs.apply_slice(SpanWatch::Node, &name, spec);
        }
        inputs.node = saved.node;
        inputs.index = saved.index;
        inputs.set_complete();
        inputs
    }

    /// When [`PolicyInputs::expire`] next has work.
    pub fn next_expiry(&self) -> Option<Instant> {
        [self.policies.next_expiry(), self.slices.next_expiry()]
            .into_iter()
            .flatten()
            .min()
    }

    /// The policy named `name`, if this node has it.
    #[cfg(test)]
    pub fn policy(&self, name: &str) -> Option<&WeftPolicySpec> {
        self.policies.get(name)
    }

    /// Every policy this node has, by name.
    pub fn policies(&self) -> impl Iterator<Item = (&str, &WeftPolicySpec)> {
        self.policies.iter()
    }

    /// Every group's members, its slices merged, by group name.
    pub fn groups(&self) -> BTreeMap<&str, Vec<&GroupMember>> {
        let mut groups: BTreeMap<&str, Vec<&GroupMember>> = BTreeMap::new();
        for (_, slice) in self.slices.iter() {
            groups
                .entry(slice.group.as_str())
                .or_default()
                .extend(slice.members.iter());
        }
        groups
    }

    /// What admission needs to know of a pod starting now.
    pub fn admission(&self, namespace: &str, uid: &str) -> Admission<'_> {
        // An entry counts wherever it is: a pod turning a family off has one in any
        // namespace.
        if let Some(entry) = self.entry(uid) {
            return Admission::Entry(entry);
        }
        if !self.own_listed {
            return Admission::Unknown;
        }
        let Some(index) = &self.index else {
            // The controller writes the index (empty or not) when it starts leading;
            // with none listed, no controller computes policies and none can be
            // enforced.
            return Admission::Unpoliced;
        };
        match index.polices(namespace) {
            true => Admission::Pending,
            false => Admission::Unpoliced,
        }
    }

    /// The `WeftNodePolicy` entry of the pod with `uid`.
    pub fn entry(&self, uid: &str) -> Option<&PodPolicies> {
        self.entries().find(|pod| pod.uid == uid)
    }

    /// Every entry of the node's `WeftNodePolicy`.
    pub fn entries(&self) -> impl Iterator<Item = &PodPolicies> {
        self.node.iter().flat_map(|node| node.pods.iter())
    }

    /// Every refused object's problems, for the status.
    pub fn errors(&self) -> Vec<String> {
        self.refused.values().flatten().cloned().collect()
    }
}

/// The inputs as saved in the state directory.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SavedInputs {
    policies: BTreeMap<String, WeftPolicySpec>,
    slices: BTreeMap<String, WeftAddressGroupSpec>,
    node: Option<WeftNodePolicySpec>,
    index: Option<WeftPolicyIndexSpec>,
}

/// How a starting pod is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission<'a> {
    /// The node's `WeftNodePolicy` and the index have not listed yet: nothing is known
    /// of policies.
    Unknown,
    /// No policy in its namespace: the pod is not isolated.
    Unpoliced,
    /// Its entry is here: its profiles can be applied.
    Entry(&'a PodPolicies),
    /// Its namespace has policies and its entry has not arrived yet.
    Pending,
}

#[cfg(test)]
#[path = "../tests/policy_inputs.rs"]
mod tests;
