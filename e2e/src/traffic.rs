//! Traffic and waiting for topology tests: the ping matrix, iperf3 runs in namespaces,
//! a polling wait, and the bound on how many topologies live at once.

use crate::topology::{Pod, Topology};
use crate::{unique_name, Netns};
use serde_json::Value;
use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Condvar, Mutex};
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
