//! Applied-to sets, the span counts that follow them, and the pods' entries in their
//! nodes' `WeftNodePolicy`.

use super::Model;
use crate::policy::model::Key;
use std::collections::{BTreeMap, BTreeSet};
use weft_api::PodPolicies;

/// Applied-to sets, spans and node entries.
impl Model {
    pub(super) fn apply(&mut self, policy: &Key, pod: &Key) {
        self.set_applied(policy, pod, true);
    }

    pub(super) fn unapply(&mut self, policy: &Key, pod: &Key) {
        self.set_applied(policy, pod, false);
    }

    pub(super) fn set_applied(&mut self, policy: &Key, pod: &Key, applies: bool) {
        let entry = self.pods.get_mut(pod).expect("a known pod");
        let uid = entry.pod.uid.clone();
        let node = entry.pod.node.clone();
        match applies {
            true => entry.policies.insert(policy.clone()),
            false => entry.policies.remove(policy),
        };
        let p = self.policies.get_mut(policy).expect("a known policy");
        let before = || p.applied.contains_key(&uid);
        self.journal
            .applied
            .record((policy.clone(), uid.clone()), before);
        match applies {
            true => p.applied.insert(uid, pod.clone()),
            false => p.applied.remove(&uid),
        };
        if let Some(node) = node {
            self.count_policy_span(policy, &node, applies);
        }
    }

    /// Counts a pod of `policy` on `node` in (`up`) or out; a node entering or leaving
    /// the policy's span enters or leaves its groups' spans.
    pub(super) fn count_policy_span(&mut self, policy: &Key, node: &str, up: bool) {
        let p = self.policies.get_mut(policy).expect("a known policy");
        let spanned = p.span.contains_key(node);
        self.journal
            .policy_spans
            .record((policy.clone(), node.to_owned()), || spanned);
        if !count(&mut p.span, node, up) {
            return;
        }
        let groups: Vec<String> = p.compiled.groups.keys().cloned().collect();
        for name in groups {
            let group = self.groups.get_mut(&name).expect("a group in use");
            let spanned = group.span.contains_key(node);
            self.journal
                .group_spans
                .record((name.clone(), node.to_owned()), || spanned);
            count(&mut group.span, node, up);
        }
    }

    /// Sets the pod's entry on its node to what its policies say, or removes it.
    pub(super) fn place_entry(&mut self, pod: &Key) {
        let Some(node) = self.pods[pod].pod.node.clone() else {
            return;
        };
        let entry = self.entry_for(pod);
        self.record_node(&node);
        let pods = self.nodes.entry(node.clone()).or_default();
        match entry {
            Some(entry) => pods.insert(pod.clone(), entry),
            None => pods.remove(pod),
        };
        if pods.is_empty() {
            self.nodes.remove(&node);
        }
    }

    pub(super) fn record_node(&mut self, node: &str) {
        if !self.journal.nodes.recorded(node) {
            let pods = self.node_pods(node);
            self.journal.nodes.record(node.to_owned(), || pods);
        }
    }

    pub(super) fn clear_entry(&mut self, pod: &Key) {
        let Some(node) = self.pods[pod].pod.node.clone() else {
            return;
        };
        self.record_node(&node);
        if let Some(pods) = self.nodes.get_mut(&node) {
            pods.remove(pod);
            if pods.is_empty() {
                self.nodes.remove(&node);
            }
        }
    }

    /// The pod's entry in its node's `WeftNodePolicy`: for a pod with its own network in
    /// a namespace with policies, or turning a family off.
    pub(super) fn entry_for(&self, key: &Key) -> Option<PodPolicies> {
        let entry = &self.pods[key];
        let pod = &entry.pod;
        let policed = self.namespace_policies(&pod.namespace).next().is_some();
        if !pod.policed() || (!policed && pod.ip_families.is_none()) {
            return None;
        }
        let mut ingress = Vec::new();
        let mut egress = Vec::new();
        let mut ports = BTreeSet::new();
        for policy in &entry.policies {
            let compiled = &self.policies[policy].compiled;
            if compiled.spec.ingress.is_some() {
                ingress.push(compiled.name());
                ports.extend(compiled.ingress_ports.iter().cloned());
            }
            if compiled.spec.egress.is_some() {
                egress.push(compiled.name());
            }
        }
        ingress.sort();
        egress.sort();
        Some(PodPolicies {
            namespace: pod.namespace.clone(),
            name: pod.name.clone(),
            uid: pod.uid.clone(),
            ingress,
            egress,
            named_ports: pod.ports_named(&ports),
            ip_families: pod.ip_families.clone(),
        })
    }
}

/// Counts one up or down at `node`; whether the count crossed zero.
fn count(counts: &mut BTreeMap<String, usize>, node: &str, up: bool) -> bool {
    if up {
        let n = counts.entry(node.to_owned()).or_default();
        *n += 1;
        return *n == 1;
    }
    match counts.get_mut(node) {
        Some(n) if *n > 1 => {
            *n -= 1;
            false
        }
        Some(_) => {
            counts.remove(node);
            true
        }
        None => false,
    }
}
