//! The Kubernetes peer source: every `WeftNode` with ranges inside the `WeftNetwork`'s
//! plan and an underlay address is a peer. One watch feeds them to the datapath,
//! debounced, a complete list each time; a second, on the WeftNetwork, keeps the plan.
//! The watch also tells [`Cluster`] what its own WeftNode holds, for the resync of its
//! identity.

use crate::datapath::Datapath;
use crate::error::{Error, Result};
use crate::kube::{Cluster, PlanRanges};
use crate::metrics::Metrics;
use futures::StreamExt;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tracing::warn;
use weft_api::{WeftNetwork, WeftNode};
use weft_wire::{Peer, PeerEntry};

/// A burst of WeftNode changes (a cluster starting) is applied as one peer list.
const PEER_DEBOUNCE: Duration = Duration::from_millis(200);
/// WeftNodes per page of the watch's initial list. A page is decoded whole, managedFields
/// and status included, before its objects shrink to peer entries. With 5,000 WeftNodes
/// (e2e/bench-kube-peers.sh) weftd peaked at 43 MiB with the watcher's default of 500
/// per page and at 31 MiB with 100 (27.6 MiB from a peers file), converging as fast.
const LIST_PAGE: u32 = 100;

/// Watches every WeftNode and the WeftNetwork, and hands the peer list to the datapath
/// after each burst of changes, once the plan is known (peers are checked against it).
/// Returns only if a watch stream ends: a broken watch is retried with backoff, each
/// failure counted.
///
/// Of each WeftNode only its peer entry is kept, as it arrives: the object's metadata,
/// managedFields (four writers) and status are several times its size, and every weftd
/// holds one per node of the cluster.
pub async fn feed(cluster: Cluster, datapath: Datapath, metrics: Metrics) -> Result<()> {
    let nodes_watch = watcher::watcher(
        cluster.nodes(),
        watcher::Config::default().page_size(LIST_PAGE),
    )
    .default_backoff()
    .map(Seen::Node);
    let network = cluster.network_name().to_owned();
    let network_watch = watcher::watcher(
        cluster.networks(),
        watcher::Config::default().fields(&format!("metadata.name={network}")),
    )
    .default_backoff()
    .map(Seen::Network);
    let stream = futures::stream::select(nodes_watch, network_watch);
    futures::pin_mut!(stream);
    let mut state = State::new(cluster.node_name(), metrics.clone());
    let mut listing: Option<BTreeMap<String, PeerEntry>> = None;
    let mut pending = false;
    loop {
        let next = if pending {
            match tokio::time::timeout(PEER_DEBOUNCE, stream.next()).await {
                Ok(next) => next,
                Err(_) => {
                    if let Some(peers) = state.peers() {
                        datapath.set_peers(peers);
                    }
                    pending = false;
                    continue;
                }
            }
        } else {
            stream.next().await
        };
        let (context, event) = match next {
            None => return Ok(()),
            Some(Seen::Node(event)) => ("WeftNode watch", event.map(Change::Node)),
            Some(Seen::Network(event)) => ("WeftNetwork watch", event.map(Change::Network)),
        };
        match event {
            Err(e) => {
                let e = Error::Watch {
                    context: context.into(),
                    source: Box::new(e),
                };
                warn!(error = %e, "retrying");
                metrics.error(&e);
            }
            Ok(Change::Network(event)) => pending |= state.network(event, &network),
            Ok(Change::Node(Event::Init)) => listing = Some(BTreeMap::new()),
            Ok(Change::Node(Event::InitApply(node))) => {
                if let Some(l) = listing.as_mut() {
                    l.insert(node_name(&node), node.peer_entry());
                }
            }
            Ok(Change::Node(Event::InitDone)) => {
                state.nodes = listing.take().unwrap_or_default();
                cluster.saw_self(state.own());
                pending = true;
            }
            Ok(Change::Node(Event::Apply(node))) => {
                let name = node_name(&node);
                let own = name == cluster.node_name();
                state.nodes.insert(name, node.peer_entry());
                if own {
                    cluster.saw_self(state.own());
                }
                pending = true;
            }
            Ok(Change::Node(Event::Delete(node))) => {
                let name = node_name(&node);
                state.nodes.remove(&name);
                if name == cluster.node_name() {
                    cluster.saw_self(None);
                }
                pending = true;
            }
        }
    }
}

