//! The [`Context`] every reconcile gets (kube-runtime passes one `Arc` to all): the turns
//! at reconciling and the handles reconciles use. Each handle has one purpose and is
//! passed on alone to the code that needs it.

use crate::claims::Claims;
use crate::metrics::Metrics;
use crate::pacing::Pacing;
use crate::stores::Stores;
use crate::waitlist::Waitlist;
use crate::writes::Writes;
use std::sync::Arc;
use tokio::sync::{Semaphore, SemaphorePermit};

/// See the module documentation.
pub struct Context {
    /// What this replica knows of the cluster's objects.
    pub stores: Stores,
    /// The ledger of claims and the block writer.
    pub claims: Claims,
    /// The reconcile's writes of Nodes, WeftNodes and Events.
    pub writes: Writes,
    /// Good-news conditions held back while allocations are written.
    pub pacing: Arc<Pacing>,
    /// The nodes waiting for space or a valid network.
    pub waitlist: Waitlist,
    pub metrics: Metrics,
    /// `--workers` turns at reconciling, handed out first come, first served (none:
    /// unbounded).
    turns: Option<Semaphore>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("stores", &self.stores)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// `workers` turns at once (0: unbounded).
    pub fn new(
        workers: u16,
        stores: Stores,
        claims: Claims,
        writes: Writes,
        waitlist: Waitlist,
        metrics: Metrics,
    ) -> Context {
        Context {
            pacing: writes.pacing.clone(),
            stores,
            claims,
            writes,
            waitlist,
            metrics,
            turns: (workers > 0).then(|| Semaphore::new(usize::from(workers))),
        }
    }

    /// Waits for a turn to reconcile (see `reconcile::reconcile`).
    pub async fn turn(&self) -> Option<SemaphorePermit<'_>> {
        match &self.turns {
            Some(turns) => turns.acquire().await.ok(),
            None => None,
        }
    }
}
