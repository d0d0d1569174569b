//! What the benchmark writes and watches for: span labels as the design names them
//! (docs/networkpolicy-design.md §1.2) and address-group slices of a chosen size.

use serde_json::{json, Value};

/// Label every benchmark object carries: the row it was written in (`deletecollection`
/// removes one row's objects at once).
pub(crate) const ROW_LABEL: &str = "bench.weft.dev/row";

/// The span label of node `index` (named `node-<index>`), as weft writes it.
pub(crate) fn span_label(index: usize) -> String {
    weft_api::span::span_label(&format!("node-{index:05}"))
}

/// An object's name: `g-<row>-<index>`; [`parse_name`] reads it back.
pub(crate) fn object_name(row: usize, index: usize) -> String {
    format!("g-{row}-{index}")
}

/// (row, index) of a benchmark object's name.
pub(crate) fn parse_name(name: &str) -> Option<(u32, u32)> {
    let (row, index) = name.strip_prefix("g-")?.split_once('-')?;
    Some((row.parse().ok()?, index.parse().ok()?))
}

/// SplitMix64 (Steele, Lea, Flood 2014): a seeded, reproducible stream, so every run
/// writes the same spans.
#[derive(Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A value in `0..bound` (bound > 0; the modulo bias is irrelevant here).
    pub(crate) fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }

    /// `count` distinct values of `0..bound` (count ≤ bound).
    pub(crate) fn distinct(&mut self, count: usize, bound: usize) -> Vec<usize> {
        let mut picked = std::collections::BTreeSet::new();
        while picked.len() < count {
            picked.insert(self.below(bound));
        }
        picked.into_iter().collect()
    }
}

/// The resource the benchmark writes: API group, version, kind and plural.
#[derive(Debug, Clone)]
pub(crate) struct Resource {
    pub(crate) group: String,
    pub(crate) version: String,
    pub(crate) kind: String,
    pub(crate) plural: String,
}

impl Resource {
    /// The collection's path (cluster-scoped).
    pub(crate) fn path(&self) -> String {
        format!("/apis/{}/{}/{}", self.group, self.version, self.plural)
    }
}

/// One address-group slice as the design's `WeftAddressGroup`: `group`, `selector`,
/// `members` (pod UID, IPv6 and IPv4 address, one named port), and the span labels of
/// `nodes`;
/// members are added until the JSON reaches `target_bytes`.
pub(crate) fn slice(
    resource: &Resource,
    row: usize,
    index: usize,
    nodes: &[usize],
    target_bytes: usize,
) -> Value {
    let mut labels = serde_json::Map::new();
    labels.insert(ROW_LABEL.into(), json!(row.to_string()));
    for &node in nodes {
        labels.insert(span_label(node), json!(""));
    }
    let group = format!("g-{:012x}", index);
    let mut object = json!({
        "apiVersion": format!("{}/{}", resource.group, resource.version),
        "kind": resource.kind,
        "metadata": {"name": object_name(row, index), "labels": labels},
        "spec": {
            "group": group,
            "selector": "namespace|bench|app in (web)",
            "members": [],
        },
    });
    let mut size = object.to_string().len();
    let mut member = 0u32;
    while size < target_bytes {
        let entry = json!({
            "uid": format!("00000000-0000-4000-8000-{:04x}{:08x}", index % 0xffff, member),
            "ips": [
                format!("2001:db8:{:x}:{:x}::{:x}", index % 0xffff, member / 250, member % 250 + 1),
                format!("198.51.100.{}", member % 250 + 1),
            ],
            "ports": [{"name": "http", "protocol": "TCP", "port": 8080}],
        });
        size += entry.to_string().len() + 1;
        object["spec"]["members"]
            .as_array_mut()
            .expect("members is an array")
            .push(entry);
        member += 1;
    }
    object
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(parse_name(&object_name(3, 1999)), Some((3, 1999)));
        assert_eq!(parse_name("other"), None);
    }

    #[test]
    fn slice_reaches_its_size_and_carries_the_span() {
        let resource = Resource {
            group: "bench.weft.dev".into(),
            version: "v1alpha1".into(),
            kind: "BenchGroup".into(),
            plural: "benchgroups".into(),
        };
        let nodes = Rng::new(1).distinct(30, 1000);
        assert_eq!(nodes.len(), 30);
        let object = slice(&resource, 0, 5, &nodes, 6144);
        let size = object.to_string().len();
        assert!((6144..6144 + 200).contains(&size), "{size}");
        let labels = object["metadata"]["labels"].as_object().unwrap();
        assert_eq!(labels.len(), 31);
        assert!(labels.contains_key(&span_label(nodes[0])));
    }
}
