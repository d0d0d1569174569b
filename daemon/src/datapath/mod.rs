//! The multi-node datapath: converges the node's kernel state to its peers, continuously
//! and idempotently, on a thread of its own (netlink here is synchronous).
//!
//! - IPv4: one VXLAN device (learning off); per peer a route to its subnet via its
//!   overlay gateway (onlink), a permanent neighbour entry gateway -> VTEP MAC and a
//!   permanent FDB entry VTEP MAC -> underlay address: the Silk/Flannel scheme.
//! - IPv6: `--ipv6-routing direct` routes each peer's prefix via its underlay address;
//!   `fabric` leaves routing to the network.
//!
//! - The pods' IPv4 gateway on the node's `lo` ([`node::ensure_ipv4_gateway`]), when
//!   the node serves IPv4: in place before pods are served, repaired by every full pass.
//! - Unreachable routes for the node's own prefix and subnet ([`blackhole`]), likewise.
//!
//! What each peer needs comes from the node's routing modes ([`crate::routing`]); this
//! module owns the device, the diff and the kernel work. Egress NAT is not here: it
//! names no peer and lives with the rest of nftables in [`crate::firewall`].
//!
//! Peer lists arrive through [`Datapath::set_peers`] from the peer source
//! ([`crate::peers`]). A change is applied as the difference between the previous
//! and the new desired state: O(change) netlink work. Every `--resync-seconds`, and at
//! start, a full pass diffs the kernel's actual entries instead, repairing drift. Entries
//! already right are never touched, so a restarted weftd disturbs no flow.

mod blackhole;
mod desired;
mod kernel;

use crate::allocation::NodeAllocation;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::node::{self, Uplink};
use crate::routing::{Routing, Vxlan};
use crate::task::{self, Task};
use desired::{diff, Desired, Key, LocalView, Value};
use ipnet::{IpNet, Ipv4Net};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
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
    /// Where the VXLAN device's sysctls are (`--proc-sys`).
    pub sysctls: sysctl::Root,
    /// Told every accepted peer's underlay addresses (both families) when they change:
    /// the firewall's tunnel guard lets VXLAN in from those only.
    pub peer_underlays: Option<Sender<BTreeSet<IpAddr>>>,
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
    /// Puts the pods' IPv4 gateway in place and brings up the VXLAN device, then starts
    /// the datapath thread: the handle feeds it
    /// peer lists, the task ends only if the thread does. Nothing about peers changes
    /// until the first peer list arrives: a weftd restarting without its source must not
    /// wipe the routes of the last good list.
    pub fn start(setup: Setup, metrics: Metrics) -> Result<(Datapath, Task)> {
        let nl = Netlink::connect().map_err(Error::netlink("datapath netlink socket"))?;
        let (updates, receive) = mpsc::channel();
        let mut converger = Converger::new(nl, setup, metrics);
        converger.ensure_gateway();
        converger.ensure_unreachable_ranges();
        converger.ensure_vxlan();
        let task = task::thread("datapath", move || converger.run(receive))?;
        Ok((Datapath { updates }, task))
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
    /// The IPv6 routing mode, if weftd routes IPv6 at all.
    ipv6: Option<Routing>,
    /// The VXLAN device, while it is up.
    vxlan: Option<Vxlan>,
    vxlan_spec: Option<VxlanSpec>,
    metrics: Metrics,
    peers: Option<Vec<Peer>>,
    desired: Desired,
    /// What weft believes the kernel holds (its own entries only).
    current: BTreeMap<Key, Value>,
    /// Something failed: retry soon.
    dirty: bool,
    /// Peer destinations held by routes weft did not install (left alone).
    foreign: kernel::ForeignRoutes,
    /// The peer underlay addresses last told to [`Setup::peer_underlays`].
    underlays: Option<BTreeSet<IpAddr>>,
}

impl Converger {
    fn new(nl: Netlink, setup: Setup, metrics: Metrics) -> Converger {
        let vxlan_spec = vxlan_spec(&setup);
        let ipv6 = Routing::ipv6(
            setup.allocation.mode,
            setup.allocation.ipv6_routing,
            setup.uplink.index,
        );
        let local = LocalView {
            node_name: setup.node_name.clone(),
            ipv6_prefix: setup.allocation.ipv6_prefix,
            ipv4_subnet: setup.allocation.ipv4_subnet,
            routing: Vec::new(),
        };
        let mut converger = Converger {
            nl,
            setup,
            local,
            ipv6,
            vxlan: None,
            vxlan_spec,
            metrics,
            peers: None,
            desired: Desired::default(),
            current: BTreeMap::new(),
            dirty: false,
            foreign: kernel::ForeignRoutes::default(),
            underlays: None,
        };
        converger.set_routing();
        converger
    }

