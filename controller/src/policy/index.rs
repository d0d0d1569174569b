//! The lookups that keep resolution incremental (design §1.3): pods by namespace and by
//! label pair, namespaces' labels, and the groups a pod can belong to: groups by scope,
//! by a label pair every member must carry (the inverted index), the rest in a scan list
//! per scope, and per namespace the cluster-scoped groups whose namespace selector
//! picks it. Answers are candidates; the caller evaluates the selectors.

use super::model::{GroupKey, Key, Scope};
use super::selector::Labels;
use std::collections::{BTreeSet, HashMap};

type Pair = (String, String);

/// The indexes. Group and pod identities are the caller's; this keeps only lookups.
#[derive(Debug, Default)]
pub struct Index {
    namespaces: HashMap<String, Labels>,
    pods_by_namespace: HashMap<String, BTreeSet<String>>,
    pods_by_label: HashMap<Pair, BTreeSet<Key>>,
    /// Per scope (`None`: the cluster), the groups in it.
    groups: HashMap<Option<String>, GroupLookup>,
    /// Cluster-scoped groups with their namespace selectors.
    cluster_groups: HashMap<String, GroupKey>,
    /// Per namespace, the cluster-scoped groups whose namespace selector picks it.
    namespace_groups: HashMap<String, BTreeSet<String>>,
}

/// The groups of one scope.
#[derive(Debug, Default)]
struct GroupLookup {
    by_pair: HashMap<Pair, BTreeSet<String>>,
    scan: BTreeSet<String>,
}

impl Index {
    /// The labels of `namespace`, if it has been seen.
    pub fn namespace_labels(&self, namespace: &str) -> Option<&Labels> {
        self.namespaces.get(namespace)
    }

    /// Records `namespace` (`None`: deleted) and returns the cluster-scoped groups it
    /// entered and left.
    pub fn set_namespace(
        &mut self,
        namespace: &str,
        labels: Option<Labels>,
    ) -> (Vec<String>, Vec<String>) {
        let now: BTreeSet<String> = match &labels {
            Some(l) => self
                .cluster_groups
                .iter()
                .filter(|(_, key)| key.selects_namespace(l))
                .map(|(name, _)| name.clone())
                .collect(),
            None => BTreeSet::new(),
        };
        let before = self.namespace_groups.remove(namespace).unwrap_or_default();
        let entered = now.difference(&before).cloned().collect();
        let left = before.difference(&now).cloned().collect();
        if !now.is_empty() {
            self.namespace_groups.insert(namespace.to_owned(), now);
        }
        match labels {
            Some(l) => self.namespaces.insert(namespace.to_owned(), l),
            None => self.namespaces.remove(namespace),
        };
        (entered, left)
    }

    pub fn add_pod(&mut self, key: &Key, labels: &Labels) {
        let names = self.pods_by_namespace.entry(key.namespace.clone());
        names.or_default().insert(key.name.clone());
        for pair in labels.iter() {
            let pair = (pair.0.clone(), pair.1.clone());
            self.pods_by_label
                .entry(pair)
                .or_default()
                .insert(key.clone());
        }
    }

    pub fn remove_pod(&mut self, key: &Key, labels: &Labels) {
        remove_from(&mut self.pods_by_namespace, &key.namespace, &key.name);
        for pair in labels.iter() {
            remove_from(
                &mut self.pods_by_label,
                &(pair.0.clone(), pair.1.clone()),
                key,
            );
        }
    }

