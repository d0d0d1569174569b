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
    /// MTU of both ends.
    pub mtu: u32,
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

    /// Creates the veth pair described by `spec`, both ends down.
    pub async fn create_veth(&self, spec: &VethSpec<'_>) -> Result<(), NetlinkError> {
        let peer = LinkMessageBuilder::<LinkUnspec>::new()
            .name(spec.pod_name.to_owned())
            .mtu(spec.mtu)
            .address(spec.pod_mac.to_vec())
            .setns_by_fd(spec.pod_netns.file().as_raw_fd())
            .build();
        let message = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
            .name(spec.host_name.to_owned())
            .mtu(spec.mtu)
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

    /// Sets a link administratively up.
    pub async fn set_up(&self, index: u32, name: &str) -> Result<(), NetlinkError> {
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(|e| NetlinkError::kernel(format!("set link {name} up"), e))
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
