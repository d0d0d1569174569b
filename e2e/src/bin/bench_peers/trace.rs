//! weftd's netlink traffic for one peer change, counted under strace: the O(1)
//! evidence on weftd's side, beside what a dump of the same state costs.

use crate::cluster::Peer;
use crate::weft::weft_change;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use weft_e2e::{unique_name, Netns, Node};

/// Netlink syscalls and the bytes they moved.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct NetlinkIo {
    syscalls: usize,
    sent: u64,
    received: u64,
}

impl NetlinkIo {
    pub(crate) fn bytes(&self) -> u64 {
        self.sent + self.received
    }
}

impl std::fmt::Display for NetlinkIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} syscalls, {} B sent, {} B received",
            self.syscalls, self.sent, self.received
        )
    }
}

/// The netlink traffic of one traced change.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Traced {
    /// weftd's own threads (rtnetlink).
    pub(crate) own: NetlinkIo,
    /// Its child processes (`nft`, nfnetlink).
    pub(crate) children: NetlinkIo,
    /// Bytes a dump of the node's routes, neighbours and FDB receives (what a full
    /// resync reads at least once).
    pub(crate) dump_bytes: u64,
}

/// One more change with weftd under `strace`: its netlink syscalls and bytes.
pub(crate) fn traced_change(
    node: &mut Node,
    peers_file: &Path,
    current: &mut [Peer],
    k: u32,
) -> Result<Traced, String> {
    let pid = node.weftd_pid().ok_or("weftd is not running")?;
    let out = std::env::temp_dir().join(format!("weft-bench-{}.strace", unique_name("st")));
    // weftd's threads; any other pid in the trace is a child it ran (nft).
    let own: BTreeSet<u32> = std::fs::read_dir(format!("/proc/{}/task", pid))
        .map_err(|e| format!("weftd's threads: {e}"))?
        .flatten()
        .filter_map(|t| t.file_name().to_str().and_then(|n| n.parse().ok()))
        .collect();
    let mut strace = Command::new("strace")
        .args(["-f", "-qq", "-yy", "-s", "0", "-e", "signal=none"])
        .args([
            "-e",
            "trace=sendmsg,recvmsg,sendto,recvfrom,sendmmsg,recvmmsg,write,read",
        ])
        .arg("-o")
        .arg(&out)
        .args(["-p", &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("strace: {e}"))?;
    std::thread::sleep(Duration::from_millis(500));
    let sample = weft_change(node, peers_file, current, k);
    std::thread::sleep(Duration::from_millis(300));
    let _ = Command::new("kill")
        .args(["-INT", &strace.id().to_string()])
        .status();
    let _ = strace.wait();
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    let _ = std::fs::remove_file(&out);
    sample?;
    let mut traced = Traced {
        dump_bytes: dump_bytes(&node.netns),
        ..Traced::default()
    };
    for (pid, io) in netlink_io(&text) {
        let side = if own.contains(&pid) {
            &mut traced.own
        } else {
            &mut traced.children
        };
        side.syscalls += 1;
        side.sent += io.sent;
        side.received += io.received;
    }
    Ok(traced)
}

/// Netlink syscalls in `strace -f -yy` output (`-yy` names netlink sockets
/// `NETLINK:`): per syscall, the pid that made it and the bytes it moved.
fn netlink_io(text: &str) -> Vec<(u32, NetlinkIo)> {
    let mut calls = Vec::new();
    for line in text.lines().filter(|l| l.contains("NETLINK")) {
        // "123 call(...", "[pid 123] call(..." or, for a lone process, "call(...".
        let (pid, rest) = match line.strip_prefix("[pid") {
            Some(tail) => tail.split_once(']').unwrap_or(("", tail)),
            None => line.split_once(' ').unwrap_or(("", line)),
        };
        let (pid, rest) = match pid.trim().parse::<u32>() {
            Ok(pid) => (pid, rest.trim_start()),
            Err(_) => (0, line),
        };
        let Some(call) = rest.split('(').next() else {
            continue;
        };
        let bytes: u64 = line
            .rsplit(" = ")
            .next()
            .and_then(|r| r.split_whitespace().next())
            .and_then(|r| r.parse().ok())
            .unwrap_or(0);
        let mut io = NetlinkIo {
            syscalls: 1,
            ..NetlinkIo::default()
        };
        if call.starts_with("send") || call == "write" {
            io.sent = bytes;
        } else {
            io.received = bytes;
        }
        calls.push((pid, io));
    }
    calls
}

/// Bytes that dumping the node's IPv4 and IPv6 routes, neighbours and FDB receives.
fn dump_bytes(ns: &Netns) -> u64 {
    let dumps: [(&str, &[&str]); 4] = [
        ("ip", &["-4", "route", "show"]),
        ("ip", &["-6", "route", "show"]),
        ("ip", &["neigh", "show"]),
        ("bridge", &["fdb", "show"]),
    ];
    let mut total = 0;
    for (program, args) in dumps {
        let out = Command::new("strace")
            .args(["-f", "-qq", "-yy", "-s", "0", "-o", "/dev/stderr"])
            .args(["-e", "trace=recvmsg,recvfrom", program, "-n", ns.name()])
            .args(args)
            .stdout(Stdio::null())
            .output();
        if let Ok(out) = out {
            let text = String::from_utf8_lossy(&out.stderr);
            total += netlink_io(&text)
                .iter()
                .map(|(_, io)| io.received)
                .sum::<u64>();
        }
    }
    total
}
