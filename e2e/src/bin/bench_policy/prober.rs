//! A prober per watched pair: threads inside the client pod's network namespace that
//! open TCP connections to the server pod back to back (a fresh SYN every few ms), each
//! attempt recorded with the instant it started and whether the handshake completed.
//! The flip of a verdict is read from the records afterwards ([`Prober::flip_after`]).

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use weft_e2e::Netns;

/// Threads per prober: a denied attempt lasts [`ATTEMPT_TIMEOUT`], so several threads
/// keep a SYN going out every few ms while the pair is denied.
const THREADS: usize = 5;
/// How long one attempt waits for the handshake. Pod-to-pod RTT here is ~0.1 ms, so a
/// refused attempt is told from a slow one with a wide margin, even on a busy machine.
const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(50);
/// Each thread's pause after an attempt: with [`THREADS`] threads an allowed pair sees
/// an attempt every ~4 ms, a denied one every ~14 ms.
const PAUSE: Duration = Duration::from_millis(20);
/// A flip counts once the new verdict has held this long (longer than an attempt, so an
/// attempt that started before the flip has finished and been recorded).
pub(crate) const STEADY: Duration = Duration::from_millis(200);

/// One attempt: when it started and whether it connected.
type Record = (Instant, bool);

/// A running prober; dropping it stops its threads.
pub(crate) struct Prober {
    records: Arc<Mutex<Vec<Record>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Prober {
    /// Starts probing `target` from inside `client`.
    pub(crate) fn start(client: &Netns, target: SocketAddr) -> Prober {
        let records = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..THREADS)
            .map(|t| {
                let ns = weft_netlink::Netns::open(Path::new(&client.path())).unwrap();
                let (records, stop) = (Arc::clone(&records), Arc::clone(&stop));
                std::thread::spawn(move || {
                    let _inside = ns.enter().unwrap();
                    std::thread::sleep(PAUSE * t as u32 / THREADS as u32);
                    while !stop.load(Ordering::Relaxed) {
                        let started = Instant::now();
                        let ok = TcpStream::connect_timeout(&target, ATTEMPT_TIMEOUT).is_ok();
                        records.lock().unwrap().push((started, ok));
                        std::thread::sleep(PAUSE);
                    }
                })
            })
            .collect();
        Prober {
            records,
            stop,
            threads,
        }
    }

    /// Forgets the records started before `at`.
    pub(crate) fn forget_before(&self, at: Instant) {
        self.records.lock().unwrap().retain(|r| r.0 >= at);
    }

    /// The current verdict: that of the latest `n` attempts when they agree.
    pub(crate) fn verdict(&self, n: usize) -> Option<bool> {
        let mut records = self.records.lock().unwrap().clone();
        records.sort_by_key(|r| r.0);
        let last: Vec<bool> = records.iter().rev().take(n).map(|r| r.1).collect();
        (last.len() == n && last.iter().all(|&v| v == last[0])).then(|| last[0])
    }

    /// When the verdict became `verdict` for good, if it has held for [`STEADY`] by now:
    /// the start of the first attempt with that verdict after the last one without it.
    pub(crate) fn flip_after(&self, verdict: bool) -> Option<Instant> {
        let mut records = self.records.lock().unwrap().clone();
        records.sort_by_key(|r| r.0);
        let last_old = records.iter().rposition(|r| r.1 != verdict);
        let first_new = records.get(last_old.map_or(0, |i| i + 1))?;
        (first_new.0.elapsed() >= STEADY).then_some(first_new.0)
    }

    /// Attempts recorded since the last [`Prober::forget_before`].
    pub(crate) fn attempts(&self) -> usize {
        self.records.lock().unwrap().len()
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}
