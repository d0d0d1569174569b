//! What the kernel holds of weft's table, from `nft -j list table`, reduced to what
//! weftd compares: each chain's type, hook, priority, policy and rule markers, each
//! set's type and flags (the table's shape), and each set's elements.

use super::table::{rule_marker, Declaration, Element, Elements};
use ipnet::IpNet;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// A chain as compared: type, hook, priority, policy, then its rules' comments in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainShape {
    pub kind: String,
    pub hook: String,
    pub priority: i64,
    pub policy: String,
    pub rules: Vec<String>,
}

/// The table's shape: chains and sets (type, interval) by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shape {
    pub chains: BTreeMap<String, ChainShape>,
    pub sets: BTreeMap<String, (String, bool)>,
}

/// The table as listed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    pub shape: Shape,
    /// Elements by set; `None` when an element has a form weftd never writes (the set
    /// was changed by hand), which makes the table count as different.
    pub elements: Option<BTreeMap<String, BTreeSet<Element>>>,
}

impl Declaration {
    /// The shape the kernel lists for this declaration.
    pub fn shape(&self) -> Shape {
        let chains = self
            .chains
            .iter()
            .map(|c| {
                let rules = c
                    .rules
                    .iter()
                    .enumerate()
                    .map(|(index, rule)| rule_marker(c.name, index, rule))
                    .collect();
                let shape = ChainShape {
                    kind: c.kind.name().into(),
                    hook: c.hook.name().into(),
                    priority: c.priority.value(),
                    policy: "accept".into(),
                    rules,
                };
                (c.name.to_owned(), shape)
            })
            .collect();
        let sets = self
            .sets
            .iter()
            .map(|s| (s.name.to_owned(), (s.kind.to_owned(), s.interval)))
            .collect();
        Shape { chains, sets }
    }
}

impl Listing {
    /// Parses `nft -j list table` output. `None` if it is not nft's JSON.
    pub fn parse(json: &[u8]) -> Option<Listing> {
        let root: Value = serde_json::from_slice(json).ok()?;
        let mut listing = Listing {
            shape: Shape::default(),
            elements: Some(BTreeMap::new()),
        };
        for object in root.get("nftables")?.as_array()? {
            if let Some(chain) = object.get("chain") {
                let text = |key: &str| chain.get(key).and_then(Value::as_str).unwrap_or("");
                let shape = ChainShape {
                    kind: text("type").into(),
                    hook: text("hook").into(),
                    priority: chain.get("prio").and_then(Value::as_i64).unwrap_or(0),
                    policy: text("policy").into(),
                    rules: Vec::new(),
                };
                listing.shape.chains.insert(text("name").into(), shape);
            } else if let Some(rule) = object.get("rule") {
                let chain = rule.get("chain").and_then(Value::as_str)?;
                let comment = rule.get("comment").and_then(Value::as_str).unwrap_or("");
                // nft lists a table's chains before their rules.
                if let Some(shape) = listing.shape.chains.get_mut(chain) {
                    shape.rules.push(comment.into());
                }
            } else if let Some(set) = object.get("set") {
                let name = set.get("name").and_then(Value::as_str)?.to_owned();
                let kind = set_type(set.get("type"));
                let interval = set
                    .get("flags")
                    .and_then(Value::as_array)
                    .is_some_and(|f| f.iter().any(|v| v == "interval"));
                listing
                    .shape
                    .sets
                    .insert(name.clone(), (kind.clone(), interval));
                if kind.contains(CONCATENATION) {
                    // Kept over nfnetlink by their concern (the pod guard), never by
                    // the element scripts.
                    continue;
                }
                let members: Option<BTreeSet<Element>> = set
                    .get("elem")
                    .and_then(Value::as_array)
                    .map_or(Some(BTreeSet::new()), |elems| {
                        elems.iter().map(element).collect()
                    });
                listing.elements = match (listing.elements.take(), members) {
                    (Some(mut all), Some(members)) => {
                        all.insert(name, members);
                        Some(all)
                    }
                    _ => None,
                };
            }
        }
        Some(listing)
    }

    /// The elements of the declared sets, keyed like [`Elements`].
    pub fn declared_elements(&self, declaration: &Declaration) -> Option<Elements> {
        let listed = self.elements.as_ref()?;
        Some(
            declaration
                .sets
                .iter()
                .map(|s| (s.name, listed.get(s.name).cloned().unwrap_or_default()))
                .collect(),
        )
    }
}

/// What separates the fields of a concatenated set type.
const CONCATENATION: &str = " . ";

/// A set's type as declared: nft lists a concatenation (`ifname . ipv4_addr`) as an
/// array of its fields.
fn set_type(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(kind)) => kind.clone(),
        Some(Value::Array(fields)) => fields
            .iter()
            .map(|f| f.as_str().unwrap_or(""))
            .collect::<Vec<_>>()
            .join(CONCATENATION),
        _ => String::new(),
    }
}

/// One element as nft's JSON lists it: a port number, an address, or a prefix.
fn element(value: &Value) -> Option<Element> {
    if let Some(port) = value.as_u64() {
        return u16::try_from(port).ok().map(Element::Port);
    }
    if let Some(address) = value.as_str() {
        let address: IpAddr = address.parse().ok()?;
        return Some(Element::Prefix(IpNet::from(address)));
    }
    let prefix = value.get("prefix")?;
    let address: IpAddr = prefix.get("addr")?.as_str()?.parse().ok()?;
    let length = u8::try_from(prefix.get("len")?.as_u64()?).ok()?;
    IpNet::new(address, length).ok().map(Element::Prefix)
}
