//! Wiring a pod: the veth pair, addresses, routes, neighbours and sysctls, through
//! weft-netlink. Also CHECK's inspection of the same.
//!
//! The pod's gateways are link-local (169.254.1.1, fe80::1) with permanent neighbour
//! entries pointing at the host veth's fixed MAC, and the host holds permanent entries
//! for the pod's addresses: no ARP, no neighbour discovery, no proxy_arp, so the first
//! packet in either direction leaves at once.

use crate::error::{CniError, Result};
use crate::result::{mac_text, pod_routes};
use ipnet::IpNet;
use std::net::IpAddr;
use weft_netlink::{
    sysctl, Errno, LinkInfo, Netlink, NetlinkError, Netns, RouteInfo, RouteSpec, VethSpec,
    SCOPE_LINK, SCOPE_UNIVERSE,
};
use weft_wire::{Allocation, Attachment, NodeNetwork, GATEWAY_V4, GATEWAY_V6, HOST_VETH_MAC};

/// One pod interface to wire or inspect.
#[derive(Debug)]
pub struct PodPlan<'a> {
    /// Host veth name.
    pub host_name: &'a str,
    /// Pod interface name.
    pub pod_name: &'a str,
    /// Pod interface MAC.
    pub pod_mac: [u8; 6],
    /// The pod's namespace.
    pub netns: &'a Netns,
    /// Its addresses.
    pub allocation: &'a Allocation,
    /// The node's network.
    pub network: &'a NodeNetwork,
}

