//! weft's node IPAM: hands each pod attachment one IPv6 address from the node's delegated
//! prefix and one IPv4 address from its overlay subnet, crash-safe and O(log n).
//!
//! Reserved offsets: IPv6 offset 0 is the subnet-router anycast address (RFC 4291
//! section 2.6.1); IPv4 offset 0 is the node's own overlay address (the VXLAN gateway
//! peers route to) and the last offset is the subnet's broadcast address.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod pool;
mod state_dir;
mod store;

pub use pool::{Pool, PoolError};
pub use state_dir::{
    check as check_state_dir, prepare as prepare_state_dir, StateDirError, StateLock, LOCK_FILE,
};
pub use store::{Loaded, Quarantined, Store, StoreError};

use ipnet::{Ipv4Net, Ipv6Net};
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use weft_wire::{
    Allocation, Attachment, ErrorKind, Family, PodRef, PEER_IPV4_LENGTHS, PEER_IPV6_LENGTHS,
};

/// Longest cooldown accepted: a day. Longer rests would only hold addresses hostage,
/// and every instant computed from it stays far from overflowing.
pub const MAX_COOLDOWN: Duration = Duration::from_secs(86_400);

/// How the IPAM is set up.
#[derive(Debug, Clone)]
pub struct IpamConfig {
    /// The node's IPv6 prefix, when IPv6 is served.
    pub ipv6_prefix: Option<Ipv6Net>,
    /// The node's IPv4 subnet, when IPv4 is served.
    pub ipv4_subnet: Option<Ipv4Net>,
    /// How long a released address rests before reuse.
    pub cooldown: Duration,
    /// Where records live.
    pub state_dir: PathBuf,
}

/// An IPAM failure; [`IpamError::kind`] gives the wire kind and metric label.
#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    /// No address left in a family.
    #[error("{family} address space {range} is exhausted: all {capacity} addresses are in use")]
    Exhausted {
        /// Family.
        family: Family,
        /// The prefix or subnet.
        range: String,
        /// Usable addresses.
        capacity: u128,
    },
    /// No address free now, some cooling down.
    #[error("{family} address space {range} has no free address: {cooling} released addresses are cooling down, the first is free in {retry_after:?}")]
    CoolingDown {
        /// Family.
        family: Family,
        /// The prefix or subnet.
        range: String,
        /// Addresses cooling.
        cooling: usize,
        /// Wait.
        retry_after: Duration,
    },
    /// ADD for an attachment that has addresses already.
    #[error("{attachment} already has addresses ({addresses}); a second ADD for the same container and interface is refused")]
    AlreadyAllocated {
        /// The attachment.
        attachment: Attachment,
        /// Its addresses.
        addresses: String,
    },
    /// ADD asked for a family the node does not serve.
    #[error("{family} is not served on this node, which serves {served}")]
    FamilyNotServed {
        /// The family asked for.
        family: Family,
        /// What the node serves, for the message (`ipv6 and ipv4`, `ipv6 only`).
        served: String,
    },
    /// ADD asked for an empty list of families.
    #[error("the request keeps no address family")]
    NoFamily,
    /// Disk trouble.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The state directory is unsafe, or another weftd holds it.
    #[error(transparent)]
    StateDir(#[from] StateDirError),
    /// A setting the IPAM cannot work with (a saved allocation's prefix length, a
    /// cooldown that would overflow): refused at start, naming the field and value.
    #[error("{field}: {value} {problem}")]
    Config {
        /// Which setting.
        field: &'static str,
        /// Its value.
        value: String,
        /// What is wrong with it.
        problem: String,
    },
}

impl IpamError {
    /// The wire kind, also the metric label.
    pub fn kind(&self) -> ErrorKind {
        match self {
            IpamError::Exhausted { .. } => ErrorKind::Exhausted,
            IpamError::CoolingDown { .. } => ErrorKind::CoolingDown,
            IpamError::AlreadyAllocated { .. } => ErrorKind::AlreadyAllocated,
            IpamError::FamilyNotServed { .. } | IpamError::NoFamily => ErrorKind::BadRequest,
            IpamError::Store(_) | IpamError::StateDir(_) | IpamError::Config { .. } => {
                ErrorKind::Internal
            }
        }
    }

