//! Kubernetes mode (`--kubeconfig` or `--in-cluster`): the node's allocation, its peers
//! and its usage reports go through the apiserver instead of flags and the peers file.
//!
//! - weftd publishes its underlay addresses and VTEP MAC on its `WeftNode` (server-side
//!   apply, field manager `weftd`: the controller's fields are never touched), and every
//!   resync compares them with what the peer watch last saw of its WeftNode, applying
//!   them again when someone changed or removed them ([`Cluster::keep_identity`]);
//! - it waits for the controller to write its prefix and subnet, and keeps a local copy
//!   ([`allocation`]), so a weftd restarting while the apiserver is down still serves;
//! - every `WeftNode` with ranges inside the `WeftNetwork`'s plan ([`PlanRanges`]) is a
//!   peer: a watch ([`crate::peers`]) feeds the same
//!   [`Datapath::set_peers`](crate::datapath::Datapath::set_peers) as the peers file;
//! - address use goes to the `WeftNode` status, at most every [`REPORT_EVERY`] and only
//!   when it changed.
//!
//! The apiserver being unreachable stops none of this from serving: the watch retries
//! with backoff, the datapath keeps the last peer list, IPAM is local.

pub mod allocation;
mod plan;

pub use plan::PlanRanges;

use crate::allocation::NodeAllocation;
use crate::error::{Error, Result};
use crate::flags::PolicyRelay;
use crate::metrics::Metrics;
use crate::node::Uplink;
use crate::service::Service;
use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::{info, warn};
use weft_api::{condition, WeftNetwork, WeftNode, WeftNodeSpec, WeftNodeStatus};
use weft_wire::{Family, PeerEntry};

/// Field manager of everything weftd writes.
const FIELD_MANAGER: &str = "weftd";
/// Usage reports are rate-limited to one per this period (5,000 nodes reporting every
/// pod start would flood the apiserver).
pub const REPORT_EVERY: Duration = Duration::from_secs(10);
/// How often publishing the identity is retried while the apiserver cannot be reached.
const WAIT_POLL: Duration = Duration::from_secs(1);
/// Connects to the apiserver named by `kubeconfig`, else in-cluster.
pub async fn connect(kubeconfig: Option<&Path>) -> Result<Client> {
    Client::try_from(config(kubeconfig).await?).map_err(Error::kubernetes("Kubernetes client"))
}

/// Connects to weft-controller's policy relay with the apiserver's credentials (the
/// relay asks the apiserver whether they may watch), trusting only `relay.ca`.
pub async fn connect_relay(kubeconfig: Option<&Path>, relay: &PolicyRelay) -> Result<Client> {
    let fail = |message: String| Error::Kubeconfig {
        flag: format!(
            "--policy-relay {} --policy-relay-ca {}",
            relay.url,
            relay.ca.display()
        ),
        message,
    };
    let mut config = config(kubeconfig).await?;
    config.cluster_url = relay
        .url
        .parse()
        .map_err(|e| fail(format!("the URL: {e}")))?;
    let ca = CertificateDer::pem_file_iter(&relay.ca)
        .and_then(|certs| certs.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|e| fail(format!("reading the CA: {e}")))?;
    if ca.is_empty() {
        return Err(fail("no certificate in the CA file".into()));
    }
    config.root_cert = Some(ca.into_iter().map(|c| c.to_vec()).collect());
    // In-cluster, kube-rs verifies against this file (re-read every minute, so a
    // rotated CA is picked up) and not `root_cert`: it must be the relay's, not the
    // apiserver's.
    config.root_cert_file = Some(relay.ca.clone());
    config.accept_invalid_certs = false;
    config.tls_server_name = relay.server_name.clone();
    Client::try_from(config).map_err(Error::kubernetes("policy relay client"))
}

async fn config(kubeconfig: Option<&Path>) -> Result<kube::Config> {
    match kubeconfig {
        Some(path) => {
            let fail = |e: &dyn std::fmt::Display| Error::Kubeconfig {
                flag: format!("--kubeconfig {}", path.display()),
                message: e.to_string(),
            };
            let file = kube::config::Kubeconfig::read_from(path).map_err(|e| fail(&e))?;
            kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| fail(&e))
        }
        None => kube::Config::incluster().map_err(|e| Error::Kubeconfig {
            flag: "--in-cluster".into(),
            message: e.to_string(),
        }),
    }
}

