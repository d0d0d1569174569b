//! weft's nftables tables as data: the sets and chains the concerns declare, the
//! elements their sets hold, and the two scripts `nft -f` runs per table: one that
//! creates the whole table in one transaction, one that changes elements only. Pure, so
//! the scripts are unit-tested; [`super::nft`] runs them.

use ipnet::IpNet;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Display, Write};

/// One of weft's tables. A concern puts each chain in the table of the family it
/// needs: NAT turns connection tracking on for every family its table carries, so NAT
/// of IPv4 only lives in an `ip` table (see [`super`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    /// `inet weft`: both families, for concerns of both (the tunnel's `notrack`, which
    /// must match VXLAN over an IPv6 underlay too).
    Weft,
    /// `ip weft-nat`: IPv4 only, for NAT.
    WeftNat,
    /// `arp weft`: ARP, for which of the node's addresses it answers where.
    WeftArp,
}

impl Table {
    /// nft's family keyword.
    pub fn family(self) -> &'static str {
        match self {
            Table::Weft => "inet",
            Table::WeftNat => "ip",
            Table::WeftArp => "arp",
        }
    }

    /// The table's name within its family.
    pub fn name(self) -> &'static str {
        match self {
            Table::Weft | Table::WeftArp => "weft",
            Table::WeftNat => "weft-nat",
        }
    }
}

impl Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.family(), self.name())
    }
}

/// A named set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Set {
    pub name: &'static str,
    /// nft's element type (`ipv4_addr`, `inet_service`, ...).
    pub kind: &'static str,
    /// Whether elements are prefixes or ranges (`flags interval`).
    pub interval: bool,
}

/// A named map from a key to a verdict (`type ifname : verdict`): a rule jumps on the
/// packet's key through it (`iifname vmap @map`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Map {
    pub name: &'static str,
    /// nft's key type.
    pub key: &'static str,
    /// nft's data type (`verdict`).
    pub data: &'static str,
}

/// Where a base chain hooks into the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    Prerouting,
    Input,
    Forward,
    Output,
    Postrouting,
}

/// A base chain's priority, by the name nft gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// The pod guard's (-310): before everything else of weft's, before connection
    /// tracking (-200) and the tunnel's `notrack` (raw, -300).
    PodGuard,
    /// NetworkPolicy's family-off chains (-305): after the pod guard, before the
    /// tunnel's `notrack` and connection tracking, so a dropped packet leaves no entry.
    PolicyFamily,
    /// Before connection tracking (-300).
    Raw,
    /// NetworkPolicy's egress chain (-5): after DNAT (-100), before kube-proxy's
    /// `filter-forward` (0); the source pod's verdict.
    PolicyEgress,
    /// NetworkPolicy's ingress chain (-4): after the egress chain, so a forwarded
    /// packet passes both the source's and the destination's verdict.
    PolicyIngress,
    /// Filtering (0).
    Filter,
    /// Source NAT (100).
    SrcNat,
}

/// A base chain's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainKind {
    Filter,
    Nat,
}

/// A base chain and its rules (nft syntax, without comments: [`Declaration`] adds them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    pub name: &'static str,
    pub kind: ChainKind,
    pub hook: Hook,
    pub priority: Priority,
    pub rules: Vec<String>,
}

/// Everything one table declares: what the concerns contribute to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declaration {
    pub table: Table,
    pub sets: Vec<Set>,
    pub maps: Vec<Map>,
    pub chains: Vec<Chain>,
    /// Name prefixes of the sets and chains a concern creates and deletes itself in
    /// this table (NetworkPolicy's per-profile chains and address sets): the shape
    /// compare leaves them out, and a re-created table starts without them.
    pub kept: Vec<&'static str>,
}

/// One set element.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Element {
    /// An address prefix (a single address is a full-length prefix).
    Prefix(IpNet),
    /// A port (`inet_service`).
    Port(u16),
}

/// The elements each set should hold, by set name.
pub type Elements = BTreeMap<&'static str, BTreeSet<Element>>;

/// What the concerns declare: per table, its declaration and its sets' elements.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tables(BTreeMap<Table, (Declaration, Elements)>);

impl Tables {
    /// `table`'s declaration and elements, empty until a concern adds to them.
    pub fn table(&mut self, table: Table) -> (&mut Declaration, &mut Elements) {
        let (declaration, elements) = self.0.entry(table).or_insert_with(|| {
            let declaration = Declaration {
                table,
                sets: Vec::new(),
                maps: Vec::new(),
                chains: Vec::new(),
                kept: Vec::new(),
            };
            (declaration, Elements::new())
        });
        (declaration, elements)
    }

    /// The declared tables, each with its elements.
    pub fn iter(&self) -> impl Iterator<Item = &(Declaration, Elements)> {
        self.0.values()
    }
}