    /// The family concerned, if one.
    pub fn family(&self) -> Option<Family> {
        match self {
            IpamError::Exhausted { family, .. }
            | IpamError::CoolingDown { family, .. }
            | IpamError::FamilyNotServed { family, .. } => Some(*family),
            _ => None,
        }
    }
}

/// Usage of one family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FamilyUsage {
    /// Family.
    pub family: Family,
    /// Addresses in use.
    pub in_use: usize,
    /// Addresses cooling down.
    pub cooling: usize,
    /// Usable addresses.
    pub capacity: u128,
}

/// What start-up found, for the log.
#[derive(Debug, Default)]
pub struct RestoreReport {
    /// Allocations restored.
    pub restored: usize,
    /// Addresses restored into cooldown.
    pub cooling: usize,
    /// Records that did not parse, kept in `corrupt/` with their addresses reserved.
    pub quarantined: Vec<String>,
    /// Addresses those records hold reserved.
    pub quarantined_addresses: usize,
    /// Entries weftd never writes, reported and left alone.
    pub skipped: Vec<String>,
    /// Allocations whose ADD named no network: GC leaves them (DEL releases them).
    pub without_network: usize,
    /// Records whose address lies outside today's prefix or subnet (kept, not pooled).
    pub outside_range: Vec<String>,
    /// Records dropped because the node rebooted.
    pub dropped_after_reboot: usize,
}

/// The node's IPAM.
#[derive(Debug)]
pub struct Ipam {
    ipv6: Option<(Ipv6Net, Pool)>,
    ipv4: Option<(Ipv4Net, Pool)>,
    allocations: HashMap<Attachment, Allocation>,
    /// Quarantined records by file name; a DEL of the attachment so named ends one.
    quarantined: HashMap<String, Quarantined>,
    store: Store,
    cooldown: Duration,
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn v6_offset(net: &Ipv6Net, addr: Ipv6Addr) -> Option<u128> {
    net.contains(&addr)
        .then(|| u128::from(addr) - u128::from(net.network()))
}

fn v4_offset(net: &Ipv4Net, addr: Ipv4Addr) -> Option<u128> {
    net.contains(&addr)
        .then(|| u128::from(u32::from(addr) - u32::from(net.network())))
}

impl Ipam {
    /// Opens the store and rebuilds the pools from it.
    pub fn open(config: IpamConfig) -> Result<(Ipam, RestoreReport), IpamError> {
        config.validate()?;
        state_dir::prepare(&config.state_dir)?;
        let (store, loaded) = Store::open(&config.state_dir)?;
        let ipv6 = config.ipv6_prefix.map(|net| {
            let last = (1u128 << (128 - net.prefix_len())) - 1;
            (net, Pool::new(1, last, config.cooldown))
        });
        let ipv4 = config.ipv4_subnet.map(|net| {
            let last = (1u128 << (32 - net.prefix_len())) - 2;
            (net, Pool::new(1, last, config.cooldown))
        });
        let mut ipam = Ipam {
            ipv6,
            ipv4,
            allocations: HashMap::new(),
            quarantined: HashMap::new(),
            store,
            cooldown: config.cooldown,
        };
        let report = ipam.restore(loaded, Instant::now(), unix_ms(SystemTime::now()));
        Ok((ipam, report))
    }

