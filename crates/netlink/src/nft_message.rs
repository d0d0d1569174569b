//! The bytes of nfnetlink messages for nftables set elements, written from the kernel's
//! UAPI (include/uapi/linux/netfilter/nfnetlink.h and nf_tables.h): a netlink header,
//! a `struct nfgenmsg`, then attributes, each padded to 4 bytes.

pub(crate) const NLM_F_REQUEST: u16 = 0x01;
pub(crate) const NLM_F_ACK: u16 = 0x04;
pub(crate) const NLM_F_CREATE: u16 = 0x400;
const NLA_F_NESTED: u16 = 0x8000;
/// NFNL_MSG_BATCH_BEGIN / _END (NLMSG_MIN_TYPE and the next).
pub(crate) const BATCH_BEGIN: u16 = 0x10;
pub(crate) const BATCH_END: u16 = 0x11;
/// NFNL_SUBSYS_NFTABLES, the subsystem of a batch and the high byte of its messages.
pub(crate) const SUBSYS_NFTABLES: u16 = 10;
/// NFT_MSG_NEWSETELEM, NFT_MSG_DELSETELEM.
pub(crate) const MSG_NEWSETELEM: u16 = 12;
pub(crate) const MSG_DELSETELEM: u16 = 14;
/// enum nft_set_elem_list_attributes.
const SET_ELEM_LIST_TABLE: u16 = 1;
const SET_ELEM_LIST_SET: u16 = 2;
const SET_ELEM_LIST_ELEMENTS: u16 = 3;
/// NFTA_LIST_ELEM.
const LIST_ELEM: u16 = 1;
/// enum nft_set_elem_attributes.
const SET_ELEM_KEY: u16 = 1;
const SET_ELEM_DATA: u16 = 2;
/// enum nft_data_attributes.
const DATA_VALUE: u16 = 1;
const DATA_VERDICT: u16 = 2;
/// enum nft_verdict_attributes.
const VERDICT_CODE: u16 = 1;
const VERDICT_CHAIN: u16 = 2;
/// NF_DROP, NF_ACCEPT (include/uapi/linux/netfilter.h), NFT_JUMP, NFT_GOTO.
const NF_DROP: i32 = 0;
const NF_ACCEPT: i32 = 1;
const NFT_JUMP: i32 = -3;
const NFT_GOTO: i32 = -4;

/// The data of an element of a verdict map (`type … : verdict`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict<'a> {
    /// `accept`: ends this base chain; later base chains of the hook still run.
    Accept,
    /// `drop`.
    Drop,
    /// `jump <chain>`: runs the chain, then the rule after the lookup if the chain ends
    /// without a verdict.
    Jump(&'a str),
    /// `goto <chain>`: runs the chain and does not come back.
    Goto(&'a str),
}

impl Verdict<'_> {
    fn code(&self) -> i32 {
        match self {
            Verdict::Accept => NF_ACCEPT,
            Verdict::Drop => NF_DROP,
            Verdict::Jump(_) => NFT_JUMP,
            Verdict::Goto(_) => NFT_GOTO,
        }
    }

    fn chain(&self) -> Option<&str> {
        match self {
            Verdict::Accept | Verdict::Drop => None,
            Verdict::Jump(chain) | Verdict::Goto(chain) => Some(chain),
        }
    }
}

/// One element as a message carries it: a key, and a verdict in a verdict map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Element<'c> {
    pub key: &'c [u8],
    pub verdict: Option<Verdict<'c>>,
}

/// What one NEWSETELEM or DELSETELEM message says, but for its sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ElementMessage<'c> {
    pub kind: u16,
    pub flags: u16,
    pub set: &'c str,
    /// `None` for a DELSETELEM without an element list, which flushes the set.
    pub elements: Option<Vec<Element<'c>>>,
}

impl ElementMessage<'_> {
    /// Appends the message for `family table`, asking for its ack.
    pub(crate) fn write(&self, out: &mut Vec<u8>, sequence: u32, family: u8, table: &str) {
        let start = out.len();
        let message_type = (SUBSYS_NFTABLES << 8) | self.kind;
        let flags = NLM_F_REQUEST | NLM_F_ACK | self.flags;
        header(out, message_type, flags, sequence, family, 0);
        attribute(out, SET_ELEM_LIST_TABLE, &nul_terminated(table));
        attribute(out, SET_ELEM_LIST_SET, &nul_terminated(self.set));
        if let Some(elements) = &self.elements {
            let list = begin_nested(out, SET_ELEM_LIST_ELEMENTS);
            for element in elements {
                write_element(out, element);
            }
            end_nested(out, list);
        }
        set_length(out, start);
    }
}

