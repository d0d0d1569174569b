//! nftables set elements over nfnetlink, without the `nft` program: one NFNL batch
//! (a transaction: the kernel applies all of it or none) of NFT_MSG_NEWSETELEM /
//! NFT_MSG_DELSETELEM messages in one sendmsg(2). Starting `nft` costs milliseconds;
//! this costs one system call and the kernel's commit, so a per-pod element can be put
//! in place on the CNI ADD path.
//!
//! Messages are written by hand from the kernel's UAPI (include/uapi/linux/netfilter/
//! nfnetlink.h and nf_tables.h): a netlink header, a `struct nfgenmsg`, attributes.
//! The tables and sets themselves are made by `nft`; only elements go through here.

use crate::NetlinkError;
use rtnetlink::sys::{protocols::NETLINK_NETFILTER, Socket};
use std::net::IpAddr;

/// NFPROTO_INET: an `inet` table.
pub const FAMILY_INET: u8 = 1;

const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x01;
const NLM_F_ACK: u16 = 0x04;
const NLM_F_CREATE: u16 = 0x400;
const NLA_F_NESTED: u16 = 0x8000;
/// NFNL_MSG_BATCH_BEGIN / _END (NLMSG_MIN_TYPE and the next).
const BATCH_BEGIN: u16 = 0x10;
const BATCH_END: u16 = 0x11;
/// NFNL_SUBSYS_NFTABLES, the subsystem of a batch and the high byte of its messages.
const SUBSYS_NFTABLES: u16 = 10;
const MSG_NEWSETELEM: u16 = 12;
const MSG_DELSETELEM: u16 = 14;
/// enum nft_set_elem_list_attributes.
const SET_ELEM_LIST_TABLE: u16 = 1;
const SET_ELEM_LIST_SET: u16 = 2;
const SET_ELEM_LIST_ELEMENTS: u16 = 3;
/// NFTA_LIST_ELEM, NFTA_SET_ELEM_KEY, NFTA_DATA_VALUE: all 1.
const LIST_ELEM: u16 = 1;
const SET_ELEM_KEY: u16 = 1;
const DATA_VALUE: u16 = 1;
/// IFNAMSIZ: an `ifname` field of a key is the name zero-padded to this.
const IFNAMSIZ: usize = 16;
/// ENOENT, the kernel's answer to deleting an element that is not there.
const ENOENT: i32 = 2;
const RECV_BYTES: usize = 64 * 1024;

/// One change to one set of a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetChange<'a> {
    /// Adds the keys; a key already there is fine (no NLM_F_EXCL).
    Add {
        /// The set's name.
        set: &'a str,
        /// Each element's key, as [`interface_address_key`] encodes it.
        keys: Vec<Vec<u8>>,
    },
    /// Deletes the keys; the kernel refuses the batch if one is not there.
    Delete {
        /// The set's name.
        set: &'a str,
        /// Each element's key.
        keys: Vec<Vec<u8>>,
    },
    /// Removes every element (a DELSETELEM without an element list).
    Flush {
        /// The set's name.
        set: &'a str,
    },
}

/// The key of an element of an `ifname . ipv4_addr` or `ifname . ipv6_addr` set: the
/// interface name zero-padded to IFNAMSIZ, then the address in network order (each
/// field of a concatenation fills whole 32-bit registers; both already do). `None`
/// for a name the kernel would refuse as an interface name.
pub fn interface_address_key(ifname: &str, address: IpAddr) -> Option<Vec<u8>> {
    if ifname.is_empty() || ifname.len() >= IFNAMSIZ {
        return None;
    }
    let mut key = ifname.as_bytes().to_vec();
    key.resize(IFNAMSIZ, 0);
    match address {
        IpAddr::V4(v4) => key.extend_from_slice(&v4.octets()),
        IpAddr::V6(v6) => key.extend_from_slice(&v6.octets()),
    }
    Some(key)
}

/// One nfnetlink socket for nftables set elements, bound to the namespace it was
/// opened in.
#[derive(Debug)]
pub struct NftSets {
    socket: Socket,
    sequence: u32,
}

impl NftSets {
    /// Opens a socket in the calling thread's namespace (CAP_NET_ADMIN is checked per
    /// request, not here).
    pub fn connect() -> Result<NftSets, NetlinkError> {
        let socket = crate::socket::open_socket(NETLINK_NETFILTER, "open nfnetlink socket")?;
        Ok(NftSets {
            socket,
            sequence: 0,
        })
    }

