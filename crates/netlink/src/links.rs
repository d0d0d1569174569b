//! The socket, and links: veth pairs, lookups, state, deletion.

use crate::{Errno, NetlinkError, Netns};
use futures::TryStreamExt;
use rtnetlink::packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo as RtLinkInfo, LinkMessage,
};
use rtnetlink::{Handle, LinkMessageBuilder, LinkUnspec, LinkVeth};
use std::os::fd::AsRawFd;

/// One rtnetlink socket in one network namespace.
#[derive(Debug, Clone)]
pub struct Netlink {
    pub(crate) handle: Handle,
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
}

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
    pub pod_netns: &'a Netns,
}

impl Netlink {
    /// Opens a socket in the calling thread's current namespace. Must run inside [`crate::run`].
    pub fn connect() -> Result<Netlink, NetlinkError> {
        let (connection, handle, _) = rtnetlink::new_connection()
            .map_err(|e| NetlinkError::io("open rtnetlink socket", e))?;
        tokio::spawn(connection);
        Ok(Netlink { handle })
    }

    /// Opens a socket bound to `netns`, leaving the thread where it was.
    pub fn connect_in(netns: &Netns) -> Result<Netlink, NetlinkError> {
        let _inside = netns.enter()?;
        Netlink::connect()
    }

    /// Creates the veth pair described by `spec`, both ends down with the kernel's
    /// default MTU ([`Netlink::bring_up`] sets the MTU with the same request that raises
    /// the link, so the pair can be created before the MTU is known).
    pub async fn create_veth(&self, spec: &VethSpec<'_>) -> Result<(), NetlinkError> {
        let peer = LinkMessageBuilder::<LinkUnspec>::new()
            .name(spec.pod_name.to_owned())
            .address(spec.pod_mac.to_vec())
            .setns_by_fd(spec.pod_netns.file().as_raw_fd())
            .build();
        let message = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
            .name(spec.host_name.to_owned())
            .address(spec.host_mac.to_vec())
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
            .build();
        self.handle
            .link()
            .add(message)
            .execute()
            .await
            .map_err(|e| {
                NetlinkError::kernel(
                    format!(
                        "create veth {} (pod side {})",
                        spec.host_name, spec.pod_name
                    ),
                    e,
                )
            })
    }

    /// The link called `name`, if there is one.
    pub async fn link(&self, name: &str) -> Result<Option<LinkInfo>, NetlinkError> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_owned())
            .execute();
        match links.try_next().await {
            Ok(Some(message)) => Ok(Some(link_info(message))),
            Ok(None) => Ok(None),
            Err(e) => {
                let e = NetlinkError::kernel(format!("look up link {name}"), e);
                match e.errno() {
                    Some(Errno::NotFound) => Ok(None),
                    _ => Err(e),
                }
            }
        }
    }

    /// Every link in the namespace.
    pub async fn links(&self) -> Result<Vec<LinkInfo>, NetlinkError> {
        let stream = self.handle.link().get().execute();
        let messages: Vec<LinkMessage> = stream
            .try_collect()
            .await
            .map_err(|e| NetlinkError::kernel("list links", e))?;
        Ok(messages.into_iter().map(link_info).collect())
    }

    /// Sets a link administratively up, and its MTU in the same request when given.
    pub async fn bring_up(
        &self,
        index: u32,
        name: &str,
        mtu: Option<u32>,
    ) -> Result<(), NetlinkError> {
        let builder = LinkUnspec::new_with_index(index).up();
        let builder = match mtu {
            Some(mtu) => builder.mtu(mtu),
            None => builder,
        };
        self.handle
            .link()
            .set(builder.build())
            .execute()
            .await
            .map_err(|e| NetlinkError::kernel(format!("set link {name} up (mtu {mtu:?})"), e))
    }

    /// Deletes the link called `name`. `Ok(false)` when there was none.
    pub async fn delete_link(&self, name: &str) -> Result<bool, NetlinkError> {
        let Some(link) = self.link(name).await? else {
            return Ok(false);
        };
        match self.handle.link().del(link.index).execute().await {
            Ok(()) => Ok(true),
            Err(e) => {
                let e = NetlinkError::kernel(format!("delete link {name}"), e);
                match e.errno() {
                    Some(Errno::NotFound) => Ok(false),
                    _ => Err(e),
                }
            }
        }
    }
}

/// The link group weft parks doomed veths in ("weft" in ASCII): nothing else uses it,
/// so deleting the group deletes exactly what was parked there.
const DOOMED_GROUP: u32 = 0x7765_6674;

impl Netlink {
    /// Deletes the named links in one kernel operation: each is moved to a private link
    /// group, then the group is deleted (RTM_DELLINK by IFLA_GROUP), so the kernel
    /// unregisters them together and waits for one RCU grace period instead of one
    /// per link. Returns the names that existed.
    pub async fn delete_links(&self, names: &[String]) -> Result<Vec<String>, NetlinkError> {
        let mut parked = Vec::new();
        for name in names {
            let Some(link) = self.link(name).await? else {
                continue;
            };
            let moved = self
                .handle
                .link()
                .set(
                    LinkUnspec::new_with_index(link.index)
                        .link_group(DOOMED_GROUP)
                        .build(),
                )
                .execute()
                .await;
            match moved {
                Ok(()) => parked.push(name.clone()),
                Err(e) => {
                    let e = NetlinkError::kernel(format!("park link {name} for removal"), e);
                    if e.errno() != Some(Errno::NotFound) {
                        return Err(e);
                    }
                }
            }
        }
        if parked.is_empty() {
            return Ok(parked);
        }
        let mut message = LinkMessage::default();
        message.attributes.push(LinkAttribute::Group(DOOMED_GROUP));
        match self.handle.link().del_with_message(message).execute().await {
            Ok(()) => Ok(parked),
            Err(e) => {
                let e = NetlinkError::kernel(format!("delete links {}", parked.join(", ")), e);
                match e.errno() {
                    Some(Errno::NotFound) => Ok(parked),
                    _ => Err(e),
                }
            }
        }
    }
}

fn link_info(message: LinkMessage) -> LinkInfo {
    let mut info = LinkInfo {
        index: message.header.index,
        name: String::new(),
        mac: Vec::new(),
        mtu: 0,
        up: message.header.flags.contains(LinkFlags::Up),
        kind: String::new(),
    };
    for attribute in message.attributes {
        match attribute {
            LinkAttribute::IfName(name) => info.name = name,
            LinkAttribute::Address(mac) => info.mac = mac,
            LinkAttribute::Mtu(mtu) => info.mtu = mtu,
            LinkAttribute::LinkInfo(infos) => {
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
