//! The node itself: its uplink (for the MTU) and the kernel switches a router needs.

use crate::error::{Error, Result};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use tracing::{info, warn};
use weft_netlink::{sysctl, Netlink, NetlinkError};
use weft_wire::{Mode, UnderlayFamily};

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
/// route (a known pain of CNI plugins).
pub fn enable_forwarding(mode: Mode) -> Result<()> {
    let set = |key: &str, value: &str| {
        sysctl::set(key, value).map_err(Error::netlink(format!("sysctl {key}={value}")))
    };
    if mode.has_ipv4() {
        set("net.ipv4.ip_forward", "1")?;
    }
    if mode.has_ipv6() {
        if !sysctl::ipv6_available() {
            return Err(Error::Flag(
                "--mode: IPv6 is served but this kernel has IPv6 disabled".into(),
            ));
        }
        let entries = std::fs::read_dir("/proc/sys/net/ipv6/conf").map_err(|e| {
            Error::Uplink(format!(
                "listing interfaces in /proc/sys/net/ipv6/conf: {e}"
            ))
        })?;
        for entry in entries.flatten() {
            let ifname = entry.file_name().to_string_lossy().into_owned();
            if ifname == "all" || ifname == "default" {
                continue;
            }
            let key = sysctl::iface_key("ipv6", &ifname, "accept_ra");
            if sysctl::get(&key).ok().as_deref() == Some("1") {
                set(&key, "2")?;
                info!(interface = %ifname, "accept_ra 1 -> 2 so router advertisements survive forwarding");
            }
        }
        set("net/ipv6/conf/all/forwarding", "1")?;
    }
    Ok(())
}