/// The node's view of the cluster.
#[derive(Clone)]
pub struct Cluster {
    client: Client,
    /// Where the NetworkPolicy span watches go: the apiserver, or the policy relay.
    spans: Client,
    node_name: String,
    network: String,
    /// This node's WeftNode as the peer watch last saw it (None: not listed yet, or
    /// absent).
    own: Arc<Mutex<Option<PeerEntry>>>,
}

/// weftd's fields of its WeftNode: the underlay addresses and the VTEP MAC.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    underlay_ipv4: Option<String>,
    underlay_ipv6: Option<String>,
    vtep_mac: Option<String>,
}

impl Identity {
    /// The identity of a node with `uplink` and, once it has a subnet, `vtep_mac`.
    pub fn new(uplink: &Uplink, vtep_mac: Option<[u8; 6]>) -> Identity {
        Identity {
            underlay_ipv4: uplink.ipv4.map(|a| a.to_string()),
            underlay_ipv6: uplink.ipv6.map(|a| a.to_string()),
            vtep_mac: vtep_mac.map(|mac| weft_netlink::overlay::format_mac(&mac)),
        }
    }

    /// True when `entry` holds exactly this identity.
    fn held_by(&self, entry: &PeerEntry) -> bool {
        entry.underlay_ipv4 == self.underlay_ipv4
            && entry.underlay_ipv6 == self.underlay_ipv6
            && entry.vtep_mac == self.vtep_mac
    }
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("node_name", &self.node_name)
            .field("network", &self.network)
            .finish()
    }
}

impl Cluster {
    pub fn new(client: Client, node_name: &str, network: &str) -> Cluster {
        Cluster {
            spans: client.clone(),
            client,
            node_name: node_name.to_owned(),
            network: network.to_owned(),
            own: Arc::default(),
        }
    }

    /// The span watches go through `spans` (the policy relay) instead of the apiserver.
    pub fn with_spans(mut self, spans: Client) -> Cluster {
        self.spans = spans;
        self
    }

    /// The apiserver client, for the NetworkPolicy watches by name and the status.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// The client of the NetworkPolicy span watches.
    pub fn spans(&self) -> Client {
        self.spans.clone()
    }

    pub fn node_name(&self) -> &str {
        &self.node_name
    }

    pub fn network_name(&self) -> &str {
        &self.network
    }

    /// The WeftNetwork API.
    pub fn networks(&self) -> Api<WeftNetwork> {
        Api::all(self.client.clone())
    }

    /// The peer watch saw this node's WeftNode holding `entry` (None: absent).
    pub fn saw_self(&self, entry: Option<&PeerEntry>) {
        *self.own.lock().unwrap_or_else(|e| e.into_inner()) = entry.cloned();
    }

    /// Publishes the identity, retrying until the apiserver takes it.
    pub async fn publish_identity(self, identity: Identity, metrics: Metrics) {
        while let Err(e) = self.publish(&identity).await {
            warn!(error = %e, "publishing the node's underlay identity (retrying)");
            metrics.error(&e);
            tokio::time::sleep(WAIT_POLL * 2).await;
        }
    }

    /// Every `resync`, applies the identity again if the peer watch saw it changed or
    /// removed: someone editing weftd's fields is undone within one resync, at no cost
    /// to the apiserver while they are intact. An absent WeftNode is left to the
    /// controller, which creates WeftNodes (weftd's RBAC cannot).
    pub async fn keep_identity(self, identity: Identity, resync: Duration, metrics: Metrics) {
        loop {
            tokio::time::sleep(resync).await;
            let seen = self.own.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let Some(entry) = seen else {
                continue;
            };
            if identity.held_by(&entry) {
                continue;
            }
            info!(seen = ?(&entry.underlay_ipv4, &entry.underlay_ipv6, &entry.vtep_mac), "this node's WeftNode lost weftd's identity: applying it again");
            match self.publish(&identity).await {
                Ok(()) => metrics.identity_restored.inc(),
                Err(e) => {
                    warn!(error = %e, "restoring the node's underlay identity (next resync retries)");
                    metrics.error(&e);
                }
            }
        }
    }

