//! The node itself: its uplink (for the MTU), the kernel switches a router needs, and
//! the pods' IPv4 gateway address on its loopback.

use crate::error::{Error, Result};
use ipnet::Ipv4Net;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use tracing::{info, warn};
use weft_netlink::{messages, sysctl, Errno, Netlink, NetlinkError};
use weft_wire::{Mode, UnderlayFamily, GATEWAY_V4};

/// The index of `lo`, which holds the pods' IPv4 gateway: the same in every network
/// namespace (the kernel registers it first, as LOOPBACK_IFINDEX).
const LOOPBACK_INDEX: u32 = 1;
/// MTU assumed when no uplink can be found (a node with no default route).
const FALLBACK_MTU: u32 = 1500;

/// The uplink as weftd sees it.
#[derive(Debug, Clone)]
pub struct Uplink {
    pub name: Option<String>,
    pub index: Option<u32>,
    pub mtu: u32,
    pub family: UnderlayFamily,
    /// The uplink's first global IPv4 address: the VXLAN source on an IPv4 underlay.
    pub ipv4: Option<Ipv4Addr>,
    /// Its first global IPv6 address: the VXLAN source on an IPv6 underlay.
    pub ipv6: Option<Ipv6Addr>,
}

impl Uplink {
    /// The VXLAN source address: the uplink's address of the underlay family.
    pub fn vtep_address(&self) -> Option<IpAddr> {
        match self.family {
            UnderlayFamily::Ipv4 => self.ipv4.map(IpAddr::V4),
            UnderlayFamily::Ipv6 => self.ipv6.map(IpAddr::V6),
        }
    }
}

/// Finds the uplink: the named interface, else the one carrying the default route
/// (IPv4 first, then IPv6). Its addresses decide the VXLAN underlay family: IPv4 when it
/// has a global IPv4 address, else IPv6 when it has a global IPv6 address.
pub fn discover_uplink(nl: &mut Netlink, named: Option<&str>) -> Result<Uplink> {
    let name = match named {
        Some(n) => Some(n.to_owned()),
        None => default_route_interface(nl).map_err(Error::netlink("finding the default route"))?,
    };
    let Some(name) = name else {
        warn!(
            mtu = FALLBACK_MTU,
            "no default route and no --underlay-interface: assuming an uplink MTU"
        );
        return Ok(Uplink {
            name: None,
            index: None,
            mtu: FALLBACK_MTU,
            family: UnderlayFamily::Ipv4,
            ipv4: None,
            ipv6: None,
        });
    };
    let link = nl
        .link(&name)
        .map_err(Error::netlink(format!("reading the uplink {name}")))?
        .ok_or_else(|| Error::Uplink(format!("--underlay-interface: '{name}' does not exist")))?;
    let addresses = nl
        .addresses(link.index)
        .map_err(Error::netlink(format!("reading the addresses of {name}")))?;
    let ipv4 = addresses.iter().find_map(|a| match a.addr() {
        IpAddr::V4(v4) if !v4.is_loopback() && !v4.is_link_local() => Some(v4),
        _ => None,
    });
    let ipv6 = addresses.iter().find_map(|a| match a.addr() {
        IpAddr::V6(v6) if !v6.is_loopback() && !v6.is_unicast_link_local() => Some(v6),
        _ => None,
    });
    let family = if ipv4.is_some() || ipv6.is_none() {
        UnderlayFamily::Ipv4
    } else {
        UnderlayFamily::Ipv6
    };
    Ok(Uplink {
        name: Some(name),
        index: Some(link.index),
        mtu: link.mtu,
        family,
        ipv4,
        ipv6,
    })
}

fn default_route_interface(nl: &mut Netlink) -> Result<Option<String>, NetlinkError> {
    for ipv6 in [false, true] {
        let routes = nl.routes(ipv6)?;
        let oif = routes
            .iter()
            .find(|r| r.destination.prefix_len() == 0 && r.table == 254)
            .and_then(|r| r.oif);
        if let Some(oif) = oif {
            let links = nl.links()?;
            return Ok(links.into_iter().find(|l| l.index == oif).map(|l| l.name));
        }
    }
    Ok(None)
}

/// Turns the node into a router for its pods. Before IPv6 forwarding goes on, every
/// interface that accepts router advertisements is moved to accept_ra=2: with forwarding
/// on, accept_ra=1 stops accepting RAs and the node would lose its RA-learned default
/// route (a known pain of CNI plugins). Each switch is read first and written only when
/// it differs: a `forwarding` write takes RTNL in a trylock-and-restart loop, which a
/// restarting weftd should not contend with pods being wired.
pub fn enable_forwarding(mode: Mode, sysctls: &sysctl::Root) -> Result<()> {
    let sysctl_error = |key: &str, value: &str| {
        let root = sysctls.dir().display().to_string();
        Error::netlink(format!("--proc-sys {root}: sysctl {key}={value}"))
    };
    let ensure =
        |key: &str, value: &str| sysctls.ensure(key, value).map_err(sysctl_error(key, value));
    if mode.has_ipv4() {
        ensure("net/ipv4/ip_forward", "1")?;
    }
    if mode.has_ipv6() {
        if !sysctls.ipv6_available() {
            return Err(Error::Flag(format!(
                "--mode: IPv6 is served but {} shows no net/ipv6 (IPv6 disabled in the kernel, or --proc-sys mounts no net/)",
                sysctls.dir().display()
            )));
        }
        let interfaces = sysctls
            .interfaces("ipv6")
            .map_err(sysctl_error("net/ipv6/conf", "(listing)"))?;
        for ifname in interfaces {
            let key = sysctl::iface_key("ipv6", &ifname, "accept_ra");
            if sysctls.get(&key).ok().as_deref() == Some("1") {
                sysctls.set(&key, "2").map_err(sysctl_error(&key, "2"))?;
                info!(interface = %ifname, "accept_ra 1 -> 2 so router advertisements survive forwarding");
            }
        }
        ensure("net/ipv6/conf/all/forwarding", "1")?;
    }
    Ok(())
}

/// Puts the pods' IPv4 gateway, 169.254.1.1/32, on the node's loopback, so it answers
/// the pods (their default route points at it). Link scope: the kernel's source address
/// selection (`inet_select_addr`, `in_dev_select_addr`) skips link-scoped addresses of
/// other devices, so the node never sends its own traffic to pods (kubelet's probes)
/// from the gateway, only from its own addresses. True when it was added; already there
/// is fine.
pub fn ensure_ipv4_gateway(nl: &mut Netlink) -> Result<bool> {
    let gateway = Ipv4Net::from(GATEWAY_V4);
    match nl.execute_one(messages::link_scoped_address(LOOPBACK_INDEX, gateway)) {
        Ok(()) => Ok(true),
        Err(e) if e.errno() == Some(Errno::Exists) => Ok(false),
        Err(e) => Err(Error::netlink(format!("{gateway} on lo"))(e)),
    }
}
