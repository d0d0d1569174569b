//! Prometheus metrics. The names are a contract (dashboards and alerts use them):
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `weft_controller_allocations` | gauge | `range`: prefixes (IPv6 ranges) or subnets (the IPv4 network) held by nodes, cooling ones included |
//! | `weft_controller_free_prefixes` | gauge | `range`: prefixes or subnets still free |
//! | `weft_controller_reconcile_duration_seconds` | histogram | wall time of one Node reconcile |
//! | `weft_controller_reconcile_errors_total` | counter | `error`: the error's variant (`shared::Error::metric_label`) |
//! | `weft_controller_leader` | gauge | 1 while this replica holds the Lease |
//! | `weft_controller_exhausted_nodes` | gauge | Nodes waiting for space (or for a valid network) |
//! | `weft_controller_held_conditions` | gauge | Nodes whose good-news conditions wait for allocations to pause (pacing.rs) |
//! | `weft_controller_policy_writes_total` | counter | `kind` (`WeftPolicy`, `WeftAddressGroup`, `WeftNodePolicy`, `WeftPolicyIndex`, and `WeftPolicy/status` for the programmed counts), `result` (`applied`, `deleted`, `failed`): writes of NetworkPolicy objects; identical content is never written |
//! | `weft_controller_policy_objects` | gauge | `kind`: policy objects written and current |
//!
//! The range and policy gauges are written by the leader only; a standby shows none.

use prometheus::{
    GaugeVec, Histogram, HistogramOpts, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};
use weft_health::register;

/// Buckets for a reconcile: a no-op takes microseconds, an allocation a few apiserver
/// round trips (milliseconds), the upper buckets catch a struggling apiserver.
const RECONCILE_BUCKETS: &[f64] = &[
    0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The controller's metrics, cheap to clone.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// `weft_controller_allocations{range}`.
    pub allocations: GaugeVec,
    /// `weft_controller_free_prefixes{range}`.
    pub free_prefixes: GaugeVec,
    /// `weft_controller_reconcile_duration_seconds`.
    pub reconcile_duration: Histogram,
    /// `weft_controller_reconcile_errors_total{error}`.
    pub reconcile_errors: IntCounterVec,
    /// `weft_controller_leader`.
    pub leader: IntGauge,
    /// `weft_controller_exhausted_nodes`.
    pub exhausted_nodes: IntGauge,
    /// `weft_controller_held_conditions`.
    pub held_conditions: IntGauge,
    /// `weft_controller_policy_writes_total{kind, result}`.
    pub policy_writes: IntCounterVec,
    /// `weft_controller_policy_objects{kind}`.
    pub policy_objects: IntGaugeVec,
    /// The relay's open watches, by resource.
    pub relay_watches: IntGaugeVec,
    /// The relay's requests, by resource, verb and HTTP status.
    pub relay_requests: IntCounterVec,
    /// The relay's failures, by error.
    pub relay_errors: IntCounterVec,
    /// Reviews the relay asked of the apiserver, by kind.
    pub relay_reviews: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        // Counts can pass 2^63 (a /48 holds 2^72 /120s), hence float gauges.
        let per_range = |name: &str, help: &str| {
            register(&registry, GaugeVec::new(Opts::new(name, help), &["range"])?)
        };
        Ok(Metrics {
            allocations: per_range(
                "weft_controller_allocations",
                "Prefixes or subnets of the range held by nodes, cooling ones included.",
            )?,
            free_prefixes: per_range(
                "weft_controller_free_prefixes",
                "Prefixes or subnets of the range still free.",
            )?,
            reconcile_duration: register(
                &registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "weft_controller_reconcile_duration_seconds",
                        "Wall time of Node reconciles.",
                    )
                    .buckets(RECONCILE_BUCKETS.to_vec()),
                )?,
            )?,
            reconcile_errors: register(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "weft_controller_reconcile_errors_total",
                        "Failed Node reconciles by error.",
                    ),
                    &["error"],
                )?,
            )?,
            leader: register(
                &registry,
                IntGauge::new(
                    "weft_controller_leader",
                    "1 while this replica holds the leader Lease.",
                )?,
            )?,
            exhausted_nodes: register(
                &registry,
                IntGauge::new(
                    "weft_controller_exhausted_nodes",
                    "Nodes waiting for address space or for a valid network.",
                )?,
            )?,
            held_conditions: register(
                &registry,
                IntGauge::new(
                    "weft_controller_held_conditions",
                    "Nodes whose Allocated=True and PodCIDRs=True conditions wait until allocations pause.",
                )?,
            )?,
            policy_writes: register(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "weft_controller_policy_writes_total",
                        "Writes of NetworkPolicy objects by kind and result (applied, deleted, failed).",
                    ),
                    &["kind", "result"],
                )?,
            )?,
            policy_objects: register(
                &registry,
                IntGaugeVec::new(
                    Opts::new(
                        "weft_controller_policy_objects",
                        "NetworkPolicy objects written and current, by kind.",
                    ),
                    &["kind"],
                )?,
            )?,
            relay_watches: register(
                &registry,
                IntGaugeVec::new(
                    Opts::new(
                        "weft_relay_watches",
                        "Watches open on this replica's policy relay, by resource.",
                    ),
                    &["resource"],
                )?,
            )?,
            relay_requests: register(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "weft_relay_requests_total",
                        "Requests to the policy relay by resource, verb (list, watch) and HTTP status.",
                    ),
                    &["resource", "verb", "code"],
                )?,
            )?,
            relay_errors: register(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "weft_relay_errors_total",
                        "Failures of the policy relay following the apiserver or reviewing clients, by error.",
                    ),
                    &["error"],
                )?,
            )?,
            relay_reviews: register(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "weft_relay_reviews_total",
                        "TokenReviews and SubjectAccessReviews the policy relay asked of the apiserver, by kind.",
                    ),
                    &["review"],
                )?,
            )?,
            registry,
        })
    }

    /// The registry every metric is in, for `/metrics`.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}
