//! weftd's peers at scale in Kubernetes mode, beside the same peers from a peers file:
//! issue 3's target ("converging 5,000 peers from empty completes in <= 10 s with weftd
//! RSS <= 40 MiB") on issue 4's path, where the peers are WeftNode objects watched from
//! a real kube-apiserver.
//!
//! Setup, untimed, once: a control plane in a namespace of its own (apiserver on
//! 2001:db8:ffff::2), the WeftNetwork, this node's WeftNode and N peer WeftNodes written
//! as a cluster writes them, by four field managers: the controller creates each with
//! its ranges and applies its conditions to the status; weftd applies its underlay
//! address and VTEP MAC to the spec, and its `Ready` and usage to the status. So every
//! object carries the managedFields and status a real one does.
//!
//! Each round, for each source (the order alternating): a fresh node namespace whose
//! uplink (2001:db8:fffe::10/64, VXLAN over IPv6, `--ipv6-routing direct` from the
//! WeftNetwork) is a veth into the control plane's namespace. weftd starts there:
//!
//! - `kubernetes`: `--kubeconfig`, its allocation and peers from the apiserver;
//! - `file`: standalone, the same ranges by flag and the same N peers in a peers file.
//!
//! Measured: the wall time from spawning weftd until its /metrics show
//! `weft_peers_programmed == N`, and weftd's peak RSS (VmHWM) a moment later. The ratio
//! is Kubernetes mode over the peers file. `WEFTD=PATH` runs another weftd build (to
//! measure before and after a change).
//!
//! ```text
//! e2e/bench-kube-peers.sh [--peers 5000] [--rounds 2] [--out PATH]
//! ```
//!
//! Needs root. Documentation prefixes and 10.0.0.0/8 only, inside namespaces this
//! program creates and removes.
#![allow(clippy::unwrap_used)]

use clap::builder::RangedU64ValueParser as Ranged;
use clap::Parser as _;
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use weft_e2e::bench::{
    self, median_f64, proc_status_kib, publish, ratio, report_header, turns, verdict, Table,
};
use weft_e2e::{
    binary, install_namespace_cleanup_hook, node_beside, serving_namespace, ControlPlane, Netns,
    Node, NodeOptions, TempDir, SOLO_APISERVER,
};

/// The measured node's own WeftNode and ranges.
const SELF_NAME: &str = "kube-peers-self";
const SELF_PREFIX: &str = "2001:db8:1000::/80";
const SELF_SUBNET: &str = "10.0.0.0/24";
const TARGET_TIME: Duration = Duration::from_secs(10);
const TARGET_RSS_MIB: f64 = 40.0;
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, clap::Parser)]
struct Args {
    /// Peer WeftNodes (at most 65,535: one /80 and one /24 each).
    #[arg(long, default_value_t = 5000, value_parser = Ranged::<u32>::new().range(1..=65_535))]
    peers: u32,
    /// Rounds; each runs both sources.
    #[arg(long, default_value_t = 2, value_parser = Ranged::<usize>::new().range(1..))]
    rounds: usize,
    /// Also write the report here.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Source {
    Kubernetes,
    File,
}

/// One weftd start: until every peer is programmed, and its peak RSS.
#[derive(Debug)]
struct Sample {
    source: Source,
    converged: Duration,
    peak_rss_kib: u64,
}

fn main() {
    let args = Args::parse();
    install_namespace_cleanup_hook();
    let (mut facts, profile) = bench::machine_facts("bench_kube_peers");
    facts.push(format!(
        "weft build profile: {profile}; weftd: {}",
        binary("weftd").display()
    ));
    let cp_ns = serving_namespace("kc", &[&format!("{SOLO_APISERVER}/64")]);
    let cp = ControlPlane::start(&cp_ns, SOLO_APISERVER.parse().unwrap());
    let setup = Instant::now();
    write_cluster(&cp, args.peers);
    eprintln!(
        "bench_kube_peers: {} WeftNodes written in {:.1} s",
        args.peers,
        setup.elapsed().as_secs_f64()
    );
    let scratch = TempDir::new("kube-peers");
    let peers_file = scratch.path().join("peers.json");
    let entries: Vec<Value> = (1..=args.peers)
        .map(|i| peers_file_entry(peer(i)))
        .collect();
    std::fs::write(&peers_file, serde_json::to_vec(&entries).unwrap()).unwrap();
    let mut samples = Vec::new();
    for round in 0..args.rounds {
        for source in turns(round, 2).map(|i| [Source::Kubernetes, Source::File][i]) {
            let sample = measure(&cp, &cp_ns, source, &peers_file, args.peers);
            eprintln!("bench_kube_peers: round {}: {sample:?}", round + 1);
            samples.push(sample);
        }
    }
    let report = render(&args, facts, &samples);
    publish("bench_kube_peers", &report, args.out.as_deref());
}

