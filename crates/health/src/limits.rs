//! What one client may hold of the endpoint, and the process's file-descriptor budget.
//!
//! The endpoint listens where pods can reach it (Prometheus scrapes it from other nodes,
//! so it cannot listen on loopback only). A pod that opens thousands of connections and
//! sends nothing must not starve the scraper, the kubelet's probes or weftd itself of
//! file descriptors. So: every connection must send its request head within
//! [`HEADER_READ_TIMEOUT`] (which also closes idle keep-alive connections), lives at
//! most [`CONNECTION_LIFETIME`], each source address holds at most
//! [`MAX_PER_SOURCE`] connections and a listener at most [`MAX_CONNECTIONS`]; the
//! ones over a cap are closed at once, so they never queue in the accept backlog ahead
//! of a scrape.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Time a connection has to send a whole request head, counted from when the server
/// waits for it: a new connection's first request or a kept-alive connection's next.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest life of one connection, whatever it does (a client that never reads its
/// response, a slow trickle).
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// Connections one source address may hold open: a Prometheus, a kubelet's probes and
/// an operator's curl need a handful.
pub const MAX_PER_SOURCE: usize = 16;
/// Connections one listener holds open at most.
pub const MAX_CONNECTIONS: usize = 512;

/// Why a connection was closed at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Its source holds [`MAX_PER_SOURCE`] already.
    SourceFull,
    /// The listener holds [`MAX_CONNECTIONS`] already.
    ListenerFull,
}

/// The open connections of one listener, by source.
#[derive(Debug, Clone)]
pub struct Admission {
    open: Arc<Mutex<Open>>,
    per_source: usize,
    total: usize,
}

#[derive(Debug, Default)]
struct Open {
    by_source: HashMap<IpAddr, usize>,
    total: usize,
}

/// A connection's place; dropping it frees the place.
#[derive(Debug)]
pub struct Admitted {
    open: Arc<Mutex<Open>>,
    source: IpAddr,
}

fn lock(open: &Mutex<Open>) -> MutexGuard<'_, Open> {
    open.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Admission {
    /// Caps of `per_source` connections per source address and `total` in all.
    pub fn new(per_source: usize, total: usize) -> Admission {
        Admission {
            open: Arc::default(),
            per_source,
            total,
        }
    }

    /// A place for a connection from `source`, if the caps allow. An IPv4 client of a
    /// dual-stack listener counts under its IPv4 address, not the mapped IPv6 one.
    pub fn admit(&self, source: IpAddr) -> Result<Admitted, Refusal> {
        let source = source.to_canonical();
        let mut open = lock(&self.open);
        if open.total >= self.total {
            return Err(Refusal::ListenerFull);
        }
        let held = open.by_source.entry(source).or_default();
        if *held >= self.per_source {
            return Err(Refusal::SourceFull);
        }
        *held += 1;
        open.total += 1;
        Ok(Admitted {
            open: self.open.clone(),
            source,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        lock(&self.open).total
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut open = lock(&self.open);
        open.total -= 1;
        if let Some(held) = open.by_source.get_mut(&self.source) {
            *held -= 1;
            if *held == 0 {
                open.by_source.remove(&self.source);
            }
        }
    }
}

/// Raises the soft limit on open files to the hard limit, and logs the outcome: the
/// default soft limit (1024) is what a connection flood exhausts first, the hard one is
/// what the node's administrator allows. Failing leaves the process as it was.
pub fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let raised = getrlimit(Resource::RLIMIT_NOFILE).and_then(|(soft, hard)| {
        if soft < hard {
            setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
        }
        Ok((soft, hard))
    });
    match raised {
        Ok((was, now)) => tracing::info!(was, now, "open file limit raised to the hard limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open file limit"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_source_gets_its_share_and_places_come_back() {
        let admission = Admission::new(2, 3);
        let a: IpAddr = "2001:db8::a".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let mapped_b: IpAddr = "::ffff:192.0.2.2".parse().unwrap();
        let a1 = admission.admit(a).unwrap();
        let a2 = admission.admit(a).unwrap();
        assert_eq!(admission.admit(a).unwrap_err(), Refusal::SourceFull);
        let _b1 = admission.admit(mapped_b).unwrap();
        assert_eq!(admission.admit(b).unwrap_err(), Refusal::ListenerFull);
        drop(a1);
        assert_eq!(admission.open(), 2);
        let _b2 = admission.admit(b).unwrap();
        drop(a2);
        assert_eq!(admission.admit(mapped_b).unwrap_err(), Refusal::SourceFull);
    }
}
