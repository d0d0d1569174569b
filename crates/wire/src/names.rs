//! Identities derived from a pod attachment: its key, its host veth name, its MACs.
//! These derivations are contracts: DEL and GC find a pod's host veth by recomputing
//! its name, so they must never change between versions.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Every weft host veth starts with this, so GC can tell weft's veths from others.
pub const HOST_VETH_PREFIX: &str = "weft";

/// MAC of every host-side veth. Each veth is its own layer-2 link, so one fixed,
/// locally administered unicast address (Calico does the same) lets the pod's permanent
/// gateway neighbour entries be written before the host side even exists.
pub const HOST_VETH_MAC: [u8; 6] = [0xee; 6];

/// Longest container ID accepted: records are stored in files named after the
/// attachment, and file names stop at 255 bytes.
const MAX_CONTAINER_ID: usize = 200;
/// Linux interface names are at most IFNAMSIZ - 1 = 15 bytes.
const MAX_IFNAME: usize = 15;

/// One pod interface: the unit of allocation (CNI spec: one per container ID and ifname).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", try_from = "RawAttachment")]
pub struct Attachment {
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
}

/// An attachment as it arrives on weftd's socket or from its state directory, before
/// validation: `../../x` would otherwise name a file outside the state directory.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawAttachment {
    container_id: String,
    ifname: String,
}

impl TryFrom<RawAttachment> for Attachment {
    type Error = AttachmentError;
    fn try_from(raw: RawAttachment) -> Result<Self, Self::Error> {
        Attachment::new(&raw.container_id, &raw.ifname)
    }
}

/// Why a container ID or interface name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttachmentError {
    /// The container ID breaks the spec's character rules or is too long.
    #[error("container ID '{0}' is invalid: it must start with a letter or digit, continue with letters, digits, '_', '.' or '-', and be at most 200 bytes")]
    ContainerId(String),
    /// The interface name breaks the kernel's rules.
    #[error("interface name '{0}' is invalid: it must be 1-15 bytes, not '.' or '..', without '/', ':' or whitespace")]
    Ifname(String),
}

impl Attachment {
    /// Validates both parts (CNI spec 1.1 section "Parameters": container ID and ifname rules).
    pub fn new(container_id: &str, ifname: &str) -> Result<Self, AttachmentError> {
        let id_ok = container_id.len() <= MAX_CONTAINER_ID
            && container_id
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric())
            && container_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !id_ok {
            return Err(AttachmentError::ContainerId(truncate(container_id)));
        }
        let if_ok = !ifname.is_empty()
            && ifname.len() <= MAX_IFNAME
            && ifname != "."
            && ifname != ".."
            && !ifname
                .chars()
                .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control());
        if !if_ok {
            return Err(AttachmentError::Ifname(truncate(ifname)));
        }
        Ok(Attachment {
            container_id: container_id.to_owned(),
            ifname: ifname.to_owned(),
        })
    }

    /// A key usable as a file name: container IDs cannot contain '@', so splitting at
    /// the first '@' recovers both parts.
    pub fn key(&self) -> String {
        format!("{}@{}", self.container_id, self.ifname)
    }

    /// The inverse of [`Attachment::key`].
    pub fn from_key(key: &str) -> Option<Self> {
        let (id, ifname) = key.split_once('@')?;
        Attachment::new(id, ifname).ok()
    }
}

impl fmt::Display for Attachment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.container_id, self.ifname)
    }
}

/// Keeps error messages readable when the input is huge.
fn truncate(s: &str) -> String {
    match s.char_indices().nth(64) {
        Some((i, _)) => format!("{}...({} bytes)", &s[..i], s.len()),
        None => s.to_owned(),
    }
}

