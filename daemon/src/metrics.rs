//! Prometheus metrics. The names are a contract (dashboards and alerts use them):
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `weft_cni_requests_total` | counter | `operation` (add, del, check, status, gc), `result` (ok or the error label) |
//! | `weft_cni_request_duration_seconds` | histogram | `operation`: wall time of the whole plugin run |
//! | `weft_ipam_requests_total` | counter | `operation` (allocate, release, lookup, gc, status), `result` |
//! | `weft_ipam_addresses_in_use` | gauge | `family` |
//! | `weft_ipam_addresses_cooling` | gauge | `family`: released, resting before reuse |
//! | `weft_ipam_addresses_capacity` | gauge | `family`: usable addresses of the node's range |
//! | `weft_ipam_quarantined_records` | gauge | records that did not parse, their addresses held reserved (in `corrupt/`) |
//! | `weft_host_veth_removals_total` | counter | `result` (ok, absent, error) |
//! | `weft_node_info` | gauge (1) | `node`, `mode` |
//! | `weft_peers_known` | gauge | valid peers in the source, this node excluded |
//! | `weft_peers_programmed` | gauge | peers whose kernel state is all in place |
//! | `weft_convergence_duration_seconds` | histogram | `kind` (full, incremental) |
//! | `weft_convergence_errors_total` | counter | entries or steps that failed to converge |
//! | `weft_routes_installed` | gauge | `family`: peer routes weftd has in place |
//! | `weft_datapath_changes_total` | counter | `operation` (upsert, removal): kernel entries weftd changed |
//! | `weft_errors_total` | counter | `error`: failures weftd logged, by kind ([`Error::metric_label`]) |
//! | `weft_peers_outside_plan` | gauge | WeftNodes ignored: their ranges lie outside the WeftNetwork's plan |
//! | `weft_routes_foreign` | gauge | peer routes left to a route weftd did not install (another protocol) |
//! | `weft_identity_restored_total` | counter | times a resync found weftd's fields of its WeftNode changed and re-applied them |
//! | `weft_policy_admission_wait_seconds` | histogram | `outcome` (unisolated, ready, timeout): how long ADD waited for the pod's NetworkPolicy entry |
//! | `weft_policy_pods` | gauge | `state` (unpoliced, policed, pending): local pods by what is known of their policies |
//! | `weft_policy_apply_duration_seconds` | histogram | wall time of NetworkPolicy passes that changed the kernel |
//! | `weft_policy_kernel_changes_total` | counter | NetworkPolicy kernel changes weftd made: `nft` script lines, or elements written over nfnetlink |

use crate::error::Error;
use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};
use weft_health::register;
use weft_ipam::FamilyUsage;

/// Buckets for a plugin run: weft's ADD takes a few milliseconds, the reference
/// plugins tens; the upper buckets catch stalls.
const DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    node: String,
    info: IntGaugeVec,
    pub cni_requests: IntCounterVec,
    pub cni_duration: HistogramVec,
    pub ipam_requests: IntCounterVec,
    in_use: IntGaugeVec,
    cooling: IntGaugeVec,
    capacity: IntGaugeVec,
    quarantined: IntGauge,
    pub veth_removals: IntCounterVec,
    peers_known: IntGauge,
    peers_programmed: IntGauge,
    pub convergence_duration: HistogramVec,
    convergence_errors: IntCounter,
    routes_installed: IntGaugeVec,
    pub datapath_changes: IntCounterVec,
    errors: IntCounterVec,
    pub peers_outside_plan: IntGauge,
    pub routes_foreign: IntGauge,
    pub identity_restored: IntCounter,
    pub policy_admission_wait: HistogramVec,
    pub policy_pods: IntGaugeVec,
    pub policy_apply_duration: prometheus::Histogram,
    pub policy_kernel_changes: IntCounter,
}

