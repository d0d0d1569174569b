//! One row: N watches open on the apiserver or on the relay, a burst of creates (to
//! the apiserver), and what it cost the apiserver and the relay and what the watchers
//! received; then the row's objects are deleted (untimed).

use crate::api::get_text;
use crate::burst::{create_all, delete_row, Write};
use crate::objects::{slice, Resource, Rng};
use crate::relay::{Process, Via};
use crate::site::{sample, Cost};
use crate::watchers::Pool;
use crate::Args;
use kube::Client;
use std::time::{Duration, Instant};
use weft_e2e::stop_requested;

/// Quiet time after opening watches, before the idle sample.
const OPEN_SETTLE: Duration = Duration::from_secs(3);
/// The idle sample: the servers' CPU with N watches and no writes.
const IDLE: Duration = Duration::from_secs(5);
/// After the last expected event, before the CPU is read: the apiserver's goroutines for
/// watchers the events did not match finish their share.
const DELIVERY_SETTLE: Duration = Duration::from_secs(1);
/// How long the watchers get to receive every expected event after the last write.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(120);

/// What one row measured.
#[derive(Debug, Clone)]
pub(crate) struct RowResult {
    pub(crate) round: usize,
    pub(crate) via: Via,
    pub(crate) watches: usize,
    /// Watches their server counts open (`apiserver_longrunning_requests`, WATCH, or
    /// `weft_relay_watches`).
    pub(crate) watches_served: f64,
    pub(crate) writes: Vec<Write>,
    /// Apiserver, relay (its rows only) and etcd over the window (first create → every
    /// event received + settle), and idle.
    pub(crate) apiserver: Cost,
    pub(crate) relay: Option<Cost>,
    pub(crate) etcd_cpu: f64,
    /// This process (the watchers and writers) over the window: it shares the cores.
    pub(crate) bench_cpu: f64,
    pub(crate) window: Duration,
    pub(crate) expected: usize,
    pub(crate) delivered: usize,
    /// Write response → event at a matching watcher, milliseconds (negative: the event
    /// came first).
    pub(crate) event_latency_ms: Vec<f64>,
    /// Bytes each watch received in the window.
    pub(crate) bytes: Vec<u64>,
    /// Streams the apiserver closed in the window, and watchers it terminated
    /// (`apiserver_terminated_watchers_total`).
    pub(crate) closed: u64,
    pub(crate) terminated: f64,
}

/// Everything a row needs besides its own numbers.
pub(crate) struct Bench<'a> {
    pub(crate) args: &'a Args,
    pub(crate) client: Client,
    pub(crate) resource: Resource,
    pub(crate) apiserver_pid: u32,
    pub(crate) etcd_pid: u32,
    /// The span pool when no node is watched (the largest N).
    pub(crate) max_watches: usize,
}

