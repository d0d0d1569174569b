//! The rule forms of one NetworkPolicy rule in a profile chain. Every form is either
//! family-specific (an `ip …` or `ip6 …` address match, or a set of one family) or has
//! no address match at all (`peers` absent, ports by number or protocol): an ipBlock
//! of one family never yields a rule of the other, and a group yields one rule per
//! family.
//!
//! | peer | ports | rules |
//! |---|---|---|
//! | absent | none, numbers, protocols | one, no address match |
//! | group | any | one `ip` and one `ip6` (the group's sets of each family) |
//! | ipBlock | any | one of its family: the CIDR's set, minus the exceptions' |
//! | any | named | one per family the peer covers, (address, protocol, port) sets of that family |
//!
//! A named port resolves on the pod that owns it: ingress against the local pods'
//! ports (`np-lp-…`), egress against the destination group's members' (`np-gp-…`); an
//! egress rule without a group peer resolves against the group of every pod.

use super::names::{block_sets, group_ports_set, group_set, local_ports_set, Direction};
use super::state::{protocol_name, Family};
use ipnet::IpNet;
use std::collections::{BTreeMap, BTreeSet};
use weft_api::{PolicyPeer, PolicyPort, PolicyRule, Protocol};

/// A set a rule refers to, for the compiler to create and fill.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Need {
    /// A group's addresses (both families).
    Group(String),
    /// A group's members' ports named `port` (both families).
    GroupPorts { group: String, port: String },
    /// The local pods' ports named `port` (both families).
    LocalPorts { port: String },
    /// An ipBlock's sets: its CIDR and, when it has any, its exceptions (aggregated).
    Block {
        cidr: IpNet,
        except: Vec<IpNet>,
        key: String,
    },
}

/// What the rules of one policy rule need besides their text.
#[derive(Debug, Default)]
pub struct Needs {
    pub sets: BTreeSet<Need>,
    /// What could not be enforced as written, each naming the field and value.
    pub problems: Vec<String>,
}

/// One resolved peer.
enum Peer {
    All,
    Group(String),
    Block {
        family: Family,
        cidr_set: String,
        except_set: Option<String>,
    },
}

/// One resolved port match.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Ports {
    All,
    /// `meta l4proto . th dport { tcp . 80, tcp . 8000-8080 }`: (protocol, first, last).
    Numbered(Vec<(Protocol, u16, u16)>),
    /// `meta l4proto { sctp }`: every port of these protocols.
    Protocols(BTreeSet<Protocol>),
    Named(Protocol, String),
}

/// The rules allowing what `rule` allows, in `direction`, each ending in `accept`.
/// `all_pods_group` is the group of every pod, for named ports of egress rules without
/// a group peer; without it those rules allow nothing (reported).
pub fn rule_forms(
    rule: &PolicyRule,
    direction: Direction,
    all_pods_group: Option<&str>,
    at: &str,
    needs: &mut Needs,
) -> Vec<String> {
    let peers = match &rule.peers {
        None => vec![Peer::All],
        Some(peers) => peers
            .iter()
            .enumerate()
            .filter_map(|(i, peer)| resolve_peer(peer, &format!("{at}.peers[{i}]"), needs))
            .collect(),
    };
    let mut rules = Vec::new();
    for peer in &peers {
        for ports in port_forms(&rule.ports) {
            match &ports {
                Ports::Named(protocol, port) => {
                    let at = format!("{at}.ports (named port {port})");
                    for family in Family::BOTH {
                        let named = NamedPort {
                            protocol: *protocol,
                            port,
                            family,
                        };
                        rules.extend(named.rule(peer, direction, all_pods_group, &at, needs));
                    }
                }
                other => rules.extend(numbered_rules(peer, direction, other)),
            }
        }
    }
    rules
}

fn resolve_peer(peer: &PolicyPeer, at: &str, needs: &mut Needs) -> Option<Peer> {
    if let Some(group) = &peer.group {
        needs.sets.insert(Need::Group(group.clone()));
        return Some(Peer::Group(group.clone()));
    }
    let block = peer.ip_block.as_ref()?;
    let (cidr, except) = match block.parse() {
        Ok(parsed) => parsed,
        Err(errors) => {
            for e in errors {
                needs
                    .problems
                    .push(format!("{at}.{}: {}", e.field, e.problem));
            }
            return None;
        }
    };
    let except = IpNet::aggregate(&except);
    let family = Family::of_net(&cidr);
    let key = std::iter::once(&cidr)
        .chain(&except)
        .map(IpNet::to_string)
        .collect::<Vec<_>>()
        .join(" ");
    let (cidr_set, except_set) = block_sets(&key, family);
    let except_set = (!except.is_empty()).then_some(except_set);
    needs.sets.insert(Need::Block { cidr, except, key });
    Some(Peer::Block {
        family,
        cidr_set,
        except_set,
    })
}

/// The peer's address match in `family`: `None` when the peer has no address of that
/// family, an empty text when it matches every address.
fn address_match(peer: &Peer, family: Family, direction: Direction) -> Option<String> {
    let header = family.header();
    let field = match direction {
        Direction::Ingress => "saddr",
        Direction::Egress => "daddr",
    };
    match peer {
        Peer::All => Some(String::new()),
        Peer::Group(group) => Some(format!("{header} {field} @{}", group_set(group, family))),
        Peer::Block {
            family: own,
            cidr_set,
            except_set,
        } => {
            if *own != family {
                return None;
            }
            let mut text = format!("{header} {field} @{cidr_set}");
            if let Some(except) = except_set {
                text.push_str(&format!(" {header} {field} != @{except}"));
            }
            Some(text)
        }
    }
}

