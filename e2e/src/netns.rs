//! Network namespaces with guards.

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
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

/// Starts `program` inside the namespace named `netns`, its stdout and stderr appended
/// to `log` (created if need be), stdin closed. `ip netns exec` execs the program, so the
/// child's PID is the program's.
pub fn spawn_logged<S: AsRef<OsStr>>(
    netns: &str,
    program: &Path,
    args: impl IntoIterator<Item = S>,
    log: &Path,
) -> Child {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", log.display()));
    Command::new("ip")
        .args(["netns", "exec", netns])
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()))
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

    /// Adds `cidr` to `dev`; an IPv6 address without DAD, so it is usable at once (the
    /// tests' addresses are unique by construction).
    pub fn add_address(&self, dev: &str, cidr: &str) {
        if cidr.contains(':') {
            self.ip(&["addr", "add", cidr, "dev", dev, "nodad"]);
        } else {
            self.ip(&["addr", "add", cidr, "dev", dev]);
        }
    }

    /// A stub underlay: a veth `uplink` of `mtu` whose peer `uplink-peer` stays in the
    /// namespace, both up, with `cidrs` on `uplink`. It carries no traffic; it gives weftd
    /// an uplink with addresses, an MTU and an underlay family.
    pub fn add_stub_uplink(&self, mtu: u32, cidrs: &[String]) {
        self.add_uplink_veth(mtu, "uplink-peer", None);
        for cidr in cidrs {
            self.add_address("uplink", cidr);
        }
        self.ip(&["link", "set", "uplink", "up"]);
        self.ip(&["link", "set", "uplink-peer", "up"]);
    }

    /// A veth `uplink` of `mtu` whose other end `peer` (same MTU) is moved into the
    /// namespace named `peer_netns`, or stays here.
    pub(crate) fn add_uplink_veth(&self, mtu: u32, peer: &str, peer_netns: Option<&str>) {
        let mtu = mtu.to_string();
        let mut args = vec![
            "link", "add", "name", "uplink", "mtu", &mtu, "type", "veth", "peer", "name", peer,
            "mtu", &mtu,
        ];
        if let Some(ns) = peer_netns {
            args.extend(["netns", ns]);
        }
        self.ip(&args);
    }

    /// Reads a sysctl inside (slashed or dotted key).
    pub fn sysctl(&self, key: &str) -> String {
        let out = self.run("cat", &[&format!("/proc/sys/{}", key.replace('.', "/"))]);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Writes sysctls inside (`key=value` each), asserting success.
    pub fn set_sysctls(&self, settings: &[&str]) {
        for setting in settings {
            let out = self.run("sysctl", &["-qw", setting]);
            assert!(
                out.status.success(),
                "sysctl {setting} in {}: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr)
            );
        }
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

impl Netns {
    /// An HTTP/1.1 GET to `addr` (e.g. `[::1]:9641`) from inside the namespace:
    /// (status, body); status 0 when nothing answers.
    pub fn http_get(&self, addr: &str, path: &str) -> (u16, String) {
        use std::io::{Read, Write};
        let ns = weft_netlink::Netns::open(std::path::Path::new(&self.path())).unwrap();
        let (addr, path) = (addr.to_owned(), path.to_owned());
        std::thread::spawn(move || {
            let _inside = ns.enter().unwrap();
            let Ok(mut stream) = std::net::TcpStream::connect(&addr) else {
                return (0, String::new());
            };
            let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(5)));
            let request =
                format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
            if stream.write_all(request.as_bytes()).is_err() {
                return (0, String::new());
            }
            let mut text = String::new();
            let _ = stream.read_to_string(&mut text);
            let status = text
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let body = text
                .split_once("\r\n\r\n")
                .map(|(_, b)| b.to_owned())
                .unwrap_or_default();
            (status, body)
        })
        .join()
        .unwrap()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.name]);
    }
}