impl Bench<'_> {
    /// Row `ordinal` of `round` with `watches` open in `pool`: on the apiserver, or on
    /// `relay` when given.
    pub(crate) async fn row(
        &self,
        pool: &mut Pool,
        relay: Option<&Process>,
        ordinal: usize,
        round: usize,
        watches: usize,
    ) -> Result<RowResult, String> {
        let path = self.resource.path();
        let opening = Instant::now();
        pool.resize(watches, self.args.open_parallel).await?;
        eprintln!(
            "bench_policy_watch: row {ordinal}: {watches} watches open ({:.1} s)",
            opening.elapsed().as_secs_f64()
        );
        // Apiserver, etcd, this process, the relay.
        let pids: Vec<u32> = [self.apiserver_pid, self.etcd_pid, std::process::id()]
            .into_iter()
            .chain(relay.map(|r| r.pid))
            .collect();
        let sample_all = || pids.iter().map(|&pid| sample(pid)).collect::<Vec<_>>();
        tokio::time::sleep(OPEN_SETTLE).await;
        let idle0 = sample_all();
        tokio::time::sleep(IDLE).await;
        let idle1 = sample_all();
        let (bodies, per_object) = self.bodies(ordinal, watches);
        pool.reset();
        let before = self.metrics().await?;
        let served = match relay {
            Some(relay) => watch_gauge(&relay.metrics().await?, &self.resource.plural, true),
            None => watch_gauge(&before, &self.resource.plural, false),
        };
        let (window0, began) = (sample_all(), Instant::now());
        let writes = create_all(
            &self.client,
            &path,
            bodies,
            self.args.writers,
            self.args.rate,
        )
        .await;
        let failed: Vec<&str> = writes.iter().filter_map(|w| w.error.as_deref()).collect();
        if let Some(first) = failed.first() {
            eprintln!(
                "bench_policy_watch: row {ordinal}: {} of {} creates failed, the first: {first}",
                failed.len(),
                writes.len()
            );
            if failed.len() == writes.len() {
                return Err(format!("every create failed, the first: {first}"));
            }
        }
        let expected = per_object * (writes.len() - failed.len());
        let row = ordinal as u32;
        wait_for(|| pool.received(row).0 >= expected, DELIVERY_TIMEOUT).await;
        tokio::time::sleep(DELIVERY_SETTLE).await;
        let (window1, window) = (sample_all(), began.elapsed());
        let cost = |i: usize| Cost {
            cpu: window1[i].cpu - window0[i].cpu,
            idle_cpu_rate: (idle1[i].cpu - idle0[i].cpu) / IDLE.as_secs_f64(),
            rss_idle_kib: idle1[i].rss_kib,
            rss_kib: window1[i].rss_kib,
        };
        let after = self.metrics().await?;
        if let Some(why) = pool.failure() {
            return Err(why);
        }
        let mut result = RowResult {
            round,
            via: if relay.is_some() {
                Via::Relay
            } else {
                Via::Apiserver
            },
            watches,
            watches_served: served,
            writes,
            apiserver: cost(0),
            relay: relay.map(|_| cost(3)),
            etcd_cpu: cost(1).cpu,
            bench_cpu: cost(2).cpu,
            window,
            expected,
            delivered: 0,
            event_latency_ms: Vec::new(),
            bytes: Vec::new(),
            closed: 0,
            terminated: terminated(&after, &self.resource) - terminated(&before, &self.resource),
        };
        collect(pool, row, &mut result);
        // The row is measured: a failed clean-up leaves objects behind, which later rows
        // neither count nor watch for, so it is reported and the run goes on.
        if let Err(why) = self.clean(pool, ordinal, expected).await {
            eprintln!("bench_policy_watch: row {ordinal}: {why}");
        }
        Ok(result)
    }

    /// The row's objects and how many watchers should receive each: it spans `span`
    /// distinct nodes drawn from the watched ones (every delivery lands), or from the
    /// largest N's nodes when none is watched.
    fn bodies(&self, ordinal: usize, watches: usize) -> (Vec<Vec<u8>>, usize) {
        let nodes = if watches > 0 {
            watches
        } else {
            self.max_watches.max(self.args.span)
        };
        let span = self.args.span.min(nodes);
        let mut rng = Rng::new(0x5eed ^ ordinal as u64);
        let bodies: Vec<Vec<u8>> = (0..self.args.writes)
            .map(|i| {
                let span = rng.distinct(span, nodes);
                let object = slice(
                    &self.resource,
                    ordinal,
                    i,
                    &span,
                    self.args.object_kib * 1024,
                );
                object.to_string().into_bytes()
            })
            .collect();
        (bodies, if watches > 0 { span } else { 0 })
    }

    /// Deletes the row's objects and waits until the watchers have seen the deletes, so
    /// the next row starts quiet.
    async fn clean(&self, pool: &Pool, ordinal: usize, expected: usize) -> Result<(), String> {
        delete_row(&self.client, &self.resource.path(), ordinal).await?;
        let row = ordinal as u32;
        if !wait_for(|| pool.received(row).1 >= expected, DELIVERY_TIMEOUT).await {
            eprintln!("bench_policy_watch: row {ordinal}: the deletes' events did not all arrive");
        }
        Ok(())
    }

    async fn metrics(&self) -> Result<String, String> {
        get_text(&self.client, "/metrics").await
    }
}

