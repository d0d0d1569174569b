//! The overlay's kernel objects: the VXLAN device and its forwarding database (FDB), and
//! the removal requests convergence needs for routes and neighbours. The Silk/Flannel
//! scheme: per peer a route via the peer's overlay gateway, a permanent neighbour entry
//! gateway -> peer VTEP MAC, and a permanent FDB entry VTEP MAC -> peer underlay address.

use crate::messages::{Request, CHANGE, CREATE_EXCL, CREATE_REPLACE, DUMP};
use crate::{Errno, LinkInfo, Netlink, NetlinkError};
use ipnet::IpNet;
use rtnetlink::packet_route::link::{InfoData, InfoVxlan, LinkInfo as RtLinkInfo};
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use rtnetlink::packet_route::route::{RouteProtocol, RouteType};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::{LinkUnspec, LinkVxlan, RouteMessageBuilder};
use std::net::IpAddr;

/// The VXLAN device weft wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanSpec {
    /// Device name.
    pub name: String,
    /// VXLAN network identifier.
    pub vni: u32,
    /// UDP destination port.
    pub port: u16,
    /// Source address of the encapsulated packets: the node's underlay address.
    pub local: IpAddr,
    /// The underlay interface the tunnel is bound to.
    pub underlay_index: u32,
    /// The device's MAC (the node's VTEP MAC).
    pub mac: [u8; 6],
}

/// The VXLAN parameters of an existing device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VxlanInfo {
    /// VNI.
    pub vni: Option<u32>,
    /// UDP port.
    pub port: Option<u16>,
    /// Local (source) address.
    pub local: Option<IpAddr>,
    /// Whether the device learns remote MACs from received packets.
    pub learning: Option<bool>,
    /// Underlay interface it is bound to.
    pub underlay_index: Option<u32>,
}

impl VxlanSpec {
    /// Whether an existing device already is this one (so it is kept, and flows through
    /// it are undisturbed). The MAC, MTU and up state are set in place, not compared.
    pub fn matches(&self, link: &LinkInfo) -> bool {
        let Some(info) = &link.vxlan else {
            return false;
        };
        link.kind == "vxlan"
            && info.vni == Some(self.vni)
            && info.port == Some(self.port)
            && info.local == Some(self.local)
            && info.learning == Some(false)
            && info.underlay_index == Some(self.underlay_index)
    }
}

/// A forwarding database entry of a VXLAN device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FdbInfo {
    /// The remote MAC.
    pub mac: [u8; 6],
    /// The underlay address packets to that MAC are sent to.
    pub destination: Option<IpAddr>,
    /// Whether the entry is permanent.
    pub permanent: bool,
}

/// Creates the VXLAN device, down: learning off (every remote MAC is written by weft, and
/// a learned entry could be spoofed by any sender of UDP to the port), bound to the
/// underlay interface, with its MAC.
pub fn create_vxlan(spec: &VxlanSpec) -> Request {
    let builder = LinkVxlan::new(&spec.name, spec.vni)
        .port(spec.port)
        .learning(false)
        .dev(spec.underlay_index);
    let builder = match spec.local {
        IpAddr::V4(a) => builder.local(a),
        IpAddr::V6(a) => builder.local6(a),
    };
    Request {
        message: RouteNetlinkMessage::NewLink(builder.address(spec.mac.to_vec()).build()),
        flags: CREATE_EXCL,
        what: format!(
            "create VXLAN device {} (VNI {}, port {}, local {})",
            spec.name, spec.vni, spec.port, spec.local
        ),
    }
}

/// Sets a link's MAC.
pub fn set_mac(index: u32, name: &str, mac: [u8; 6]) -> Request {
    Request {
        message: RouteNetlinkMessage::SetLink(
            LinkUnspec::new_with_index(index)
                .address(mac.to_vec())
                .build(),
        ),
        flags: CHANGE,
        what: format!("set the MAC of {name}"),
    }
}

