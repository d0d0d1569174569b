//! What the kernel holds of weft's table, from `nft -j list table`, reduced to what
//! weftd compares: each chain's type, hook, priority, policy and rule markers, each
//! set's type and flags, each map's types (the table's shape), and the elements of the
//! sets the element scripts keep.
//!
//! Sets and chains named with a declaration's [`Declaration::kept`] prefixes are kept
//! by their concern, which creates, fills and deletes them itself: the shape compare
//! leaves them out ([`Shape::without`]), or every pass would find the table different
//! and create it again.

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

/// The table's shape: chains, sets (type, interval) and maps (key, data) by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shape {
    pub chains: BTreeMap<String, ChainShape>,
    pub sets: BTreeMap<String, (String, bool)>,
    pub maps: BTreeMap<String, (String, String)>,
}

impl Shape {
    /// The shape without the sets and chains named with one of `kept`'s prefixes.
    pub fn without(self, kept: &[&str]) -> Shape {
        self.filtered(kept, false)
    }

    /// Only the sets and chains named with one of `kept`'s prefixes (no maps).
    pub fn only(self, kept: &[&str]) -> Shape {
        let mut shape = self.filtered(kept, true);
        shape.maps.clear();
        shape
    }

    fn filtered(mut self, kept: &[&str], keep: bool) -> Shape {
        let wanted = |name: &String| kept.iter().any(|prefix| name.starts_with(prefix)) == keep;
        self.chains.retain(|name, _| wanted(name));
        self.sets.retain(|name, _| wanted(name));
        self
    }
}

/// The table as listed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    pub shape: Shape,
    /// Elements by address or port set; `None` for a set holding an element of a form
    /// weftd never writes (changed by hand), which makes the table count as different
    /// when the set is declared.
    pub elements: BTreeMap<String, Option<BTreeSet<Element>>>,
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
        let maps = self
            .maps
            .iter()
            .map(|m| (m.name.to_owned(), (m.key.to_owned(), m.data.to_owned())))
            .collect();
        Shape { chains, sets, maps }
    }

    /// Whether `listing` has this declaration's shape, the concerns' kept objects
    /// left out.
    pub fn describes(&self, listing: &Listing) -> bool {
        listing.shape.clone().without(&self.kept) == self.shape()
    }
}

impl Listing {
    /// Parses `nft -j list table` output. `None` if it is not nft's JSON.
    pub fn parse(json: &[u8]) -> Option<Listing> {
        let root: Value = serde_json::from_slice(json).ok()?;
        let mut listing = Listing::default();
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
                if !SCRIPTED_KINDS.contains(&kind.as_str()) {
                    // Kept by their concern (the pod guard's pairs over nfnetlink,
                    // NetworkPolicy's interface sets), never by the element scripts.
                    continue;
                }
                let members: Option<BTreeSet<Element>> = set
                    .get("elem")
                    .and_then(Value::as_array)
                    .map_or(Some(BTreeSet::new()), |elems| {
                        elems.iter().map(element).collect()
                    });
                listing.elements.insert(name, members);
            } else if let Some(map) = object.get("map") {
                let text = |key: &str| map.get(key).and_then(Value::as_str).unwrap_or("");
                let types = (set_type(map.get("type")), text("map").to_owned());
                listing.shape.maps.insert(text("name").to_owned(), types);
            }
        }
        Some(listing)
    }

    /// The elements of the declared sets, keyed like [`Elements`].
    pub fn declared_elements(&self, declaration: &Declaration) -> Option<Elements> {
        declaration
            .sets
            .iter()
            .map(|s| match self.elements.get(s.name) {
                Some(members) => members.clone().map(|m| (s.name, m)),
                None => Some((s.name, BTreeSet::new())),
            })
            .collect()
    }
}

/// The set types whose elements the element scripts write ([`Element`]'s forms).
const SCRIPTED_KINDS: [&str; 3] = ["ipv4_addr", "ipv6_addr", "inet_service"];

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
