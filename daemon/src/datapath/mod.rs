//! The multi-node datapath: converges the node's kernel state to its peers, continuously
//! and idempotently, on a thread of its own (netlink here is synchronous).
//!
//! - IPv4: one VXLAN device (learning off); per peer a route to its subnet via its
//!   overlay gateway (onlink), a permanent neighbour entry gateway -> VTEP MAC and a
//!   permanent FDB entry VTEP MAC -> underlay address: the Silk/Flannel scheme.
//! - IPv6: `--ipv6-routing direct` routes each peer's prefix via its underlay address;
//!   `fabric` leaves routing to the network.
//! - IPv4 egress NAT for pods, in weft's own nftables table ([`crate::nftables`]); it
//!   names no peer, so peer changes never touch it.
//!
//! Peer lists arrive through [`Datapath::set_peers`] (from the peers file now, from the
//! Kubernetes API later). A change is applied as the difference between the previous
//! and the new desired state: O(change) netlink work. Every `--resync-seconds`, and at
//! start, a full pass diffs the kernel's actual entries instead, repairing drift. Entries
//! already right are never touched, so a restarted weftd disturbs no flow.

mod desired;
mod kernel;

use crate::allocation::NodeAllocation;
use crate::flags::Ipv6Routing;
use crate::metrics::Metrics;
use crate::nftables;
use crate::node::Uplink;
use desired::{diff, Desired, Key, LocalView, Value, VxlanView};
use ipnet::{IpNet, Ipv4Net};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};
use weft_netlink::{messages, sysctl, Errno, Netlink, VxlanSpec};
use weft_wire::{vtep_mac, Peer};

/// The VXLAN device's name.
pub const VXLAN_DEVICE: &str = "weft-vxlan";
/// How soon failed entries are retried.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// What the datapath needs to know of the node.
#[derive(Debug, Clone)]
pub struct Setup {
    pub node_name: String,
    pub allocation: NodeAllocation,
    pub uplink: Uplink,
    /// The VXLAN device's MTU: the pods' IPv4 MTU.
    pub vxlan_mtu: Option<u32>,
    pub resync: Duration,
}

enum Update {
    Peers(Vec<Peer>),
}

/// Handle to the datapath thread.
#[derive(Debug, Clone)]
pub struct Datapath {
    updates: Sender<Update>,
}

impl Datapath {
    /// Starts the datapath thread. Nothing about peers changes until the first peer list
    /// arrives: a weftd restarting without its source must not wipe the routes of the
    /// last good list.
    pub fn start(setup: Setup, metrics: Metrics) -> Result<Datapath, String> {
        let nl = Netlink::connect().map_err(|e| e.to_string())?;
        let (updates, receive) = mpsc::channel();
        let mut converger = Converger::new(nl, setup, metrics);
        converger.prepare();
        std::thread::Builder::new()
            .name("datapath".into())
            .spawn(move || converger.run(receive))
            .map_err(|e| format!("cannot start the datapath thread: {e}"))?;
        Ok(Datapath { updates })
    }

    /// Hands over a new, complete peer list.
    pub fn set_peers(&self, peers: Vec<Peer>) {
        let _ = self.updates.send(Update::Peers(peers));
    }
}

struct Converger {
    nl: Netlink,
    setup: Setup,
    local: LocalView,
    vxlan_spec: Option<VxlanSpec>,
    metrics: Metrics,
    peers: Option<Vec<Peer>>,
    desired: Desired,
    /// What weft believes the kernel holds (its own entries only).
    current: BTreeMap<Key, Value>,
    /// The NAT table failed to go in place: retry with the next pass.
    nat_pending: bool,
    /// Something failed: retry soon.
    dirty: bool,
}

impl Converger {
    fn new(nl: Netlink, setup: Setup, metrics: Metrics) -> Converger {
        let vxlan_spec = vxlan_spec(&setup);
        let direct_ipv6 = match (
            setup.allocation.mode.has_ipv6(),
            setup.allocation.ipv6_routing,
            setup.uplink.index,
        ) {
            (true, Ipv6Routing::Direct, Some(index)) => Some(index),
            (true, Ipv6Routing::Direct, None) => {
                warn!("--ipv6-routing direct needs an uplink (--underlay-interface): no IPv6 peer routes");
                None
            }
            _ => None,
        };
        let local = LocalView {
            node_name: setup.node_name.clone(),
            ipv6_prefix: setup.allocation.ipv6_prefix,
            ipv4_subnet: setup.allocation.ipv4_subnet,
            vxlan: None,
            direct_ipv6,
        };
        Converger {
            nl,
            setup,
            local,
            vxlan_spec,
            metrics,
            peers: None,
            desired: Desired::default(),
            current: BTreeMap::new(),
            nat_pending: false,
            dirty: false,
        }
    }

