//! Who receives a policy object: its span, written as labels so each weftd watches only
//! what concerns its own pods (Antrea's span, carried by label selectors of the real
//! apiserver instead of an aggregated API).
//!
//! A node's label is `span.weft.dev/n-<16 hex digits of SHA-256(node name)>`: label names
//! are at most 63 characters (Kubernetes "Labels and Selectors", syntax), node names are
//! not. A collision only delivers an object to a node that ignores it. An object spanning
//! more than [`SPAN_NODE_LABELS_MAX`] nodes carries [`SPAN_ALL`] instead, so its label
//! bytes stay bounded and a change of a wide span rewrites nothing.

use sha2::{Digest, Sha256};

/// The label prefix of node spans.
pub const SPAN_NODE_PREFIX: &str = "span.weft.dev/n-";

/// The label every weftd also watches: the object concerns (almost) every node.
pub const SPAN_ALL: &str = "span.weft.dev/all";

/// Above this many nodes an object is labelled [`SPAN_ALL`].
pub const SPAN_NODE_LABELS_MAX: usize = 128;

/// Below this many nodes an object labelled [`SPAN_ALL`] goes back to node labels
/// (hysteresis: a span hovering around the limit does not flip on every change).
pub const SPAN_NODE_LABELS_RETURN: usize = 96;

/// The first `hex_digits` hex digits of SHA-256 of `text`: stable across releases and
/// platforms, which object names and labels derived from content must be.
pub fn content_hash(text: &str, hex_digits: usize) -> String {
    let digest = Sha256::digest(text.as_bytes());
    let mut out = String::with_capacity(hex_digits);
    for byte in digest.iter() {
        if out.len() >= hex_digits {
            break;
        }
        out.push_str(&format!("{byte:02x}"));
    }
    out.truncate(hex_digits);
    out
}

/// The span label of `node`.
pub fn span_label(node: &str) -> String {
    format!("{SPAN_NODE_PREFIX}{}", content_hash(node, 16))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn span_labels_are_stable_valid_label_names() {
        let label = span_label("node-a");
        assert_eq!(
            label,
            format!("{SPAN_NODE_PREFIX}{}", content_hash("node-a", 16))
        );
        let name = label.split('/').nth(1).unwrap();
        assert!(name.len() <= 63, "{name}");
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        assert_ne!(span_label("node-a"), span_label("node-b"));
        assert_eq!(
            content_hash("abc", 16),
            "ba7816bf8f01cfea",
            "SHA-256 test vector of FIPS 180-2"
        );
    }
}
