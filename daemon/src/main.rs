//! `weftd`, the weft node daemon.
//!
//! The story, as [`serve`] tells it: parse and validate the flags ([`flags`]); find the
//! uplink ([`node`]); answer `/metrics`, `/healthz` and `/readyz` (weft-health,
//! [`metrics`]); learn the node's allocation, from the flags or the apiserver
//! ([`kube`]); make the node a router; open the IPAM store (weft-ipam) and start the
//! background veth remover ([`reaper`]); put the pods' IPv4 gateway on `lo` ([`node`]),
//! bring up the overlay and converge it to the peers ([`datapath`], with one file per
//! routing mode in [`routing`]); put weft's nftables tables in place ([`firewall`]);
//! start the peer source ([`peers`]) and, in Kubernetes mode, the identity and usage
//! reports; then serve the CNI plugin on the unix socket ([`socket`], [`service`]),
//! write the CNI conflist ([`conflist`]) and turn `/readyz` on, while one supervisor
//! ([`supervisor`]) watches every task, until SIGTERM or SIGINT. Exiting leaves the
//! datapath and the conflist in place: pods keep their connectivity, and can still be
//! deleted, while weftd restarts.
//!
//! | module | what |
//! |---|---|
//! | [`error`] | weftd's error type; its variants are the `error` label of `weft_errors_total` |
//! | [`task`], [`supervisor`] | long-running work as `(handle, task)` pairs, and what a task's end means |
//! | [`peers`] | peer sources: the `--peers` file, the Kubernetes watch |
//! | [`routing`] | one file per routing mode: the kernel entries each peer needs |
//! | [`datapath`] | the VXLAN device, and the diff/apply/convergence of those entries |
//! | [`firewall`] | the only nftables code: tables `inet weft`, `ip weft-nat` and `arp weft`, one file per concern |
//! | [`conflist`] | the CNI conflist for the runtime: atomic writes, kept in place |
#![forbid(unsafe_code)]

mod allocation;
mod conflist;
mod datapath;
mod error;
mod firewall;
mod flags;
mod kube;
mod metrics;
mod node;
mod peers;
mod policy;
mod reaper;
mod routing;
mod service;
mod socket;
mod supervisor;
mod task;

use allocation::NodeAllocation;
use clap::Parser;
use error::{Error, Result};
use firewall::{
    Concern, EgressNat, Firewall, GuardSets, HostProtection, NetworkPolicy, PodGuard, PolicyTables,
    TunnelGuard,
};
use futures::FutureExt;
use metrics::Metrics;
use peers::PeerSource;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use supervisor::{Lifetime, OnEnd, Readiness, Tasks};
use tokio::signal::unix::{signal, SignalKind};
use tracing::{error, info, warn};
use weft_ipam::{Ipam, IpamConfig};
use weft_wire::{pod_mtus, NodeNetwork};

fn main() -> ExitCode {
    let flags = flags::Flags::parse();
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_max_level(flags.log_level)
        .with_writer(std::io::stderr)
        .init();
    let outcome = flags.validate().and_then(|config| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(Error::start("the runtime"))?
            .block_on(run(config))
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e}");
            ExitCode::from(2)
        }
    }
}

/// Claims the state directory and the socket before anything else: a weftd refused
/// because another one holds them (or because a directory is unsafe) must not touch
/// sysctls, the records or, worst, sweep the other weftd's live host veths as orphans.
/// The socket directory is checked first, as it needs nothing created; the state lock
/// is held until the process ends.
async fn run(config: flags::Config) -> Result<()> {
    socket::check_directory(&config.socket)?;
    let _state = weft_ipam::StateLock::acquire(&config.state_dir).map_err(|e| Error::Ipam {
        state_dir: config.state_dir.clone(),
        source: e.into(),
    })?;
    weft_health::raise_fd_limit();
    let (listener, bound) = socket::bind(&config.socket)?;
    let outcome = serve(&config, listener).await;
    bound.remove();
    outcome
}

