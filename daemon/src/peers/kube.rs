//! The Kubernetes peer source: every `WeftNode` with ranges and an underlay address is a
//! peer. One watch feeds them to the datapath, debounced, a complete list each time.

use crate::datapath::Datapath;
use crate::error::{Error, Result};
use crate::kube::Cluster;
use crate::metrics::Metrics;
use futures::StreamExt;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use std::collections::BTreeMap;
use std::time::Duration;
use tracing::warn;
use weft_api::WeftNode;
use weft_wire::{Peer, PeerEntry};

/// A burst of WeftNode changes (a cluster starting) is applied as one peer list.
const PEER_DEBOUNCE: Duration = Duration::from_millis(200);
/// WeftNodes per page of the watch's initial list. A page is decoded whole, managedFields
/// and status included, before its objects shrink to peer entries. With 5,000 WeftNodes
/// (e2e/bench-kube-peers.sh) weftd peaked at 43 MiB with the watcher's default of 500
/// per page and at 31 MiB with 100 (27.6 MiB from a peers file), converging as fast.
const LIST_PAGE: u32 = 100;

/// Watches every WeftNode and hands the peer list to the datapath after each burst of
/// changes. Returns only if the watch stream ends: a broken watch is retried with
/// backoff, each failure counted.
///
/// Of each WeftNode only its peer entry is kept, as it arrives: the object's metadata,
/// managedFields (four writers) and status are several times its size, and every weftd
/// holds one per node of the cluster.
pub async fn feed(cluster: Cluster, datapath: Datapath, metrics: Metrics) -> Result<()> {
    let stream = watcher::watcher(
        cluster.nodes(),
        watcher::Config::default().page_size(LIST_PAGE),
    )
    .default_backoff();
    futures::pin_mut!(stream);
    let mut nodes: BTreeMap<String, PeerEntry> = BTreeMap::new();
    let mut listing: Option<BTreeMap<String, PeerEntry>> = None;
    let mut pending = false;
    loop {
        let next = if pending {
            match tokio::time::timeout(PEER_DEBOUNCE, stream.next()).await {
                Ok(next) => next,
                Err(_) => {
                    datapath.set_peers(peers_of(&nodes));
                    pending = false;
                    continue;
                }
            }
        } else {
            stream.next().await
        };
        match next {
            None => return Ok(()),
            Some(Err(e)) => {
                let e = Error::Watch {
                    context: "WeftNode watch".into(),
                    source: Box::new(e),
                };
                warn!(error = %e, "retrying");
                metrics.error(&e);
            }
            Some(Ok(Event::Init)) => listing = Some(BTreeMap::new()),
            Some(Ok(Event::InitApply(node))) => {
                if let Some(l) = listing.as_mut() {
                    l.insert(node_name(&node), node.peer_entry());
                }
            }
            Some(Ok(Event::InitDone)) => {
                nodes = listing.take().unwrap_or_default();
                pending = true;
            }
            Some(Ok(Event::Apply(node))) => {
                nodes.insert(node_name(&node), node.peer_entry());
                pending = true;
            }
            Some(Ok(Event::Delete(node))) => {
                nodes.remove(&node_name(&node));
                pending = true;
            }
        }
    }
}

fn node_name(node: &WeftNode) -> String {
    node.metadata.name.clone().unwrap_or_default()
}

/// Every WeftNode that has ranges and an underlay address, validated like peers-file
/// entries (bad ones are logged and skipped). A node still waiting for its ranges, or
/// whose weftd has not published yet, is not a peer yet.
fn peers_of(nodes: &BTreeMap<String, PeerEntry>) -> Vec<Peer> {
    nodes
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
        .collect()
}
