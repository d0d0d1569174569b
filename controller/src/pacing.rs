//! Conditions yield to allocations.
//!
//! A node's ranges are what it waits for: weftd serves no pod before its WeftNode names
//! them, and the kubelet none before `spec.podCIDRs` are set. The `Allocated=True` and
//! `PodCIDRs=True` conditions only report that, and one status write costs the
//! apiserver more CPU than the WeftNode's create and both claims together (3.8 ms
//! against 1.6 ms, measured with the controller benchmark). When thousands of nodes
//! join at once, the apiserver's CPU is the bottleneck, so every status write
//! made then delays some other node's ranges.
//!
//! So while allocations are under way (a Node in the cache still lacks its ranges, or
//! an allocation was written within the last [`QUIET`]), a reconcile that has nothing to
//! write but those good-news conditions leaves them for later and the node is
//! remembered here. Once allocations are quiet, the nudger reconciles the remembered
//! nodes again, and they write their conditions then, computed afresh. Counting the
//! Nodes that still wait, not only the time since the last write, keeps a stalled
//! apiserver (no write returning for a second) from releasing every held write at once
//! in the middle of a burst. A node waits at most [`MAX_DEFER`] however busy the
//! cluster stays. Bad news (`Allocated=False`, `PodCIDRs=False`, or clearing an earlier
//! `False`) is never held back, and nodes that wait for space or a valid network do not
//! count as allocations under way.
//!
//! [`Pacing::new`] returns the handle reconciles ask, and the nudger's task.

use crate::shared::{lock, owned_by};
use crate::stores::Stores;
use crate::waitlist::Waitlist;
use futures::channel::mpsc::UnboundedSender;
use futures::Future;
use k8s_openapi::api::core::v1::Node;
use kube::runtime::reflector::ObjectRef;
use kube::ResourceExt;
use prometheus::IntGauge;
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long allocations must have been quiet before held-back conditions are written.
pub const QUIET: Duration = Duration::from_secs(1);
/// The longest a node's conditions are held back.
pub const MAX_DEFER: Duration = Duration::from_secs(60);
/// How often the nudger looks for quiet.
const NUDGE_EVERY: Duration = Duration::from_millis(250);
/// A nudged node not written meanwhile (its reconcile found the cluster busy again) is
/// nudged again after this long.
const RENUDGE_AFTER: Duration = Duration::from_secs(5);

/// A node whose conditions wait: since when, and when it was last nudged.
#[derive(Debug, Clone, Copy)]
struct Held {
    since: Instant,
    nudged: Option<Instant>,
}

/// The latest allocation write and the node it was for, and the latest write for any
/// other node: enough to tell, for any node, when another node was last allocated.
#[derive(Debug, Default)]
struct Writes {
    last: Option<(Instant, String)>,
    last_other: Option<Instant>,
}

impl Writes {
    /// When an allocation for a node other than `node` (any node, if `None`) last
    /// went out.
    fn latest_besides(&self, node: Option<&str>) -> Option<Instant> {
        match &self.last {
            Some((_, n)) if Some(n.as_str()) == node => self.last_other,
            Some((at, _)) => Some(*at),
            None => None,
        }
    }
}

/// The allocation writes, the Nodes still waiting for ranges, and the nodes whose
/// conditions wait for quiet (counted in `held_gauge`).
#[derive(Debug)]
pub struct Pacing {
    writes: Mutex<Writes>,
    unallocated: Mutex<HashSet<String>>,
    held: Mutex<BTreeMap<String, Held>>,
    held_gauge: IntGauge,
}

/// What the nudger reads: the Nodes and their WeftNodes, the plan, the nodes waiting
/// for space; and where it sends the nodes to reconcile again.
pub struct Nudger {
    pub stores: Stores,
    pub waitlist: Waitlist,
    pub reconcile: UnboundedSender<ObjectRef<Node>>,
}

impl Pacing {
    /// The handle, and the nudger's task, which runs for ever. `held_gauge` is
    /// `weft_controller_held_conditions`.
    pub fn new(held_gauge: IntGauge, nudger: Nudger) -> (Arc<Pacing>, impl Future<Output = ()>) {
        let pacing = Arc::new(Pacing::counted_in(held_gauge));
        (pacing.clone(), nudger.run(pacing))
    }

    fn counted_in(held_gauge: IntGauge) -> Pacing {
        Pacing {
            writes: Mutex::default(),
            unallocated: Mutex::default(),
            held: Mutex::default(),
            held_gauge,
        }
    }

    /// A claim, WeftNode or Node write of `node`'s allocation went out.
    pub fn allocation_written(&self, node: &str) {
        self.allocation_written_at(node, Instant::now());
    }

