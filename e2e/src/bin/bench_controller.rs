//! Node allocation at scale: weft-controller next to kube-controller-manager's node IPAM,
//! each on a fresh real control plane, in one run on one machine.
//!
//! What is measured: N Node objects (5,000 by default, `--nodes`) are created as fast as
//! the apiserver takes them (`--create-parallel` kubectl processes, each creating its
//! share of the Nodes from one List), while the controller runs. The time is from the
//! first create until every one of the N nodes has its allocation, as two watches on
//! the apiserver see it (one `kubectl get --raw ...?watch=true` stream per resource,
//! each event stamped when its line arrives):
//!
//! - weft-controller: the node's WeftNode names its IPv6 prefix and IPv4 subnet *and*
//!   the Node's `spec.podCIDRs` holds both families (weft writes two WeftClaims, the
//!   WeftNode and the Node per node);
//! - kube-controller-manager (`--controllers=node-ipam-controller`, the range
//!   allocator, the Kubernetes-native thing weft's controller replaces): the Node's
//!   `spec.podCIDRs` holds both families (one Node patch per node).
//!
//! Both get the same plan: IPv6 /80s from 2001:db8:1000::/64 and IPv4 /24s from
//! 10.0.0.0/8 (65,536 of each, room for any `--nodes` up to that). Both use the admin
//! kubeconfig (`system:masters`), so neither pays for RBAC evaluation. Before the clock
//! starts, one warm-up Node is allocated (the controller leads, its caches are synced)
//! and both watches have delivered it.
//!
//! Also measured, over the same window: the controller's peak RSS (VmHWM of its process
//! at the end) and CPU time, the CPU time of kube-apiserver, etcd and the creating
//! kubectl processes (/proc/PID/stat; /proc/self/stat's children for kubectl), the
//! machine's CPU use (/proc/stat), the apiserver's write requests by verb and resource
//! (`apiserver_request_total` from its /metrics, before and after) and the number of
//! etcd revisions (the resourceVersion of a list, before and after). Every node's ranges
//! are checked: all present, none given twice.
//!
//! By default the Nodes are bare (a name). `--kubelet-nodes` makes them as a kubelet
//! does: the well-known labels, kubelet's annotations and a status with capacity,
//! conditions, addresses, node info and 50 images (about 12 KiB of JSON each). That is
//! what a controller caching whole Nodes pays for in memory, and what every Node write
//! and watch event carries. Under that load the apiserver closes watches that fall
//! behind; the benchmark's watches resume from the last resourceVersion, as informers
//! do.
//!
//! `--backlog` is the other scenario: the Nodes are all created first (untimed), then
//! the controller starts, and the clock runs from its spawn (start-up, Lease, initial
//! lists included) to the last allocation. It separates the controller's own pace from
//! the apiserver's work of taking the creates at the same time.
//!
//! kube-controller-manager's client is limited to 20 requests/s (burst 30) by default,
//! which caps it at about 20 nodes/s; the anchors are its stock settings and, to compare
//! the controllers rather than a client setting, `--kube-api-qps`/`--kube-api-burst`
//! raised (`--anchors stock,2000` by default; `none` runs weft alone).
//!
//! ```text
//! e2e/bench-controller.sh [--nodes 5000] [--create-parallel 8] [--anchors stock,2000]
//!                         [--backlog] [--kubelet-nodes] [--timeout 600] [--out PATH]
//! ```
//!
//! Needs root (namespaces). Each control plane lives in a namespace of its own
//! (2001:db8:ffff::2, a documentation address); everything is removed at the end, also
//! after a failure, Ctrl-C or SIGTERM. The release profile aborts on panic, so a panic
//! hook does what the guards' Drop would have done.
#![allow(clippy::unwrap_used)]

use clap::builder::RangedU64ValueParser as Ranged;
use clap::Parser as _;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use weft_e2e::{
    binary, log_tail, report_header, serving_namespace, stop_requested, tool_version,
    watch_stop_signals, ControlPlane, KubeBinaries, Netns,
};

/// The issue's targets for weft-controller.
const TARGET_TIME: Duration = Duration::from_secs(30);
const TARGET_RSS_MIB: f64 = 100.0;
/// The apiserver's address inside each benchmark namespace.
const SERVER: &str = "2001:db8:ffff::2";
/// The plan both controllers allocate from.
const IPV6_RANGE: &str = "2001:db8:1000::/64";
const IPV6_PREFIX_LENGTH: u8 = 80;
const IPV4_NETWORK: &str = "10.0.0.0/8";
const IPV4_SUBNET_LENGTH: u8 = 24;
/// Most nodes the plan holds (2^16 of each family).
const MAX_NODES: usize = 65_536;
/// How long a controller gets to allocate the warm-up node (start, Lease, caches).
const WARM_UP_TIMEOUT: Duration = Duration::from_secs(120);
/// After the last allocation, before the "after" counters are read: trailing writes
/// (statuses) land in the counts.
const SETTLE: Duration = Duration::from_secs(2);
/// The timed Nodes' names: `bench-00000`, ... (the warm-up Node is `warm-0`).
const NODE_PREFIX: &str = "bench-";
/// Progress lines on stderr.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

fn main() {
    watch_stop_signals("bench_controller");
    install_panic_cleanup();
    let args = Args::parse();
    let bins = KubeBinaries::find();
    let mut subjects = vec![Subject::Weft];
    subjects.extend(args.anchors.0.iter().map(|&qps| Subject::Kcm(qps)));
    if subjects.iter().any(|s| matches!(s, Subject::Kcm(_)))
        && bins.kube_controller_manager.is_none()
    {
        fail(
            "kube-controller-manager is missing: run e2e/setup.sh (it builds it with the \
             control plane), or pass --anchors none",
        );
    }
    let facts = machine_facts(&args, &bins);
    let mut results = Vec::new();
    for subject in &subjects {
        eprintln!(
            "bench_controller: {}: fresh control plane, {} Nodes",
            subject.label(),
            args.nodes
        );
        match run(&args, &bins, *subject) {
            Ok(m) => results.push(m),
            Err(e) => fail(&format!("{}: {e}", subject.label())),
        }
    }
    let report = render(&args, &facts, &results);
    print!("{report}");
    if let Some(out) = &args.out {
        std::fs::write(out, &report).unwrap();
        eprintln!("bench_controller: wrote {}", out.display());
    }
}

fn fail(message: &str) -> ! {
    eprintln!("bench_controller: {message}");
    std::process::exit(1)
}

// ---- command line -----------------------------------------------------------------

