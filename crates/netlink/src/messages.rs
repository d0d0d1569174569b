//! Building and reading rtnetlink messages. Every request weft sends is made here, with
//! its netlink flags and a description for errors; every answer is read here.

use crate::NetlinkError;
use ipnet::{IpNet, Ipv4Net};
use rtnetlink::packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_ECHO, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST,
};
use rtnetlink::packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressScope,
};
use rtnetlink::packet_route::link::{
    AfSpecInet, AfSpecInet6, AfSpecUnspec, InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags,
    LinkInfo as RtLinkInfo, LinkMessage,
};
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteMetric, RouteProtocol, RouteScope, RouteType,
};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::{LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder};
use std::net::IpAddr;

/// RT_SCOPE_UNIVERSE: a route to anywhere.
pub const SCOPE_UNIVERSE: u8 = 0;
/// RT_SCOPE_LINK: a destination on the link itself.
pub const SCOPE_LINK: u8 = 253;

/// The link group weft parks doomed veths in ("weft" in ASCII): nothing else uses it, so
/// deleting the group deletes exactly what was parked there.
pub(crate) const DOOMED_GROUP: u32 = 0x7765_6674;

/// One request: the message, its netlink flags, and what it does, for error messages.
#[derive(Debug, Clone)]
pub struct Request {
    pub(crate) message: RouteNetlinkMessage,
    pub(crate) flags: u16,
    pub(crate) what: String,
}

impl Request {
    /// The same request failing with EEXIST where it would have replaced an entry
    /// already there (NLM_F_EXCL instead of NLM_F_REPLACE): for entries others may own.
    pub fn exclusive(mut self) -> Request {
        if self.flags == CREATE_REPLACE {
            self.flags = CREATE_EXCL;
        }
        self
    }
}

pub(crate) const CREATE_EXCL: u16 = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
pub(crate) const CREATE_REPLACE: u16 = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE;
pub(crate) const CHANGE: u16 = NLM_F_REQUEST | NLM_F_ACK;
pub(crate) const DUMP: u16 = NLM_F_REQUEST | NLM_F_DUMP;
pub(crate) const GET: u16 = NLM_F_REQUEST;

/// A veth pair whose pod end is born inside the pod's namespace (netavark does the
/// same), so it never appears, even briefly, in the host namespace under a clashing name.
#[derive(Debug)]
pub struct VethSpec<'a> {
    /// Host end's name.
    pub host_name: &'a str,
    /// Host end's MAC.
    pub host_mac: [u8; 6],
    /// Pod end's name (`CNI_IFNAME`).
    pub pod_name: &'a str,
    /// Pod end's MAC.
    pub pod_mac: [u8; 6],
    /// The pod's namespace.
    pub pod_netns: &'a crate::Netns,
}

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
    /// Routing protocol (rtm_protocol) the route is tagged with; 0 lets the kernel pick
    /// (boot). weftd tags its peer routes so it can find exactly its own.
    pub protocol: u8,
    /// Preferred source address for traffic the node itself sends along the route.
    pub source: Option<IpAddr>,
}

/// What weft needs to know of a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    /// Interface index.
    pub index: u32,
    /// Name.
    pub name: String,
    /// MAC address.
    pub mac: Vec<u8>,
    /// MTU.
    pub mtu: u32,
    /// Administratively up.
    pub up: bool,
    /// `veth`, `bridge`, `vxlan`...; empty for kinds without link info (loopback).
    pub kind: String,
    /// The tunnel parameters, when the link is a VXLAN device.
    pub vxlan: Option<crate::VxlanInfo>,
    /// IFLA_LINK: for a veth, its peer's index, in the peer's namespace when
    /// `peer_elsewhere` says the peer lives in another one.
    pub peer_index: Option<u32>,
    /// IFLA_LINK_NETNSID is present: the peer is in another namespace.
    pub peer_elsewhere: bool,
    /// The per-interface settings the kernel reported with the link.
    pub conf: LinkConf,
}

/// Per-interface settings as the kernel reports them with a link (IFLA_AF_SPEC: the
/// AF_INET and AF_INET6 devconf arrays), i.e. what /proc/sys/net/ipv{4,6}/conf/NAME/
/// holds. Only the settings weft writes are kept; `None` where not reported (a family
/// the kernel lacks). A link just created and echoed carries them, so its settings can
/// be checked without a file read each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkConf {
    /// `ipv4/conf/NAME/forwarding`.
    pub ipv4_forwarding: Option<i32>,
    /// `ipv6/conf/NAME/forwarding`.
    pub ipv6_forwarding: Option<i32>,
    /// `ipv6/conf/NAME/accept_ra`.
    pub ipv6_accept_ra: Option<i32>,
    /// `ipv6/conf/NAME/accept_dad`.
    pub ipv6_accept_dad: Option<i32>,
}

