//! The simulated weftds' watches: one label-filtered watch per node
//! (`labelSelector=span.weft.dev/n-<hash>`), each a kube-rs streaming request, so each
//! holds one HTTP/1.1 connection as weftd's would (over the pool's clients in turn: the
//! relay's pool has one per source address). A task per watch stamps each event as its
//! line arrives and counts the bytes; when the server ends a stream it resumes from the
//! last resourceVersion seen, as an informer does, and counts the closure.

use crate::api::{current_rv, get_stream, Stream};
use crate::objects::{parse_name, span_label};
use futures::io::AsyncBufReadExt as _;
use kube::Client;
use serde::Deserialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

/// One event of a benchmark object as a watcher received it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Arrival {
    pub(crate) deleted: bool,
    pub(crate) row: u32,
    pub(crate) index: u32,
    pub(crate) at: Instant,
}

/// What one watch has seen.
#[derive(Debug, Default)]
pub(crate) struct Log {
    pub(crate) bytes: AtomicU64,
    /// Streams the apiserver ended (each resumed), and how the last one ended.
    pub(crate) closed: AtomicU64,
    pub(crate) last_close: Mutex<Option<String>>,
    pub(crate) arrivals: Mutex<Vec<Arrival>>,
    /// Why the watch gave up (an ERROR event, a failed resume).
    pub(crate) failed: Mutex<Option<String>>,
}

struct Watch {
    log: Arc<Log>,
    task: JoinHandle<()>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        // Dropping the response body closes its connection: the apiserver ends the watch.
        self.task.abort();
    }
}

/// Watches of nodes `0..len()`, in node order.
pub(crate) struct Pool {
    clients: Vec<Client>,
    path: String,
    watches: Vec<Watch>,
}

impl Pool {
    /// Node `i`'s watch goes through `clients[i % clients.len()]` (at least one).
    pub(crate) fn new(clients: Vec<Client>, path: String) -> Pool {
        Pool {
            clients,
            path,
            watches: Vec::new(),
        }
    }

    /// The collection's resourceVersion on the watches' server now (a list of node 0's
    /// span: the relay serves no list without one).
    pub(crate) async fn version(&self) -> Result<String, String> {
        current_rv(&self.clients[0], &self.path, &span_label(0)).await
    }

    /// Closes every watch.
    pub(crate) fn close(&mut self) {
        self.watches.clear();
    }

    /// Closes or opens watches until nodes `0..n` are watched; opens `parallel` at a time,
    /// each from the collection's current resourceVersion (no initial events). Returns
    /// when every new watch's response headers have arrived, i.e. the apiserver has
    /// registered it.
    pub(crate) async fn resize(&mut self, n: usize, parallel: usize) -> Result<(), String> {
        self.watches.truncate(n);
        if self.watches.len() == n {
            return Ok(());
        }
        let rv = self.version().await?;
        let gate = Arc::new(Semaphore::new(parallel));
        let mut opening = Vec::new();
        for node in self.watches.len()..n {
            let (client, path, rv, gate) = (
                self.clients[node % self.clients.len()].clone(),
                self.path.clone(),
                rv.clone(),
                gate.clone(),
            );
            opening.push(tokio::spawn(async move {
                let _permit = gate.acquire_owned().await.unwrap();
                let selector = span_label(node);
                let stream = open(&client, &path, &selector, &rv).await?;
                let log = Arc::new(Log::default());
                let task = tokio::spawn(follow(client, path, selector, rv, stream, log.clone()));
                Ok::<_, String>(Watch { log, task })
            }));
        }
        let mut first_failure = None;
        for (i, handle) in opening.into_iter().enumerate() {
            match handle.await.map_err(|e| e.to_string()).and_then(|r| r) {
                Ok(watch) if first_failure.is_none() => self.watches.push(watch),
                Ok(_) => {}
                Err(why) => {
                    first_failure.get_or_insert(format!("watch {}: {why}", self.watches.len() + i));
                }
            }
        }
        match first_failure {
            None => Ok(()),
            Some(why) => Err(format!(
                "{} of {n} watches open; the first that failed: {why}",
                self.watches.len()
            )),
        }
    }

