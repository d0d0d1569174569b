//! `weft-controller`, the weft cluster controller.
//!
//! The story: parse the flags ([`flags`]); connect to the apiserver; serve /metrics,
//! /healthz and /readyz (weft-health, [`metrics`]); then, for ever: win the Lease
//! ([`leader`]), and while holding it run the controller. It watches the claims into a
//! [`ledger`] ([`claims`]) and the WeftNodes and the WeftNetwork into stores
//! ([`network`]). It reconciles every Node ([`reconcile`], sharing a [`context`]), in
//! the order they were triggered, by its own watch and by those: candidates come from
//! the [`allocator`], the apiserver decides through claim blocks that one task writes
//! ([`blocks`]), and the controller's own writes count until the stores catch up
//! ([`fresh`]); what the stores keep is trimmed ([`trim`]). It releases the ranges of
//! gone Nodes after their cooldown ([`claims`]), keeps the network's status current
//! ([`network`]), and holds good-news conditions back while others wait for ranges
//! ([`pacing`]). Losing the Lease drops all of that at once, in-flight writes included
//! (the claim design tolerates a write cut short), and the replica stands by again.
//! SIGTERM or SIGINT hands the Lease back, so a standby takes over at once.
#![forbid(unsafe_code)]

mod allocator;
mod blocks;
mod claims;
mod context;
mod flags;
mod fresh;
mod leader;
mod ledger;
mod metrics;
mod network;
mod pacing;
mod reconcile;
mod trim;

use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Node;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::controller::{self, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, ResourceExt};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::signal::unix::{signal, SignalKind};
use tracing::{debug, error, info, warn};
use weft_api::WeftNode;

fn main() -> ExitCode {
    let flags = flags::Flags::parse();
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_max_level(flags.log_level)
        .with_writer(std::io::stderr)
        .init();
    let flags = match flags.validate() {
        Ok(f) => f,
        Err(e) => return fatal(&e),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fatal(&format!("cannot start the runtime: {e}")),
    };
    match runtime.block_on(run(flags)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fatal(&e),
    }
}

fn fatal(message: &str) -> ExitCode {
    error!("{message}");
    ExitCode::from(2)
}

/// How a term of leadership ended.
enum End {
    Lost,
    Shutdown,
    Failed(String),
}

async fn run(flags: flags::Flags) -> Result<(), String> {
    let client = connect(&flags).await?;
    let metrics = metrics::Metrics::new().map_err(|e| format!("metrics: {e}"))?;
    let ready = Arc::new(AtomicBool::new(false));
    for addr in &flags.metrics_addr.0 {
        let listener = weft_health::bind(*addr)?;
        tokio::spawn(weft_health::serve(
            listener,
            metrics.registry().clone(),
            ready.clone(),
        ));
    }
    let mut elector = leader::Elector::new(
        client.clone(),
        &flags.lease_namespace,
        &flags.lease_name,
        flags.identity(),
    );
    let reachable = |ok: bool| ready.store(ok, Ordering::Release);
    let mut shutdown = std::pin::pin!(shutdown_signal());
    info!(identity = flags.identity(), network = %flags.network, "standing by for the lease");
    loop {
        tokio::select! {
            () = elector.acquire(&reachable) => {}
            () = &mut shutdown => return Ok(()),
        }
        metrics.leader.set(1);
        let end = tokio::select! {
            e = lead(client.clone(), &flags, metrics.clone()) => End::Failed(e),
            () = elector.hold() => End::Lost,
            () = &mut shutdown => End::Shutdown,
        };
        metrics.leader.set(0);
        metrics.allocations.reset();
        metrics.free_prefixes.reset();
        metrics.exhausted_nodes.set(0);
        match end {
            End::Lost => warn!("lost the lease: stopped reconciling, standing by"),
            End::Shutdown => {
                elector.release().await;
                return Ok(());
            }
            End::Failed(e) => {
                elector.release().await;
                return Err(e);
            }
        }
    }
}

/// `--kubeconfig`, else `$KUBECONFIG`, else the in-cluster service account.
async fn connect(flags: &flags::Flags) -> Result<Client, String> {
    let options = KubeConfigOptions::default();
    let config = match &flags.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .map_err(|e| format!("--kubeconfig: {}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(|e| format!("--kubeconfig: {}: {e}", path.display()))?
        }
        None if std::env::var_os("KUBECONFIG").is_some() => kube::Config::from_kubeconfig(&options)
            .await
            .map_err(|e| format!("KUBECONFIG: {e}"))?,
        None => kube::Config::incluster()
            .map_err(|e| format!("no --kubeconfig or KUBECONFIG, and not in a cluster: {e}"))?,
    };
    Client::try_from(config).map_err(|e| format!("cannot build the Kubernetes client: {e}"))
}

