//! Wiring a pod: the veth pair, addresses, routes, neighbours and sysctls, through
//! weft-netlink. Also CHECK's inspection of the same.
//!
//! The pod's gateways are link-local (169.254.1.1, fe80::1) with permanent neighbour
//! entries pointing at the host veth's fixed MAC, and the host holds permanent entries
//! for the pod's addresses: no ARP, no neighbour discovery, no proxy_arp, so the first
//! packet in either direction leaves at once. The gateways also answer the pod: each
//! host veth holds fe80::1, and weftd holds 169.254.1.1 on the node's loopback.

use crate::error::{CniError, Result};
use crate::result::{mac_text, pod_routes};
use ipnet::{IpNet, Ipv6Net};
use std::net::IpAddr;
use std::time::{Duration, Instant};
use weft_netlink::{
    messages, sysctl, Errno, LinkConf, LinkInfo, Netlink, Netns, RouteInfo, RouteSpec, VethSpec,
    SCOPE_LINK, SCOPE_UNIVERSE,
};
use weft_wire::{Allocation, NodeNetwork, GATEWAY_V4, GATEWAY_V6, HOST_VETH_MAC};

/// One pod interface to wire or inspect.
#[derive(Debug)]
pub struct PodPlan<'a> {
    /// The veth pair.
    pub pair: &'a Pair<'a>,
    /// Its addresses.
    pub allocation: &'a Allocation,
    /// The node's network.
    pub network: &'a NodeNetwork,
}

impl<'a> PodPlan<'a> {
    fn pod_addresses(&self) -> Vec<IpNet> {
        let a = self.allocation;
        let v6 = a
            .ipv6
            .map(|ip| IpNet::new(ip.into(), 128).expect("valid /128"));
        let v4 = a
            .ipv4
            .map(|ip| IpNet::new(ip.into(), 32).expect("valid /32"));
        v6.into_iter().chain(v4).collect()
    }

    fn gateways(&self) -> Vec<IpAddr> {
        let v6 = self.allocation.ipv6.map(|_| IpAddr::from(GATEWAY_V6));
        let v4 = self.allocation.ipv4.map(|_| IpAddr::from(GATEWAY_V4));
        v6.into_iter().chain(v4).collect()
    }
}

/// One per-interface setting, `net/<family>/conf/<interface>/<name> = value`.
#[derive(Debug, Clone, Copy)]
struct Setting {
    family: &'static str,
    name: &'static str,
    value: i32,
}

const fn setting(family: &'static str, name: &'static str, value: i32) -> Setting {
    Setting {
        family,
        name,
        value,
    }
}

/// Settings written before the links come up: DAD off (addresses are unique by
/// construction, RFC 4862 section 5.4 would otherwise hold them tentative), no router
/// advertisements or SLAAC (a stray RA must not give the pod an address or route weft
/// did not assign).
const POD_SETTINGS: [Setting; 3] = [
    setting("ipv6", "accept_dad", 0),
    setting("ipv6", "accept_ra", 0),
    setting("ipv6", "autoconf", 0),
];

/// A pod that turns IPv6 off (its annotation keeps IPv4 alone) gets no IPv6 on its
/// interface at all, not even the link-local address the kernel would give it at
/// link-up (RFC 4291 section 2.5.6), which would still reach the node's host veth.
const POD_IPV6_OFF: [Setting; 1] = [setting("ipv6", "disable_ipv6", 1)];

/// Host veth: DAD and RAs off as in the pod; forwarding on for both families, since it
/// routes every packet of the pod.
const HOST_SETTINGS: [Setting; 4] = [
    setting("ipv6", "accept_dad", 0),
    setting("ipv6", "accept_ra", 0),
    setting("ipv6", "forwarding", 1),
    setting("ipv4", "forwarding", 1),
];

