//! Traffic and waiting for topology tests: the ping matrix, iperf3 runs in namespaces,
//! a polling wait, and the bound on how many topologies live at once.

use crate::topology::{Pod, Topology};
use crate::{unique_name, Netns};
use serde_json::Value;
use std::fs;
use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Polls `done` every 50 ms until it holds; `Err` naming `what` after `timeout`.
pub fn wait_until(
    what: &str,
    timeout: Duration,
    mut done: impl FnMut() -> bool,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    while !done() {
        if Instant::now() >= deadline {
            return Err(format!("timed out after {timeout:?} waiting for {what}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// One ping of the matrix.
#[derive(Debug, Clone)]
pub struct PingOutcome {
    /// Source pod's container ID.
    pub from: String,
    /// Destination pod's container ID.
    pub to: String,
    /// Destination address.
    pub addr: String,
    /// Both pods on one node.
    pub same_node: bool,
    /// Answered.
    pub ok: bool,
}

impl std::fmt::Display for PingOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verdict = if self.ok { "ok" } else { "FAILED" };
        let path = if self.same_node {
            "same node"
        } else {
            "other node"
        };
        write!(
            f,
            "{:<10} -> {:<10} {:<26} {:<10} {verdict}",
            self.from, self.to, self.addr, path
        )
    }
}

impl Topology {
    /// Every pod pings every other pod on each of its addresses, one thread per source
    /// pod (a black-holed ping costs its 2 s deadline; a matrix of them should not add up).
    pub fn ping_matrix(&self) -> Vec<PingOutcome> {
        let row = |from: &Pod| -> Vec<PingOutcome> {
            let mut out = Vec::new();
            for to in self.pods.iter().filter(|p| p.id != from.id) {
                for addr in to.addrs() {
                    out.push(PingOutcome {
                        from: from.id.clone(),
                        to: to.id.clone(),
                        addr: addr.to_owned(),
                        same_node: from.node == to.node,
                        ok: from.ping(addr),
                    });
                }
            }
            out
        };
        std::thread::scope(|s| {
            let rows: Vec<_> = self.pods.iter().map(|p| s.spawn(move || row(p))).collect();
            rows.into_iter().flat_map(|r| r.join().unwrap()).collect()
        })
    }
}

/// A process in a namespace, its stdout kept in a file; killed and cleaned up on drop.
#[derive(Debug)]
pub struct Background {
    child: Option<Child>,
    stdout: PathBuf,
    what: String,
}

impl Background {
    /// Starts `program args` inside `ns`.
    pub fn spawn(ns: &Netns, program: &str, args: &[&str]) -> Background {
        let stdout = std::env::temp_dir().join(format!("weft-out-{}", unique_name("")));
        let file = fs::File::create(&stdout).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", ns.name(), program])
            .args(args)
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        Background {
            child: Some(child),
            stdout,
            what: format!("{program} {args:?} in {}", ns.name()),
        }
    }

    /// Its output so far.
    pub fn output(&self) -> String {
        fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// Waits up to `timeout` for the exit (then kills it): (exited successfully, output).
    pub fn finish(mut self, timeout: Duration) -> (bool, String) {
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let out = fs::read_to_string(&self.stdout).unwrap_or_default();
        (status.is_some_and(|s| s.success()), out)
    }

    /// [`Background::finish`], the output parsed as JSON; panics when it is not.
    pub fn finish_json(self, timeout: Duration) -> Value {
        let what = self.what.clone();
        let (_, out) = self.finish(timeout);
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("{what}: output is not JSON ({e}):\n{out}"))
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = fs::remove_file(&self.stdout);
    }
}

/// `iperf3 -s -1 -J -p port` in `ns` (serves one test, then prints JSON), listening.
pub fn iperf3_server(ns: &Netns, port: u16) -> Background {
    let port = port.to_string();
    let server = Background::spawn(ns, "iperf3", &["-s", "-1", "-J", "-p", &port]);
    let filter = format!("sport = :{port}");
    wait_until("iperf3 to listen", Duration::from_secs(5), || {
        let out = ns.run("ss", &["-Hltn", &filter]);
        !String::from_utf8_lossy(&out.stdout).trim().is_empty()
    })
    .unwrap();
    server
}

/// `iperf3 -c addr -J ARGS` in `ns`, running in the background (`-p` in ARGS for a
/// port other than 5201).
pub fn iperf3_client(ns: &Netns, addr: &str, args: &[&str]) -> Background {
    let mut all = vec!["-c", addr, "-J", "--connect-timeout", "3000"];
    all.extend_from_slice(args);
    Background::spawn(ns, "iperf3", &all)
}

/// The peer address an iperf3 server saw (IPv4-mapped IPv6 shown as plain IPv4).
pub fn iperf3_remote_host(server_json: &Value) -> String {
    let host = server_json["start"]["connected"][0]["remote_host"]
        .as_str()
        .unwrap_or_else(|| panic!("no connection in {server_json}"));
    host.trim_start_matches("::ffff:").to_owned()
}

/// Runs `f` on a fresh thread inside `ns` (setns is per thread).
fn inside<T: Send + 'static>(ns: &Netns, f: impl FnOnce() -> T + Send + 'static) -> JoinHandle<T> {
    let ns = weft_netlink::Netns::open(Path::new(&ns.path())).unwrap();
    std::thread::spawn(move || {
        let _inside = ns.enter().unwrap();
        f()
    })
}

/// Sends `bytes` over one TCP connection from namespace `from` to `addr` (in namespace
/// `to`); `Ok` when the receiver counted every byte. Unlike iperf3's report, which stops
/// counting when the sender says it is done, this counts to the end of the stream; the
/// timeouts turn a black hole (say, an MTU too large for the path) into an error.
pub fn tcp_transfer(from: &Netns, to: &Netns, addr: &str, bytes: u64) -> Result<(), String> {
    const IDLE: Duration = Duration::from_secs(10);
    let (port_tx, port_rx) = mpsc::channel();
    let receiver = inside(to, move || -> std::io::Result<u64> {
        // [::] takes IPv4 too (IPV6_V6ONLY is off by default on Linux).
        let listener = TcpListener::bind("[::]:0")?;
        port_tx.send(listener.local_addr()?.port()).unwrap();
        let (mut stream, _) = listener.accept()?;
        stream.set_read_timeout(Some(IDLE))?;
        let counted = std::io::copy(&mut stream, &mut std::io::sink())?;
        stream.write_all(&counted.to_be_bytes())?;
        Ok(counted)
    });
    let port = port_rx
        .recv_timeout(IDLE)
        .map_err(|_| "the receiver did not listen".to_owned())?;
    let target = SocketAddr::new(addr.parse::<IpAddr>().unwrap(), port);
    let sender = inside(from, move || -> std::io::Result<u64> {
        let mut stream = TcpStream::connect_timeout(&target, IDLE)?;
        stream.set_write_timeout(Some(IDLE))?;
        stream.set_read_timeout(Some(IDLE))?;
        let chunk = vec![0x5a_u8; 64 << 10];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            stream.write_all(&chunk[..n])?;
            left -= n as u64;
        }
        stream.shutdown(Shutdown::Write)?;
        let mut counted = [0u8; 8];
        stream.read_exact(&mut counted)?;
        Ok(u64::from_be_bytes(counted))
    });
    let sent = sender.join().unwrap();
    if sent.is_err() {
        // Unblock a receiver still waiting for a connection that never came.
        let _ = TcpStream::connect_timeout(&SocketAddr::new(target.ip(), port), IDLE);
    }
    let received = receiver.join().unwrap();
    match (sent, received) {
        (Ok(n), Ok(_)) if n == bytes => Ok(()),
        (sent, received) => Err(format!(
            "TCP {bytes} bytes to {target}: sender {sent:?}, receiver {received:?}"
        )),
    }
}

/// Bounds the topologies alive at once (each runs several weftd and many namespaces;
/// the CI machine has 2 cores). `WEFT_E2E_TOPOLOGIES` overrides the default of 2.
#[derive(Debug)]
pub(crate) struct Slot;

static IN_USE: Mutex<usize> = Mutex::new(0);
static FREED: Condvar = Condvar::new();

impl Slot {
    pub(crate) fn acquire() -> Slot {
        let limit: usize = std::env::var("WEFT_E2E_TOPOLOGIES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(2)
            .max(1);
        let mut in_use = IN_USE.lock().unwrap_or_else(|e| e.into_inner());
        while *in_use >= limit {
            in_use = FREED.wait(in_use).unwrap_or_else(|e| e.into_inner());
        }
        *in_use += 1;
        Slot
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        *IN_USE.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        FREED.notify_one();
    }
}