/// The controller, while this replica leads. Returns only if one of its parts ends.
async fn lead(client: Client, flags: &flags::Flags, metrics: metrics::Metrics) -> String {
    let (nodes, node_writer) = reflector::store();
    let (weftnodes, weftnode_writer) = reflector::store();
    let (network, network_writer) = reflector::store();
    let (retrigger, retriggered) = futures::channel::mpsc::unbounded();
    let reporter = Reporter {
        controller: reconcile::MANAGER.into(),
        instance: Some(flags.identity().into()),
    };
    let ctx = Arc::new(context::Context::new(
        client.clone(),
        nodes.clone(),
        weftnodes.clone(),
        network.clone(),
        flags,
        Recorder::new(client.clone(), reporter),
        metrics,
        retrigger.clone(),
    ));
    // The Node watch of the controller, its Nodes trimmed before they are stored. The
    // echoes of our own podCIDRs writes trigger nothing: the reconcile that wrote them
    // went on from the response.
    let node_events = watcher(Api::<Node>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .modify(trim::node);
    let echoes = ctx.clone();
    let node_changes = reflector::reflector(node_writer, node_events)
        .applied_objects()
        .try_filter(move |node| std::future::ready(!echoes.fresh_nodes.echoes(node)));
    // Unbounded: `--workers` is enforced in the reconcile, first come first served
    // (`reconcile::reconcile`).
    let controller = Controller::for_stream(node_changes, nodes)
        .with_config(controller::Config::default().concurrency(0));
    let weftnodes_seen = watcher(
        Api::<WeftNode>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .modify(trim::weftnode);
    // One watch per kind feeds both the stores and the Node controller's triggers: a
    // WeftNode or claim event triggers its node once the store or ledger holds it (a
    // second watch per kind, as `Controller::watches` would open, doubles what the
    // apiserver sends and this process decodes, and can trigger before the store has
    // caught up).
    let (touched, touched_nodes) = futures::channel::mpsc::unbounded::<ObjectRef<Node>>();
    let weftnode_watch = reflector::reflector(weftnode_writer, weftnodes_seen).for_each(|e| {
        match e {
            // The echo of our own write triggers nothing (see the Node watch).
            Ok(watcher::Event::Apply(wn)) if ctx.fresh_weftnodes.echoes(&wn) => {}
            Ok(
                watcher::Event::Apply(wn)
                | watcher::Event::InitApply(wn)
                | watcher::Event::Delete(wn),
            ) => {
                let _ = touched.unbounded_send(ObjectRef::new(&wn.name_any()));
            }
            Ok(watcher::Event::Init | watcher::Event::InitDone) => {}
            Err(e) => warn!(error = %e, "WeftNode watch"),
        }
        std::future::ready(())
    });
    let network_watch = network::watch_network(
        Api::all(client.clone()),
        &flags.network,
        network_writer,
        network.clone(),
        retrigger,
    );
    let reconciler = async {
        // Reconciling before the claims are listed would take new ranges for nodes that
        // hold some already.
        ctx.ledger.wait_ready().await;
        let _ = weftnodes.wait_until_ready().await;
        let _ = network.wait_until_ready().await;
        info!("caches ready: reconciling Nodes");
        controller
            .reconcile_on(touched_nodes)
            .reconcile_all_on(retriggered)
            .run(reconcile::reconcile, reconcile::error_policy, ctx.clone())
            .for_each(|r| {
                if let Err(e) = r {
                    debug!(error = %e, "reconcile");
                }
                std::future::ready(())
            })
            .await;
    };
    // Each part runs for ever; one ending is a bug, and the process exits to be restarted.
    let part = tokio::select! {
        () = weftnode_watch => "the WeftNode watch",
        () = network_watch => "the WeftNetwork watch",
        () = claims::watch_claims(Api::all(client.clone()), Api::all(client.clone()), &ctx, &touched) => "the claim watches",
        () = blocks::run_writer(&ctx) => "the claim block writer",
        () = reconciler => "the Node controller",
        () = claims::run_releaser(&ctx) => "the releaser",
        () = network::run_status(&ctx) => "the status writer",
        () = pacing::run_nudger(&ctx, touched.clone()) => "the conditions nudger",
    };
    format!("{part} stopped")
}

async fn shutdown_signal() {
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM"),
        _ = int.recv() => info!("SIGINT"),
    }
}
