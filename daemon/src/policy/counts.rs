//! Local pods by policy state, for `weft_policy_pods` and the status's `pendingPods`.
//! A pass records every pod's state; a pod admitted between passes records its own, so
//! the numbers include it once its ADD is answered, without a pass on the ADD path.

use std::collections::HashMap;

use crate::firewall::{LocalPod, PodState};
use crate::metrics::Metrics;

/// A pod's state without its entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StateKind {
    Unpoliced,
    Policed,
    Pending,
}

impl StateKind {
    fn of(state: &PodState<'_>) -> StateKind {
        match state {
            PodState::Unpoliced => StateKind::Unpoliced,
            PodState::Policed(_) => StateKind::Policed,
            PodState::Pending => StateKind::Pending,
        }
    }
}

/// Each local pod's state, by host veth, and their tally (kept as they change, so an
/// ADD's count costs no walk over the node's pods).
#[derive(Debug, Default)]
pub(super) struct PodStates {
    by_veth: HashMap<String, StateKind>,
    counts: StateCounts,
}

impl PodStates {
    /// Every local pod, as a pass compiled them: pods released since are dropped.
    pub(super) fn replace(&mut self, pods: &[LocalPod<'_>]) {
        self.by_veth = pods
            .iter()
            .map(|pod| (pod.veth.clone(), StateKind::of(&pod.state)))
            .collect();
        self.counts = StateCounts::default();
        for kind in self.by_veth.values() {
            *self.counts.of(*kind) += 1;
        }
    }

    /// One pod admitted between passes (again, when a pass saw it already).
    pub(super) fn record(&mut self, pod: &LocalPod<'_>) {
        let kind = StateKind::of(&pod.state);
        if let Some(was) = self.by_veth.insert(pod.veth.clone(), kind) {
            *self.counts.of(was) -= 1;
        }
        *self.counts.of(kind) += 1;
    }

    pub(super) fn counts(&self) -> StateCounts {
        self.counts
    }
}

/// Local pods by state.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct StateCounts {
    unpoliced: u32,
    policed: u32,
    pub(super) pending: u32,
}

impl StateCounts {
    fn of(&mut self, kind: StateKind) -> &mut u32 {
        match kind {
            StateKind::Unpoliced => &mut self.unpoliced,
            StateKind::Policed => &mut self.policed,
            StateKind::Pending => &mut self.pending,
        }
    }

    pub(super) fn export(self, metrics: &Metrics) {
        for (state, count) in [
            ("unpoliced", self.unpoliced),
            ("policed", self.policed),
            ("pending", self.pending),
        ] {
            metrics
                .policy_pods
                .with_label_values(&[state])
                .set(i64::from(count));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(veth: &str, state: PodState<'static>) -> LocalPod<'static> {
        LocalPod {
            veth: veth.to_owned(),
            addresses: Vec::new(),
            families_off: Vec::new(),
            state,
        }
    }

    #[test]
    fn a_pod_admitted_between_passes_is_counted_once() {
        let mut states = PodStates::default();
        states.replace(&[pod("a", PodState::Unpoliced), pod("b", PodState::Pending)]);
        assert_eq!(states.counts().pending, 1);
        states.record(&pod("c", PodState::Pending));
        assert_eq!(states.counts().pending, 2);
        // A pass that read the pods after c's allocation saw it already.
        states.record(&pod("c", PodState::Pending));
        assert_eq!(states.counts().pending, 2);
        assert_eq!(states.counts().unpoliced, 1);
    }

    fn only_unpoliced(unpoliced: u32) -> StateCounts {
        StateCounts {
            unpoliced,
            ..StateCounts::default()
        }
    }

    #[test]
    fn a_pod_recorded_again_in_another_state_moves_between_counts() {
        let mut states = PodStates::default();
        states.replace(&[pod("a", PodState::Pending)]);
        states.record(&pod("a", PodState::Unpoliced));
        assert_eq!(states.counts(), only_unpoliced(1));
    }

    #[test]
    fn a_pass_drops_released_pods() {
        let mut states = PodStates::default();
        states.replace(&[pod("a", PodState::Pending), pod("b", PodState::Pending)]);
        states.replace(&[pod("a", PodState::Unpoliced)]);
        assert_eq!(states.counts(), only_unpoliced(1));
    }
}