/// Peer `i`'s WeftNode spec, as the controller and weftd together write it.
fn peer(i: u32) -> Value {
    let [hi, lo] = (i as u16).to_be_bytes();
    json!({"nodeName": format!("kube-peer-{i}"),
           "ipv6Prefix": format!("2001:db8:1000:0:{i:x}::/80"),
           "ipv4Subnet": format!("10.{hi}.{lo}.0/24"),
           "underlayIPv6": format!("2001:db8:fffe::1:{i:x}"),
           "vtepMAC": format!("ee:ee:0a:{hi:02x}:{lo:02x}:00")})
}

/// The same peer as a peers-file entry: the fields keep their names but `nodeName`,
/// which is `name` there.
fn peers_file_entry(mut spec: Value) -> Value {
    let fields = spec.as_object_mut().unwrap();
    let name = fields.remove("nodeName").unwrap();
    fields.insert("name".into(), name);
    spec
}

/// The WeftNetwork, this node's WeftNode, and the peers, by the four field managers.
fn write_cluster(cp: &ControlPlane, n: u32) {
    cp.install_weft_crds();
    let network = json!({"apiVersion": "weft.dev/v1alpha1", "kind": "WeftNetwork",
        "metadata": {"name": "default"},
        "spec": {"mode": "dual", "ipv6Routing": "direct",
                 "ipv6Ranges": [{"range": "2001:db8:1000::/64", "prefixLength": 80}],
                 "ipv4Network": "10.0.0.0/8", "ipv4SubnetLength": 24}});
    cp.kubectl_input_ok(&["apply", "-f", "-"], &network.to_string());
    let object = |name: &str, body: Value| {
        json!({"apiVersion": "weft.dev/v1alpha1", "kind": "WeftNode",
               "metadata": {"name": name}, "spec": body["spec"], "status": body["status"]})
    };
    let list =
        |items: Vec<Value>| json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string();
    let now = "2026-11-23T00:00:00Z";
    let condition = |t: &str, reason: &str| {
        json!({"type": t, "status": "True", "reason": reason, "message": reason,
               "lastTransitionTime": now})
    };
    let (mut controller, mut weftd_spec, mut controller_status, mut weftd_status) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    controller.push(object(
        SELF_NAME,
        json!({"spec": {"nodeName": SELF_NAME, "ipv6Prefix": SELF_PREFIX, "ipv4Subnet": SELF_SUBNET}}),
    ));
    for i in 1..=n {
        let spec = peer(i);
        let name = spec["nodeName"].as_str().unwrap().to_owned();
        controller.push(object(
            &name,
            json!({"spec": {"nodeName": name,
            "ipv6Prefix": spec["ipv6Prefix"], "ipv4Subnet": spec["ipv4Subnet"]}}),
        ));
        weftd_spec.push(object(
            &name,
            json!({"spec": {"nodeName": name,
            "underlayIPv6": spec["underlayIPv6"], "vtepMAC": spec["vtepMAC"]}}),
        ));
        controller_status.push(object(
            &name,
            json!({"status": {"conditions": [
            condition("Allocated", "Allocated"), condition("PodCIDRs", "Set")]}}),
        ));
        weftd_status.push(object(
            &name,
            json!({"status": {"conditions": [condition("Ready", "Serving")],
            "ipv6InUse": 12, "ipv4InUse": 12, "ipv4Capacity": 253, "ipv4Usage": "12/253",
            "reportedAt": now}}),
        ));
    }
    let apply = ["apply", "--server-side", "--force-conflicts", "-f", "-"];
    cp.kubectl_input_ok(
        &["create", "--field-manager=weft-controller", "-f", "-"],
        &list(controller),
    );
    cp.kubectl_input_ok(
        &[&apply[..], &["--field-manager=weftd"]].concat(),
        &list(weftd_spec),
    );
    cp.kubectl_input_ok(
        &[
            &apply[..],
            &[
                "--field-manager=weft-controller",
                "--subresource=status",
                "--validate=false",
            ],
        ]
        .concat(),
        &list(controller_status),
    );
    cp.kubectl_input_ok(
        &[
            &apply[..],
            &[
                "--field-manager=weftd",
                "--subresource=status",
                "--validate=false",
            ],
        ]
        .concat(),
        &list(weftd_status),
    );
}

