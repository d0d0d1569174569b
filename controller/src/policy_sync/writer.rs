//! The one writer of the policy objects (`WeftPolicy`, `WeftAddressGroup` slices,
//! `WeftNodePolicy`, `WeftPolicyIndex`).
//!
//! It waits for the model's first complete [`Snapshot`](crate::policy::Snapshot) and
//! the Node cache, lists what is written, and writes only the differences ([`State`]):
//! a new leader recomputing the same objects writes none. Then it takes the model's
//! deltas, coalescing whatever arrives within [`COALESCE`] of the first into one round,
//! so an object changed by a burst of events is written once. Writes are server-side
//! applies with force under the controller's field manager, which owns the labels it
//! sets: a span label left out of the next apply is removed. Each round writes groups'
//! slices and policies first, then node policies and the index, deletes last, so a
//! weftd never reads a name before the object it names. A failed write (or a
//! `WeftNodePolicy` whose Node is not cached yet) is tried again every [`RETRY`].

use super::feed::Update;
use super::objects::{Kind, ObjectId, Rendered};
use super::progress::Programming;
use super::state::{Listed, Op, State, Stored};
use crate::metrics::Metrics;
use crate::policy::Delta;
use crate::shared::MANAGER;
use crate::stores::Listed as Complete;
use futures::channel::mpsc::UnboundedReceiver;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::{ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, ResourceExt};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tracing::{debug, info, warn};
use weft_api::{WeftAddressGroup, WeftNodePolicy, WeftPolicy, WeftPolicyIndex};

/// Changes arriving this close to the first of a round are written with it.
pub const COALESCE: Duration = Duration::from_millis(20);
/// How soon a failed write, or a node policy waiting for its Node, is tried again.
const RETRY: Duration = Duration::from_secs(1);
/// Writes in flight at once.
const WRITES_AT_ONCE: usize = 16;
/// Objects per page when listing what is written.
const LIST_PAGE: u32 = 500;

/// The writer's clients and what it reads besides the model.
pub struct Writer {
    apis: Apis,
    nodes: Store<Node>,
    nodes_listed: Complete,
    metrics: Metrics,
    /// What each policy's nodes must observe, after each round, for the status writer.
    programming: watch::Sender<Arc<Programming>>,
}

/// One dynamic client per kind: the writes are the same JSON for all four.
struct Apis {
    slices: Api<DynamicObject>,
    policies: Api<DynamicObject>,
    nodes: Api<DynamicObject>,
    index: Api<DynamicObject>,
}

impl Apis {
    fn new(client: &Client) -> Apis {
        let api = |resource: ApiResource| Api::all_with(client.clone(), &resource);
        Apis {
            slices: api(ApiResource::erase::<WeftAddressGroup>(&())),
            policies: api(ApiResource::erase::<WeftPolicy>(&())),
            nodes: api(ApiResource::erase::<WeftNodePolicy>(&())),
            index: api(ApiResource::erase::<WeftPolicyIndex>(&())),
        }
    }

    fn of(&self, kind: Kind) -> &Api<DynamicObject> {
        match kind {
            Kind::Slice => &self.slices,
            Kind::Policy => &self.policies,
            Kind::Node => &self.nodes,
            Kind::Index => &self.index,
        }
    }
}

impl Writer {
    pub fn new(
        client: &Client,
        nodes: Store<Node>,
        nodes_listed: Complete,
        metrics: Metrics,
        programming: watch::Sender<Arc<Programming>>,
    ) -> Writer {
        Writer {
            apis: Apis::new(client),
            nodes,
            nodes_listed,
            metrics,
            programming,
        }
    }

    /// Writes for as long as the model sends updates (for ever).
    pub async fn run(self, mut updates: UnboundedReceiver<Update>) {
        // A replica that loses the lease stops this task: a standby shows no objects.
        let _gauges = ClearedOnDrop(self.metrics.policy_objects.clone());
        let snapshot = loop {
            match updates.next().await {
                Some(Update::Listed(snapshot)) => break snapshot,
                Some(Update::Changed(_)) => {}
                None => return,
            }
        };
        self.nodes_listed.wait().await;
        let listed = loop {
            match self.list().await {
                Ok(listed) => break listed,
                Err(e) => {
                    warn!(error = %e, "listing the policy objects");
                    tokio::time::sleep(RETRY).await;
                }
            }
        };
        let (mut state, mut pending) = State::new(snapshot, listed);
        let began = std::time::Instant::now();
        let mut first = true;
        loop {
            pending = self.round(&mut state, &pending).await;
            if first {
                first = false;
                info!(elapsed = ?began.elapsed(), pending = pending.len(), "policy objects in sync with the model");
            }
            self.gauges(&state);
            self.programming.send_replace(Arc::new(state.programming()));
            let wait = (!pending.is_empty()).then_some(RETRY);
            match next_round(&mut updates, wait).await {
                Round::Changes(delta) => pending.extend(state.apply(&delta)),
                Round::Quiet => {}
                Round::Closed => return,
            }
        }
    }

