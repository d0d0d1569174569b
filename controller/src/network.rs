//! The WeftNetwork: watched into a store (a spec change re-triggers every Node, so a
//! range added to an exhausted plan takes effect at once), and its status written from
//! what the controller knows: `Valid`, `Exhausted`, per-range use, observedGeneration.
//! The per-range gauges come from the same numbers.

use crate::claims::Claims;
use crate::metrics::Metrics;
use crate::shared::{Error, MANAGER};
use crate::stores::Stores;
use crate::waitlist::Waitlist;
use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Resource, ResourceExt};
use std::collections::BTreeSet;
use std::time::Duration;
use tracing::warn;
use weft_api::{condition, Plan, RangeUsage, WeftNetwork, WeftNetworkStatus};

/// How often the status and the gauges are refreshed (written only when they change).
const STATUS_EVERY: Duration = Duration::from_secs(1);

/// Feeds `writer` (the store of `stores`) from a watch on the one WeftNetwork the stores
/// name; a new generation (or the object appearing or going) reconciles every Node again.
pub async fn watch_network(
    api: Api<WeftNetwork>,
    writer: reflector::store::Writer<WeftNetwork>,
    stores: Stores,
    waitlist: Waitlist,
) {
    let name = &*stores.network_name;
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let events = reflector::reflector(writer, watcher(api, config)).default_backoff();
    let mut events = std::pin::pin!(events);
    let mut seen = None;
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::InitDone) => stores.network_listed.mark(),
            Ok(_) => {}
            Err(e) => {
                warn!(network = %name, error = %e, "WeftNetwork watch");
                continue;
            }
        }
        let now = stores.network().map(|n| (n.uid(), n.metadata.generation));
        if seen != Some(now.clone()) {
            seen = Some(now);
            waitlist.retrigger_all();
        }
    }
}

/// What the status writer reads, and where it writes.
pub struct StatusWriter {
    pub api: Api<WeftNetwork>,
    pub stores: Stores,
    pub claims: Claims,
    pub waitlist: Waitlist,
    pub recorder: Recorder,
    pub metrics: Metrics,
}

impl StatusWriter {
    /// Keeps the network's status and the range gauges current while this replica leads.
    pub async fn run(self) {
        self.stores.network_listed.wait().await;
        self.claims.ledger().wait_ready().await;
        let mut labels = BTreeSet::new();
        let mut written: Option<WeftNetworkStatus> = None;
        loop {
            self.publish(&mut labels, &mut written).await;
            tokio::time::sleep(STATUS_EVERY).await;
        }
    }

    /// Refreshes the gauges, and writes the status when it changed.
    async fn publish(
        &self,
        labels: &mut BTreeSet<String>,
        written: &mut Option<WeftNetworkStatus>,
    ) {
        let Some(net) = self.stores.network() else {
            self.gauges(labels, &[]);
            return;
        };
        let before = net.status.clone().unwrap_or_default();
        let status = match self.stores.plan() {
            Ok(plan) => self.valid_status(&net, &plan, &before.conditions),
            Err(e) => {
                self.invalid_status(&net, &e, &before.conditions, written.as_ref())
                    .await
            }
        };
        let in_use: Vec<RangeUsage> = status
            .ipv6_ranges
            .iter()
            .chain(&status.ipv4_network)
            .cloned()
            .collect();
        self.gauges(labels, &in_use);
        let unchanged = |s: &WeftNetworkStatus| {
            s.observed_generation == status.observed_generation
                && s.ipv6_ranges == status.ipv6_ranges
                && s.ipv4_network == status.ipv4_network
                && !weft_api::conditions_differ(&s.conditions, &status.conditions)
                && s.conditions.len() == status.conditions.len()
        };
        if unchanged(&before) || written.as_ref().is_some_and(unchanged) {
            return;
        }
        if self.write(&status).await {
            *written = Some(status);
        }
    }