fn fdb_message(index: u32, mac: [u8; 6], destination: IpAddr) -> NeighbourMessage {
    let mut message = NeighbourMessage::default();
    message.header.family = AddressFamily::Bridge;
    message.header.ifindex = index;
    message.header.state = NeighbourState::Permanent;
    // NTF_SELF: the entry belongs to the VXLAN device itself, not to a bridge above it.
    message.header.flags = NeighbourFlags::Own;
    message.header.kind = RouteType::Unspec;
    message
        .attributes
        .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
    message
        .attributes
        .push(NeighbourAttribute::Destination(NeighbourAddress::from(
            destination,
        )));
    message
}

/// Adds (or replaces) a permanent FDB entry: frames to `mac` go to `destination`.
pub fn fdb_entry(index: u32, mac: [u8; 6], destination: IpAddr) -> Request {
    Request {
        message: RouteNetlinkMessage::NewNeighbour(fdb_message(index, mac, destination)),
        flags: CREATE_REPLACE,
        what: format!("add FDB entry {} dst {destination}", format_mac(&mac)),
    }
}

/// Removes an FDB entry.
pub fn delete_fdb(index: u32, mac: [u8; 6], destination: IpAddr) -> Request {
    Request {
        message: RouteNetlinkMessage::DelNeighbour(fdb_message(index, mac, destination)),
        flags: CHANGE,
        what: format!("remove FDB entry {} dst {destination}", format_mac(&mac)),
    }
}

/// Removes a neighbour entry.
pub fn delete_neighbour(index: u32, ip: IpAddr) -> Request {
    let mut message = NeighbourMessage::default();
    message.header.family = match ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    message.header.ifindex = index;
    message
        .attributes
        .push(NeighbourAttribute::Destination(NeighbourAddress::from(ip)));
    Request {
        message: RouteNetlinkMessage::DelNeighbour(message),
        flags: CHANGE,
        what: format!("remove neighbour {ip}"),
    }
}

/// Removes the main-table route to `destination` tagged with `protocol` (the kernel
/// matches the protocol, so a route someone else installed there is left alone).
pub fn delete_route(destination: IpNet, protocol: u8) -> Result<Request, NetlinkError> {
    let message = route_to(destination)?
        .protocol(RouteProtocol::from(protocol))
        .build();
    Ok(route_removal(
        message,
        format!("remove route {destination}"),
    ))
}

/// A route message builder for `destination`.
fn route_to(destination: IpNet) -> Result<RouteMessageBuilder<IpAddr>, NetlinkError> {
    RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(destination.addr(), destination.prefix_len())
        .map_err(|e| {
            NetlinkError::io(
                format!("route to {destination}"),
                std::io::Error::other(e.to_string()),
            )
        })
}

/// The request that removes the route `message` describes.
fn route_removal(
    mut message: rtnetlink::packet_route::route::RouteMessage,
    what: String,
) -> Request {
    message.header.scope = rtnetlink::packet_route::route::RouteScope::NoWhere;
    Request {
        message: RouteNetlinkMessage::DelRoute(message),
        flags: CHANGE,
        what,
    }
}

/// An `unreachable` route to `destination` in the main table, tagged with `protocol`,
/// at `metric`: the kernel answers packets to it with ICMP destination unreachable
/// instead of forwarding them. Never replaces a route: one already there at the same
/// metric fails with EEXIST.
pub fn unreachable_route(
    destination: IpNet,
    protocol: u8,
    metric: u32,
) -> Result<Request, NetlinkError> {
    let message = unreachable_message(destination, protocol, metric)?;
    Ok(Request {
        message: RouteNetlinkMessage::NewRoute(message),
        flags: CREATE_EXCL,
        what: format!("add unreachable route {destination} metric {metric}"),
    })
}

/// Removes the [`unreachable_route`] to `destination` at `metric` tagged `protocol` (the
/// kernel matches type, protocol and metric, so no other route there is touched).
pub fn delete_unreachable_route(
    destination: IpNet,
    protocol: u8,
    metric: u32,
) -> Result<Request, NetlinkError> {
    let message = unreachable_message(destination, protocol, metric)?;
    Ok(route_removal(
        message,
        format!("remove unreachable route {destination} metric {metric}"),
    ))
}

fn unreachable_message(
    destination: IpNet,
    protocol: u8,
    metric: u32,
) -> Result<rtnetlink::packet_route::route::RouteMessage, NetlinkError> {
    let message = route_to(destination)?
        .kind(RouteType::Unreachable)
        .protocol(RouteProtocol::from(protocol))
        .priority(metric)
        .build();
    Ok(message)
}