/// Writes `settings` of `ifname` in the calling thread's namespace, the IPv6 ones only
/// if `ipv6` (a kernel without IPv6 has no IPv6 keys; IPv4-only mode still works).
/// `reported` is what the kernel said the interface holds (the echo of its creation):
/// a setting it reports at the wanted value needs no write. Without a report,
/// `forwarding` is read first, since it is usually inherited already and its write
/// spins on RTNL.
fn write_settings(
    ifname: &str,
    settings: &[Setting],
    ipv6: bool,
    reported: Option<&LinkConf>,
) -> Result<()> {
    for s in settings.iter().filter(|s| ipv6 || s.family != "ipv6") {
        let known = reported.and_then(|conf| conf.get(s.family, s.name));
        if known == Some(s.value) {
            continue;
        }
        let key = sysctl::iface_key(s.family, ifname, s.name);
        let value = s.value.to_string();
        if s.name == "forwarding" && known.is_none() {
            sysctl::ensure(&key, &value)?;
        } else {
            sysctl::set(&key, &value)?;
        }
    }
    Ok(())
}

fn must_find(nl: &mut Netlink, name: &str, side: &str) -> Result<LinkInfo> {
    nl.link(name)?
        .ok_or_else(|| CniError::Drift(format!("{side} interface {name} is missing")))
}

/// The veth pair of one attachment, known before its addresses are.
#[derive(Debug)]
pub struct Pair<'a> {
    /// Host veth name.
    pub host_name: &'a str,
    /// Pod interface name.
    pub pod_name: &'a str,
    /// Pod interface MAC.
    pub pod_mac: [u8; 6],
    /// The pod's namespace.
    pub netns: &'a Netns,
}

/// Netlink sockets in the node's namespace and in the pod's.
#[derive(Debug)]
pub struct Sockets {
    host: Netlink,
    pod: Netlink,
}

impl Sockets {
    /// Opens both.
    pub fn open(pod_netns: &Netns) -> Result<Sockets> {
        Ok(Sockets {
            host: Netlink::connect()?,
            pod: Netlink::connect_in(pod_netns)?,
        })
    }

    /// Removes the host veth (the pod end goes with it), synchronously: only failure
    /// paths use this; DEL leaves the removal to weftd.
    pub fn remove_pair(&mut self, host_name: &str) -> Result<bool> {
        Ok(self.host.delete_link(host_name)?)
    }
}

/// Why the pair could not be created.
#[derive(Debug)]
pub enum PairError {
    /// The host veth name is taken: a previous veth of the same attachment not yet
    /// removed, or the veth of a live attachment (ADD twice).
    HostNameTaken(CniError),
    /// Anything else; nothing was left behind.
    Other(CniError),
}

impl From<PairError> for CniError {
    fn from(e: PairError) -> CniError {
        match e {
            PairError::HostNameTaken(e) | PairError::Other(e) => e,
        }
    }
}

/// Creates the pair and writes the sysctls that must precede link-up, with IPv6 off
/// on the pod's end when `pod_ipv6_off`. Needs nothing from weftd, so ADD runs it while
/// weftd allocates. All or nothing: if a sysctl write fails the pair is removed again.
/// Returns the host end as the kernel echoed it (None from a kernel that does not
/// echo), for [`configure`].
pub fn create_pair(
    sockets: &mut Sockets,
    pair: &Pair<'_>,
    pod_ipv6_off: bool,
) -> Result<Option<LinkInfo>, PairError> {
    let veth = VethSpec {
        host_name: pair.host_name,
        host_mac: HOST_VETH_MAC,
        pod_name: pair.pod_name,
        pod_mac: pair.pod_mac,
        pod_netns: pair.netns,
    };
    let echoed = match sockets.host.create_veth(&veth) {
        Ok(echoed) => echoed,
        Err(e) if e.errno() != Some(Errno::Exists) => return Err(PairError::Other(e.into())),
        Err(_) => return Err(exists_error(sockets, pair)),
    };
    // The echo reports IPv6 settings exactly when the kernel has IPv6. The pod end is
    // new in a namespace of its own, holding the defaults: its settings are written.
    let reported = echoed.as_ref().map(|link| &link.conf);
    let ipv6 = reported.map_or_else(sysctl::ipv6_available, |c| c.ipv6_forwarding.is_some());
    let written = pair
        .netns
        .enter()
        .map_err(CniError::from)
        .and_then(|_inside| {
            let off: &[Setting] = if pod_ipv6_off { &POD_IPV6_OFF } else { &[] };
            write_settings(
                pair.pod_name,
                &[&POD_SETTINGS[..], off].concat(),
                ipv6,
                None,
            )
        })
        .and_then(|_| write_settings(pair.host_name, &HOST_SETTINGS, ipv6, reported));
    if let Err(e) = written {
        let _ = sockets.host.delete_link(pair.host_name);
        return Err(PairError::Other(e));
    }
    Ok(echoed)
}

