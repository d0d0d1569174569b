//! `WeftPolicy.status`: on how many of its nodes each policy is programmed
//! (progress.rs), from the writer's [`Programming`] and every `WeftNodePolicy`'s
//! `status.observed` (weftd's report), watched here.
//!
//! Computed every [`STATUS_EVERY`] and written only where it changed (compared with the
//! status as listed on taking the lead, then as last written): at most once a second
//! per policy. Server-side apply of the status subresource: the spec, and what weftd
//! writes elsewhere, are untouched.

use super::progress::{Needs, Programming};
use crate::metrics::Metrics;
use crate::shared::MANAGER;
use futures::StreamExt;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, ResourceExt};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tracing::warn;
use weft_api::{condition, conditions_differ, WeftNodePolicy, WeftPolicy, WeftPolicyStatus};

/// How often statuses are computed.
const STATUS_EVERY: Duration = Duration::from_secs(1);
/// Pending nodes a status names at most.
const PENDING_NAMED: usize = 10;

/// Each node's observed versions, by node name.
type Observed = HashMap<String, BTreeMap<String, String>>;

/// Keeps every policy's status current, for ever.
pub async fn run(
    client: Client,
    mut programming: watch::Receiver<Arc<Programming>>,
    metrics: Metrics,
) {
    let api: Api<WeftPolicy> = Api::all(client.clone());
    let reports = watcher::watcher(
        Api::<WeftNodePolicy>::all(client),
        watcher::Config::default(),
    )
    .default_backoff();
    let mut reports = std::pin::pin!(reports);
    let mut observed = Observed::new();
    let mut listing: Option<Observed> = None;
    // The first programming comes with the writer's first round; its list is then one
    // the statuses compare with.
    let _ = programming.changed().await;
    let mut written = listed_statuses(&api).await;
    let mut tick = tokio::time::interval(STATUS_EVERY);
    loop {
        tokio::select! {
            event = reports.next() => match event {
                Some(Ok(event)) => apply(&mut observed, &mut listing, event),
                Some(Err(e)) => warn!(error = %e, "WeftNodePolicy status watch"),
                None => return,
            },
            _ = tick.tick() => {
                let now = programming.borrow().clone();
                publish(&api, &now, &observed, &mut written, &metrics).await;
            }
        }
    }
}

/// The statuses as the policies hold them; none on a failed list (each is then written
/// once).
async fn listed_statuses(api: &Api<WeftPolicy>) -> HashMap<String, WeftPolicyStatus> {
    match api.list(&ListParams::default()).await {
        Ok(list) => list
            .items
            .into_iter()
            .filter_map(|p| Some((p.name_any(), p.status?)))
            .collect(),
        Err(e) => {
            warn!(error = %e, "listing WeftPolicy statuses");
            HashMap::new()
        }
    }
}

fn apply(observed: &mut Observed, listing: &mut Option<Observed>, event: Event<WeftNodePolicy>) {
    let versions = |o: &WeftNodePolicy| {
        o.status
            .as_ref()
            .map(|s| s.observed.clone())
            .unwrap_or_default()
    };
    match event {
        Event::Apply(o) => {
            observed.insert(o.name_any(), versions(&o));
        }
        Event::Delete(o) => {
            observed.remove(&o.name_any());
        }
        Event::Init => *listing = Some(Observed::new()),
        Event::InitApply(o) => {
            listing
                .get_or_insert_with(Observed::new)
                .insert(o.name_any(), versions(&o));
        }
        Event::InitDone => *observed = listing.take().unwrap_or_default(),
    }
}

/// Writes each policy's status that changed.
async fn publish(
    api: &Api<WeftPolicy>,
    programming: &Programming,
    observed: &Observed,
    written: &mut HashMap<String, WeftPolicyStatus>,
    metrics: &Metrics,
) {
    written.retain(|name, _| programming.contains_key(name));
    for (name, needs) in programming {
        let previous = written.get(name);
        let status = status(needs, observed, previous);
        let same = previous.is_some_and(|p| {
            p.span_nodes == status.span_nodes
                && p.programmed_nodes == status.programmed_nodes
                && p.pending_nodes == status.pending_nodes
                && !conditions_differ(&p.conditions, &status.conditions)
        });
        if same {
            continue;
        }
        let body = serde_json::json!({
            "apiVersion": "weft.dev/v1alpha1", "kind": "WeftPolicy",
            "metadata": {"name": name}, "status": status,
        });
        let params = PatchParams::apply(MANAGER).force();
        let result = match api.patch_status(name, &params, &Patch::Apply(&body)).await {
            Ok(_) => {
                written.insert(name.clone(), status);
                "applied"
            }
            // Deleted meanwhile: the next programming drops it.
            Err(kube::Error::Api(s)) if s.code == 404 => continue,
            Err(e) => {
                warn!(policy = %name, error = %e, "cannot write the status");
                "failed"
            }
        };
        let writes = metrics
            .policy_writes
            .with_label_values(&["WeftPolicy/status", result]);
        writes.inc();
    }
}

/// The status of one policy.
fn status(
    needs: &Needs,
    observed: &Observed,
    previous: Option<&WeftPolicyStatus>,
) -> WeftPolicyStatus {
    let empty = BTreeMap::new();
    let pending: Vec<&String> = needs
        .span
        .iter()
        .filter(|node| !needs.met_by(observed.get(*node).unwrap_or(&empty)))
        .collect();
    let span = needs.span.len();
    let programmed = span - pending.len();
    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    let conditions = previous
        .map(|p| p.conditions.as_slice())
        .unwrap_or_default();
    let condition = if pending.is_empty() {
        let message = format!("programmed on all {span} nodes of its span");
        condition(conditions, "Programmed", true, "Programmed", message)
    } else {
        let named: Vec<&str> = pending
            .iter()
            .take(PENDING_NAMED)
            .map(|n| n.as_str())
            .collect();
        let message = format!(
            "programmed on {programmed} of {span} nodes; waiting for {}",
            named.join(", ")
        );
        condition(conditions, "Programmed", false, "Pending", message)
    };
    WeftPolicyStatus {
        span_nodes: count(span),
        programmed_nodes: count(programmed),
        pending_nodes: pending
            .iter()
            .take(PENDING_NAMED)
            .map(|n| (*n).clone())
            .collect(),
        conditions: vec![condition],
    }
}