fn measure(cp: &ControlPlane, cp_ns: &Netns, source: Source, peers: &Path, n: u32) -> Sample {
    let ns = node_beside(cp_ns, "kq");
    let mut options = NodeOptions {
        node_name: Some(SELF_NAME.into()),
        extra_args: vec!["--resync-seconds".into(), "3600".into()],
        ..NodeOptions::default()
    };
    match source {
        Source::Kubernetes => {
            options.kubeconfig = Some(cp.kubeconfig());
            options.ipv6_prefix = None;
            options.ipv4_subnet = None;
        }
        Source::File => {
            options.ipv6_prefix = Some(SELF_PREFIX.into());
            options.ipv4_subnet = Some(SELF_SUBNET.into());
            options.extra_args.extend([
                "--ipv6-routing".into(),
                "direct".into(),
                "--peers".into(),
                peers.display().to_string(),
            ]);
        }
    }
    let began = Instant::now();
    let mut node = Node::start_in(ns, options);
    let (at, _) = node
        .wait_metrics(
            began + CONVERGE_TIMEOUT,
            Duration::from_millis(20),
            &["weft_peers_programmed"],
            |m| m.get("weft_peers_programmed") == Some(f64::from(n)),
        )
        .unwrap_or_else(|e| panic!("{source:?}: {n} peers not programmed: {e}"));
    let converged = at - began;
    // The peak is reached while converging; a moment later it is all in.
    std::thread::sleep(Duration::from_millis(500));
    Sample {
        source,
        converged,
        peak_rss_kib: proc_status_kib(node.weftd_pid().unwrap(), "VmHWM"),
    }
}

fn render(args: &Args, mut facts: Vec<String>, samples: &[Sample]) -> String {
    facts.push(format!(
        "{} peer WeftNodes (4 field managers each, status included), {} rounds, sources alternating",
        args.peers, args.rounds
    ));
    let mut out = report_header("weftd's peers in Kubernetes mode vs the peers file", &facts);
    let of = |source: Source, f: fn(&Sample) -> f64| {
        median_f64(samples.iter().filter(|s| s.source == source).map(f))
    };
    let time = |s: &Sample| s.converged.as_secs_f64();
    let rss = |s: &Sample| s.peak_rss_kib as f64 / 1024.0;
    let (kt, ft) = (of(Source::Kubernetes, time), of(Source::File, time));
    let (kr, fr) = (of(Source::Kubernetes, rss), of(Source::File, rss));
    let mut table = Table::new([
        "measure (median)",
        "Kubernetes mode",
        "peers file",
        "Kubernetes / file",
    ]);
    table.row([
        format!("spawn -> {} peers programmed", args.peers),
        format!("{kt:.2} s"),
        format!("{ft:.2} s"),
        ratio(kt / ft, 2),
    ]);
    table.row([
        "weftd peak RSS (VmHWM)".to_owned(),
        format!("{kr:.1} MiB"),
        format!("{fr:.1} MiB"),
        ratio(kr / fr, 2),
    ]);
    let _ = write!(out, "{table}");
    let _ = writeln!(out, "\nEvery sample:\n");
    for s in samples {
        let _ = writeln!(out, "- {:?}: {:.2} s, {:.1} MiB", s.source, time(s), rss(s));
    }
    let _ = writeln!(out, "\nTargets (issue 3, here in Kubernetes mode):\n");
    let _ = writeln!(
        out,
        "- converge {} peers <= {} s: {kt:.2} s -> {}",
        args.peers,
        TARGET_TIME.as_secs(),
        verdict(kt <= TARGET_TIME.as_secs_f64())
    );
    let _ = writeln!(
        out,
        "- weftd RSS <= {TARGET_RSS_MIB} MiB: {kr:.1} MiB -> {}",
        verdict(kr <= TARGET_RSS_MIB)
    );
    out
}
