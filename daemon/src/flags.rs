//! weftd's command line: a contract tests and operators rely on. Extend, never rename.

use crate::conflist::Conflist;
use crate::error::{Error, Result};
use crate::firewall::PodHostAccess;
use clap::Parser;
use ipnet::{Ipv4Net, Ipv6Net};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use weft_api::Ipv6Routing;
use weft_netlink::sysctl;
use weft_wire::{
    parse_bind_addr, parse_ipv4_subnet, parse_ipv6_prefix, Mode, DEFAULT_VXLAN_PORT,
    DEFAULT_VXLAN_VNI, PEER_IPV4_LENGTHS, PEER_IPV6_LENGTHS,
};

/// Longest --cooldown-seconds and --resync-seconds: a day. Instants computed from them
/// (now + period) then stay far from overflowing, which would panic weftd.
const MAX_PERIOD_SECONDS: u64 = 86_400;

/// weftd: the weft node daemon.
#[derive(Debug, Parser)]
#[command(
    name = "weftd",
    version,
    about = "weft node daemon: pod IPAM over a unix socket, metrics"
)]
pub struct Flags {
    /// This node's name.
    #[arg(long, env = "NODE_NAME")]
    pub node_name: String,
    /// The node's delegated IPv6 prefix, /64 to /120 (e.g. 2001:db8:1000:1::/80).
    #[arg(long, value_parser = |s: &str| parse_ipv6_prefix("--ipv6-prefix", s, PEER_IPV6_LENGTHS).map_err(|e| e.to_string()))]
    pub ipv6_prefix: Option<Ipv6Net>,
    /// The node's overlay IPv4 subnet, /16 to /28 (e.g. 10.255.1.0/24).
    #[arg(long, value_parser = |s: &str| parse_ipv4_subnet("--ipv4-subnet", s, PEER_IPV4_LENGTHS).map_err(|e| e.to_string()))]
    pub ipv4_subnet: Option<Ipv4Net>,
    /// Families served to pods: dual, ipv6 or ipv4 [default: dual]. Kubernetes mode
    /// takes it from the WeftNetwork.
    #[arg(long)]
    pub mode: Option<Mode>,
    /// Where allocations are recorded. Keep it on tmpfs: allocations live as long as pods.
    #[arg(long, default_value = "/run/weft/state")]
    pub state_dir: PathBuf,
    /// The unix socket the CNI plugin talks to (created 0600; its directory must not be
    /// writable by group or others).
    #[arg(long, default_value = "/run/weft/weftd.sock")]
    pub socket: PathBuf,
    /// Prometheus /metrics, /healthz and /readyz: [addr]:port, host:port or :port.
    /// Default: every address, on purpose. weftd runs in the host network, so
    /// Prometheus (on another node, through Kubernetes service discovery) scrapes the
    /// node's own address, which pods can reach too: weft-health's caps (per source
    /// address, per listener, header and idle timeouts) keep a pod's flood from
    /// starving a scrape, and the host protection limits what pods reach at all.
    #[arg(long, default_value = "[::]:9641", value_parser = |s: &str| parse_bind_addr("--metrics-addr", s).map(ListenAddrs).map_err(|e| e.to_string()))]
    pub metrics_addr: ListenAddrs,
    /// The node's uplink; its MTU sizes pod MTUs. Default: the default route's interface.
    #[arg(long)]
    pub underlay_interface: Option<String>,
    /// Seconds a released address rests before reuse (AWS VPC CNI uses 30), at most a
    /// day.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(0..=MAX_PERIOD_SECONDS))]
    pub cooldown_seconds: u64,
    /// The other nodes: a JSON array of {name, underlayIPv4, underlayIPv6, ipv6Prefix,
    /// ipv4Subnet, vtepMAC}, re-read when it changes and on SIGHUP.
    #[arg(long)]
    pub peers: Option<PathBuf>,
    /// How peers' IPv6 prefixes are reached: `fabric` (the network routes each node's
    /// prefix to it; weftd adds no routes) or `direct` (nodes share a link; weftd routes
    /// each peer's prefix via its underlay IPv6 address) [default: fabric]. Kubernetes
    /// mode takes it from the WeftNetwork.
    #[arg(long, value_parser = parse_ipv6_routing)]
    pub ipv6_routing: Option<Ipv6Routing>,
    /// VXLAN network identifier of the IPv4 overlay [default: 1]. Kubernetes mode takes
    /// it from the WeftNetwork.
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=0xff_ffff))]
    pub vxlan_vni: Option<u32>,
    /// UDP port of the IPv4 overlay's VXLAN (IANA's is 4789) [default: 4789]. Kubernetes
    /// mode takes it from the WeftNetwork.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub vxlan_port: Option<u16>,
    /// Kubernetes mode: take the node's prefix, subnet and mode, and its peers, from the
    /// apiserver this kubeconfig names (WeftNode and WeftNetwork objects), instead of
    /// --ipv6-prefix, --ipv4-subnet, --mode, --ipv6-routing, --vxlan-vni, --vxlan-port
    /// and --peers (which it refuses rather than ignores).
    #[arg(long, conflicts_with = "in_cluster")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubernetes mode with the pod's service account (in-cluster config).
    #[arg(long)]
    pub in_cluster: bool,
    /// Kubernetes mode: the WeftNetwork object holding the cluster's plan.
    #[arg(long, default_value = "default")]
    pub network: String,
    /// Seconds between full re-convergences of the datapath, which repair drift (an
    /// entry someone deleted); peer changes are applied at once, incrementally.
    /// At most a day.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=MAX_PERIOD_SECONDS))]
    pub resync_seconds: u64,
    /// Where to write the CNI conflist for the container runtime (a `.conflist` file in
    /// its conf dir, e.g. /etc/cni/net.d/05-weft.conflist): written atomically once
    /// weftd serves pods (/readyz waits for it), restored every --resync-seconds when
    /// deleted or changed, never removed by weftd. Without it weftd writes no conflist.
    #[arg(long, value_name = "PATH")]
    pub cni_conflist: Option<PathBuf>,
    /// The exact conflist --cni-conflist writes: JSON with cniVersion, name and
    /// plugins, the first of type weft talking to --socket. Checked at start. Default:
    /// a conflist of weft alone on --socket.
    #[arg(long, value_name = "FILE", requires = "cni_conflist")]
    pub cni_conflist_template: Option<PathBuf>,
    /// The sysctl tree weftd reads and writes (ip_forward, IPv6 forwarding and
    /// accept_ra, the VXLAN device's disable_ipv6). A container's /proc/sys is
    /// read-only: mount the node's /proc/sys/net writable at DIR/net and pass DIR.
    #[arg(long, value_name = "DIR", default_value = sysctl::PROC_SYS)]
    pub proc_sys: PathBuf,
    /// What a pod reaches on its own node: `accept` (every port, as without weft) or
    /// `drop` (ICMP, replies to the node's connections, Services kube-proxy DNATs to
    /// the node, and DNS only).
    #[arg(long, default_value_t = PodHostAccess::Accept, value_name = "accept|drop")]
    pub pod_host_access: PodHostAccess,
    /// Kubernetes mode: how long a pod's ADD waits for its NetworkPolicy entry when its
    /// namespace has policies; past it the pod starts isolated until the entry comes.
    /// With the 5 s wait for a previous veth it stays inside the plugin's 10 s answer
    /// timeout, so at most 4.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(0..=4))]
    pub policy_wait_seconds: u64,
    /// Kubernetes mode: least seconds between two NetworkPolicy status reports on the
    /// node's WeftNodePolicy. At most a day.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=MAX_PERIOD_SECONDS))]
    pub policy_report_seconds: u64,
    /// Kubernetes mode: weft-controller's policy relay (https://HOST:PORT, its
    /// --relay-addr), where the node's NetworkPolicy span watches go instead of the
    /// apiserver, with the apiserver's token. `tcp://HOST:PORT`, the form of a
    /// Service's `<NAME>_PORT` variable, means the same. Needs --policy-relay-ca.
    #[arg(long, value_name = "URL", requires = "policy_relay_ca")]
    pub policy_relay: Option<String>,
    /// The CA certificate (PEM) that signed the relay's certificate.
    #[arg(long, value_name = "FILE", requires = "policy_relay")]
    pub policy_relay_ca: Option<PathBuf>,
    /// The name the relay's certificate must carry, when not the URL's host (a
    /// Service's DNS name while the URL holds its ClusterIP: weftd needs no DNS).
    #[arg(long, value_name = "NAME", requires = "policy_relay")]
    pub policy_relay_server_name: Option<String>,
    /// Log level: error, warn, info, debug, trace.
    #[arg(long, default_value = "info")]
    pub log_level: tracing::Level,
}