    /// Brings up the node's own part of the overlay (VXLAN device, NAT table), which
    /// needs no peers, before the socket serves pods.
    fn prepare(&mut self) {
        self.ensure_vxlan();
        self.sync_nat();
    }

    fn run(mut self, updates: Receiver<Update>) {
        let mut next_full = Instant::now() + self.setup.resync;
        loop {
            let wait = if self.dirty {
                RETRY_AFTER
            } else {
                next_full.saturating_duration_since(Instant::now())
            };
            match updates.recv_timeout(wait) {
                Ok(Update::Peers(mut peers)) => {
                    // Coalesce a burst: only the newest list matters.
                    while let Ok(Update::Peers(newer)) = updates.try_recv() {
                        peers = newer;
                    }
                    let first = self.peers.is_none();
                    self.peers = Some(peers);
                    if first {
                        self.converge_full();
                        next_full = Instant::now() + self.setup.resync;
                    } else {
                        self.converge_incremental();
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    if self.peers.is_none() {
                        next_full = Instant::now() + self.setup.resync;
                    } else if self.dirty && Instant::now() < next_full {
                        self.converge_incremental();
                    } else {
                        self.converge_full();
                        next_full = Instant::now() + self.setup.resync;
                    }
                }
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    /// Creates or checks the VXLAN device and its address; records its index.
    fn ensure_vxlan(&mut self) {
        let (Some(spec), Some(mtu), Some(subnet)) = (
            &self.vxlan_spec,
            self.setup.vxlan_mtu,
            self.setup.allocation.ipv4_subnet,
        ) else {
            return;
        };
        let result = self.nl.ensure_vxlan(spec, mtu).and_then(|(link, created)| {
            if created {
                info!(device = VXLAN_DEVICE, vni = spec.vni, port = spec.port, local = %spec.local, mtu, "VXLAN device created");
                // The overlay is IPv4 only: no link-local address, no router or
                // multicast listener solicitations into the tunnel.
                if sysctl::ipv6_available() {
                    let key = sysctl::iface_key("ipv6", VXLAN_DEVICE, "disable_ipv6");
                    let _ = sysctl::set(&key, "1");
                }
            }
            let gateway = IpNet::V4(Ipv4Net::new(subnet.network(), 32).unwrap_or(subnet));
            match self.nl.execute_one(messages::host_address(link.index, gateway)) {
                Err(e) if e.errno() != Some(Errno::Exists) => Err(e),
                _ => Ok(link.index),
            }
        });
        match result {
            Ok(index) => {
                self.local.vxlan = Some(VxlanView {
                    index,
                    family: self.setup.uplink.family,
                    source: subnet.network(),
                });
            }
            Err(e) => {
                warn!(error = %e, "VXLAN device: IPv4 pods cannot reach other nodes");
                self.metrics.convergence_errors.inc();
                self.local.vxlan = None;
                self.dirty = true;
            }
        }
    }

    fn rebuild_desired(&mut self, log_problems: bool) {
        let peers = self.peers.as_deref().unwrap_or_default();
        let (desired, problems) = Desired::build(&self.local, peers);
        if log_problems {
            for p in problems {
                warn!("not programmed: {p}");
            }
        }
        self.desired = desired;
    }

    /// Diffs the kernel's actual entries against the desired state.
    fn converge_full(&mut self) {
        let started = Instant::now();
        self.dirty = false;
        self.ensure_vxlan();
        self.rebuild_desired(true);
        match kernel::read_actual(&mut self.nl, self.local.vxlan.map(|v| v.index)) {
            Ok(actual) => {
                self.current = actual;
                self.apply();
            }
            Err(e) => {
                warn!(error = %e, "reading the datapath's kernel state");
                self.metrics.convergence_errors.inc();
                self.dirty = true;
            }
        }
        self.sync_nat();
        self.finish("full", started);
    }

    /// Diffs the previous desired state (what weft believes is in place) against the new.
    fn converge_incremental(&mut self) {
        let started = Instant::now();
        self.dirty = false;
        self.rebuild_desired(true);
        self.apply();
        if self.nat_pending {
            self.sync_nat();
        }
        self.finish("incremental", started);
    }

    fn apply(&mut self) {
        let plan = diff(&self.current, &self.desired);
        if plan.is_empty() {
            return;
        }
        let vxlan_index = self.local.vxlan.map(|v| v.index).unwrap_or(0);
        match kernel::apply(&mut self.nl, &plan, vxlan_index) {
            Ok(outcome) => {
                let changes = &self.metrics.datapath_changes;
                changes
                    .with_label_values(&["upsert"])
                    .inc_by(outcome.upserted.len() as u64);
                changes
                    .with_label_values(&["removal"])
                    .inc_by(outcome.removed.len() as u64);
                for key in outcome.removed {
                    self.current.remove(&key);
                }
                for (key, value) in outcome.upserted {
                    self.current.insert(key, value);
                }
                for (key, owner, error) in &outcome.failed {
                    warn!(entry = ?key, peer = ?owner, error = %error, "datapath entry not in place");
                    self.metrics.convergence_errors.inc();
                    if owner.is_some() {
                        // Unknown now: treat it as absent so the retry upserts it.
                        self.current.remove(key);
                    }
                    self.dirty = true;
                }
                debug!(
                    upserts = plan.upserts.len(),
                    removals = plan.removals.len(),
                    "datapath converged"
                );
            }
            Err(e) => {
                warn!(error = %e, "applying datapath changes");
                self.metrics.convergence_errors.inc();
                // Unknown state: the next full pass reads the truth.
                self.current.clear();
                self.dirty = true;
            }
        }
    }

    /// Puts weft's NAT table in place: at start and on every full pass (repairing
    /// drift). It names no peer, so peer changes never need it.
    fn sync_nat(&mut self) {
        let (Some(subnet), Some(_)) = (self.setup.allocation.ipv4_subnet, self.local.vxlan) else {
            return;
        };
        let egress = nftables::Egress {
            subnet,
            uplink: self.setup.uplink.name.clone(),
            tunnel_port: self.setup.allocation.vxlan_port,
        };
        if let Err(e) = nftables::replace_table(&egress) {
            warn!(error = %e, "IPv4 egress NAT");
            self.metrics.convergence_errors.inc();
            self.dirty = true;
            self.nat_pending = true;
        } else {
            self.nat_pending = false;
        }
    }

    fn finish(&mut self, kind: &str, started: Instant) {
        let mut behind: BTreeSet<&str> = BTreeSet::new();
        for (key, (value, owner)) in &self.desired.entries {
            if self.current.get(key) != Some(value) {
                behind.insert(owner);
            }
        }
        let programmed = self
            .desired
            .peers
            .iter()
            .filter(|p| !behind.contains(p.as_str()))
            .count();
        let (v4, v6) = desired::route_counts(self.current.keys());
        self.metrics
            .set_datapath(self.desired.known, programmed, v4, v6);
        self.metrics
            .convergence_duration
            .with_label_values(&[kind])
            .observe(started.elapsed().as_secs_f64());
        debug!(kind, known = self.desired.known, programmed, took = ?started.elapsed(), "convergence pass");
    }
}

/// The VXLAN device this node needs, if it serves IPv4 and has an underlay address.
fn vxlan_spec(setup: &Setup) -> Option<VxlanSpec> {
    if !setup.allocation.mode.has_ipv4() {
        return None;
    }
    let subnet = setup.allocation.ipv4_subnet?;
    let (Some(local), Some(index)) = (setup.uplink.vtep_address(), setup.uplink.index) else {
        warn!(uplink = ?setup.uplink.name, "the uplink has no global address: IPv4 pods reach only this node (set --underlay-interface)");
        return None;
    };
    Some(VxlanSpec {
        name: VXLAN_DEVICE.into(),
        vni: setup.allocation.vxlan_vni,
        port: setup.allocation.vxlan_port,
        local,
        underlay_index: index,
        mac: vtep_mac(subnet),
    })
}