    /// Lists the four kinds.
    async fn list(&self) -> Result<Listed, kube::Error> {
        let mut listed = Listed::default();
        for kind in Kind::ALL {
            let mut params = ListParams::default().limit(LIST_PAGE);
            loop {
                let page = self.apis.of(kind).list(&params).await?;
                for object in page.items {
                    let name = object.name_any();
                    let spec = object.data.get("spec").cloned().unwrap_or_default();
                    if kind == Kind::Slice {
                        match serde_json::from_value(spec.clone()) {
                            Ok(slice) => {
                                listed.slices.insert(name.clone(), slice);
                            }
                            Err(e) => {
                                warn!(slice = %name, error = %e, "unreadable slice: rewritten")
                            }
                        }
                    }
                    let meta = &object.metadata;
                    let rendered = Rendered::of_listed(
                        meta.labels.as_ref().unwrap_or(&Default::default()),
                        meta.owner_references.as_deref().unwrap_or_default(),
                        spec,
                    );
                    let stored = Stored {
                        rendered,
                        version: object.resource_version().unwrap_or_default(),
                    };
                    listed.objects.insert(ObjectId::new(kind, name), stored);
                }
                match page.metadata.continue_.filter(|c| !c.is_empty()) {
                    Some(token) => params = params.continue_token(&token),
                    None => break,
                }
            }
        }
        Ok(listed)
    }

    /// Makes the `touched` objects what the state says; returns those to try again.
    async fn round(&self, state: &mut State, touched: &BTreeSet<ObjectId>) -> BTreeSet<ObjectId> {
        let node_uid = |name: &str| self.nodes.get(&ObjectRef::new(name)).and_then(|n| n.uid());
        let (ops, mut again) = state.ops(touched, node_uid);
        let mut phases: [Vec<Op>; 3] = Default::default();
        for op in ops {
            let phase = match &op {
                Op::Apply(id, _) if matches!(id.kind, Kind::Slice | Kind::Policy) => 0,
                Op::Apply(..) => 1,
                Op::Delete(_) => 2,
            };
            phases[phase].push(op);
        }
        for phase in phases {
            let results: Vec<(Op, Result<Option<Stored>, kube::Error>)> =
                futures::stream::iter(phase)
                    .map(|op| async move {
                        let result = self.write(&op).await;
                        (op, result)
                    })
                    .buffer_unordered(WRITES_AT_ONCE)
                    .collect()
                    .await;
            for (op, result) in results {
                let id = op.id().clone();
                let verb = match op {
                    Op::Apply(..) => "applied",
                    Op::Delete(_) => "deleted",
                };
                match result {
                    Ok(stored) => {
                        debug!(object = %id, "{verb}");
                        self.count(id.kind, verb);
                        state.wrote(&id, stored);
                    }
                    Err(e) => {
                        warn!(object = %id, error = %e, "policy object write failed: retrying");
                        self.count(id.kind, "failed");
                        again.insert(id);
                    }
                }
            }
        }
        again
    }