    /// A valid plan: `Valid`, the use of each range the mode serves, and `Exhausted`.
    fn valid_status(
        &self,
        net: &WeftNetwork,
        plan: &Plan,
        previous: &[Condition],
    ) -> WeftNetworkStatus {
        let summary = format!(
            "mode {}, {} IPv6 range(s), IPv4 network {}",
            plan.mode,
            plan.ipv6_ranges.len(),
            plan.ipv4_network
        );
        let (v6, v4) = self.claims.ledger().usage(plan);
        WeftNetworkStatus {
            observed_generation: net.metadata.generation,
            conditions: vec![
                condition(previous, "Valid", true, "Valid", summary),
                self.exhausted(previous),
            ],
            ipv6_ranges: if plan.mode.has_ipv6() { v6 } else { Vec::new() },
            ipv4_network: plan.mode.has_ipv4().then_some(v4),
        }
    }

    /// A missing or invalid plan: `Valid=False` naming the problems, and an Event when
    /// the network turns invalid (or its problems change).
    async fn invalid_status(
        &self,
        net: &WeftNetwork,
        error: &Error,
        previous: &[Condition],
        written: Option<&WeftNetworkStatus>,
    ) -> WeftNetworkStatus {
        let problems = match error {
            Error::InvalidNetwork { problems, .. } => problems.clone(),
            other => other.to_string(),
        };
        let told = |conditions: &[Condition]| {
            conditions
                .iter()
                .any(|c| c.type_ == "Valid" && c.status == "False" && c.message == problems)
        };
        if !told(previous) && !written.is_some_and(|w| told(&w.conditions)) {
            self.invalid_event(net, &problems).await;
        }
        WeftNetworkStatus {
            observed_generation: net.metadata.generation,
            conditions: vec![condition(previous, "Valid", false, "InvalidSpec", problems)],
            ..WeftNetworkStatus::default()
        }
    }

    /// Server-side applies the status; whether it was written.
    async fn write(&self, status: &WeftNetworkStatus) -> bool {
        let name = &*self.stores.network_name;
        let patch = serde_json::json!({
            "apiVersion": "weft.dev/v1alpha1",
            "kind": "WeftNetwork",
            "metadata": {"name": name},
            "status": status,
        });
        let params = PatchParams::apply(MANAGER).force();
        match self
            .api
            .patch_status(name, &params, &Patch::Apply(&patch))
            .await
        {
            Ok(_) => true,
            Err(e) => {
                warn!(network = %name, error = %e, "cannot write the status");
                false
            }
        }
    }

    /// `Exhausted`: true while some node waits for space, naming a few of them.
    fn exhausted(&self, previous: &[Condition]) -> Condition {
        let waiting: Vec<_> = self
            .waitlist
            .waiting()
            .into_iter()
            .filter(|(_, w)| w.reason == "RangeExhausted")
            .collect();
        if waiting.is_empty() {
            return condition(previous, "Exhausted", false, "SpaceLeft", String::new());
        }
        let examples: Vec<String> = waiting
            .iter()
            .take(3)
            .map(|(node, w)| format!("{node}: {}", w.message))
            .collect();
        let message = format!(
            "{} node(s) wait for address space; {}",
            waiting.len(),
            examples.join("; ")
        );
        condition(previous, "Exhausted", true, "RangeExhausted", message)
    }

    async fn invalid_event(&self, net: &WeftNetwork, problems: &str) {
        let event = Event {
            type_: EventType::Warning,
            reason: "InvalidSpec".into(),
            note: Some(problems.chars().take(1000).collect()),
            action: "Validate".into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &net.object_ref(&())).await {
            warn!(network = %net.name_any(), error = %e, "cannot publish an event");
        }
    }

    /// Sets the per-range gauges, dropping ranges no longer in the plan.
    fn gauges(&self, labels: &mut BTreeSet<String>, usage: &[RangeUsage]) {
        let now: BTreeSet<String> = usage.iter().map(|u| u.range.clone()).collect();
        if now != *labels {
            self.metrics.allocations.reset();
            self.metrics.free_prefixes.reset();
            *labels = now;
        }
        for u in usage {
            #[allow(clippy::cast_precision_loss)]
            {
                self.metrics
                    .allocations
                    .with_label_values(&[&u.range])
                    .set(u.allocated as f64);
                self.metrics
                    .free_prefixes
                    .with_label_values(&[&u.range])
                    .set(u.free as f64);
            }
        }
    }
}
