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
//!
//! This file runs the scenario; [`site`] holds the control plane and the controller
//! process, [`watch`] the benchmark's watches, [`shapes`] the Nodes it creates,
//! [`apiserver`] what the apiserver counts, and [`report`] the table.
#![allow(clippy::unwrap_used)]

use clap::builder::RangedU64ValueParser as Ranged;
use clap::Parser as _;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};
use weft_e2e::bench::{proc_stat, proc_status_kib, publish};
use weft_e2e::{binary, watch_stop_signals, KubeBinaries};

mod apiserver;
mod report;
mod shapes;
mod site;
mod watch;

use apiserver::{counters, open_watches, weft_reconciles, Counters};
use report::{machine_facts, render};
use shapes::node_list;
use site::{install_panic_cleanup, stopped, Proc, Site};
use watch::{node_complete, reaped_watch_cpu, weftnode_complete, Watch};

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
/// How long weft's `Allocated=True` conditions may follow its last allocation (the
/// controller holds them back at most 60 s).
const REPORT_TIMEOUT: Duration = Duration::from_secs(120);
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
    publish("bench_controller", &report, args.out.as_deref());
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

// ---- subjects ---------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
pub(crate) enum Subject {
    Weft,
    /// kube-controller-manager; `Some(q)`: client QPS and burst raised to q.
    Kcm(Option<u32>),
}

impl Subject {
    pub(crate) fn label(&self) -> String {
        match self {
            Subject::Weft => "weft-controller".into(),
            Subject::Kcm(None) => "KCM nodeipam (stock, 20 QPS)".into(),
            Subject::Kcm(Some(q)) => format!("KCM nodeipam ({q} QPS)"),
        }
    }

    pub(crate) fn short(&self) -> String {
        match self {
            Subject::Weft => "weft".into(),
            Subject::Kcm(None) => "KCM stock".into(),
            Subject::Kcm(Some(q)) => format!("KCM {q} QPS"),
        }
    }
}

// ---- one run ----------------------------------------------------------------------
#[derive(Debug)]
struct Measurement {
    subject: Subject,
    version: String,
    allocated: usize,
    unique: Result<(), String>,
    /// First create -> last node allocated.
    total: Duration,
    /// First create -> last `Allocated=True` condition, and how many were written by the
    /// last allocation (weft only: KCM writes none).
    reported: Option<(Duration, usize)>,
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
    wait_for(&mut watches, None, "the Node watch", WARM_UP_TIMEOUT, |w| {
        w[0].seen.lock().unwrap().added.contains_key("warm-0")
    })?;

    let (mut controller, created, before, began) = if args.backlog {
        eprintln!("bench_controller: creating {} Nodes, untimed", args.nodes);
        let created = create_nodes(&site, &names, args.create_parallel, args.kubelet_nodes)?;
        let n = names.len();
        wait_for(
            &mut watches,
            None,
            "the Nodes in the watch",
            WARM_UP_TIMEOUT,
            |w| w[0].seen.lock().unwrap().timed_added == n,
        )?;
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
            WARM_UP_TIMEOUT,
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
    // weft's conditions may follow its allocations (controller/src/pacing.rs): the
    // window runs until the last one, so their writes count in the CPU and requests.
    let reported = match weftnodes_watched {
        true => {
            let n = names.len();
            wait_for(
                &mut watches,
                Some(&mut controller),
                "every WeftNode's Allocated=True",
                REPORT_TIMEOUT,
                |w| w[1].seen.lock().unwrap().timed_reported == n,
            )?;
            Some(reported_at(&watches[1], &names, began, began + total))
        }
        false => None,
    };
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
        reported,
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

/// Waits up to `timeout` for `ready`, failing early when a watch or the controller
/// ends.
fn wait_for(
    watches: &mut [Watch],
    mut controller: Option<&mut Proc>,
    what: &str,
    timeout: Duration,
    ready: impl Fn(&[Watch]) -> bool,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
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
            return Err(format!("{what} not ready after {timeout:?}\n{log}"));
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

/// First create -> the last named WeftNode's `Allocated=True`, and how many said so by
/// `last_allocation`.
fn reported_at(
    weftnodes: &Watch,
    names: &[String],
    began: Instant,
    last_allocation: Instant,
) -> (Duration, usize) {
    let seen = weftnodes.seen.lock().unwrap();
    let at: Vec<Instant> = names.iter().map(|n| seen.reported[n.as_str()]).collect();
    let early = at.iter().filter(|&&t| t <= last_allocation).count();
    let last = at.into_iter().max();
    (
        last.map_or(Duration::ZERO, |t| t.duration_since(began)),
        early,
    )
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
