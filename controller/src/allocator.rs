//! Candidate selection: which prefix or subnet a node gets next. Pure: no I/O, no clock.
//!
//! The [`Pool`] knows what is not free: every claim the controller has seen or made
//! (released ones too, until their cooldown ends and the claim leaves its block) and the
//! candidates other workers are trying to claim right now. It hands out the lowest free
//! candidate and marks it at once, under the caller's lock, so parallel reconciles never
//! race for the same one. The pool is only a fast guess: the claim block's write in the
//! apiserver decides (blocks.rs), and a candidate someone else holds is marked and
//! skipped.
//!
//! IPv6 follows BOSH's sequential prefix delegation (seed 004): the node's zone's ranges
//! in spec order, then the ranges without a zone, each from its lowest prefix up, skipping
//! any prefix that touches a reserved interval or the gateway. IPv4 takes the lowest free
//! subnet of the overlay network.

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use std::collections::{BTreeSet, HashSet};
use std::time::{Duration, SystemTime};
use weft_api::{Plan, PlannedRange, RangeUsage};

/// An inclusive interval of addresses as integers (IPv4 widened to u128).
type Interval = (u128, u128);

fn v6_interval(net: Ipv6Net) -> Interval {
    (u128::from(net.network()), u128::from(net.broadcast()))
}

fn v4_interval(net: Ipv4Net) -> Interval {
    (
        u128::from(u32::from(net.network())),
        u128::from(u32::from(net.broadcast())),
    )
}

/// `net` and every prefix containing it, as intervals: a claim for any of them covers
/// all of `net`.
fn enclosing(net: IpNet) -> Vec<Interval> {
    (0..=net.prefix_len())
        .filter_map(|len| IpNet::new(net.network(), len).ok())
        .map(|n| match n.trunc() {
            IpNet::V6(n) => v6_interval(n),
            IpNet::V4(n) => v4_interval(n),
        })
        .collect()
}

/// Why a node gets nothing. The text names the zone and the ranges, for the Event and the
/// condition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Exhausted {
    /// No IPv6 range serves the node's zone (and none is zone-less).
    #[error("no IPv6 range serves {}", zone_text(.zone))]
    NoRangeForZone {
        /// The node's zone.
        zone: Option<String>,
    },
    /// Every prefix of the ranges serving the zone is taken or reserved.
    #[error("no free IPv6 prefix left for {} in {}", zone_text(.zone), .ranges.join(", "))]
    Ipv6 {
        /// The node's zone.
        zone: Option<String>,
        /// The ranges tried, with their prefix lengths (`2001:db8:1000::/64 (/80)`).
        ranges: Vec<String>,
    },
    /// Every subnet of the IPv4 network is taken.
    #[error("no free /{length} subnet left in the IPv4 network {network}")]
    Ipv4 {
        /// The IPv4 overlay network.
        network: Ipv4Net,
        /// The subnet length.
        length: u8,
    },
}

fn zone_text(zone: &Option<String>) -> String {
    match zone {
        Some(z) => format!("zone {z}"),
        None => "nodes without a zone".into(),
    }
}

/// The IPv6 ranges a node of `zone` takes prefixes from, in allocation order: the zone's
/// own ranges, then the zone-less ones, each group in spec order.
pub fn ranges_for_zone<'a>(plan: &'a Plan, zone: Option<&str>) -> Vec<&'a PlannedRange> {
    let own = plan
        .ipv6_ranges
        .iter()
        .filter(|r| zone.is_some() && r.zone.as_deref() == zone);
    let shared = plan.ipv6_ranges.iter().filter(|r| r.zone.is_none());
    own.chain(shared).collect()
}

/// What is not free. See the module documentation.
#[derive(Debug, Default)]
pub struct Pool {
    v6: BTreeSet<Interval>,
    v4: BTreeSet<Interval>,
    in_flight: HashSet<IpNet>,
}

impl Pool {
    fn set(&mut self, net: IpNet) -> (&mut BTreeSet<Interval>, Interval) {
        match net {
            IpNet::V6(n) => (&mut self.v6, v6_interval(n)),
            IpNet::V4(n) => (&mut self.v4, v4_interval(n)),
        }
    }

    /// A claim for `net` exists (seen in the apiserver, or just created).
    pub fn mark(&mut self, net: IpNet) {
        let (set, i) = self.set(net);
        set.insert(i);
    }

