//! The one place weftd touches nftables: IPv4 egress NAT in a table of weft's own.
//!
//! Like Kubernetes' knftables, it drives the `nft` tool with a script on stdin: `nft -f`
//! applies a whole script as one transaction, so the table is replaced atomically and a
//! failed script changes nothing. Rules and the table's shape live here only.
//!
//! ```text
//! table ip weft {
//!   chain postrouting {
//!     type nat hook postrouting priority srcnat; policy accept;
//!     ip saddr <own subnet> oifname != "weft*" masquerade
//!   }
//!   chain tunnel-in  { type filter hook prerouting priority raw; iifname <uplink> udp dport <port> notrack }
//!   chain tunnel-out { type filter hook output priority raw; udp dport <port> notrack }
//! }
//! ```
//!
//! - Pod traffic leaving through a weft interface (`weft-vxlan` to another node's pods,
//!   a host veth to this node's) is pod-to-pod and never NATed; anything else from the
//!   pods' subnet leaves the overlay and is masqueraded to the node's address. The rule
//!   names no peer, so peer changes never touch nftables: O(1) per change.
//! - The VXLAN packets themselves (the node's own, to and from the tunnel port) need no
//!   connection tracking; `notrack` spares every encapsulated packet a conntrack lookup
//!   and entry. Pods' own flows stay tracked (kube-proxy's Service NAT needs that).
//! - IPv6 is never NATed: the table is `ip`, IPv4 only. Established flows keep their NAT
//!   binding in conntrack across a table replacement.

use ipnet::Ipv4Net;
use std::io::Write;
use std::process::{Command, Stdio};

/// The table's name (family `ip`).
pub const TABLE: &str = "weft";

/// What the table is made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Egress {
    /// The pods' subnet.
    pub subnet: Ipv4Net,
    /// The uplink, where tunnel packets arrive.
    pub uplink: Option<String>,
    /// The VXLAN UDP port.
    pub tunnel_port: u16,
}

/// Replaces weft's table with the one `egress` describes.
pub fn replace_table(egress: &Egress) -> Result<(), String> {
    let Egress {
        subnet,
        uplink,
        tunnel_port,
    } = egress;
    let tunnel_in = match uplink {
        Some(uplink) => format!(
            "\tchain tunnel-in {{\n\
             \t\ttype filter hook prerouting priority raw; policy accept;\n\
             \t\tiifname {uplink:?} udp dport {tunnel_port} notrack\n\
             \t}}\n"
        ),
        None => String::new(),
    };
    // "add" then "delete" makes the delete succeed whether or not the table existed;
    // the whole script is one transaction.
    let script = format!(
        "add table ip {TABLE}\n\
         delete table ip {TABLE}\n\
         table ip {TABLE} {{\n\
         \tchain postrouting {{\n\
         \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
         \t\tip saddr {subnet} oifname != \"weft*\" masquerade\n\
         \t}}\n\
         {tunnel_in}\
         \tchain tunnel-out {{\n\
         \t\ttype filter hook output priority raw; policy accept;\n\
         \t\tudp dport {tunnel_port} notrack\n\
         \t}}\n\
         }}\n"
    );
    run(&script)
}

/// Runs `nft -f -` with `script` on stdin.
fn run(script: &str) -> Result<(), String> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run nft (is the nftables package installed?): {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(|e| format!("writing to nft: {e}"))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|e| format!("waiting for nft: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "nft refused the ruleset ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}