    /// The routing modes in force: the IPv6 mode asked for, and the VXLAN overlay while
    /// its device is up.
    fn set_routing(&mut self) {
        self.local.routing = self
            .ipv6
            .into_iter()
            .chain(self.vxlan.map(Routing::Vxlan))
            .collect();
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
                let sysctls = &self.setup.sysctls;
                if sysctls.ipv6_available() {
                    let key = sysctl::iface_key("ipv6", VXLAN_DEVICE, "disable_ipv6");
                    if let Err(e) = sysctls.set(&key, "1") {
                        warn!(error = %e, "the VXLAN device keeps IPv6 (harmless: nothing routes IPv6 into it)");
                    }
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
                self.vxlan = Some(Vxlan {
                    index,
                    family: self.setup.uplink.family,
                    source: subnet.network(),
                });
            }
            Err(e) => {
                let e = Error::Netlink {
                    context: format!("VXLAN device {VXLAN_DEVICE}"),
                    source: e,
                };
                warn!(error = %e, "IPv4 pods cannot reach other nodes");
                self.metrics.convergence_error(&e);
                self.vxlan = None;
                self.dirty = true;
            }
        }
        self.set_routing();
    }

    /// Holds the pods' IPv4 gateway on `lo` when the node serves IPv4.
    fn ensure_gateway(&mut self) {
        if !self.setup.allocation.mode.has_ipv4() {
            return;
        }
        match node::ensure_ipv4_gateway(&mut self.nl) {
            Ok(true) => info!(address = %weft_wire::GATEWAY_V4, "the pods' IPv4 gateway is on lo"),
            Ok(false) => {}
            Err(e) => {
                // Retried by the next full pass; pods' traffic does not need it.
                warn!(error = %e, "the pods' IPv4 gateway does not answer them");
                self.metrics.convergence_error(&e);
            }
        }
    }

    /// Holds the unreachable routes of the node's own ranges ([`blackhole`]).
    fn ensure_unreachable_ranges(&mut self) {
        let ranges = blackhole::node_ranges(&self.setup.allocation);
        match blackhole::ensure(&mut self.nl, &ranges) {
            Ok(changes) => {
                for range in changes.added {
                    info!(%range, "the node's range ends here: unreachable route added");
                }
                for range in changes.removed {
                    info!(%range, "unreachable route of a range the node no longer has removed");
                }
            }
            Err(e) => {
                // Retried by the next full pass; pods' own addresses are reached without it.
                warn!(error = %e, "packets to unused addresses of the node's ranges may leave the node");
                self.metrics.convergence_error(&e);
            }
        }
    }

    fn rebuild_desired(&mut self, log_problems: bool) {
        let peers = self.peers.as_deref().unwrap_or_default();
        let (desired, problems) = Desired::build(&self.local, peers);
        if log_problems {
            for problem in problems {
                warn!("not programmed: {problem}");
            }
        }
        self.desired = desired;
        self.tell_underlays();
    }

    /// Tells [`Setup::peer_underlays`] the accepted peers' underlay addresses, when they
    /// changed.
    fn tell_underlays(&mut self) {
        let (Some(peers), Some(sink)) = (&self.peers, &self.setup.peer_underlays) else {
            return;
        };
        let underlays = self.desired.underlays(peers);
        if self.underlays.as_ref() != Some(&underlays) {
            let _ = sink.send(underlays.clone());
            self.underlays = Some(underlays);
        }
    }

    /// Diffs the kernel's actual entries against the desired state.
    fn converge_full(&mut self) {
        let started = Instant::now();
        self.dirty = false;
        self.ensure_gateway();
        self.ensure_unreachable_ranges();
        self.ensure_vxlan();
        self.rebuild_desired(true);
        let vxlan_index = self.vxlan.map(|v| v.index);
        match kernel::read_actual(&mut self.nl, vxlan_index, &mut self.foreign) {
            Ok(actual) => {
                self.current = actual;
                self.apply();
            }
            Err(e) => {
                let e = Error::netlink("reading the datapath's kernel state")(e);
                warn!(error = %e, "full convergence pass");
                self.metrics.convergence_error(&e);
                self.dirty = true;
            }
        }
        self.finish("full", started);
    }

    /// Diffs the previous desired state (what weft believes is in place) against the new.
    fn converge_incremental(&mut self) {
        let started = Instant::now();
        self.dirty = false;
        self.rebuild_desired(true);
        self.apply();
        self.finish("incremental", started);
    }

    fn apply(&mut self) {
        let plan = diff(&self.current, &self.desired);
        if plan.is_empty() {
            // Every route weft wants is in place: none is held by another.
            self.metrics
                .routes_foreign
                .set(self.foreign.report(&[]) as i64);
            return;
        }
        let vxlan_index = self.vxlan.map(|v| v.index).unwrap_or(0);
        let (current, foreign) = (&self.current, &mut self.foreign);
        match kernel::apply(&mut self.nl, &plan, current, foreign, vxlan_index) {
            Ok(outcome) => {
                let left = self.foreign.report(&outcome.left_to_others);
                self.metrics.routes_foreign.set(left as i64);
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
                    self.metrics.convergence_error(error);
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
                let e = Error::netlink("applying datapath changes")(e);
                warn!(error = %e, "convergence pass");
                self.metrics.convergence_error(&e);
                // Unknown state: the next full pass reads the truth.
                self.current.clear();
                self.dirty = true;
            }
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