/// The pair could not be created because a name is taken: the host veth's (ADD twice,
/// or an old veth not yet removed) or the pod interface's.
fn exists_error(sockets: &mut Sockets, pair: &Pair<'_>) -> PairError {
    match sockets.host.link(pair.host_name) {
        Ok(Some(_)) => PairError::HostNameTaken(CniError::InterfaceExists(format!(
            "host interface {} already exists: another ADD for this container and interface is in progress or was not cleaned up",
            pair.host_name
        ))),
        _ => PairError::Other(CniError::InterfaceExists(format!(
            "interface {} already exists in network namespace {}",
            pair.pod_name,
            pair.netns.path().display()
        ))),
    }
}

/// Everything after the pair exists: MTU and link-up, addresses, permanent neighbours,
/// routes. Each namespace's requests go to the kernel as one batch, handled in order
/// (a link is up before a route uses it) in one system call. `echoed` is what
/// [`create_pair`] returned.
pub fn configure(
    sockets: &mut Sockets,
    plan: &PodPlan<'_>,
    echoed: Option<LinkInfo>,
) -> Result<()> {
    let host_link = match echoed {
        Some(link) => link,
        None => must_find(&mut sockets.host, plan.pair.host_name, "host")?,
    };
    // The host end names its peer's index in the pod's namespace (IFLA_LINK with a
    // netnsid): this ADD just created the pair there, so no second lookup is needed.
    let pod_index = match host_link.peer_index.filter(|_| host_link.peer_elsewhere) {
        Some(index) => index,
        None => must_find(&mut sockets.pod, plan.pair.pod_name, "pod")?.index,
    };
    let mtu = Some(plan.network.mtu.link);
    let mut host = vec![messages::bring_up(
        host_link.index,
        plan.pair.host_name,
        mtu,
    )];
    for addr in plan.pod_addresses() {
        host.push(messages::permanent_neighbour(
            host_link.index,
            addr.addr(),
            plan.pair.pod_mac,
        ));
        let scope = if addr.addr().is_ipv4() {
            SCOPE_LINK
        } else {
            SCOPE_UNIVERSE
        };
        let route = RouteSpec {
            destination: addr,
            gateway: None,
            oif: host_link.index,
            mtu: None,
            scope,
            onlink: false,
            protocol: 0,
            source: None,
        };
        host.push(messages::route(&route)?);
    }
    if plan.allocation.ipv6.is_some() {
        host.push(messages::host_address(
            host_link.index,
            gateway_v6_on_host(),
        ));
    }
    let mut pod: Vec<_> = plan
        .pod_addresses()
        .into_iter()
        .map(|a| messages::host_address(pod_index, a))
        .collect();
    pod.push(messages::bring_up(pod_index, plan.pair.pod_name, mtu));
    for gw in plan.gateways() {
        pod.push(messages::permanent_neighbour(pod_index, gw, HOST_VETH_MAC));
    }
    for r in pod_routes(plan.allocation, plan.network) {
        let route = RouteSpec {
            destination: r.destination,
            gateway: Some(r.gateway),
            oif: pod_index,
            mtu: r.mtu,
            scope: SCOPE_UNIVERSE,
            onlink: r.onlink,
            protocol: 0,
            source: None,
        };
        pod.push(messages::route(&route)?);
    }
    sockets.host.execute(&host)?;
    sockets.pod.execute(&pod)?;
    attach_host_queue(sockets, plan.pair.host_name)?;
    await_local_ipv6(&mut sockets.pod, plan)
}

