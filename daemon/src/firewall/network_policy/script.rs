//! `nft -f -` scripts between two [`Desired`] states, one transaction each. Order
//! inside a transaction matters because nft checks references as it goes: sets and
//! chains are created before rules or map elements refer to them, and deleted only
//! after the map elements and rules that referred to them are gone.

use super::dispatch::{dispatch_chain, dispatch_rules, verdict_map, MapVerdict, Placed};
use super::names::{member_set, profile_direction, Direction};
use super::state::{Desired, DynamicSet};
use super::{SELF, V4_OFF, V6_OFF};
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
                add_member_set(&mut script, name);
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
    for direction in DIRECTIONS {
        let rules = dispatch_rules(new.chains.keys(), direction);
        if dispatch_rules(old.chains.keys(), direction) != rules {
            write_dispatch(&mut script, direction, &rules);
        }
    }
    for (direction, old_verdicts, new_verdicts) in [
        (Direction::Ingress, &old.ingress, &new.ingress),
        (Direction::Egress, &old.egress, &new.egress),
    ] {
        let before = Placed::of(old_verdicts, old.chains.keys(), direction);
        let after = Placed::of(new_verdicts, new.chains.keys(), direction);
        placement_changes(&mut script, direction, &before, &after);
    }
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
    // The dispatch rules that referred to them are gone already.
    for name in old.chains.keys().filter(|c| !new.chains.contains_key(*c)) {
        let _ = writeln!(script, "delete chain {TABLE} {name}");
        let _ = writeln!(script, "delete set {TABLE} {}", member_set(name));
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
        add_member_set(&mut script, name);
        let _ = writeln!(script, "add chain {TABLE} {name}");
        let _ = writeln!(script, "flush chain {TABLE} {name}");
        add_rules(&mut script, name, rules);
    }
    for (direction, verdicts) in [
        (Direction::Ingress, &desired.ingress),
        (Direction::Egress, &desired.egress),
    ] {
        write_dispatch(
            &mut script,
            direction,
            &dispatch_rules(desired.chains.keys(), direction),
        );
        let placed = Placed::of(verdicts, desired.chains.keys(), direction);
        let map = verdict_map(direction);
        let _ = writeln!(script, "flush map {TABLE} {map}");
        elements(&mut script, "add", map, map_elements(&placed.map));
        for (set, veths) in &placed.members {
            let _ = writeln!(script, "flush set {TABLE} {set}");
            elements(&mut script, "add", set, quoted(veths));
        }
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
    let member_sets: BTreeSet<String> = desired.chains.keys().map(|c| member_set(c)).collect();
    let (chains, sets): (Vec<&String>, Vec<&String>) = stale
        .iter()
        .filter(|name| {
            !desired.chains.contains_key(*name)
                && !desired.sets.contains_key(*name)
                && !member_sets.contains(*name)
        })
        .partition(|name| profile_direction(name).is_some());
    for name in chains {
        let _ = writeln!(script, "delete chain {TABLE} {name}");
    }
    for name in sets {
        let _ = writeln!(script, "delete set {TABLE} {name}");
    }
    script
}

const DIRECTIONS: [Direction; 2] = [Direction::Ingress, Direction::Egress];

/// A profile chain's member set, declared empty (`add` leaves an existing one be).
fn add_member_set(script: &mut String, chain: &str) {
    let _ = writeln!(
        script,
        "add set {TABLE} {} {{ type ifname; }}",
        member_set(chain)
    );
}

/// The dispatch chain of `direction`, rewritten whole.
fn write_dispatch(script: &mut String, direction: Direction, rules: &[String]) {
    let chain = dispatch_chain(direction);
    let _ = writeln!(script, "flush chain {TABLE} {chain}");
    add_rules(script, chain, rules);
}

/// One direction's verdict changes: what left the map or a member set, then what
/// came (a veth whose verdict changes is deleted, then added with the new one).
fn placement_changes(script: &mut String, direction: Direction, old: &Placed, new: &Placed) {
    let map = verdict_map(direction);
    let gone = old
        .map
        .iter()
        .filter(|(veth, verdict)| new.map.get(*veth) != Some(verdict))
        .map(|(veth, _)| format!("\"{veth}\""));
    elements(script, "delete", map, gone);
    for (set, veths) in &old.members {
        let kept = new.members.get(set);
        let gone = veths
            .iter()
            .filter(|v| kept.is_none_or(|k| !k.contains(*v)));
        elements(script, "delete", set, gone.map(|v| format!("\"{v}\"")));
    }
    let came: BTreeMap<&str, MapVerdict> = new
        .map
        .iter()
        .filter(|(veth, verdict)| old.map.get(*veth) != Some(verdict))
        .map(|(veth, verdict)| (*veth, *verdict))
        .collect();
    elements(script, "add", map, map_elements(&came));
    for (set, veths) in &new.members {
        let had = old.members.get(set);
        let came = veths.iter().filter(|v| had.is_none_or(|h| !h.contains(*v)));
        elements(script, "add", set, came.map(|v| format!("\"{v}\"")));
    }
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

/// A verdict map's elements.
fn map_elements<'a>(
    verdicts: &'a BTreeMap<&'a str, MapVerdict>,
) -> impl Iterator<Item = String> + 'a {
    verdicts
        .iter()
        .map(|(veth, verdict)| format!("\"{veth}\" : {}", verdict.name()))
}

/// Host veths as interface set elements.
fn quoted<'a>(veths: &'a BTreeSet<&'a str>) -> impl Iterator<Item = String> + 'a {
    veths.iter().map(|veth| format!("\"{veth}\""))
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