/// FNV-1a, 64 bit: tiny, stable forever, and good enough to spread names.
fn fnv1a(parts: &[&str]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, part) in parts.iter().enumerate() {
        let sep: &[u8] = if i == 0 { b"" } else { b"\0" };
        for byte in sep.iter().chain(part.as_bytes()) {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

/// The host-side veth name: `weft` + 11 hex digits of a hash of the attachment, 15 bytes,
/// stable so DEL and GC find it again without any state.
pub fn host_veth_name(attachment: &Attachment) -> String {
    let hash = fnv1a(&[&attachment.container_id, &attachment.ifname]);
    format!("{HOST_VETH_PREFIX}{:011x}", hash >> 20)
}

/// The pod interface's MAC: locally administered unicast (first byte 0x0a), the rest from
/// the attachment hash, so the host's permanent neighbour entries can be written without
/// asking the kernel what it picked.
pub fn pod_mac(attachment: &Attachment) -> [u8; 6] {
    let hash = fnv1a(&[&attachment.container_id, &attachment.ifname, "mac"]).to_be_bytes();
    [0x0a, hash[0], hash[1], hash[2], hash[3], hash[4]]
}

/// Parses a MAC the runtime asked for (`mac` capability or `CNI_ARGS MAC=`): six
/// colon- or dash-separated hex bytes, unicast and not all zero, since it becomes an
/// interface address.
pub fn parse_mac(text: &str) -> Result<[u8; 6], String> {
    let parts: Vec<&str> = text.split([':', '-']).collect();
    let bytes: Option<Vec<u8>> = match parts.len() {
        6 => parts
            .iter()
            // Two hex digits exactly: from_str_radix alone also takes a sign ("+a").
            .map(|p| {
                (p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
                    .then(|| u8::from_str_radix(p, 16).ok())
                    .flatten()
            })
            .collect(),
        _ => None,
    };
    let mac: [u8; 6] = bytes.and_then(|b| b.try_into().ok()).ok_or_else(|| {
        format!(
            "'{}' is not a MAC address (expected six hex bytes like 02:42:ac:11:00:02)",
            truncate(text)
        )
    })?;
    if mac[0] & 1 == 1 || mac == [0; 6] {
        return Err(format!("'{text}' is not a unicast MAC address"));
    }
    Ok(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ids_follow_the_spec_including_upper_case() {
        assert!(Attachment::new("ABC-def_1.2", "eth0").is_ok());
        assert!(Attachment::new("a", "eth0").is_ok());
        for bad in ["", "-abc", "_a", "a b", "a/b", "a@b", "ä"] {
            assert!(
                matches!(
                    Attachment::new(bad, "eth0"),
                    Err(AttachmentError::ContainerId(_))
                ),
                "{bad:?}"
            );
        }
        let huge = "a".repeat(10_000);
        let e = Attachment::new(&huge, "eth0").unwrap_err().to_string();
        assert!(e.len() < 400 && e.contains("10000 bytes"), "{e}");
    }

    #[test]
    fn ifnames_follow_the_kernel() {
        assert!(Attachment::new("c", "eth0").is_ok());
        assert!(Attachment::new("c", "a234567890abcde").is_ok());
        for bad in [
            "",
            ".",
            "..",
            "a234567890abcdef",
            "e/0",
            "e:0",
            "e 0",
            "e\n0",
        ] {
            assert!(
                matches!(Attachment::new("c", bad), Err(AttachmentError::Ifname(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn deserialising_validates() {
        let bad = r#"{"containerId":"../../escaped","ifname":"eth0"}"#;
        assert!(serde_json::from_str::<Attachment>(bad).is_err());
        let good = r#"{"containerId":"ok","ifname":"eth0"}"#;
        assert_eq!(
            serde_json::from_str::<Attachment>(good).unwrap(),
            Attachment::new("ok", "eth0").unwrap()
        );
    }

    #[test]
    fn keys_round_trip() {
        let a = Attachment::new("abc.1", "e@th0").unwrap();
        assert_eq!(Attachment::from_key(&a.key()), Some(a));
        assert_eq!(Attachment::from_key("no-separator"), None);
    }

    #[test]
    fn host_veth_names_are_stable_short_and_distinct() {
        let a = Attachment::new("0123456789abcdef", "eth0").unwrap();
        let b = Attachment::new("0123456789abcdef", "eth1").unwrap();
        let name = host_veth_name(&a);
        assert_eq!(name.len(), 15);
        assert!(name.starts_with("weft"));
        assert_eq!(name, host_veth_name(&a.clone()));
        assert_ne!(name, host_veth_name(&b));
        // Pinned: changing the derivation would orphan every running pod's veth.
        assert_eq!(
            host_veth_name(&Attachment::new("c1", "eth0").unwrap()),
            "weftf53f02b3bfe"
        );
    }

    #[test]
    fn requested_macs_parse_and_must_be_unicast() {
        assert_eq!(
            parse_mac("02:42:AC:11:00:02"),
            Ok([0x02, 0x42, 0xac, 0x11, 0, 2])
        );
        assert_eq!(
            parse_mac("02-42-ac-11-00-02"),
            Ok([0x02, 0x42, 0xac, 0x11, 0, 2])
        );
        for bad in [
            "",
            "02:42:ac:11:00",
            "02:42:ac:11:00:02:03",
            "zz:42:ac:11:00:02",
            "2:42:ac:11:00:02",
            "01:00:5e:00:00:01",
            "00:00:00:00:00:00",
        ] {
            assert!(parse_mac(bad).is_err(), "{bad}");
        }
    }

    /// The `addr` fuzz target's regression input (fuzz/regressions/addr/mac-with-sign):
    /// a sign is not a hex digit, so "+2" is no MAC byte.
    #[test]
    fn mac_bytes_are_two_hex_digits_without_a_sign() {
        for bad in [
            "+2:42:ac:11:00:02",
            "02:42:ac:11:00:+2",
            "02-42-ac-+1-00-02",
        ] {
            assert!(parse_mac(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn pod_macs_are_local_unicast() {
        let mac = pod_mac(&Attachment::new("c1", "eth0").unwrap());
        assert_eq!(mac[0] & 0b11, 0b10);
        assert_ne!(mac, HOST_VETH_MAC);
    }
}