/// Makes the host veth transmit now. A veth gets its carrier when both ends are up, so
/// the end raised first (the host's, above) has none when it comes up: the kernel
/// attaches its transmit queue only when the link-watch work handles the carrier
/// event, on a kernel worker that waits for the RTNL lock and for a CPU. Until then
/// every packet the host end sends is dropped (the "noop" queue, counted as TX
/// dropped): on a busy node the answer to the pod's first packet is lost that way. A
/// lookup of the link handles its pending carrier event at once (rtnl_getlink calls
/// linkwatch_sync_dev since Linux 6.7), before ADD reports the pod ready. The pod end,
/// raised second, already has its queue: it came up with its carrier on.
fn attach_host_queue(sockets: &mut Sockets, host_name: &str) -> Result<()> {
    must_find(&mut sockets.host, host_name, "host").map(drop)
}

/// How long ADD waits for the kernel to make the pod's IPv6 address local; past it the
/// kernel's workers are stuck, not just busy, and the runtime should retry. With 100
/// pods started at once on a 2-core node, 2 s was not enough: the address worker runs
/// one address at a time under the RTNL lock every ADD also takes, and 28 of 100 ADDs
/// failed, each retried by kubelet seconds later.
const LOCAL_ADDRESS_WAIT: Duration = Duration::from_secs(10);

/// The first pause between two looks at the pod's local routes: usually the first or
/// second look finds it.
const LOCAL_ADDRESS_POLL: Duration = Duration::from_micros(200);

/// The longest pause: each pause doubles up to it, so a hundred ADDs waiting at once
/// leave the CPU to the kernel worker they wait for instead of polling it away.
const LOCAL_ADDRESS_POLL_MAX: Duration = Duration::from_millis(10);

/// The local table (RT_TABLE_LOCAL), where the kernel routes a link's own addresses.
const LOCAL_TABLE: u32 = 255;

/// Waits until the pod's IPv6 address is local in the pod. The kernel accepts an IPv6
/// address at once, and the pod sends from it at once, but it routes packets *to* it
/// into the pod's stack only once its address worker has handled the address ("DAD
/// completed", also for IFA_F_NODAD addresses): until then the answers to the pod's
/// first packets are dropped in the pod as not addressed to it. That worker waits for
/// the RTNL lock and a CPU, milliseconds on a busy node, so ADD looks for the address's
/// local route, which the worker adds, before reporting the pod ready. Usually one
/// look at a handful of routes; IPv4 addresses are local synchronously. The host
/// veth's fe80::1 goes through the same worker; ADD does not wait for it: only packets
/// addressed to the gateway itself need it, and the node's route dump grows with its
/// pods.
fn await_local_ipv6(pod: &mut Netlink, plan: &PodPlan<'_>) -> Result<()> {
    let Some(address) = plan.allocation.ipv6 else {
        return Ok(());
    };
    let local = IpNet::V6(Ipv6Net::new(address, 128).expect("valid /128"));
    let deadline = Instant::now() + LOCAL_ADDRESS_WAIT;
    let mut pause = LOCAL_ADDRESS_POLL;
    loop {
        let routes = pod.routes(true)?;
        if routes
            .iter()
            .any(|r| r.table == LOCAL_TABLE && r.destination == local)
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(CniError::TryAgainLater(format!(
                "the kernel did not make {address} local in the pod within {LOCAL_ADDRESS_WAIT:?}"
            )));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(LOCAL_ADDRESS_POLL_MAX);
    }
}

/// The pod's IPv6 gateway, held by the host veth so that it answers the pod (a ping of
/// the gateway is the first thing an operator tries). Link-local addresses belong to one
/// link (RFC 4291 section 2.5.6), so every host veth holds its own; source selection
/// never picks it for the host's traffic to a pod's global address (RFC 6724 rule 2).
/// The IPv4 gateway is one address on the node's loopback, which weftd holds.
fn gateway_v6_on_host() -> IpNet {
    IpNet::V6(Ipv6Net::new(GATEWAY_V6, 128).expect("valid /128"))
}

/// Removes the host veth now (its pod end goes with it). Used when ADD fails half way
/// and when weftd is not there to do it in the background.
pub fn remove_host_veth(name: &str) -> Result<bool> {
    Ok(Netlink::connect()?.delete_link(name)?)
}

