//! The watches' other server (`--via relay`): one weft-controller replica in the
//! control plane's namespace serving the span watches itself (controller/src/relay/),
//! and the watchers' clients to it. The replica stands by for a Lease held elsewhere,
//! so it relays and does nothing else (a leader would also watch and write for its
//! controllers). It runs for the relay's rows only, so the apiserver's rows are the
//! apiserver alone.

use crate::api::get_text;
use crate::site::{Site, SERVER};
use crate::watchers::Pool;
use kube::Client;
use serde_json::json;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};
use weft_e2e::{binary, log_tail, spawn_logged};

/// Where the relay listens (weft's port for it), on every address of the namespace.
const RELAY_PORT: u16 = 9643;
/// Its /metrics (weft_relay_watches).
const METRICS_ADDR: &str = "[::1]:9652";
/// Watches per source address. The relay admits 32 connections from one address
/// (`PER_SOURCE`, controller/src/relay/server.rs), as many as one weftd needs; the rest
/// is room for lists and resumes.
pub(crate) const WATCHES_PER_SOURCE: usize = 24;
/// The watchers' ServiceAccount (kube-system), bound to cluster-admin.
const ACCOUNT: &str = "bench-relay";
/// From start to serving lists (it lists both resources first).
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Which server holds a row's watches; `Both` gives each N a row of each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub(crate) enum Via {
    Apiserver,
    Relay,
    Both,
}

impl Via {
    /// The servers rows are measured on.
    pub(crate) fn sides(self) -> Vec<Via> {
        match self {
            Via::Both => vec![Via::Apiserver, Via::Relay],
            one => vec![one],
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Via::Apiserver => "apiserver",
            Via::Relay => "relay",
            Via::Both => "both",
        }
    }
}

/// The addresses the watchers reach the relay on, and so connect from (a connection to
/// a local address comes from that address, RFC 6724 rule 1), enough for `watches`.
pub(crate) fn sources(watches: usize) -> Vec<String> {
    (0..watches.div_ceil(WATCHES_PER_SOURCE).max(1))
        .map(|k| format!("2001:db8:ffff::1:{k:x}"))
        .collect()
}

/// Everything a relay needs that outlives one: its command line, certificate, the
/// watchers' token and the Lease that keeps it standing by.
pub(crate) struct Setup {
    netns: String,
    program: PathBuf,
    args: Vec<String>,
    log: PathBuf,
    pids: PathBuf,
    token_kubeconfig: PathBuf,
    sources: Vec<String>,
}

impl Setup {
    pub(crate) fn prepare(site: &Site, sources: Vec<String>) -> Setup {
        let cp = &site.cp;
        let (crt, key) = cp.write_serving_cert("bench-relay", &format!("IP:{SERVER}"));
        let binding = format!("--serviceaccount=kube-system:{ACCOUNT}");
        cp.kubectl_ok(&["create", "serviceaccount", ACCOUNT, "-n", "kube-system"]);
        cp.kubectl_ok(&[
            "create",
            "clusterrolebinding",
            ACCOUNT,
            "--clusterrole=cluster-admin",
            &binding,
        ]);
        let token = cp.kubectl_ok(&[
            "create",
            "token",
            ACCOUNT,
            "-n",
            "kube-system",
            "--duration=24h",
        ]);
        // Held for a day by an identity nobody runs: the replica stays a candidate.
        let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "weft-controller", "namespace": "kube-system"},
            "spec": {"holderIdentity": "bench-elsewhere", "leaseDurationSeconds": 86400}});
        cp.kubectl_input_ok(&["apply", "-f", "-"], &lease.to_string());
        let path = |p: PathBuf| p.display().to_string();
        let args = [
            "--kubeconfig",
            &path(cp.kubeconfig()),
            "--identity",
            "bench-relay",
            "--metrics-addr",
            METRICS_ADDR,
            "--relay-addr",
            &format!("[::]:{RELAY_PORT}"),
            "--relay-cert",
            &path(crt),
            "--relay-key",
            &path(key),
        ];
        Setup {
            netns: cp.netns_name().to_owned(),
            program: binary("weft-controller"),
            args: args.map(str::to_owned).to_vec(),
            log: cp.dir().join("weft-controller.log"),
            pids: cp.dir().join("pids"),
            token_kubeconfig: cp.token_kubeconfig(ACCOUNT, &token),
            sources,
        }
    }

    pub(crate) fn program(&self) -> &std::path::Path {
        &self.program
    }

    pub(crate) fn source_count(&self) -> usize {
        self.sources.len()
    }

    /// Starts a relay and returns once it serves lists of `path`, with a pool of no
    /// watches through it: one client per source address, the ServiceAccount's token,
    /// the cluster CA as root, the certificate checked against the apiserver's address.
    pub(crate) async fn start(&self, path: &str) -> Result<Relay, String> {
        let kubeconfig = kube::config::Kubeconfig::read_from(&self.token_kubeconfig)
            .map_err(|e| e.to_string())?;
        let base = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .map_err(|e| e.to_string())?;
        let client = |url: String| {
            let mut config = base.clone();
            config.cluster_url = url.parse().map_err(|e| format!("{url}: {e}"))?;
            config.tls_server_name = Some(SERVER.to_owned());
            Client::try_from(config).map_err(|e| e.to_string())
        };
        let clients = self
            .sources
            .iter()
            .map(|source| client(format!("https://[{source}]:{RELAY_PORT}")))
            .collect::<Result<Vec<_>, _>>()?;
        let metrics = client(format!("http://{METRICS_ADDR}"))?;
        let child = spawn_logged(&self.netns, &self.program, &self.args, &self.log);
        let pid = child.id();
        // The control plane's sweep of a dead run's processes ends it too.
        if let Ok(mut pids) = std::fs::OpenOptions::new().append(true).open(&self.pids) {
            let _ = writeln!(pids, "{pid}");
        }
        let mut relay = Relay {
            pool: Pool::new(clients, path.to_owned()),
            process: Process {
                pid,
                metrics,
                child,
            },
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let why = match relay.pool.version().await {
                Ok(_) => return Ok(relay),
                Err(why) => why,
            };
            let exited = relay.process.child.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() > deadline {
                return Err(format!(
                    "the relay did not serve in {READY_TIMEOUT:?} ({why}, exit {exited:?}); \
                     its log:\n{}",
                    log_tail(&self.log, 20)
                ));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// A running relay and the watches through it (closed before it ends).
pub(crate) struct Relay {
    pub(crate) pool: Pool,
    pub(crate) process: Process,
}

/// The relay's process, killed on drop.
pub(crate) struct Process {
    pub(crate) pid: u32,
    metrics: Client,
    child: Child,
}

impl Process {
    /// Its /metrics.
    pub(crate) async fn metrics(&self) -> Result<String, String> {
        get_text(&self.metrics, "/metrics").await
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
