//! The relay's state for one resource: every object with its span labels, the recent
//! events, and the watches subscribed by label. An event goes to the watches of the
//! labels it had or has, no other (the apiserver checks every event against every
//! watch of the resource: docs/benchmarks.md, "NetworkPolicy, apiserver").

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use hyper::body::Bytes;
use serde_json::Value;
use tokio::sync::mpsc;

use super::Relayed;

/// Events kept for watches that resume: a weftd reconnecting within this many changes
/// of its resource gets what it missed, not a new list.
pub const KEPT_EVENTS: usize = 8192;

/// Lines a watch may have unsent before it is cut off (it resumes from its last
/// version, like a watch the apiserver terminated for being slow).
pub const WATCH_BACKLOG: usize = 1024;

/// What a watch receives: event lines, each one JSON object and a newline.
pub type Lines = mpsc::Receiver<Bytes>;

/// An object as the relay keeps it.
#[derive(Debug, Clone)]
struct Kept {
    labels: Vec<String>,
    json: Bytes,
}

/// One change, with the labels its object had and has.
#[derive(Debug, Clone)]
struct Change {
    version: u64,
    before: Vec<String>,
    after: Vec<String>,
    deleted: bool,
    json: Bytes,
}

/// How a watch of `label` sees a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    Added,
    Modified,
    Deleted,
}

impl Change {
    /// `None` when the object neither had nor has `label`.
    fn seen_by(&self, label: &str) -> Option<Seen> {
        let had = self.before.iter().any(|l| l == label);
        let has = !self.deleted && self.after.iter().any(|l| l == label);
        match (had, has) {
            (false, true) => Some(Seen::Added),
            (true, true) => Some(Seen::Modified),
            (true, false) => Some(Seen::Deleted),
            (false, false) => None,
        }
    }

    fn line(&self, seen: Seen) -> Bytes {
        let kind = match seen {
            Seen::Added => "ADDED",
            Seen::Modified => "MODIFIED",
            Seen::Deleted => "DELETED",
        };
        event_line(kind, &self.json)
    }
}

/// `{"type":KIND,"object":OBJECT}` and a newline: one event of the watch protocol.
pub fn event_line(kind: &str, object: &[u8]) -> Bytes {
    let mut line = Vec::with_capacity(object.len() + 32);
    line.extend_from_slice(b"{\"type\":\"");
    line.extend_from_slice(kind.as_bytes());
    line.extend_from_slice(b"\",\"object\":");
    line.extend_from_slice(object);
    line.extend_from_slice(b"}\n");
    Bytes::from(line)
}

/// Why a watch cannot start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// The relay has not listed the resource yet.
    NotReady,
    /// Its version is older than the oldest change kept: it must list again.
    Expired { asked: u64, oldest: u64 },
    /// Its version is newer than this relay's (it came from a replica further on): it
    /// lists again here rather than get changes it has seen.
    Ahead { asked: u64, version: u64 },
}

/// Locks a shared hub; a panic while it was held leaves its state usable.
pub fn lock(hub: &Mutex<Hub>) -> MutexGuard<'_, Hub> {
    hub.lock().unwrap_or_else(|e| e.into_inner())
}

/// The hub of each resource the relay serves.
#[derive(Debug, Clone, Default)]
pub struct Hubs {
    policies: Arc<Mutex<Hub>>,
    address_groups: Arc<Mutex<Hub>>,
}

impl Hubs {
    pub fn of(&self, relayed: Relayed) -> &Arc<Mutex<Hub>> {
        match relayed {
            Relayed::Policies => &self.policies,
            Relayed::AddressGroups => &self.address_groups,
        }
    }
}

/// One resource's objects, changes and watches.
#[derive(Debug, Default)]
pub struct Hub {
    ready: bool,
    version: u64,
    objects: HashMap<String, Kept>,
    changes: VecDeque<Change>,
    /// A watch may resume from this version or a newer one.
    oldest: u64,
    watches: HashMap<String, Vec<mpsc::Sender<Bytes>>>,
}

impl Hub {
    /// Replaces everything with a fresh listing at `version`: kept changes are dropped
    /// and every watch is ended, so each resumes (or lists again) against this one.
    pub fn reset(&mut self, objects: Vec<Value>, version: u64) {
        self.objects = objects
            .into_iter()
            .filter_map(|object| {
                let name = object_name(&object)?;
                Some((name, kept(&object)))
            })
            .collect();
        self.changes.clear();
        self.watches.clear();
        self.version = version;
        self.oldest = version;
        self.ready = true;
    }

