//! Network namespaces with guards.

use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

/// A short, unique name: `w<pid>x<n><tag>`, unique across parallel tests and processes.
pub fn unique_name(tag: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!(
        "w{}x{}{tag}",
        std::process::id() % 100_000,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A named network namespace (`ip netns add`), deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

fn ip(args: &[&str]) -> Output {
    Command::new("ip")
        .args(args)
        .output()
        .expect("the ip command runs")
}

impl Netns {
    /// Creates a namespace with loopback up.
    pub fn new(tag: &str) -> Netns {
        let name = unique_name(tag);
        let out = ip(&["netns", "add", &name]);
        assert!(
            out.status.success(),
            "ip netns add {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its path, as runtimes pass it in `CNI_NETNS`.
    pub fn path(&self) -> String {
        format!("/var/run/netns/{}", self.name)
    }

    /// Runs a command inside; returns its output whatever the status.
    pub fn run(&self, program: &str, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name, program])
            .args(args)
            .output()
            .expect("ip netns exec runs")
    }

    /// Runs `ip ARGS` inside, asserting success, returning stdout.
    pub fn ip(&self, args: &[&str]) -> String {
        let out = self.run("ip", args);
        assert!(
            out.status.success(),
            "ip {args:?} in {}: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Reads a sysctl inside (slashed or dotted key).
    pub fn sysctl(&self, key: &str) -> String {
        let out = self.run("cat", &[&format!("/proc/sys/{}", key.replace('.', "/"))]);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// One ping (either family) with a 2 s deadline; true when answered.
    pub fn ping(&self, addr: &str) -> bool {
        self.ping_sized(addr, None)
    }

    /// One ping of `size` payload bytes with fragmentation forbidden (`-M do`).
    pub fn ping_sized(&self, addr: &str, size: Option<u32>) -> bool {
        let size = size.map(|s| s.to_string());
        let mut args = vec!["-c", "1", "-W", "2", "-n"];
        if let Some(s) = &size {
            args.extend(["-s", s, "-M", "do"]);
        }
        args.push(addr);
        self.run("ping", &args).status.success()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.name]);
    }
}