/// Where the node's allocation and peers come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Flags and the `--peers` file.
    Standalone,
    /// The Kubernetes API: a kubeconfig file, or in-cluster config when `None`.
    Kubernetes {
        kubeconfig: Option<PathBuf>,
        network: String,
    },
}

/// `--ipv6-routing`: the API's words, `fabric` or `direct`.
fn parse_ipv6_routing(text: &str) -> Result<Ipv6Routing, String> {
    text.parse()
}

/// One listen flag may resolve to several addresses (a name with both families).
#[derive(Debug, Clone)]
pub struct ListenAddrs(pub Vec<SocketAddr>);

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub node_name: String,
    pub mode: Mode,
    pub ipv6_prefix: Option<Ipv6Net>,
    pub ipv4_subnet: Option<Ipv4Net>,
    pub state_dir: PathBuf,
    pub socket: PathBuf,
    pub metrics_addrs: Vec<SocketAddr>,
    pub underlay_interface: Option<String>,
    pub cooldown: Duration,
    pub peers: Option<PathBuf>,
    pub ipv6_routing: Ipv6Routing,
    pub vxlan_vni: u32,
    pub vxlan_port: u16,
    pub resync: Duration,
    pub source: Source,
    /// The conflist weftd keeps in place, if any.
    pub conflist: Option<Conflist>,
    /// Where weftd's sysctls are.
    pub proc_sys: sysctl::Root,
    pub pod_host_access: PodHostAccess,
    pub policy: PolicySettings,
}

