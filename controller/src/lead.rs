//! What runs while this replica leads: [`tasks`] builds the handles the controller's
//! parts share and returns the parts as named tasks, for main to run and supervise.
//!
//! One watch per kind feeds both a store (or the ledger) and the Node controller's
//! triggers: a WeftNode or claim block event triggers its node once the store or ledger
//! holds it (a second watch per kind, as `Controller::watches` would open, doubles what
//! the apiserver sends and this process decodes, and can trigger before the store has
//! caught up). The echoes of our own writes trigger nothing: the reconcile that wrote
//! them went on from the response.

use crate::claims::Claims;
use crate::context::Context;
use crate::flags::Flags;
use crate::metrics::Metrics;
use crate::network::{watch_network, StatusWriter};
use crate::pacing::{Nudger, Pacing};
use crate::reconcile::{error_policy, reconcile};
use crate::releaser::Releaser;
use crate::shared::MANAGER;
use crate::stores::Stores;
use crate::trim;
use crate::waitlist::Waitlist;
use crate::writes::Writes;
use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender};
use futures::future::BoxFuture;
use futures::{Future, FutureExt, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Node;
use kube::runtime::controller::{self, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, ResourceExt};
use std::sync::Arc;
use tracing::{debug, info, warn};
use weft_api::WeftNode;

/// A part of the controller: it runs for as long as this replica leads, and its end is
/// a bug.
pub struct Task {
    pub name: &'static str,
    pub run: BoxFuture<'static, ()>,
}

fn task(name: &'static str, run: impl Future<Output = ()> + Send + 'static) -> Task {
    Task {
        name,
        run: run.boxed(),
    }
}

/// The controller's parts, wired to one another.
pub fn tasks(client: &Client, flags: &Flags, metrics: &Metrics) -> Vec<Task> {
    let (nodes, node_writer) = reflector::store();
    let (weftnodes, weftnode_writer) = reflector::store();
    let (network, network_writer) = reflector::store();
    let (retrigger, retriggered) = futures::channel::mpsc::unbounded();
    let (touched, touched_nodes) = futures::channel::mpsc::unbounded();
    let stores = Stores::new(nodes, weftnodes, network, &flags.network);
    let waitlist = Waitlist::new(metrics.exhausted_nodes.clone(), retrigger);
    let (claims, block_writer) = Claims::new(Api::all(client.clone()));
    let nudger = Nudger {
        stores: stores.clone(),
        waitlist: waitlist.clone(),
        reconcile: touched.clone(),
    };
    let (pacing, nudging) = Pacing::new(metrics.held_conditions.clone(), nudger);
    let reporter = Reporter {
        controller: MANAGER.into(),
        instance: Some(flags.identity().into()),
    };
    let recorder = Recorder::new(client.clone(), reporter);
    let policy_tasks = crate::policy_sync::tasks(
        client,
        stores.nodes.clone(),
        stores.nodes_listed.clone(),
        recorder.clone(),
        metrics,
    );
    let writes = Writes {
        node_api: Api::all(client.clone()),
        weftnode_api: Api::all(client.clone()),
        recorder: recorder.clone(),
        stores: stores.clone(),
        pacing,
    };
    let releaser = Releaser {
        claims: claims.clone(),
        stores: stores.clone(),
        waitlist: waitlist.clone(),
        node_api: Api::all(client.clone()),
        weftnode_api: Api::all(client.clone()),
    };
    let status = StatusWriter {
        api: Api::all(client.clone()),
        stores: stores.clone(),
        claims: claims.clone(),
        waitlist: waitlist.clone(),
        recorder,
        metrics: metrics.clone(),
    };
    let network_watch = watch_network(
        Api::all(client.clone()),
        network_writer,
        stores.clone(),
        waitlist.clone(),
    );
    let weftnode_watch = watch_weftnodes(
        Api::all(client.clone()),
        weftnode_writer,
        stores.clone(),
        touched.clone(),
    );
    let claim_watch = claims.watch(Api::all(client.clone()), touched);
    let ctx = Arc::new(Context::new(
        flags.workers,
        stores,
        claims,
        writes,
        waitlist,
        metrics.clone(),
    ));
    let triggers = Triggers {
        touched: touched_nodes,
        retriggered,
    };
    let mut tasks = vec![
        task(
            "the Node controller",
            run_controller(client.clone(), node_writer, ctx, triggers),
        ),
        task("the WeftNode watch", weftnode_watch),
        task("the WeftNetwork watch", network_watch),
        task("the claim block watch", claim_watch),
        task("the claim block writer", block_writer),
        task("the releaser", releaser.run()),
        task("the status writer", status.run()),
        task("the conditions nudger", nudging),
    ];
    tasks.extend(policy_tasks.into_iter().map(|(name, run)| task(name, run)));
    tasks
}

/// What triggers Nodes besides their own watch: a node's WeftNode or claims changed, or
/// its conditions may be written now (`touched`); every Node (`retriggered`).
struct Triggers {
    touched: UnboundedReceiver<ObjectRef<Node>>,
    retriggered: UnboundedReceiver<()>,
}

/// The kube-runtime controller over Nodes: its own Node watch, trimmed before the store
/// keeps it, and the other triggers. Reconciles start once the caches are complete.
async fn run_controller(
    client: Client,
    node_writer: reflector::store::Writer<Node>,
    ctx: Arc<Context>,
    triggers: Triggers,
) {
    let stores = ctx.stores.clone();
    let node_events = watcher(Api::<Node>::all(client), watcher::Config::default())
        .default_backoff()
        .modify(trim::node);
    let listed = stores.nodes_listed.clone();
    let node_changes = reflector::reflector(node_writer, node_events)
        .inspect_ok(move |e| {
            if matches!(e, watcher::Event::InitDone) {
                listed.mark();
            }
        })
        .applied_objects()
        .try_filter(move |node| std::future::ready(!stores.echoes_node(node)));
    // Unbounded: `--workers` is enforced in the reconcile, first come first served
    // (`reconcile::reconcile`).
    let controller = Controller::for_stream(node_changes, ctx.stores.nodes.clone())
        .with_config(controller::Config::default().concurrency(0));
    // Reconciling before the claims are listed would take new ranges for nodes that hold
    // some already.
    ctx.claims.ledger().wait_ready().await;
    ctx.stores.weftnodes_listed.wait().await;
    ctx.stores.network_listed.wait().await;
    info!("caches ready: reconciling Nodes");
    controller
        .reconcile_on(triggers.touched)
        .reconcile_all_on(triggers.retriggered)
        .run(reconcile, error_policy, ctx)
        .for_each(|r| {
            if let Err(e) = r {
                debug!(error = %e, "reconcile");
            }
            std::future::ready(())
        })
        .await;
}

/// Feeds the WeftNode store, and triggers each changed WeftNode's node once the store
/// holds it.
async fn watch_weftnodes(
    api: Api<WeftNode>,
    writer: reflector::store::Writer<WeftNode>,
    stores: Stores,
    touched: UnboundedSender<ObjectRef<Node>>,
) {
    let events = watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(trim::weftnode);
    reflector::reflector(writer, events)
        .for_each(|e| {
            match e {
                Ok(watcher::Event::Apply(wn)) if stores.echoes_weftnode(&wn) => {}
                Ok(
                    watcher::Event::Apply(wn)
                    | watcher::Event::InitApply(wn)
                    | watcher::Event::Delete(wn),
                ) => {
                    let _ = touched.unbounded_send(ObjectRef::new(&wn.name_any()));
                }
                Ok(watcher::Event::InitDone) => stores.weftnodes_listed.mark(),
                Ok(watcher::Event::Init) => {}
                Err(e) => warn!(error = %e, "WeftNode watch"),
            }
            std::future::ready(())
        })
        .await;
}
