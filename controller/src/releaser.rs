//! The releaser: releases the claims of Nodes that are gone, frees claims whose cooldown
//! is over, and deletes the WeftNodes of gone Nodes (the test apiserver runs no garbage
//! collector, and a real one may lag). It also sweeps the bookkeeping of gone Nodes.

use crate::allocator::cooldown_left;
use crate::claims::Claims;
use crate::ledger::Held;
use crate::stores::Stores;
use crate::waitlist::Waitlist;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Preconditions};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};
use weft_api::WeftNode;

/// `releasedAt` is a Kubernetes time, kept in whole seconds: a claim stamped T was
/// released somewhere in [T, T + 1 s), so its cooldown is counted from T + 1 s, never
/// ending early.
const STAMP_PRECISION: std::time::Duration = std::time::Duration::from_secs(1);

/// How often the releaser sweeps: a deleted Node's claims are released within this.
const SWEEP_EVERY: Duration = Duration::from_secs(2);
/// Claims handled at once in a sweep: block changes made together share a write.
const SWEEP_CONCURRENCY: usize = 64;

/// What the releaser reads and writes.
pub struct Releaser {
    pub claims: Claims,
    pub stores: Stores,
    pub waitlist: Waitlist,
    pub node_api: Api<Node>,
    pub weftnode_api: Api<WeftNode>,
}

impl Releaser {
    /// Sweeps for ever, while this replica leads.
    pub async fn run(self) {
        self.stores.nodes_listed.wait().await;
        self.stores.weftnodes_listed.wait().await;
        self.claims.ledger().wait_ready().await;
        loop {
            self.sweep().await;
            tokio::time::sleep(SWEEP_EVERY).await;
        }
    }

    async fn sweep(&self) {
        let freed = self.release_and_free_claims().await;
        self.delete_orphaned_weftnodes().await;
        let stores = &self.stores;
        self.waitlist
            .forget_gone(|n| stores.nodes.get(&ObjectRef::new(n)).is_some());
        stores.prune_writes();
        if freed {
            self.waitlist.space_freed();
        }
    }

    /// Releases the claims of gone Nodes and frees those whose cooldown is over. Returns
    /// whether any range was freed.
    async fn release_and_free_claims(&self) -> bool {
        let cooldown = self.stores.cooldown();
        let now = Timestamp::now();
        let actionable = self.claims.ledger().select(|h| {
            h.released_at.is_some() || !self.stores.has_node(&h.node_name, &h.node_uid)
        });
        futures::stream::iter(actionable)
            .map(|held| async move {
                let (outcome, freed) = match held.released_at {
                    None => (self.release_if_gone(&held).await, false),
                    Some(at)
                        if cooldown_left(at.into(), cooldown + STAMP_PRECISION, now.into())
                            .is_zero() =>
                    {
                        (self.claims.free(&held, at).await, true)
                    }
                    Some(_) => (Ok(()), false),
                };
                if let Err(e) = &outcome {
                    warn!(claim = %held.name, error = %e, "release");
                }
                freed && outcome.is_ok()
            })
            .buffer_unordered(SWEEP_CONCURRENCY)
            .fold(false, |any, freed| async move { any || freed })
            .await
    }

    /// Releases the claim if the apiserver (not the cache) says its node incarnation is
    /// gone: a release must never follow from a cache that lags.
    async fn release_if_gone(&self, held: &Held) -> Result<(), Arc<kube::Error>> {
        let node = self.node_api.get_opt(&held.node_name).await?;
        let exists = node.is_some_and(|n| n.uid().as_deref() == Some(held.node_uid.as_str()));
        if exists {
            return Ok(());
        }
        self.claims.release(held, "node gone").await
    }

    /// Deletes the WeftNodes whose Node (that incarnation) is not in the cache.
    async fn delete_orphaned_weftnodes(&self) {
        for wn in self.stores.weftnodes.state() {
            let owner = wn
                .owner_references()
                .iter()
                .find(|o| o.kind == "Node")
                .map(|o| o.uid.clone());
            let name = wn.name_any();
            let alive = match &owner {
                Some(uid) => self.stores.has_node(&name, uid),
                None => self.stores.nodes.get(&ObjectRef::new(&name)).is_some(),
            };
            if !alive {
                self.delete_weftnode(&wn).await;
            }
        }
    }

    async fn delete_weftnode(&self, wn: &WeftNode) {
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: wn.uid(),
                resource_version: wn.resource_version(),
            }),
            ..DeleteParams::default()
        };
        match self.weftnode_api.delete(&wn.name_any(), &params).await {
            Ok(_) => info!(weftnode = %wn.name_any(), "deleted: its Node is gone"),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => warn!(weftnode = %wn.name_any(), error = %e, "cannot delete"),
        }
    }
}
