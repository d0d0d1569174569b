//! Pod and namespace events: a pod's groups from the indexes' candidates, its policies
//! from its namespace's; a namespace's pods in and out of the cluster-scoped groups
//! whose namespace selector changed its verdict.

use super::{Member, Model, PodEntry};
use crate::policy::model::Key;
use crate::policy::pod::PolicyPod;
use crate::policy::selector::Labels;
use std::collections::BTreeSet;
use weft_api::GroupMember;

/// Pods and namespaces.
impl Model {
    pub(super) fn attach_pod(&mut self, pod: PolicyPod) {
        let key = pod.key();
        self.index.add_pod(&key, &pod.labels);
        let mut groups = Vec::new();
        if pod.addressable() {
            let namespace_labels = self.index.namespace_labels(&pod.namespace);
            for name in self.index.candidate_groups(&pod.namespace, &pod.labels) {
                let group = &self.groups[&name];
                if group
                    .key
                    .selects(&pod.namespace, namespace_labels, &pod.labels)
                {
                    groups.push(name);
                }
            }
        }
        let policies: Vec<Key> = match pod.policed() {
            true => self
                .namespace_policies(&pod.namespace)
                .filter(|(_, p)| p.compiled.pods.matches(&pod.labels))
                .map(|(k, _)| k.clone())
                .collect(),
            false => Vec::new(),
        };
        let entry = PodEntry {
            pod,
            groups: BTreeSet::new(),
            policies: BTreeSet::new(),
        };
        self.pods.insert(key.clone(), entry);
        for group in groups {
            self.join(&group, &key);
        }
        for policy in policies {
            self.apply(&policy, &key);
        }
        self.place_entry(&key);
    }

    pub(super) fn detach_pod(&mut self, key: &Key) {
        let Some(entry) = self.pods.get(key) else {
            return;
        };
        let groups = entry.groups.clone();
        let policies = entry.policies.clone();
        for group in groups {
            self.leave(&group, key);
        }
        for policy in policies {
            self.unapply(&policy, key);
        }
        self.clear_entry(key);
        if let Some(entry) = self.pods.remove(key) {
            self.index.remove_pod(key, &entry.pod.labels);
        }
    }

    pub(super) fn set_namespace(&mut self, name: &str, labels: Option<Labels>) {
        let (entered, left) = self.index.set_namespace(name, labels);
        let pods = self.pods_of(name);
        for group in left {
            for pod in &pods {
                if self.pods[pod].groups.contains(&group) {
                    self.leave(&group, pod);
                }
            }
        }
        for group in entered {
            for pod in &pods {
                let p = &self.pods[pod].pod;
                if p.addressable() && self.groups[&group].key.pods.matches(&p.labels) {
                    self.join(&group, pod);
                }
            }
        }
    }

    /// Makes the pod a member of `group`, or refreshes its member content.
    pub(super) fn join(&mut self, group: &str, pod: &Key) {
        let entry = self.pods.get_mut(pod).expect("a known pod");
        entry.groups.insert(group.to_owned());
        let content = GroupMember {
            uid: entry.pod.uid.clone(),
            ips: entry.pod.ips.clone(),
            ports: entry.pod.ports_named(&self.groups[group].ports),
        };
        let uid = content.uid.clone();
        let pod = pod.clone();
        self.set_member(group, uid, Some(Member { pod, content }));
    }

    pub(super) fn leave(&mut self, group: &str, pod: &Key) {
        let entry = self.pods.get_mut(pod).expect("a known pod");
        entry.groups.remove(group);
        let uid = entry.pod.uid.clone();
        self.set_member(group, uid, None);
    }

    fn set_member(&mut self, group: &str, uid: String, member: Option<Member>) {
        let entry = self.groups.get_mut(group).expect("a group in use");
        let before = || entry.members.get(&uid).map(|m| m.content.clone());
        self.journal
            .members
            .record((group.to_owned(), uid.clone()), before);
        match member {
            Some(member) => entry.members.insert(uid, member),
            None => entry.members.remove(&uid),
        };
    }
}