fn dump_fdb(index: u32) -> Request {
    let mut message = NeighbourMessage::default();
    message.header.family = AddressFamily::Bridge;
    // The kernel filters the dump to this device (rtnl_fdb_dump's brport_idx).
    message.header.ifindex = index;
    Request {
        message: RouteNetlinkMessage::GetNeighbour(message),
        flags: DUMP,
        what: "list FDB entries".into(),
    }
}

/// Reads the VXLAN attributes of a link, if it is one.
pub(crate) fn vxlan_info(infos: &[RtLinkInfo]) -> Option<VxlanInfo> {
    let mut out = None;
    for i in infos {
        if let RtLinkInfo::Data(InfoData::Vxlan(attributes)) = i {
            let mut info = VxlanInfo::default();
            for a in attributes {
                match a {
                    InfoVxlan::Id(v) => info.vni = Some(*v),
                    InfoVxlan::Port(p) => info.port = Some(*p),
                    InfoVxlan::Local(a) => info.local = Some(IpAddr::V4(*a)),
                    InfoVxlan::Local6(a) => info.local = Some(IpAddr::V6(*a)),
                    InfoVxlan::Learning(l) => info.learning = Some(*l),
                    InfoVxlan::Link(l) => info.underlay_index = Some(*l),
                    _ => {}
                }
            }
            out = Some(info);
        }
    }
    out
}

fn fdb_info(message: &NeighbourMessage) -> Option<FdbInfo> {
    let mut mac = None;
    let mut destination = None;
    for a in &message.attributes {
        match a {
            NeighbourAttribute::LinkLayerAddress(l) => mac = <[u8; 6]>::try_from(l.as_slice()).ok(),
            NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => {
                destination = Some(IpAddr::V4(*a))
            }
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) => {
                destination = Some(IpAddr::V6(*a))
            }
            NeighbourAttribute::Destination(NeighbourAddress::Other(bytes)) => {
                destination = match bytes.len() {
                    4 => <[u8; 4]>::try_from(bytes.as_slice()).ok().map(IpAddr::from),
                    16 => <[u8; 16]>::try_from(bytes.as_slice())
                        .ok()
                        .map(IpAddr::from),
                    _ => None,
                }
            }
            _ => {}
        }
    }
    Some(FdbInfo {
        mac: mac?,
        destination,
        permanent: message.header.state == NeighbourState::Permanent,
    })
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: &[u8]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

impl Netlink {
    /// The FDB entries of the device `index`.
    pub fn fdb(&mut self, index: u32) -> Result<Vec<FdbInfo>, NetlinkError> {
        Ok(self
            .dump(dump_fdb(index))?
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewNeighbour(n) if n.header.ifindex == index => fdb_info(n),
                _ => None,
            })
            .collect())
    }

    /// Makes the VXLAN device match `spec` and be up with `mtu`. A device that already
    /// matches is kept as it is (flows through it are undisturbed); one with other
    /// tunnel parameters is replaced. Returns the device and whether it was (re)created.
    pub fn ensure_vxlan(
        &mut self,
        spec: &VxlanSpec,
        mtu: u32,
    ) -> Result<(LinkInfo, bool), NetlinkError> {
        let mut created = false;
        let existing = self.link(&spec.name)?;
        let link = match existing {
            Some(link) if spec.matches(&link) => link,
            other => {
                if other.is_some() {
                    self.delete_link(&spec.name)?;
                }
                match self.execute_one(create_vxlan(spec)) {
                    Err(e) if e.errno() == Some(Errno::Exists) => {}
                    other => other?,
                }
                created = true;
                self.link(&spec.name)?.ok_or_else(|| {
                    NetlinkError::io(
                        format!("create VXLAN device {}", spec.name),
                        std::io::Error::other("device vanished after creation"),
                    )
                })?
            }
        };
        let mut requests = Vec::new();
        if link.mac != spec.mac {
            requests.push(set_mac(link.index, &spec.name, spec.mac));
        }
        if !link.up || link.mtu != mtu {
            requests.push(crate::messages::bring_up(link.index, &spec.name, Some(mtu)));
        }
        self.execute(&requests)?;
        Ok((link, created))
    }
}
