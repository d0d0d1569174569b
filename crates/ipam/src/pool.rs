//! One family's address pool: O(log n) allocation with cooldown, no scan of the range.
//!
//! Addresses are offsets from the network address. Never-used offsets are handed out
//! from a moving cursor (`fresh`); released ones cool down in FIFO order (the cooldown
//! is one constant, so the queue stays sorted by expiry) and then join `free`, an ordered
//! set from which the lowest is reused first. Allocation is a `BTreeSet` pop or a cursor
//! bump; nothing walks the range, so a /80's 2^48 addresses cost nothing. A restart
//! does not walk it either: offsets restored at or above the cursor go into `ahead`,
//! which the cursor steps over, so restore costs O(k log k) in the k restored offsets
//! wherever in the range they lie.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
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
    /// Lowest offset never handed out since start-up, unless it is in `ahead`.
    fresh: u128,
    /// Offsets at or above `fresh` that are accounted for elsewhere (in use, cooling or
    /// free): the cursor steps over them.
    ahead: BTreeSet<u128>,
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
            ahead: BTreeSet::new(),
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

    /// Moves the cursor past offsets accounted for elsewhere; amortised over the
    /// restored offsets, each stepped over once.
    fn next_fresh(&mut self) -> Option<u128> {
        while self.fresh <= self.last && self.ahead.remove(&self.fresh) {
            self.fresh += 1;
        }
        (self.fresh <= self.last).then_some(self.fresh)
    }

    /// Takes the lowest offset that is free and has cooled down.
    pub fn allocate(&mut self, now: Instant) -> Result<u128, PoolError> {
        self.expire(now);
        let fresh = self.next_fresh();
        let lowest_free = self.free.first().copied();
        let offset = if let Some(offset) = lowest_free.filter(|f| fresh.is_none_or(|c| *f < c)) {
            self.free.remove(&offset);
            offset
        } else if let Some(offset) = fresh {
            self.fresh = offset + 1;
            offset
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
    /// until their instant. Every other offset is fresh again: the cursor restarts at
    /// the first and steps over the restored ones, so the lowest-first order holds and
    /// nothing is enumerated but what was restored.
    pub fn restore(
        &mut self,
        in_use: impl IntoIterator<Item = u128>,
        cooling: impl IntoIterator<Item = (Instant, u128)>,
    ) {
        self.in_use = in_use.into_iter().filter(|o| self.contains(*o)).collect();
        // One entry per offset, the latest release: the store may hold an address
        // twice (two spellings of one address name one offset), and a duplicate
        // queued twice would be handed out at each expiry (found by the store fuzzer).
        let mut latest: HashMap<u128, Instant> = HashMap::new();
        for (until, offset) in cooling {
            if self.contains(offset) && !self.in_use.contains(&offset) {
                let entry = latest.entry(offset).or_insert(until);
                *entry = (*entry).max(until);
            }
        }
        let mut cooling: Vec<(Instant, u128)> = latest
            .into_iter()
            .map(|(offset, until)| (until, offset))
            .collect();
        cooling.sort();
        self.fresh = self.first;
        self.free.clear();
        self.ahead = self
            .in_use
            .iter()
            .copied()
            .chain(cooling.iter().map(|(_, o)| *o))
            .collect();
        self.cooling = cooling.into();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOL: Duration = Duration::from_secs(30);

    #[test]
    fn an_offset_restored_twice_cools_once_until_its_latest_release() {
        let t0 = Instant::now();
        let mut pool = Pool::new(1, 3, COOL);
        // Offset 1 released twice (two spellings in the store), offset 2 in between.
        pool.restore(
            [],
            [
                (t0 + Duration::from_secs(1), 1),
                (t0 + Duration::from_secs(2), 2),
                (t0 + Duration::from_secs(3), 1),
            ],
        );
        // One ADD between each expiry: a duplicate queued twice would hand 1 out at
        // 1.5 s and again at 3.5 s.
        let handed: Vec<_> = [1500, 2500, 3500, 4500]
            .into_iter()
            .filter_map(|ms| pool.allocate(t0 + Duration::from_millis(ms)).ok())
            .collect();
        assert_eq!(
            handed,
            vec![3, 2, 1],
            "each offset once, 1 only after its last release"
        );
    }

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
    fn restore_near_the_top_of_a_huge_range_walks_nothing() {
        let t0 = Instant::now();
        let last = (1u128 << 48) - 1;
        let mut pool = Pool::new(1, last, COOL);
        let started = std::time::Instant::now();
        pool.restore([last - 1, 2], [(t0 + COOL, last)]);
        assert!(
            started.elapsed() < Duration::from_millis(100),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(pool.allocate(t0), Ok(1));
        assert_eq!(pool.allocate(t0), Ok(3));
        assert!(pool.is_in_use(last - 1));
        assert_eq!(pool.in_use(), 4);
        assert_eq!(pool.cooling(), 1);
    }

    #[test]
    fn a_released_offset_below_the_cursor_is_reused_before_a_fresh_one() {
        let t0 = Instant::now();
        let mut pool = Pool::new(1, 100, COOL);
        pool.restore([5], []);
        assert_eq!(pool.allocate(t0), Ok(1));
        assert_eq!(pool.allocate(t0), Ok(2));
        pool.release(5, t0);
        // 5 cooled down and is free; 3 is lower and never used.
        assert_eq!(pool.allocate(t0 + COOL), Ok(3));
        assert_eq!(pool.allocate(t0 + COOL), Ok(4));
        assert_eq!(pool.allocate(t0 + COOL), Ok(5));
        assert_eq!(pool.allocate(t0 + COOL), Ok(6));
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
