//! Shared types of weft: what the CNI plugin and weftd say to each other, the node's
//! network description, and the parsing rules every address input follows.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod addr;
mod mode;
mod mtu;
mod names;
mod peers;
mod proto;

pub use addr::{parse_bind_addr, parse_ip, parse_ipv4_subnet, parse_ipv6_prefix, AddrError};
pub use mode::{Family, Mode};
pub use mtu::{
    pod_mtus, PodMtus, UnderlayFamily, DEFAULT_VXLAN_PORT, DEFAULT_VXLAN_VNI, VXLAN_OVER_IPV4,
    VXLAN_OVER_IPV6,
};
pub use names::{
    host_veth_name, parse_mac, pod_mac, Attachment, AttachmentError, HOST_VETH_MAC,
    HOST_VETH_PREFIX,
};
pub use peers::{
    parse_peers, vtep_mac, Peer, PeerEntry, PeerError, PEER_IPV4_LENGTHS, PEER_IPV6_LENGTHS,
};
pub use proto::{
    read_message, write_message, Allocation, CniOperation, ErrorKind, NodeNetwork, PodRef, Request,
    Response, CNI_RESULT_LABELS, GATEWAY_V4, GATEWAY_V6, MAX_MESSAGE_BYTES,
};