    /// The claim for `net` is gone. A candidate in flight stays marked.
    pub fn unmark(&mut self, net: IpNet) {
        if !self.in_flight.contains(&net) {
            let (set, i) = self.set(net);
            set.remove(&i);
        }
    }

    /// Whether `net` is marked.
    #[cfg(test)]
    pub fn is_marked(&self, net: IpNet) -> bool {
        match net {
            IpNet::V6(n) => self.v6.contains(&v6_interval(n)),
            IpNet::V4(n) => self.v4.contains(&v4_interval(n)),
        }
    }

    /// Replaces every mark with `claims` (a fresh list from the apiserver); candidates in
    /// flight stay marked.
    pub fn replace(&mut self, claims: impl IntoIterator<Item = IpNet>) {
        self.v6.clear();
        self.v4.clear();
        for net in claims.into_iter().chain(self.in_flight.clone()) {
            self.mark(net);
        }
    }

    /// Takes the lowest free IPv6 prefix for a node of `zone`, marking it in flight.
    /// Returns the prefix and the range it was cut from.
    pub fn reserve_ipv6<'p>(
        &mut self,
        plan: &'p Plan,
        zone: Option<&str>,
    ) -> Result<(Ipv6Net, &'p PlannedRange), Exhausted> {
        let ranges = ranges_for_zone(plan, zone);
        if ranges.is_empty() {
            return Err(Exhausted::NoRangeForZone {
                zone: zone.map(str::to_owned),
            });
        }
        for range in &ranges {
            let space = Space::of_ipv6(range);
            if let Some(start) = space.first_free(&self.v6) {
                let net = Ipv6Net::new(start.into(), range.prefix_length)
                    .expect("prefix_length is at most 128");
                self.hold(IpNet::V6(net));
                return Ok((net, range));
            }
        }
        Err(Exhausted::Ipv6 {
            zone: zone.map(str::to_owned),
            ranges: ranges
                .iter()
                .map(|r| format!("{} (/{})", r.range, r.prefix_length))
                .collect(),
        })
    }

    /// Takes the lowest free IPv4 subnet, marking it in flight.
    pub fn reserve_ipv4(&mut self, plan: &Plan) -> Result<Ipv4Net, Exhausted> {
        let space = Space::of_ipv4(plan.ipv4_network, plan.ipv4_subnet_length);
        let start = space.first_free(&self.v4).ok_or(Exhausted::Ipv4 {
            network: plan.ipv4_network,
            length: plan.ipv4_subnet_length,
        })?;
        let addr = u32::try_from(start).expect("an IPv4 space holds IPv4 addresses");
        let net = Ipv4Net::new(addr.into(), plan.ipv4_subnet_length).expect("length <= 32");
        self.hold(IpNet::V4(net));
        Ok(net)
    }

    /// Reserves exactly `net` (a range the node's WeftNode already names) unless a
    /// marked range overlaps it.
    pub fn reserve_exact(&mut self, net: IpNet) -> bool {
        let enclosing = enclosing(net);
        let (set, (start, end)) = self.set(net);
        let overlapped = set.range((start, 0)..=(end, u128::MAX)).next().is_some()
            || enclosing.iter().any(|s| set.contains(s));
        if overlapped {
            return false;
        }
        self.hold(net);
        true
    }

    fn hold(&mut self, net: IpNet) {
        self.in_flight.insert(net);
        self.mark(net);
    }

    /// Ends the flight of a reserved candidate: `held` when its claim exists (created by
    /// this worker, or found held by anyone), so it stays marked; otherwise the create
    /// failed and the candidate is free again.
    pub fn settle(&mut self, net: IpNet, held: bool) {
        self.in_flight.remove(&net);
        if !held {
            self.unmark(net);
        }
    }

    /// Allocations and free prefixes of one IPv6 range.
    pub fn ipv6_usage(&self, range: &PlannedRange) -> RangeUsage {
        let (allocated, free) = Space::of_ipv6(range).usage(&self.v6);
        RangeUsage {
            range: range.range.to_string(),
            allocated,
            free,
        }
    }

    /// Allocations and free subnets of the IPv4 network.
    pub fn ipv4_usage(&self, plan: &Plan) -> RangeUsage {
        let (allocated, free) =
            Space::of_ipv4(plan.ipv4_network, plan.ipv4_subnet_length).usage(&self.v4);
        RangeUsage {
            range: plan.ipv4_network.to_string(),
            allocated,
            free,
        }
    }
}

