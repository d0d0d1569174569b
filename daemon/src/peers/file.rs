//! The file peer source: `--peers FILE`, re-read when it changes.
//!
//! The file is polled (device, inode, size, modification time) rather than watched with
//! inotify: a poll also sees the file replaced by rename (how editors, `kubectl cp` and
//! config management write files) or its directory re-created, and costs one stat(2)
//! per interval. SIGHUP asks for an immediate re-read.
//!
//! A file that is missing, unreadable or not a JSON array keeps the last good peer list
//! in force (a half-written file must not tear down the cluster's routes); bad entries
//! are reported and skipped, the good ones still apply.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;
use tracing::{info, warn};
use weft_wire::{parse_peers, Peer};

/// How often the file is checked for a change.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        dev: m.dev(),
        ino: m.ino(),
        size: m.size(),
        mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
    })
}

/// Reads and parses the file, logging each bad entry. `None` when the file as a whole
/// cannot be used.
pub fn read(path: &Path) -> Option<Vec<Peer>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            warn!(peers = %path.display(), error = %e, "cannot read the peers file; keeping the last good peer list");
            return None;
        }
    };
    match parse_peers(&bytes) {
        Ok((peers, errors)) => {
            for e in &errors {
                warn!(peers = %path.display(), "skipping a bad entry: {e}");
            }
            Some(peers)
        }
        Err(e) => {
            warn!(peers = %path.display(), "--peers: {e}; keeping the last good peer list");
            None
        }
    }
}

/// Runs on its own thread: sends the peer list to `sink` at start and after every
/// change, until `reload` disconnects. A message on `reload` forces a re-read.
pub fn watch(path: PathBuf, reload: Receiver<()>, sink: impl Fn(Vec<Peer>)) {
    let mut last: Option<Stamp> = None;
    let mut force = true;
    loop {
        let now = stamp(&path);
        if force || now != last {
            // A file caught mid-write is read again at the next change of its stamp.
            if let Some(peers) = read(&path) {
                info!(peers = %path.display(), count = peers.len(), "peer list read");
                sink(peers);
            }
            last = now;
            force = false;
        }
        match reload.recv_timeout(POLL_INTERVAL) {
            Ok(()) => force = true,
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}
