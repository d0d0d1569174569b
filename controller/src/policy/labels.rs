//! The span labels of a `WeftPolicy` or `WeftAddressGroup` slice (design §1.2): one
//! label per spanned node, or [`SPAN_ALL`] alone once the span is wide, so label bytes
//! stay bounded and a wide span's changes rewrite nothing. Hysteresis: an object goes
//! wide above [`SPAN_NODE_LABELS_MAX`] nodes and back to node labels only below
//! [`SPAN_NODE_LABELS_RETURN`], so a span hovering at the limit does not flip (each
//! flip is a DELETED on one of weftd's watches and an ADDED on the other).

use std::collections::{BTreeMap, BTreeSet};
use weft_api::span::{span_label, SPAN_ALL, SPAN_NODE_LABELS_MAX, SPAN_NODE_LABELS_RETURN};

/// The labels for `span`, the object having been written wide (`SPAN_ALL`) or not
/// before: a new leader reads that from the listed object, so it labels as the last
/// leader did and writes nothing.
pub fn span_labels(span: &BTreeSet<String>, was_wide: bool) -> BTreeMap<String, String> {
    let wide = match was_wide {
        true => span.len() >= SPAN_NODE_LABELS_RETURN,
        false => span.len() > SPAN_NODE_LABELS_MAX,
    };
    if wide {
        return BTreeMap::from([(SPAN_ALL.to_owned(), String::new())]);
    }
    span.iter()
        .map(|node| (span_label(node), String::new()))
        .collect()
}

/// Whether an object's labels say it was written wide.
pub fn is_wide(labels: &BTreeMap<String, String>) -> bool {
    labels.contains_key(SPAN_ALL)
}

#[cfg(test)]
#[path = "../tests/policy_labels.rs"]
mod tests;