/// The routes of the families the allocation has addresses in.
fn routes_of_served_families(nl: &mut Netlink, allocation: &Allocation) -> Result<Vec<RouteInfo>> {
    let mut routes = Vec::new();
    if allocation.ipv6.is_some() {
        routes.extend(nl.routes(true)?);
    }
    if allocation.ipv4.is_some() {
        routes.extend(nl.routes(false)?);
    }
    Ok(routes)
}

/// CHECK: verifies that what ADD set up is still there, naming the first drift found.
pub fn check(plan: &PodPlan<'_>) -> Result<()> {
    let mut host = Netlink::connect()?;
    let mut pod = Netlink::connect_in(plan.pair.netns)?;
    let pod_link = must_find(&mut pod, plan.pair.pod_name, "pod")?;
    let host_link = must_find(&mut host, plan.pair.host_name, "host")?;
    let drift = |what: String| Err(CniError::Drift(what));
    if !pod_link.up {
        return drift(format!("pod interface {} is down", plan.pair.pod_name));
    }
    if !host_link.up {
        return drift(format!("host interface {} is down", plan.pair.host_name));
    }
    if pod_link.mtu != plan.network.mtu.link {
        return drift(format!(
            "pod interface {} has MTU {}, expected {}",
            plan.pair.pod_name, pod_link.mtu, plan.network.mtu.link
        ));
    }
    // The host pins each pod address to the pod's MAC. A plugin chained after weft that
    // changes the MAC (tuning `mac`) breaks that silently; name it. A MAC is requested
    // from weft itself through the `mac` capability or CNI_ARGS MAC.
    let pinned = host.neighbours(host_link.index)?;
    for addr in plan.pod_addresses() {
        match pinned.iter().find(|n| n.ip == addr.addr() && n.permanent) {
            None => return drift(format!("host neighbour entry for {} is missing", addr.addr())),
            Some(n) if n.mac != pod_link.mac => {
                return drift(format!(
                    "pod interface {} has MAC {}, but the host pins {} to {}: a plugin after weft changed the MAC (ask weft for a MAC with the mac capability or CNI_ARGS MAC instead)",
                    plan.pair.pod_name,
                    mac_text(&pod_link.mac),
                    addr.addr(),
                    mac_text(&n.mac)
                ))
            }
            Some(_) => {}
        }
    }
    let present = pod.addresses(pod_link.index)?;
    for addr in plan.pod_addresses() {
        if !present.contains(&addr) {
            return drift(format!(
                "address {addr} is missing from pod interface {}",
                plan.pair.pod_name
            ));
        }
    }
    let pod_routes_now = routes_of_served_families(&mut pod, plan.allocation)?;
    for route in pod_routes(plan.allocation, plan.network) {
        let found = pod_routes_now.iter().any(|r| {
            r.destination == route.destination
                && r.gateway == Some(route.gateway)
                && r.oif == Some(pod_link.index)
        });
        if !found {
            return drift(format!(
                "route {} via {} dev {} is missing in the pod",
                route.destination, route.gateway, plan.pair.pod_name
            ));
        }
    }
    if plan.allocation.ipv6.is_some()
        && !host
            .addresses(host_link.index)?
            .contains(&gateway_v6_on_host())
    {
        return drift(format!(
            "gateway {GATEWAY_V6} is missing on host interface {}",
            plan.pair.host_name
        ));
    }
    let host_routes = routes_of_served_families(&mut host, plan.allocation)?;
    for addr in plan.pod_addresses() {
        if !host_routes
            .iter()
            .any(|r| r.destination == addr && r.oif == Some(host_link.index))
        {
            return drift(format!(
                "host route {addr} dev {} is missing",
                plan.pair.host_name
            ));
        }
    }
    let neighbours = pod.neighbours(pod_link.index)?;
    for gw in plan.gateways() {
        if !neighbours
            .iter()
            .any(|n| n.ip == gw && n.permanent && n.mac == HOST_VETH_MAC)
        {
            return drift(format!(
                "permanent neighbour entry for gateway {gw} is missing in the pod"
            ));
        }
    }
    Ok(())
}