impl Hook {
    pub fn name(self) -> &'static str {
        match self {
            Hook::Prerouting => "prerouting",
            Hook::Input => "input",
            Hook::Forward => "forward",
            Hook::Output => "output",
            Hook::Postrouting => "postrouting",
        }
    }
}

impl Priority {
    pub fn name(self) -> &'static str {
        match self {
            Priority::PodGuard => "-310",
            Priority::PolicyFamily => "-305",
            Priority::Raw => "raw",
            Priority::PolicyEgress => "-5",
            Priority::PolicyIngress => "-4",
            Priority::Filter => "filter",
            Priority::SrcNat => "srcnat",
        }
    }

    /// The number nft lists for it.
    pub fn value(self) -> i64 {
        match self {
            Priority::PodGuard => -310,
            Priority::PolicyFamily => -305,
            Priority::Raw => -300,
            Priority::PolicyEgress => -5,
            Priority::PolicyIngress => -4,
            Priority::Filter => 0,
            Priority::SrcNat => 100,
        }
    }
}

impl ChainKind {
    pub fn name(self) -> &'static str {
        match self {
            ChainKind::Filter => "filter",
            ChainKind::Nat => "nat",
        }
    }
}

impl Display for Element {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Element::Prefix(net) if net.prefix_len() == net.max_prefix_len() => {
                write!(f, "{}", net.addr())
            }
            Element::Prefix(net) => write!(f, "{net}"),
            Element::Port(port) => write!(f, "{port}"),
        }
    }
}

/// The comment that marks a rule as the one weftd declared: the chain, the rule's
/// position and a hash of its text. Comparing the kernel's comments with these tells a
/// deleted, added or changed rule without parsing nft's rendering of expressions.
pub fn rule_marker(chain: &str, index: usize, rule: &str) -> String {
    // FNV-1a: stable across builds and Rust versions, unlike std's hasher.
    let hash = rule.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    format!("weft {chain}#{index} {hash:08x}")
}

impl Declaration {
    /// The script that creates the table with its elements, in one transaction: any
    /// table of the same name and family goes first, so the result is exactly this
    /// whatever the kernel held.
    pub fn creation_script(&self, elements: &Elements) -> String {
        let mut script = String::new();
        // "add" then "delete" removes a table whether or not it exists.
        let _ = writeln!(script, "add table {}", self.table);
        let _ = writeln!(script, "delete table {}", self.table);
        let _ = writeln!(script, "table {} {{", self.table);
        for set in &self.sets {
            let flags = if set.interval { " flags interval;" } else { "" };
            let _ = writeln!(script, "\tset {} {{ type {};{flags} }}", set.name, set.kind);
        }
        for map in &self.maps {
            let _ = writeln!(
                script,
                "\tmap {} {{ type {} : {}; }}",
                map.name, map.key, map.data
            );
        }
        for chain in &self.chains {
            let _ = writeln!(script, "\tchain {} {{", chain.name);
            let _ = writeln!(
                script,
                "\t\ttype {} hook {} priority {}; policy accept;",
                chain.kind.name(),
                chain.hook.name(),
                chain.priority.name()
            );
            for (index, rule) in chain.rules.iter().enumerate() {
                let marker = rule_marker(chain.name, index, rule);
                let _ = writeln!(script, "\t\t{rule} comment \"{marker}\"");
            }
            let _ = writeln!(script, "\t}}");
        }
        let _ = writeln!(script, "}}");
        script.push_str(&element_lines("add", self.table, elements));
        script
    }
}

/// The script that turns the sets' elements from `actual` into `desired`: one `add
/// element` and one `delete element` line per set that changes, one transaction. Empty
/// when nothing changes. A declared set `desired` has no entry for (its elements are
/// not known yet) keeps what the kernel holds.
pub fn element_script(table: Table, actual: &Elements, desired: &Elements) -> String {
    let known: Elements = actual
        .iter()
        .filter(|(set, _)| desired.contains_key(*set))
        .map(|(set, members)| (*set, members.clone()))
        .collect();
    element_lines("delete", table, &missing_from(&known, desired))
        + &element_lines("add", table, &missing_from(desired, &known))
}

/// The elements of `from` that `other` lacks, per set.
fn missing_from(from: &Elements, other: &Elements) -> Elements {
    from.iter()
        .map(|(set, members)| {
            let lacking = members
                .iter()
                .filter(|e| !other.get(set).is_some_and(|o| o.contains(e)))
                .copied()
                .collect();
            (*set, lacking)
        })
        .collect()
}

fn element_lines(verb: &str, table: Table, elements: &Elements) -> String {
    let mut lines = String::new();
    for (set, members) in elements {
        if members.is_empty() {
            continue;
        }
        let list: Vec<String> = members.iter().map(Element::to_string).collect();
        let _ = writeln!(
            lines,
            "{verb} element {table} {set} {{ {} }}",
            list.join(", ")
        );
    }
    lines
}
