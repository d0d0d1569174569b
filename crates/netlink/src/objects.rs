//! Addresses, routes and neighbour entries on a link.

use crate::{Netlink, NetlinkError};
use futures::TryStreamExt;
use ipnet::IpNet;
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags, AddressHeaderFlags};
use rtnetlink::packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourState};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteMetric, RouteScope};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::RouteMessageBuilder;
use std::net::IpAddr;

/// RT_SCOPE_UNIVERSE: a route to anywhere.
pub const SCOPE_UNIVERSE: u8 = 0;
/// RT_SCOPE_LINK: a destination on the link itself.
pub const SCOPE_LINK: u8 = 253;

/// A route to install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    /// Destination.
    pub destination: IpNet,
    /// Next hop, if any (else the destination is on the link).
    pub gateway: Option<IpAddr>,
    /// Output interface.
    pub oif: u32,
    /// Route MTU (RTAX_MTU), when the family's MTU differs from the link's.
    pub mtu: Option<u32>,
    /// Scope ([`SCOPE_LINK`] or [`SCOPE_UNIVERSE`]).
    pub scope: u8,
    /// The gateway is on the link even though no address of the link covers it
    /// (RTNH_F_ONLINK), as for a link-local gateway of a /32 pod.
    pub onlink: bool,
}

/// A route as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteInfo {
    /// Destination.
    pub destination: IpNet,
    /// Next hop.
    pub gateway: Option<IpAddr>,
    /// Output interface.
    pub oif: Option<u32>,
    /// Route MTU.
    pub mtu: Option<u32>,
    /// Scope.
    pub scope: u8,
    /// Routing table.
    pub table: u32,
}

/// A neighbour entry as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeighbourInfo {
    /// The neighbour's IP.
    pub ip: IpAddr,
    /// Its MAC.
    pub mac: Vec<u8>,
    /// Whether the entry is permanent.
    pub permanent: bool,
}

fn route_to(addr: &RouteAddress) -> Option<IpAddr> {
    match addr {
        RouteAddress::Inet(a) => Some(IpAddr::V4(*a)),
        RouteAddress::Inet6(a) => Some(IpAddr::V6(*a)),
        _ => None,
    }
}

impl Netlink {
    /// Adds a pod's host address (/128 or /32) to a link. It skips duplicate address
    /// detection (IFA_F_NODAD): weft's addresses are unique by construction, and a
    /// tentative address would leave the pod without IPv6 for a second or more (RFC 4862
    /// section 5.4). It also adds no prefix route (IFA_F_NOPREFIXROUTE): a host
    /// address's prefix is the address itself, which the local table already routes.
    pub async fn add_host_address(&self, index: u32, address: IpNet) -> Result<(), NetlinkError> {
        let mut request = self
            .handle
            .address()
            .add(index, address.addr(), address.prefix_len());
        if address.addr().is_ipv6() {
            let message = request.message_mut();
            message.header.flags |= AddressHeaderFlags::Nodad;
            message.attributes.push(AddressAttribute::Flags(
                AddressFlags::Nodad | AddressFlags::Noprefixroute,
            ));
        }
        request
            .execute()
            .await
            .map_err(|e| NetlinkError::kernel(format!("add address {address}"), e))
    }

    /// The addresses on a link.
    pub async fn addresses(&self, index: u32) -> Result<Vec<IpNet>, NetlinkError> {
        let messages: Vec<_> = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_collect()
            .await
            .map_err(|e| NetlinkError::kernel("list addresses", e))?;
        let mut out = Vec::new();
        for m in messages {
            let len = m.header.prefix_len;
            let addr = m.attributes.iter().find_map(|a| match a {
                AddressAttribute::Address(ip) => Some(*ip),
                _ => None,
            });
            if let Some(net) = addr.and_then(|ip| IpNet::new(ip, len).ok()) {
                out.push(net);
            }
        }
        Ok(out)
    }

