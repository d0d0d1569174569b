//! What every reconcile shares: the APIs, the stores, the claim ledger and block writer,
//! the responses of our own writes, the Event recorder, the metrics, the pacing of
//! conditions, the nodes waiting for space, and the parsed plan.

use crate::blocks::BlockWriter;
use crate::claims::Ledger;
use crate::fresh::Fresh;
use crate::metrics::Metrics;
use crate::pacing::Pacing;
use crate::reconcile::Error;
use futures::channel::mpsc::UnboundedSender;
use k8s_openapi::api::core::v1::Node;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Resource, ResourceExt};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{Semaphore, SemaphorePermit};
use tracing::warn;
use weft_api::{Plan, WeftClaim, WeftClaimBlock, WeftNetwork, WeftNode};

/// Why a node waits: a condition reason and its message.
#[derive(Debug, Clone, PartialEq)]
pub struct Waiting {
    pub reason: &'static str,
    pub message: String,
}

/// Everything reconciles share.
pub struct Context {
    pub node_api: Api<Node>,
    pub weftnode_api: Api<WeftNode>,
    /// `WeftClaim`s of earlier versions, released and deleted, no longer created.
    pub claims: Api<WeftClaim>,
    pub block_api: Api<WeftClaimBlock>,
    pub network_api: Api<WeftNetwork>,
    pub nodes: Store<Node>,
    pub weftnodes: Store<WeftNode>,
    pub network: Store<WeftNetwork>,
    pub network_name: String,
    pub ledger: Ledger,
    /// The one writer of claim blocks.
    pub block_writer: BlockWriter,
    /// Responses of our own writes, fresher than the stores for a moment.
    pub fresh_nodes: Fresh<Node>,
    pub fresh_weftnodes: Fresh<WeftNode>,
    pub recorder: Recorder,
    pub metrics: Metrics,
    /// Good-news conditions held back while allocations are written.
    pub pacing: Pacing,
    pub retrigger: UnboundedSender<()>,
    /// `--workers` turns at reconciling, handed out first come, first served.
    turns: Option<Semaphore>,
    waiting: Mutex<BTreeMap<String, Waiting>>,
    plan: Mutex<PlanCache>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("network", &self.network_name)
            .finish_non_exhaustive()
    }
}

/// The parsed plan of the network's current generation, and the last valid cooldown.
#[derive(Default)]
struct PlanCache {
    key: Option<(Option<String>, Option<i64>)>,
    plan: Option<Result<Arc<Plan>, String>>,
    cooldown: Option<Duration>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Context {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        client: kube::Client,
        nodes: Store<Node>,
        weftnodes: Store<WeftNode>,
        network: Store<WeftNetwork>,
        flags: &crate::flags::Flags,
        recorder: Recorder,
        metrics: Metrics,
        retrigger: UnboundedSender<()>,
    ) -> Context {
        Context {
            node_api: Api::all(client.clone()),
            weftnode_api: Api::all(client.clone()),
            claims: Api::all(client.clone()),
            block_api: Api::all(client.clone()),
            network_api: Api::all(client),
            nodes,
            weftnodes,
            network,
            network_name: flags.network.clone(),
            turns: (flags.workers > 0).then(|| Semaphore::new(usize::from(flags.workers))),
            ledger: Ledger::default(),
            block_writer: BlockWriter::default(),
            fresh_nodes: Fresh::new(crate::trim::node),
            fresh_weftnodes: Fresh::new(crate::trim::weftnode),
            recorder,
            pacing: Pacing::new(metrics.held_conditions.clone()),
            metrics,
            retrigger,
            waiting: Mutex::default(),
            plan: Mutex::default(),
        }
    }

    /// Waits for a turn to reconcile (see `reconcile::reconcile`).
    pub async fn turn(&self) -> Option<SemaphorePermit<'_>> {
        match &self.turns {
            Some(turns) => turns.acquire().await.ok(),
            None => None,
        }
    }

    /// The node's WeftNode: the store's copy, or our last write if the store lags.
    pub fn weftnode(&self, name: &str) -> Option<Arc<WeftNode>> {
        let cached = self.weftnodes.get(&ObjectRef::new(name));
        self.fresh_weftnodes.view(name, cached)
    }

    /// The validated plan of the network, parsed once per generation.
    pub fn plan(&self) -> Result<Arc<Plan>, Error> {
        let name = &self.network_name;
        let Some(net) = self.network.get(&ObjectRef::new(name)) else {
            return Err(Error::NetworkMissing(name.clone()));
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
                name: name.clone(),
                problems,
            }),
            None => Err(Error::NetworkMissing(name.clone())),
        }
    }

    /// The release cooldown of the last valid plan (30 s before one was seen).
    pub fn cooldown(&self) -> Duration {
        let _ = self.plan();
        lock(&self.plan).cooldown.unwrap_or(Duration::from_secs(30))
    }

    /// Records why the node waits (or that it no longer does).
    pub fn wait(&self, node: &str, why: Option<Waiting>) {
        let mut waiting = lock(&self.waiting);
        match why {
            Some(w) => waiting.insert(node.to_owned(), w),
            None => waiting.remove(node),
        };
        self.metrics
            .exhausted_nodes
            .set(i64::try_from(waiting.len()).unwrap_or(i64::MAX));
    }

    /// The nodes waiting for space or a valid network, and why.
    pub fn waiting(&self) -> Vec<(String, Waiting)> {
        lock(&self.waiting)
            .iter()
            .map(|(n, w)| (n.clone(), w.clone()))
            .collect()
    }

    pub fn any_waiting(&self) -> bool {
        !lock(&self.waiting).is_empty()
    }

    /// Drops the waiting entries of Nodes that are gone.
    pub fn forget_gone_waiting(&self) {
        let mut waiting = lock(&self.waiting);
        waiting.retain(|n, _| self.nodes.get(&ObjectRef::new(n)).is_some());
        self.metrics
            .exhausted_nodes
            .set(i64::try_from(waiting.len()).unwrap_or(i64::MAX));
    }

    /// Reconciles every Node again (space was freed or the plan changed).
    pub fn retrigger_all(&self) {
        let _ = self.retrigger.unbounded_send(());
    }

    /// Publishes an Event on the Node (failures are logged: an Event is best effort).
    pub async fn event(&self, node: &Node, type_: EventType, reason: &str, note: String) {
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: "Allocate".into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &node.object_ref(&())).await {
            warn!(node = %node.name_any(), error = %e, "cannot publish an event");
        }
    }
}
