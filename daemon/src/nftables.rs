//! The one place weftd touches nftables: IPv4 egress NAT in a table of weft's own.
//!
//! Like Kubernetes' knftables, it drives the `nft` tool with a script on stdin: `nft -f`
//! applies a whole script as one transaction, so the table is replaced atomically and a
//! failed script changes nothing. Rules and the table's shape live here only.
//!
//! ```text
//! table ip weft {
//!   set overlay { type ipv4_addr; flags interval; elements = { <own subnet>, <peer subnets> } }
//!   chain postrouting {
//!     type nat hook postrouting priority srcnat; policy accept;
//!     ip saddr <own subnet> ip daddr != @overlay masquerade
//!   }
//! }
//! ```
//!
//! Pod-to-pod overlay traffic stays un-NATed (its destination is in `overlay`); IPv6 is
//! never NATed (the table is `ip`, IPv4 only). Established flows keep their NAT binding
//! in conntrack across a table replacement.

use ipnet::Ipv4Net;
use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};

/// The table's name (family `ip`).
pub const TABLE: &str = "weft";

/// Replaces weft's table: the egress rule for `subnet` and the overlay set.
pub fn replace_table(subnet: Ipv4Net, overlay: &BTreeSet<Ipv4Net>) -> Result<(), String> {
    let elements = if overlay.is_empty() {
        String::new()
    } else {
        format!("elements = {{ {} }}", join(overlay.iter()))
    };
    // "add" then "delete" makes the delete succeed whether or not the table existed;
    // the whole script is one transaction.
    let script = format!(
        "add table ip {TABLE}\n\
         delete table ip {TABLE}\n\
         table ip {TABLE} {{\n\
         \tset overlay {{ type ipv4_addr; flags interval; {elements} }}\n\
         \tchain postrouting {{\n\
         \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
         \t\tip saddr {subnet} ip daddr != @overlay masquerade\n\
         \t}}\n\
         }}\n"
    );
    run(&script)
}

/// Adds and removes overlay set elements in one transaction: O(change), not O(cluster).
pub fn update_overlay(added: &[Ipv4Net], removed: &[Ipv4Net]) -> Result<(), String> {
    let mut script = String::new();
    if !removed.is_empty() {
        script.push_str(&format!(
            "delete element ip {TABLE} overlay {{ {} }}\n",
            join(removed.iter())
        ));
    }
    if !added.is_empty() {
        script.push_str(&format!(
            "add element ip {TABLE} overlay {{ {} }}\n",
            join(added.iter())
        ));
    }
    if script.is_empty() {
        return Ok(());
    }
    run(&script)
}

fn join<'a>(nets: impl Iterator<Item = &'a Ipv4Net>) -> String {
    nets.map(|n| n.to_string()).collect::<Vec<_>>().join(", ")
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