/// A range cut into aligned blocks of one size, some addresses reserved.
struct Space {
    first: u128,
    last: u128,
    /// Block size minus one (blocks are at most 2^64 addresses: /64 is the shortest).
    mask: u128,
    /// The range's own prefix: a claim for it or a supernet blocks all of it.
    supernets: Vec<Interval>,
    /// Reserved intervals, sorted by start.
    reserved: Vec<Interval>,
}

impl Space {
    fn of_ipv6(range: &PlannedRange) -> Space {
        let mut reserved: Vec<Interval> = range
            .reserved
            .iter()
            .map(|(a, b)| (u128::from(*a), u128::from(*b)))
            .collect();
        reserved.sort_unstable();
        let net = range.range;
        Space {
            first: u128::from(net.network()),
            last: u128::from(net.broadcast()),
            mask: (1u128 << (128 - u32::from(range.prefix_length))) - 1,
            supernets: enclosing(IpNet::V6(net)),
            reserved,
        }
    }

    fn of_ipv4(net: Ipv4Net, length: u8) -> Space {
        let (first, last) = v4_interval(net);
        Space {
            first,
            last,
            mask: (1u128 << (32 - u32::from(length))) - 1,
            supernets: enclosing(IpNet::V4(net)),
            reserved: Vec::new(),
        }
    }

    fn swallowed(&self, taken: &BTreeSet<Interval>) -> bool {
        self.supernets.iter().any(|s| taken.contains(s))
    }

    /// The lowest block touching neither a reserved nor a taken interval. Walks both
    /// sorted sets once from the bottom: the cost is the number of taken or reserved
    /// blocks below the answer, never the size of the range.
    fn first_free(&self, taken: &BTreeSet<Interval>) -> Option<u128> {
        if self.swallowed(taken) {
            return None;
        }
        let mut taken = taken.range((self.first, 0)..).peekable();
        let mut reserved = self.reserved.iter().peekable();
        let mut cursor = self.first;
        loop {
            let end = cursor.checked_add(self.mask)?;
            if end > self.last {
                return None;
            }
            // Drop intervals wholly below the cursor, then see whether the next one
            // (the lowest start) reaches into this block.
            while taken.next_if(|(_, e)| *e < cursor).is_some() {}
            while reserved.next_if(|(_, e)| *e < cursor).is_some() {}
            let mut blocked_to = None;
            for (s, e) in [taken.peek().copied(), reserved.peek().copied()]
                .into_iter()
                .flatten()
            {
                if *s <= end {
                    blocked_to = blocked_to.max(Some(*e));
                }
            }
            match blocked_to {
                None => return Some(cursor),
                // Blocks are aligned: the next candidate starts at the first boundary
                // past the blocking interval.
                Some(e) => cursor = e.checked_add(1)?.checked_add(self.mask)? & !self.mask,
            }
        }
    }

    /// (taken blocks, free blocks): taken counts claims inside the range, free the blocks
    /// touching neither a claim nor a reserved interval.
    fn usage(&self, taken: &BTreeSet<Interval>) -> (u64, u64) {
        let inside: Vec<Interval> = taken
            .range((self.first, 0)..=(self.last, u128::MAX))
            .copied()
            .collect();
        let allocated = u64::try_from(inside.len()).unwrap_or(u64::MAX);
        if self.swallowed(taken) {
            return (allocated, 0);
        }
        let mut all: Vec<Interval> = inside.into_iter().chain(self.reserved.clone()).collect();
        all.sort_unstable();
        let block = |a: u128| (a - self.first) / (self.mask + 1);
        let total = block(self.last) + 1;
        let mut blocked = 0u128;
        let mut counted_to: Option<u128> = None;
        for (s, e) in all {
            let (from, to) = (block(s), block(e.min(self.last)));
            let from = counted_to.map_or(from, |c| from.max(c + 1));
            if from <= to {
                blocked += to - from + 1;
                counted_to = Some(to);
            }
        }
        let free = total.saturating_sub(blocked);
        (allocated, u64::try_from(free).unwrap_or(u64::MAX))
    }
}

/// How long a claim released at `released_at` still rests before it may be deleted (and
/// its range given to another node); zero once the cooldown is over. A release time in
/// the future (another replica's clock ahead of ours) counts from now.
pub fn cooldown_left(released_at: SystemTime, cooldown: Duration, now: SystemTime) -> Duration {
    let rested = now.duration_since(released_at).unwrap_or(Duration::ZERO);
    cooldown.saturating_sub(rested)
}

#[cfg(test)]
#[path = "tests/allocator.rs"]
mod tests;
