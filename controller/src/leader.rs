//! Leader election on a coordination.k8s.io/v1 Lease: only the holder reconciles.
//!
//! Why a module of our own: kube-runtime has no leader election (kube-rs issue #485), and
//! the crates that add it (kube-leader-election, kubert) bring more than these ~200 lines
//! of client-go's algorithm (k8s.io/client-go/tools/leaderelection), which this follows:
//!
//! - A candidate reads the Lease. It takes it when nobody holds it, or when the record
//!   (holder, renew time, transitions) has not changed for `leaseDurationSeconds` *as
//!   measured by the candidate's own monotonic clock since it first saw that record*, so
//!   clock skew between replicas does not matter.
//! - Every write is an update carrying the resourceVersion read: of two candidates, the
//!   apiserver lets one win (optimistic concurrency); the other gets a conflict.
//! - The holder renews every `retry_period`. If it has not renewed for `renew_deadline`
//!   (shorter than the lease duration), it steps down before anyone else can take over.
//!
//! With 10 s / 7 s / 2 s, a killed leader is replaced within about 12 s; a leader that
//! exits cleanly hands the Lease back, and a standby takes it within `retry_period`.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// Lease timing.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// How long a record stays valid without renewal.
    pub lease_duration: Duration,
    /// How long the holder keeps leading without a successful renewal.
    pub renew_deadline: Duration,
    /// Pause between attempts (candidates) and renewals (the holder).
    pub retry_period: Duration,
}

/// Failover within 15 s: lease 10 s, renew deadline 7 s, retry every 2 s.
pub const TIMING: Timing = Timing {
    lease_duration: Duration::from_secs(10),
    renew_deadline: Duration::from_secs(7),
    retry_period: Duration::from_secs(2),
};

/// The part of a Lease record whose change proves its holder alive.
#[derive(Debug, Clone, PartialEq)]
struct Record {
    holder: Option<String>,
    renew: Option<Timestamp>,
    transitions: Option<i32>,
    duration: Option<i32>,
}

impl Record {
    fn of(spec: &LeaseSpec) -> Record {
        Record {
            holder: spec.holder_identity.clone().filter(|h| !h.is_empty()),
            renew: spec.renew_time.as_ref().map(|t| t.0),
            transitions: spec.lease_transitions,
            duration: spec.lease_duration_seconds,
        }
    }
}

/// Whether another replica holds the record: it names a holder other than `me` and has
/// not been seen unchanged for its lease duration.
fn held_by_other(
    record: &Record,
    me: &str,
    unchanged_since: Instant,
    now: Instant,
    default_duration: Duration,
) -> bool {
    let duration = record
        .duration
        .and_then(|s| u64::try_from(s).ok())
        .map_or(default_duration, Duration::from_secs);
    match &record.holder {
        None => false,
        Some(h) if h == me => false,
        Some(_) => now.saturating_duration_since(unchanged_since) < duration,
    }
}

/// One replica's side of the election.
#[derive(Debug)]
pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    timing: Timing,
    observed: Option<(Record, Instant)>,
}

impl Elector {
    pub fn new(client: Client, namespace: &str, name: &str, identity: &str) -> Elector {
        Elector {
            api: Api::namespaced(client, namespace),
            name: name.to_owned(),
            identity: identity.to_owned(),
            timing: TIMING,
            observed: None,
        }
    }

    /// Returns once this replica holds the Lease. `reachable` is told whether each
    /// attempt reached the apiserver (for /readyz).
    pub async fn acquire(&mut self, reachable: &dyn Fn(bool)) {
        loop {
            match self.attempt().await {
                Ok(true) => {
                    reachable(true);
                    info!(lease = %self.name, identity = %self.identity, "leading");
                    return;
                }
                Ok(false) => reachable(true),
                Err(e) => {
                    reachable(false);
                    warn!(lease = %self.name, error = %e, "lease: cannot reach the apiserver");
                }
            }
            tokio::time::sleep(self.timing.retry_period).await;
        }
    }

