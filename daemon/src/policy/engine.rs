//! The policy engine: the controller's objects (the watches' [`PolicyInputs`]) and the
//! node's pods (its IPAM allocations) compiled into the firewall's NetworkPolicy state
//! and applied as a difference, after each burst of watch events, after a pod's ADD
//! (before it is answered) and after pods are released.
//!
//! No pass runs before every watch has listed once: until then a restarted weftd's
//! predecessor's rules keep judging the running pods, and a new pod's veth is in no
//! verdict map, so its packets are dropped (`np-egress`/`np-ingress` end in `drop`).
//! A starting pod no policy can select is the exception: its `accept` verdicts need
//! only the index and the node's `WeftNodePolicy`, which come from the apiserver, so a
//! weftd whose span watches cannot list yet (the relay away) still admits it at once.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{watch, Notify};
use tracing::{debug, warn};
use weft_api::ALL_PODS_GROUP;
use weft_wire::{host_veth_name, Allocation, Mode};

use super::counts::PodStates;
use super::gate::{Judgement, PolicyGate};
use super::inputs::{Admission, PolicyInputs};
use super::report::Applied;
use super::watch::Progress;
use crate::error::{Error, Result};
use crate::firewall::{
    compile, sources_of, Family, GuardSets, LocalPod, PodState, PolicyTables, PolicyView,
};
use crate::metrics::Metrics;

/// The node's allocations, read when a pass needs them.
pub type Pods = Arc<dyn Fn() -> Vec<Allocation> + Send + Sync>;

/// What the engine needs of its node.
#[derive(Debug, Clone)]
pub struct EngineNode {
    /// The families the node serves: a pod started without one has it turned off.
    pub served: Mode,
    /// Where the inputs' local copy is kept.
    pub state_dir: std::path::PathBuf,
}

/// The engine's handle: ADD's admission and the passes.
#[derive(Clone)]
pub struct PolicyEngine {
    inputs: Arc<Mutex<PolicyInputs>>,
    progress: watch::Receiver<Progress>,
    gate: PolicyGate,
    tables: PolicyTables,
    applied: Arc<watch::Sender<Applied>>,
    /// One pass at a time: a pass compiled from older inputs never lands after a newer.
    serial: Arc<Mutex<()>>,
    released: Arc<Notify>,
    /// The families the node serves.
    served: Mode,
    /// Where the inputs' local copy goes, and the revision last saved there.
    state_dir: Arc<std::path::PathBuf>,
    saved_revision: Arc<Mutex<Option<u64>>>,
    /// The local pods' states, for the metric and the status.
    states: Arc<Mutex<PodStates>>,
    metrics: Metrics,
}

impl std::fmt::Debug for PolicyEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyEngine").finish_non_exhaustive()
    }
}

impl PolicyEngine {
    /// An engine over the watches' `inputs` and `progress`, writing through `tables`
    /// and telling the status reporter through `applied`.
    pub fn new(
        inputs: Arc<Mutex<PolicyInputs>>,
        progress: watch::Receiver<Progress>,
        gate: PolicyGate,
        tables: PolicyTables,
        applied: watch::Sender<Applied>,
        node: EngineNode,
        metrics: Metrics,
    ) -> PolicyEngine {
        PolicyEngine {
            inputs,
            progress,
            gate,
            tables,
            applied: Arc::new(applied),
            serial: Arc::new(Mutex::new(())),
            released: Arc::new(Notify::new()),
            served: node.served,
            state_dir: Arc::new(node.state_dir),
            saved_revision: Arc::new(Mutex::new(None)),
            states: Arc::new(Mutex::new(PodStates::default())),
            metrics,
        }
    }

    /// Puts a starting pod's guard sources and verdicts in place: waits (bounded) for
    /// its entry when its namespace may have policies, then writes both, in one
    /// transaction when its profiles are in the kernel already, else the sources and a
    /// pass over `pods`, which hold its allocation already. Its veth does not exist yet,
    /// so no packet precedes them.
    pub async fn admit(
        &self,
        allocation: &Allocation,
        pods: Pods,
        guard: &GuardSets,
    ) -> Result<()> {
        let (judgement, waited) = self.gate.judge(&allocation.pod).await;
        // A pod with policies needs their profiles, which the span watches bring: give a
        // weftd just started the same bounded time to finish its first listings.
        if matches!(judgement, Judgement::Entry(_)) {
            self.gate.wait_complete().await;
        }
        self.metrics
            .policy_admission_wait
            .with_label_values(&[judgement.outcome()])
            .observe(waited.as_secs_f64());
        let (engine, guard) = (self.clone(), guard.clone());
        let allocation = allocation.clone();
        tokio::task::spawn_blocking(move || engine.admit_now(&allocation, &pods, &guard))
            .await
            .unwrap_or_else(|e| {
                warn!(error = %e, "NetworkPolicy admission at ADD panicked");
                Ok(())
            })
    }

    /// The kernel side of [`PolicyEngine::admit`], in turn with passes: a pass that
    /// read the pods before this one's allocation must not land after it.
    fn admit_now(&self, allocation: &Allocation, pods: &Pods, guard: &GuardSets) -> Result<()> {
        let _serial = self.serial.lock().unwrap_or_else(|e| e.into_inner());
        let sources = sources_of(allocation);
        // Most pods start beside others of their profile, or with no policy at all:
        // their own elements are the whole change, in the guard's transaction, without
        // compiling the node's state (before the first pass, only a pod no policy
        // selects: [`PolicyTables::admit_pod`]).
        {
            let inputs = self.inputs.lock().unwrap_or_else(|e| e.into_inner());
            let pod = local_pod(allocation, self.served, &inputs);
            let admitted = self
                .tables
                .admit_pod(&pod, |changes| guard.admit_with(&sources, changes))?;
            if let Some(count) = admitted {
                self.metrics.policy_kernel_changes.inc_by(count as u64);
                self.count_admitted(&pod);
                return Ok(());
            }
        }
        guard
            .admit(&sources)
            .map_err(|e| Error::Firewall(e.to_string()))?;
        self.pass_in_turn(pods)
    }