    /// Applies an added or modified object at its version and sends it to the watches
    /// of the labels it had or has.
    pub fn apply(&mut self, object: &Value, version: u64) {
        let Some(name) = object_name(object) else {
            return;
        };
        let now = kept(object);
        let before = self
            .objects
            .insert(name, now.clone())
            .map(|k| k.labels)
            .unwrap_or_default();
        self.record(Change {
            version,
            before,
            after: now.labels,
            deleted: false,
            json: now.json,
        });
    }

    /// Removes a deleted object and tells the watches of its labels.
    pub fn delete(&mut self, object: &Value, version: u64) {
        let Some(name) = object_name(object) else {
            return;
        };
        let Some(gone) = self.objects.remove(&name) else {
            return;
        };
        self.record(Change {
            version,
            before: gone.labels,
            after: Vec::new(),
            deleted: true,
            json: kept(object).json,
        });
    }

    /// Moves the version on without a change (a bookmark).
    pub fn advance(&mut self, version: u64) {
        self.version = self.version.max(version);
    }

    /// The version every object is at or below.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The objects carrying `label`, as JSON, and the version they are at.
    pub fn list(&self, label: &str) -> Result<(Vec<Bytes>, u64), Refused> {
        if !self.ready {
            return Err(Refused::NotReady);
        }
        let items = self
            .objects
            .values()
            .filter(|k| k.labels.iter().any(|l| l == label))
            .map(|k| k.json.clone())
            .collect();
        Ok((items, self.version))
    }

    /// A watch of `label` from `since`: the kept changes after it, then every change
    /// as it comes.
    pub fn watch(&mut self, label: &str, since: u64) -> Result<(Vec<Bytes>, Lines), Refused> {
        if !self.ready {
            return Err(Refused::NotReady);
        }
        if since < self.oldest {
            return Err(Refused::Expired {
                asked: since,
                oldest: self.oldest,
            });
        }
        if since > self.version {
            return Err(Refused::Ahead {
                asked: since,
                version: self.version,
            });
        }
        let missed = self
            .changes
            .iter()
            .filter(|c| c.version > since)
            .filter_map(|c| c.seen_by(label).map(|seen| c.line(seen)))
            .collect();
        let (sender, receiver) = mpsc::channel(WATCH_BACKLOG);
        let watches = self.watches.entry(label.to_owned()).or_default();
        // Watches that ended (each ends after its timeout and resumes) go here, not only
        // when their label next changes.
        watches.retain(|watch| !watch.is_closed());
        watches.push(sender);
        Ok((missed, receiver))
    }

    /// Watches open.
    #[cfg(test)]
    pub fn watch_count(&self) -> usize {
        self.watches.values().map(Vec::len).sum()
    }

    fn record(&mut self, change: Change) {
        self.version = self.version.max(change.version);
        let mut labels: Vec<&String> = change.before.iter().chain(&change.after).collect();
        labels.sort();
        labels.dedup();
        for label in labels {
            let Some(seen) = change.seen_by(label) else {
                continue;
            };
            let Some(watches) = self.watches.get_mut(label.as_str()) else {
                continue;
            };
            let line = change.line(seen);
            // A full or closed watch is dropped: it resumes from its last version.
            watches.retain(|watch| watch.try_send(line.clone()).is_ok());
            if watches.is_empty() {
                self.watches.remove(label.as_str());
            }
        }
        self.changes.push_back(change);
        while self.changes.len() > KEPT_EVENTS {
            if let Some(dropped) = self.changes.pop_front() {
                self.oldest = dropped.version;
            }
        }
    }
}

fn object_name(object: &Value) -> Option<String> {
    object["metadata"]["name"].as_str().map(str::to_owned)
}

/// An object's label keys and its JSON.
fn kept(object: &Value) -> Kept {
    let labels = object["metadata"]["labels"]
        .as_object()
        .map(|labels| labels.keys().cloned().collect())
        .unwrap_or_default();
    Kept {
        labels,
        json: Bytes::from(serde_json::to_vec(object).unwrap_or_default()),
    }
}

#[cfg(test)]
#[path = "../tests/relay_hub.rs"]
mod tests;
