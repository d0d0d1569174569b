//! `weftd`, the weft node daemon.
//!
//! The story: parse and validate the flags ([`flags`]); find the uplink and make the
//! node a router ([`node`]); open the IPAM store and rebuild the pools (weft-ipam); start
//! the background veth remover ([`reaper`]) and the metrics endpoint (weft-health,
//! [`metrics`]); bring up the node's overlay and converge it to its peers
//! ([`datapath`], fed by [`peers_file`], NAT in [`nftables`]); then serve the CNI plugin
//! on the unix socket ([`socket`], [`service`]) until SIGTERM or SIGINT. Exiting leaves
//! the datapath in place: pods keep their connectivity while weftd restarts.
#![forbid(unsafe_code)]

mod allocation;
mod datapath;
mod flags;
mod kube;
mod metrics;
mod nftables;
mod node;
mod peers_file;
mod reaper;
mod service;
mod socket;

use allocation::NodeAllocation;
use clap::Parser;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
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
    let config = match flags.validate() {
        Ok(c) => c,
        Err(e) => return fatal(&e),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fatal(&format!("cannot start the runtime: {e}")),
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fatal(e.as_str()),
    }
}

fn fatal(message: &str) -> ExitCode {
    error!("{message}");
    ExitCode::from(2)
}

/// Claims the socket before anything else: a weftd refused because another one serves
/// (or because the socket directory is unsafe) must not touch sysctls, the state
/// directory or, worst, sweep the other weftd's live host veths as orphans.
async fn run(config: flags::Config) -> Result<(), String> {
    let listener = socket::bind(&config.socket)?;
    let outcome = serve(&config, listener).await;
    let _ = std::fs::remove_file(&config.socket);
    outcome
}

async fn serve(config: &flags::Config, listener: tokio::net::UnixListener) -> Result<(), String> {
    let mut nl = weft_netlink::Netlink::connect().map_err(|e| e.to_string())?;
    let uplink = node::discover_uplink(&mut nl, config.underlay_interface.as_deref())?;

    // Health and metrics answer from the start; /readyz turns 200 once pods are served
    // (in Kubernetes mode the node may first wait for its allocation).
    let metrics = metrics::Metrics::new(&config.node_name).map_err(|e| format!("metrics: {e}"))?;
    let ready = Arc::new(AtomicBool::new(false));
    for addr in &config.metrics_addrs {
        let listener = weft_health::bind(*addr)?;
        tokio::spawn(weft_health::serve(
            listener,
            metrics.registry().clone(),
            ready.clone(),
        ));
    }

    let (allocation, cluster) = node_allocation(config, &uplink).await?;
    metrics.set_mode(allocation.mode);
    let mtu = pod_mtus(uplink.mtu, uplink.family, allocation.mode)
        .map_err(|e| format!("uplink {:?}: {e}", uplink.name))?;
    node::enable_forwarding(allocation.mode)?;
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
    let (ipam, report) = Ipam::open(ipam_config)
        .map_err(|e| format!("--state-dir {}: {e}", config.state_dir.display()))?;
    info!(restored = report.restored, cooling = report.cooling, corrupt = ?report.corrupt,
        outside_range = ?report.outside_range, dropped_after_reboot = report.dropped_after_reboot, "IPAM state loaded");
    let reaper = reaper::Reaper::start(metrics.clone())
        .map_err(|e| format!("cannot start the veth reaper: {e}"))?;
    let service = service::Service::new(ipam, network, metrics.clone(), reaper);
    service.remove_orphan_veths();

    let datapath = datapath::Datapath::start(
        datapath::Setup {
            node_name: config.node_name.clone(),
            allocation: allocation.clone(),
            uplink: uplink.clone(),
            vxlan_mtu: mtu.ipv4,
            resync: config.resync,
        },
        metrics,
    )?;
    let reload = match cluster {
        None => start_peer_source(config, datapath)?,
        Some(cluster) => {
            let vtep_mac = allocation.ipv4_subnet.map(weft_wire::vtep_mac);
            tokio::spawn(publish_until_done(cluster.clone(), uplink, vtep_mac));
            tokio::spawn(cluster.clone().feed_peers(datapath));
            tokio::spawn(cluster.report_usage(service.clone()));
            None
        }
    };

    ready.store(true, Ordering::Release);
    info!(socket = %config.socket.display(), "serving the CNI plugin");

    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let mut hup = signal(SignalKind::hangup()).map_err(|e| e.to_string())?;
    let serving = socket::serve(listener, service);
    tokio::pin!(serving);
    loop {
        tokio::select! {
            _ = &mut serving => return Ok(()),
            _ = term.recv() => { info!("SIGTERM: stopping"); return Ok(()) }
            _ = int.recv() => { info!("SIGINT: stopping"); return Ok(()) }
            _ = hup.recv() => {
                info!("SIGHUP: re-reading the peers");
                if let Some(reload) = &reload {
                    let _ = reload.send(());
                }
            }
        }
    }
}

/// The node's allocation: from the flags, or in Kubernetes mode from the apiserver
/// (saved locally for restarts while the apiserver is down).
async fn node_allocation(
    config: &flags::Config,
    uplink: &node::Uplink,
) -> Result<(NodeAllocation, Option<kube::Cluster>), String> {
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
    let cluster = kube::Cluster::new(client, &config.node_name, network);
    let saved = kube::allocation::load(&config.state_dir);
    let allocation = cluster.wait_allocation(uplink, saved).await;
    if let Err(e) = kube::allocation::save(&config.state_dir, &allocation) {
        warn!(error = %e, "cannot save the allocation locally");
    }
    info!(allocation = ?allocation, "allocation received");
    Ok((allocation, Some(cluster)))
}

/// Publishes the node's identity (with its VTEP MAC), retrying while the apiserver is
/// unreachable.
async fn publish_until_done(
    cluster: kube::Cluster,
    uplink: node::Uplink,
    vtep_mac: Option<[u8; 6]>,
) {
    loop {
        match cluster.publish_identity(&uplink, vtep_mac).await {
            Ok(()) => return,
            Err(e) => warn!(error = %e, "publishing the node's underlay identity (retrying)"),
        }
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    }
}

/// Starts the peer source: the `--peers` file, watched on its own thread. Without
/// `--peers` the node has no peers, which is said once, right away. Returns the sender
/// that forces a re-read.
fn start_peer_source(
    config: &flags::Config,
    datapath: datapath::Datapath,
) -> Result<Option<std::sync::mpsc::Sender<()>>, String> {
    let Some(path) = config.peers.clone() else {
        datapath.set_peers(Vec::new());
        return Ok(None);
    };
    let (reload, reloads) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("peers-file".into())
        .spawn(move || peers_file::watch(path, reloads, |peers| datapath.set_peers(peers)))
        .map_err(|e| format!("cannot start the peers-file watcher: {e}"))?;
    Ok(Some(reload))
}
