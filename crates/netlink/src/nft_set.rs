//! nftables set and verdict map elements over nfnetlink, without the `nft` program:
//! one NFNL batch (a transaction: the kernel applies all of it or none) of
//! NFT_MSG_NEWSETELEM / NFT_MSG_DELSETELEM messages in one sendmsg(2). Starting `nft`
//! costs milliseconds; this costs one system call and the kernel's commit, so a
//! per-pod element can be put in place on the CNI ADD path.
//!
//! Keys come from [`crate::set_key`]; the messages' bytes from `nft_message.rs`. The
//! tables, sets, maps and chains themselves are made by `nft`; only elements go
//! through here, and not those of interval sets (an interval is two elements, which
//! `nft` computes).

use crate::nft_message::{
    header, Element, ElementMessage, Verdict, BATCH_BEGIN, BATCH_END, MSG_DELSETELEM,
    MSG_NEWSETELEM, NLM_F_CREATE, NLM_F_REQUEST, SUBSYS_NFTABLES,
};
use crate::NetlinkError;
use rtnetlink::sys::{protocols::NETLINK_NETFILTER, Socket};

/// NFPROTO_INET: an `inet` table.
pub const FAMILY_INET: u8 = 1;

const NLMSG_ERROR: u16 = 2;
/// ENOENT, the kernel's answer to deleting an element that is not there (or naming a
/// set, table or jump target that is not there).
const ENOENT: i32 = 2;
const RECV_BYTES: usize = 64 * 1024;

/// One change to one set or map of a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetChange<'a> {
    /// Adds the keys; a key already there is fine (no NLM_F_EXCL).
    Add {
        /// The set's name.
        set: &'a str,
        /// Each element's key, as [`crate::set_key`] encodes it.
        keys: Vec<Vec<u8>>,
    },
    /// Deletes the keys, from a set or a map; the kernel refuses the batch if one is
    /// not there.
    Delete {
        /// The set's or map's name.
        set: &'a str,
        /// Each element's key.
        keys: Vec<Vec<u8>>,
    },
    /// Removes every element of a set or map (a DELSETELEM without an element list).
    Flush {
        /// The set's or map's name.
        set: &'a str,
    },
    /// Adds elements to a verdict map. A key already there with the same verdict is
    /// fine; with another verdict the kernel refuses the batch, NLM_F_EXCL or not
    /// (`nft_add_set_elem`, net/netfilter/nf_tables_api.c, compares the data before it
    /// looks at the flag; EEXIST on Linux 6.18, EBUSY on some older kernels): change
    /// it with [`SetChange::ReplaceVerdicts`].
    AddVerdicts {
        /// The map's name.
        map: &'a str,
        /// The elements.
        elements: Vec<VerdictElement<'a>>,
    },
    /// Gives keys already in a verdict map new verdicts: their delete then their add,
    /// in this batch, so a packet sees the old verdict or the new, never none. The
    /// kernel refuses the batch (ENOENT) if a key is not there.
    ReplaceVerdicts {
        /// The map's name.
        map: &'a str,
        /// The elements, with their new verdicts.
        elements: Vec<VerdictElement<'a>>,
    },
}

/// An element of a verdict map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerdictElement<'a> {
    /// Its key, as [`crate::set_key`] encodes it.
    pub key: Vec<u8>,
    /// What a packet matching the key gets.
    pub verdict: Verdict<'a>,
}

impl SetChange<'_> {
    /// The messages that make this change, in order.
    fn messages(&self) -> Vec<ElementMessage<'_>> {
        match self {
            SetChange::Add { set, keys } => vec![add(set, key_elements(keys))],
            SetChange::Delete { set, keys } => vec![delete(set, Some(key_elements(keys)))],
            SetChange::Flush { set } => vec![delete(set, None)],
            SetChange::AddVerdicts { map, elements } => vec![add(map, verdict_elements(elements))],
            SetChange::ReplaceVerdicts { map, elements } => {
                let keys = elements.iter().map(|e| Element {
                    key: &e.key,
                    verdict: None,
                });
                vec![
                    delete(map, Some(keys.collect())),
                    add(map, verdict_elements(elements)),
                ]
            }
        }
    }
}

