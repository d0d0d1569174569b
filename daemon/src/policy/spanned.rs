//! Objects that reach weftd through two label-filtered watches of one resource: one on
//! the node's own span label, one on `span.weft.dev/all`.
//!
//! When the controller moves an object between the two (its span crossing
//! `SPAN_NODE_LABELS_MAX` nodes), one watch delivers DELETED and the other ADDED, in
//! either order: the two streams are not ordered with each other, and a DELETED carries
//! the object's previous content (k8s.io/apiserver `cache_watcher.go`,
//! `convertToWatchEvent`), so it cannot tell a move from a removal. An object deleted
//! from one watch and absent from the other is therefore kept as *leaving* until the
//! other watch delivers it (a move) or [`LEAVING_GRACE`] passes (a removal). A lingering
//! policy changes no verdict (pods use it only while their `WeftNodePolicy` entries name
//! it, and those change by their own events); a slice the controller deletes while its
//! group is still in use, it first empties in an update, which arrives at once.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How long an object deleted from one watch stays while the other may still add it.
pub const LEAVING_GRACE: Duration = Duration::from_secs(2);

/// Which of the two watches of a resource an event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SpanWatch {
    /// The node's own span label.
    Node,
    /// `span.weft.dev/all`.
    All,
}

impl SpanWatch {
    fn index(self) -> usize {
        match self {
            SpanWatch::Node => 0,
            SpanWatch::All => 1,
        }
    }
}

/// One resource's objects as its two watches delivered them.
#[derive(Debug)]
pub struct Spanned<T> {
    watches: [BTreeMap<String, T>; 2],
    leaving: BTreeMap<String, (T, Instant)>,
}

impl<T> Default for Spanned<T> {
    fn default() -> Self {
        Spanned {
            watches: [BTreeMap::new(), BTreeMap::new()],
            leaving: BTreeMap::new(),
        }
    }
}

impl<T: Clone> Spanned<T> {
    /// An object added or changed on `watch`.
    pub fn apply(&mut self, watch: SpanWatch, name: &str, object: T) {
        self.leaving.remove(name);
        self.watches[watch.index()].insert(name.to_owned(), object);
    }

    /// An object deleted from `watch`, at `now`.
    pub fn delete(&mut self, watch: SpanWatch, name: &str, now: Instant) {
        let Some(object) = self.watches[watch.index()].remove(name) else {
            return;
        };
        if !self.watches[1 - watch.index()].contains_key(name) {
            self.leaving
                .insert(name.to_owned(), (object, now + LEAVING_GRACE));
        }
    }

    /// A complete listing of `watch` (its initial list, or a relist after the watch
    /// broke): objects it no longer holds are deleted as [`Spanned::delete`] does.
    pub fn relist(&mut self, watch: SpanWatch, listed: BTreeMap<String, T>, now: Instant) {
        let gone: Vec<String> = self.watches[watch.index()]
            .keys()
            .filter(|name| !listed.contains_key(*name))
            .cloned()
            .collect();
        for name in gone {
            self.delete(watch, &name, now);
        }
        for (name, object) in listed {
            self.apply(watch, &name, object);
        }
    }

    /// Drops leaving objects past their grace; true when any went.
    pub fn expire(&mut self, now: Instant) -> bool {
        let before = self.leaving.len();
        self.leaving.retain(|_, (_, until)| *until > now);
        self.leaving.len() != before
    }

    /// When the next leaving object expires.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.leaving.values().map(|(_, until)| *until).min()
    }

    /// The object named `name`, from either watch or leaving.
    pub fn get(&self, name: &str) -> Option<&T> {
        self.watches[0]
            .get(name)
            .or_else(|| self.watches[1].get(name))
            .or_else(|| self.leaving.get(name).map(|(object, _)| object))
    }

    /// Every object, each once, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &T)> {
        let mut names: Vec<&str> = self.watches[0]
            .keys()
            .chain(self.watches[1].keys())
            .chain(self.leaving.keys())
            .map(String::as_str)
            .collect();
        names.sort_unstable();
        names.dedup();
        names
            .into_iter()
            .filter_map(|name| self.get(name).map(|object| (name, object)))
    }
}

#[cfg(test)]
#[path = "../tests/policy_spanned.rs"]
mod tests;