async fn serve(config: &flags::Config, listener: tokio::net::UnixListener) -> Result<()> {
    let mut tasks = Tasks::default();
    let mut nl = weft_netlink::Netlink::connect().map_err(Error::netlink("netlink socket"))?;
    let uplink = node::discover_uplink(&mut nl, config.underlay_interface.as_deref())?;

    // Health and metrics answer from the start; /readyz turns 200 once pods are served
    // and the conflist is written (in Kubernetes mode the node may first wait for its
    // allocation).
    let metrics = Metrics::new(&config.node_name)?;
    let mut readiness = Readiness::default();
    start_metrics(
        &mut tasks,
        &config.metrics_addrs,
        &metrics,
        &readiness.answer(),
    )?;

    let (allocation, cluster) = node_allocation(config, &uplink).await?;
    metrics.set_mode(allocation.mode);
    let mtu = pod_mtus(uplink.mtu, uplink.family, allocation.mode)
        .map_err(|e| Error::Uplink(format!("uplink {:?}: {e}", uplink.name)))?;
    node::enable_forwarding(allocation.mode, &config.proc_sys)?;
    let network = NodeNetwork {
        node_name: config.node_name.clone(),
        mode: allocation.mode,
        ipv6_prefix: allocation.ipv6_prefix,
        ipv4_subnet: allocation.ipv4_subnet,
        mtu,
    };
    info!(node = %network.node_name, mode = %network.mode, ipv6_prefix = ?network.ipv6_prefix,
        ipv4_subnet = ?network.ipv4_subnet, uplink = ?uplink.name, uplink_mtu = uplink.mtu, pod_mtu = ?mtu, "starting");

    let ipam_config = IpamConfig {
        ipv6_prefix: allocation.ipv6_prefix,
        ipv4_subnet: allocation.ipv4_subnet,
        cooldown: config.cooldown,
        state_dir: config.state_dir.clone(),
    };
    let (ipam, report) = Ipam::open(ipam_config).map_err(|source| Error::Ipam {
        state_dir: config.state_dir.clone(),
        source,
    })?;
    info!(restored = report.restored, cooling = report.cooling, outside_range = ?report.outside_range,
        dropped_after_reboot = report.dropped_after_reboot, without_network = report.without_network, "IPAM state loaded");
    if !report.quarantined.is_empty() {
        warn!(records = ?report.quarantined, addresses = report.quarantined_addresses,
            "records that do not parse are quarantined in corrupt/: their addresses stay reserved until the attachment's DEL or a reboot");
    }
    if !report.skipped.is_empty() {
        warn!(entries = ?report.skipped, "entries weftd never writes were found in the state directory and left alone");
    }
    let (reaper, reaping) = reaper::Reaper::start(metrics.clone())?;
    // Without it, every DEL would leave its host veth behind: restart.
    tasks.add("veth reaper", Lifetime::Forever, OnEnd::Exit, reaping);
    let guard = GuardSets::default();
    let mut service = service::Service::new(ipam, network, metrics.clone(), reaper, guard.clone());
    service.remove_orphan_veths();
    // Kubernetes mode: NetworkPolicy, its dynamic state shared by the engine (which
    // applies it) and the firewall (which repairs it).
    let policy_tables = PolicyTables::default();
    if let Some(cluster) = &cluster {
        let engine = start_policy(
            &mut tasks,
            cluster,
            config.policy.clone(),
            allocation.mode,
            &config.state_dir,
            &policy_tables,
            &metrics,
        );
        service = service.with_policy(engine.clone());
        let pods_of = service.clone();
        let pods: policy::Pods = Arc::new(move || pods_of.allocations());
        // A dead engine leaves new pods unjudged (dropped) and changes unapplied:
        // restart (the kernel keeps the verdicts meanwhile).
        let judging = task::spawn("policy engine", engine.run(pods));
        tasks.add("policy engine", Lifetime::Forever, OnEnd::Exit, judging);
    }

    let (peer_underlays, tunnel_peers) = std::sync::mpsc::channel();
    let setup = datapath::Setup {
        node_name: config.node_name.clone(),
        allocation: allocation.clone(),
        uplink: uplink.clone(),
        vxlan_mtu: mtu.ipv4,
        resync: config.resync,
        sysctls: config.proc_sys.clone(),
        peer_underlays: Some(peer_underlays),
    };
    // The datapath thread runs, resyncing, as long as a handle exists: this one lives
    // until weftd stops. Without it peers are never converged again: restart (the
    // kernel state stays, so a restart disturbs no flow).
    let (datapath, converging) = datapath::Datapath::start(setup, metrics.clone())?;
    tasks.add("datapath", Lifetime::Forever, OnEnd::Exit, converging);

    let nat = EgressNat::for_node(&allocation, &uplink).map(Concern::EgressNat);
    // The guard's first pass restores every restored allocation's sources before a
    // pod is served.
    let pod_sources = service.clone();
    let pod_guard = Concern::PodGuard(PodGuard {
        sets: guard,
        sources: Arc::new(move || pod_sources.pod_sources()),
    });
    let network_policy = cluster.is_some().then(|| {
        Concern::NetworkPolicy(NetworkPolicy {
            tables: policy_tables,
        })
    });
    let firewall = Firewall::new(
        nat.into_iter()
            .chain([pod_guard])
            .chain(network_policy)
            .collect(),
    );
    // VXLAN from the peers only; what pods reach on their node (--pod-host-access).
    let guards = TunnelGuard::for_node(&allocation, &uplink).map(Concern::TunnelGuard);
    let host = HostProtection::for_node(&allocation, config.pod_host_access);
    let firewall = firewall
        .with_concerns(guards.into_iter().chain(host.map(Concern::HostProtection)))
        .with_tunnel_peers(tunnel_peers);
    // Without it, drift in weft's tables (egress NAT, guards) is never repaired, nor a
    // peer change let through the tunnel guard: restart.
    let firewalling = firewall.start(config.resync, metrics.clone())?;
    tasks.add("firewall", Lifetime::Forever, OnEnd::Exit, firewalling);

    let source = match (&cluster, &config.peers) {
        (Some(cluster), _) => PeerSource::Kubernetes(Box::new(cluster.clone())),
        (None, Some(path)) => PeerSource::File(path.clone()),
        (None, None) => PeerSource::None,
    };
    let (peers, feeding) = source.start(datapath.clone(), metrics.clone())?;
    // A dead source freezes the node's view of its peers: nodes joining later are never
    // reached. A restart lists the peers afresh (and keeps the kernel state meanwhile).
    tasks.add("peer source", Lifetime::Forever, OnEnd::Exit, feeding);

    if let Some(cluster) = cluster {
        let vtep_mac = allocation.ipv4_subnet.map(weft_wire::vtep_mac);
        let identity = kube::Identity::new(&uplink, vtep_mac);
        start_reports(
            &mut tasks,
            cluster,
            identity,
            config.resync,
            &service,
            &metrics,
        );
    }

    // Without the socket the node serves no pod: restart.
    let serving = forever("plugin socket", socket::serve(listener, service));
    tasks.add("plugin socket", Lifetime::Forever, OnEnd::Exit, serving);
    // The runtime is told of the network only now: a conflist present means a socket
    // that answers. Fused: after a dropped sender it stays pending, never polled again.
    let mut conflist_written = keep_conflist(&mut tasks, config, &metrics)?.fuse();

    let mut term = signal(SignalKind::terminate()).map_err(Error::start("the SIGTERM handler"))?;
    let mut int = signal(SignalKind::interrupt()).map_err(Error::start("the SIGINT handler"))?;
    let mut hup = signal(SignalKind::hangup()).map_err(Error::start("the SIGHUP handler"))?;
    loop {
        tokio::select! {
            ended = tasks.next() => ended.settle(&mut readiness, &metrics)?,
            written = &mut conflist_written, if !readiness.serving() => {
                // A dropped sender is the conflist thread's death, which the
                // supervisor sees and settles.
                if written.is_ok() {
                    readiness.set_serving();
                    info!(socket = %config.socket.display(), "serving the CNI plugin");
                }
            }
            _ = term.recv() => { info!("SIGTERM: stopping"); return Ok(()) }
            _ = int.recv() => { info!("SIGINT: stopping"); return Ok(()) }
            _ = hup.recv() => { info!("SIGHUP"); peers.reload() }
        }
    }
}

