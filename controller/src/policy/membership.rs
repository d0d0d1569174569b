//! [`Model`]: the incremental state of policy resolution, fed events (pods, namespaces,
//! policies as they arrive), answering each with the [`Delta`] of the objects the
//! controller writes.
//!
//! A pod event re-resolves that pod only: its candidate groups come from the indexes
//! (index.rs), its policies from those of its namespace. A namespace event re-resolves
//! the cluster-scoped groups whose namespace selector changed its verdict, over that
//! namespace's pods. A policy event moves its group references (a group is created on
//! its first user with one evaluation over the indexes, deleted with its last) and
//! re-resolves the pods of its namespace. Spans are reference counts: a policy's per
//! node, the pods it applies to there; a group's per node, its users spanning it.
//!
//! Each change of a pod, policy or namespace is carried out as "take the old version's
//! effects away, add the new version's"; [`Before`] records each touched value as it
//! was before the event, so the delta holds only what really differs at its end.

mod pods;
mod policies;
mod spans;

use super::delta::{Before, Delta, GroupState, PolicyState, Snapshot};
use super::error::PolicyError;
use super::index::Index;
use super::model::{compile, CompiledPolicy, GroupKey, Key};
use super::pod::PolicyPod;
use super::selector::Labels;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use weft_api::{
    policy_name, GroupMember, PodPolicies, PolicedNamespace, WeftNodePolicySpec,
    WeftPolicyIndexSpec, WeftPolicySpec,
};

/// The resolved state. See the module documentation.
#[derive(Debug, Default)]
pub struct Model {
    index: Index,
    pods: HashMap<Key, PodEntry>,
    /// Sorted by namespace, so a namespace's policies are a range.
    policies: BTreeMap<Key, PolicyEntry>,
    groups: HashMap<String, GroupEntry>,
    /// Per node, the entries of its pods.
    nodes: HashMap<String, BTreeMap<Key, PodPolicies>>,
    journal: Journal,
}

#[derive(Debug)]
struct PodEntry {
    pod: PolicyPod,
    /// Groups it is a member of.
    groups: BTreeSet<String>,
    /// Policies applying to it.
    policies: BTreeSet<Key>,
}

#[derive(Debug)]
struct PolicyEntry {
    compiled: CompiledPolicy,
    /// Pods it applies to, by UID.
    applied: BTreeMap<String, Key>,
    /// Per node, how many of those pods run there.
    span: BTreeMap<String, usize>,
}

#[derive(Debug)]
struct GroupEntry {
    key: GroupKey,
    text: String,
    /// Policies using it, with the port names their egress rules resolve on it.
    users: BTreeMap<Key, BTreeSet<String>>,
    /// The union of the users' port names: what members list.
    ports: BTreeSet<String>,
    /// By pod UID.
    members: BTreeMap<String, Member>,
    /// Per node, how many users span it.
    span: BTreeMap<String, usize>,
}

/// A group member: which pod, and what the group's slices say of it.
#[derive(Debug)]
struct Member {
    pod: Key,
    content: GroupMember,
}

/// Values as they were before the event being processed.
#[derive(Debug, Default)]
struct Journal {
    groups: Before<String, Option<String>>,
    members: Before<(String, String), Option<GroupMember>>,
    group_spans: Before<(String, String), bool>,
    policies: Before<Key, Option<WeftPolicySpec>>,
    policy_spans: Before<(Key, String), bool>,
    applied: Before<(Key, String), bool>,
    nodes: Before<String, Vec<PodPolicies>>,
    index: Before<String, Option<PolicedNamespace>>,
}

impl Model {
    pub fn new() -> Model {
        Model::default()
    }

    /// A pod was added or changed.
    pub fn upsert_pod(&mut self, pod: PolicyPod) -> Delta {
        self.detach_pod(&pod.key());
        self.attach_pod(pod);
        self.finish()
    }

    /// A pod was deleted.
    pub fn delete_pod(&mut self, key: &Key) -> Delta {
        self.detach_pod(key);
        self.finish()
    }

    /// A namespace was added or its labels changed.
    pub fn upsert_namespace(&mut self, name: &str, labels: Labels) -> Delta {
        self.set_namespace(name, Some(labels));
        self.finish()
    }

    /// A namespace was deleted (its pods' deletions come as pod events).
    pub fn delete_namespace(&mut self, name: &str) -> Delta {
        self.set_namespace(name, None);
        self.finish()
    }

    /// A policy was added or changed. A policy that does not compile changes nothing:
    /// its previous version, if any, stays in force (the caller reports the error).
    pub fn upsert_policy(&mut self, policy: &NetworkPolicy) -> Result<Delta, PolicyError> {
        let compiled = compile(policy)?;
        let key = compiled.key.clone();
        self.set_policy(&key, Some(compiled));
        Ok(self.finish())
    }

    /// A policy was deleted.
    pub fn delete_policy(&mut self, key: &Key) -> Delta {
        self.set_policy(key, None);
        self.finish()
    }

    /// Everything the controller writes, as resolved now.
    pub fn snapshot(&self) -> Snapshot {
        let groups = self.groups.iter().map(|(name, g)| {
            let state = GroupState {
                selector: g.text.clone(),
                members: g
                    .members
                    .iter()
                    .map(|(uid, m)| (uid.clone(), m.content.clone()))
                    .collect(),
                span: g.span.keys().cloned().collect(),
            };
            (name.clone(), state)
        });
        let policies = self.policies.values().map(|p| {
            let state = PolicyState {
                spec: p.compiled.spec.clone(),
                applied_to: p.applied.keys().cloned().collect(),
                span: p.span.keys().cloned().collect(),
            };
            (p.compiled.name(), state)
        });
        let nodes = self.nodes.keys().map(|n| (n.clone(), self.node_policy(n)));
        Snapshot {
            groups: groups.collect(),
            policies: policies.collect(),
            nodes: nodes.collect(),
            index: self.index(),
        }
    }