impl LinkConf {
    /// The reported value of `net/<family>/conf/NAME/<setting>` (`family` "ipv4" or
    /// "ipv6"), for the settings kept.
    pub fn get(&self, family: &str, setting: &str) -> Option<i32> {
        match (family, setting) {
            ("ipv4", "forwarding") => self.ipv4_forwarding,
            ("ipv6", "forwarding") => self.ipv6_forwarding,
            ("ipv6", "accept_ra") => self.ipv6_accept_ra,
            ("ipv6", "accept_dad") => self.ipv6_accept_dad,
            _ => None,
        }
    }

    fn read(&mut self, specs: &[AfSpecUnspec]) {
        for spec in specs {
            match spec {
                AfSpecUnspec::Inet(inet) => {
                    let devconf = inet.iter().find_map(|a| match a {
                        AfSpecInet::DevConf(c) => Some(c),
                        _ => None,
                    });
                    self.ipv4_forwarding = devconf.map(|c| c.forwarding);
                }
                AfSpecUnspec::Inet6(inet6) => {
                    let devconf = inet6.iter().find_map(|a| match a {
                        AfSpecInet6::DevConf(c) => Some(c),
                        _ => None,
                    });
                    self.ipv6_forwarding = devconf.map(|c| c.forwarding);
                    self.ipv6_accept_ra = devconf.map(|c| c.accept_ra);
                    self.ipv6_accept_dad = devconf.map(|c| c.accept_dad);
                }
                _ => {}
            }
        }
    }
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
    /// Routing protocol (rtm_protocol).
    pub protocol: u8,
    /// Preferred source address.
    pub source: Option<IpAddr>,
    /// Whether packets to it are forwarded (RTN_UNICAST), not refused or dropped
    /// (`unreachable`, `blackhole`, ...) or local.
    pub unicast: bool,
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

/// Creates a veth pair, both ends down with the kernel's default MTU: [`bring_up`] sets
/// the MTU in the same request that raises a link, so the pair can be made before the
/// MTU is known.
///
/// Each end gets one TX and one RX queue. The kernel's default for veth is one of each
/// per possible CPU, and registering a device registers sysfs objects per queue: on a
/// 2-core machine one queue each makes creating the pair ~20% cheaper (430 against 530
/// µs per pair in `ip -batch`), and the saving grows with the core count. The extra
/// queues serve only veth XDP and threaded NAPI, which weft does not use; a veth with
/// no XDP program delivers every packet on the caller's CPU whatever its queue count.
pub fn create_veth(spec: &VethSpec<'_>) -> Request {
    use std::os::fd::AsRawFd;
    let mut peer = LinkMessageBuilder::<LinkUnspec>::new()
        .name(spec.pod_name.to_owned())
        .address(spec.pod_mac.to_vec())
        .setns_by_fd(spec.pod_netns.file().as_raw_fd())
        .build();
    peer.attributes.extend(single_queue());
    let mut message = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
        .name(spec.host_name.to_owned())
        .address(spec.host_mac.to_vec())
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
        .build();
    message.attributes.extend(single_queue());
    Request {
        message: RouteNetlinkMessage::NewLink(message),
        // NLM_F_ECHO: the kernel answers with the new host end (index, and its peer's
        // index in the pod namespace), which saves looking both up afterwards.
        flags: CREATE_EXCL | NLM_F_ECHO,
        what: format!(
            "create veth {} (pod side {})",
            spec.host_name, spec.pod_name
        ),
    }
}

/// IFLA_NUM_TX_QUEUES and IFLA_NUM_RX_QUEUES of 1 (see [`create_veth`]).
fn single_queue() -> [LinkAttribute; 2] {
    [LinkAttribute::NumTxQueues(1), LinkAttribute::NumRxQueues(1)]
}

/// Sets a link up, and its MTU in the same request when given.
pub fn bring_up(index: u32, name: &str, mtu: Option<u32>) -> Request {
    let builder = LinkUnspec::new_with_index(index).up();
    let builder = match mtu {
        Some(mtu) => builder.mtu(mtu),
        None => builder,
    };
    Request {
        message: RouteNetlinkMessage::SetLink(builder.build()),
        flags: CHANGE,
        what: format!("set link {name} up (mtu {mtu:?})"),
    }
}

/// Moves a link into the group [`delete_doomed`] removes.
pub(crate) fn park_for_removal(index: u32, name: &str) -> Request {
    Request {
        message: RouteNetlinkMessage::SetLink(
            LinkUnspec::new_with_index(index)
                .link_group(DOOMED_GROUP)
                .build(),
        ),
        flags: CHANGE,
        what: format!("park link {name} for removal"),
    }
}

/// Deletes every link parked by [`park_for_removal`] in one kernel operation
/// (RTM_DELLINK by IFLA_GROUP): one RCU grace period for all of them.
pub(crate) fn delete_doomed(names: &[String]) -> Request {
    let mut message = LinkMessage::default();
    message.attributes.push(LinkAttribute::Group(DOOMED_GROUP));
    Request {
        message: RouteNetlinkMessage::DelLink(message),
        flags: CHANGE,
        what: format!("delete links {}", names.join(", ")),
    }
}

/// Looks a link up by name.
pub(crate) fn get_link(name: &str) -> Request {
    let message = LinkUnspec::new_with_name(name).build();
    Request {
        message: RouteNetlinkMessage::GetLink(message),
        flags: GET,
        what: format!("look up link {name}"),
    }
}

/// Lists every link.
pub(crate) fn dump_links() -> Request {
    Request {
        message: RouteNetlinkMessage::GetLink(LinkMessage::default()),
        flags: DUMP,
        what: "list links".into(),
    }
}

/// Adds a pod's host address (/128 or /32). It skips duplicate address detection
/// (IFA_F_NODAD): weft's addresses are unique by construction, and a tentative address
/// would leave the pod without IPv6 for a second or more (RFC 4862 section 5.4). It also
/// adds no prefix route (IFA_F_NOPREFIXROUTE): a host address's prefix is the address
/// itself, which the local table already routes.
pub fn host_address(index: u32, address: IpNet) -> Request {
    let mut message = AddressMessage::default();
    message.header.index = index;
    message.header.prefix_len = address.prefix_len();
    message.header.family = match address {
        IpNet::V4(_) => AddressFamily::Inet,
        IpNet::V6(_) => AddressFamily::Inet6,
    };
    message
        .attributes
        .push(AddressAttribute::Local(address.addr()));
    message
        .attributes
        .push(AddressAttribute::Address(address.addr()));
    if address.addr().is_ipv6() {
        message.header.flags |= AddressHeaderFlags::Nodad;
        message.attributes.push(AddressAttribute::Flags(
            AddressFlags::Nodad | AddressFlags::Noprefixroute,
        ));
    }
    Request {
        message: RouteNetlinkMessage::NewAddress(message),
        flags: CREATE_EXCL,
        what: format!("add address {address}"),
    }
}

/// Adds `address` (IPv4) to a link with link scope: the node answers it, but never picks
/// it as the source of its own packets to other destinations (the kernel's source
/// selection skips link-scoped addresses on other links).
pub fn link_scoped_address(index: u32, address: Ipv4Net) -> Request {
    let mut request = host_address(index, IpNet::V4(address));
    if let RouteNetlinkMessage::NewAddress(message) = &mut request.message {
        message.header.scope = AddressScope::Link;
    }
    request
}

/// Lists the addresses of one family.
pub(crate) fn dump_addresses() -> Request {
    Request {
        message: RouteNetlinkMessage::GetAddress(AddressMessage::default()),
        flags: DUMP,
        what: "list addresses".into(),
    }
}

/// Installs a route, replacing one to the same destination: the destination's owner is
/// whoever installs it last (a recycled pod address moves to its new veth even if the
/// old veth has not been removed yet).
pub fn route(spec: &RouteSpec) -> Result<Request, NetlinkError> {
    let invalid = |e: &dyn std::fmt::Display| {
        NetlinkError::io(
            format!("route to {}", spec.destination),
            std::io::Error::other(e.to_string()),
        )
    };
    let builder = RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(spec.destination.addr(), spec.destination.prefix_len())
        .map_err(|e| invalid(&e))?
        .output_interface(spec.oif)
        .scope(RouteScope::from(spec.scope));
    let builder = match spec.gateway {
        Some(gw) => builder.gateway(gw).map_err(|e| invalid(&e))?,
        None => builder,
    };
    let builder = if spec.onlink {
        builder.onlink()
    } else {
        builder
    };
    let builder = if spec.protocol != 0 {
        builder.protocol(RouteProtocol::from(spec.protocol))
    } else {
        builder
    };
    let mut message = builder.build();
    if let Some(source) = spec.source {
        message
            .attributes
            .push(RouteAttribute::PrefSource(match source {
                IpAddr::V4(a) => RouteAddress::Inet(a),
                IpAddr::V6(a) => RouteAddress::Inet6(a),
            }));
    }
    if let Some(mtu) = spec.mtu {
        message
            .attributes
            .push(RouteAttribute::Metrics(vec![RouteMetric::Mtu(mtu)]));
    }
    let via = spec
        .gateway
        .map(|g| format!(" via {g}"))
        .unwrap_or_default();
    Ok(Request {
        message: RouteNetlinkMessage::NewRoute(message),
        flags: CREATE_REPLACE,
        what: format!("add route {}{via}", spec.destination),
    })
}

/// Lists the routes of one family.
pub(crate) fn dump_routes(ipv6: bool) -> Request {
    let message = if ipv6 {
        RouteMessageBuilder::<std::net::Ipv6Addr>::new().build()
    } else {
        RouteMessageBuilder::<std::net::Ipv4Addr>::new().build()
    };
    Request {
        message: RouteNetlinkMessage::GetRoute(message),
        flags: DUMP,
        what: "list routes".into(),
    }
}

/// Adds (or replaces) a permanent neighbour entry, so the first packet to `ip` needs no
/// ARP or neighbour solicitation.
pub fn permanent_neighbour(index: u32, ip: IpAddr, mac: [u8; 6]) -> Request {
    let mut message = NeighbourMessage::default();
    message.header.family = match ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    message.header.ifindex = index;
    message.header.state = NeighbourState::Permanent;
    message.header.kind = RouteType::Unspec;
    message
        .attributes
        .push(NeighbourAttribute::Destination(match ip {
            IpAddr::V4(a) => NeighbourAddress::Inet(a),
            IpAddr::V6(a) => NeighbourAddress::Inet6(a),
        }));
    message
        .attributes
        .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
    Request {
        message: RouteNetlinkMessage::NewNeighbour(message),
        flags: CREATE_REPLACE,
        what: format!("add neighbour {ip}"),
    }
}

/// Lists neighbour entries of one family.
pub(crate) fn dump_neighbours(family: AddressFamily) -> Request {
    let mut message = NeighbourMessage::default();
    message.header.family = family;
    Request {
        message: RouteNetlinkMessage::GetNeighbour(message),
        flags: DUMP,
        what: "list neighbours".into(),
    }
}

pub(crate) fn link_info(message: LinkMessage) -> LinkInfo {
    let mut info = LinkInfo {
        index: message.header.index,
        name: String::new(),
        mac: Vec::new(),
        mtu: 0,
        up: message.header.flags.contains(LinkFlags::Up),
        kind: String::new(),
        vxlan: None,
        peer_index: None,
        peer_elsewhere: false,
        conf: LinkConf::default(),
    };
    for attribute in message.attributes {
        match attribute {
            LinkAttribute::AfSpecUnspec(specs) => info.conf.read(&specs),
            LinkAttribute::IfName(name) => info.name = name,
            LinkAttribute::Link(index) => info.peer_index = Some(index),
            LinkAttribute::LinkNetNsId(_) => info.peer_elsewhere = true,
            LinkAttribute::Address(mac) => info.mac = mac,
            LinkAttribute::Mtu(mtu) => info.mtu = mtu,
            LinkAttribute::LinkInfo(infos) => {
                info.vxlan = crate::overlay::vxlan_info(&infos);
                for i in infos {
                    if let RtLinkInfo::Kind(kind) = i {
                        info.kind = kind.to_string();
                    }
                }
            }
            _ => {}
        }
    }
    info
}

pub(crate) fn address_of(message: &AddressMessage) -> Option<(u32, IpNet)> {
    let addr = message.attributes.iter().find_map(|a| match a {
        AddressAttribute::Address(ip) => Some(*ip),
        _ => None,
    })?;
    IpNet::new(addr, message.header.prefix_len)
        .ok()
        .map(|net| (message.header.index, net))
}

fn route_address(addr: &RouteAddress) -> Option<IpAddr> {
    match addr {
        RouteAddress::Inet(a) => Some(IpAddr::V4(*a)),
        RouteAddress::Inet6(a) => Some(IpAddr::V6(*a)),
        _ => None,
    }
}

pub(crate) fn route_info(message: &RouteMessage) -> Option<RouteInfo> {
    let unspecified: IpAddr = match message.header.address_family {
        AddressFamily::Inet6 => std::net::Ipv6Addr::UNSPECIFIED.into(),
        _ => std::net::Ipv4Addr::UNSPECIFIED.into(),
    };
    let len = message.header.destination_prefix_length;
    let mut info = RouteInfo {
        destination: IpNet::new(unspecified, len).ok()?,
        gateway: None,
        oif: None,
        mtu: None,
        scope: u8::from(message.header.scope),
        table: u32::from(message.header.table),
        protocol: u8::from(message.header.protocol),
        source: None,
        unicast: message.header.kind == RouteType::Unicast,
    };
    for a in &message.attributes {
        match a {
            RouteAttribute::Destination(d) => {
                info.destination = IpNet::new(route_address(d)?, len).ok()?
            }
            RouteAttribute::Gateway(g) => info.gateway = route_address(g),
            RouteAttribute::PrefSource(s) => info.source = route_address(s),
            RouteAttribute::Oif(i) => info.oif = Some(*i),
            RouteAttribute::Table(t) => info.table = *t,
            RouteAttribute::Metrics(metrics) => {
                for metric in metrics {
                    if let RouteMetric::Mtu(mtu) = metric {
                        info.mtu = Some(*mtu);
                    }
                }
            }
            _ => {}
        }
    }
    Some(info)
}

pub(crate) fn neighbour_info(message: &NeighbourMessage) -> Option<(u32, NeighbourInfo)> {
    let mut ip = None;
    let mut mac = Vec::new();
    for a in &message.attributes {
        match a {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => ip = Some(IpAddr::V4(*a)),
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) => {
                ip = Some(IpAddr::V6(*a))
            }
            NeighbourAttribute::LinkLayerAddress(l) => mac.clone_from(l),
            _ => {}
        }
    }
    let permanent = message.header.state == NeighbourState::Permanent;
    Some((
        message.header.ifindex,
        NeighbourInfo {
            ip: ip?,
            mac,
            permanent,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_info_reads_the_veth_peer_and_whether_it_is_in_another_namespace() {
        let mut message = LinkMessage::default();
        message.header.index = 7;
        message.attributes = vec![
            LinkAttribute::IfName("weft0123456789a".into()),
            LinkAttribute::Link(2),
            LinkAttribute::LinkNetNsId(0),
        ];
        let info = link_info(message);
        assert_eq!(
            (info.index, info.peer_index, info.peer_elsewhere),
            (7, Some(2), true)
        );
        let alone = link_info(LinkMessage::default());
        assert_eq!((alone.peer_index, alone.peer_elsewhere), (None, false));
        assert_eq!(alone.conf, LinkConf::default());
    }

    #[test]
    fn link_info_reads_the_settings_weft_writes_from_the_af_spec() {
        use rtnetlink::packet_route::link::{Inet6DevConf, InetDevConf};
        let mut inet = InetDevConf::default();
        inet.forwarding = 1;
        let mut inet6 = Inet6DevConf::default();
        (inet6.forwarding, inet6.accept_ra, inet6.accept_dad) = (1, 0, 2);
        let mut message = LinkMessage::default();
        message.attributes = vec![LinkAttribute::AfSpecUnspec(vec![
            AfSpecUnspec::Inet(vec![AfSpecInet::DevConf(inet)]),
            AfSpecUnspec::Inet6(vec![AfSpecInet6::DevConf(inet6)]),
        ])];
        let conf = link_info(message).conf;
        assert_eq!(conf.get("ipv4", "forwarding"), Some(1));
        assert_eq!(conf.get("ipv6", "forwarding"), Some(1));
        assert_eq!(conf.get("ipv6", "accept_ra"), Some(0));
        assert_eq!(conf.get("ipv6", "accept_dad"), Some(2));
        assert_eq!(conf.get("ipv6", "autoconf"), None);
        // Without IPv6 in the kernel, no IPv6 settings are reported.
        let mut v4_only = LinkMessage::default();
        v4_only.attributes = vec![LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet(vec![
            AfSpecInet::DevConf(inet),
        ])])];
        assert_eq!(link_info(v4_only).conf.ipv6_forwarding, None);
    }
}