/// Starts keeping the `--cni-conflist`, if any; resolves once it is in place (at once
/// without one).
fn keep_conflist(
    tasks: &mut Tasks,
    config: &flags::Config,
    metrics: &Metrics,
) -> Result<conflist::FirstWrite> {
    let Some(conflist) = config.conflist.clone() else {
        let (written, first_write) = tokio::sync::oneshot::channel();
        let _ = written.send(());
        return Ok(first_write);
    };
    let (first_write, keeping) = conflist.keep(config.resync, metrics.clone())?;
    // Without it, a deleted conflist is never restored and the runtime loses the
    // network: restart (a restart writes it again).
    tasks.add("cni conflist", Lifetime::Forever, OnEnd::Exit, keeping);
    Ok(first_write)
}

/// One `/metrics`, `/healthz`, `/readyz` server per `--metrics-addr` address.
fn start_metrics(
    tasks: &mut Tasks,
    addrs: &[std::net::SocketAddr],
    metrics: &Metrics,
    ready: &Arc<AtomicBool>,
) -> Result<()> {
    for addr in addrs {
        let listener = weft_health::bind(*addr).map_err(Error::Listen)?;
        let server = weft_health::serve(listener, metrics.registry().clone(), ready.clone());
        // Without its endpoint weftd is unobservable and its probes fail: restart it.
        let serving = forever("metrics", server);
        tasks.add("metrics", Lifetime::Forever, OnEnd::Exit, serving);
    }
    Ok(())
}