/// Node allocation at scale: weft-controller beside kube-controller-manager's node IPAM
/// (see the module documentation).
#[derive(Debug, clap::Parser)]
struct Args {
    /// Node objects to create.
    #[arg(long, default_value_t = 5000,
          value_parser = Ranged::<usize>::new().range(1..MAX_NODES as u64))]
    nodes: usize,
    /// `kubectl create` processes creating them.
    #[arg(long, default_value_t = 8, value_parser = Ranged::<usize>::new().range(1..))]
    create_parallel: usize,
    /// kube-controller-manager runs: `stock` (its own client limits) or a QPS (its
    /// `--kube-api-qps` and `--kube-api-burst`), comma-separated; `none` runs weft alone.
    #[arg(long, default_value = "stock,2000", value_parser = anchors)]
    anchors: Anchors,
    /// Seconds to wait for every node's allocation.
    #[arg(long = "timeout", default_value_t = 600, value_parser = Ranged::<u64>::new().range(1..))]
    timeout_seconds: u64,
    /// Nodes created before the controller starts; the clock starts with it.
    #[arg(long)]
    backlog: bool,
    /// Nodes shaped as a kubelet keeps them (labels, annotations, and a status with 50
    /// images, conditions, addresses, capacity and node info: about 12 KiB of JSON
    /// each) rather than bare names.
    #[arg(long)]
    kubelet_nodes: bool,
    /// Also write the report here.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// The kube-controller-manager runs: `None` = stock client limits, `Some(q)` =
/// `--kube-api-qps=q --kube-api-burst=q`.
#[derive(Debug, Clone)]
struct Anchors(Vec<Option<u32>>);

/// `stock,2000` -> [None, Some(2000)]; `none` -> [].
fn anchors(text: &str) -> Result<Anchors, String> {
    if text == "none" {
        return Ok(Anchors(Vec::new()));
    }
    text.split(',')
        .map(|a| match a {
            "stock" => Ok(None),
            n => n
                .parse()
                .ok()
                .filter(|&q| q > 0)
                .map(Some)
                .ok_or_else(|| format!("not stock or a QPS: {n}")),
        })
        .collect::<Result<_, _>>()
        .map(Anchors)
}

// ---- signals and clean-up after a panic -------------------------------------------

/// Ctrl-C, SIGTERM and SIGHUP (`watch_stop_signals`) end the waits with an error, and
/// the guards remove everything.
fn stopped() -> Result<(), String> {
    if stop_requested() {
        Err("interrupted".into())
    } else {
        Ok(())
    }
}

/// What this process created, for the panic hook: release builds abort on panic, so no
/// Drop runs. Every guard registers here when it is created; clean-up is idempotent.
#[derive(Debug, Default)]
struct Leftovers {
    /// (pid, start time in ticks): killed only while the same process runs.
    processes: Vec<(u32, u64)>,
    namespaces: Vec<String>,
}

static LEFTOVERS: Mutex<Leftovers> = Mutex::new(Leftovers {
    processes: Vec::new(),
    namespaces: Vec::new(),
});

/// CPU seconds (in microseconds) of the watch processes reaped so far: they count in
/// this process's children CPU time, beside the creating kubectl processes.
static REAPED_WATCH_CPU_US: AtomicU64 = AtomicU64::new(0);

fn note_reaped_watch(cpu_seconds: f64) {
    REAPED_WATCH_CPU_US.fetch_add((cpu_seconds * 1e6) as u64, Ordering::Relaxed);
}

fn reaped_watch_cpu() -> f64 {
    REAPED_WATCH_CPU_US.load(Ordering::Relaxed) as f64 / 1e6
}

fn register_process(pid: u32) {
    if let Some(start) = proc_stat(pid).map(|s| s.start_time) {
        LEFTOVERS.lock().unwrap().processes.push((pid, start));
    }
}

fn install_panic_cleanup() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default(info);
        eprintln!("bench_controller: panicked; removing what it created");
        let left = match LEFTOVERS.lock() {
            Ok(mut l) => std::mem::take(&mut *l),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        };
        for (pid, start) in left.processes.into_iter().rev() {
            if proc_stat(pid).is_some_and(|s| s.start_time == start) {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
        // Control planes (etcd, kube-apiserver) and their directories: what ControlPlane's
        // own sweep does for dead owners, for this process.
        let prefix = format!("weft-cp-{}-", std::process::id());
        for entry in std::fs::read_dir("/dev/shm")
            .into_iter()
            .flatten()
            .flatten()
        {
            if !entry.file_name().to_string_lossy().starts_with(&prefix) {
                continue;
            }
            let dir = entry.path();
            let pids = std::fs::read_to_string(dir.join("pids")).unwrap_or_default();
            for pid in pids.lines() {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                if String::from_utf8_lossy(&cmdline).contains(&*dir.to_string_lossy()) {
                    let _ = Command::new("kill").args(["-KILL", pid]).status();
                }
            }
            std::thread::sleep(Duration::from_millis(200));
            let _ = std::fs::remove_dir_all(&dir);
        }
        for ns in left.namespaces {
            let _ = Command::new("ip").args(["netns", "del", &ns]).status();
        }
    }));
}

// ---- subjects ---------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum Subject {
    Weft,
    /// kube-controller-manager; `Some(q)`: client QPS and burst raised to q.
    Kcm(Option<u32>),
}

impl Subject {
    fn label(&self) -> String {
        match self {
            Subject::Weft => "weft-controller".into(),
            Subject::Kcm(None) => "KCM nodeipam (stock, 20 QPS)".into(),
            Subject::Kcm(Some(q)) => format!("KCM nodeipam ({q} QPS)"),
        }
    }

    fn short(&self) -> String {
        match self {
            Subject::Weft => "weft".into(),
            Subject::Kcm(None) => "KCM stock".into(),
            Subject::Kcm(Some(q)) => format!("KCM {q} QPS"),
        }
    }
}

/// A control plane in a namespace of its own. Field order is drop order.
struct Site {
    cp: ControlPlane,
    ns: Netns,
}

impl Site {
    fn start() -> Site {
        let ns = serving_namespace("bc", &[&format!("{SERVER}/64")]);
        LEFTOVERS
            .lock()
            .unwrap()
            .namespaces
            .push(ns.name().to_owned());
        let cp = ControlPlane::start(&ns, SERVER.parse::<IpAddr>().unwrap());
        Site { cp, ns }
    }

    /// (etcd, kube-apiserver) PIDs, from the control plane's own record.
    fn server_pids(&self) -> (u32, u32) {
        let text = std::fs::read_to_string(self.cp.dir().join("pids")).unwrap();
        let pids: Vec<u32> = text.lines().filter_map(|l| l.parse().ok()).collect();
        (pids[0], pids[1])
    }

