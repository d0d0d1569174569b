//! One family's address pool: O(log n) allocation with cooldown, no scan of the range.
//!
//! Addresses are offsets from the network address. Never-used offsets are handed out
//! from a moving cursor (`fresh`); released ones cool down in FIFO order (the cooldown
//! is one constant, so the queue stays sorted by expiry) and then join `free`, an ordered
//! set from which the lowest is reused first. Allocation is a `BTreeSet` pop or a cursor
//! bump; nothing walks the range, so a /80's 2^48 addresses cost nothing.

use std::collections::{BTreeSet, HashSet, VecDeque};
use std::time::{Duration, Instant};

/// Why a pool could not allocate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolError {
    /// Every address is in use.
    Exhausted {
        /// Usable addresses in the pool.
        capacity: u128,
    },
    /// Every address is in use or cooling down; the first frees up after `retry_after`.
    CoolingDown {
        /// Addresses in cooldown.
        cooling: usize,
        /// When the first becomes free again.
        retry_after: Duration,
    },
}

/// One family's pool over the offsets `first..=last`.
#[derive(Debug)]
pub struct Pool {
    first: u128,
    last: u128,
    /// Lowest offset never handed out since start-up.
    fresh: u128,
    free: BTreeSet<u128>,
    cooling: VecDeque<(Instant, u128)>,
    in_use: HashSet<u128>,
    cooldown: Duration,
}

impl Pool {
    /// A pool over `first..=last` (inclusive) whose released offsets rest for `cooldown`.
    pub fn new(first: u128, last: u128, cooldown: Duration) -> Self {
        Pool {
            first,
            last,
            fresh: first,
            free: BTreeSet::new(),
            cooling: VecDeque::new(),
            in_use: HashSet::new(),
            cooldown,
        }
    }

    /// Usable offsets.
    pub fn capacity(&self) -> u128 {
        self.last - self.first + 1
    }

    /// Offsets in use.
    pub fn in_use(&self) -> usize {
        self.in_use.len()
    }

    /// Offsets cooling down.
    pub fn cooling(&self) -> usize {
        self.cooling.len()
    }

    /// Whether `offset` lies in the pool's range.
    pub fn contains(&self, offset: u128) -> bool {
        (self.first..=self.last).contains(&offset)
    }

    /// Whether `offset` is allocated.
    pub fn is_in_use(&self, offset: u128) -> bool {
        self.in_use.contains(&offset)
    }

    fn expire(&mut self, now: Instant) {
        while let Some(&(until, offset)) = self.cooling.front() {
            if until > now {
                break;
            }
            self.cooling.pop_front();
            self.free.insert(offset);
        }
    }

    /// Takes the lowest offset that is free and has cooled down.
    pub fn allocate(&mut self, now: Instant) -> Result<u128, PoolError> {
        self.expire(now);
        let offset = if let Some(offset) = self.free.pop_first() {
            offset
        } else if self.fresh <= self.last {
            self.fresh += 1;
            self.fresh - 1
        } else if let Some(&(until, _)) = self.cooling.front() {
            return Err(PoolError::CoolingDown {
                cooling: self.cooling.len(),
                retry_after: until - now,
            });
        } else {
            return Err(PoolError::Exhausted {
                capacity: self.capacity(),
            });
        };
        self.in_use.insert(offset);
        Ok(offset)
    }

    /// Returns an offset that was allocated and never used (a failed dual-stack
    /// allocation), skipping the cooldown.
    pub fn unallocate(&mut self, offset: u128) {
        if self.in_use.remove(&offset) {
            self.free.insert(offset);
        }
    }

    /// Releases an offset into cooldown. Releasing a free offset does nothing.
    pub fn release(&mut self, offset: u128, now: Instant) {
        if self.in_use.remove(&offset) {
            self.cooling.push_back((now + self.cooldown, offset));
        }
    }

