//! [`Stores`]: what this replica knows of the cluster's objects. The watch-fed caches of
//! Nodes, WeftNodes and the WeftNetwork, the responses of its own writes until the
//! caches catch up (fresh.rs), and the network's plan, parsed once per generation.

use crate::fresh::Fresh;
use crate::shared::{lock, Error};
use crate::trim;
use k8s_openapi::api::core::v1::Node;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::ResourceExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use weft_api::{Plan, WeftNetwork, WeftNode};

/// The caches, our writes and the plan. Cheap to clone.
#[derive(Clone)]
pub struct Stores {
    pub nodes: Store<Node>,
    pub weftnodes: Store<WeftNode>,
    pub network: Store<WeftNetwork>,
    /// The name of the WeftNetwork holding the plan.
    pub network_name: Arc<str>,
    /// Whether each store has been listed once.
    pub nodes_listed: Listed,
    pub weftnodes_listed: Listed,
    pub network_listed: Listed,
    written_nodes: Arc<Fresh<Node>>,
    written_weftnodes: Arc<Fresh<WeftNode>>,
    plan: Arc<Mutex<PlanCache>>,
}

impl std::fmt::Debug for Stores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stores")
            .field("network", &self.network_name)
            .finish_non_exhaustive()
    }
}

/// Whether a watch has listed its objects once, so its store holds them all. The parts
/// of the controller wait on this rather than on kube-runtime's
/// `Store::wait_until_ready`, which wakes only one of several tasks waiting at once (its
/// oneshot receiver keeps a single waker), and each part is a task of its own.
#[derive(Debug, Clone)]
pub struct Listed(Arc<watch::Sender<bool>>);

impl Default for Listed {
    fn default() -> Listed {
        Listed(Arc::new(watch::Sender::new(false)))
    }
}

impl Listed {
    /// The watch's list is complete (`watcher::Event::InitDone`, once the reflector
    /// applied it).
    pub fn mark(&self) {
        self.0
            .send_if_modified(|listed| !std::mem::replace(listed, true));
    }

    /// Waits until the first list is complete.
    pub async fn wait(&self) {
        let mut listed = self.0.subscribe();
        let _ = listed.wait_for(|l| *l).await;
    }
}

/// The parsed plan of the network's current generation, and the last valid cooldown.
#[derive(Default)]
struct PlanCache {
    key: Option<(Option<String>, Option<i64>)>,
    plan: Option<Result<Arc<Plan>, String>>,
    cooldown: Option<Duration>,
}

impl Stores {
    pub fn new(
        nodes: Store<Node>,
        weftnodes: Store<WeftNode>,
        network: Store<WeftNetwork>,
        network_name: &str,
    ) -> Stores {
        Stores {
            nodes,
            weftnodes,
            network,
            network_name: network_name.into(),
            nodes_listed: Listed::default(),
            weftnodes_listed: Listed::default(),
            network_listed: Listed::default(),
            written_nodes: Arc::new(Fresh::new(trim::node)),
            written_weftnodes: Arc::new(Fresh::new(trim::weftnode)),
            plan: Arc::default(),
        }
    }

    /// The Node: the store's copy, or our last write if the store lags.
    pub fn node(&self, name: &str) -> Option<Arc<Node>> {
        let cached = self.nodes.get(&ObjectRef::new(name))?;
        self.written_nodes
            .view(name, Some(cached.clone()))
            .or(Some(cached))
    }

    /// Whether this incarnation of the node is in the node cache.
    pub fn has_node(&self, name: &str, uid: &str) -> bool {
        self.nodes
            .get(&ObjectRef::new(name))
            .is_some_and(|n| n.uid().as_deref() == Some(uid))
    }

    /// The node's WeftNode: the store's copy, or our last write if the store lags.
    pub fn weftnode(&self, name: &str) -> Option<Arc<WeftNode>> {
        let cached = self.weftnodes.get(&ObjectRef::new(name));
        self.written_weftnodes.view(name, cached)
    }

    /// Records the response of our write of a Node decided from `before`.
    pub fn wrote_node(&self, name: &str, before: Option<&Node>, response: Node) {
        self.written_nodes.record(name, before, response);
    }

    /// Records the response of our write of a WeftNode decided from `before`.
    pub fn wrote_weftnode(&self, name: &str, before: Option<&WeftNode>, response: WeftNode) {
        self.written_weftnodes.record(name, before, response);
    }

    /// Whether the watched Node is the echo of our own write (fresh.rs).
    pub fn echoes_node(&self, node: &Node) -> bool {
        self.written_nodes.echoes(node)
    }

    /// Whether the watched WeftNode is the echo of our own write (fresh.rs).
    pub fn echoes_weftnode(&self, weftnode: &WeftNode) -> bool {
        self.written_weftnodes.echoes(weftnode)
    }

    /// Drops the records of our writes the caches have caught up with.
    pub fn prune_writes(&self) {
        self.written_weftnodes
            .prune(|name| self.weftnodes.get(&ObjectRef::new(name)));
        self.written_nodes
            .prune(|name| self.nodes.get(&ObjectRef::new(name)));
    }

    /// The network as cached.
    pub fn network(&self) -> Option<Arc<WeftNetwork>> {
        self.network.get(&ObjectRef::new(&self.network_name))
    }

    /// The validated plan of the network, parsed once per generation.
    pub fn plan(&self) -> Result<Arc<Plan>, Error> {
        let name = &*self.network_name;
        let Some(net) = self.network() else {
            return Err(Error::NetworkMissing(name.to_owned()));
        };
        let key = Some((net.uid(), net.metadata.generation));
        let mut cache = lock(&self.plan);
        if cache.key != key || cache.plan.is_none() {
            let plan = net.spec.plan().map(Arc::new).map_err(|errors| {
                errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            });
            if let Ok(p) = &plan {
                cache.cooldown = Some(p.release_cooldown);
            }
            cache.key = key;
            cache.plan = Some(plan);
        }
        match cache.plan.clone() {
            Some(Ok(plan)) => Ok(plan),
            Some(Err(problems)) => Err(Error::InvalidNetwork {
                name: name.to_owned(),
                problems,
            }),
            None => Err(Error::NetworkMissing(name.to_owned())),
        }
    }

    /// The release cooldown of the last valid plan (30 s before one was seen).
    pub fn cooldown(&self) -> Duration {
        let _ = self.plan();
        lock(&self.plan).cooldown.unwrap_or(Duration::from_secs(30))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_task_waiting_for_a_list_wakes_when_it_is_complete() {
        let listed = Listed::default();
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let listed = listed.clone();
                tokio::spawn(async move { listed.wait().await })
            })
            .collect();
        // Every waiter is parked before the list completes.
        tokio::time::sleep(Duration::from_millis(50)).await;
        listed.mark();
        for waiter in waiters {
            tokio::time::timeout(Duration::from_secs(5), waiter)
                .await
                .expect("a waiter was not woken")
                .unwrap();
        }
        // Later waiters return at once.
        tokio::time::timeout(Duration::from_secs(1), listed.wait())
            .await
            .unwrap();
    }
}