    fn kubectl(&self, args: &[&str]) -> Result<String, String> {
        let out = self.cp.kubectl(args);
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "kubectl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    fn kubectl_input(&self, args: &[&str], input: &str) -> Result<(), String> {
        let out = self.cp.kubectl_input(args, input);
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "kubectl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// weft's CRDs and a WeftNetwork holding the plan.
    fn install_weft(&self) -> Result<(), String> {
        self.cp.install_weft_crds();
        let network = json!({
            "apiVersion": "weft.dev/v1alpha1", "kind": "WeftNetwork",
            "metadata": {"name": "default"},
            "spec": {
                "ipv6Ranges": [{"range": IPV6_RANGE, "prefixLength": IPV6_PREFIX_LENGTH}],
                "ipv4Network": IPV4_NETWORK,
                "ipv4SubnetLength": IPV4_SUBNET_LENGTH,
            },
        });
        self.kubectl_input(&["apply", "-f", "-"], &network.to_string())
    }

    /// Starts the controller under test inside the namespace, logging to the control
    /// plane's directory.
    fn start_controller(&self, subject: Subject, bins: &KubeBinaries) -> Proc {
        let kubeconfig = format!("--kubeconfig={}", self.cp.kubeconfig().display());
        let (program, args): (PathBuf, Vec<String>) = match subject {
            Subject::Weft => (
                binary("weft-controller"),
                vec![
                    kubeconfig,
                    "--network=default".into(),
                    "--metrics-addr=[::1]:9642".into(),
                    "--identity=bench".into(),
                    "--log-level=info".into(),
                ],
            ),
            Subject::Kcm(qps) => {
                let mut args = vec![
                    kubeconfig,
                    "--controllers=node-ipam-controller".into(),
                    "--allocate-node-cidrs=true".into(),
                    format!("--cluster-cidr={IPV4_NETWORK},{IPV6_RANGE}"),
                    format!("--node-cidr-mask-size-ipv4={IPV4_SUBNET_LENGTH}"),
                    format!("--node-cidr-mask-size-ipv6={IPV6_PREFIX_LENGTH}"),
                    "--leader-elect=true".into(),
                    "--use-service-account-credentials=false".into(),
                    "--v=1".into(),
                ];
                if let Some(q) = qps {
                    args.push(format!("--kube-api-qps={q}"));
                    args.push(format!("--kube-api-burst={q}"));
                }
                (bins.kube_controller_manager.clone().unwrap(), args)
            }
        };
        let log = self.cp.dir().join("controller.log");
        Proc::spawn(&self.ns, &program, &args, &log)
    }
}

/// A process started with `ip netns exec` (which execs it: the PID is the program's),
/// killed on drop.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(ns: &Netns, program: &Path, args: &[String], log: &Path) -> Proc {
        let file = std::fs::File::create(log).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", ns.name()])
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        register_process(child.id());
        Proc {
            child,
            log: log.to_owned(),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn exited(&mut self) -> Option<String> {
        self.child
            .try_wait()
            .ok()
            .flatten()
            .map(|status| format!("the controller exited ({status})\n{}", self.log_tail(30)))
    }

    /// Warning and error lines of the log: counts and the first of each. weft logs
    /// ` WARN `/` ERROR `, klog starts its lines with `W`/`E` and the date.
    fn log_summary(&self) -> Vec<String> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let klog = |l: &str, c: char| {
            l.starts_with(c) && l.as_bytes().get(1).is_some_and(u8::is_ascii_digit)
        };
        [("warning", " WARN ", 'W'), ("error", " ERROR ", 'E')]
            .into_iter()
            .map(|(what, tag, letter)| {
                let lines: Vec<&str> = text
                    .lines()
                    .filter(|l| l.contains(tag) || klog(l, letter))
                    .collect();
                match lines.first() {
                    None => format!("0 {what} lines in the log"),
                    Some(first) => format!(
                        "{} {what} lines in the log, the first: `{}`",
                        lines.len(),
                        first.chars().take(240).collect::<String>()
                    ),
                }
            })
            .collect()
    }

