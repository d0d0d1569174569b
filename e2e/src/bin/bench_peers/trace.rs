//! weftd's netlink traffic for one peer change, counted under strace: the O(1)
//! evidence on weftd's side, beside what a dump of the same state costs.

use crate::cluster::Peer;
use crate::weft::weft_change;
use std::collections::{BTreeMap, BTreeSet};
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
/// `NETLINK:`): per syscall, the pid that made it and the bytes it moved. A call that
/// another thread's syscall interrupts in the output takes two lines, `call(fd<NETLINK:
/// ...>, ... <unfinished ...>` and `<... call resumed>...) = N`: the socket is on the
/// first, the byte count on the second.
fn netlink_io(text: &str) -> Vec<(u32, NetlinkIo)> {
    let mut calls = Vec::new();
    // Per pid, the netlink call whose line ended unfinished.
    let mut unfinished: BTreeMap<u32, String> = BTreeMap::new();
    for line in text.lines() {
        let (pid, rest) = split_pid(line);
        let call = if rest.starts_with("<... ") {
            match unfinished.remove(&pid) {
                Some(call) => call,
                None => continue,
            }
        } else if line.contains("NETLINK") {
            let call = rest.split('(').next().unwrap_or("").to_owned();
            if line.ends_with("<unfinished ...>") {
                unfinished.insert(pid, call);
                continue;
            }
            call
        } else {
            continue;
        };
        let bytes: u64 = line
            .rsplit_once(" = ")
            .and_then(|(_, result)| result.split_whitespace().next())
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

/// A trace line's pid and the rest: "123 call(...", "[pid 123] call(..." or, for a lone
/// process, "call(..." (pid 0).
fn split_pid(line: &str) -> (u32, &str) {
    let (pid, rest) = match line.strip_prefix("[pid") {
        Some(tail) => tail.split_once(']').unwrap_or(("", tail)),
        None => line.split_once(' ').unwrap_or(("", line)),
    };
    match pid.trim().parse::<u32>() {
        Ok(pid) => (pid, rest.trim_start()),
        Err(_) => (0, line),
    }
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

#[cfg(test)]
mod tests {
    use super::netlink_io;

    /// weftd's four syscalls of one peer change as strace prints them, the first send
    /// interrupted by another thread's syscall: its bytes are on the resumed line, and
    /// the pid that starts the unfinished line is no byte count.
    #[test]
    fn a_call_split_by_another_thread_counts_its_bytes_once() {
        let trace = "\
23273 sendto(14<NETLINK:[2786307]>, ..., 120, 0, NULL, 0 <unfinished ...>
23270 read(9<TCP:[127.0.0.1:9090->127.0.0.1:40000]>, ..., 8192) = 90
23273 <... sendto resumed>) = 120
23273 recvfrom(14<NETLINK:[2786307]>, ..., 65536, 0, NULL, NULL) = 36
23273 sendto(14<NETLINK:[2786307]>, ..., 156, 0, NULL, 0) = 156
23273 recvfrom(14<NETLINK:[2786307]>, ..., 65536, 0, NULL, NULL <unfinished ...>
23270 <... read resumed>) = 0
23273 <... recvfrom resumed>) = 36
";
        let calls = netlink_io(trace);
        assert!(calls.iter().all(|(pid, _)| *pid == 23273), "{calls:?}");
        let sent: u64 = calls.iter().map(|(_, io)| io.sent).sum();
        let received: u64 = calls.iter().map(|(_, io)| io.received).sum();
        assert_eq!((calls.len(), sent, received), (4, 276, 72), "{calls:?}");
    }
}
