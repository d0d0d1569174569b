//! The kernel tests' node: a node namespace with pod namespaces on veths named like
//! weft's, echo servers in the pods, and probes of real connections between them.
use super::super::super::super::{Concern, Firewall, GuardSets, Pass};
pub(super) use super::super::super::tables::Written;
use super::super::super::*;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use weft_api::PodPolicies;

/// How long a probe waits: a local veth answers in well under a millisecond.
pub(super) const PROBE_TIMEOUT: Duration = Duration::from_millis(700);
/// The pods' gateway (IPv4 on every host veth, IPv6 link-local).
pub(super) const GATEWAY_V4: &str = "169.254.1.1";
pub(super) const GATEWAY_V6: &str = "fe80::1";
/// A Service address the node DNATs to pod `a` (a hairpin when `a` is the client).
pub(super) const SERVICE_V4: &str = "198.51.100.80";

/// A named network namespace, deleted on drop.
pub(super) struct Ns {
    pub(super) name: String,
}

pub(super) fn check(what: &str, output: Output) -> String {
    assert!(
        output.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

impl Ns {
    pub(super) fn new(tag: &str) -> Ns {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "wnp{}x{}{tag}",
            std::process::id() % 100_000,
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        check(
            "ip netns add",
            Command::new("ip")
                .args(["netns", "add", &name])
                .output()
                .unwrap(),
        );
        let ns = Ns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    pub(super) fn run(&self, program: &str, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name, program])
            .args(args)
            .output()
            .unwrap()
    }

    pub(super) fn ip(&self, args: &[&str]) -> String {
        check(
            &format!("ip {args:?} in {}", self.name),
            self.run("ip", args),
        )
    }

    pub(super) fn nft(&self, script: &str) {
        let script = script.to_owned();
        self.within(move || crate::firewall::nft::apply(&script))
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Runs `f` on a thread inside the namespace (and the programs it starts).
    pub(super) fn within<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let netns =
            weft_netlink::Netns::open(Path::new(&format!("/var/run/netns/{}", self.name))).unwrap();
        std::thread::spawn(move || {
            let _inside = netns.enter().unwrap();
            f()
        })
        .join()
        .unwrap()
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A pod: its namespace, host veth, addresses and echo servers.
pub(super) struct Pod {
    pub(super) ns: Ns,
    pub(super) veth: String,
    pub(super) v4: IpAddr,
    pub(super) v6: IpAddr,
    pub(super) stop: Arc<AtomicBool>,
}

/// The ports every pod serves, TCP and UDP.
pub(super) const PORTS: [u16; 2] = [80, 81];

impl Pod {
    pub(super) fn new(node: &Ns, index: u8) -> Pod {
        let tag = char::from(b'a' + index);
        let ns = Ns::new(&tag.to_string());
        let veth = format!("weft{:0>11}", format!("np{tag}"));
        let (v4, v6) = (
            format!("192.0.2.{}", 11 + index),
            format!("2001:db8:1::{}", 11 + index),
        );
        node.ip(&[
            "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns.name,
        ]);
        node.ip(&["link", "set", &veth, "up"]);
        node.ip(&["addr", "add", &format!("{GATEWAY_V4}/32"), "dev", &veth]);
        node.ip(&[
            "addr",
            "add",
            &format!("{GATEWAY_V6}/64"),
            "dev",
            &veth,
            "nodad",
        ]);
        node.ip(&["route", "add", &format!("{v4}/32"), "dev", &veth]);
        node.ip(&["-6", "route", "add", &format!("{v6}/128"), "dev", &veth]);
        ns.ip(&["link", "set", "eth0", "up"]);
        ns.ip(&["addr", "add", &format!("{v4}/32"), "dev", "eth0"]);
        ns.ip(&["addr", "add", &format!("{v6}/128"), "dev", "eth0", "nodad"]);
        ns.ip(&["route", "add", GATEWAY_V4, "dev", "eth0", "scope", "link"]);
        ns.ip(&["route", "add", "default", "via", GATEWAY_V4, "dev", "eth0"]);
        ns.ip(&[
            "-6", "route", "add", "default", "via", GATEWAY_V6, "dev", "eth0",
        ]);
        let pod = Pod {
            ns,
            veth,
            v4: v4.parse().unwrap(),
            v6: v6.parse().unwrap(),
            stop: Arc::default(),
        };
        pod.serve();
        pod
    }

    /// TCP and UDP echo on every port, both families (one dual-stack socket each).
    pub(super) fn serve(&self) {
        for port in PORTS {
            let stop = self.stop.clone();
            let tcp = self
                .ns
                .within(move || TcpListener::bind(("::", port)).unwrap());
            tcp.set_nonblocking(true).unwrap();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match tcp.accept() {
                        Ok((mut stream, _)) => {
                            stream.set_nonblocking(false).unwrap();
                            stream.set_read_timeout(Some(PROBE_TIMEOUT)).unwrap();
                            let mut byte = [0u8; 1];
                            if stream.read_exact(&mut byte).is_ok() {
                                let _ = stream.write_all(&byte);
                            }
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(2)),
                    }
                }
            });
            let stop = self.stop.clone();
            let udp = self
                .ns
                .within(move || UdpSocket::bind(("::", port)).unwrap());
            udp.set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            std::thread::spawn(move || {
                let mut buffer = [0u8; 64];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((n, from)) = udp.recv_from(&mut buffer) {
                        let _ = udp.send_to(&buffer[..n], from);
                    }
                }
            });
        }
    }

    pub(super) fn address(&self, family: Family) -> IpAddr {
        match family {
            Family::V4 => self.v4,
            Family::V6 => self.v6,
        }
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Transport {
    Tcp,
    Udp,
}

/// One connection attempt: a byte there and back.
pub(super) fn exchange(transport: Transport, to: SocketAddr) -> bool {
    match transport {
        Transport::Tcp => {
            let Ok(mut stream) = TcpStream::connect_timeout(&to, PROBE_TIMEOUT) else {
                return false;
            };
            stream.set_read_timeout(Some(PROBE_TIMEOUT)).unwrap();
            let mut byte = [0u8; 1];
            stream.write_all(b"x").is_ok() && stream.read_exact(&mut byte).is_ok()
        }
        Transport::Udp => {
            let any: SocketAddr = match to {
                SocketAddr::V4(_) => "0.0.0.0:0".parse().unwrap(),
                SocketAddr::V6(_) => "[::]:0".parse().unwrap(),
            };
            let socket = UdpSocket::bind(any).unwrap();
            socket.set_read_timeout(Some(PROBE_TIMEOUT)).unwrap();
            let mut buffer = [0u8; 8];
            socket.send_to(b"x", to).is_ok() && socket.recv_from(&mut buffer).is_ok()
        }
    }
}

/// A probe: from a pod to an address and port, and whether it should pass.
pub(super) struct Probe {
    pub(super) from: usize,
    pub(super) to: IpAddr,
    pub(super) port: u16,
    pub(super) transport: Transport,
    pub(super) pass: bool,
}

pub(super) struct Cluster {
    pub(super) node: Ns,
    pub(super) pods: Vec<Pod>,
    pub(super) tables: PolicyTables,
}

impl Cluster {
    pub(super) fn new() -> Cluster {
        let node = Ns::new("node");
        for setting in ["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"] {
            check("sysctl", node.run("sysctl", &["-qw", setting]));
        }
        let pods = (0..3).map(|i| Pod::new(&node, i)).collect();
        Cluster {
            node,
            pods,
            tables: PolicyTables::default(),
        }
    }

    /// A firewall pass with the NetworkPolicy concern in the node namespace.
    pub(super) fn sync(&self) -> Vec<(Table, Pass)> {
        let firewall = Firewall::new(vec![Concern::NetworkPolicy(NetworkPolicy {
            tables: self.tables.clone(),
        })]);
        self.node.within(move || firewall.sync().unwrap())
    }

    /// Compiles `states` (pod index → state) under `view` and applies the difference.
    pub(super) fn apply(&self, view: &PolicyView<'_>, states: &[(usize, PodState<'_>)]) {
        let compiled = self.compile(view, states);
        assert!(compiled.problems.is_empty(), "{:?}", compiled.problems);
        let tables = self.tables.clone();
        let desired = compiled.desired;
        self.node
            .within(move || tables.apply(desired))
            .unwrap_or_else(|e| panic!("apply: {e}"));
    }

    /// As [`Cluster::apply`] through the elements path; what it wrote.
    pub(super) fn apply_elements(
        &self,
        view: &PolicyView<'_>,
        states: &[(usize, PodState<'_>)],
    ) -> Written {
        let desired = self.compile(view, states).desired;
        let tables = self.tables.clone();
        self.node
            .within(move || tables.apply_elements(desired))
            .unwrap_or_else(|e| panic!("apply_elements: {e}"))
    }

    fn compile(&self, view: &PolicyView<'_>, states: &[(usize, PodState<'_>)]) -> Compiled {
        let local: Vec<LocalPod> = states
            .iter()
            .map(|(i, state)| LocalPod {
                veth: self.pods[*i].veth.clone(),
                addresses: vec![self.pods[*i].v4, self.pods[*i].v6],
                families_off: Vec::new(),
                state: *state,
            })
            .collect();
        compile(view, &local)
    }

    /// Pod `index` admitted the way ADD does it, under `entry` (`None`: unpoliced);
    /// the elements written, `None` when it needs a whole pass.
    pub(super) fn admit(&self, index: usize, entry: Option<PodPolicies>) -> Option<usize> {
        let pod = &self.pods[index];
        let (veth, addresses) = (pod.veth.clone(), vec![pod.v4, pod.v6]);
        let tables = self.tables.clone();
        self.node
            .within(move || {
                let pod = LocalPod {
                    veth,
                    addresses,
                    families_off: Vec::new(),
                    state: entry
                        .as_ref()
                        .map_or(PodState::Unpoliced, PodState::Policed),
                };
                // The pod guard is not among this table's concerns: no sources, the
                // verdicts alone in the guard's transaction.
                tables.admit_pod(&pod, |changes| {
                    GuardSets::default().admit_with(&[], changes)
                })
            })
            .unwrap_or_else(|e| panic!("admit_pod: {e}"))
    }

    /// Applies the state of pods a, b and c.
    pub(super) fn judge(&self, view: &PolicyView<'_>, states: [PodState<'_>; 3]) {
        let indexed: Vec<(usize, PodState)> = states.into_iter().enumerate().collect();
        self.apply(view, &indexed);
    }

    /// Runs every probe at once; panics listing the ones that went the other way.
    pub(super) fn expect(&self, stage: &str, probes: &[Probe]) {
        let handles: Vec<_> = probes
            .iter()
            .map(|probe| {
                let netns = weft_netlink::Netns::open(Path::new(&format!(
                    "/var/run/netns/{}",
                    self.pods[probe.from].ns.name
                )))
                .unwrap();
                let (to, transport) = (SocketAddr::new(probe.to, probe.port), probe.transport);
                std::thread::spawn(move || {
                    let _inside = netns.enter().unwrap();
                    exchange(transport, to)
                })
            })
            .collect();
        let wrong: Vec<String> = probes
            .iter()
            .zip(handles)
            .filter_map(|(probe, handle)| {
                let passed = handle.join().unwrap();
                (passed != probe.pass).then(|| {
                    format!(
                        "{} -> {}:{} {:?}: {} (expected {})",
                        char::from(b'a' + probe.from as u8),
                        probe.to,
                        probe.port,
                        probe.transport,
                        if passed { "passed" } else { "blocked" },
                        if probe.pass { "pass" } else { "block" }
                    )
                })
            })
            .collect();
        assert!(wrong.is_empty(), "{stage}:\n{}", wrong.join("\n"));
    }

    /// Probes from pod `from` to pod `to` on `port` over `transports`, both families.
    pub(super) fn probes(
        &self,
        from: usize,
        to: usize,
        port: u16,
        transports: &[Transport],
        pass: bool,
    ) -> Vec<Probe> {
        let mut probes = Vec::new();
        for family in Family::BOTH {
            for transport in transports {
                probes.push(Probe {
                    from,
                    to: self.pods[to].address(family),
                    port,
                    transport: *transport,
                    pass,
                });
            }
        }
        probes
    }

    pub(super) fn one(
        &self,
        from: usize,
        to: usize,
        family: Family,
        port: u16,
        pass: bool,
    ) -> Probe {
        Probe {
            from,
            to: self.pods[to].address(family),
            port,
            transport: Transport::Tcp,
            pass,
        }
    }

    /// `a`'s service address, DNATed to `a` (and masqueraded when `a` is the client,
    /// as kube-proxy does for hairpin), so `a` reaching it crosses the node and comes
    /// back through its own veth.
    pub(super) fn add_service(&self) {
        let a = self.pods[A].v4;
        self.node.nft(&format!(
            "table ip service {{
               chain pre {{ type nat hook prerouting priority dstnat; policy accept;
                 ip daddr {SERVICE_V4} tcp dport 80 dnat to {a}:80
               }}
               chain post {{ type nat hook postrouting priority srcnat; policy accept;
                 ip saddr {a} ip daddr {a} masquerade
               }}
             }}"
        ));
    }

    pub(super) fn service(&self, from: usize, pass: bool) -> Probe {
        Probe {
            from,
            to: SERVICE_V4.parse().unwrap(),
            port: 80,
            transport: Transport::Tcp,
            pass,
        }
    }
}

pub(super) const A: usize = 0;
pub(super) const B: usize = 1;
pub(super) const C: usize = 2;
pub(super) const BOTH: [Transport; 2] = [Transport::Tcp, Transport::Udp];