    /// The `WeftNodePolicy` spec of `node`.
    pub fn node_policy(&self, node: &str) -> WeftNodePolicySpec {
        WeftNodePolicySpec {
            node_name: node.to_owned(),
            pods: self.node_pods(node),
        }
    }

    /// The `WeftPolicyIndex` spec.
    pub fn index(&self) -> WeftPolicyIndexSpec {
        let mut namespaces: Vec<PolicedNamespace> = Vec::new();
        for (key, policy) in &self.policies {
            if namespaces.last().is_none_or(|n| n.name != key.namespace) {
                namespaces.push(PolicedNamespace {
                    name: key.namespace.clone(),
                    ..PolicedNamespace::default()
                });
            }
            if let Some(entry) = namespaces.last_mut() {
                entry.ingress |= policy.compiled.spec.ingress.is_some();
                entry.egress |= policy.compiled.spec.egress.is_some();
            }
        }
        WeftPolicyIndexSpec { namespaces }
    }

    /// The members of `group`, sorted by pod UID; none when the group is not in use.
    pub fn group_members<'a>(&'a self, group: &str) -> impl Iterator<Item = &'a GroupMember> + 'a {
        let members = self.groups.get(group).map(|g| g.members.values());
        members.into_iter().flatten().map(|m| &m.content)
    }

    fn node_pods(&self, node: &str) -> Vec<PodPolicies> {
        self.nodes
            .get(node)
            .map(|pods| pods.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The policies of `namespace`.
    fn namespace_policies<'a>(
        &'a self,
        namespace: &'a str,
    ) -> impl Iterator<Item = (&'a Key, &'a PolicyEntry)> + 'a {
        let first = Key::new(namespace, "");
        self.policies
            .range(first..)
            .take_while(move |(k, _)| k.namespace == namespace)
    }

    /// The index entry of `namespace`: `None` when it has no policy.
    fn policed_namespace(&self, namespace: &str) -> Option<PolicedNamespace> {
        let mut entry: Option<PolicedNamespace> = None;
        for (_, policy) in self.namespace_policies(namespace) {
            let e = entry.get_or_insert_with(|| PolicedNamespace {
                name: namespace.to_owned(),
                ..PolicedNamespace::default()
            });
            e.ingress |= policy.compiled.spec.ingress.is_some();
            e.egress |= policy.compiled.spec.egress.is_some();
        }
        entry
    }

    /// The keys of the pods of `namespace`.
    fn pods_of(&self, namespace: &str) -> Vec<Key> {
        let names = self.index.pods_in(namespace);
        names.map(|n| Key::new(namespace, n.clone())).collect()
    }

    /// The delta of the event just processed: every value the journal recorded that
    /// differs now.
    fn finish(&mut self) -> Delta {
        let mut delta = Delta::default();
        self.group_changes(&mut delta);
        self.policy_changes(&mut delta);
        let nodes = &self.nodes;
        let pods = |node: &String| {
            let pods = nodes.get(node).map(|p| p.values().cloned().collect());
            pods.unwrap_or_default()
        };
        for (node, pods) in self.journal.nodes.changed(pods) {
            let node_name = node.clone();
            delta
                .nodes
                .insert(node, WeftNodePolicySpec { node_name, pods });
        }
        let mut index = std::mem::take(&mut self.journal.index);
        if !index.changed(|n| self.policed_namespace(n)).is_empty() {
            delta.index = Some(self.index());
        }
        delta
    }

    fn group_changes(&mut self, delta: &mut Delta) {
        let (journal, groups) = (&mut self.journal, &self.groups);
        let text = |name: &String| groups.get(name).map(|g| g.text.clone());
        delta.groups.extend(journal.groups.changed(text));
        let member = |(group, uid): &(String, String)| {
            let member = groups.get(group)?.members.get(uid)?;
            Some(member.content.clone())
        };
        for ((group, uid), now) in journal.members.changed(member) {
            delta.members.entry(group).or_default().insert(uid, now);
        }
        let spans = |(group, node): &(String, String)| {
            groups.get(group).is_some_and(|g| g.span.contains_key(node))
        };
        for ((group, node), now) in journal.group_spans.changed(spans) {
            delta
                .group_spans
                .entry(group)
                .or_default()
                .insert(node, now);
        }
    }

    fn policy_changes(&mut self, delta: &mut Delta) {
        let (journal, policies) = (&mut self.journal, &self.policies);
        let spec = |key: &Key| policies.get(key).map(|p| p.compiled.spec.clone());
        for (key, now) in journal.policies.changed(spec) {
            delta.policies.insert(object_name(&key), now);
        }
        let spans = |(key, node): &(Key, String)| {
            policies.get(key).is_some_and(|p| p.span.contains_key(node))
        };
        for ((key, node), now) in journal.policy_spans.changed(spans) {
            let changes = delta.policy_spans.entry(object_name(&key)).or_default();
            changes.insert(node, now);
        }
        let applied = |(key, uid): &(Key, String)| {
            policies
                .get(key)
                .is_some_and(|p| p.applied.contains_key(uid))
        };
        for ((key, uid), now) in journal.applied.changed(applied) {
            let changes = delta.applied_to.entry(object_name(&key)).or_default();
            changes.insert(uid, now);
        }
    }
}

/// The `WeftPolicy` name of a policy.
fn object_name(key: &Key) -> String {
    policy_name(&key.namespace, &key.name)
}