    /// Each watch's log, in node order.
    pub(crate) fn logs(&self) -> impl Iterator<Item = &Log> {
        self.watches.iter().map(|w| &*w.log)
    }

    /// Clears every log's arrivals and byte count (the start of a row's window).
    pub(crate) fn reset(&self) {
        for log in self.logs() {
            log.bytes.store(0, Ordering::Relaxed);
            log.closed.store(0, Ordering::Relaxed);
            log.arrivals.lock().unwrap().clear();
        }
    }

    /// Events of `row` received so far, (creates, deletes), over every watch.
    pub(crate) fn received(&self, row: u32) -> (usize, usize) {
        self.logs().fold((0, 0), |(c, d), log| {
            let arrivals = log.arrivals.lock().unwrap();
            let of_row = arrivals.iter().filter(|a| a.row == row);
            let deleted = of_row.clone().filter(|a| a.deleted).count();
            (c + of_row.count() - deleted, d + deleted)
        })
    }

    /// The first watch that gave up, and why.
    pub(crate) fn failure(&self) -> Option<String> {
        self.logs().enumerate().find_map(|(i, log)| {
            Some(format!(
                "watch {i}: {}",
                log.failed.lock().unwrap().clone()?
            ))
        })
    }
}

/// Starts a watch of `path` from `rv` with `selector` and bookmarks. No `timeoutSeconds`:
/// the apiserver then keeps it 30 to 60 minutes (`--min-request-timeout` 1800 s), longer
/// than a run, so no row sees a wave of expiring watches.
async fn open(client: &Client, path: &str, selector: &str, rv: &str) -> Result<Stream, String> {
    get_stream(
        client,
        &format!(
            "{path}?watch=true&allowWatchBookmarks=true&resourceVersion={rv}&labelSelector={selector}"
        ),
    )
    .await
}

#[derive(Deserialize)]
struct Event {
    #[serde(rename = "type")]
    kind: String,
    object: Object,
}

#[derive(Deserialize)]
struct Object {
    #[serde(default)]
    metadata: Metadata,
}

#[derive(Deserialize, Default)]
struct Metadata {
    name: Option<String>,
    #[serde(rename = "resourceVersion")]
    resource_version: Option<String>,
}

/// Reads a watch's events for as long as it lives, resuming closed streams.
async fn follow(
    client: Client,
    path: String,
    selector: String,
    mut rv: String,
    mut stream: Stream,
    log: Arc<Log>,
) {
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = stream.read_until(b'\n', &mut line).await;
        let at = Instant::now();
        match read {
            Ok(0) | Err(_) => {
                log.closed.fetch_add(1, Ordering::Relaxed);
                *log.last_close.lock().unwrap() = Some(match read {
                    Err(e) => format!("read error: {e}"),
                    Ok(_) => "end of stream".into(),
                });
                match open(&client, &path, &selector, &rv).await {
                    Ok(s) => stream = s,
                    Err(why) => {
                        *log.failed.lock().unwrap() = Some(format!("resume: {why}"));
                        return;
                    }
                }
                continue;
            }
            Ok(n) => log.bytes.fetch_add(n as u64, Ordering::Relaxed),
        };
        let event: Event = match serde_json::from_slice(&line) {
            Ok(e) => e,
            Err(e) => {
                *log.failed.lock().unwrap() = Some(format!("not an event ({e})"));
                return;
            }
        };
        if event.kind == "ERROR" {
            *log.failed.lock().unwrap() = Some(String::from_utf8_lossy(&line).into_owned());
            return;
        }
        if let Some(v) = event.object.metadata.resource_version {
            rv = v;
        }
        let Some((row, index)) = event.object.metadata.name.as_deref().and_then(parse_name) else {
            continue;
        };
        log.arrivals.lock().unwrap().push(Arrival {
            deleted: event.kind == "DELETED",
            row,
            index,
            at,
        });
    }
}
