//! The apiserver's cost of many label-filtered watches of one CRD: the risk that could
//! reverse the NetworkPolicy design's split (docs/networkpolicy-design.md §1.4, §4.5,
//! §6 risk 1). Every weftd watches `WeftAddressGroup` (and `WeftPolicy`) with
//! `labelSelector=span.weft.dev/n-<hash of its node>`, so at 5,000 nodes the apiserver
//! holds ~10,000 such watches of one resource, and apiextensions-apiserver registers no
//! index for custom resources: every event goes to every watcher of the resource, and
//! each watcher's selector decides whether it is sent.
//!
//! What is measured, against the real kube-apiserver and etcd the harness builds (one
//! control plane, one run): for each N of `--watches` (default 0, 1,000, 5,000 and
//! 10,000, one row each), N watches are held open, node `i`'s with its span label as
//! selector (the design's `span.weft.dev/n-<first 16 hex digits of SHA-256("node-i")>`).
//! Then a burst of `--writes` creates (default 2,000, `--writers` in flight, as fast as
//! the apiserver answers unless `--rate` paces them) of address-group slices of
//! `--object-kib` (6) KiB of JSON, each spanning `--span` (30) distinct nodes drawn from
//! the N watched ones (from the largest N's nodes when N = 0, so nobody receives them).
//! So rows with N > 0 deliver the same number of events (writes × span) and differ only
//! in how many watchers each event does *not* match.
//!
//! Per row: kube-apiserver and etcd CPU seconds over the window (first create → every
//! expected event received + 1 s; /proc/PID/stat utime + stime), apiserver CPU per
//! write and its ratio to the same round's N = 0 row, the apiserver's idle CPU with the
//! N watches open (5 s before the burst), its RSS idle and after the burst, create
//! throughput and latency (request → response), event latency (create response → event
//! at a watcher whose label matches; negative when the event came first), bytes each
//! watcher received, streams the apiserver closed and watchers it terminated
//! (`apiserver_terminated_watchers_total`: the cacher drops watchers that cannot keep
//! up). After each row its objects are deleted (untimed) and the deletes' events awaited.
//!
//! Transport: kube-rs's client, weftd's own. kube-rs speaks HTTP/1.1 only (its hyper is
//! built without http2), so each watch holds one TLS connection, exactly as 5,000 weftds
//! would hold theirs; one client in one process holds 10,000 of them (two runtime
//! threads, a socket each: `RLIMIT_NOFILE` is raised before the control plane starts, so
//! the apiserver inherits it too). Watches open `--open-parallel` at a time. The admin
//! identity (`system:masters`) is used: its requests are exempt from API Priority and
//! Fairness, so the numbers are the apiserver's work, not admission throttling.
//!
//! `--rounds 2` runs the rows again in the opposite order (N descending: watches are
//! closed between rows) to show drift and noise; each round's ratios use its own N = 0
//! row.
//!
//! ```text
//! e2e/bench-policy-watch.sh [--watches 0,1000,5000,10000] [--writes 2000] [--writers 16]
//!                           [--rate W] [--span 30] [--object-kib 6] [--rounds 1]
//!                           [--open-parallel 200] [--out PATH]
//! ```
//!
//! Needs root (a network namespace, setns). The apiserver serves on 2001:db8:ffff::2, a
//! documentation address inside a namespace this program creates and removes.
#![allow(clippy::unwrap_used)]

use clap::builder::RangedU64ValueParser as Ranged;
use clap::Parser as _;
use std::path::PathBuf;
use weft_e2e::bench::{machine_facts, publish, report_header, tool_version};
use weft_e2e::{install_namespace_cleanup_hook, stop_requested, watch_stop_signals, KubeBinaries};

mod api;
mod burst;
mod objects;
mod report;
mod row;
mod site;
mod watchers;

use row::{Bench, RowResult};
use site::{enter, raise_open_files, Site};
use watchers::Pool;

/// Sockets beyond the watches: the control plane's own, the writers, kubectl.
const SPARE_FILES: u64 = 4096;

