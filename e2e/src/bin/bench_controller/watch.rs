//! The benchmark's own watches: `kubectl get --raw ...?watch=true` streams, each event
//! stamped as it arrives, resumed when the apiserver closes them.

use crate::site::{register_process, Site};
use crate::NODE_PREFIX;
use serde_json::Value;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use weft_e2e::bench::proc_stat;
use weft_e2e::KubeBinaries;

/// CPU seconds (in microseconds) of the watch processes reaped so far: they count in
/// this process's children CPU time, beside the creating kubectl processes.
static REAPED_WATCH_CPU_US: AtomicU64 = AtomicU64::new(0);

fn note_reaped_watch(cpu_seconds: f64) {
    REAPED_WATCH_CPU_US.fetch_add((cpu_seconds * 1e6) as u64, Ordering::Relaxed);
}

pub(crate) fn reaped_watch_cpu() -> f64 {
    REAPED_WATCH_CPU_US.load(Ordering::Relaxed) as f64 / 1e6
}

/// When each node's object was first seen and first complete (allocated), with the
/// ranges it held then.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    pub(crate) added: HashMap<String, Instant>,
    pub(crate) done: HashMap<String, (Instant, Vec<String>)>,
    /// How many of `added` and `done` are timed nodes ([`NODE_PREFIX`]): the waiting
    /// loop reads these instead of walking the maps.
    pub(crate) timed_added: usize,
    pub(crate) timed_done: usize,
    /// When each node's object first said `Allocated=True` (weft's WeftNodes), and how
    /// many timed nodes did.
    pub(crate) reported: HashMap<String, Instant>,
    pub(crate) timed_reported: usize,
    pub(crate) ended: Option<String>,
}

impl Seen {
    /// An event of `name` arrived at `at`; `ranges` if the object is allocated,
    /// `reported` if it says so in an `Allocated=True` condition.
    pub(crate) fn record(
        &mut self,
        name: &str,
        at: Instant,
        ranges: Option<Vec<String>>,
        reported: bool,
    ) {
        let timed = usize::from(name.starts_with(NODE_PREFIX));
        if !self.added.contains_key(name) {
            self.added.insert(name.to_owned(), at);
            self.timed_added += timed;
        }
        if let (false, Some(ranges)) = (self.done.contains_key(name), ranges) {
            self.done.insert(name.to_owned(), (at, ranges));
            self.timed_done += timed;
        }
        if reported && !self.reported.contains_key(name) {
            self.reported.insert(name.to_owned(), at);
            self.timed_reported += timed;
        }
    }
}

/// A `kubectl get --raw PATH?watch=true` stream; a thread stamps each event as its line
/// arrives. When the apiserver closes the watch (it drops watchers that fall behind
/// while its CPU is saturated), the thread resumes it from the last resourceVersion
/// seen, as an informer does; only an error event or a failed resume ends it. The
/// kubectl process is killed on drop.
pub(crate) struct Watch {
    pub(crate) seen: Arc<Mutex<Seen>>,
    /// The kubectl process streaming now, and the CPU seconds of those that ended.
    proc: Arc<Mutex<(Child, f64)>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watch {
    /// `complete` says whether an object is allocated, and returns its ranges.
    pub(crate) fn start(
        site: &Site,
        bins: &KubeBinaries,
        path: &str,
        complete: fn(&Value) -> Option<Vec<String>>,
    ) -> Watch {
        let ns = site.ns.name().to_owned();
        let kubectl = bins.kubectl.clone();
        let kubeconfig = format!("--kubeconfig={}", site.cp.kubeconfig().display());
        let path = path.to_owned();
        let path_shown = path.clone();
        let spawn = move |resume: Option<&str>| {
            let mut query = format!("{path}?watch=true&allowWatchBookmarks=true");
            if let Some(rv) = resume {
                query += &format!("&resourceVersion={rv}");
            }
            let proc = Command::new("ip")
                .args(["netns", "exec", &ns])
                .arg(&kubectl)
                .arg(&kubeconfig)
                .args(["get", "--raw", &query])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            register_process(proc.id());
            proc
        };
        let proc = Arc::new(Mutex::new((spawn(None), 0.0)));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (shared, current, stopping) = (seen.clone(), proc.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut last_rv: Option<String> = None;
            loop {
                let stdout = current.lock().unwrap().0.stdout.take().unwrap();
                if let Err(why) = read_stream(stdout, &shared, &mut last_rv, complete) {
                    shared.lock().unwrap().ended = Some(why);
                    return;
                }
                let mut proc = current.lock().unwrap();
                let (clean, stderr) = reap(&mut proc);
                if stopping.load(Ordering::Relaxed) {
                    return;
                }
                let (true, Some(rv)) = (clean, last_rv.as_deref()) else {
                    shared.lock().unwrap().ended =
                        Some(format!("the watch stream ended: {}", stderr.trim()));
                    return;
                };
                eprintln!("bench_controller: the apiserver closed the watch of {path_shown}; resuming from resourceVersion {rv}");
                proc.0 = spawn(Some(rv));
            }
        });
        Watch {
            seen,
            proc,
            stop,
            thread: Some(thread),
        }
    }

