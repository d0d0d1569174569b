//! The policy model's inputs: watches of every Pod (trimmed at once to a
//! [`PolicyPod`]), Namespace and NetworkPolicy of the cluster, applied to the [`Model`]
//! in the order each watch delivers them. Once all three have listed, the writer gets
//! the whole [`Snapshot`]; after that, every event's non-empty [`Delta`]. A relist is
//! applied as it comes, and the objects it no longer holds are deleted. A policy that
//! does not compile is reported (with its reference) to the Event publisher, once per
//! version and problem; the model keeps its previous version in force.

use crate::policy::{Delta, Key, Model, PolicyError, PolicyPod, Snapshot};
use futures::channel::mpsc::UnboundedSender;
use futures::stream::{BoxStream, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, ObjectReference, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, BTreeSet};
use tracing::{info, warn};

/// Pods per page of the initial list: a page is decoded whole, managedFields and status
/// included, before its pods shrink to what policy reads (weftd's WeftNode watch
/// measured 100 against the default 500: a lower peak at the same speed).
const LIST_PAGE: u32 = 100;

/// What the model tells the writer.
#[derive(Debug)]
pub enum Update {
    /// Every watch listed: all the objects to write.
    Listed(Snapshot),
    /// An event's changes since.
    Changed(Delta),
}

/// A NetworkPolicy the model refused.
#[derive(Debug)]
pub struct Invalid {
    pub policy: ObjectReference,
    pub error: PolicyError,
}

/// One event of one of the three watches.
enum Seen {
    Pod(Event<PolicyPod>),
    Namespace(Event<Namespace>),
    Policy(Event<NetworkPolicy>),
}

/// Runs the watches into the model until their streams end (never: a broken watch is
/// retried with backoff).
pub async fn feed(
    client: Client,
    updates: UnboundedSender<Update>,
    invalid: UnboundedSender<Invalid>,
) {
    let paged = watcher::Config::default().page_size(LIST_PAGE);
    let pods = watch(&client, paged, |e: Event<Pod>| {
        map_event(e, |pod| PolicyPod::from_pod(&pod)).map(Seen::Pod)
    });
    let namespaces = watch(&client, watcher::Config::default(), |e| {
        Some(Seen::Namespace(e))
    });
    let policies = watch(&client, watcher::Config::default(), |e| {
        Some(Seen::Policy(e))
    });
    let mut events = futures::stream::select_all([pods, namespaces, policies]);
    let mut inputs = Inputs {
        model: Model::new(),
        updates,
        invalid,
        pods: Relist::default(),
        namespaces: Relist::default(),
        policies: Relist::default(),
        refused: BTreeMap::new(),
        listed: false,
    };
    while let Some(event) = events.next().await {
        match event {
            Ok(seen) => inputs.apply(seen),
            Err(e) => warn!(error = %e, "policy input watch"),
        }
    }
}

fn watch<K>(
    client: &Client,
    config: watcher::Config,
    wrap: impl Fn(Event<K>) -> Option<Seen> + Send + 'static,
) -> BoxStream<'static, Result<Seen, watcher::Error>>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    watcher::watcher(Api::<K>::all(client.clone()), config)
        .default_backoff()
        .filter_map(move |e| {
            let seen = match e {
                Ok(event) => wrap(event).map(Ok),
                Err(e) => Some(Err(e)),
            };
            std::future::ready(seen)
        })
        .boxed()
}

/// The event with its object converted; `None` when the object converts to nothing (a
/// pod without identity: never from a watch).
fn map_event<K, T>(event: Event<K>, f: impl FnOnce(K) -> Option<T>) -> Option<Event<T>> {
    Some(match event {
        Event::Apply(o) => Event::Apply(f(o)?),
        Event::Delete(o) => Event::Delete(f(o)?),
        Event::InitApply(o) => Event::InitApply(f(o)?),
        Event::Init => Event::Init,
        Event::InitDone => Event::InitDone,
    })
}

/// The keys a watch holds, and those a listing in progress has delivered.
#[derive(Debug)]
struct Relist<K> {
    known: BTreeSet<K>,
    listing: Option<BTreeSet<K>>,
    /// Whether a listing completed once.
    done: bool,
}

impl<K> Default for Relist<K> {
    fn default() -> Relist<K> {
        Relist {
            known: BTreeSet::new(),
            listing: None,
            done: false,
        }
    }
}

/// What one watch event asks of the model.
enum Step<K, O> {
    Upsert(O),
    Delete(K),
}

impl<K: Ord + Clone> Relist<K> {
    /// The model steps of `event`, `key` naming its object.
    fn steps<O>(&mut self, event: Event<O>, key: impl Fn(&O) -> K) -> Vec<Step<K, O>> {
        match event {
            Event::Apply(o) | Event::InitApply(o) => {
                let k = key(&o);
                if let Some(listing) = self.listing.as_mut() {
                    listing.insert(k.clone());
                }
                self.known.insert(k);
                vec![Step::Upsert(o)]
            }
            Event::Delete(o) => {
                let k = key(&o);
                self.known.remove(&k);
                vec![Step::Delete(k)]
            }
            Event::Init => {
                self.listing = Some(BTreeSet::new());
                Vec::new()
            }
            // The listing is complete: what it did not deliver is gone.
            Event::InitDone => {
                self.done = true;
                let listed = self.listing.take().unwrap_or_default();
                let gone: Vec<K> = self.known.difference(&listed).cloned().collect();
                self.known = listed;
                gone.into_iter().map(Step::Delete).collect()
            }
        }
    }
}