    /// Restores state after a restart: `in_use` offsets are taken, `cooling` ones rest
    /// until their instant. Offsets below the highest restored one that are neither
    /// become free; the cursor moves past all of them. Bounded by the highest offset
    /// ever restored, which the lowest-first policy keeps near the peak pod count.
    pub fn restore(
        &mut self,
        in_use: impl IntoIterator<Item = u128>,
        cooling: impl IntoIterator<Item = (Instant, u128)>,
    ) {
        self.in_use = in_use.into_iter().filter(|o| self.contains(*o)).collect();
        let mut cooling: Vec<(Instant, u128)> = cooling
            .into_iter()
            .filter(|(_, o)| self.contains(*o) && !self.in_use.contains(o))
            .collect();
        cooling.sort();
        cooling.dedup_by_key(|(_, o)| *o);
        let cooling_set: HashSet<u128> = cooling.iter().map(|(_, o)| *o).collect();
        let highest = self.in_use.iter().chain(cooling_set.iter()).max().copied();
        self.fresh = highest.map_or(self.first, |h| h + 1);
        self.free = (self.first..self.fresh)
            .filter(|o| !self.in_use.contains(o) && !cooling_set.contains(o))
            .collect();
        self.cooling = cooling.into();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOL: Duration = Duration::from_secs(30);

    #[test]
    fn allocates_lowest_first_and_reports_exhaustion_without_wrapping() {
        let now = Instant::now();
        let mut pool = Pool::new(1, 3, COOL);
        assert_eq!(pool.allocate(now), Ok(1));
        assert_eq!(pool.allocate(now), Ok(2));
        assert_eq!(pool.allocate(now), Ok(3));
        assert_eq!(
            pool.allocate(now),
            Err(PoolError::Exhausted { capacity: 3 })
        );
        assert_eq!(pool.in_use(), 3);
    }

    #[test]
    fn released_addresses_cool_down_before_reuse() {
        let t0 = Instant::now();
        let mut pool = Pool::new(1, 2, COOL);
        let a = pool.allocate(t0).unwrap();
        pool.allocate(t0).unwrap();
        pool.release(a, t0);
        match pool.allocate(t0 + Duration::from_secs(10)) {
            Err(PoolError::CoolingDown {
                cooling: 1,
                retry_after,
            }) => assert_eq!(retry_after, Duration::from_secs(20)),
            other => panic!("{other:?}"),
        }
        assert_eq!(pool.allocate(t0 + COOL), Ok(a));
    }

    #[test]
    fn fresh_addresses_are_preferred_to_cooling_ones() {
        let t0 = Instant::now();
        let mut pool = Pool::new(1, 10, COOL);
        let a = pool.allocate(t0).unwrap();
        pool.release(a, t0);
        assert_eq!(pool.allocate(t0), Ok(2));
    }

    #[test]
    fn unallocate_skips_cooldown_and_double_release_is_harmless() {
        let t0 = Instant::now();
        let mut pool = Pool::new(1, 1, COOL);
        let a = pool.allocate(t0).unwrap();
        pool.unallocate(a);
        assert_eq!(pool.allocate(t0), Ok(a));
        pool.release(a, t0);
        pool.release(a, t0);
        assert_eq!(pool.cooling(), 1);
    }

    #[test]
    fn restore_rebuilds_free_set_below_the_highest_offset() {
        let t0 = Instant::now();
        let mut pool = Pool::new(1, 100, COOL);
        pool.restore([1, 5], [(t0 + COOL, 3)]);
        let mut got = vec![];
        for _ in 0..4 {
            got.push(pool.allocate(t0).unwrap());
        }
        assert_eq!(got, [2, 4, 6, 7]);
        assert!(pool.is_in_use(5));
        assert_eq!(pool.allocate(t0 + COOL), Ok(3));
    }

    #[test]
    fn huge_ranges_cost_nothing() {
        let t0 = Instant::now();
        let mut pool = Pool::new(1, (1u128 << 48) - 1, COOL);
        for expected in 1..=1000 {
            assert_eq!(pool.allocate(t0), Ok(expected));
        }
        assert_eq!(pool.capacity(), (1u128 << 48) - 1);
    }
}
