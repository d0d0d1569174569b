//! Probes: one connection (TCP: the server's byte; UDP: the echo) per try, once per
//! target (`probe`) or again and again until told to stop (`probe-loop`).

use super::{Args, Target, Transport};
use nix::sys::socket::{setsockopt, sockopt};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Probes in flight at once unless `--in-flight` says.
const IN_FLIGHT: usize = 16;

/// One probe: true when the server's answer arrives within `timeout`.
fn probe_one(target: &Target, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let remaining = || deadline.saturating_duration_since(Instant::now());
    let answered = match target.transport {
        Transport::Tcp => (|| -> std::io::Result<bool> {
            let mut stream = TcpStream::connect_timeout(&target.addr, timeout)?;
            reset_on_close(&stream)?;
            stream.set_read_timeout(Some(remaining().max(Duration::from_millis(1))))?;
            let mut byte = [0u8; 1];
            Ok(stream.read(&mut byte)? == 1)
        })(),
        Transport::Udp => (|| -> std::io::Result<bool> {
            let local = match target.addr {
                SocketAddr::V4(_) => SocketAddr::from(([0u8; 4], 0)),
                SocketAddr::V6(_) => SocketAddr::from(([0u16; 8], 0)),
            };
            let socket = UdpSocket::bind(local)?;
            socket.connect(target.addr)?;
            socket.send(b"netpol")?;
            socket.set_read_timeout(Some(remaining().max(Duration::from_millis(1))))?;
            let mut buffer = [0u8; 16];
            // A datagram that reached the ephemeral port between bind and connect (a
            // late echo to an earlier socket of that port) stays queued after connect:
            // only the target's own echo counts.
            let (n, from) = socket.recv_from(&mut buffer)?;
            Ok(from == target.addr && n == b"netpol".len())
        })(),
    };
    answered.unwrap_or(false)
}

/// Makes closing `stream` send a reset (SO_LINGER 0) instead of a FIN. After a
/// graceful close either side may be in TIME_WAIT, which answers a FIN sent again
/// (its ACK late behind a stall) with a bare ACK, without the D-SACK block (RFC 2883)
/// an open connection reports a duplicate with; the restart test counts every
/// retransmission not reported as a duplicate as a lost segment.
fn reset_on_close(stream: &TcpStream) -> std::io::Result<()> {
    let linger = nix::libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    setsockopt(stream, sockopt::Linger, &linger).map_err(std::io::Error::from)
}

/// Probes every target, `in_flight` at a time; verdicts in the targets' order.
fn probe_all(targets: &[Target], timeout: Duration, in_flight: usize) -> Vec<bool> {
    let next = AtomicUsize::new(0);
    let verdicts = Mutex::new(vec![false; targets.len()]);
    std::thread::scope(|s| {
        for _ in 0..in_flight.clamp(1, targets.len().max(1)) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(target) = targets.get(i) else {
                    break;
                };
                let ok = probe_one(target, timeout);
                verdicts.lock().unwrap_or_else(|e| e.into_inner())[i] = ok;
            });
        }
    });
    verdicts.into_inner().unwrap_or_else(|e| e.into_inner())
}

/// `probe`: every target once, `TARGET ok|fail` each.
pub fn probe(args: &Args) -> Result<(), String> {
    args.only(&["--timeout-ms", "--in-flight"])?;
    let timeout = Duration::from_millis(args.required("--timeout-ms")?);
    let in_flight = args.optional("--in-flight")?.unwrap_or(IN_FLIGHT);
    let targets = args.targets()?;
    let verdicts = probe_all(&targets, timeout, in_flight);
    let mut out = std::io::stdout().lock();
    for (target, ok) in targets.iter().zip(verdicts) {
        let verdict = if ok { "ok" } else { "fail" };
        writeln!(out, "{} {verdict}", target.text).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// How many times of the rarer outcome a target's line lists.
const TIMES_LISTED: usize = 10;

/// When each try of one target in a loop started (Unix milliseconds), by outcome:
/// `[missed, ok]`. Tries and successes are their lengths.
#[derive(Debug, Default)]
struct Tally(Mutex<[Vec<u128>; 2]>);

impl Tally {
    fn count(&self, started: u128, ok: bool) {
        self.0.lock().unwrap_or_else(|e| e.into_inner())[usize::from(ok)].push(started);
    }

    /// `tries=N ok=M`, then the start times of the rarer outcome's first tries:
    /// `ok_at=T,...` or `missed_at=T,...`, so a surprise can be put on a timeline.
    fn summary(&self) -> String {
        let started = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let [missed, ok] = &*started;
        let (name, times) = if ok.len() <= missed.len() {
            ("ok_at", ok)
        } else {
            ("missed_at", missed)
        };
        let mut times = times.clone();
        times.sort_unstable();
        let listed: Vec<String> = times
            .iter()
            .take(TIMES_LISTED)
            .map(u128::to_string)
            .collect();
        format!(
            "tries={} ok={} {name}={}",
            missed.len() + ok.len(),
            ok.len(),
            listed.join(",")
        )
    }
}

fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// `probe-loop`: a probe of every target every interval, each on a thread of its own so
/// that a probe waiting out its timeout delays no other, until the `--until` file exists;
/// then `TARGET tries=N ok=M ok_at|missed_at=T,...` per target ([`Tally::summary`]).
pub fn probe_loop(args: &Args) -> Result<(), String> {
    args.only(&["--until", "--interval-ms", "--timeout-ms"])?;
    let until = args.until()?;
    let interval = Duration::from_millis(args.required("--interval-ms")?);
    let timeout = Duration::from_millis(args.required("--timeout-ms")?);
    let targets = args.targets()?;
    let tallies: Vec<Tally> = targets.iter().map(|_| Tally::default()).collect();
    super::serve::announce("probing");
    std::thread::scope(|s| {
        let mut next = Instant::now();
        while !until.exists() {
            for (target, tally) in targets.iter().zip(&tallies) {
                s.spawn(move || {
                    let started = unix_ms();
                    tally.count(started, probe_one(target, timeout));
                });
            }
            next += interval;
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
        }
    });
    let mut out = std::io::stdout().lock();
    for (target, tally) in targets.iter().zip(&tallies) {
        writeln!(out, "{} {}", target.text, tally.summary()).map_err(|e| e.to_string())?;
    }
    Ok(())
}
