//! The objects this controller just wrote, until the watch-fed stores catch up.
//!
//! A reconcile often runs again right after its own writes (their watch events trigger
//! it) while the store still holds the object as it was before. Deciding from that stale
//! copy would repeat each write (measured: nearly every status write twice, and podCIDR
//! patches refused as conflicts). So the response of each write (the object as the
//! apiserver stored it) is kept with the resourceVersions it supersedes; while the store
//! shows one of those, the response is the fresher copy. resourceVersions are compared
//! only for equality, as the API conventions ask.

use kube::ResourceExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// An entry older than this is ignored: the store has had ample time to catch up, so a
/// mismatch means something else happened (the object went before the watch saw it).
const MAX_AGE: Duration = Duration::from_secs(30);

#[derive(Debug)]
struct Written<K> {
    /// The versions older than `object` (None: the object did not exist).
    superseded: Vec<Option<String>>,
    /// The versions our earlier writes in this chain produced.
    ours: Vec<String>,
    object: Arc<K>,
    at: Instant,
}

/// Responses of our own writes, by object name.
#[derive(Debug)]
pub struct Fresh<K> {
    written: Mutex<HashMap<String, Written<K>>>,
    /// Applied to each response before it is kept, as the store's watch does.
    trim: fn(&mut K),
}

impl<K> Fresh<K> {
    pub fn new(trim: fn(&mut K)) -> Self {
        Fresh {
            written: Mutex::default(),
            trim,
        }
    }
}

impl<K: kube::Resource> Fresh<K> {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Written<K>>> {
        self.written.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The fresher of the store's copy (`cached`) and our last write of `name`.
    pub fn view(&self, name: &str, cached: Option<Arc<K>>) -> Option<Arc<K>> {
        let mut written = self.lock();
        let Some(w) = written.get(name) else {
            return cached;
        };
        let seen = cached.as_ref().and_then(|c| c.resource_version());
        if w.at.elapsed() < MAX_AGE && w.superseded.contains(&seen) {
            return Some(w.object.clone());
        }
        written.remove(name);
        cached
    }

    /// Records the response of a write decided from `before` (the view at the time).
    pub fn record(&self, name: &str, before: Option<&K>, mut response: K) {
        (self.trim)(&mut response);
        let before = before.and_then(|b| b.resource_version());
        let mut written = self.lock();
        let (mut superseded, mut ours) = match written.remove(name) {
            Some(w) if w.object.resource_version() == before => (w.superseded, w.ours),
            _ => (Vec::new(), Vec::new()),
        };
        ours.extend(before.clone().filter(|_| !superseded.is_empty()));
        superseded.push(before);
        written.insert(
            name.to_owned(),
            Written {
                superseded,
                ours,
                object: Arc::new(response),
                at: Instant::now(),
            },
        );
    }

    /// Whether version `rv` of `name` is one our own writes produced: its watch event
    /// is the echo of a write whose reconcile already acted on it, and need not
    /// trigger another. False when unsure (the entry is gone): an extra reconcile is
    /// harmless, a missed one is not.
    pub fn is_echo(&self, name: &str, rv: Option<&str>) -> bool {
        let Some(rv) = rv else {
            return false;
        };
        self.lock().get(name).is_some_and(|w| {
            w.at.elapsed() < MAX_AGE
                && (w.object.resource_version().as_deref() == Some(rv)
                    || w.ours.iter().any(|v| v == rv))
        })
    }

    /// [`Fresh::is_echo`] of a watched object.
    pub fn echoes(&self, object: &K) -> bool {
        self.is_echo(&object.name_any(), object.resource_version().as_deref())
    }

    /// Drops the entries the store has caught up with (or that are too old).
    pub fn prune(&self, cached: impl Fn(&str) -> Option<Arc<K>>) {
        self.lock().retain(|name, w| {
            let seen = cached(name).and_then(|c| c.resource_version());
            w.at.elapsed() < MAX_AGE && w.superseded.contains(&seen)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;

    fn object(rv: &str, data: &str) -> ConfigMap {
        let mut c = ConfigMap::default();
        c.metadata.name = Some("x".into());
        c.metadata.resource_version = Some(rv.into());
        c.data = Some([("k".to_owned(), data.to_owned())].into());
        c
    }

    fn data(c: &Option<Arc<ConfigMap>>) -> String {
        c.as_ref().unwrap().data.as_ref().unwrap()["k"].clone()
    }

    #[test]
    fn our_writes_win_until_the_store_catches_up() {
        let fresh = Fresh::new(|_| {});
        let v1 = Arc::new(object("1", "old"));
        // Created from nothing, then updated twice in one reconcile.
        fresh.record("x", None, object("5", "created"));
        assert_eq!(data(&fresh.view("x", None)), "created");
        let now = fresh.view("x", None);
        fresh.record("x", now.as_deref(), object("6", "spec"));
        let now = fresh.view("x", None);
        fresh.record("x", now.as_deref(), object("7", "status"));
        // The store still shows nothing, or an intermediate version: ours is fresher.
        assert_eq!(data(&fresh.view("x", None)), "status");
        assert_eq!(
            data(&fresh.view("x", Some(Arc::new(object("6", "spec"))))),
            "status"
        );
        // The store shows something else: it has caught up (or someone wrote later).
        assert_eq!(
            data(&fresh.view("x", Some(Arc::new(object("8", "later"))))),
            "later"
        );
        // The entry is gone now.
        assert_eq!(data(&fresh.view("x", Some(v1.clone()))), "old");
    }

    #[test]
    fn a_write_from_a_stale_view_starts_a_new_chain_and_prune_drops_caught_up_entries() {
        let fresh = Fresh::new(|_| {});
        fresh.record("x", Some(&object("1", "a")), object("2", "b"));
        fresh.record("x", Some(&object("9", "z")), object("10", "c"));
        assert_eq!(
            data(&fresh.view("x", Some(Arc::new(object("9", "z"))))),
            "c"
        );
        assert_eq!(
            data(&fresh.view("x", Some(Arc::new(object("1", "a"))))),
            "a"
        );
        fresh.record("x", Some(&object("1", "a")), object("2", "b"));
        fresh.prune(|_| Some(Arc::new(object("1", "a"))));
        assert_eq!(fresh.lock().len(), 1);
        fresh.prune(|_| Some(Arc::new(object("2", "b"))));
        assert_eq!(fresh.lock().len(), 0);
    }

    #[test]
    fn the_watch_echoes_of_our_writes_are_recognised() {
        let fresh = Fresh::new(|_| {});
        // The store had version 1 (someone else's); we wrote 5, then 6.
        fresh.record("x", Some(&object("1", "theirs")), object("5", "created"));
        let now = fresh.view("x", Some(Arc::new(object("1", "theirs"))));
        fresh.record("x", now.as_deref(), object("6", "status"));
        assert!(fresh.is_echo("x", Some("5")));
        assert!(fresh.is_echo("x", Some("6")));
        // Not ours: the version we started from, a later one, another object, none.
        assert!(!fresh.is_echo("x", Some("1")));
        assert!(!fresh.is_echo("x", Some("7")));
        assert!(!fresh.is_echo("y", Some("5")));
        assert!(!fresh.is_echo("x", None));
    }
}