/// Kubernetes mode: the node's identity (kept every `resync`) and its address use
/// (periodically) go to its WeftNode.
fn start_reports(
    tasks: &mut Tasks,
    cluster: kube::Cluster,
    identity: kube::Identity,
    resync: std::time::Duration,
    service: &service::Service,
    metrics: &Metrics,
) {
    let publishing = task::spawn("publish identity", {
        let publish = cluster
            .clone()
            .publish_identity(identity.clone(), metrics.clone());
        async move {
            publish.await;
            Ok(())
        }
    });
    let keeping = forever(
        "identity resync",
        cluster
            .clone()
            .keep_identity(identity, resync, metrics.clone()),
    );
    let reporting = forever(
        "usage report",
        cluster.report_usage(service.clone(), metrics.clone()),
    );
    // These only tell the cluster about the node; pods are served and connected without
    // them, so their death must not restart weftd (which would gain nothing against a
    // broken apiserver) but must not leave it claiming readiness either.
    tasks.add(
        "publish identity",
        Lifetime::UntilDone,
        OnEnd::NotReady,
        publishing,
    );
    tasks.add(
        "identity resync",
        Lifetime::Forever,
        OnEnd::NotReady,
        keeping,
    );
    tasks.add(
        "usage report",
        Lifetime::Forever,
        OnEnd::NotReady,
        reporting,
    );
}

/// Kubernetes mode: NetworkPolicy's watches and status report, as supervised tasks;
/// returns the engine that judges pods (its own task starts once the service exists).
fn start_policy(
    tasks: &mut Tasks,
    cluster: &kube::Cluster,
    settings: flags::PolicySettings,
    served: weft_wire::Mode,
    state_dir: &std::path::Path,
    tables: &PolicyTables,
    metrics: &Metrics,
) -> policy::PolicyEngine {
    // The last word from the controller, for pods starting before the apiserver answers.
    let saved = policy::load_saved(state_dir).unwrap_or_default();
    let restored = policy::Progress {
        complete: saved.complete(),
        ..policy::Progress::default()
    };
    let inputs = Arc::new(std::sync::Mutex::new(saved));
    let (progress, progressed) = tokio::sync::watch::channel(restored);
    let (applied, reports) = tokio::sync::watch::channel(policy::Applied::default());
    let gate = policy::PolicyGate::new(inputs.clone(), progressed.clone(), settings.wait);
    let engine = policy::PolicyEngine::new(
        inputs.clone(),
        progressed,
        gate,
        tables.clone(),
        applied,
        policy::EngineNode {
            served,
            state_dir: state_dir.to_owned(),
        },
        metrics.clone(),
    );
    let node = cluster.node_name().to_owned();
    let watching = task::spawn(
        "policy watches",
        policy::feed(
            cluster.client(),
            cluster.spans(),
            node.clone(),
            inputs,
            progress,
            metrics.clone(),
        ),
    );
    // Without the watches no policy change reaches the kernel and new pods in policed
    // namespaces stay isolated: restart.
    tasks.add("policy watches", Lifetime::Forever, OnEnd::Exit, watching);
    let reporting = forever(
        "policy status",
        policy::report(
            ::kube::Api::all(cluster.client()),
            node,
            reports,
            settings.report,
            metrics.clone(),
        ),
    );
    // Only tells the controller how far this node got: enforcement goes on without it.
    tasks.add(
        "policy status",
        Lifetime::Forever,
        OnEnd::NotReady,
        reporting,
    );
    engine
}

/// A task that should never return, on the runtime.
fn forever(
    name: &'static str,
    work: impl std::future::Future<Output = ()> + Send + 'static,
) -> task::Task {
    task::spawn(name, async move {
        work.await;
        Ok(())
    })
}

/// The node's allocation: from the flags, or in Kubernetes mode from the apiserver
/// (saved locally for restarts while the apiserver is down).
async fn node_allocation(
    config: &flags::Config,
    uplink: &node::Uplink,
) -> Result<(NodeAllocation, Option<kube::Cluster>)> {
    let flags::Source::Kubernetes {
        kubeconfig,
        network,
    } = &config.source
    else {
        let allocation = NodeAllocation {
            mode: config.mode,
            ipv6_prefix: config.ipv6_prefix,
            ipv4_subnet: config.ipv4_subnet,
            ipv6_routing: config.ipv6_routing,
            vxlan_vni: config.vxlan_vni,
            vxlan_port: config.vxlan_port,
        };
        return Ok((allocation, None));
    };
    let client = kube::connect(kubeconfig.as_deref()).await?;
    let mut cluster = kube::Cluster::new(client, &config.node_name, network);
    if let Some(relay) = &config.policy.relay {
        cluster = cluster.with_spans(kube::connect_relay(kubeconfig.as_deref(), relay).await?);
    }
    let saved = kube::allocation::load(&config.state_dir);
    let allocation = cluster.wait_allocation(uplink, saved).await;
    if let Err(e) = kube::allocation::save(&config.state_dir, &allocation) {
        warn!(error = %e, "cannot save the allocation locally");
    }
    info!(allocation = ?allocation, "allocation received");
    Ok((allocation, Some(cluster)))
}
