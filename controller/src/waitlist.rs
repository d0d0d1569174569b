//! [`Waitlist`]: the nodes waiting for address space or a valid network, and why
//! (counted in `weft_controller_exhausted_nodes`), and the trigger that reconciles every
//! Node again when that may have changed (space was freed, the plan changed).

use crate::shared::{lock, Waiting};
use futures::channel::mpsc::UnboundedSender;
use prometheus::IntGauge;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// See the module documentation. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Waitlist {
    waiting: Arc<Mutex<BTreeMap<String, Waiting>>>,
    gauge: IntGauge,
    retrigger: UnboundedSender<()>,
}

impl Waitlist {
    /// `gauge` is `weft_controller_exhausted_nodes`; `retrigger` reconciles every Node.
    pub fn new(gauge: IntGauge, retrigger: UnboundedSender<()>) -> Waitlist {
        Waitlist {
            waiting: Arc::default(),
            gauge,
            retrigger,
        }
    }

    /// Records why the node waits (or that it no longer does).
    pub fn wait(&self, node: &str, why: Option<Waiting>) {
        let mut waiting = lock(&self.waiting);
        match why {
            Some(w) => waiting.insert(node.to_owned(), w),
            None => waiting.remove(node),
        };
        self.count(&waiting);
    }

    /// The nodes waiting, and why.
    pub fn waiting(&self) -> Vec<(String, Waiting)> {
        lock(&self.waiting)
            .iter()
            .map(|(n, w)| (n.clone(), w.clone()))
            .collect()
    }

    /// Drops the entries of Nodes `exists` denies.
    pub fn forget_gone(&self, exists: impl Fn(&str) -> bool) {
        let mut waiting = lock(&self.waiting);
        waiting.retain(|n, _| exists(n));
        self.count(&waiting);
    }

    /// Space was freed: if any node waits, every Node is reconciled again.
    pub fn space_freed(&self) {
        if !lock(&self.waiting).is_empty() {
            self.retrigger_all();
        }
    }

    /// Reconciles every Node again (the plan changed).
    pub fn retrigger_all(&self) {
        let _ = self.retrigger.unbounded_send(());
    }

    fn count(&self, waiting: &BTreeMap<String, Waiting>) {
        self.gauge
            .set(i64::try_from(waiting.len()).unwrap_or(i64::MAX));
    }
}
