//! Per-interface kernel settings through /proc/sys, which always shows the calling
//! thread's network namespace (enter one with [`crate::Netns::enter`] first).
//!
//! The free functions read and write `/proc/sys` itself (the plugin's path: no extra
//! work per call). [`Root`] does the same under another directory, for a daemon in a
//! container whose own `/proc/sys` is read-only and which is given the node's
//! `/proc/sys/net` mounted elsewhere.

use crate::NetlinkError;
use std::path::{Path, PathBuf};

/// Where the kernel shows its settings.
pub const PROC_SYS: &str = "/proc/sys";

/// Dotted keys become paths; slashed keys are taken as they are (interface names may
/// contain dots).
fn path(root: &Path, key: &str) -> PathBuf {
    match key.contains('/') {
        true => root.join(key),
        false => root.join(key.replace('.', "/")),
    }
}

fn set_under(root: &Path, key: &str, value: &str) -> Result<(), NetlinkError> {
    let p = path(root, key);
    // Write-only open: /proc/sys entries exist already, creating or truncating is moot.
    let written = std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .and_then(|mut f| std::io::Write::write_all(&mut f, value.as_bytes()));
    written.map_err(|e| NetlinkError::io(format!("set {} to {value}", p.display()), e))
}

fn ensure_under(root: &Path, key: &str, value: &str) -> Result<(), NetlinkError> {
    match get_under(root, key) {
        Ok(current) if current == value => Ok(()),
        _ => set_under(root, key, value),
    }
}

fn get_under(root: &Path, key: &str) -> Result<String, NetlinkError> {
    let p = path(root, key);
    std::fs::read_to_string(&p)
        .map(|s| s.trim().to_owned())
        .map_err(|e| NetlinkError::io(format!("read {}", p.display()), e))
}

/// Sets `key` (dotted or slashed, e.g. `net.ipv6.conf.eth0.accept_dad`) to `value`.
/// Interface names may contain dots, so pass such keys with slashes.
pub fn set(key: &str, value: &str) -> Result<(), NetlinkError> {
    set_under(Path::new(PROC_SYS), key, value)
}

/// Sets `key` only if it holds another value. Some settings (`forwarding`) take the
/// kernel's RTNL lock with a trylock-and-restart loop, which spins while other pods are
/// being wired; an interface that inherited the right value needs no write at all.
pub fn ensure(key: &str, value: &str) -> Result<(), NetlinkError> {
    ensure_under(Path::new(PROC_SYS), key, value)
}

/// Reads `key`, trimmed.
pub fn get(key: &str) -> Result<String, NetlinkError> {
    get_under(Path::new(PROC_SYS), key)
}

/// The per-interface key `net/<family>/conf/<ifname>/<setting>`, slashed so dots in
/// interface names stay intact.
pub fn iface_key(family: &str, ifname: &str, setting: &str) -> String {
    format!("net/{family}/conf/{ifname}/{setting}")
}

/// Whether the kernel has IPv6 at all (a kernel-wide fact, so checked once).
pub fn ipv6_available() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| Root::proc_sys().ipv6_available())
}

/// A sysctl tree: `/proc/sys`, or the node's `/proc/sys` (or its `net/` part) mounted
/// at another directory. Keys are the same as for the free functions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root(PathBuf);

impl Root {
    /// The tree under `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Root {
        Root(dir.into())
    }

    /// `/proc/sys` itself.
    pub fn proc_sys() -> Root {
        Root::new(PROC_SYS)
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.0
    }

    /// [`set`] under this root.
    pub fn set(&self, key: &str, value: &str) -> Result<(), NetlinkError> {
        set_under(&self.0, key, value)
    }

    /// [`ensure`] under this root.
    pub fn ensure(&self, key: &str, value: &str) -> Result<(), NetlinkError> {
        ensure_under(&self.0, key, value)
    }

    /// [`get`] under this root.
    pub fn get(&self, key: &str) -> Result<String, NetlinkError> {
        get_under(&self.0, key)
    }

    /// Whether this tree shows IPv6 settings (the kernel has IPv6), read each time.
    pub fn ipv6_available(&self) -> bool {
        self.0.join("net/ipv6").exists()
    }

    /// The interfaces listed under `net/<family>/conf`, without `all` and `default`.
    pub fn interfaces(&self, family: &str) -> Result<Vec<String>, NetlinkError> {
        let dir = self.0.join(format!("net/{family}/conf"));
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| NetlinkError::io(format!("list {}", dir.display()), e))?;
        Ok(entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| name != "all" && name != "default")
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_resolve_under_the_root() {
        let root = Path::new("/host/proc/sys");
        assert_eq!(
            path(root, "net.ipv4.ip_forward"),
            Path::new("/host/proc/sys/net/ipv4/ip_forward")
        );
        // Slashed keys keep the dots of interface names.
        assert_eq!(
            path(root, &iface_key("ipv6", "eth0.100", "accept_ra")),
            Path::new("/host/proc/sys/net/ipv6/conf/eth0.100/accept_ra")
        );
    }

    #[test]
    fn a_root_reads_and_writes_its_own_tree() {
        let dir = std::env::temp_dir().join(format!("weft-sysctl-root-{}", std::process::id()));
        let conf = dir.join("net/ipv6/conf");
        for ifname in ["all", "default", "eth0"] {
            std::fs::create_dir_all(conf.join(ifname)).unwrap();
            std::fs::write(conf.join(ifname).join("forwarding"), "0\n").unwrap();
        }
        let root = Root::new(&dir);
        assert!(root.ipv6_available());
        assert_eq!(root.interfaces("ipv6").unwrap(), vec!["eth0".to_owned()]);
        assert_eq!(root.get("net/ipv6/conf/all/forwarding").unwrap(), "0");
        root.ensure("net/ipv6/conf/all/forwarding", "1").unwrap();
        assert_eq!(root.get("net.ipv6.conf.all.forwarding").unwrap(), "1");
        let missing = root.set("net.ipv4.ip_forward", "1").unwrap_err();
        assert!(
            missing.to_string().contains(&dir.display().to_string()),
            "{missing}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
