//! What the apiserver and the processes say about a window: CPU, requests by verb and
//! resource, open watches, etcd revisions; and weft-controller's own account.

use crate::site::{Proc, Site};
use crate::watch::Watch;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use weft_e2e::bench::{proc_stat, MachineTicks};

/// Counters read before and after the timed window.
#[derive(Debug, Clone, Default)]
pub(crate) struct Counters {
    /// CPU seconds.
    pub(crate) controller_cpu: f64,
    pub(crate) apiserver_cpu: f64,
    pub(crate) etcd_cpu: f64,
    /// This process (the watch threads) and its watching kubectl processes.
    pub(crate) bench_cpu: f64,
    /// /proc/stat: the whole machine's ticks.
    pub(crate) machine: MachineTicks,
    /// ((verb, resource[/subresource]), failed) -> apiserver requests.
    pub(crate) requests: BTreeMap<(Kind, bool), f64>,
    /// (verb, resource[/subresource]) -> seconds the apiserver spent serving them.
    pub(crate) request_seconds: BTreeMap<Kind, f64>,
    /// resource -> watches open (`apiserver_longrunning_requests`).
    pub(crate) open_watches: BTreeMap<String, f64>,
    pub(crate) revision: u64,
}

pub(crate) fn counters(
    site: &Site,
    controller: Option<&Proc>,
    watches: &[Watch],
) -> Result<Counters, String> {
    let (etcd, apiserver) = site.server_pids();
    let cpu = |pid: u32| proc_stat(pid).map_or(0.0, |s| s.cpu_seconds());
    // The processes first: the kubectl calls below are not part of the window.
    let (controller_cpu, apiserver_cpu, etcd_cpu, machine) = (
        controller.map_or(0.0, |c| cpu(c.pid())),
        cpu(apiserver),
        cpu(etcd),
        MachineTicks::read(),
    );
    let bench_cpu = cpu(std::process::id()) + watches.iter().map(Watch::cpu).sum::<f64>();
    let metrics = site.kubectl(&["get", "--raw", "/metrics"])?;
    let list = site.kubectl(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/configmaps?limit=1",
    ])?;
    let (requests, request_seconds) = requests(&metrics);
    let list: Value = serde_json::from_str(&list).map_err(|e| e.to_string())?;
    let revision = list["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|rv| rv.parse().ok())
        .ok_or("no resourceVersion on a list")?;
    Ok(Counters {
        controller_cpu,
        apiserver_cpu,
        etcd_cpu,
        bench_cpu,
        machine,
        open_watches: open_watches(&metrics),
        requests,
        request_seconds,
        revision,
    })
}

/// Verbs that change objects.
pub(crate) const WRITES: [&str; 6] = [
    "POST",
    "PUT",
    "PATCH",
    "APPLY",
    "DELETE",
    "DELETECOLLECTION",
];

/// Request kind: (verb, resource[/subresource]).
pub(crate) type Kind = (String, String);

/// From the apiserver's /metrics: `apiserver_request_total` summed over the other labels,
/// (kind, failed (code >= 400)) -> requests; and `apiserver_request_duration_seconds_sum`,
/// kind -> seconds spent serving them.
pub(crate) fn requests(metrics: &str) -> (BTreeMap<(Kind, bool), f64>, BTreeMap<Kind, f64>) {
    let (mut counts, mut seconds) = (BTreeMap::new(), BTreeMap::new());
    for line in metrics.lines() {
        let (is_count, rest) = if let Some(r) = line.strip_prefix("apiserver_request_total{") {
            (true, r)
        } else if let Some(r) = line.strip_prefix("apiserver_request_duration_seconds_sum{") {
            (false, r)
        } else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let labels: HashMap<&str, &str> = labels
            .split("\",")
            .filter_map(|kv| kv.split_once("=\""))
            .map(|(k, v)| (k, v.trim_end_matches('"')))
            .collect();
        let label = |k: &str| labels.get(k).copied().unwrap_or_default();
        let mut resource = label("resource").to_owned();
        if !label("subresource").is_empty() {
            resource = format!("{resource}/{}", label("subresource"));
        }
        let kind = (label("verb").to_owned(), resource);
        let value = value.trim().parse::<f64>().unwrap_or(0.0);
        if is_count {
            let failed = label("code").parse::<u16>().is_ok_and(|c| c >= 400);
            *counts.entry((kind, failed)).or_default() += value;
        } else {
            *seconds.entry(kind).or_default() += value;
        }
    }
    (counts, seconds)
}

/// The `apiserver_longrunning_requests` gauge of WATCH, summed per resource.
pub(crate) fn open_watches(metrics: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix("apiserver_longrunning_requests{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        if !labels.contains("verb=\"WATCH\"") {
            continue;
        }
        let resource = labels
            .split("resource=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or_default();
        *out.entry(resource.to_owned()).or_default() += value.trim().parse().unwrap_or(0.0);
    }
    out.retain(|_, n| *n > 0.0);
    out
}

/// weft-controller's own account (its /metrics): reconciles and their errors.
pub(crate) fn weft_reconciles(site: &Site) -> String {
    let (status, body) = site.ns.http_get("[::1]:9642", "/metrics");
    if status != 200 {
        return format!("weft-controller /metrics answered {status}");
    }
    let value = |line: &str| line.rsplit(' ').next()?.parse::<f64>().ok();
    let reconciles = body
        .lines()
        .find(|l| l.starts_with("weft_controller_reconcile_duration_seconds_count"))
        .and_then(value)
        .unwrap_or(0.0);
    let errors: Vec<String> = body
        .lines()
        .filter_map(|l| l.strip_prefix("weft_controller_reconcile_errors_total{error=\""))
        .filter_map(|l| {
            let (label, _) = l.split_once('"')?;
            Some(format!("{label} {}", value(l)?))
        })
        .collect();
    format!(
        "{reconciles} reconciles since start (warm-up included), errors: {}",
        if errors.is_empty() {
            "none".to_owned()
        } else {
            errors.join(", ")
        }
    )
}