    fn restore(&mut self, loaded: Loaded, now: Instant, now_ms: u64) -> RestoreReport {
        let mut report = RestoreReport {
            skipped: loaded.skipped,
            dropped_after_reboot: loaded.dropped_after_reboot,
            ..Default::default()
        };
        let (mut used6, mut used4) = (Vec::new(), Vec::new());
        for q in loaded.quarantined {
            for addr in &q.addresses {
                match *addr {
                    IpAddr::V6(ip) => {
                        used6.extend(self.ipv6.as_ref().and_then(|(n, _)| v6_offset(n, ip)))
                    }
                    IpAddr::V4(ip) => {
                        used4.extend(self.ipv4.as_ref().and_then(|(n, _)| v4_offset(n, ip)))
                    }
                }
            }
            report.quarantined_addresses += q.addresses.len();
            report.quarantined.push(q.record.clone());
            self.quarantined.insert(q.record.clone(), q);
        }
        for a in loaded.allocations {
            report.without_network += usize::from(a.network.is_none());
            let off6 = a
                .ipv6
                .and_then(|ip| self.ipv6.as_ref().and_then(|(net, _)| v6_offset(net, ip)));
            let off4 = a
                .ipv4
                .and_then(|ip| self.ipv4.as_ref().and_then(|(net, _)| v4_offset(net, ip)));
            if (a.ipv6.is_some() && off6.is_none()) || (a.ipv4.is_some() && off4.is_none()) {
                report.outside_range.push(a.attachment.to_string());
            }
            used6.extend(off6);
            used4.extend(off4);
            self.allocations.insert(a.attachment.clone(), a);
        }
        let (mut cool6, mut cool4) = (Vec::new(), Vec::new());
        for (addr, released_ms) in loaded.cooling {
            // A release stamped in the future (a clock set back, a forged file) rests
            // no longer than one cooldown.
            let cooldown_ms = self.cooldown.as_millis() as u64;
            let rest = Duration::from_millis(
                released_ms
                    .saturating_add(cooldown_ms)
                    .saturating_sub(now_ms)
                    .min(cooldown_ms),
            );
            if rest.is_zero() {
                self.store.forget_cooldown(addr);
                continue;
            }
            let until = now + rest;
            match addr {
                IpAddr::V6(ip) => cool6.extend(
                    self.ipv6
                        .as_ref()
                        .and_then(|(n, _)| v6_offset(n, ip))
                        .map(|o| (until, o)),
                ),
                IpAddr::V4(ip) => cool4.extend(
                    self.ipv4
                        .as_ref()
                        .and_then(|(n, _)| v4_offset(n, ip))
                        .map(|o| (until, o)),
                ),
            }
        }
        report.restored = self.allocations.len();
        report.cooling = cool6.len() + cool4.len();
        if let Some((_, pool)) = &mut self.ipv6 {
            pool.restore(used6, cool6);
        }
        if let Some((_, pool)) = &mut self.ipv4 {
            pool.restore(used4, cool4);
        }
        report
    }

    /// Allocates one address per served family for a new attachment of `network` (the
    /// conflist's name, which GC matches), and records it before returning.
    pub fn allocate(
        &mut self,
        attachment: &Attachment,
        pod: PodRef,
        network: Option<String>,
    ) -> Result<Allocation, IpamError> {
        self.allocate_families(attachment, pod, network, None)
    }

    /// Like [`Ipam::allocate`], but only in `families` when given (a pod that turns a
    /// family off, docs/networkpolicy-design.md section 5). Each must be served: a pod
    /// asking for a family this node lacks is refused rather than started without it.
    pub fn allocate_families(
        &mut self,
        attachment: &Attachment,
        pod: PodRef,
        network: Option<String>,
        families: Option<&[Family]>,
    ) -> Result<Allocation, IpamError> {
        let (now, wall) = (Instant::now(), SystemTime::now());
        self.allocate_at(attachment, pod, network, families, now, wall)
    }

    /// Which families to allocate: `families` if each is served, else every served one.
    fn wanted(&self, families: Option<&[Family]>) -> Result<(bool, bool), IpamError> {
        let Some(families) = families else {
            return Ok((self.ipv6.is_some(), self.ipv4.is_some()));
        };
        if families.is_empty() {
            return Err(IpamError::NoFamily);
        }
        let served = self.usage().iter().map(|u| u.family).collect::<Vec<_>>();
        if let Some(&family) = families.iter().find(|f| !served.contains(f)) {
            let served = match served.as_slice() {
                [only] => format!("{only} only"),
                all => all
                    .iter()
                    .map(|f| f.as_str())
                    .collect::<Vec<_>>()
                    .join(" and "),
            };
            return Err(IpamError::FamilyNotServed { family, served });
        }
        Ok((
            families.contains(&Family::Ipv6),
            families.contains(&Family::Ipv4),
        ))
    }