/// The port forms of a rule's ports: all ports when there are none; numbered ports
/// in one anonymous set (ranges merged: an interval set refuses overlaps), protocols
/// without a port in another, each (protocol, named port) on its own.
fn port_forms(ports: &[PolicyPort]) -> Vec<Ports> {
    if ports.is_empty() {
        return vec![Ports::All];
    }
    let mut ranges: BTreeMap<Protocol, Vec<(u16, u16)>> = BTreeMap::new();
    let mut protocols = BTreeSet::new();
    let mut named = BTreeSet::new();
    for port in ports {
        match (&port.named_port, port.port) {
            (Some(name), _) => {
                named.insert(Ports::Named(port.protocol, name.clone()));
            }
            (None, Some(first)) => ranges
                .entry(port.protocol)
                .or_default()
                .push((first, port.end_port.unwrap_or(first).max(first))),
            (None, None) => {
                protocols.insert(port.protocol);
            }
        }
    }
    let numbered: Vec<(Protocol, u16, u16)> = ranges
        .into_iter()
        .flat_map(|(protocol, ranges)| {
            merged(ranges)
                .into_iter()
                .map(move |(first, last)| (protocol, first, last))
        })
        .collect();
    let mut forms = Vec::new();
    if !numbered.is_empty() {
        forms.push(Ports::Numbered(numbered));
    }
    if !protocols.is_empty() {
        forms.push(Ports::Protocols(protocols));
    }
    forms.extend(named);
    forms
}

/// Ranges sorted, overlapping or adjacent ones joined.
fn merged(mut ranges: Vec<(u16, u16)>) -> Vec<(u16, u16)> {
    ranges.sort_unstable();
    let mut out: Vec<(u16, u16)> = Vec::new();
    for (first, last) in ranges {
        match out.last_mut() {
            Some(previous) if u32::from(first) <= u32::from(previous.1) + 1 => {
                previous.1 = previous.1.max(last);
            }
            _ => out.push((first, last)),
        }
    }
    out
}

/// Rules of a peer with ports by number, by protocol, or all.
fn numbered_rules(peer: &Peer, direction: Direction, ports: &Ports) -> Vec<String> {
    let port_match = match ports {
        Ports::All | Ports::Named(..) => String::new(),
        Ports::Numbered(ranges) => {
            let elements: Vec<String> = ranges
                .iter()
                .map(|(protocol, first, last)| {
                    let name = protocol_name(*protocol);
                    if first == last {
                        format!("{name} . {first}")
                    } else {
                        format!("{name} . {first}-{last}")
                    }
                })
                .collect();
            format!("meta l4proto . th dport {{ {} }}", elements.join(", "))
        }
        Ports::Protocols(protocols) => {
            let names: Vec<&str> = protocols.iter().map(|p| protocol_name(*p)).collect();
            format!("meta l4proto {{ {} }}", names.join(", "))
        }
    };
    if let Peer::All = peer {
        return vec![accepting(&[&port_match])];
    }
    Family::BOTH
        .into_iter()
        .filter_map(|family| address_match(peer, family, direction))
        .map(|address| accepting(&[&address, &port_match]))
        .collect()
}

/// One named port of one family.
struct NamedPort<'a> {
    protocol: Protocol,
    port: &'a str,
    family: Family,
}

impl NamedPort<'_> {
    /// The rule matching the destination's (address, protocol, port) against the set of
    /// the pods owning the port, with the peer's address match; none when the peer has
    /// no address of this family or no group resolves the port.
    fn rule(
        &self,
        peer: &Peer,
        direction: Direction,
        all_pods_group: Option<&str>,
        at: &str,
        needs: &mut Needs,
    ) -> Option<String> {
        let mut address = address_match(peer, self.family, direction)?;
        let port = self.port.to_owned();
        let set = match (direction, peer) {
            (Direction::Ingress, _) => {
                needs.sets.insert(Need::LocalPorts { port });
                local_ports_set(self.port, self.family)
            }
            (Direction::Egress, Peer::Group(group)) => {
                // The group's port set holds only its members' addresses.
                address.clear();
                let set = group_ports_set(group, self.port, self.family);
                let group = group.clone();
                needs.sets.insert(Need::GroupPorts { group, port });
                set
            }
            (Direction::Egress, _) => {
                let Some(group) = all_pods_group else {
                    if self.family == Family::V4 {
                        needs.problems.push(format!(
                            "{at}: no group of every pod to resolve it against; allows nothing"
                        ));
                    }
                    return None;
                };
                let group = group.to_owned();
                let set = group_ports_set(&group, self.port, self.family);
                needs.sets.insert(Need::GroupPorts { group, port });
                set
            }
        };
        let lookup = format!(
            "meta l4proto {} {} daddr . meta l4proto . th dport @{set}",
            protocol_name(self.protocol),
            self.family.header()
        );
        Some(accepting(&[&address, &lookup]))
    }
}

/// The matches joined, empty ones left out, then `accept`.
fn accepting(matches: &[&str]) -> String {
    let mut parts: Vec<&str> = matches.iter().copied().filter(|m| !m.is_empty()).collect();
    parts.push("accept");
    parts.join(" ")
}
