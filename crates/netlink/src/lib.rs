//! The one place weft talks to the kernel's network stack: rtnetlink requests (built in
//! [`messages`], sent by [`Netlink`]), network namespace switches and per-interface
//! sysctls, and nftables set and verdict map elements over nfnetlink ([`nft_set`]).
//! Every other crate calls these.
//!
//! A [`Netlink`] is one rtnetlink socket, bound for life to the namespace it was opened
//! in (like netavark, weft opens one per namespace and works on both from one thread).
//! It is synchronous and sends batches of requests in one system call.
#![warn(missing_docs)]

mod error;
pub mod messages;
mod netns;
mod nft_key;
mod nft_message;
pub mod nft_set;
pub mod overlay;
mod socket;
pub mod sysctl;

pub use error::{Errno, NetlinkError};
pub use messages::{
    LinkConf, LinkInfo, NeighbourInfo, Request, RouteInfo, RouteSpec, VethSpec, SCOPE_LINK,
    SCOPE_UNIVERSE,
};
pub use netns::{Netns, NetnsGuard};
pub use nft_key::{interface_address_key, set_key, BadInterfaceName, KeyField};
pub use nft_message::Verdict;
pub use nft_set::{NftSets, SetChange, VerdictElement};
pub use overlay::{FdbInfo, VxlanInfo, VxlanSpec};
pub use socket::Netlink;