#[derive(Debug, clap::Parser)]
pub(crate) struct Args {
    /// Rows: how many label-filtered watches are open during each burst.
    #[arg(long, value_delimiter = ',', default_value = "0,1000,5000,10000")]
    watches: Vec<usize>,
    /// Creates per burst.
    #[arg(long, default_value_t = 2000, value_parser = Ranged::<usize>::new().range(1..=100_000))]
    writes: usize,
    /// Creates in flight.
    #[arg(long, default_value_t = 16, value_parser = Ranged::<usize>::new().range(1..=1000))]
    writers: usize,
    /// Creates per second (default: as fast as the apiserver answers).
    #[arg(long)]
    rate: Option<f64>,
    /// Nodes each object spans (span labels per object).
    #[arg(long, default_value_t = 30, value_parser = Ranged::<usize>::new().range(1..=128))]
    span: usize,
    /// Size of each object's JSON as written, KiB.
    #[arg(long, default_value_t = 6, value_parser = Ranged::<usize>::new().range(1..=512))]
    object_kib: usize,
    /// Rounds; odd rounds run the rows in the opposite order.
    #[arg(long, default_value_t = 1, value_parser = Ranged::<usize>::new().range(1..=10))]
    rounds: usize,
    /// Watches being opened at once.
    #[arg(long, default_value_t = 200, value_parser = Ranged::<usize>::new().range(1..=5000))]
    open_parallel: usize,
    /// Also write the report here.
    #[arg(long)]
    out: Option<PathBuf>,
}

fn main() {
    watch_stop_signals("bench_policy_watch");
    install_namespace_cleanup_hook();
    let args = Args::parse();
    let (mut facts, profile) = machine_facts("bench_policy_watch");
    let max_watches = args.watches.iter().copied().max().unwrap_or(0);
    let open_files = raise_open_files(max_watches as u64 + SPARE_FILES);
    let site = Site::start();
    let (resource, crd_source) = site.install_crd();
    let kubeconfig = site.cp.kubeconfig();
    enter(&site.ns);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut rows = Vec::new();
    let outcome = runtime.block_on(async {
        let config = kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(&kubeconfig).map_err(|e| e.to_string())?,
            &Default::default(),
        )
        .await
        .map_err(|e| e.to_string())?;
        let client = kube::Client::try_from(config).map_err(|e| e.to_string())?;
        let bench = Bench {
            args: &args,
            client: client.clone(),
            resource: resource.clone(),
            apiserver_pid: site.apiserver_pid(),
            etcd_pid: site.etcd_pid(),
            max_watches,
        };
        run(&bench, Pool::new(client, resource.path()), &mut rows).await
    });
    runtime.shutdown_background();
    let bins = KubeBinaries::find();
    facts.extend([
        format!("profile: {profile}"),
        format!(
            "kube-apiserver: {} (defaults: watch cache on, --max-requests-inflight 400, which \
             long-running requests such as watches do not count)",
            tool_version(&bins.kube_apiserver, "--version")
        ),
        format!("resource: {crd_source}"),
        format!(
            "burst: {} creates, {} in flight, {}; {} KiB JSON objects spanning {} nodes each",
            args.writes,
            args.writers,
            args.rate
                .map_or("as fast as answered".into(), |r| format!("{r} per second")),
            args.object_kib,
            args.span
        ),
        format!(
            "watches: kube-rs client (HTTP/1.1, one TLS connection per watch), admin identity, \
             RLIMIT_NOFILE {open_files}"
        ),
    ]);
    let mut report = report_header("Label-filtered CRD watches: apiserver cost", &facts);
    report.push('\n');
    report.push_str(&report::render(&rows));
    if let Err(why) = &outcome {
        report.push_str(&format!("\nStopped: {why}\n"));
    }
    publish("bench_policy_watch", &report, args.out.as_deref());
    drop(site);
    if outcome.is_err() {
        std::process::exit(1);
    }
}

/// Every round's rows, appended to `rows` as they finish (a failure keeps the rows
/// before it).
async fn run(bench: &Bench<'_>, mut pool: Pool, rows: &mut Vec<RowResult>) -> Result<(), String> {
    let mut ordinal = 0;
    for round in 0..bench.args.rounds {
        let mut order = bench.args.watches.clone();
        order.sort_unstable();
        if round % 2 == 1 {
            order.reverse();
        }
        for watches in order {
            if stop_requested() {
                return Err("interrupted".into());
            }
            let row = bench.row(&mut pool, ordinal, round, watches).await?;
            eprintln!(
                "bench_policy_watch: row {ordinal}: {watches} watches: apiserver {:.2} CPU s, \
                 {}/{} events",
                row.apiserver.cpu, row.delivered, row.expected
            );
            rows.push(row);
            ordinal += 1;
        }
    }
    Ok(())
}