/// NetworkPolicy's timing and source (Kubernetes mode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySettings {
    /// `--policy-wait-seconds`.
    pub wait: Duration,
    /// `--policy-report-seconds`.
    pub report: Duration,
    /// `--policy-relay` and `--policy-relay-ca`: `None` watches the apiserver.
    pub relay: Option<PolicyRelay>,
}

/// Where the span watches go instead of the apiserver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRelay {
    /// `https://HOST:PORT`.
    pub url: String,
    /// The CA certificate file.
    pub ca: PathBuf,
    /// The name its certificate is checked against, when not the URL's host.
    pub server_name: Option<String>,
}

impl Flags {
    /// Cross-flag checks clap cannot express; errors name the flags.
    pub fn validate(self) -> Result<Config> {
        if self.node_name.trim().is_empty() {
            return Err(Error::Flag("--node-name: must not be empty".into()));
        }
        let kubernetes = self.kubeconfig.is_some() || self.in_cluster;
        let mode = self.mode.unwrap_or(Mode::Dual);
        let (source, ipv6_prefix, ipv4_subnet) = if kubernetes {
            // The node's allocation and peers come from the apiserver, the plan's settings
            // from the WeftNetwork: given anyway, a flag is refused, not ignored.
            let from_apiserver = "the node's allocation and peers come from the apiserver";
            let from_network = format!("the WeftNetwork '{}' sets it for every node", self.network);
            for (flag, given, why) in [
                ("--ipv6-prefix", self.ipv6_prefix.is_some(), from_apiserver),
                ("--ipv4-subnet", self.ipv4_subnet.is_some(), from_apiserver),
                ("--peers", self.peers.is_some(), from_apiserver),
                ("--mode", self.mode.is_some(), &from_network),
                ("--ipv6-routing", self.ipv6_routing.is_some(), &from_network),
                ("--vxlan-vni", self.vxlan_vni.is_some(), &from_network),
                ("--vxlan-port", self.vxlan_port.is_some(), &from_network),
            ] {
                if given {
                    return Err(Error::Flag(format!(
                        "{flag}: not with --kubeconfig or --in-cluster ({why})"
                    )));
                }
            }
            let source = Source::Kubernetes {
                kubeconfig: self.kubeconfig,
                network: self.network,
            };
            (source, None, None)
        } else {
            let ipv6_prefix = match (mode.has_ipv6(), self.ipv6_prefix) {
                (true, None) => {
                    return Err(Error::Flag(format!(
                        "--ipv6-prefix: required in --mode {mode}"
                    )))
                }
                (true, p) => p,
                (false, _) => None,
            };
            let ipv4_subnet = match (mode.has_ipv4(), self.ipv4_subnet) {
                (true, None) => {
                    return Err(Error::Flag(format!(
                        "--ipv4-subnet: required in --mode {mode}"
                    )))
                }
                (true, s) => s,
                (false, _) => None,
            };
            (Source::Standalone, ipv6_prefix, ipv4_subnet)
        };
        if let Some(template) = &self.cni_conflist_template {
            absolute("--cni-conflist-template", template)?;
        }
        let conflist = self
            .cni_conflist
            .map(|path| {
                Conflist::from_flags(path, self.cni_conflist_template.as_deref(), &self.socket)
            })
            .transpose()?;
        Config {
            node_name: self.node_name,
            mode,
            ipv6_prefix,
            ipv4_subnet,
            state_dir: self.state_dir,
            socket: self.socket,
            metrics_addrs: self.metrics_addr.0,
            underlay_interface: self.underlay_interface,
            cooldown: Duration::from_secs(self.cooldown_seconds),
            peers: self.peers,
            ipv6_routing: self.ipv6_routing.unwrap_or(Ipv6Routing::Fabric),
            vxlan_vni: self.vxlan_vni.unwrap_or(DEFAULT_VXLAN_VNI),
            vxlan_port: self.vxlan_port.unwrap_or(DEFAULT_VXLAN_PORT),
            resync: Duration::from_secs(self.resync_seconds),
            source,
            conflist,
            proc_sys: sysctl::Root::new(self.proc_sys),
            pod_host_access: self.pod_host_access,
            policy: PolicySettings {
                wait: Duration::from_secs(self.policy_wait_seconds),
                report: Duration::from_secs(self.policy_report_seconds),
                relay: policy_relay(kubernetes, self.policy_relay, self.policy_relay_ca)?.map(
                    |relay| PolicyRelay {
                        server_name: self.policy_relay_server_name,
                        ..relay
                    },
                ),
            },
        }
        .checked_paths()
    }
}