/// Buckets for a convergence pass: an incremental change takes well under a
/// millisecond, a full pass over thousands of peers up to seconds.
const CONVERGENCE_BUCKETS: &[f64] = &[
    0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

fn histogram(
    registry: &Registry,
    name: &str,
    help: &str,
    buckets: &[f64],
    labels: &[&str],
) -> Result<HistogramVec, prometheus::Error> {
    let metric = HistogramVec::new(
        HistogramOpts::new(name, help).buckets(buckets.to_vec()),
        labels,
    )?;
    register(registry, metric)
}

fn counter(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntCounterVec, prometheus::Error> {
    register(registry, IntCounterVec::new(Opts::new(name, help), labels)?)
}

fn gauge(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntGaugeVec, prometheus::Error> {
    register(registry, IntGaugeVec::new(Opts::new(name, help), labels)?)
}

impl Metrics {
    pub fn new(node: &str) -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let cni_duration = histogram(
            &registry,
            "weft_cni_request_duration_seconds",
            "Wall time of CNI plugin runs.",
            DURATION_BUCKETS,
            &["operation"],
        )?;
        let info = gauge(
            &registry,
            "weft_node_info",
            "This node's name and mode.",
            &["node", "mode"],
        )?;
        let metrics = Metrics {
            node: node.to_owned(),
            info,
            cni_requests: counter(
                &registry,
                "weft_cni_requests_total",
                "CNI plugin runs by operation and result.",
                &["operation", "result"],
            )?,
            cni_duration,
            ipam_requests: counter(
                &registry,
                "weft_ipam_requests_total",
                "Requests weftd answered, by operation and result.",
                &["operation", "result"],
            )?,
            in_use: gauge(
                &registry,
                "weft_ipam_addresses_in_use",
                "Pod addresses allocated.",
                &["family"],
            )?,
            cooling: gauge(
                &registry,
                "weft_ipam_addresses_cooling",
                "Released addresses resting before reuse.",
                &["family"],
            )?,
            capacity: gauge(
                &registry,
                "weft_ipam_addresses_capacity",
                "Usable pod addresses in the node's range.",
                &["family"],
            )?,
            quarantined: register(
                &registry,
                IntGauge::new(
                    "weft_ipam_quarantined_records",
                    "State records that did not parse; their addresses stay reserved until the attachment's DEL or a reboot.",
                )?,
            )?,
            veth_removals: counter(
                &registry,
                "weft_host_veth_removals_total",
                "Host veths removed in the background.",
                &["result"],
            )?,
            peers_known: register(
                &registry,
                IntGauge::new(
                    "weft_peers_known",
                    "Valid peers in the peer source, this node excluded.",
                )?,
            )?,
            peers_programmed: register(
                &registry,
                IntGauge::new(
                    "weft_peers_programmed",
                    "Peers whose routes, neighbour and FDB entries are all in place.",
                )?,
            )?,
            convergence_duration: histogram(
                &registry,
                "weft_convergence_duration_seconds",
                "Wall time of datapath convergence passes.",
                CONVERGENCE_BUCKETS,
                &["kind"],
            )?,
            convergence_errors: register(
                &registry,
                IntCounter::new(
                    "weft_convergence_errors_total",
                    "Datapath entries or steps that failed to converge.",
                )?,
            )?,
            routes_installed: gauge(
                &registry,
                "weft_routes_installed",
                "Peer routes weftd has in place.",
                &["family"],
            )?,
            datapath_changes: counter(
                &registry,
                "weft_datapath_changes_total",
                "Kernel entries (routes, neighbours, FDB entries) weftd added, replaced or removed.",
                &["operation"],
            )?,
            errors: counter(
                &registry,
                "weft_errors_total",
                "Failures weftd logged, by kind.",
                &["error"],
            )?,
            peers_outside_plan: register(
                &registry,
                IntGauge::new(
                    "weft_peers_outside_plan",
                    "WeftNodes ignored as peers: their ranges lie outside the WeftNetwork's plan.",
                )?,
            )?,
            routes_foreign: register(
                &registry,
                IntGauge::new(
                    "weft_routes_foreign",
                    "Peer routes not programmed: a route weftd did not install holds the destination.",
                )?,
            )?,
            identity_restored: register(
                &registry,
                IntCounter::new(
                    "weft_identity_restored_total",
                    "Resyncs that found weftd's fields of its WeftNode changed and re-applied them.",
                )?,
            )?,
            policy_admission_wait: histogram(
                &registry,
                "weft_policy_admission_wait_seconds",
                "How long ADD waited for the pod's NetworkPolicy entry, by outcome.",
                CONVERGENCE_BUCKETS,
                &["outcome"],
            )?,
            policy_pods: gauge(
                &registry,
                "weft_policy_pods",
                "Local pods by what is known of their NetworkPolicies.",
                &["state"],
            )?,
            policy_apply_duration: register(
                &registry,
                prometheus::Histogram::with_opts(
                    HistogramOpts::new(
                        "weft_policy_apply_duration_seconds",
                        "Wall time of NetworkPolicy passes that changed the kernel.",
                    )
                    .buckets(CONVERGENCE_BUCKETS.to_vec()),
                )?,
            )?,
            policy_kernel_changes: register(
                &registry,
                IntCounter::new(
                    "weft_policy_kernel_changes_total",
                    "NetworkPolicy kernel changes weftd made: nft script lines, or elements over nfnetlink.",
                )?,
            )?,
            registry,
        };
        // Exported from the start, so a zero is visible before the first change.
        for operation in ["upsert", "removal"] {
            metrics.datapath_changes.with_label_values(&[operation]);
        }
        Ok(metrics)
    }

    /// Records that did not parse and hold their addresses (see weft-ipam's store).
    pub fn set_quarantined(&self, records: usize) {
        self.quarantined
            .set(i64::try_from(records).unwrap_or(i64::MAX));
    }

    pub fn set_usage(&self, usage: &[FamilyUsage]) {
        for u in usage {
            let family = [u.family.as_str()];
            self.in_use.with_label_values(&family).set(u.in_use as i64);
            self.cooling
                .with_label_values(&family)
                .set(u.cooling as i64);
            self.capacity
                .with_label_values(&family)
                .set(i64::try_from(u.capacity).unwrap_or(i64::MAX));
        }
    }

    /// Sets `weft_node_info` once the node's mode is known.
    pub fn set_mode(&self, mode: weft_wire::Mode) {
        self.info.reset();
        self.info
            .with_label_values(&[self.node.as_str(), &mode.to_string()])
            .set(1);
    }

    /// The datapath's state after a convergence pass.
    pub fn set_datapath(
        &self,
        known: usize,
        programmed: usize,
        ipv4_routes: usize,
        ipv6_routes: usize,
    ) {
        let as_i64 = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.peers_known.set(as_i64(known));
        self.peers_programmed.set(as_i64(programmed));
        self.routes_installed
            .with_label_values(&["ipv4"])
            .set(as_i64(ipv4_routes));
        self.routes_installed
            .with_label_values(&["ipv6"])
            .set(as_i64(ipv6_routes));
    }

    /// Counts a failure in `weft_errors_total`.
    pub fn error(&self, error: &Error) {
        self.errors.with_label_values(&[error.metric_label()]).inc();
    }

    /// Counts a datapath or firewall step that failed to converge, in
    /// `weft_convergence_errors_total` and `weft_errors_total`.
    pub fn convergence_error(&self, error: &Error) {
        self.convergence_errors.inc();
        self.error(error);
    }

    /// The registry every metric is in, for `/metrics`.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}