    /// Pods were released: their verdicts go at the next pass (a stale verdict judges
    /// no packet, its veth is gone).
    pub fn released(&self) {
        self.released.notify_one();
    }

    /// Runs a pass after each burst of watch events and after releases, for as long as
    /// the watches run; returns when their sender is gone.
    pub async fn run(self, pods: Pods) -> Result<()> {
        let mut progress = self.progress.clone();
        loop {
            tokio::select! {
                changed = progress.changed() => if changed.is_err() { return Ok(()) },
                _ = self.released.notified() => {}
            }
            let engine = self.clone();
            let pods = pods.clone();
            let passed = tokio::task::spawn_blocking(move || engine.pass(&pods))
                .await
                .unwrap_or(Ok(()));
            if let Err(e) = passed {
                // The next change or release tries again, writing the whole state.
                warn!(error = %e, "NetworkPolicy pass");
                self.metrics.error(&e);
            }
        }
    }

    /// Compiles the state for `pods` and applies its difference from the kernel's.
    fn pass(&self, pods: &Pods) -> Result<()> {
        let _serial = self.serial.lock().unwrap_or_else(|e| e.into_inner());
        self.pass_in_turn(pods)
    }

    /// A pass, `serial` held: the pods are read under it, so a pass never applies a
    /// view of the pods older than one already applied.
    fn pass_in_turn(&self, pods: &Pods) -> Result<()> {
        let pods = pods();
        // Read before the inputs: the versions reported never run ahead of what the
        // kernel gets.
        let progress = self.progress.borrow().clone();
        if !progress.complete {
            debug!("NetworkPolicy: waiting for every watch to list once");
            return Ok(());
        }
        let started = Instant::now();
        let (compiled, counts, mut errors) = {
            let inputs = self.inputs.lock().unwrap_or_else(|e| e.into_inner());
            self.save(&inputs);
            let groups = inputs.groups();
            let view = PolicyView {
                policies: inputs.policies().collect(),
                groups,
                all_pods_group: Some(ALL_PODS_GROUP),
                entries: inputs.entries().collect(),
            };
            let local: Vec<LocalPod<'_>> = pods
                .iter()
                .map(|a| local_pod(a, self.served, &inputs))
                .collect();
            let counts = {
                let mut states = self.states.lock().unwrap_or_else(|e| e.into_inner());
                states.replace(&local);
                states.counts()
            };
            (compile(&view, &local), counts, inputs.errors())
        };
        errors.extend(compiled.problems);
        let lines = self.tables.apply_elements(compiled.desired)?.count();
        if lines > 0 {
            self.metrics
                .policy_apply_duration
                .observe(started.elapsed().as_secs_f64());
            self.metrics.policy_kernel_changes.inc_by(lines as u64);
        }
        counts.export(&self.metrics);
        self.applied.send_replace(Applied {
            observed: progress.observed,
            pending_pods: counts.pending,
            errors,
        });
        Ok(())
    }
}

impl PolicyEngine {
    /// Counts a pod admitted without a pass, on the metric and the status.
    fn count_admitted(&self, pod: &LocalPod<'_>) {
        let counts = {
            let mut states = self.states.lock().unwrap_or_else(|e| e.into_inner());
            states.record(pod);
            states.counts()
        };
        counts.export(&self.metrics);
        self.applied.send_if_modified(|applied| {
            let changed = applied.pending_pods != counts.pending;
            applied.pending_pods = counts.pending;
            changed
        });
    }

    /// Saves the inputs when they changed since the last copy. A failure is said and
    /// costs only the copy's freshness.
    fn save(&self, inputs: &PolicyInputs) {
        let mut saved = self
            .saved_revision
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if *saved == Some(inputs.revision()) {
            return;
        }
        match super::saved::save(&self.state_dir, inputs) {
            Ok(()) => *saved = Some(inputs.revision()),
            Err(e) => warn!(error = %e, "saving the NetworkPolicy inputs"),
        }
    }
}

/// A local pod as the compiler takes it: its veth, addresses, and what is known of its
/// policies. A pod without a Kubernetes identity (cnitool) is never selected.
fn local_pod<'a>(allocation: &Allocation, served: Mode, inputs: &'a PolicyInputs) -> LocalPod<'a> {
    let state = match (
        allocation.pod.namespace.as_deref(),
        allocation.pod.uid.as_deref(),
    ) {
        (Some(namespace), Some(uid)) => match inputs.admission(namespace, uid) {
            Admission::Unpoliced => PodState::Unpoliced,
            Admission::Entry(entry) => PodState::Policed(entry),
            Admission::Pending | Admission::Unknown => PodState::Pending,
        },
        _ => PodState::Unpoliced,
    };
    let addresses = allocation
        .ipv6
        .map(std::net::IpAddr::V6)
        .into_iter()
        .chain(allocation.ipv4.map(std::net::IpAddr::V4))
        .collect();
    LocalPod {
        veth: host_veth_name(&allocation.attachment),
        addresses,
        families_off: families_off(allocation, served),
        state,
    }
}

/// The families the node serves that `allocation` holds no address of.
fn families_off(allocation: &Allocation, served: Mode) -> Vec<Family> {
    let mut off = Vec::new();
    if served.has_ipv4() && allocation.ipv4.is_none() {
        off.push(Family::V4);
    }
    if served.has_ipv6() && allocation.ipv6.is_none() {
        off.push(Family::V6);
    }
    off
}