    pub(crate) fn check(&mut self) -> Result<(), String> {
        match &self.seen.lock().unwrap().ended {
            None => Ok(()),
            Some(why) => Err(why.clone()),
        }
    }

    /// CPU seconds of this watch's kubectl processes so far.
    pub(crate) fn cpu(&self) -> f64 {
        let proc = self.proc.lock().unwrap();
        proc.1 + proc_stat(proc.0.id()).map_or(0.0, |s| s.cpu_seconds())
    }

    pub(crate) fn done(&self, name: &str) -> bool {
        self.seen.lock().unwrap().done.contains_key(name)
    }
}

/// Reads one kubectl stream to its end, recording each event and the last
/// resourceVersion; `Err` (not an event, an error event) ends the watch for good.
fn read_stream(
    stdout: ChildStdout,
    seen: &Mutex<Seen>,
    last_rv: &mut Option<String>,
    complete: fn(&Value) -> Option<Vec<String>>,
) -> Result<(), String> {
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        let at = Instant::now();
        let event: Value =
            serde_json::from_str(&line).map_err(|_| format!("not an event: {line}"))?;
        let object = &event["object"];
        if event["type"] == "ERROR" {
            return Err(format!("watch error: {object}"));
        }
        if let Some(rv) = object["metadata"]["resourceVersion"].as_str() {
            *last_rv = Some(rv.to_owned());
        }
        if event["type"] == "BOOKMARK" {
            continue;
        }
        if let Some(name) = object["metadata"]["name"].as_str() {
            let reported = condition_true(object, "Allocated");
            seen.lock()
                .unwrap()
                .record(name, at, complete(object), reported);
        }
    }
    Ok(())
}

/// Reaps a kubectl whose stream ended, adding its CPU time (read while it is a zombie,
/// before `wait` reaps it) to the watch's; whether it exited cleanly, and its stderr.
fn reap((child, ended_cpu): &mut (Child, f64)) -> (bool, String) {
    let _ = child.try_wait();
    let spent = proc_stat(child.id()).map_or(0.0, |s| s.cpu_seconds());
    let status = child.wait();
    *ended_cpu += spent;
    note_reaped_watch(spent);
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
    }
    (status.is_ok_and(|s| s.success()), stderr)
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.proc.lock().unwrap().0.kill();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A Node's `spec.podCIDRs` when it holds one range of each family.
pub(crate) fn node_complete(node: &Value) -> Option<Vec<String>> {
    let cidrs: Vec<String> = node["spec"]["podCIDRs"]
        .as_array()?
        .iter()
        .filter_map(|c| c.as_str().map(str::to_owned))
        .collect();
    let v6 = cidrs.iter().any(|c| c.contains(':'));
    let v4 = cidrs.iter().any(|c| c.contains('.'));
    (v6 && v4).then_some(cidrs)
}

/// A WeftNode's prefix and subnet, when it names both.
pub(crate) fn weftnode_complete(wn: &Value) -> Option<Vec<String>> {
    let spec = &wn["spec"];
    Some(vec![
        spec["ipv6Prefix"].as_str()?.to_owned(),
        spec["ipv4Subnet"].as_str()?.to_owned(),
    ])
}

/// Whether the object's `status.conditions` hold `type_` with status `True`.
fn condition_true(object: &Value, type_: &str) -> bool {
    object["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == type_ && c["status"] == "True")
    })
}