    /// Installs a route, replacing one to the same destination: the destination's
    /// owner is whoever installs it last (a recycled pod address moves to its new veth
    /// even if the old veth has not been removed yet).
    pub async fn add_route(&self, spec: &RouteSpec) -> Result<(), NetlinkError> {
        let builder = RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(spec.destination.addr(), spec.destination.prefix_len())
            .map_err(|e| {
                NetlinkError::io(
                    format!("route to {}", spec.destination),
                    std::io::Error::other(e.to_string()),
                )
            })?
            .output_interface(spec.oif)
            .scope(RouteScope::from(spec.scope));
        let builder = match spec.gateway {
            Some(gw) => builder.gateway(gw).map_err(|e| {
                NetlinkError::io(
                    format!("route via {gw}"),
                    std::io::Error::other(e.to_string()),
                )
            })?,
            None => builder,
        };
        let builder = if spec.onlink {
            builder.onlink()
        } else {
            builder
        };
        let mut message = builder.build();
        if let Some(mtu) = spec.mtu {
            message
                .attributes
                .push(RouteAttribute::Metrics(vec![RouteMetric::Mtu(mtu)]));
        }
        let via = spec
            .gateway
            .map(|g| format!(" via {g}"))
            .unwrap_or_default();
        self.handle
            .route()
            .add(message)
            .replace()
            .execute()
            .await
            .map_err(|e| NetlinkError::kernel(format!("add route {}{via}", spec.destination), e))
    }

    /// The main table's routes of one family.
    pub async fn routes(&self, ipv6: bool) -> Result<Vec<RouteInfo>, NetlinkError> {
        let template = if ipv6 {
            RouteMessageBuilder::<std::net::Ipv6Addr>::new().build()
        } else {
            RouteMessageBuilder::<std::net::Ipv4Addr>::new().build()
        };
        let messages: Vec<_> = self
            .handle
            .route()
            .get(template)
            .execute()
            .try_collect()
            .await
            .map_err(|e| NetlinkError::kernel("list routes", e))?;
        let unspecified: IpAddr = if ipv6 {
            std::net::Ipv6Addr::UNSPECIFIED.into()
        } else {
            std::net::Ipv4Addr::UNSPECIFIED.into()
        };
        Ok(messages
            .into_iter()
            .filter_map(|m| {
                let mut info = RouteInfo {
                    destination: IpNet::new(unspecified, m.header.destination_prefix_length)
                        .ok()?,
                    gateway: None,
                    oif: None,
                    mtu: None,
                    scope: u8::from(m.header.scope),
                    table: u32::from(m.header.table),
                };
                for a in &m.attributes {
                    match a {
                        RouteAttribute::Destination(d) => {
                            info.destination =
                                IpNet::new(route_to(d)?, m.header.destination_prefix_length).ok()?
                        }
                        RouteAttribute::Gateway(g) => info.gateway = route_to(g),
                        RouteAttribute::Oif(i) => info.oif = Some(*i),
                        RouteAttribute::Table(t) => info.table = *t,
                        RouteAttribute::Metrics(ms) => {
                            for metric in ms {
                                if let RouteMetric::Mtu(mtu) = metric {
                                    info.mtu = Some(*mtu);
                                }
                            }
                        }
                        _ => {}
                    }
                }
                Some(info)
            })
            .collect())
    }

    /// Adds (or replaces) a permanent neighbour entry, so the first packet to `ip` needs
    /// no ARP or neighbour solicitation.
    pub async fn add_permanent_neighbour(
        &self,
        index: u32,
        ip: IpAddr,
        mac: [u8; 6],
    ) -> Result<(), NetlinkError> {
        self.handle
            .neighbours()
            .add(index, ip)
            .link_layer_address(&mac)
            .state(NeighbourState::Permanent)
            .replace()
            .execute()
            .await
            .map_err(|e| NetlinkError::kernel(format!("add neighbour {ip}"), e))
    }

    /// Neighbour entries of one link (both families).
    pub async fn neighbours(&self, index: u32) -> Result<Vec<NeighbourInfo>, NetlinkError> {
        let mut out = Vec::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let messages: Vec<_> = self
                .handle
                .neighbours()
                .get()
                .set_address_family(family)
                .execute()
                .try_collect()
                .await
                .map_err(|e| NetlinkError::kernel("list neighbours", e))?;
            for m in messages.into_iter().filter(|m| m.header.ifindex == index) {
                let mut ip = None;
                let mut mac = Vec::new();
                for a in m.attributes {
                    match a {
                        NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => {
                            ip = Some(IpAddr::V4(a))
                        }
                        NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) => {
                            ip = Some(IpAddr::V6(a))
                        }
                        NeighbourAttribute::LinkLayerAddress(l) => mac = l,
                        _ => {}
                    }
                }
                if let Some(ip) = ip {
                    out.push(NeighbourInfo {
                        ip,
                        mac,
                        permanent: m.header.state == NeighbourState::Permanent,
                    });
                }
            }
        }
        Ok(out)
    }
}
