//! Per-interface kernel settings through /proc/sys, which always shows the calling
//! thread's network namespace (enter one with [`crate::Netns::enter`] first).

use crate::NetlinkError;
use std::path::PathBuf;

/// Dotted keys become paths; slashed keys are taken as they are (interface names may
/// contain dots).
fn path(key: &str) -> PathBuf {
    match key.contains('/') {
        true => PathBuf::from("/proc/sys").join(key),
        false => PathBuf::from("/proc/sys").join(key.replace('.', "/")),
    }
}

/// Sets `key` (dotted or slashed, e.g. `net.ipv6.conf.eth0.accept_dad`) to `value`.
/// Interface names may contain dots, so pass such keys with slashes.
pub fn set(key: &str, value: &str) -> Result<(), NetlinkError> {
    let p = path(key);
    // Write-only open: /proc/sys entries exist already, creating or truncating is moot.
    let written = std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .and_then(|mut f| std::io::Write::write_all(&mut f, value.as_bytes()));
    written.map_err(|e| NetlinkError::io(format!("set {} to {value}", p.display()), e))
}

/// Sets `key` only if it holds another value. Some settings (`forwarding`) take the
/// kernel's RTNL lock with a trylock-and-restart loop, which spins while other pods are
/// being wired; an interface that inherited the right value needs no write at all.
pub fn ensure(key: &str, value: &str) -> Result<(), NetlinkError> {
    match get(key) {
        Ok(current) if current == value => Ok(()),
        _ => set(key, value),
    }
}

/// Reads `key`, trimmed.
pub fn get(key: &str) -> Result<String, NetlinkError> {
    let p = path(key);
    std::fs::read_to_string(&p)
        .map(|s| s.trim().to_owned())
        .map_err(|e| NetlinkError::io(format!("read {}", p.display()), e))
}

/// The per-interface key `net/<family>/conf/<ifname>/<setting>`, slashed so dots in
/// interface names stay intact.
pub fn iface_key(family: &str, ifname: &str, setting: &str) -> String {
    format!("net/{family}/conf/{ifname}/{setting}")
}

/// Whether the kernel has IPv6 at all (a kernel-wide fact, so checked once).
pub fn ipv6_available() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| std::path::Path::new("/proc/sys/net/ipv6").exists())
}
