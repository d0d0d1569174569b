//! The names of NetworkPolicy's dynamic sets and chains: short, deterministic, within
//! nft's limits (set and chain names up to 255 bytes, NFT_SET_MAXNAMELEN and
//! NFT_CHAIN_MAXNAMELEN in linux/netfilter/nf_tables.h), and made of the characters an
//! nft identifier may hold. Content the controller names (groups, port names) keeps its
//! readable form when it has the expected shape; anything else is hashed, into a form a
//! readable one never takes, so two inputs never share a name by accident.

use super::state::Family;
use weft_api::span::content_hash;

/// Name prefixes of every dynamic object; the static part uses none of them.
pub const KEPT_PREFIXES: [&str; 7] = [
    PROFILE_INGRESS,
    PROFILE_EGRESS,
    GROUP,
    GROUP_PORTS,
    LOCAL_PORTS,
    BLOCK,
    EXCEPT,
];

const PROFILE_INGRESS: &str = "np-i-";
const PROFILE_EGRESS: &str = "np-e-";
const GROUP: &str = "np-g-";
const GROUP_PORTS: &str = "np-gp-";
const LOCAL_PORTS: &str = "np-lp-";
const BLOCK: &str = "np-b-";
const EXCEPT: &str = "np-x-";

/// Hex digits of SHA-256 in a hashed name: 64 bits, so finding a second content for a
/// given name takes ~2^64 tries.
const HASH_DIGITS: usize = 16;

/// Which way a profile judges traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    /// Traffic to the pod: peers are sources.
    Ingress,
    /// Traffic from the pod: peers are destinations.
    Egress,
}

/// The chain of a profile: the sorted policy names of one direction.
pub fn profile_chain(direction: Direction, policies: &[String]) -> String {
    let prefix = match direction {
        Direction::Ingress => PROFILE_INGRESS,
        Direction::Egress => PROFILE_EGRESS,
    };
    // Policy names are DNS subdomains joined by a dot: never a newline.
    format!(
        "{prefix}{}",
        content_hash(&policies.join("\n"), HASH_DIGITS)
    )
}

/// A group's member addresses of one family.
pub fn group_set(group: &str, family: Family) -> String {
    format!("{GROUP}{}-{}", group_part(group), family.suffix())
}

/// Local pods' (address, protocol, port) of a named port, one family.
pub fn local_ports_set(port: &str, family: Family) -> String {
    format!("{LOCAL_PORTS}{}-{}", port_part(port), family.suffix())
}

/// A group's members' (address, protocol, port) of a named port, one family.
pub fn group_ports_set(group: &str, port: &str, family: Family) -> String {
    format!(
        "{GROUP_PORTS}{}-{}-{}",
        group_part(group),
        port_part(port),
        family.suffix()
    )
}

/// An ipBlock's CIDR and its exceptions' set, named by their content (`key`).
pub fn block_sets(key: &str, family: Family) -> (String, String) {
    let hash = content_hash(key, HASH_DIGITS);
    let suffix = family.suffix();
    (
        format!("{BLOCK}{hash}-{suffix}"),
        format!("{EXCEPT}{hash}-{suffix}"),
    )
}

/// A controller group name `g-<12 hex>` as its hex digits, the group of every pod
/// (`g-all`) as `all`, anything else hashed behind an `x` (17 characters).
fn group_part(group: &str) -> String {
    match group.strip_prefix("g-") {
        Some("all") => "all".to_owned(),
        Some(hex)
            if hex.len() == 12
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
        {
            hex.to_owned()
        }
        _ => hashed(group),
    }
}

/// A port name as Kubernetes allows it (IANA_SVC_NAME: 1-15 lowercase letters, digits
/// and hyphens, a letter among them) as is, anything else hashed behind an `x` (17
/// characters: longer than any valid name).
fn port_part(port: &str) -> String {
    let valid = (1..=15).contains(&port.len())
        && port
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && port.bytes().any(|b| b.is_ascii_lowercase());
    if valid {
        port.to_owned()
    } else {
        hashed(port)
    }
}

fn hashed(text: &str) -> String {
    format!("x{}", content_hash(text, HASH_DIGITS))
}
