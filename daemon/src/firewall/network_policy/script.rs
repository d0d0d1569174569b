//! `nft -f -` scripts between two [`Desired`] states, one transaction each. Order
//! inside a transaction matters because nft checks references as it goes: sets and
//! chains are created before rules or map elements refer to them, and deleted only
//! after the map elements and rules that referred to them are gone.

use super::state::{Desired, DynamicSet, Verdict};
use super::{EGRESS_PODS, INGRESS_PODS, SELF, V4_OFF, V6_OFF};
use crate::firewall::table::{rule_marker, Table};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{Display, Write};

const TABLE: Table = Table::Weft;

/// The script turning `old` (what the kernel holds) into `new`, changing only what
/// differs; empty when nothing does.
pub fn diff_script(old: &Desired, new: &Desired) -> String {
    let mut script = String::new();
    for (name, set) in &new.sets {
        match old.sets.get(name) {
            None => add_set(&mut script, name, set),
            Some(previous) => {
                let (gone, came) = changes(&previous.elements, &set.elements);
                elements(&mut script, "delete", name, gone);
                elements(&mut script, "add", name, came);
            }
        }
    }
    for (name, rules) in &new.chains {
        match old.chains.get(name) {
            None => {
                let _ = writeln!(script, "add chain {TABLE} {name}");
                add_rules(&mut script, name, rules);
            }
            Some(previous) if previous != rules => {
                let _ = writeln!(script, "flush chain {TABLE} {name}");
                add_rules(&mut script, name, rules);
            }
            Some(_) => {}
        }
    }
    verdict_changes(&mut script, INGRESS_PODS, &old.ingress, &new.ingress);
    verdict_changes(&mut script, EGRESS_PODS, &old.egress, &new.egress);
    for (set, old, new) in [
        (SELF, &old.own, &new.own),
        (V4_OFF, &old.v4_off, &new.v4_off),
        (V6_OFF, &old.v6_off, &new.v6_off),
    ] {
        let (gone, came) = changes(old, new);
        let self_pairs = set == SELF;
        elements(&mut script, "delete", set, interfaces(gone, self_pairs));
        elements(&mut script, "add", set, interfaces(came, self_pairs));
    }
    for name in old.chains.keys().filter(|c| !new.chains.contains_key(*c)) {
        let _ = writeln!(script, "delete chain {TABLE} {name}");
    }
    for name in old.sets.keys().filter(|s| !new.sets.contains_key(*s)) {
        let _ = writeln!(script, "delete set {TABLE} {name}");
    }
    script
}

/// The script that makes the kernel hold exactly `desired` whatever it held of it:
/// after the table was created again, or when a change failed on drift. `stale`
/// names dynamic chains and sets the kernel lists; those not desired are deleted.
pub fn full_script(desired: &Desired, stale: &BTreeSet<String>) -> String {
    let mut script = String::new();
    for (name, set) in &desired.sets {
        add_set(&mut script, name, set);
        let _ = writeln!(script, "flush set {TABLE} {name}");
        elements(&mut script, "add", name, set.elements.iter());
    }
    for (name, rules) in &desired.chains {
        let _ = writeln!(script, "add chain {TABLE} {name}");
        let _ = writeln!(script, "flush chain {TABLE} {name}");
        add_rules(&mut script, name, rules);
    }
    for (map, verdicts) in [
        (INGRESS_PODS, &desired.ingress),
        (EGRESS_PODS, &desired.egress),
    ] {
        let _ = writeln!(script, "flush map {TABLE} {map}");
        elements(&mut script, "add", map, map_elements(verdicts.iter()));
    }
    for (set, veths) in [
        (SELF, &desired.own),
        (V4_OFF, &desired.v4_off),
        (V6_OFF, &desired.v6_off),
    ] {
        let _ = writeln!(script, "flush set {TABLE} {set}");
        elements(
            &mut script,
            "add",
            set,
            interfaces(veths.iter(), set == SELF),
        );
    }
    let (chains, sets): (Vec<&String>, Vec<&String>) = stale
        .iter()
        .filter(|name| !desired.chains.contains_key(*name) && !desired.sets.contains_key(*name))
        .partition(|name| is_chain_name(name));
    for name in chains {
        let _ = writeln!(script, "delete chain {TABLE} {name}");
    }
    for name in sets {
        let _ = writeln!(script, "delete set {TABLE} {name}");
    }
    script
}

/// Profile chains are named `np-i-…`/`np-e-…`; every other dynamic name is a set.
fn is_chain_name(name: &str) -> bool {
    name.starts_with("np-i-") || name.starts_with("np-e-")
}

fn add_set(script: &mut String, name: &str, set: &DynamicSet) {
    let _ = writeln!(
        script,
        "add set {TABLE} {name} {{ {} }}",
        set.kind.declaration()
    );
    elements(script, "add", name, set.elements.iter());
}

/// The rules, each with its marker: the firewall's passes compare them to tell drift.
fn add_rules(script: &mut String, chain: &str, rules: &[String]) {
    for (index, rule) in rules.iter().enumerate() {
        let marker = rule_marker(chain, index, rule);
        let _ = writeln!(
            script,
            "add rule {TABLE} {chain} {rule} comment \"{marker}\""
        );
    }
}

/// A map's changes: a key whose verdict changes is deleted, then added with the new.
fn verdict_changes(
    script: &mut String,
    map: &str,
    old: &BTreeMap<String, Verdict>,
    new: &BTreeMap<String, Verdict>,
) {
    let gone = old
        .iter()
        .filter(|(veth, verdict)| new.get(*veth) != Some(verdict))
        .map(|(veth, _)| format!("\"{veth}\""));
    elements(script, "delete", map, gone);
    let came = new
        .iter()
        .filter(|(veth, verdict)| old.get(*veth) != Some(verdict));
    elements(script, "add", map, map_elements(came));
}

fn map_elements<'a>(
    verdicts: impl Iterator<Item = (&'a String, &'a Verdict)> + 'a,
) -> impl Iterator<Item = String> + 'a {
    verdicts.map(|(veth, verdict)| format!("\"{veth}\" : {verdict}"))
}

/// Interface set elements: `"veth"`, or `"veth" . "veth"` for the self pairs.
fn interfaces<'a>(
    veths: impl Iterator<Item = &'a String> + 'a,
    self_pairs: bool,
) -> impl Iterator<Item = String> + 'a {
    veths.map(move |veth| {
        if self_pairs {
            format!("\"{veth}\" . \"{veth}\"")
        } else {
            format!("\"{veth}\"")
        }
    })
}

/// What `old` has and `new` lacks, and the reverse.
fn changes<'a, T: Ord>(
    old: &'a BTreeSet<T>,
    new: &'a BTreeSet<T>,
) -> (
    impl Iterator<Item = &'a T> + 'a,
    impl Iterator<Item = &'a T> + 'a,
) {
    (old.difference(new), new.difference(old))
}

/// One `add element`/`delete element` line, none when there is nothing to change.
fn elements<T: Display>(
    script: &mut String,
    verb: &str,
    set: &str,
    items: impl Iterator<Item = T>,
) {
    let items: Vec<String> = items.map(|item| item.to_string()).collect();
    if !items.is_empty() {
        let _ = writeln!(
            script,
            "{verb} element {TABLE} {set} {{ {} }}",
            items.join(", ")
        );
    }
}