/// `--policy-relay` with its CA: Kubernetes mode only, an `https` (or `tcp`) URL with a
/// host and no path, an absolute CA path.
fn policy_relay(
    kubernetes: bool,
    url: Option<String>,
    ca: Option<PathBuf>,
) -> Result<Option<PolicyRelay>> {
    let (Some(url), Some(ca)) = (url, ca) else {
        return Ok(None);
    };
    if !kubernetes {
        return Err(Error::Flag(
            "--policy-relay: only with --kubeconfig or --in-cluster".into(),
        ));
    }
    let url = match url.strip_prefix("tcp://") {
        Some(rest) => format!("https://{rest}"),
        None => url,
    };
    let parsed: Option<http::Uri> = url.parse().ok();
    let valid = parsed.as_ref().is_some_and(|u| {
        u.scheme_str() == Some("https")
            && u.host().is_some()
            && matches!(u.path(), "" | "/")
            && u.query().is_none()
    });
    if !valid {
        return Err(Error::Flag(format!(
            "--policy-relay: '{url}' is not https://HOST[:PORT]"
        )));
    }
    absolute("--policy-relay-ca", &ca)?;
    Ok(Some(PolicyRelay {
        url,
        ca,
        server_name: None,
    }))
}

impl Config {
    /// Every path flag must be absolute.
    fn checked_paths(self) -> Result<Config> {
        let mut paths = vec![
            ("--state-dir", self.state_dir.as_path()),
            ("--socket", self.socket.as_path()),
            ("--proc-sys", self.proc_sys.dir()),
        ];
        if let Some(p) = &self.peers {
            paths.push(("--peers", p));
        }
        if let Source::Kubernetes {
            kubeconfig: Some(k),
            ..
        } = &self.source
        {
            paths.push(("--kubeconfig", k));
        }
        for (flag, path) in paths {
            absolute(flag, path)?;
        }
        Ok(self)
    }
}

/// Paths must be absolute: weftd may be started from any directory.
fn absolute(flag: &str, path: &std::path::Path) -> Result<()> {
    match path.is_absolute() {
        true => Ok(()),
        false => Err(Error::Flag(format!(
            "{flag}: '{}' is not an absolute path",
            path.display()
        ))),
    }
}

#[cfg(test)]
#[path = "tests/flags.rs"]
mod tests;