    /// The names of the pods of `namespace`.
    pub fn pods_in<'a>(&'a self, namespace: &str) -> impl Iterator<Item = &'a String> + 'a {
        self.pods_by_namespace.get(namespace).into_iter().flatten()
    }

    pub fn add_group(&mut self, name: &str, key: &GroupKey) {
        let lookup = self.groups.entry(scope_id(key)).or_default();
        match key.pods.required_pair() {
            Some((k, v)) => {
                let hits = lookup.by_pair.entry((k.to_owned(), v.to_owned()));
                hits.or_default().insert(name.to_owned());
            }
            None => {
                lookup.scan.insert(name.to_owned());
            }
        }
        if let Scope::Cluster(_) = key.scope {
            for (namespace, labels) in &self.namespaces {
                if key.selects_namespace(labels) {
                    let groups = self.namespace_groups.entry(namespace.clone());
                    groups.or_default().insert(name.to_owned());
                }
            }
            self.cluster_groups.insert(name.to_owned(), key.clone());
        }
    }

    pub fn remove_group(&mut self, name: &str, key: &GroupKey) {
        let scope = scope_id(key);
        if let Some(lookup) = self.groups.get_mut(&scope) {
            match key.pods.required_pair() {
                Some((k, v)) => {
                    remove_from(&mut lookup.by_pair, &(k.to_owned(), v.to_owned()), name)
                }
                None => {
                    lookup.scan.remove(name);
                }
            }
            if lookup.by_pair.is_empty() && lookup.scan.is_empty() {
                self.groups.remove(&scope);
            }
        }
        if self.cluster_groups.remove(name).is_some() {
            self.namespace_groups.retain(|_, groups| {
                groups.remove(name);
                !groups.is_empty()
            });
        }
    }

    /// The groups a pod of `namespace` with `labels` may belong to.
    pub fn candidate_groups(&self, namespace: &str, labels: &Labels) -> BTreeSet<String> {
        let mut candidates = self.scope_candidates(&Some(namespace.to_owned()), labels);
        if let Some(picked) = self.namespace_groups.get(namespace) {
            let cluster = self.scope_candidates(&None, labels);
            candidates.extend(cluster.intersection(picked).cloned());
        }
        candidates
    }

    fn scope_candidates(&self, scope: &Option<String>, labels: &Labels) -> BTreeSet<String> {
        let Some(lookup) = self.groups.get(scope) else {
            return BTreeSet::new();
        };
        let mut candidates = lookup.scan.clone();
        for (k, v) in labels {
            if let Some(hits) = lookup.by_pair.get(&(k.clone(), v.clone())) {
                candidates.extend(hits.iter().cloned());
            }
        }
        candidates
    }

    /// The pods a group of `key` may hold.
    pub fn candidate_pods(&self, key: &GroupKey) -> Vec<Key> {
        let namespaces: BTreeSet<&str> = match &key.scope {
            Scope::Namespace(n) => BTreeSet::from([n.as_str()]),
            Scope::Cluster(_) => self
                .namespaces
                .iter()
                .filter(|(_, labels)| key.selects_namespace(labels))
                .map(|(n, _)| n.as_str())
                .collect(),
        };
        if let Some((k, v)) = key.pods.required_pair() {
            let hits = self.pods_by_label.get(&(k.to_owned(), v.to_owned()));
            let in_scope = |pod: &&Key| namespaces.contains(pod.namespace.as_str());
            return hits
                .into_iter()
                .flatten()
                .filter(in_scope)
                .cloned()
                .collect();
        }
        namespaces
            .into_iter()
            .flat_map(|n| self.pods_in(n).map(move |name| Key::new(n, name.clone())))
            .collect()
    }
}

fn scope_id(key: &GroupKey) -> Option<String> {
    match &key.scope {
        Scope::Namespace(n) => Some(n.clone()),
        Scope::Cluster(_) => None,
    }
}

/// Removes `item` from the set at `key`, and the set once empty.
fn remove_from<K, T, Q>(map: &mut HashMap<K, BTreeSet<T>>, key: &K, item: &Q)
where
    K: std::hash::Hash + Eq,
    T: Ord + std::borrow::Borrow<Q>,
    Q: Ord + ?Sized,
{
    if let Some(set) = map.get_mut(key) {
        set.remove(item);
        if set.is_empty() {
            map.remove(key);
        }
    }
}
