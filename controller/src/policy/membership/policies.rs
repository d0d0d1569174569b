//! Policy events: group references moved (a group created with its first user, one
//! evaluation over the indexes; deleted with its last), the policy applied to the pods
//! of its namespace it selects.

use super::{GroupEntry, Model, PolicyEntry};
use crate::policy::model::{CompiledPolicy, GroupKey, Key};
use std::collections::{BTreeMap, BTreeSet};

/// Policies and groups.
impl Model {
    pub(super) fn set_policy(&mut self, key: &Key, compiled: Option<CompiledPolicy>) {
        let namespace = key.namespace.clone();
        let spec = self.policies.get(key).map(|p| p.compiled.spec.clone());
        self.journal.policies.record(key.clone(), || spec);
        let policed = self.policed_namespace(&namespace);
        self.journal
            .index
            .record(namespace.clone(), || policed.clone());
        // Take the old version's effects away...
        let old = self.policies.get(key);
        let old_applied: Vec<Key> = old
            .map(|p| p.applied.values().cloned().collect())
            .unwrap_or_default();
        let old_groups: Vec<String> = old
            .map(|p| p.compiled.groups.keys().cloned().collect())
            .unwrap_or_default();
        for pod in &old_applied {
            self.unapply(key, pod);
        }
        // ...use the new version's groups before letting go of the old ones, so a group
        // both use is never deleted and evaluated again...
        let mut refresh: BTreeSet<Key> = old_applied.into_iter().collect();
        match compiled {
            Some(compiled) => {
                for (name, using) in &compiled.groups {
                    self.use_group(name, key, using.key.clone(), using.ports.clone());
                }
                for name in old_groups
                    .iter()
                    .filter(|g| !compiled.groups.contains_key(*g))
                {
                    self.unuse_group(name, key);
                }
                let selector = compiled.pods.clone();
                let entry = PolicyEntry {
                    compiled,
                    applied: BTreeMap::new(),
                    span: BTreeMap::new(),
                };
                self.policies.insert(key.clone(), entry);
                // ...then apply it to the pods it selects.
                for pod in self.pods_of(&namespace) {
                    let p = &self.pods[&pod].pod;
                    if p.policed() && selector.matches(&p.labels) {
                        self.apply(key, &pod);
                        refresh.insert(pod);
                    }
                }
            }
            None => {
                for name in &old_groups {
                    self.unuse_group(name, key);
                }
                self.policies.remove(key);
            }
        }
        if self.policed_namespace(&namespace).is_some() != policed.is_some() {
            refresh.extend(self.pods_of(&namespace));
        }
        for pod in refresh {
            self.place_entry(&pod);
        }
    }

    /// Records that `policy` uses `name` (creating the group) with egress rules
    /// resolving `ports` on it. Called while the policy spans no node.
    pub(super) fn use_group(
        &mut self,
        name: &str,
        policy: &Key,
        key: GroupKey,
        ports: BTreeSet<String>,
    ) {
        let new = !self.groups.contains_key(name);
        if new {
            self.journal.groups.record(name.to_owned(), || None);
            self.index.add_group(name, &key);
            let group = GroupEntry {
                text: key.text(),
                key,
                users: BTreeMap::new(),
                ports: BTreeSet::new(),
                members: BTreeMap::new(),
                span: BTreeMap::new(),
            };
            self.groups.insert(name.to_owned(), group);
        }
        self.set_user(name, policy, Some(ports));
        if new {
            self.fill_group(name);
        }
    }

    /// Evaluates a new group over the pods the indexes say it may hold.
    fn fill_group(&mut self, name: &str) {
        let key = &self.groups[name].key;
        let selected = |pod: &Key| {
            let p = &self.pods[pod].pod;
            let namespace_labels = self.index.namespace_labels(&p.namespace);
            p.addressable() && key.selects(&p.namespace, namespace_labels, &p.labels)
        };
        let mut joining = self.index.candidate_pods(key);
        joining.retain(selected);
        for pod in joining {
            self.join(name, &pod);
        }
    }

    /// Records that `policy` no longer uses `name`; deletes the group with its last user.
    /// Called while the policy spans no node.
    pub(super) fn unuse_group(&mut self, name: &str, policy: &Key) {
        self.set_user(name, policy, None);
        if !self.groups[name].users.is_empty() {
            return;
        }
        let members: Vec<Key> = self.groups[name]
            .members
            .values()
            .map(|m| m.pod.clone())
            .collect();
        for pod in members {
            self.leave(name, &pod);
        }
        if let Some(group) = self.groups.remove(name) {
            self.journal
                .groups
                .record(name.to_owned(), || Some(group.text.clone()));
            self.index.remove_group(name, &group.key);
        }
    }

    /// Sets (or removes) a user's port names; members are refreshed when the union of
    /// the names changes.
    pub(super) fn set_user(&mut self, name: &str, policy: &Key, ports: Option<BTreeSet<String>>) {
        let group = self.groups.get_mut(name).expect("a group in use");
        match ports {
            Some(ports) => group.users.insert(policy.clone(), ports),
            None => group.users.remove(policy),
        };
        let union: BTreeSet<String> = group.users.values().flatten().cloned().collect();
        if union == group.ports {
            return;
        }
        group.ports = union;
        let members: Vec<Key> = group.members.values().map(|m| m.pod.clone()).collect();
        for pod in members {
            self.join(name, &pod);
        }
    }
}