    /// Applies `changes` to the sets of table `family name` as one transaction: every
    /// change or none. Within it, a flush followed by adds replaces a set's contents
    /// with no moment where a packet sees it empty.
    pub fn apply(
        &mut self,
        family: u8,
        table: &str,
        changes: &[SetChange<'_>],
    ) -> Result<(), NetlinkError> {
        let what = || format!("change set elements of table {table}");
        if changes.is_empty() {
            return Ok(());
        }
        let mut batch = Vec::new();
        self.header(&mut batch, BATCH_BEGIN, NLM_F_REQUEST, 0, SUBSYS_NFTABLES);
        let mut asked = Vec::new();
        for change in changes {
            asked.push(self.change(&mut batch, family, table, change));
        }
        self.header(&mut batch, BATCH_END, NLM_F_REQUEST, 0, SUBSYS_NFTABLES);
        self.socket
            .send(&batch, 0)
            .map_err(|e| NetlinkError::io(what(), e))?;
        self.answers(&asked)
            .map_err(|e| e.unwrap_or_else(|errno| NetlinkError::from_errno(what(), errno)))
    }

    /// Appends one element message, asking for its ack; returns its sequence number.
    fn change(&mut self, out: &mut Vec<u8>, family: u8, table: &str, change: &SetChange) -> u32 {
        let (kind, flags, set, keys) = match change {
            SetChange::Add { set, keys } => (MSG_NEWSETELEM, NLM_F_CREATE, set, Some(keys)),
            SetChange::Delete { set, keys } => (MSG_DELSETELEM, 0, set, Some(keys)),
            SetChange::Flush { set } => (MSG_DELSETELEM, 0, set, None),
        };
        let start = out.len();
        let message_type = (SUBSYS_NFTABLES << 8) | kind;
        let sequence = self.header(
            out,
            message_type,
            NLM_F_REQUEST | NLM_F_ACK | flags,
            family,
            0,
        );
        attribute(out, SET_ELEM_LIST_TABLE, &nul_terminated(table));
        attribute(out, SET_ELEM_LIST_SET, &nul_terminated(set));
        if let Some(keys) = keys {
            let elements = begin_nested(out, SET_ELEM_LIST_ELEMENTS);
            for key in keys {
                let element = begin_nested(out, LIST_ELEM);
                let key_attribute = begin_nested(out, SET_ELEM_KEY);
                attribute(out, DATA_VALUE, key);
                end_nested(out, key_attribute);
                end_nested(out, element);
            }
            end_nested(out, elements);
        }
        set_length(out, start);
        sequence
    }

    /// Appends a netlink header and a `struct nfgenmsg`, sized for themselves alone;
    /// returns the sequence number.
    fn header(&mut self, out: &mut Vec<u8>, kind: u16, flags: u16, family: u8, res_id: u16) -> u32 {
        self.sequence = self.sequence.wrapping_add(1);
        let start = out.len();
        out.extend_from_slice(&0u32.to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(&flags.to_ne_bytes());
        out.extend_from_slice(&self.sequence.to_ne_bytes());
        out.extend_from_slice(&0u32.to_ne_bytes());
        // nfgenmsg: family, NFNETLINK_V0, resource id (big-endian).
        out.extend_from_slice(&[family, 0]);
        out.extend_from_slice(&res_id.to_be_bytes());
        set_length(out, start);
        self.sequence
    }

    /// Reads one answer per asked sequence number. The kernel answers every message
    /// that asked for an ack, failed or not, and a failed batch is rolled back whole;
    /// the first error is returned (`Err(Ok(_))` when reading failed).
    fn answers(&mut self, asked: &[u32]) -> Result<(), Result<NetlinkError, i32>> {
        let mut pending: Vec<u32> = asked.to_vec();
        let mut first_error = None;
        let mut buffer = Vec::with_capacity(RECV_BYTES);
        while !pending.is_empty() {
            buffer.clear();
            let n = self
                .socket
                .recv(&mut buffer, 0)
                .map_err(|e| Ok(NetlinkError::io("read nfnetlink answers", e)))?;
            let mut offset = 0;
            while offset + 16 <= n {
                let word = |at: usize| {
                    u32::from_ne_bytes([buffer[at], buffer[at + 1], buffer[at + 2], buffer[at + 3]])
                };
                let length = word(offset) as usize;
                let kind = u16::from_ne_bytes([buffer[offset + 4], buffer[offset + 5]]);
                let sequence = word(offset + 8);
                if length < 16 || offset + length > n {
                    return Err(Ok(NetlinkError::io(
                        "decode nfnetlink answer",
                        std::io::Error::other(format!("bad message length {length}")),
                    )));
                }
                if kind == NLMSG_ERROR && length >= 20 {
                    let code = word(offset + 16) as i32;
                    // An error for a message that asked nothing refuses the whole
                    // batch (EPERM without CAP_NET_ADMIN answers its BEGIN): no
                    // other answer follows.
                    if code != 0 && !pending.contains(&sequence) {
                        pending.clear();
                    }
                    pending.retain(|s| *s != sequence);
                    if code != 0 && first_error.is_none() {
                        first_error = Some(-code);
                    }
                }
                offset += length.next_multiple_of(4);
            }
        }
        match first_error {
            Some(errno) => Err(Err(errno)),
            None => Ok(()),
        }
    }
}

/// Whether `error` is the kernel's "no such element" (or set, or table).
pub fn is_missing(error: &NetlinkError) -> bool {
    matches!(
        error,
        NetlinkError::Kernel {
            errno: Some(ENOENT),
            ..
        }
    )
}

fn nul_terminated(text: &str) -> Vec<u8> {
    let mut bytes = text.as_bytes().to_vec();
    bytes.push(0);
    bytes
}

/// Appends one attribute, padded to 4 bytes.
fn attribute(out: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    let length = 4 + payload.len();
    out.extend_from_slice(&(length as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(payload);
    out.resize(out.len().next_multiple_of(4), 0);
}

/// Starts a nested attribute; [`end_nested`] writes its length.
fn begin_nested(out: &mut Vec<u8>, kind: u16) -> usize {
    let start = out.len();
    out.extend_from_slice(&0u16.to_ne_bytes());
    out.extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
    start
}

fn end_nested(out: &mut [u8], start: usize) {
    let length = (out.len() - start) as u16;
    out[start..start + 2].copy_from_slice(&length.to_ne_bytes());
}

/// Writes a message's length into its header (the first u32).
fn set_length(out: &mut [u8], start: usize) {
    let length = (out.len() - start) as u32;
    out[start..start + 4].copy_from_slice(&length.to_ne_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn keys_are_the_padded_name_then_the_address() {
        let v4 = interface_address_key("weft1", IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7))).unwrap();
        assert_eq!(v4.len(), 20);
        assert_eq!(&v4[..5], b"weft1");
        assert!(v4[5..16].iter().all(|b| *b == 0));
        assert_eq!(&v4[16..], &[192, 0, 2, 7]);
        let v6 = interface_address_key("w", IpAddr::V6(Ipv6Addr::LOCALHOST)).unwrap();
        assert_eq!(v6.len(), 32);
        assert_eq!(v6[31], 1);
        assert!(
            interface_address_key("sixteen-bytes-xx", IpAddr::V6(Ipv6Addr::LOCALHOST)).is_none()
        );
        assert!(interface_address_key("", IpAddr::V6(Ipv6Addr::LOCALHOST)).is_none());
    }

    #[test]
    fn a_message_carries_table_set_and_nested_keys() {
        let mut sets = NftSets::connect().unwrap();
        let mut out = Vec::new();
        let key = vec![1, 2, 3, 4];
        let change = SetChange::Add {
            set: "s",
            keys: vec![key],
        };
        let sequence = sets.change(&mut out, FAMILY_INET, "t", &change);
        assert_eq!(sequence, 1);
        assert_eq!(
            u32::from_ne_bytes(out[0..4].try_into().unwrap()) as usize,
            out.len()
        );
        assert_eq!(u16::from_ne_bytes([out[4], out[5]]), 0x0a0c);
        assert_eq!(out[16], FAMILY_INET);
        // Table "t\0" then set "s\0", each in a 4-byte padded attribute.
        assert_eq!(&out[20..26], &[6, 0, 1, 0, b't', 0]);
        assert_eq!(&out[28..34], &[6, 0, 2, 0, b's', 0]);
        // ELEMENTS { LIST_ELEM { KEY { VALUE [1,2,3,4] } } }, every level nested.
        assert_eq!(&out[36..40], &[20, 0, 3, 0x80]);
        assert_eq!(&out[40..44], &[16, 0, 1, 0x80]);
        assert_eq!(&out[44..48], &[12, 0, 1, 0x80]);
        assert_eq!(&out[48..56], &[8, 0, 1, 0, 1, 2, 3, 4]);
        assert_eq!(out.len(), 56);
    }
}
