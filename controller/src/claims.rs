//! [`Claims`]: the claims of ranges, as reconciles and the releaser use them. The
//! [`Ledger`] says what is held (fed by the `WeftClaimBlock` watch, [`Claims::watch`]);
//! the block writer (blocks.rs) writes every change, and the apiserver decides.

use crate::blocks::{Answer, BlockWriter, Change};
use crate::ledger::{Held, Ledger};
use futures::channel::mpsc::UnboundedSender;
use futures::{Future, StreamExt};
use ipnet::IpNet;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, ResourceExt};
use std::sync::Arc;
use tracing::{info, warn};
use weft_api::WeftClaimBlock;

/// The ledger and the block writer. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Claims {
    ledger: Arc<Ledger>,
    writer: BlockWriter,
}

/// What a claim found.
#[derive(Debug)]
pub enum Outcome {
    /// The claim is the node's: just written, or an earlier write of ours adopted.
    Mine(Held),
    /// Someone else holds the range.
    Taken,
}

impl Claims {
    /// The handle, and the block writer's task (see `BlockWriter::new`).
    pub fn new(api: Api<WeftClaimBlock>) -> (Claims, impl Future<Output = ()>) {
        let ledger = Arc::new(Ledger::default());
        let (writer, writing) = BlockWriter::new(api, ledger.clone());
        (Claims { ledger, writer }, writing)
    }

    /// Every claim seen, and the allocator's pool.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Feeds the ledger from the watch of claim blocks until the process ends, and sends
    /// the holders of the claims that changed to `touched`, once the ledger has them:
    /// the Node controller's trigger (one watch serves both). The echo of a claim this
    /// process is writing triggers nothing (`BlockWriter::is_claiming`).
    pub fn watch(
        &self,
        api: Api<WeftClaimBlock>,
        touched: UnboundedSender<ObjectRef<Node>>,
    ) -> impl Future<Output = ()> {
        let claims = self.clone();
        async move {
            let events = watcher(api, watcher::Config::default()).default_backoff();
            let mut events = std::pin::pin!(events);
            while let Some(event) = events.next().await {
                let event = match event {
                    Ok(e) => e,
                    Err(e) => {
                        warn!(error = %e, "WeftClaimBlock watch");
                        continue;
                    }
                };
                let changed = claims.ledger.on_block_event(event);
                for (node, range) in changed {
                    let echo = range.is_some_and(|r| claims.writer.is_claiming(&node, r));
                    if !echo {
                        let _ = touched.unbounded_send(ObjectRef::new(&node));
                    }
                }
            }
        }
    }

    /// Claims `net` (already reserved in the ledger) for the node, in its block. The
    /// apiserver decides (blocks.rs): a range the block shows held by this incarnation of
    /// the node is adopted, by anyone else taken.
    pub async fn claim(
        &self,
        node: &Node,
        net: IpNet,
        from: &str,
    ) -> Result<Outcome, Arc<kube::Error>> {
        let change = Change::Claim {
            net,
            from: from.to_owned(),
            node_name: node.name_any(),
            node_uid: node.uid().unwrap_or_default(),
        };
        match self.writer.submit(change).await? {
            Answer::Mine(h) => Ok(Outcome::Mine(h)),
            Answer::Taken | Answer::Done => Ok(Outcome::Taken),
        }
    }

    /// Marks a claim released now; it is freed a cooldown later.
    pub async fn release(&self, held: &Held, why: &str) -> Result<(), Arc<kube::Error>> {
        let change = Change::Release {
            net: held.cidr,
            node_uid: held.node_uid.clone(),
        };
        self.writer.submit(change).await?;
        info!(claim = %held.name, node = %held.node_name, why, "released");
        Ok(())
    }

    /// Frees a claim whose cooldown is over: drops its block entry, if it is still the
    /// one released at `released_at`.
    pub async fn free(&self, held: &Held, released_at: Timestamp) -> Result<(), Arc<kube::Error>> {
        let change = Change::Forget {
            net: held.cidr,
            released_at,
        };
        self.writer.submit(change).await?;
        Ok(())
    }
}