    fn allocate_at(
        &mut self,
        attachment: &Attachment,
        pod: PodRef,
        network: Option<String>,
        families: Option<&[Family]>,
        now: Instant,
        wall: SystemTime,
    ) -> Result<Allocation, IpamError> {
        if let Some(existing) = self.allocations.get(attachment) {
            return Err(IpamError::AlreadyAllocated {
                attachment: attachment.clone(),
                addresses: addresses_of(existing)
                    .iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        let (want6, want4) = self.wanted(families)?;
        let ipv6 = match self.ipv6.as_mut().filter(|_| want6) {
            Some((net, pool)) => Some(take(pool, now, Family::Ipv6, net.to_string())?),
            None => None,
        };
        let ipv4 = match self.ipv4.as_mut().filter(|_| want4) {
            Some((net, pool)) => match take(pool, now, Family::Ipv4, net.to_string()) {
                Ok(offset) => Some(offset),
                Err(e) => {
                    if let (Some(o), Some((_, pool))) = (ipv6, &mut self.ipv6) {
                        pool.unallocate(o);
                    }
                    return Err(e);
                }
            },
            None => None,
        };
        let allocation = Allocation {
            attachment: attachment.clone(),
            ipv6: ipv6
                .zip(self.ipv6.as_ref())
                .map(|(o, (net, _))| Ipv6Addr::from(u128::from(net.network()) + o)),
            ipv4: ipv4
                .zip(self.ipv4.as_ref())
                .map(|(o, (net, _))| Ipv4Addr::from(u32::from(net.network()) + o as u32)),
            pod,
            network,
            allocated_at_ms: unix_ms(wall),
        };
        if let Err(e) = self.store.put(&allocation) {
            self.unallocate(&allocation);
            return Err(e.into());
        }
        self.allocations
            .insert(attachment.clone(), allocation.clone());
        Ok(allocation)
    }

    fn unallocate(&mut self, allocation: &Allocation) {
        if let (Some(ip), Some((net, pool))) = (allocation.ipv6, &mut self.ipv6) {
            v6_offset(net, ip).inspect(|o| pool.unallocate(*o));
        }
        if let (Some(ip), Some((net, pool))) = (allocation.ipv4, &mut self.ipv4) {
            v4_offset(net, ip).inspect(|o| pool.unallocate(*o));
        }
    }

    /// Releases an attachment's addresses into cooldown. `Ok(None)` when it had none.
    pub fn release(&mut self, attachment: &Attachment) -> Result<Option<Allocation>, IpamError> {
        self.release_at(attachment, Instant::now(), SystemTime::now())
    }

    fn release_at(
        &mut self,
        attachment: &Attachment,
        now: Instant,
        wall: SystemTime,
    ) -> Result<Option<Allocation>, IpamError> {
        let Some(allocation) = self.allocations.get(attachment).cloned() else {
            self.end_quarantine(attachment, now, wall)?;
            return Ok(None);
        };
        self.store
            .remove(attachment, &addresses_of(&allocation), unix_ms(wall))?;
        self.allocations.remove(attachment);
        for addr in addresses_of(&allocation) {
            self.release_address(addr, now);
        }
        Ok(Some(allocation))
    }

    /// A DEL of the attachment a quarantined record is named after: the pod is gone,
    /// so the addresses the record held cool down like any released ones.
    fn end_quarantine(
        &mut self,
        attachment: &Attachment,
        now: Instant,
        wall: SystemTime,
    ) -> Result<(), IpamError> {
        let key = attachment.key();
        let Some(quarantined) = self.quarantined.remove(&key) else {
            return Ok(());
        };
        if let Err(e) = self.store.release_quarantined(&quarantined, unix_ms(wall)) {
            self.quarantined.insert(key, quarantined);
            return Err(e.into());
        }
        for addr in quarantined.addresses {
            self.release_address(addr, now);
        }
        Ok(())
    }

    fn release_address(&mut self, addr: IpAddr, now: Instant) {
        match addr {
            IpAddr::V6(ip) => {
                if let Some((net, pool)) = &mut self.ipv6 {
                    v6_offset(net, ip).inspect(|o| pool.release(*o, now));
                }
            }
            IpAddr::V4(ip) => {
                if let Some((net, pool)) = &mut self.ipv4 {
                    v4_offset(net, ip).inspect(|o| pool.release(*o, now));
                }
            }
        }
    }

    /// Records that did not parse and hold their addresses reserved.
    pub fn quarantined(&self) -> usize {
        self.quarantined.len()
    }

    /// The attachment's allocation.
    pub fn lookup(&self, attachment: &Attachment) -> Option<&Allocation> {
        self.allocations.get(attachment)
    }

    /// Every allocation.
    pub fn allocations(&self) -> impl Iterator<Item = &Allocation> {
        self.allocations.values()
    }

    /// Releases every allocation of `network` not in `valid`, continuing past
    /// failures. Allocations of other networks, and those whose ADD named none when
    /// `network` is a name, are not touched.
    pub fn gc(
        &mut self,
        network: Option<&str>,
        valid: &HashSet<Attachment>,
    ) -> (Vec<Allocation>, Vec<IpamError>) {
        let stale: Vec<Attachment> = self
            .allocations
            .values()
            .filter(|a| a.network.as_deref() == network && !valid.contains(&a.attachment))
            .map(|a| a.attachment.clone())
            .collect();
        let (mut released, mut errors) = (Vec::new(), Vec::new());
        for attachment in stale {
            match self.release(&attachment) {
                Ok(Some(a)) => released.push(a),
                Ok(None) => {}
                Err(e) => errors.push(e),
            }
        }
        released.sort_by(|a, b| a.attachment.cmp(&b.attachment));
        (released, errors)
    }

    /// Usage per served family.
    pub fn usage(&self) -> Vec<FamilyUsage> {
        let v6 = self.ipv6.as_ref().map(|(_, p)| (Family::Ipv6, p));
        let v4 = self.ipv4.as_ref().map(|(_, p)| (Family::Ipv4, p));
        v6.into_iter()
            .chain(v4)
            .map(|(family, p)| FamilyUsage {
                family,
                in_use: p.in_use(),
                cooling: p.cooling(),
                capacity: p.capacity(),
            })
            .collect()
    }
}

impl IpamConfig {
    /// Refuses what would overflow the pools' arithmetic: a range outside the lengths
    /// weft serves (a saved allocation is read back from disk), a cooldown past
    /// [`MAX_COOLDOWN`].
    fn validate(&self) -> Result<(), IpamError> {
        let refuse = |field, value: String, problem: String| {
            Err(IpamError::Config {
                field,
                value,
                problem,
            })
        };
        let ranges = [
            (
                "ipv6Prefix",
                self.ipv6_prefix.map(|n| (n.to_string(), n.prefix_len())),
                PEER_IPV6_LENGTHS,
            ),
            (
                "ipv4Subnet",
                self.ipv4_subnet.map(|n| (n.to_string(), n.prefix_len())),
                PEER_IPV4_LENGTHS,
            ),
        ];
        for (field, range, lengths) in ranges {
            if let Some((text, length)) = range.filter(|(_, l)| !lengths.contains(l)) {
                let allowed = format!(
                    "must be /{} to /{}, not /{length}",
                    lengths.start(),
                    lengths.end()
                );
                return refuse(field, text, allowed);
            }
        }
        if self.cooldown > MAX_COOLDOWN {
            let allowed = format!("exceeds the longest cooldown, {} s", MAX_COOLDOWN.as_secs());
            return refuse(
                "cooldown",
                format!("{} s", self.cooldown.as_secs()),
                allowed,
            );
        }
        Ok(())
    }
}

fn take(pool: &mut Pool, now: Instant, family: Family, range: String) -> Result<u128, IpamError> {
    pool.allocate(now).map_err(|e| match e {
        PoolError::Exhausted { capacity } => IpamError::Exhausted {
            family,
            range,
            capacity,
        },
        PoolError::CoolingDown {
            cooling,
            retry_after,
        } => IpamError::CoolingDown {
            family,
            range,
            cooling,
            retry_after,
        },
    })
}

fn addresses_of(a: &Allocation) -> Vec<IpAddr> {
    a.ipv6
        .map(IpAddr::V6)
        .into_iter()
        .chain(a.ipv4.map(IpAddr::V4))
        .collect()
}

#[cfg(test)]
mod tests;
