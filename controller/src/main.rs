//! `weft-controller`, the weft cluster controller: it gives each Node an IPv6 prefix
//! from its zone's ranges and an IPv4 subnet, through claim blocks the apiserver keeps
//! unique.
//!
//! The story, top-down:
//!
//! - [`main`] parses the flags ([`flags`]), connects to the apiserver and serves
//!   /metrics, /healthz and /readyz (weft-health, [`metrics`]).
//! - Then, for ever: win the Lease ([`leader`]); while holding it, run the controller's
//!   parts ([`lead`]) and supervise them in one `select!` with the Lease and the signals.
//! - The parts: the Node controller reconciles every Node in the order it was triggered
//!   ([`reconcile`], sharing a small [`context`]). Candidates come from the [`allocator`]
//!   through the [`ledger`] of claims, which one task writes into claim blocks
//!   ([`blocks`], behind [`claims`]); the apiserver decides. What the controller knows
//!   of the cluster is in [`stores`] (trimmed by [`trim`], our writes kept fresh by
//!   [`fresh`]); a reconcile's own writes go through [`writes`]. The [`releaser`] frees
//!   the ranges of gone Nodes after their cooldown, [`network`] keeps the WeftNetwork's
//!   status current, and [`pacing`] holds good-news conditions back while others wait
//!   for ranges; [`waitlist`] keeps the nodes waiting for space. Shared items are in
//!   [`shared`], which imports nothing of this crate.
//! - A part that ends (or panics) is a bug: the replica hands the Lease back and exits
//!   non-zero, so a standby takes over at once and this one restarts with fresh caches.
//!   The same goes for a metrics server. Losing the Lease stops every part at once,
//!   in-flight writes included (the claim design tolerates a write cut short), and the
//!   replica stands by again. SIGTERM or SIGINT hands the Lease back, so a standby takes
//!   over at once.
#![forbid(unsafe_code)]

mod allocator;
mod blocks;
mod claims;
mod context;
mod flags;
mod fresh;
mod lead;
mod leader;
mod ledger;
mod metrics;
mod network;
mod pacing;
// Its `pub use` block and accessors also serve its tests only.
#[cfg_attr(not(test), allow(dead_code, unused_imports))]
mod policy;
mod policy_sync;
mod reconcile;
mod relay;
mod releaser;
mod shared;
mod stores;
mod trim;
mod waitlist;
mod writes;

use clap::Parser;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Client;
use std::collections::HashMap;
use std::future::Future;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::signal::unix::{signal, SignalKind};
use tokio::task::{Id, JoinSet};
use tracing::{error, info, warn};

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
    // A connection flood on the metrics port must exhaust the caps of weft-health, not
    // the default soft limit of 1024 descriptors.
    weft_health::raise_fd_limit();
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
    let mut servers = serve_health(&flags, &metrics, &ready)?;
    // Every replica relays, leader or not: it only follows the apiserver.
    if let Some(listen) = flags.relay() {
        for part in relay::parts(&client, &listen, &metrics)? {
            servers.spawn(part.name, part.run);
        }
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
            died = servers.next_death() => return Err(died),
        }
        let term = Term {
            client: &client,
            flags: &flags,
            metrics: &metrics,
        };
        match term.lead(&mut elector, &mut servers, &mut shutdown).await {
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

/// Serves /metrics, /healthz and /readyz on every `--metrics-addr`.
fn serve_health(
    flags: &flags::Flags,
    metrics: &metrics::Metrics,
    ready: &Arc<AtomicBool>,
) -> Result<Supervised, String> {
    let mut servers = Supervised::default();
    for addr in &flags.metrics_addr.0 {
        let listener = weft_health::bind(*addr)?;
        let serve = weft_health::serve(listener, metrics.registry().clone(), ready.clone());
        servers.spawn("the metrics server", serve);
    }
    Ok(servers)
}

/// One term of leadership.
struct Term<'a> {
    client: &'a Client,
    flags: &'a flags::Flags,
    metrics: &'a metrics::Metrics,
}

impl Term<'_> {
    /// Runs the controller's parts until one of them (or a metrics server) ends, the
    /// Lease is lost, or a signal comes; then stops every part and clears what only the
    /// leader reports.
    async fn lead(
        &self,
        elector: &mut leader::Elector,
        servers: &mut Supervised,
        shutdown: &mut (impl Future<Output = ()> + Unpin),
    ) -> End {
        self.metrics.leader.set(1);
        let mut parts = Supervised::default();
        for part in lead::tasks(self.client, self.flags, self.metrics) {
            parts.spawn(part.name, part.run);
        }
        // The one place every long-running task is watched.
        let end = tokio::select! {
            died = parts.next_death() => End::Failed(died),
            died = servers.next_death() => End::Failed(died),
            () = elector.hold() => End::Lost,
            () = shutdown => End::Shutdown,
        };
        parts.stop().await;
        self.metrics.leader.set(0);
        self.metrics.allocations.reset();
        self.metrics.free_prefixes.reset();
        self.metrics.exhausted_nodes.set(0);
        end
    }
}

/// Long-running tasks, each named; dropping the set aborts them.
#[derive(Default)]
struct Supervised {
    tasks: JoinSet<()>,
    names: HashMap<Id, &'static str>,
}

impl Supervised {
    fn spawn(&mut self, name: &'static str, task: impl Future<Output = ()> + Send + 'static) {
        let id = self.tasks.spawn(task).id();
        self.names.insert(id, name);
    }

    /// Waits until a task ends (none should) and says which and how. Never returns
    /// while the set is empty.
    async fn next_death(&mut self) -> String {
        let Some(ended) = self.tasks.join_next_with_id().await else {
            return std::future::pending().await;
        };
        let (id, how) = match ended {
            Ok((id, ())) => (id, "stopped".to_owned()),
            Err(e) => (e.id(), format!("failed: {e}")),
        };
        let name = self.names.get(&id).copied().unwrap_or("a task");
        format!("{name} {how}")
    }

    /// Aborts every task and waits until they are gone.
    async fn stop(&mut self) {
        self.tasks.shutdown().await;
        self.names.clear();
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_task_that_ends_or_panics_is_named() {
        let mut parts = Supervised::default();
        parts.spawn("the forever task", std::future::pending());
        parts.spawn("the short task", async {});
        assert_eq!(parts.next_death().await, "the short task stopped");
        parts.spawn("the failing task", async { panic!("bug") });
        let died = parts.next_death().await;
        assert!(died.starts_with("the failing task failed: "), "{died}");
        parts.stop().await;
        // With nothing left to watch, it waits for ever.
        let none = tokio::time::timeout(Duration::from_millis(50), parts.next_death()).await;
        assert!(none.is_err());
    }
}
