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
//! `--via relay` holds the watches on the policy relay instead (controller/src/relay/,
//! design §1.5), `--via both` (the default) measures each N both ways in one run: one
//! weft-controller replica in the control plane's namespace (`--relay-addr [::]:9643`,
//! standing by for a Lease held elsewhere, so it only relays) follows the resource with
//! one watch and serves the N watches itself, each only its span's events. The writes
//! still go to the apiserver. Its rows add the relay process's CPU over the same window
//! (/proc/PID/stat), per write, and summed with the apiserver's (against the round's
//! N = 0 row via the apiserver: no watch of a node anywhere), its idle CPU and its RSS
//! idle and after the burst; "served" is then `weft_relay_watches`, and N = 0 is the
//! relay running with no client watch. The watchers authenticate as a ServiceAccount
//! bound to cluster-admin (the relay checks a bearer token with a TokenReview and a
//! SubjectAccessReview, each answer kept 30 s) and trust the cluster CA; they reach the
//! relay on several addresses of the namespace, so they come from that many source
//! addresses, `relay::WATCHES_PER_SOURCE` each: the relay admits 32 connections per
//! address, one weftd's worth. The relay runs for its rows only: the apiserver's rows
//! measure the apiserver alone.
//!
//! `--rounds 2` runs the rows again in the opposite order (N descending, the relay's
//! rows first: watches are closed between rows) to show drift and noise; each round's
//! ratios use its own N = 0 row.
//!
//! ```text
//! e2e/bench-policy-watch.sh [--watches 0,1000,5000,10000] [--writes 2000] [--writers 16]
//!                           [--rate W] [--span 30] [--object-kib 6] [--rounds 1]
//!                           [--open-parallel 200] [--via apiserver|relay|both]
//!                           [--out PATH]
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
mod relay;
mod report;
mod row;
mod site;
mod watchers;

use relay::{Relay, Setup, Via};
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
    /// Where the watches are held: on the apiserver, on the policy relay, or a row of
    /// each per N.
    #[arg(long, value_enum, default_value_t = Via::Both)]
    via: Via,
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
    let relayed = args.via.sides().contains(&Via::Relay);
    let sources = if relayed {
        relay::sources(max_watches)
    } else {
        Vec::new()
    };
    let site = Site::start(&sources);
    let (resource, crd_source) = site.install_crd();
    let setup = relayed.then(|| Setup::prepare(&site, sources));
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
        let pool = Pool::new(vec![client], resource.path());
        run(&bench, pool, setup.as_ref(), &mut rows).await
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
    if let Some(setup) = &setup {
        facts.push(format!(
            "relay: {}, one replica standing by (so it only relays), \
             --relay-addr [::]:9643; its watchers: a ServiceAccount token (reviews kept 30 s), \
             {} source addresses, at most {} watches each",
            tool_version(setup.program(), "--version"),
            setup.source_count(),
            relay::WATCHES_PER_SOURCE
        ));
    }
    facts.push(
        "× N=0: against the round's N = 0 row via the apiserver (via the relay when only the \
         relay's rows ran); sum: apiserver and relay CPU"
            .into(),
    );
    let mut report = report_header(
        "Label-filtered CRD watches: apiserver cost, direct and through the policy relay",
        &facts,
    );
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
/// before it). `pool` holds the watches on the apiserver; a relay, started from
/// `setup` for the relay's rows, holds its own.
async fn run(
    bench: &Bench<'_>,
    mut pool: Pool,
    setup: Option<&Setup>,
    rows: &mut Vec<RowResult>,
) -> Result<(), String> {
    if setup.is_some() && bench.resource.path() != "/apis/weft.dev/v1alpha1/weftaddressgroups" {
        return Err("the relay serves weft.dev's WeftAddressGroup only: no such CRD".into());
    }
    let mut ordinal = 0;
    let mut running: Option<Relay> = None;
    for round in 0..bench.args.rounds {
        let mut order: Vec<(Via, usize)> = bench
            .args
            .via
            .sides()
            .into_iter()
            .flat_map(|via| bench.args.watches.iter().map(move |&n| (via, n)))
            .collect();
        order.sort_unstable();
        if round % 2 == 1 {
            order.reverse();
        }
        for (via, watches) in order {
            if stop_requested() {
                return Err("interrupted".into());
            }
            let row = if via == Via::Relay {
                pool.close();
                if running.is_none() {
                    let setup = setup.expect("a relay set up for the relay's rows");
                    running = Some(setup.start(&bench.resource.path()).await?);
                }
                let relay = running.as_mut().unwrap();
                let process = Some(&relay.process);
                bench
                    .row(&mut relay.pool, process, ordinal, round, watches)
                    .await?
            } else {
                running = None;
                bench.row(&mut pool, None, ordinal, round, watches).await?
            };
            eprintln!(
                "bench_policy_watch: row {ordinal}: {watches} watches via {}: apiserver {:.2} \
                 CPU s, relay {:.2}, {}/{} events",
                via.name(),
                row.apiserver.cpu,
                row.relay.map_or(0.0, |r| r.cpu),
                row.delivered,
                row.expected
            );
            rows.push(row);
            ordinal += 1;
        }
    }
    Ok(())
}