/// Polls `done` every 100 ms until it holds (true) or `timeout` passes or a stop signal
/// came (false).
async fn wait_for(mut done: impl FnMut() -> bool, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while !done() {
        if Instant::now() > deadline || stop_requested() {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    true
}

/// Latencies, deliveries, bytes and closures of `row` from every watch's log.
fn collect(pool: &Pool, row: u32, result: &mut RowResult) {
    for log in pool.logs() {
        result
            .bytes
            .push(log.bytes.load(std::sync::atomic::Ordering::Relaxed));
        let closed = log.closed.load(std::sync::atomic::Ordering::Relaxed);
        if closed > 0 && result.closed == 0 {
            eprintln!(
                "bench_policy_watch: a watch stream ended ({})",
                log.last_close.lock().unwrap().as_deref().unwrap_or("?")
            );
        }
        result.closed += closed;
        for arrival in log.arrivals.lock().unwrap().iter() {
            if arrival.row != row || arrival.deleted {
                continue;
            }
            let Some(write) = result.writes.get(arrival.index as usize) else {
                continue;
            };
            result.delivered += 1;
            let ms = if arrival.at >= write.answered {
                (arrival.at - write.answered).as_secs_f64() * 1e3
            } else {
                -(write.answered - arrival.at).as_secs_f64() * 1e3
            };
            result.event_latency_ms.push(ms);
        }
    }
}

/// The sum of a metric's samples whose labels contain every one of `labels`.
fn metric_sum(metrics: &str, name: &str, labels: &[&str]) -> f64 {
    metrics
        .lines()
        .filter_map(|line| line.strip_prefix(name)?.strip_prefix('{'))
        .filter_map(|rest| rest.rsplit_once("} "))
        .filter(|(l, _)| labels.iter().all(|want| l.contains(want)))
        .filter_map(|(_, v)| v.trim().parse::<f64>().ok())
        .sum()
}

/// Watches of `plural` open: on the relay (its /metrics), or on the apiserver.
fn watch_gauge(metrics: &str, plural: &str, relay: bool) -> f64 {
    let resource = format!("resource=\"{plural}\"");
    if relay {
        metric_sum(metrics, "weft_relay_watches", &[&resource])
    } else {
        metric_sum(
            metrics,
            "apiserver_longrunning_requests",
            &["verb=\"WATCH\"", &resource],
        )
    }
}

fn terminated(metrics: &str, resource: &Resource) -> f64 {
    metric_sum(
        metrics,
        "apiserver_terminated_watchers_total",
        &[
            &format!("group=\"{}\"", resource.group),
            &format!("resource=\"{}\"", resource.plural),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::metric_sum;

    #[test]
    fn metric_sum_adds_matching_samples_only() {
        let text = "# HELP x\n\
            apiserver_longrunning_requests{component=\"apiserver\",resource=\"a\",verb=\"WATCH\"} 3\n\
            apiserver_longrunning_requests{component=\"apiserver\",resource=\"a\",verb=\"WATCH\",scope=\"x\"} 2\n\
            apiserver_longrunning_requests{component=\"apiserver\",resource=\"b\",verb=\"WATCH\"} 7\n\
            apiserver_longrunning_requests{component=\"apiserver\",resource=\"a\",verb=\"CONNECT\"} 5\n";
        let sum = metric_sum(
            text,
            "apiserver_longrunning_requests",
            &["verb=\"WATCH\"", "resource=\"a\""],
        );
        assert_eq!(sum, 5.0);
    }
}