impl<'a> PodPlan<'a> {
    /// The plan for `attachment` with the pod interface's MAC.
    pub fn new(
        attachment: &'a Attachment,
        pod_mac: [u8; 6],
        host_name: &'a str,
        netns: &'a Netns,
        allocation: &'a Allocation,
        network: &'a NodeNetwork,
    ) -> Self {
        PodPlan {
            host_name,
            pod_name: &attachment.ifname,
            pod_mac,
            netns,
            allocation,
            network,
        }
    }

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

/// Settings written before the links come up: DAD off (addresses are unique by
/// construction, RFC 4862 section 5.4 would otherwise hold them tentative), no router
/// advertisements or SLAAC (a stray RA must not give the pod an address or route weft
/// did not assign).
fn pod_sysctls(ifname: &str) -> Vec<(String, &'static str)> {
    ["accept_dad", "accept_ra", "autoconf"]
        .into_iter()
        .map(|s| (sysctl::iface_key("ipv6", ifname, s), "0"))
        .collect()
}

/// Host veth: DAD and RAs off as in the pod; forwarding on for both families, since it
/// routes every packet of the pod.
fn host_sysctls(ifname: &str) -> Vec<(String, &'static str)> {
    let mut keys = pod_sysctls(ifname);
    keys.truncate(2);
    keys.push((sysctl::iface_key("ipv6", ifname, "forwarding"), "1"));
    keys.push((sysctl::iface_key("ipv4", ifname, "forwarding"), "1"));
    keys
}

fn write_sysctls(keys: &[(String, &str)]) -> Result<()> {
    let v6 = sysctl::ipv6_available();
    for (key, value) in keys
        .iter()
        .filter(|(k, _)| v6 || !k.starts_with("net/ipv6"))
    {
        sysctl::set(key, value)?;
    }
    Ok(())
}

async fn must_find(nl: &Netlink, name: &str, side: &str) -> Result<LinkInfo> {
    nl.link(name)
        .await?
        .ok_or_else(|| CniError::Drift(format!("{side} interface {name} is missing")))
}

/// Creates and configures everything. On error the caller tears down.
pub async fn setup(plan: &PodPlan<'_>) -> Result<()> {
    let host = Netlink::connect()?;
    let veth = VethSpec {
        host_name: plan.host_name,
        host_mac: HOST_VETH_MAC,
        pod_name: plan.pod_name,
        pod_mac: plan.pod_mac,
        pod_netns: plan.netns,
        mtu: plan.network.mtu.link,
    };
    if let Err(e) = host.create_veth(&veth).await {
        return Err(explain_exists(e, &host, plan).await);
    }
    let pod = {
        let _inside = plan.netns.enter()?;
        write_sysctls(&pod_sysctls(plan.pod_name))?;
        Netlink::connect()?
    };
    write_sysctls(&host_sysctls(plan.host_name))?;
    let (host_link, pod_link) = futures::try_join!(
        must_find(&host, plan.host_name, "host"),
        must_find(&pod, plan.pod_name, "pod")
    )?;
    futures::try_join!(
        wire_host(&host, &host_link, plan),
        wire_pod(&pod, &pod_link, plan)
    )?;
    Ok(())
}

async fn explain_exists(error: NetlinkError, host: &Netlink, plan: &PodPlan<'_>) -> CniError {
    if error.errno() != Some(Errno::Exists) {
        return error.into();
    }
    match host.link(plan.host_name).await {
        Ok(Some(_)) => CniError::InterfaceExists(format!(
            "host interface {} already exists: another ADD for this container and interface is in progress or was not cleaned up",
            plan.host_name
        )),
        _ => CniError::InterfaceExists(format!(
            "interface {} already exists in network namespace {}",
            plan.pod_name,
            plan.netns.path().display()
        )),
    }
}

async fn wire_host(nl: &Netlink, link: &LinkInfo, plan: &PodPlan<'_>) -> Result<()> {
    nl.set_up(link.index, &link.name).await?;
    for addr in plan.pod_addresses() {
        nl.add_permanent_neighbour(link.index, addr.addr(), plan.pod_mac)
            .await?;
        let scope = if addr.addr().is_ipv4() {
            SCOPE_LINK
        } else {
            SCOPE_UNIVERSE
        };
        nl.add_route(&RouteSpec {
            destination: addr,
            gateway: None,
            oif: link.index,
            mtu: None,
            scope,
        })
        .await?;
    }
    Ok(())
}

async fn wire_pod(nl: &Netlink, link: &LinkInfo, plan: &PodPlan<'_>) -> Result<()> {
    for addr in plan.pod_addresses() {
        nl.add_address(link.index, addr, true).await?;
    }
    nl.set_up(link.index, &link.name).await?;
    for gw in plan.gateways() {
        nl.add_permanent_neighbour(link.index, gw, HOST_VETH_MAC)
            .await?;
    }
    for (destination, gateway, mtu, link_scope) in pod_routes(plan.allocation, plan.network) {
        let scope = if link_scope {
            SCOPE_LINK
        } else {
            SCOPE_UNIVERSE
        };
        nl.add_route(&RouteSpec {
            destination,
            gateway,
            oif: link.index,
            mtu,
            scope,
        })
        .await?;
    }
    Ok(())
}

/// Removes the host veth now (its pod end goes with it). Used when ADD fails half way
/// and when weftd is not there to do it in the background.
pub async fn remove_host_veth(name: &str) -> Result<bool> {
    Ok(Netlink::connect()?.delete_link(name).await?)
}

/// The routes of the families the allocation has addresses in.
async fn routes_of_served_families(
    nl: &Netlink,
    allocation: &Allocation,
) -> Result<Vec<RouteInfo>> {
    let mut routes = Vec::new();
    if allocation.ipv6.is_some() {
        routes.extend(nl.routes(true).await?);
    }
    if allocation.ipv4.is_some() {
        routes.extend(nl.routes(false).await?);
    }
    Ok(routes)
}

/// CHECK: verifies that what ADD set up is still there, naming the first drift found.
pub async fn check(plan: &PodPlan<'_>) -> Result<()> {
    let host = Netlink::connect()?;
    let pod = Netlink::connect_in(plan.netns)?;
    let pod_link = must_find(&pod, plan.pod_name, "pod").await?;
    let host_link = must_find(&host, plan.host_name, "host").await?;
    let drift = |what: String| Err(CniError::Drift(what));
    if !pod_link.up {
        return drift(format!("pod interface {} is down", plan.pod_name));
    }
    if !host_link.up {
        return drift(format!("host interface {} is down", plan.host_name));
    }
    if pod_link.mtu != plan.network.mtu.link {
        return drift(format!(
            "pod interface {} has MTU {}, expected {}",
            plan.pod_name, pod_link.mtu, plan.network.mtu.link
        ));
    }
    // The host pins each pod address to the pod's MAC. A plugin chained after weft that
    // changes the MAC (tuning `mac`) breaks that silently; name it. A MAC is requested
    // from weft itself through the `mac` capability or CNI_ARGS MAC.
    let pinned = host.neighbours(host_link.index).await?;
    for addr in plan.pod_addresses() {
        match pinned.iter().find(|n| n.ip == addr.addr() && n.permanent) {
            None => return drift(format!("host neighbour entry for {} is missing", addr.addr())),
            Some(n) if n.mac != pod_link.mac => {
                return drift(format!(
                    "pod interface {} has MAC {}, but the host pins {} to {}: a plugin after weft changed the MAC (ask weft for a MAC with the mac capability or CNI_ARGS MAC instead)",
                    plan.pod_name,
                    mac_text(&pod_link.mac),
                    addr.addr(),
                    mac_text(&n.mac)
                ))
            }
            Some(_) => {}
        }
    }
    let present = pod.addresses(pod_link.index).await?;
    for addr in plan.pod_addresses() {
        if !present.contains(&addr) {
            return drift(format!(
                "address {addr} is missing from pod interface {}",
                plan.pod_name
            ));
        }
    }
    let pod_routes_now = routes_of_served_families(&pod, plan.allocation).await?;
    for (destination, gateway, _, _) in pod_routes(plan.allocation, plan.network) {
        let found = pod_routes_now.iter().any(|r| {
            r.destination == destination && r.gateway == gateway && r.oif == Some(pod_link.index)
        });
        if !found {
            let via = gateway.map(|g| format!(" via {g}")).unwrap_or_default();
            return drift(format!(
                "route {destination}{via} dev {} is missing in the pod",
                plan.pod_name
            ));
        }
    }
    let host_routes = routes_of_served_families(&host, plan.allocation).await?;
    for addr in plan.pod_addresses() {
        if !host_routes
            .iter()
            .any(|r| r.destination == addr && r.oif == Some(host_link.index))
        {
            return drift(format!(
                "host route {addr} dev {} is missing",
                plan.host_name
            ));
        }
    }
    let neighbours = pod.neighbours(pod_link.index).await?;
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