    fn allocation_written_at(&self, node: &str, now: Instant) {
        let mut writes = lock(&self.writes);
        if let Some((at, last)) = &writes.last {
            if last != node {
                writes.last_other = Some(*at);
            }
        }
        writes.last = Some((now, node.to_owned()));
    }

    /// The cached Nodes that still lack their ranges (the nudger lists them).
    fn set_unallocated(&self, nodes: HashSet<String>) {
        *lock(&self.unallocated) = nodes;
    }

    /// Whether allocations of nodes other than `node` (of any node, if `None`) are
    /// quiet: none waits for its ranges and none was written within [`QUIET`]. A node's
    /// own allocation never holds back its own conditions.
    fn quiet_at(&self, node: Option<&str>, now: Instant) -> bool {
        let waiting_others = lock(&self.unallocated)
            .iter()
            .any(|n| Some(n.as_str()) != node);
        !waiting_others
            && lock(&self.writes)
                .latest_besides(node)
                .is_none_or(|at| now.saturating_duration_since(at) >= QUIET)
    }

    /// Whether `node`'s good-news conditions may be written now. When not, the node is
    /// remembered for the nudger.
    pub fn may_write(&self, node: &str) -> bool {
        self.may_write_at(node, Instant::now())
    }

    fn may_write_at(&self, node: &str, now: Instant) -> bool {
        let quiet = self.quiet_at(Some(node), now);
        let mut held = lock(&self.held);
        let since = held.get(node).map_or(now, |h| h.since);
        let go = quiet || now.saturating_duration_since(since) >= MAX_DEFER;
        if go {
            held.remove(node);
        } else {
            held.entry(node.to_owned()).or_insert(Held {
                since,
                nudged: None,
            });
        }
        self.count(&held);
        go
    }

    /// The node's conditions no longer wait (written by another path).
    pub fn forget(&self, node: &str) {
        let mut held = lock(&self.held);
        held.remove(node);
        self.count(&held);
    }

    fn count(&self, held: &BTreeMap<String, Held>) {
        self.held_gauge
            .set(i64::try_from(held.len()).unwrap_or(i64::MAX));
    }

    /// Once allocations are quiet: the held nodes to reconcile again (each at most every
    /// [`RENUDGE_AFTER`]). Nodes `exists` denies are dropped.
    fn due_at(&self, now: Instant, exists: impl Fn(&str) -> bool) -> Vec<String> {
        let mut held = lock(&self.held);
        held.retain(|node, _| exists(node));
        self.count(&held);
        if !self.quiet_at(None, now) {
            return Vec::new();
        }
        held.iter_mut()
            .filter(|(_, h)| {
                h.nudged
                    .is_none_or(|at| now.saturating_duration_since(at) >= RENUDGE_AFTER)
            })
            .map(|(node, h)| {
                h.nudged = Some(now);
                node.clone()
            })
            .collect()
    }
}

impl Nudger {
    /// Reconciles the held nodes again whenever allocations are quiet. Runs for ever.
    async fn run(self, pacing: Arc<Pacing>) {
        let mut tick = tokio::time::interval(NUDGE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            pacing.set_unallocated(self.unallocated());
            let exists = |node: &str| self.stores.nodes.get(&ObjectRef::new(node)).is_some();
            for node in pacing.due_at(Instant::now(), exists) {
                let _ = self.reconcile.unbounded_send(ObjectRef::new(&node));
            }
        }
    }

    /// The cached Nodes that still lack a range their network serves or their podCIDRs,
    /// not counting those that wait for space or a valid network (they may wait for ever).
    fn unallocated(&self) -> HashSet<String> {
        let Ok(plan) = self.stores.plan() else {
            return HashSet::new();
        };
        let waiting: HashSet<String> = self
            .waitlist
            .waiting()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        let allocated = |node: &Node| {
            let name = node.name_any();
            let ranges = self.stores.weftnode(&name).is_some_and(|wn| {
                owned_by(&wn, node.uid().as_deref().unwrap_or_default())
                    && plan.mode.families().all(|f| wn.spec.range(f).is_some())
            });
            let pod_cidrs = node
                .spec
                .as_ref()
                .and_then(|s| s.pod_cidrs.as_ref())
                .is_some_and(|c| !c.is_empty());
            ranges && pod_cidrs
        };
        self.stores
            .nodes
            .state()
            .iter()
            .filter(|node| node.metadata.deletion_timestamp.is_none())
            .filter(|node| !allocated(node))
            .map(|node| node.name_any())
            .filter(|name| !waiting.contains(name))
            .collect()
    }
}

#[cfg(test)]
#[path = "tests/pacing.rs"]
mod tests;