fn add<'c>(set: &'c str, elements: Vec<Element<'c>>) -> ElementMessage<'c> {
    ElementMessage {
        kind: MSG_NEWSETELEM,
        flags: NLM_F_CREATE,
        set,
        elements: Some(elements),
    }
}

fn delete<'c>(set: &'c str, elements: Option<Vec<Element<'c>>>) -> ElementMessage<'c> {
    ElementMessage {
        kind: MSG_DELSETELEM,
        flags: 0,
        set,
        elements,
    }
}

fn key_elements(keys: &[Vec<u8>]) -> Vec<Element<'_>> {
    keys.iter()
        .map(|key| Element { key, verdict: None })
        .collect()
}

fn verdict_elements<'c>(elements: &'c [VerdictElement<'_>]) -> Vec<Element<'c>> {
    elements
        .iter()
        .map(|e| Element {
            key: &e.key,
            verdict: Some(e.verdict),
        })
        .collect()
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

    /// [`NftSets::apply`] over the socket kept in `slot`, opened first when it holds
    /// none; a socket whose I/O failed is dropped, so the next call opens a fresh one.
    pub fn apply_kept(
        slot: &mut Option<NftSets>,
        family: u8,
        table: &str,
        changes: &[SetChange<'_>],
    ) -> Result<(), NetlinkError> {
        let sets = match slot {
            Some(sets) => sets,
            None => slot.insert(NftSets::connect()?),
        };
        let outcome = sets.apply(family, table, changes);
        if matches!(outcome, Err(NetlinkError::Io { .. })) {
            *slot = None;
        }
        outcome
    }

    /// Applies `changes` to the sets and maps of table `family name` as one
    /// transaction: every change or none. Within it, a flush followed by adds replaces
    /// a set's contents with no moment where a packet sees it empty.
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
        let begin = self.next_sequence();
        header(
            &mut batch,
            BATCH_BEGIN,
            NLM_F_REQUEST,
            begin,
            0,
            SUBSYS_NFTABLES,
        );
        let mut asked = Vec::new();
        for message in changes.iter().flat_map(SetChange::messages) {
            let sequence = self.next_sequence();
            message.write(&mut batch, sequence, family, table);
            asked.push(sequence);
        }
        let end = self.next_sequence();
        header(
            &mut batch,
            BATCH_END,
            NLM_F_REQUEST,
            end,
            0,
            SUBSYS_NFTABLES,
        );
        self.socket
            .send(&batch, 0)
            .map_err(|e| NetlinkError::io(what(), e))?;
        self.answers(&asked)
            .map_err(|e| e.unwrap_or_else(|errno| NetlinkError::from_errno(what(), errno)))
    }

    fn next_sequence(&mut self) -> u32 {
        self.sequence = self.sequence.wrapping_add(1);
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

/// Whether `error` is the kernel's "no such element" (or set, table, or chain a verdict
/// jumps to).
pub fn is_missing(error: &NetlinkError) -> bool {
    matches!(
        error,
        NetlinkError::Kernel {
            errno: Some(ENOENT),
            ..
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replacement_deletes_the_keys_then_adds_the_elements() {
        let elements = vec![VerdictElement {
            key: vec![1, 2, 3, 4],
            verdict: Verdict::Jump("np-e-1"),
        }];
        let change = SetChange::ReplaceVerdicts {
            map: "np-egress-pods",
            elements,
        };
        let key: &[u8] = &[1, 2, 3, 4];
        assert_eq!(
            change.messages(),
            [
                ElementMessage {
                    kind: MSG_DELSETELEM,
                    flags: 0,
                    set: "np-egress-pods",
                    elements: Some(vec![Element { key, verdict: None }]),
                },
                ElementMessage {
                    kind: MSG_NEWSETELEM,
                    flags: NLM_F_CREATE,
                    set: "np-egress-pods",
                    elements: Some(vec![Element {
                        key,
                        verdict: Some(Verdict::Jump("np-e-1")),
                    }]),
                },
            ]
        );
        let flush = SetChange::Flush { set: "s" }.messages();
        assert_eq!(
            (flush[0].kind, flush[0].elements.clone()),
            (MSG_DELSETELEM, None)
        );
    }
}