    /// The WeftNode API (all of them: they are cluster-scoped).
    pub fn nodes(&self) -> Api<WeftNode> {
        Api::all(self.client.clone())
    }

    /// Publishes the node's underlay addresses (and VTEP MAC once it has a subnet).
    async fn publish(&self, identity: &Identity) -> Result<()> {
        // Only weftd's fields: server-side apply leaves the controller's alone.
        let spec = WeftNodeSpec {
            node_name: self.node_name.clone(),
            underlay_ipv4: identity.underlay_ipv4.clone(),
            underlay_ipv6: identity.underlay_ipv6.clone(),
            vtep_mac: identity.vtep_mac.clone(),
            ..WeftNodeSpec::default()
        };
        let patch = serde_json::json!({
            "apiVersion": "weft.dev/v1alpha1", "kind": "WeftNode",
            "metadata": {"name": self.node_name}, "spec": spec,
        });
        self.nodes()
            .patch(
                &self.node_name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await
            .map(|_| ())
            .map_err(Error::kubernetes(format!(
                "publishing WeftNode {}",
                self.node_name
            )))
    }

    /// The allocation, once the controller has written it. While the apiserver cannot
    /// be reached, a saved allocation is used at once.
    ///
    /// After publishing its identity, weftd watches its own WeftNode and the WeftNetwork
    /// (field selectors on their names) rather than polling them: when thousands of
    /// nodes join at once and wait for the controller, polling would cost the apiserver
    /// two reads per node per second, while a watch costs it one event per change.
    pub async fn wait_allocation(
        &self,
        uplink: &Uplink,
        saved: Option<NodeAllocation>,
    ) -> NodeAllocation {
        loop {
            match self.publish(&Identity::new(uplink, None)).await {
                Ok(()) => break,
                Err(e) => {
                    if let Some(saved) = &saved {
                        warn!(error = %e, "the apiserver does not take the identity: serving from the last known allocation");
                        return saved.clone();
                    }
                    if refused(&e) {
                        // weftd's RBAC has no create: the controller makes WeftNodes.
                        warn!(error = %e, "waiting for the controller to create this node's WeftNode");
                    } else {
                        warn!(error = %e, "waiting for the apiserver");
                    }
                }
            }
            tokio::time::sleep(WAIT_POLL).await;
        }
        let named =
            |name: &str| watcher::Config::default().fields(&format!("metadata.name={name}"));
        let node_events = watcher::watcher(self.nodes(), named(&self.node_name))
            .default_backoff()
            .map(Seen::Node);
        let network_events = watcher::watcher(self.networks(), named(&self.network))
            .default_backoff()
            .map(Seen::Network);
        let events = futures::stream::select(node_events, network_events);
        futures::pin_mut!(events);
        let (mut node, mut network): (Option<WeftNode>, Option<WeftNetwork>) = (None, None);
        // Whether each watch has listed once: until both have, absence means nothing.
        let (mut node_listed, mut network_listed) = (false, false);
        let mut last_reason = String::new();
        // Watch streams with backoff retry for ever; should one end, waiting goes on.
        while let Some(seen) = events.next().await {
            let (settled, error) = match seen {
                Seen::Node(Ok(event)) => {
                    node_listed |= matches!(event, Event::InitDone);
                    (latest(&mut node, event), None)
                }
                Seen::Network(Ok(event)) => {
                    network_listed |= matches!(event, Event::InitDone);
                    (latest(&mut network, event), None)
                }
                Seen::Node(Err(e)) => (true, Some(format!("WeftNode {}: {e}", self.node_name))),
                Seen::Network(Err(e)) => (true, Some(format!("WeftNetwork {}: {e}", self.network))),
            };
            if !settled || (error.is_none() && !(node_listed && network_listed)) {
                continue;
            }
            let reason = match (error, &network, &node) {
                (Some(error), _, _) => error,
                (None, Some(network), Some(node)) => {
                    match NodeAllocation::from_objects(network, node) {
                        Ok(allocation) => return allocation,
                        Err(reason) => reason.to_string(),
                    }
                }
                (None, None, _) => format!("WeftNetwork {} does not exist", self.network),
                (None, _, None) => format!("WeftNode {} does not exist", self.node_name),
            };
            if reason != last_reason {
                info!(reason = %reason, "waiting for this node's allocation");
                last_reason = reason;
            }
        }
        std::future::pending().await
    }

    /// Reports address use on the WeftNode status when it changed, at most every
    /// [`REPORT_EVERY`]; also marks the node Ready. Ready keeps the transition time the
    /// object already holds (a restarted weftd was serving before and still is), so only
    /// a change of status moves it.
    pub async fn report_usage(self, service: Service, metrics: Metrics) {
        let mut last = None;
        let mut ready: Option<Vec<Condition>> = None;
        loop {
            let mut status = WeftNodeStatus::default();
            for u in service.usage() {
                match u.family {
                    Family::Ipv6 => status.ipv6_in_use = Some(u.in_use as u64),
                    Family::Ipv4 => {
                        status.ipv4_in_use = Some(u.in_use as u64);
                        status.ipv4_capacity = Some(u.capacity as u64);
                        status.ipv4_usage = Some(format!("{}/{}", u.in_use, u.capacity));
                    }
                }
            }
            if last.as_ref() != Some(&status) {
                let previous = match &ready {
                    Some(written) => written.clone(),
                    None => self.current_conditions().await,
                };
                let mut body = status.clone();
                body.reported_at = Some(Time(Timestamp::now()));
                body.conditions = vec![condition(
                    &previous,
                    "Ready",
                    true,
                    "Serving",
                    "weftd serves pods from this node's ranges".into(),
                )];
                let patch = serde_json::json!({
                    "apiVersion": "weft.dev/v1alpha1", "kind": "WeftNode",
                    "metadata": {"name": self.node_name}, "status": body,
                });
                match self
                    .nodes()
                    .patch_status(
                        &self.node_name,
                        &PatchParams::apply(FIELD_MANAGER).force(),
                        &Patch::Apply(&patch),
                    )
                    .await
                {
                    Ok(_) => {
                        ready = Some(body.conditions);
                        last = Some(status);
                    }
                    Err(e) => {
                        let e = Error::kubernetes("reporting address use")(e);
                        warn!(error = %e, "will retry");
                        metrics.error(&e);
                    }
                }
            }
            tokio::time::sleep(REPORT_EVERY).await;
        }
    }

    /// The conditions this node's WeftNode holds (none if it cannot be read).
    async fn current_conditions(&self) -> Vec<Condition> {
        match self.nodes().get_opt(&self.node_name).await {
            Ok(node) => node
                .and_then(|n| n.status)
                .map(|s| s.conditions)
                .unwrap_or_default(),
            Err(e) => {
                warn!(error = %e, "reading this node's WeftNode status");
                Vec::new()
            }
        }
    }
}

/// True when the apiserver refused the request (403: RBAC or an admission policy).
fn refused(error: &Error) -> bool {
    matches!(error, Error::Kubernetes { source, .. }
        if matches!(source.as_ref(), kube::Error::Api(status) if status.code == 403))
}

/// An event of the watch on this node's WeftNode or on the WeftNetwork.
enum Seen {
    Node(Result<Event<WeftNode>, watcher::Error>),
    Network(Result<Event<WeftNetwork>, watcher::Error>),
}

/// Keeps the object a single-object watch says is current (None: deleted or absent).
/// True when the state is settled and worth evaluating: not in the middle of a relist,
/// whose start forgets the object and whose end says it is still absent if unlisted.
fn latest<K>(current: &mut Option<K>, event: Event<K>) -> bool {
    match event {
        Event::Apply(object) => *current = Some(object),
        Event::Delete(_) => *current = None,
        Event::Init => {
            *current = None;
            return false;
        }
        Event::InitApply(object) => {
            *current = Some(object);
            return false;
        }
        Event::InitDone => {}
    }
    true
}