struct Inputs {
    model: Model,
    updates: UnboundedSender<Update>,
    invalid: UnboundedSender<Invalid>,
    pods: Relist<Key>,
    namespaces: Relist<String>,
    policies: Relist<Key>,
    /// Per refused policy, the version (uid, generation) and problem last reported.
    refused: BTreeMap<Key, (Option<String>, Option<i64>, String)>,
    /// Whether the writer has the snapshot.
    listed: bool,
}

impl Inputs {
    fn apply(&mut self, seen: Seen) {
        let mut delta = Delta::default();
        match seen {
            Seen::Pod(event) => {
                for step in self.pods.steps(event, PolicyPod::key) {
                    delta.merge(match step {
                        Step::Upsert(pod) => self.model.upsert_pod(pod),
                        Step::Delete(key) => self.model.delete_pod(&key),
                    });
                }
            }
            Seen::Namespace(event) => {
                for step in self.namespaces.steps(event, ResourceExt::name_any) {
                    delta.merge(match step {
                        Step::Upsert(ns) => {
                            let name = ns.name_any();
                            let labels = ns.metadata.labels.unwrap_or_default();
                            self.model.upsert_namespace(&name, labels)
                        }
                        Step::Delete(name) => self.model.delete_namespace(&name),
                    });
                }
            }
            Seen::Policy(event) => {
                for step in self.policies.steps(event, policy_key) {
                    match step {
                        Step::Upsert(policy) => delta.merge(self.upsert_policy(&policy)),
                        Step::Delete(key) => {
                            self.refused.remove(&key);
                            delta.merge(self.model.delete_policy(&key));
                        }
                    }
                }
            }
        }
        if self.listed {
            if !delta.is_empty() {
                let _ = self.updates.unbounded_send(Update::Changed(delta));
            }
        } else if self.pods.done && self.namespaces.done && self.policies.done {
            self.listed = true;
            info!("pods, namespaces and network policies listed: writing policy objects");
            let _ = self
                .updates
                .unbounded_send(Update::Listed(self.model.snapshot()));
        }
    }

    /// The policy's delta; a policy that does not compile changes nothing and is
    /// reported once per version and problem.
    fn upsert_policy(&mut self, policy: &NetworkPolicy) -> Delta {
        let key = policy_key(policy);
        match self.model.upsert_policy(policy) {
            Ok(delta) => {
                self.refused.remove(&key);
                delta
            }
            Err(error) => {
                // A relist delivers the same version again: told once.
                let told = (policy.uid(), policy.metadata.generation, error.to_string());
                if self.refused.get(&key) != Some(&told) {
                    warn!(policy = %format!("{}/{}", key.namespace, key.name), %error, "network policy refused");
                    let _ = self.invalid.unbounded_send(Invalid {
                        policy: policy.object_ref(&()),
                        error,
                    });
                }
                self.refused.insert(key, told);
                Delta::default()
            }
        }
    }
}

fn policy_key(policy: &NetworkPolicy) -> Key {
    Key::new(policy.namespace().unwrap_or_default(), policy.name_any())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys<O>(steps: Vec<Step<String, O>>) -> (Vec<O>, Vec<String>) {
        let (mut upserts, mut deletes) = (Vec::new(), Vec::new());
        for step in steps {
            match step {
                Step::Upsert(o) => upserts.push(o),
                Step::Delete(k) => deletes.push(k),
            }
        }
        (upserts, deletes)
    }

    #[test]
    fn a_relist_deletes_what_it_no_longer_holds() {
        let mut relist: Relist<String> = Relist::default();
        let key = |o: &&str| (*o).to_owned();
        for event in [Event::Init, Event::InitApply("a"), Event::InitApply("b")] {
            relist.steps(event, key);
        }
        assert!(!relist.done);
        assert_eq!(keys(relist.steps(Event::InitDone, key)), (vec![], vec![]));
        assert!(relist.done);
        relist.steps(Event::Apply("c"), key);
        // The watch restarts: b went while it was away, a and c are listed again.
        relist.steps(Event::Init, key);
        let (upserts, _) = keys(relist.steps(Event::InitApply("a"), key));
        assert_eq!(upserts, ["a"]);
        relist.steps(Event::InitApply("c"), key);
        assert_eq!(
            keys(relist.steps(Event::InitDone, key)),
            (vec![], vec!["b".to_owned()])
        );
        assert_eq!(
            keys(relist.steps(Event::Delete("c"), key)),
            (vec![], vec!["c".to_owned()])
        );
        assert_eq!(relist.known, BTreeSet::from(["a".to_owned()]));
    }
}