    /// One write; the object as written (`None`: deleted).
    async fn write(&self, op: &Op) -> Result<Option<Stored>, kube::Error> {
        match op {
            Op::Apply(id, rendered) => {
                let body = rendered.apply_body(id.kind, &id.name);
                let params = PatchParams::apply(MANAGER).force();
                let written = self
                    .apis
                    .of(id.kind)
                    .patch(&id.name, &params, &Patch::Apply(&body))
                    .await?;
                Ok(Some(Stored {
                    rendered: rendered.clone(),
                    version: written.resource_version().unwrap_or_default(),
                }))
            }
            Op::Delete(id) => {
                // weftd keeps a slice deleted from one of its span watches for a grace
                // (it may be moving to the other: daemon/src/policy/spanned.rs), so a
                // slice emptied of a group still in use would allow its last members
                // that long: they go first, in an update every watch delivers at once.
                if id.kind == Kind::Slice {
                    let empty = serde_json::json!({"spec": {"members": []}});
                    let emptied = self
                        .apis
                        .of(id.kind)
                        .patch(&id.name, &PatchParams::default(), &Patch::Merge(&empty))
                        .await;
                    match emptied {
                        Ok(_) => {}
                        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(None),
                        Err(e) => return Err(e),
                    }
                }
                match self
                    .apis
                    .of(id.kind)
                    .delete(&id.name, &DeleteParams::default())
                    .await
                {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => return Err(e),
                }
                Ok(None)
            }
        }
    }

    fn count(&self, kind: Kind, result: &str) {
        let writes = &self.metrics.policy_writes;
        writes.with_label_values(&[kind.name(), result]).inc();
    }

    fn gauges(&self, state: &State) {
        for kind in Kind::ALL {
            let objects = self
                .metrics
                .policy_objects
                .with_label_values(&[kind.name()]);
            objects.set(i64::try_from(state.count(kind)).unwrap_or(i64::MAX));
        }
    }
}

/// What the model sent for one round.
#[derive(Debug, PartialEq)]
enum Round {
    /// Everything sent within [`COALESCE`] of the first update, merged.
    Changes(Delta),
    /// Nothing within `wait`.
    Quiet,
    /// The model is gone.
    Closed,
}

/// Waits for the model's next update (at most `wait`, if given), then takes every
/// update sent within [`COALESCE`] of it.
async fn next_round(updates: &mut UnboundedReceiver<Update>, wait: Option<Duration>) -> Round {
    let next = match wait {
        None => updates.next().await,
        Some(wait) => match tokio::time::timeout(wait, updates.next()).await {
            Ok(next) => next,
            Err(_) => return Round::Quiet,
        },
    };
    let Some(first) = next else {
        return Round::Closed;
    };
    tokio::time::sleep(COALESCE).await;
    let mut delta = Delta::default();
    let mut absorb = |update: Update| match update {
        Update::Changed(d) => delta.merge(d),
        Update::Listed(_) => warn!("the model listed twice: ignored"),
    };
    absorb(first);
    while let Ok(update) = updates.try_recv() {
        absorb(update);
    }
    Round::Changes(delta)
}

/// Resets the object gauges when the task ends or is stopped.
struct ClearedOnDrop(prometheus::IntGaugeVec);

impl Drop for ClearedOnDrop {
    fn drop(&mut self) {
        self.0.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_api::WeftPolicyIndexSpec;

    fn index_delta(namespace: &str) -> Update {
        let index = WeftPolicyIndexSpec {
            namespaces: vec![weft_api::PolicedNamespace {
                name: namespace.into(),
                ingress: true,
                egress: false,
            }],
        };
        let mut delta = Delta::default();
        delta.policies.insert(format!("{namespace}.p"), None);
        delta.index = Some(index);
        Update::Changed(delta)
    }

    #[tokio::test(start_paused = true)]
    async fn updates_within_the_coalescing_window_make_one_round() {
        let (send, mut updates) = futures::channel::mpsc::unbounded();
        send.unbounded_send(index_delta("a")).unwrap();
        let later = send.clone();
        tokio::spawn(async move {
            tokio::time::sleep(COALESCE / 2).await;
            later.unbounded_send(index_delta("b")).unwrap();
            tokio::time::sleep(COALESCE * 2).await;
            later.unbounded_send(index_delta("c")).unwrap();
        });
        let Round::Changes(first) = next_round(&mut updates, None).await else {
            panic!("no round");
        };
        // a and b merged, the later index winning; c comes in a round of its own.
        assert_eq!(first.policies.keys().collect::<Vec<_>>(), ["a.p", "b.p"]);
        assert_eq!(first.index.unwrap().namespaces[0].name, "b");
        let Round::Changes(second) = next_round(&mut updates, None).await else {
            panic!("no second round");
        };
        assert_eq!(second.policies.keys().collect::<Vec<_>>(), ["c.p"]);
        assert_eq!(next_round(&mut updates, Some(RETRY)).await, Round::Quiet);
        drop(send);
        assert_eq!(next_round(&mut updates, Some(RETRY)).await, Round::Closed);
    }
}