    fn log_tail(&self, lines: usize) -> String {
        format!(
            "--- {} (tail) ---\n{}",
            self.log.display(),
            log_tail(&self.log, lines)
        )
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---- watches ----------------------------------------------------------------------

/// When each node's object was first seen and first complete (allocated), with the
/// ranges it held then.
#[derive(Debug, Default)]
struct Seen {
    added: HashMap<String, Instant>,
    done: HashMap<String, (Instant, Vec<String>)>,
    /// How many of `added` and `done` are timed nodes ([`NODE_PREFIX`]): the waiting
    /// loop reads these instead of walking the maps.
    timed_added: usize,
    timed_done: usize,
    ended: Option<String>,
}

impl Seen {
    /// An event of `name` arrived at `at`; `ranges` if the object is allocated.
    fn record(&mut self, name: &str, at: Instant, ranges: Option<Vec<String>>) {
        let timed = usize::from(name.starts_with(NODE_PREFIX));
        if !self.added.contains_key(name) {
            self.added.insert(name.to_owned(), at);
            self.timed_added += timed;
        }
        if let (false, Some(ranges)) = (self.done.contains_key(name), ranges) {
            self.done.insert(name.to_owned(), (at, ranges));
            self.timed_done += timed;
        }
    }
}

/// A `kubectl get --raw PATH?watch=true` stream; a thread stamps each event as its line
/// arrives. When the apiserver closes the watch (it drops watchers that fall behind
/// while its CPU is saturated), the thread resumes it from the last resourceVersion
/// seen, as an informer does; only an error event or a failed resume ends it. The
/// kubectl process is killed on drop.
struct Watch {
    seen: Arc<Mutex<Seen>>,
    /// The kubectl process streaming now, and the CPU seconds of those that ended.
    proc: Arc<Mutex<(Child, f64)>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watch {
    /// `complete` says whether an object is allocated, and returns its ranges.
    fn start(
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
            let query = match resume {
                Some(rv) => {
                    format!("{path}?watch=true&allowWatchBookmarks=true&resourceVersion={rv}")
                }
                None => format!("{path}?watch=true&allowWatchBookmarks=true"),
            };
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
                let mut reader = BufReader::new(stdout);
                let mut line = String::new();
                loop {
                    line.clear();
                    match reader.read_line(&mut line) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                    let at = Instant::now();
                    let Ok(event) = serde_json::from_str::<Value>(&line) else {
                        shared.lock().unwrap().ended = Some(format!("not an event: {line}"));
                        return;
                    };
                    let object = &event["object"];
                    let mut seen = shared.lock().unwrap();
                    if event["type"] == "ERROR" {
                        seen.ended = Some(format!("watch error: {object}"));
                        return;
                    }
                    if let Some(rv) = object["metadata"]["resourceVersion"].as_str() {
                        last_rv = Some(rv.to_owned());
                    }
                    if event["type"] == "BOOKMARK" {
                        continue;
                    }
                    let Some(name) = object["metadata"]["name"].as_str() else {
                        continue;
                    };
                    seen.record(name, at, complete(object));
                }
                let mut proc = current.lock().unwrap();
                let (child, ended_cpu) = &mut *proc;
                // Its CPU time, read while it is a zombie, before `wait` reaps it.
                let _ = child.try_wait();
                let spent = proc_stat(child.id()).map_or(0.0, |s| s.cpu_seconds());
                let status = child.wait();
                *ended_cpu += spent;
                note_reaped_watch(spent);
                let mut stderr = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
                }
                if stopping.load(Ordering::Relaxed) {
                    return;
                }
                let clean = status.is_ok_and(|s| s.success());
                let (true, Some(rv)) = (clean, last_rv.as_deref()) else {
                    shared.lock().unwrap().ended =
                        Some(format!("the watch stream ended: {}", stderr.trim()));
                    return;
                };
                eprintln!("bench_controller: the apiserver closed the watch of {path_shown}; resuming from resourceVersion {rv}");
                *child = spawn(Some(rv));
            }
        });
        Watch {
            seen,
            proc,
            stop,
            thread: Some(thread),
        }
    }

    fn check(&mut self) -> Result<(), String> {
        match &self.seen.lock().unwrap().ended {
            None => Ok(()),
            Some(why) => Err(why.clone()),
        }
    }

    /// CPU seconds of this watch's kubectl processes so far.
    fn cpu(&self) -> f64 {
        let proc = self.proc.lock().unwrap();
        proc.1 + proc_stat(proc.0.id()).map_or(0.0, |s| s.cpu_seconds())
    }

    fn done(&self, name: &str) -> bool {
        self.seen.lock().unwrap().done.contains_key(name)
    }
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
fn node_complete(node: &Value) -> Option<Vec<String>> {
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
fn weftnode_complete(wn: &Value) -> Option<Vec<String>> {
    let spec = &wn["spec"];
    Some(vec![
        spec["ipv6Prefix"].as_str()?.to_owned(),
        spec["ipv4Subnet"].as_str()?.to_owned(),
    ])
}

// ---- one run ----------------------------------------------------------------------

/// Counters read before and after the timed window.
#[derive(Debug, Clone, Default)]
struct Counters {
    /// CPU seconds.
    controller_cpu: f64,
    apiserver_cpu: f64,
    etcd_cpu: f64,
    /// This process (the watch threads) and its watching kubectl processes.
    bench_cpu: f64,
    /// /proc/stat: (busy, total) ticks of the whole machine.
    machine: (u64, u64),
    /// ((verb, resource[/subresource]), failed) -> apiserver requests.
    requests: BTreeMap<(Kind, bool), f64>,
    /// (verb, resource[/subresource]) -> seconds the apiserver spent serving them.
    request_seconds: BTreeMap<Kind, f64>,
    /// resource -> watches open (`apiserver_longrunning_requests`).
    open_watches: BTreeMap<String, f64>,
    revision: u64,
}

#[derive(Debug)]
struct Measurement {
    subject: Subject,
    version: String,
    allocated: usize,
    unique: Result<(), String>,
    /// First create -> last node allocated.
    total: Duration,
    /// First create -> last create returned, and the creating kubectls' CPU.
    created: Created,
    /// Per node: its Node's ADDED event -> allocated.
    latencies: Vec<Duration>,
    peak_rss_kib: u64,
    apiserver_peak_rss_kib: u64,
    /// Nodes created before the controller started (`--backlog`).
    backlog: bool,
    /// resource -> watches the controller holds open at the end.
    controller_watches: BTreeMap<String, f64>,
    /// What the controller's log and (weft) metrics say about the run.
    health: Vec<String>,
    before: Counters,
    after: Counters,
}

fn run(args: &Args, bins: &KubeBinaries, subject: Subject) -> Result<Measurement, String> {
    let site = Site::start();
    eprintln!(
        "bench_controller: control plane ready in {:.1} s",
        site.cp.startup_time().as_secs_f64()
    );
    // The control plane's own watches, before any controller or benchmark watch.
    let baseline = open_watches(&site.kubectl(&["get", "--raw", "/metrics"])?);
    if matches!(subject, Subject::Weft) {
        site.install_weft()?;
    }
    let version = version(subject, bins);
    let nodes = Watch::start(&site, bins, "/api/v1/nodes", node_complete);
    let weftnodes = matches!(subject, Subject::Weft).then(|| {
        Watch::start(
            &site,
            bins,
            "/apis/weft.dev/v1alpha1/weftnodes",
            weftnode_complete,
        )
    });
    let weftnodes_watched = weftnodes.is_some();
    let mut watches: Vec<Watch> = [Some(nodes), weftnodes].into_iter().flatten().collect();
    let names: Vec<String> = (0..args.nodes)
        .map(|i| format!("{NODE_PREFIX}{i:05}"))
        .collect();
    // The warm-up Node: once the Node watch has it, the watches are live; once it is
    // allocated, the controller leads and has synced.
    site.kubectl_input(
        &["create", "-f", "-"],
        &node_list(&["warm-0".into()], args.kubelet_nodes).to_string(),
    )?;
    wait_for(&mut watches, None, "the Node watch", |w| {
        w[0].seen.lock().unwrap().added.contains_key("warm-0")
    })?;

    let (mut controller, created, before, began) = if args.backlog {
        eprintln!("bench_controller: creating {} Nodes, untimed", args.nodes);
        let created = create_nodes(&site, &names, args.create_parallel, args.kubelet_nodes)?;
        let n = names.len();
        wait_for(&mut watches, None, "the Nodes in the watch", |w| {
            w[0].seen.lock().unwrap().timed_added == n
        })?;
        let before = counters(&site, None, &watches)?;
        let began = Instant::now();
        eprintln!("bench_controller: starting the controller");
        (site.start_controller(subject, bins), created, before, began)
    } else {
        let mut controller = site.start_controller(subject, bins);
        wait_for(
            &mut watches,
            Some(&mut controller),
            "the warm-up node",
            |w| w.iter().all(|w| w.done("warm-0")),
        )?;
        eprintln!(
            "bench_controller: warm-up node allocated; creating {} Nodes",
            args.nodes
        );
        let before = counters(&site, Some(&controller), &watches)?;
        let began = Instant::now();
        let created = {
            let (site, names, parallel) = (&site, &names, args.create_parallel);
            let kubelet = args.kubelet_nodes;
            let controller = &mut controller;
            let watches = &watches;
            std::thread::scope(|scope| {
                let creator = scope.spawn(move || create_nodes(site, names, parallel, kubelet));
                wait_allocated(
                    watches,
                    controller,
                    names,
                    began,
                    Duration::from_secs(args.timeout_seconds),
                )
                .map(|()| creator.join().unwrap())
            })
        }??;
        (controller, created, before, began)
    };
    if args.backlog {
        wait_allocated(
            &watches,
            &mut controller,
            &names,
            began,
            Duration::from_secs(args.timeout_seconds),
        )?;
    }
    let total = allocated_at(&watches, &names)
        .into_iter()
        .max()
        .unwrap()
        .duration_since(began);
    std::thread::sleep(SETTLE);
    let after = counters(&site, Some(&controller), &watches)?;
    let peak_rss_kib = proc_status_kib(controller.pid(), "VmHWM");
    let apiserver_peak_rss_kib = proc_status_kib(site.server_pids().1, "VmHWM");
    let mut health = controller.log_summary();
    if matches!(subject, Subject::Weft) {
        health.push(weft_reconciles(&site));
    }

    let done = allocated_at(&watches, &names);
    let latencies = {
        let added = watches[0].seen.lock().unwrap();
        names
            .iter()
            .zip(&done)
            .map(|(n, at)| at.duration_since(added.added[n.as_str()].max(began)))
            .collect()
    };
    let unique = check_ranges(&watches, &names);
    // All open watches, less the control plane's own and the benchmark's (one on Nodes,
    // one on WeftNodes with weft).
    let mut controller_watches = after.open_watches.clone();
    for (resource, n) in baseline {
        *controller_watches.entry(resource).or_default() -= n;
    }
    *controller_watches.entry("nodes".into()).or_default() -= 1.0;
    if weftnodes_watched {
        *controller_watches.entry("weftnodes".into()).or_default() -= 1.0;
    }
    controller_watches.retain(|_, n| *n > 0.0);
    Ok(Measurement {
        subject,
        version,
        allocated: done.len(),
        unique,
        total,
        created,
        latencies,
        peak_rss_kib,
        apiserver_peak_rss_kib,
        backlog: args.backlog,
        controller_watches,
        health,
        before,
        after,
    })
}

/// How creating the Nodes went: wall-clock time and the kubectl processes' CPU.
#[derive(Debug, Clone, Copy)]
struct Created {
    took: Duration,
    kubectl_cpu: f64,
}

/// Creates the Nodes from `parallel` kubectl processes, each with one List of its share;
/// returns when all have returned. Only resumed watches reap a child meanwhile, and
/// their CPU is taken out, so this
/// process's children CPU time grows by exactly theirs.
fn create_nodes(
    site: &Site,
    names: &[String],
    parallel: usize,
    kubelet: bool,
) -> Result<Created, String> {
    // Watch processes reaped meanwhile count in the children's time too: not theirs.
    let children_cpu = || {
        proc_stat(std::process::id()).map_or(0.0, |s| s.children_cpu_seconds()) - reaped_watch_cpu()
    };
    let cpu_before = children_cpu();
    let began = Instant::now();
    let share = names.len().div_ceil(parallel);
    std::thread::scope(|scope| {
        let creates: Vec<_> = names
            .chunks(share)
            .map(|chunk| {
                let list = node_list(chunk, kubelet).to_string();
                scope.spawn(move || site.kubectl_input(&["create", "-f", "-", "-o", "name"], &list))
            })
            .collect();
        creates
            .into_iter()
            .map(|c| c.join().unwrap())
            .collect::<Result<Vec<()>, String>>()
    })?;
    Ok(Created {
        took: began.elapsed(),
        kubectl_cpu: children_cpu() - cpu_before,
    })
}

fn node_list(names: &[String], kubelet: bool) -> Value {
    let items: Vec<Value> = names
        .iter()
        .map(|n| {
            if kubelet {
                kubelet_node(n)
            } else {
                json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": n}})
            }
        })
        .collect();
    json!({"apiVersion": "v1", "kind": "List", "items": items})
}

/// A Node as a kubelet registers it and reports its status (the apiserver keeps a
/// Node's status on create, as kubelet's registration relies on): the well-known
/// labels, kubelet's annotations, capacity, conditions, addresses, node info and the 50
/// images kubelet lists by default (`--node-status-max-images`), each by digest and tag.
fn kubelet_node(name: &str) -> Value {
    let now = "2026-11-23T00:00:00Z";
    let condition = |type_: &str, status: &str, reason: &str, message: &str| {
        json!({"type": type_, "status": status, "reason": reason, "message": message,
               "lastHeartbeatTime": now, "lastTransitionTime": now})
    };
    let images: Vec<Value> = (0..50)
        .map(|i| {
            let repo = format!("registry.example.com/team-{}/service-{i}", i % 7);
            let digest = format!(
                "{:064x}",
                (i as u128 + 1) * 0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834
            );
            json!({"names": [format!("{repo}@sha256:{digest}"), format!("{repo}:v1.{i}.0")],
                   "sizeBytes": 20_000_000 + i * 1_234_567})
        })
        .collect();
    let resources = json!({"cpu": "8", "ephemeral-storage": "101430960Ki", "hugepages-1Gi": "0",
                           "hugepages-2Mi": "0", "memory": "32780412Ki", "pods": "110"});
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "beta.kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64", "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux", "node.kubernetes.io/instance-type": "standard-8",
            },
            "annotations": {
                "node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
                "kubeadm.alpha.kubernetes.io/cri-socket": "unix:///run/containerd/containerd.sock",
            },
        },
        "spec": {"providerID": format!("example://{name}")},
        "status": {
            "capacity": resources, "allocatable": resources,
            "conditions": [
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
            ],
            "addresses": [{"type": "InternalIP", "address": "192.0.2.10"},
                          {"type": "Hostname", "address": name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": format!("{:032x}", name.len() * 7919), "systemUUID": "4c4c4544-0042-3510-8052-b7c04f4e3132",
                "bootID": "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0", "kernelVersion": "6.18.0",
                "osImage": "Debian GNU/Linux 13 (trixie)", "containerRuntimeVersion": "containerd://2.1.4",
                "kubeletVersion": "v1.35.8", "kubeProxyVersion": "", "operatingSystem": "linux",
                "architecture": "amd64",
            },
            "images": images,
        },
    })
}