/// An event of one of the two watches.
enum Seen {
    Node(std::result::Result<Event<WeftNode>, watcher::Error>),
    Network(std::result::Result<Event<WeftNetwork>, watcher::Error>),
}

enum Change {
    Node(Event<WeftNode>),
    Network(Event<WeftNetwork>),
}

/// What the watches say: the WeftNodes' peer entries and the plan's ranges.
struct State {
    /// This node's name, whose WeftNode is its own.
    node_name: String,
    metrics: Metrics,
    /// Peer entries by WeftNode name.
    nodes: BTreeMap<String, PeerEntry>,
    /// The last valid plan: an invalid or deleted WeftNetwork keeps it.
    plan: Option<PlanRanges>,
    /// Nodes ignored for lying outside the plan, each said once.
    outside: BTreeSet<String>,
}

impl State {
    fn new(node_name: &str, metrics: Metrics) -> State {
        State {
            node_name: node_name.to_owned(),
            metrics,
            nodes: BTreeMap::new(),
            plan: None,
            outside: BTreeSet::new(),
        }
    }

    /// This node's own entry, as listed.
    fn own(&self) -> Option<&PeerEntry> {
        self.nodes.get(&self.node_name)
    }

    /// Takes a WeftNetwork event; true when the plan changed.
    fn network(&mut self, event: Event<WeftNetwork>, name: &str) -> bool {
        let (Event::Apply(network) | Event::InitApply(network)) = event else {
            if let Event::Delete(_) = event {
                warn!(
                    network = name,
                    "the WeftNetwork was deleted: peers are still checked against its last plan"
                );
            }
            return false;
        };
        match PlanRanges::of(&network) {
            Ok(plan) if self.plan.as_ref() == Some(&plan) => false,
            Ok(plan) => {
                self.plan = Some(plan);
                true
            }
            Err(problems) => {
                warn!(network = name, %problems, "the WeftNetwork is invalid: peers are still checked against its last valid plan");
                false
            }
        }
    }

    /// Every WeftNode that has ranges inside the plan and an underlay address, validated
    /// like peers-file entries (bad ones are logged and skipped). A node still waiting for
    /// its ranges, or whose weftd has not published yet, is not a peer yet. None until
    /// the plan is known.
    fn peers(&mut self) -> Option<Vec<Peer>> {
        let plan = self.plan.as_ref()?;
        let mut outside = BTreeSet::new();
        let peers = self
            .nodes
            .values()
            .filter(|n| n.ipv6_prefix.is_some() || n.ipv4_subnet.is_some())
            .filter(|n| n.underlay_ipv4.is_some() || n.underlay_ipv6.is_some())
            .enumerate()
            .filter_map(|(index, entry)| {
                entry
                    .validate(index)
                    .map_err(|e| warn!("skipping WeftNode: {e}"))
                    .ok()
            })
            .filter(|peer| match plan.outside(peer) {
                None => true,
                Some(why) => {
                    if !self.outside.contains(&peer.name) {
                        warn!(peer = %peer.name, %why, "ignoring a WeftNode outside the WeftNetwork's plan");
                    }
                    outside.insert(peer.name.clone());
                    false
                }
            })
            .collect();
        self.metrics.peers_outside_plan.set(outside.len() as i64);
        self.outside = outside;
        Some(peers)
    }
}

fn node_name(node: &WeftNode) -> String {
    node.metadata.name.clone().unwrap_or_default()
}

#[cfg(test)]
#[path = "../tests/peers_kube.rs"]
mod tests;
