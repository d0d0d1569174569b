//! Admission at ADD (docs/networkpolicy-design.md §3): a pod whose namespace has
//! policies gets its verdicts in the same transaction as its guard's sources, before
//! its veth exists, so no packet precedes them. Its entry in `WeftNodePolicy` normally
//! arrives before kubelet even calls CNI (the controller sees the pod when it is
//! scheduled); when it has not, ADD waits for it at most the configured time and the pod
//! then starts isolated (`drop` both ways) until it comes: late policy fails closed.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use weft_api::PodPolicies;
use weft_wire::PodRef;

use super::inputs::{Admission, PolicyInputs};
use super::watch::Progress;

/// How a starting pod is judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judgement {
    /// Not isolated: no policy can select it (no pod identity, or no policy in its
    /// namespace).
    Unisolated,
    /// Its entry: the policies that apply to it, per direction.
    Entry(PodPolicies),
    /// Its entry did not come in time: isolated until it does.
    Pending,
}

impl Judgement {
    /// The label of `weft_policy_admission_wait_seconds{outcome}`.
    pub fn outcome(&self) -> &'static str {
        match self {
            Judgement::Unisolated => "unisolated",
            Judgement::Entry(_) => "ready",
            Judgement::Pending => "timeout",
        }
    }
}

/// Judges starting pods against the inputs the watches keep.
#[derive(Debug, Clone)]
pub struct PolicyGate {
    inputs: Arc<Mutex<PolicyInputs>>,
    changed: watch::Receiver<Progress>,
    wait: Duration,
}

impl PolicyGate {
    /// A gate over `inputs`, woken by `changed`, waiting at most `wait` per pod.
    pub fn new(
        inputs: Arc<Mutex<PolicyInputs>>,
        changed: watch::Receiver<Progress>,
        wait: Duration,
    ) -> PolicyGate {
        PolicyGate {
            inputs,
            changed,
            wait,
        }
    }

    /// The judgement of `pod`, after waiting for its entry when its namespace may have
    /// policies (or nothing is known yet), and how long that took.
    pub async fn judge(&self, pod: &PodRef) -> (Judgement, Duration) {
        let start = Instant::now();
        let (Some(namespace), Some(uid)) = (pod.namespace.as_deref(), pod.uid.as_deref()) else {
            return (Judgement::Unisolated, start.elapsed());
        };
        let mut changed = self.changed.clone();
        let deadline = tokio::time::Instant::now() + self.wait;
        loop {
            // Read before waiting: a change between the read and the wait still wakes
            // the wait, as `changed()` compares against the version last seen.
            changed.borrow_and_update();
            if let Some(judgement) = self.now(namespace, uid) {
                return (judgement, start.elapsed());
            }
            match tokio::time::timeout_at(deadline, changed.changed()).await {
                Ok(Ok(())) => continue,
                // Timed out, or the watches ended (their task's death is seen by the
                // supervisor): the pod starts isolated.
                Ok(Err(_)) | Err(_) => return (Judgement::Pending, start.elapsed()),
            }
        }
    }

    /// Waits until every watch has listed once, at most the gate's wait.
    pub async fn wait_complete(&self) {
        let mut changed = self.changed.clone();
        let complete = changed.wait_for(|progress| progress.complete);
        let _ = tokio::time::timeout(self.wait, complete).await;
    }

    /// The judgement the inputs allow now, `None` while waiting is worth it.
    fn now(&self, namespace: &str, uid: &str) -> Option<Judgement> {
        let inputs = self.inputs.lock().unwrap_or_else(|e| e.into_inner());
        match inputs.admission(namespace, uid) {
            Admission::Unpoliced => Some(Judgement::Unisolated),
            Admission::Entry(entry) => Some(Judgement::Entry(entry.clone())),
            Admission::Unknown | Admission::Pending => None,
        }
    }
}

#[cfg(test)]
#[path = "../tests/policy_gate.rs"]
mod tests;