/// LIST_ELEM { KEY { VALUE key }, DATA { VERDICT { CODE, CHAIN } } }.
fn write_element(out: &mut Vec<u8>, element: &Element) {
    let list_element = begin_nested(out, LIST_ELEM);
    let key = begin_nested(out, SET_ELEM_KEY);
    attribute(out, DATA_VALUE, element.key);
    end_nested(out, key);
    if let Some(verdict) = element.verdict {
        let data = begin_nested(out, SET_ELEM_DATA);
        let nested = begin_nested(out, DATA_VERDICT);
        attribute(out, VERDICT_CODE, &verdict.code().to_be_bytes());
        if let Some(chain) = verdict.chain() {
            attribute(out, VERDICT_CHAIN, &nul_terminated(chain));
        }
        end_nested(out, nested);
        end_nested(out, data);
    }
    end_nested(out, list_element);
}

/// Appends a netlink header and a `struct nfgenmsg`, sized for themselves alone.
pub(crate) fn header(
    out: &mut Vec<u8>,
    kind: u16,
    flags: u16,
    sequence: u32,
    family: u8,
    res_id: u16,
) {
    let start = out.len();
    out.extend_from_slice(&0u32.to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&sequence.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    // nfgenmsg: family, NFNETLINK_V0, resource id (big-endian).
    out.extend_from_slice(&[family, 0]);
    out.extend_from_slice(&res_id.to_be_bytes());
    set_length(out, start);
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

    fn add(set: &str, elements: Vec<Element<'_>>) -> Vec<u8> {
        let message = ElementMessage {
            kind: MSG_NEWSETELEM,
            flags: NLM_F_CREATE,
            set,
            elements: Some(elements),
        };
        let mut out = Vec::new();
        message.write(&mut out, 1, 1, "t");
        out
    }

    #[test]
    fn a_message_carries_table_set_and_nested_keys() {
        let out = add(
            "s",
            vec![Element {
                key: &[1, 2, 3, 4],
                verdict: None,
            }],
        );
        assert_eq!(
            u32::from_ne_bytes(out[0..4].try_into().unwrap()) as usize,
            out.len()
        );
        assert_eq!(u16::from_ne_bytes([out[4], out[5]]), 0x0a0c);
        assert_eq!(
            u16::from_ne_bytes([out[6], out[7]]),
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE
        );
        assert_eq!(u32::from_ne_bytes(out[8..12].try_into().unwrap()), 1);
        assert_eq!(out[16], 1);
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

    #[test]
    fn a_verdict_follows_the_key_as_nested_data() {
        let out = add(
            "m",
            vec![Element {
                key: &[9, 9, 9, 9],
                verdict: Some(Verdict::Jump("np-e")),
            }],
        );
        // LIST_ELEM { KEY {…}, DATA { VERDICT { CODE -3, CHAIN "np-e\0" } } }.
        assert_eq!(&out[36..40], &[48, 0, 3, 0x80]);
        assert_eq!(&out[40..44], &[44, 0, 1, 0x80]);
        assert_eq!(&out[56..60], &[28, 0, 2, 0x80]);
        assert_eq!(&out[60..64], &[24, 0, 2, 0x80]);
        assert_eq!(&out[64..72], &[8, 0, 1, 0, 0xff, 0xff, 0xff, 0xfd]);
        assert_eq!(
            &out[72..84],
            &[9, 0, 2, 0, b'n', b'p', b'-', b'e', 0, 0, 0, 0]
        );
        assert_eq!(out.len(), 84);

        let verdicts = [
            (Verdict::Accept, [0, 0, 0, 1]),
            (Verdict::Drop, [0, 0, 0, 0]),
            (Verdict::Goto("c"), [0xff, 0xff, 0xff, 0xfc]),
        ];
        for (verdict, code) in verdicts {
            let out = add(
                "m",
                vec![Element {
                    key: &[9, 9, 9, 9],
                    verdict: Some(verdict),
                }],
            );
            assert_eq!(&out[64..72], &[&[8, 0, 1, 0][..], &code].concat());
            // Accept and drop name no chain: the element ends with the code.
            assert_eq!(out.len() == 72, verdict.chain().is_none(), "{verdict:?}");
        }
    }
}
