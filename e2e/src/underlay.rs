//! The underlay of a [`Topology`](crate::Topology): the fabric router with its bridge, the
//! external host behind it, and each node's uplink on the bridge. Plain `ip` and
//! `sysctl` in namespaces this crate created; documentation prefixes only.

use crate::Netns;

/// The families the node uplinks have addresses of. weftd prefers an IPv4 VXLAN source,
/// so `Dual` means VXLAN over IPv4 and `Ipv6` VXLAN over IPv6. Pod IPv6 is routed
/// natively and so needs an IPv6 underlay address: `Ipv4` suits `--mode ipv4` only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Underlay {
    /// IPv4 addresses only.
    Ipv4,
    /// IPv6 addresses only (the uplink has no IPv4 at all).
    Ipv6,
    /// Both.
    Dual,
}

impl Underlay {
    pub(crate) fn has_v4(self) -> bool {
        self != Underlay::Ipv6
    }
    pub(crate) fn has_v6(self) -> bool {
        self != Underlay::Ipv4
    }
}

/// The external host's addresses (it answers iperf3 and pings).
pub const EXTERNAL_V4: &str = "198.51.100.100";
/// See [`EXTERNAL_V4`].
pub const EXTERNAL_V6: &str = "2001:db8:eeee::100";

/// Gives `node` (number `n`) an uplink on the fabric bridge with the `addrs` (IPv4,
/// IPv6) given, default routes via the router, and, when `fabric_route` names the node's
/// pod prefix, the router's route for it.
pub fn wire_node(
    fabric: &Netns,
    node: &Netns,
    n: usize,
    mtu: u32,
    addrs: (Option<String>, Option<String>),
    fabric_route: Option<String>,
) {
    quiet_dad(node);
    let port = format!("n{n}");
    node.add_uplink_veth(mtu, &port, Some(fabric.name()));
    fabric.ip(&["link", "set", &port, "master", "fabric0", "up"]);
    let (v4, v6) = addrs;
    if let Some(a) = &v4 {
        node.ip(&["addr", "add", &format!("{a}/24"), "dev", "uplink"]);
    }
    if let Some(a) = &v6 {
        let cidr = format!("{a}/64");
        node.ip(&["addr", "add", &cidr, "dev", "uplink", "nodad"]);
    }
    node.ip(&["link", "set", "uplink", "up"]);
    if v4.is_some() {
        node.ip(&["route", "add", "default", "via", "192.0.2.1"]);
    }
    if let Some(a) = &v6 {
        node.ip(&["-6", "route", "add", "default", "via", "2001:db8:ffff::1"]);
        if let Some(prefix) = fabric_route {
            fabric.ip(&["-6", "route", "add", &prefix, "via", a]);
        }
    }
}

/// Turns duplicate address detection off for interfaces created later in `ns`: the
/// underlay's addresses are unique by construction and must work at once.
fn quiet_dad(ns: &Netns) {
    ns.set_sysctls(&[
        "net.ipv6.conf.all.accept_dad=0",
        "net.ipv6.conf.default.accept_dad=0",
    ]);
}

/// The router: a bridge for the node ports, forwarding on, redirects off (nodes should
/// keep using their own routes, not ones the router suggests).
pub fn build_fabric(uplink_mtu: u32) -> Netns {
    let fabric = Netns::new("f");
    quiet_dad(&fabric);
    fabric.set_sysctls(&[
        "net.ipv4.ip_forward=1",
        "net.ipv6.conf.all.forwarding=1",
        "net.ipv4.conf.all.send_redirects=0",
        "net.ipv4.conf.default.send_redirects=0",
    ]);
    let mtu = uplink_mtu.to_string();
    fabric.ip(&["link", "add", "fabric0", "mtu", &mtu, "type", "bridge"]);
    fabric.ip(&["addr", "add", "192.0.2.1/24", "dev", "fabric0"]);
    fabric.ip(&[
        "addr",
        "add",
        "2001:db8:ffff::1/64",
        "dev",
        "fabric0",
        "nodad",
    ]);
    fabric.ip(&["link", "set", "fabric0", "up"]);
    fabric
}

/// The external host, on a link of its own behind the router. It routes only the
/// documentation prefixes and the pods' IPv6 /48 to the router, never 10.255.0.0/16.
pub(crate) fn build_external(fabric: &Netns) -> Netns {
    let external = Netns::new("x");
    quiet_dad(&external);
    external.ip(&[
        "link",
        "add",
        "eth0",
        "type",
        "veth",
        "peer",
        "name",
        "ext",
        "netns",
        fabric.name(),
    ]);
    fabric.ip(&["addr", "add", "198.51.100.1/24", "dev", "ext"]);
    fabric.ip(&["addr", "add", "2001:db8:eeee::1/64", "dev", "ext", "nodad"]);
    fabric.ip(&["link", "set", "ext", "up"]);
    external.ip(&["addr", "add", &format!("{EXTERNAL_V4}/24"), "dev", "eth0"]);
    let v6 = format!("{EXTERNAL_V6}/64");
    external.ip(&["addr", "add", &v6, "dev", "eth0", "nodad"]);
    external.ip(&["link", "set", "eth0", "up"]);
    external.ip(&["route", "add", "192.0.2.0/24", "via", "198.51.100.1"]);
    for prefix in ["2001:db8:ffff::/64", "2001:db8:1000::/48"] {
        external.ip(&["-6", "route", "add", prefix, "via", "2001:db8:eeee::1"]);
    }
    external
}
