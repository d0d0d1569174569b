//! Profiles that outlive their last pod on the node for a grace period, chain and sets
//! kept in the kernel: a pod starting under one again (a Job's next run, a Deployment
//! scaled to zero and back, pods deleted and recreated) then needs only its own
//! elements at ADD, in the guard's transaction, instead of a pass that lays the chain
//! under the engine's lock while the node's other ADDs queue behind it
//! (docs/networkpolicy-design.md §3). A chain no verdict jumps to judges no packet.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// How long a profile's chain stays after its last pod went. A kept chain costs kernel
/// memory and each pass's compile of it, both bounded by the profiles the node's pods
/// used within this time.
pub const GRACE: Duration = Duration::from_secs(300);

/// When each profile (`P`: [`crate::firewall::Profile`]) was last under a pod, as the
/// passes saw.
#[derive(Debug)]
pub(super) struct Lingering<P> {
    last_used: BTreeMap<P, Instant>,
}

impl<P> Default for Lingering<P> {
    fn default() -> Self {
        Lingering {
            last_used: BTreeMap::new(),
        }
    }
}

impl<P: Ord + Clone> Lingering<P> {
    /// The profiles to keep at `now` besides the pods' own: used within [`GRACE`] and
    /// still `valid` (a profile naming a deleted policy cannot come back as it was).
    pub(super) fn kept(&self, now: Instant, valid: impl Fn(&P) -> bool) -> Vec<P> {
        self.last_used
            .iter()
            .filter(|(profile, used)| {
                now.saturating_duration_since(**used) < GRACE && valid(profile)
            })
            .map(|(profile, _)| profile.clone())
            .collect()
    }

    /// A pass at `now` had pods under `in_use`; profiles past their grace are forgotten.
    pub(super) fn used(&mut self, in_use: &BTreeSet<P>, now: Instant) {
        for profile in in_use {
            self.last_used.insert(profile.clone(), now);
        }
        self.last_used
            .retain(|_, used| now.saturating_duration_since(*used) < GRACE);
    }
}

#[cfg(test)]
#[path = "../tests/policy_lingering.rs"]
mod tests;
