//! Watches every long-running task of weftd. A task that ends is always seen: logged,
//! counted in `weft_errors_total`, and then, by the policy it was added with, either
//! weftd exits non-zero (the DaemonSet restarts it; the datapath stays in place across
//! the restart) or `/readyz` turns 503 for good while pods are still served.
//!
//! [`Readiness`] is what `/readyz` answers: 200 once weftd serves pods (and has written
//! the CNI conflist, when it writes one), unless a task's end has degraded it.

use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::task::Task;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tracing::{error, info};

/// `/readyz`'s answer, from two facts main learns one at a time: weftd serves pods,
/// and no task whose end costs readiness has ended. Either may come first.
#[derive(Debug, Default)]
pub struct Readiness {
    answer: Arc<AtomicBool>,
    serving: bool,
    degraded: bool,
}

impl Readiness {
    /// The flag the health endpoints read.
    pub fn answer(&self) -> Arc<AtomicBool> {
        self.answer.clone()
    }

    /// Pods are served (and the conflist written, when weftd writes one).
    pub fn set_serving(&mut self) {
        self.serving = true;
        self.publish();
    }

    /// Whether [`Readiness::set_serving`] was called.
    pub fn serving(&self) -> bool {
        self.serving
    }

    /// For good: weftd is no longer all it claims to be.
    fn degrade(&mut self) {
        self.degraded = true;
        self.publish();
    }

    fn publish(&self) {
        self.answer
            .store(self.serving && !self.degraded, Ordering::Release);
    }
}

/// What a task's end means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnEnd {
    /// weftd cannot do its job without it: exit non-zero.
    Exit,
    /// weftd still serves pods, but is no longer all it claims to be: `/readyz` 503.
    NotReady,
}

/// How long a task is meant to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// As long as weftd: returning at all is a death.
    Forever,
    /// Until its job is done: returning `Ok` is success.
    UntilDone,
}

/// A task that ended, and what it returned.
#[derive(Debug)]
pub struct Ended {
    pub name: &'static str,
    pub on_end: OnEnd,
    /// `Ok` only for an [`Lifetime::UntilDone`] task that finished its job.
    pub outcome: Result<()>,
}

/// The tasks under watch.
#[derive(Default)]
pub struct Tasks {
    running: FuturesUnordered<BoxFuture<'static, Ended>>,
}

impl Tasks {
    /// Watches `task` under `name`.
    pub fn add(&mut self, name: &'static str, lifetime: Lifetime, on_end: OnEnd, task: Task) {
        self.running.push(
            task.map(move |outcome| Ended {
                name,
                on_end,
                outcome: match (outcome, lifetime) {
                    (Ok(()), Lifetime::Forever) => Err(Error::TaskEnded { task: name }),
                    (outcome, _) => outcome,
                },
            })
            .boxed(),
        );
    }

    /// The next task to end; pending for ever when none is left.
    pub async fn next(&mut self) -> Ended {
        match self.running.next().await {
            Some(ended) => ended,
            None => std::future::pending().await,
        }
    }
}

impl Ended {
    /// Logs and counts the end, and applies its policy: `Err` when weftd must exit.
    pub fn settle(self, readiness: &mut Readiness, metrics: &Metrics) -> Result<()> {
        let error = match self.outcome {
            Ok(()) => {
                info!(task = self.name, "task done");
                return Ok(());
            }
            Err(error) => error,
        };
        metrics.error(&error);
        match self.on_end {
            OnEnd::Exit => {
                error!(task = self.name, error = %error, "task died: exiting so weftd is restarted");
                Err(error)
            }
            OnEnd::NotReady => {
                error!(task = self.name, error = %error, "task died: /readyz now answers 503");
                readiness.degrade();
                Ok(())
            }
        }
    }
}

#[cfg(test)]
#[path = "tests/supervisor.rs"]
mod tests;