/// Waits up to [`WARM_UP_TIMEOUT`] for `ready`, failing early when a watch or the
/// controller ends.
fn wait_for(
    watches: &mut [Watch],
    mut controller: Option<&mut Proc>,
    what: &str,
    ready: impl Fn(&[Watch]) -> bool,
) -> Result<(), String> {
    let deadline = Instant::now() + WARM_UP_TIMEOUT;
    while !ready(watches) {
        stopped()?;
        for w in watches.iter_mut() {
            w.check()?;
        }
        if let Some(c) = controller.as_deref_mut() {
            if let Some(e) = c.exited() {
                return Err(e);
            }
        }
        if Instant::now() > deadline {
            let log = controller.map(|c| c.log_tail(30)).unwrap_or_default();
            return Err(format!("{what} not ready after {WARM_UP_TIMEOUT:?}\n{log}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Waits until every watch has every named node complete.
fn wait_allocated(
    watches: &[Watch],
    controller: &mut Proc,
    names: &[String],
    began: Instant,
    timeout: Duration,
) -> Result<(), String> {
    let mut next_progress = began + PROGRESS_EVERY;
    loop {
        let (added, complete) = progress(watches);
        if complete == names.len() {
            return Ok(());
        }
        stopped()?;
        if let Some(e) = watches
            .iter()
            .find_map(|w| w.seen.lock().unwrap().ended.clone())
        {
            return Err(e);
        }
        if let Some(e) = controller.exited() {
            return Err(e);
        }
        if began.elapsed() > timeout {
            return Err(format!(
                "{complete} of {} nodes allocated after {timeout:?}\n{}",
                names.len(),
                controller.log_tail(30)
            ));
        }
        if Instant::now() >= next_progress {
            eprintln!(
                "bench_controller: {:>5.1} s: {added} created, {complete} allocated",
                began.elapsed().as_secs_f64()
            );
            next_progress += PROGRESS_EVERY;
        }
        // Completion times come from the watch events; this only notices the end.
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// (timed Nodes seen, the fewest timed nodes any watch has complete). The waiting loop
/// polls this, so it costs next to nothing; when the second is every node, every node is
/// complete in every watch.
fn progress(watches: &[Watch]) -> (usize, usize) {
    let added = watches[0].seen.lock().unwrap().timed_added;
    let complete = watches
        .iter()
        .map(|w| w.seen.lock().unwrap().timed_done)
        .min()
        .unwrap_or(0);
    (added, complete)
}

/// Per node (all complete): the latest of its watches' completion times.
fn allocated_at(watches: &[Watch], names: &[String]) -> Vec<Instant> {
    let seen: Vec<_> = watches.iter().map(|w| w.seen.lock().unwrap()).collect();
    names
        .iter()
        .map(|n| seen.iter().map(|s| s.done[n.as_str()].0).max().unwrap())
        .collect()
}

/// Every range given once; with WeftNodes, each names exactly its Node's podCIDRs.
fn check_ranges(watches: &[Watch], names: &[String]) -> Result<(), String> {
    let seen: Vec<_> = watches.iter().map(|w| w.seen.lock().unwrap()).collect();
    let mut given = BTreeSet::new();
    for name in names {
        let pod_cidrs: BTreeSet<&String> = seen[0].done[name.as_str()].1.iter().collect();
        for cidr in &pod_cidrs {
            if !given.insert(*cidr) {
                return Err(format!("{cidr} given twice (again to {name})"));
            }
        }
        if let Some(wn) = seen.get(1) {
            let named: BTreeSet<&String> = wn.done[name.as_str()].1.iter().collect();
            if named != pod_cidrs {
                return Err(format!(
                    "{name}: WeftNode names {named:?}, podCIDRs are {pod_cidrs:?}"
                ));
            }
        }
    }
    Ok(())
}

fn counters(site: &Site, controller: Option<&Proc>, watches: &[Watch]) -> Result<Counters, String> {
    let (etcd, apiserver) = site.server_pids();
    let cpu = |pid: u32| proc_stat(pid).map_or(0.0, |s| s.cpu_seconds());
    // The processes first: the kubectl calls below are not part of the window.
    let (controller_cpu, apiserver_cpu, etcd_cpu, machine) = (
        controller.map_or(0.0, |c| cpu(c.pid())),
        cpu(apiserver),
        cpu(etcd),
        machine_ticks(),
    );
    let bench_cpu = cpu(std::process::id()) + watches.iter().map(Watch::cpu).sum::<f64>();
    let metrics = site.kubectl(&["get", "--raw", "/metrics"])?;
    let list = site.kubectl(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/configmaps?limit=1",
    ])?;
    let (requests, request_seconds) = requests(&metrics);
    let list: Value = serde_json::from_str(&list).map_err(|e| e.to_string())?;
    let revision = list["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|rv| rv.parse().ok())
        .ok_or("no resourceVersion on a list")?;
    Ok(Counters {
        controller_cpu,
        apiserver_cpu,
        etcd_cpu,
        bench_cpu,
        machine,
        open_watches: open_watches(&metrics),
        requests,
        request_seconds,
        revision,
    })
}

/// Verbs that change objects.
const WRITES: [&str; 6] = [
    "POST",
    "PUT",
    "PATCH",
    "APPLY",
    "DELETE",
    "DELETECOLLECTION",
];

/// Request kind: (verb, resource[/subresource]).
type Kind = (String, String);

/// From the apiserver's /metrics: `apiserver_request_total` summed over the other labels,
/// (kind, failed (code >= 400)) -> requests; and `apiserver_request_duration_seconds_sum`,
/// kind -> seconds spent serving them.
fn requests(metrics: &str) -> (BTreeMap<(Kind, bool), f64>, BTreeMap<Kind, f64>) {
    let (mut counts, mut seconds) = (BTreeMap::new(), BTreeMap::new());
    for line in metrics.lines() {
        let (is_count, rest) = if let Some(r) = line.strip_prefix("apiserver_request_total{") {
            (true, r)
        } else if let Some(r) = line.strip_prefix("apiserver_request_duration_seconds_sum{") {
            (false, r)
        } else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let labels: HashMap<&str, &str> = labels
            .split("\",")
            .filter_map(|kv| kv.split_once("=\""))
            .map(|(k, v)| (k, v.trim_end_matches('"')))
            .collect();
        let label = |k: &str| labels.get(k).copied().unwrap_or_default();
        let mut resource = label("resource").to_owned();
        if !label("subresource").is_empty() {
            resource = format!("{resource}/{}", label("subresource"));
        }
        let kind = (label("verb").to_owned(), resource);
        let value = value.trim().parse::<f64>().unwrap_or(0.0);
        if is_count {
            let failed = label("code").parse::<u16>().is_ok_and(|c| c >= 400);
            *counts.entry((kind, failed)).or_default() += value;
        } else {
            *seconds.entry(kind).or_default() += value;
        }
    }
    (counts, seconds)
}

/// The `apiserver_longrunning_requests` gauge of WATCH, summed per resource.
fn open_watches(metrics: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix("apiserver_longrunning_requests{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        if !labels.contains("verb=\"WATCH\"") {
            continue;
        }
        let resource = labels
            .split("resource=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or_default();
        *out.entry(resource.to_owned()).or_default() += value.trim().parse().unwrap_or(0.0);
    }
    out.retain(|_, n| *n > 0.0);
    out
}

/// weft-controller's own account (its /metrics): reconciles and their errors.
fn weft_reconciles(site: &Site) -> String {
    let (status, body) = site.ns.http_get("[::1]:9642", "/metrics");
    if status != 200 {
        return format!("weft-controller /metrics answered {status}");
    }
    let value = |line: &str| line.rsplit(' ').next()?.parse::<f64>().ok();
    let reconciles = body
        .lines()
        .find(|l| l.starts_with("weft_controller_reconcile_duration_seconds_count"))
        .and_then(value)
        .unwrap_or(0.0);
    let errors: Vec<String> = body
        .lines()
        .filter_map(|l| l.strip_prefix("weft_controller_reconcile_errors_total{error=\""))
        .filter_map(|l| {
            let (label, _) = l.split_once('"')?;
            Some(format!("{label} {}", value(l)?))
        })
        .collect();
    format!(
        "{reconciles} reconciles since start (warm-up included), errors: {}",
        if errors.is_empty() {
            "none".to_owned()
        } else {
            errors.join(", ")
        }
    )
}

fn version(subject: Subject, bins: &KubeBinaries) -> String {
    match subject {
        Subject::Weft => format!(
            "weft-controller {} ({})",
            env!("CARGO_PKG_VERSION"),
            binary("weft-controller").display()
        ),
        Subject::Kcm(_) => {
            let kcm = bins.kube_controller_manager.as_ref().unwrap();
            let out = Command::new(kcm).arg("--version").output();
            let v = out
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
                .unwrap_or_default();
            format!("kube-controller-manager {v} ({})", kcm.display())
        }
    }
}

// ---- /proc --------------------------------------------------------------------------

#[derive(Debug)]
struct ProcStat {
    /// utime, stime, cutime, cstime in ticks.
    times: [u64; 4],
    start_time: u64,
}

impl ProcStat {
    fn cpu_seconds(&self) -> f64 {
        (self.times[0] + self.times[1]) as f64 / ticks_per_second()
    }
    fn children_cpu_seconds(&self) -> f64 {
        (self.times[2] + self.times[3]) as f64 / ticks_per_second()
    }
}

fn proc_stat(pid: u32) -> Option<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After "pid (comm) ": field 3 (state) is index 0.
    let fields: Vec<&str> = text.rsplit_once(')')?.1.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(ProcStat {
        times: [field(14)?, field(15)?, field(16)?, field(17)?],
        start_time: field(22)?,
    })
}

fn ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// A `kB` line of /proc/PID/status (VmHWM, VmRSS); 0 when unreadable.
fn proc_status_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// (busy, total) ticks of all CPUs since boot.
fn machine_ticks() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let values: Vec<u64> = text
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest is inside user).
    let total: u64 = values.iter().take(8).sum();
    let idle = values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

// ---- the report ---------------------------------------------------------------------

fn machine_facts(args: &Args, bins: &KubeBinaries) -> Vec<String> {
    let (mut facts, profile) = weft_e2e::machine_facts("bench_controller");
    let apiserver = tool_version(&bins.kube_apiserver, "--version");
    facts.extend([
        format!("weft build profile: {profile}; source: {}", source_state()),
        format!(
            "control plane: {apiserver} and etcd (data on tmpfs, no fsync), a fresh one per \
             controller, in a namespace of its own"
        ),
        format!(
            "plan: IPv6 /{IPV6_PREFIX_LENGTH}s from {IPV6_RANGE}, IPv4 /{IPV4_SUBNET_LENGTH}s \
             from {IPV4_NETWORK}; both controllers with the admin kubeconfig"
        ),
        format!(
            "{} Nodes created by {} parallel `kubectl create -f -` (one List each) {}",
            args.nodes,
            args.create_parallel,
            if args.backlog {
                "before the controller starts; the clock starts when it is spawned (its \
                 start-up, Lease and initial lists included)"
            } else {
                "while the controller runs"
            }
        ),
        if args.kubelet_nodes {
            "Nodes shaped as a kubelet keeps them: labels, annotations, status with 50 \
             images, conditions, addresses, capacity, node info (about 12 KiB of JSON each)"
                .to_owned()
        } else {
            "bare Nodes: a name only".to_owned()
        },
    ]);
    facts
}

/// The commit the weft binaries were built from, and whether the tree differed from it.
fn source_state() -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(env!("CARGO_MANIFEST_DIR"))
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    };
    let Some(commit) = git(&["rev-parse", "--short", "HEAD"]) else {
        return "unknown (no git)".into();
    };
    let commit = commit.trim();
    // Porcelain lines are `XY path`: X may be a space, so no trimming before slicing.
    match git(&["status", "--porcelain", "--untracked-files=no"]) {
        Some(s) if s.trim().is_empty() => format!("commit {commit}, clean"),
        Some(s) => format!(
            "commit {commit} with uncommitted changes to {}",
            s.lines()
                .map(|l| l.get(3..).unwrap_or(l))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        None => format!("commit {commit}"),
    }
}

/// One table cell and, when it is a number, the value for the ratio.
struct Cell(String, Option<f64>);

fn secs(d: Duration) -> Cell {
    Cell(format!("{:.1} s", d.as_secs_f64()), Some(d.as_secs_f64()))
}

fn number_cell(v: f64, unit: &str, decimals: usize) -> Cell {
    let text = if unit.is_empty() {
        format!("{v:.decimals$}")
    } else {
        format!("{v:.decimals$} {unit}")
    };
    Cell(text, Some(v))
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Nearest rank: the smallest sample with at least `pct` % of the samples at or below.
fn percentile(samples: &[Duration], pct: usize) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let rank = (sorted.len() * pct).div_ceil(100).max(1);
    sorted[rank - 1]
}

impl Measurement {
    fn delta(&self, f: impl Fn(&Counters) -> f64) -> f64 {
        f(&self.after) - f(&self.before)
    }

    /// The machine's busy CPU seconds in the window that none of the measured processes
    /// used: other work on a shared machine, and the kernel's work for the namespace.
    fn others_cpu(&self) -> f64 {
        let busy = (self.after.machine.0 - self.before.machine.0) as f64 / ticks_per_second();
        let ours = self.delta(|c| c.controller_cpu + c.apiserver_cpu + c.etcd_cpu + c.bench_cpu)
            + self.created.kubectl_cpu;
        (busy - ours).max(0.0)
    }

    /// (kind, failed) -> requests in the window.
    fn requests(&self) -> BTreeMap<(Kind, bool), f64> {
        let mut out = BTreeMap::new();
        for (key, after) in &self.after.requests {
            let n = after - self.before.requests.get(key).copied().unwrap_or(0.0);
            if n > 0.0 {
                out.insert(key.clone(), n);
            }
        }
        out
    }

    /// Successful writes per node, besides the Nodes' creates and Lease renewals.
    fn writes_per_node(&self) -> f64 {
        let n: f64 = self
            .requests()
            .iter()
            .filter(|(((verb, resource), failed), _)| {
                WRITES.contains(&verb.as_str()) && !failed && resource != "leases"
            })
            .map(|(_, n)| n)
            .sum();
        let (creates, allocations) = self.window_nodes();
        (n - creates) / allocations
    }

    /// (Node creates, allocations) in the window: the timed Nodes, and with `--backlog`
    /// none created but the warm-up Node allocated too.
    fn window_nodes(&self) -> (f64, f64) {
        let n = self.allocated as f64;
        if self.backlog {
            (0.0, n + 1.0)
        } else {
            (n, n)
        }
    }

    /// One line per request kind: count (failed ones apart) and mean apiserver time.
    fn request_notes(&self) -> Vec<String> {
        let requests = self.requests();
        let mut kinds: Vec<&Kind> = requests.keys().map(|(k, _)| k).collect();
        kinds.dedup();
        kinds
            .into_iter()
            .map(|kind| {
                let ok = requests.get(&(kind.clone(), false)).copied().unwrap_or(0.0);
                let failed = requests.get(&(kind.clone(), true)).copied().unwrap_or(0.0);
                let mut text = format!("{} {} {ok}", kind.0, kind.1);
                if failed > 0.0 {
                    let _ = write!(text, " (+{failed} failed)");
                }
                let seconds = self.after.request_seconds.get(kind).copied().unwrap_or(0.0)
                    - self
                        .before
                        .request_seconds
                        .get(kind)
                        .copied()
                        .unwrap_or(0.0);
                if kind.0 != "WATCH" && ok + failed > 0.0 {
                    let _ = write!(text, " x {:.1} ms", 1000.0 * seconds / (ok + failed));
                }
                text
            })
            .collect()
    }

    fn rows(&self) -> Vec<Cell> {
        let nodes = self.allocated as f64;
        let (busy, total) = (
            self.after.machine.0 - self.before.machine.0,
            self.after.machine.1 - self.before.machine.1,
        );
        vec![
            Cell(
                format!(
                    "{}, {}",
                    self.allocated,
                    if self.unique.is_ok() {
                        "unique"
                    } else {
                        "SHARED"
                    }
                ),
                None,
            ),
            secs(self.total),
            number_cell(nodes / self.total.as_secs_f64(), "", 0),
            secs(self.created.took),
            if self.backlog {
                secs(percentile(&self.latencies, 0))
            } else {
                secs(self.total.saturating_sub(self.created.took))
            },
            number_cell(
                percentile(&self.latencies, 50).as_secs_f64() * 1000.0,
                "ms",
                0,
            ),
            number_cell(
                percentile(&self.latencies, 99).as_secs_f64() * 1000.0,
                "ms",
                0,
            ),
            number_cell(mib(self.peak_rss_kib), "MiB", 1),
            number_cell(self.delta(|c| c.controller_cpu), "s", 1),
            number_cell(self.delta(|c| c.apiserver_cpu), "s", 1),
            number_cell(self.delta(|c| c.etcd_cpu), "s", 1),
            number_cell(self.created.kubectl_cpu, "s", 1),
            number_cell(self.delta(|c| c.bench_cpu), "s", 1),
            number_cell(self.others_cpu(), "s", 1),
            number_cell(100.0 * busy as f64 / total.max(1) as f64, "%", 0),
            number_cell(mib(self.apiserver_peak_rss_kib), "MiB", 0),
            number_cell(self.writes_per_node(), "", 2),
            number_cell(
                ((self.after.revision - self.before.revision) as f64 - self.window_nodes().0)
                    / self.window_nodes().1,
                "",
                2,
            ),
        ]
    }
}

/// The rows' names; the first seven differ with `--backlog`.
fn row_names(backlog: bool) -> [&'static str; 18] {
    let mut rows = ROWS;
    if backlog {
        rows[1] = "**time to allocate every node** (controller start -> last allocation)";
        rows[3] = "creating the Nodes, before the controller starts (untimed)";
        rows[4] = "the controller's start -> its first allocation";
        rows[5] = "per node, controller start -> allocated: median";
        rows[6] = "per node, controller start -> allocated: p99";
        rows[11] = "kubectl create CPU (before the window)";
    }
    rows
}

const ROWS: [&str; 18] = [
    "nodes allocated, ranges",
    "**time to allocate every node** (first create -> last allocation)",
    "nodes/s",
    "creating the Nodes (first create -> last create returned)",
    "last allocation after the last create",
    "per node, Node seen -> allocated: median",
    "per node, Node seen -> allocated: p99",
    "**controller peak RSS** (VmHWM)",
    "controller CPU",
    "kube-apiserver CPU",
    "etcd CPU",
    "kubectl create CPU",
    "benchmark's watches CPU",
    "CPU of other processes on the machine (not this benchmark)",
    "machine CPU busy (2 cores = 100 %)",
    "kube-apiserver peak RSS",
    "apiserver writes per node (besides its create, Leases apart)",
    "etcd revisions per node (besides its create)",
];

fn render(args: &Args, facts: &[String], results: &[Measurement]) -> String {
    let title = format!(
        "Node allocation: weft-controller vs kube-controller-manager node IPAM \
         ({} Nodes, dual-stack, {})",
        args.nodes,
        if args.backlog {
            "all created before the controller starts"
        } else {
            "created while the controller runs"
        }
    );
    let mut out = report_header(&title, facts);
    for m in results {
        writeln!(out, "- {}: {}", m.subject.label(), m.version).unwrap();
    }
    writeln!(
        out,
        "- allocated: weft when its WeftNode names both ranges and the Node's podCIDRs \
         hold both; KCM when the Node's podCIDRs hold both (as the apiserver's watch \
         delivers them); CPU and writes over first create -> last allocation + {} s\n",
        SETTLE.as_secs()
    )
    .unwrap();
    let weft = &results[0];
    let anchors = &results[1..];
    let mut header = String::from("| measure |");
    let mut rule = String::from("|---|");
    for m in results {
        let _ = write!(header, " {} |", m.subject.label());
        rule.push_str("---|");
    }
    for a in anchors {
        let _ = write!(header, " weft / {} |", a.subject.short());
        rule.push_str("---|");
    }
    writeln!(out, "{header}\n{rule}").unwrap();
    let rows: Vec<Vec<Cell>> = results.iter().map(Measurement::rows).collect();
    for (r, name) in row_names(args.backlog).iter().enumerate() {
        let mut line = format!("| {name} |");
        for cells in &rows {
            let _ = write!(line, " {} |", cells[r].0);
        }
        for a in 1..rows.len() {
            let cell = match (rows[0][r].1, rows[a][r].1) {
                (Some(w), Some(k)) if w >= 0.05 && k >= 0.05 => ratio(w / k),
                _ => String::new(),
            };
            let _ = write!(line, " {cell} |");
        }
        writeln!(out, "{line}").unwrap();
    }
    writeln!(
        out,
        "\napiserver requests in the window (verb resource count, x mean time serving \
         one{}):\n",
        if args.backlog {
            "; the Nodes were created before, the warm-up Node is allocated in it too".to_owned()
        } else {
            format!("; POST nodes includes the {} creates", args.nodes)
        }
    )
    .unwrap();
    for m in results {
        let notes = m.request_notes();
        writeln!(out, "- {}: {}", m.subject.label(), notes.join(", ")).unwrap();
        let watches: Vec<String> = m
            .controller_watches
            .iter()
            .map(|(resource, n)| format!("{resource} {n}"))
            .collect();
        writeln!(
            out,
            "- {}: its watches open at the end: {}",
            m.subject.label(),
            watches.join(", ")
        )
        .unwrap();
        for line in &m.health {
            writeln!(out, "- {}: {line}", m.subject.label()).unwrap();
        }
        if let Err(e) = &m.unique {
            writeln!(out, "- {}: RANGES WRONG: {e}", m.subject.label()).unwrap();
        }
    }
    writeln!(
        out,
        "\nTargets (weft-controller, {} Nodes {}):\n",
        args.nodes,
        if args.backlog {
            "created before it starts"
        } else {
            "created while it runs"
        }
    )
    .unwrap();
    for line in verdicts(weft, args.nodes) {
        writeln!(out, "- {line}").unwrap();
    }
    out
}

fn ratio(r: f64) -> String {
    if r >= 1.0 {
        format!("{r:.2}")
    } else {
        format!("{r:.2} (1/{:.1})", 1.0 / r)
    }
}

fn verdicts(weft: &Measurement, nodes: usize) -> Vec<String> {
    let verdict = |met: bool| if met { "MET" } else { "MISSED" };
    let rss = mib(weft.peak_rss_kib);
    let mut lines = vec![
        format!(
            "time until every node has its allocation <= {} s: {:.1} s -> {}",
            TARGET_TIME.as_secs(),
            weft.total.as_secs_f64(),
            verdict(weft.total <= TARGET_TIME && weft.unique.is_ok())
        ),
        format!(
            "controller peak RSS <= {TARGET_RSS_MIB} MiB: {rss:.1} MiB -> {}",
            verdict(rss <= TARGET_RSS_MIB)
        ),
    ];
    if nodes != 5000 {
        lines.push(format!(
            "(the targets are for 5,000 Nodes; this run created {nodes})"
        ));
    }
    lines
}
