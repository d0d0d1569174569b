//! Removes host veths in the background. Unregistering a network device waits for an
//! RCU grace period (measured ~20 ms here), which would dominate DEL; the plugin hands
//! the removal to this thread and returns. Removals queued while one is under way go
//! together in the next batch, which pays the grace period once. An ADD for the same attachment (same veth
//! name) waits until the old veth is gone, so names never clash.

use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::task::{self, Task};
use std::collections::HashSet;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tracing::warn;
use weft_netlink::Netlink;

/// Most veths removed in one kernel operation.
const MAX_BATCH: usize = 256;

#[derive(Debug, Clone)]
pub struct Reaper {
    queue: mpsc::Sender<String>,
    pending: Arc<Mutex<HashSet<String>>>,
    removed: Arc<Notify>,
}

impl Reaper {
    /// Starts the removal thread, with its own netlink socket in weftd's namespace. The
    /// task ends when the thread does.
    pub fn start(metrics: Metrics) -> Result<(Reaper, Task)> {
        let (queue, jobs) = mpsc::channel::<String>();
        let pending = Arc::new(Mutex::new(HashSet::new()));
        let removed = Arc::new(Notify::new());
        let reaper = Reaper {
            queue,
            pending: pending.clone(),
            removed: removed.clone(),
        };
        let mut nl = Netlink::connect().map_err(Error::netlink("veth reaper netlink socket"))?;
        let task = task::thread("veth-reaper", move || {
            while let Ok(first) = jobs.recv() {
                // Everything queued meanwhile goes in the same batch: one RCU grace
                // period for all of them.
                let mut batch = vec![first];
                while let Ok(more) = jobs.try_recv() {
                    batch.push(more);
                    if batch.len() >= MAX_BATCH {
                        break;
                    }
                }
                let counter = &metrics.veth_removals;
                match nl.delete_links(&batch) {
                    Ok(gone) => {
                        counter.with_label_values(&["ok"]).inc_by(gone.len() as u64);
                        counter
                            .with_label_values(&["absent"])
                            .inc_by((batch.len() - gone.len()) as u64);
                    }
                    Err(e) => {
                        warn!(veths = ?batch, error = %e, "removing host veths failed");
                        counter
                            .with_label_values(&["error"])
                            .inc_by(batch.len() as u64);
                    }
                }
                let mut pending = lock(&pending);
                for name in &batch {
                    pending.remove(name);
                }
                drop(pending);
                removed.notify_waiters();
            }
        })?;
        Ok((reaper, task))
    }

    /// Queues `name` for removal.
    pub fn remove(&self, name: String) {
        lock(&self.pending).insert(name.clone());
        if self.queue.send(name.clone()).is_err() {
            lock(&self.pending).remove(&name);
        }
    }

    /// Waits until `name` is no longer queued; false on timeout.
    pub async fn wait_for(&self, name: &str, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.removed.notified();
            if !lock(&self.pending).contains(name) {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return false;
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
