//! When a policy is programmed on a node (design §1.2, "Status"), pure.
//!
//! weftd reports in its `WeftNodePolicy.status.observed`, per watch, the newest
//! resourceVersion whose objects its kernel holds. Watch events of one resource arrive
//! in resourceVersion order, so an object of that resource is programmed on a node iff
//! the node's version for the watch the object travels on (its node label, or
//! `span.weft.dev/all` when written wide) is at least the object's. A policy is
//! programmed on a node when its `WeftPolicy` and every slice of every group it names
//! are. The versions compared are those of the controller's own writes (or of the
//! objects as listed): a status write bumps a `WeftPolicy`'s version without changing
//! what weftd enforces, so it is never what a node must reach.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use weft_api::{WeftPolicySpec, ALL_PODS_GROUP};

/// The `observed` keys of the two watches of a spanned resource.
pub fn watch_key(policies: bool, wide: bool) -> &'static str {
    match (policies, wide) {
        (true, false) => "weftPolicies/node",
        (true, true) => "weftPolicies/all",
        (false, false) => "weftAddressGroups/node",
        (false, true) => "weftAddressGroups/all",
    }
}

/// What a node must have observed for one policy to be programmed there.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Needs {
    /// The nodes hosting a pod the policy applies to.
    pub span: BTreeSet<String>,
    /// (watch key, resourceVersion) pairs; a version of `None` is an object not
    /// written yet, which no node has.
    pub objects: Vec<(&'static str, Option<String>)>,
}

impl Needs {
    /// Whether a node with these `observed` versions has programmed the policy.
    pub fn met_by(&self, observed: &BTreeMap<String, String>) -> bool {
        self.objects.iter().all(|(key, version)| {
            let seen = observed.get(*key);
            match (seen, version) {
                (Some(seen), Some(version)) => at_least(seen, version),
                _ => false,
            }
        })
    }
}

/// The needs of every written policy, by `WeftPolicy` name.
pub type Programming = BTreeMap<String, Needs>;

/// Whether resourceVersion `seen` is at or past `wanted`. Versions of one resource are
/// decimal integers in practice, compared as apimachinery's `CompareResourceVersion`
/// does (longer is newer, then digit by digit); anything else never compares.
pub fn at_least(seen: &str, wanted: &str) -> bool {
    let numeric = |v: &str| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit());
    if !numeric(seen) || !numeric(wanted) {
        return false;
    }
    let (seen, wanted) = (seen.trim_start_matches('0'), wanted.trim_start_matches('0'));
    let by_length = seen.len().cmp(&wanted.len());
    by_length.then_with(|| seen.cmp(wanted)) != Ordering::Less
}

/// The groups a policy's weftd needs: those its peers name, and every pod's group when
/// an egress rule resolves a named port without naming pod peers (model.rs).
pub fn groups_named(spec: &WeftPolicySpec) -> BTreeSet<String> {
    let rules = spec.ingress.iter().chain(spec.egress.iter()).flatten();
    let mut groups: BTreeSet<String> = rules
        .flat_map(|r| r.peers.iter().flatten())
        .filter_map(|p| p.group.clone())
        .collect();
    let named_port_without_pods = spec.egress.iter().flatten().any(|rule| {
        let named = rule.ports.iter().any(|p| p.named_port.is_some());
        let groupless = rule
            .peers
            .as_ref()
            .is_none_or(|peers| peers.iter().any(|p| p.ip_block.is_some()));
        named && groupless
    });
    if named_port_without_pods {
        groups.insert(ALL_PODS_GROUP.to_owned());
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_as_integers() {
        assert!(at_least("10", "9"));
        assert!(at_least("100", "100"));
        assert!(!at_least("99", "100"));
        assert!(at_least("0100", "99"));
        assert!(!at_least("", "1"));
        assert!(!at_least("12a", "1"));
    }

    #[test]
    fn a_policy_is_programmed_when_every_object_is_observed() {
        let needs = Needs {
            span: BTreeSet::from(["n1".to_owned()]),
            objects: vec![
                (watch_key(true, false), Some("120".into())),
                (watch_key(false, true), Some("95".into())),
            ],
        };
        let observed = |p: &str, g: &str| {
            BTreeMap::from([
                ("weftPolicies/node".to_owned(), p.to_owned()),
                ("weftAddressGroups/all".to_owned(), g.to_owned()),
            ])
        };
        assert!(needs.met_by(&observed("120", "101")));
        assert!(!needs.met_by(&observed("119", "101")));
        assert!(!needs.met_by(&observed("130", "94")));
        // The slice travels on the wide watch: the node-label one does not count.
        let node_only = BTreeMap::from([
            ("weftPolicies/node".to_owned(), "200".to_owned()),
            ("weftAddressGroups/node".to_owned(), "200".to_owned()),
        ]);
        assert!(!needs.met_by(&node_only));
        let unwritten = Needs {
            objects: vec![(watch_key(true, false), None)],
            ..needs
        };
        assert!(!unwritten.met_by(&observed("999", "999")));
    }
}