    /// Renews the Lease until that fails for the renew deadline or another replica holds
    /// it; then returns (this replica must stop leading at once).
    pub async fn hold(&mut self) {
        let mut renewed = Instant::now();
        loop {
            tokio::time::sleep(self.timing.retry_period).await;
            let left = self.timing.renew_deadline.saturating_sub(renewed.elapsed());
            match tokio::time::timeout(left, self.attempt()).await {
                Ok(Ok(true)) => renewed = Instant::now(),
                Ok(Ok(false)) => {
                    warn!(lease = %self.name, "another replica holds the lease");
                    return;
                }
                Ok(Err(e)) => warn!(lease = %self.name, error = %e, "lease renewal failed"),
                Err(_) => warn!(lease = %self.name, "lease renewal timed out"),
            }
            if renewed.elapsed() >= self.timing.renew_deadline {
                warn!(lease = %self.name, "no renewal within the renew deadline");
                return;
            }
        }
    }

    /// Hands the Lease back (on shutdown), so a standby takes over at its next attempt.
    pub async fn release(&mut self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await else {
            return;
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => info!(lease = %self.name, "lease released"),
            Err(e) => warn!(lease = %self.name, error = %e, "cannot release the lease"),
        }
    }

    /// One round: take or renew the Lease if this replica may. Ok(true) means it holds it
    /// now; a lost race (conflict, already exists) is Ok(false).
    async fn attempt(&mut self) -> Result<bool, kube::Error> {
        let now = MicroTime(Timestamp::now());
        let seconds = i32::try_from(self.timing.lease_duration.as_secs()).unwrap_or(i32::MAX);
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(seconds),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return self.settle(self.api.create(&PostParams::default(), &lease).await);
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let record = Record::of(spec);
        let unchanged_since = match &self.observed {
            Some((seen, at)) if *seen == record => *at,
            _ => {
                let at = Instant::now();
                self.observed = Some((record.clone(), at));
                at
            }
        };
        if held_by_other(
            &record,
            &self.identity,
            unchanged_since,
            Instant::now(),
            self.timing.lease_duration,
        ) {
            return Ok(false);
        }
        if record.holder.as_deref() != Some(self.identity.as_str()) {
            spec.holder_identity = Some(self.identity.clone());
            spec.acquire_time = Some(now.clone());
            // Read from the apiserver, so any i32: at i32::MAX it stays there rather
            // than overflowing (a panic in a debug build, a negative count otherwise).
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
        }
        spec.lease_duration_seconds = Some(seconds);
        spec.renew_time = Some(now);
        // `lease` carries the resourceVersion read above: a concurrent writer wins or we do.
        let written = self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await;
        self.settle(written)
    }

    fn settle(&mut self, written: Result<Lease, kube::Error>) -> Result<bool, kube::Error> {
        match written {
            Ok(lease) => {
                if let Some(spec) = &lease.spec {
                    self.observed = Some((Record::of(spec), Instant::now()));
                }
                Ok(true)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(holder: Option<&str>, duration: Option<i32>) -> Record {
        Record {
            holder: holder.map(str::to_owned),
            renew: None,
            transitions: Some(3),
            duration,
        }
    }

    #[test]
    fn a_record_expires_by_the_observers_clock() {
        let t0 = Instant::now();
        let d = Duration::from_secs(10);
        let other = record(Some("b"), Some(10));
        assert!(held_by_other(&other, "a", t0, t0, d));
        assert!(held_by_other(
            &other,
            "a",
            t0,
            t0 + Duration::from_secs(9),
            d
        ));
        assert!(!held_by_other(
            &other,
            "a",
            t0,
            t0 + Duration::from_secs(10),
            d
        ));
        // The record's own duration wins over ours; without one, ours applies.
        let short = record(Some("b"), Some(1));
        assert!(!held_by_other(
            &short,
            "a",
            t0,
            t0 + Duration::from_secs(2),
            d
        ));
        let unset = record(Some("b"), None);
        assert!(held_by_other(
            &unset,
            "a",
            t0,
            t0 + Duration::from_secs(9),
            d
        ));
        // Our own record, or nobody's, is ours to take.
        assert!(!held_by_other(&record(Some("a"), Some(10)), "a", t0, t0, d));
        assert!(!held_by_other(&record(None, Some(10)), "a", t0, t0, d));
    }

    #[test]
    fn an_empty_holder_is_nobody() {
        let spec = LeaseSpec {
            holder_identity: Some(String::new()),
            ..LeaseSpec::default()
        };
        assert_eq!(Record::of(&spec).holder, None);
    }

    #[test]
    fn the_timing_fails_over_within_15_seconds() {
        let t = TIMING;
        assert!(t.renew_deadline < t.lease_duration);
        assert!(t.lease_duration + t.retry_period <= Duration::from_secs(15));
    }
}
