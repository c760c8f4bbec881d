//! Token buckets and bounded tables of them: how the relay limits the rate of frames and bytes per
//! sender, per receiver, and for strangers.
//!
//! A [`RateLimit`] is a refill rate and a burst. A [`Bucket`] holds up to `burst` tokens, earns
//! `per_second` tokens a second, and lets a frame through when it can pay for it; time is passed
//! in (no clock is read here), so the switchboard stays free of I/O and its tests deterministic.
//! A [`Budget`] pairs two buckets, one counting frames and one counting bytes.
//!
//! [`BudgetTable`] keys budgets by address. It is bounded: when it is full, entries whose
//! buckets have refilled (nobody has used them for a while, so forgetting them changes nothing)
//! are swept, at most once a second so that a flood of new keys cannot make every lookup scan the
//! table; a key that still finds no room is refused, which is the safe answer under attack.
//! [`Recent`] is the same kind of bounded table for "seen within the last N minutes" facts.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// A refill rate and a burst, in units (frames or bytes) of whatever is being limited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Units earned per second.
    pub per_second: u64,
    /// Most units that can be spent at once (the bucket's size).
    pub burst: u64,
}

impl RateLimit {
    /// `per_second` a second, with bursts of up to `burst`.
    pub const fn new(per_second: u64, burst: u64) -> RateLimit {
        RateLimit { per_second, burst }
    }
}

/// One token bucket. Starts full.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    pub(crate) fn full(limit: RateLimit, now: Instant) -> Bucket {
        Bucket { tokens: limit.burst as f64, last: now }
    }

    fn refill(&mut self, limit: RateLimit, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * limit.per_second as f64).min(limit.burst as f64);
        self.last = now;
    }

    /// Whether `cost` units fit now. Nothing is taken.
    fn can_pay(&mut self, limit: RateLimit, cost: u64, now: Instant) -> bool {
        self.refill(limit, now);
        // A single unit larger than the burst would never pass: let it through on a full bucket.
        self.tokens >= (cost as f64).min(limit.burst as f64)
    }

    fn pay(&mut self, cost: u64) {
        self.tokens -= cost as f64;
    }

    /// Takes `cost` units if they fit; false (and nothing taken) if not.
    pub(crate) fn take(&mut self, limit: RateLimit, cost: u64, now: Instant) -> bool {
        let ok = self.can_pay(limit, cost, now);
        if ok {
            self.pay(cost);
        }
        ok
    }

    /// Whether the bucket is full again at `now`: forgetting it would change nothing.
    fn is_idle(&self, limit: RateLimit, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens + elapsed * limit.per_second as f64 >= limit.burst as f64
    }
}

/// Limits in frames and in bytes: a frame passes when both allow it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BudgetLimit {
    /// The limit in frames (each frame costs one).
    pub frames: RateLimit,
    /// The limit in bytes (each frame costs its length).
    pub bytes: RateLimit,
}

/// Two buckets: frames and bytes. A frame passes when both can pay for it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Budget {
    frames: Bucket,
    bytes: Bucket,
}

impl Budget {
    pub(crate) fn full(limit: BudgetLimit, now: Instant) -> Budget {
        Budget { frames: Bucket::full(limit.frames, now), bytes: Bucket::full(limit.bytes, now) }
    }

    /// Takes one frame of `bytes` if both buckets can pay; false (and nothing taken) if not.
    pub(crate) fn take(&mut self, limit: BudgetLimit, bytes: usize, now: Instant) -> bool {
        let ok = self.frames.can_pay(limit.frames, 1, now) && self.bytes.can_pay(limit.bytes, bytes as u64, now);
        if ok {
            self.frames.pay(1);
            self.bytes.pay(bytes as u64);
        }
        ok
    }

    fn is_idle(&self, limit: BudgetLimit, now: Instant) -> bool {
        self.frames.is_idle(limit.frames, now) && self.bytes.is_idle(limit.bytes, now)
    }
}

/// How often a full table may be swept.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Budgets by key, at most `capacity` of them. See the module documentation.
#[derive(Debug)]
pub(crate) struct BudgetTable<K> {
    limit: BudgetLimit,
    capacity: usize,
    budgets: HashMap<K, Budget>,
    last_sweep: Option<Instant>,
}

impl<K: Hash + Eq + Copy> BudgetTable<K> {
    pub(crate) fn new(limit: BudgetLimit, capacity: usize) -> BudgetTable<K> {
        BudgetTable { limit, capacity: capacity.max(1), budgets: HashMap::new(), last_sweep: None }
    }

    /// Takes one frame of `bytes` from `key`'s budget. False if the budget cannot pay, or if `key`
    /// is new and the table has no room for it.
    pub(crate) fn take(&mut self, key: K, bytes: usize, now: Instant) -> bool {
        if !self.budgets.contains_key(&key) && !self.make_room(now) {
            return false;
        }
        let limit = self.limit;
        self.budgets.entry(key).or_insert_with(|| Budget::full(limit, now)).take(limit, bytes, now)
    }

    fn make_room(&mut self, now: Instant) -> bool {
        if self.budgets.len() < self.capacity {
            return true;
        }
        if self.last_sweep.is_some_and(|t| now.saturating_duration_since(t) < SWEEP_EVERY) {
            return false;
        }
        self.last_sweep = Some(now);
        let limit = self.limit;
        self.budgets.retain(|_, b| !b.is_idle(limit, now));
        self.budgets.len() < self.capacity
    }

    /// Keys tracked now.
    pub(crate) fn len(&self) -> usize {
        self.budgets.len()
    }
}

/// Keys seen within the last `ttl`, at most `capacity` of them. See the module documentation.
#[derive(Debug)]
pub(crate) struct Recent<K> {
    ttl: Duration,
    capacity: usize,
    seen: HashMap<K, Instant>,
    last_sweep: Option<Instant>,
}

impl<K: Hash + Eq + Copy> Recent<K> {
    pub(crate) fn new(ttl: Duration, capacity: usize) -> Recent<K> {
        Recent { ttl, capacity: capacity.max(1), seen: HashMap::new(), last_sweep: None }
    }

    /// Records `key` as seen at `now`. False if it is new and there was no room for it.
    pub(crate) fn note(&mut self, key: K, now: Instant) -> bool {
        if let Some(at) = self.seen.get_mut(&key) {
            *at = now;
            return true;
        }
        if self.seen.len() >= self.capacity {
            if self.last_sweep.is_some_and(|t| now.saturating_duration_since(t) < SWEEP_EVERY) {
                return false;
            }
            self.last_sweep = Some(now);
            let ttl = self.ttl;
            self.seen.retain(|_, at| now.saturating_duration_since(*at) < ttl);
            if self.seen.len() >= self.capacity {
                return false;
            }
        }
        self.seen.insert(key, now);
        true
    }

    /// Whether `key` was seen within the last `ttl` before `now`.
    pub(crate) fn contains(&self, key: &K, now: Instant) -> bool {
        self.seen.get(key).is_some_and(|at| now.saturating_duration_since(*at) < self.ttl)
    }

    /// Keys held now (expired ones included until swept).
    pub(crate) fn len(&self) -> usize {
        self.seen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE_PER_SECOND_BURST_2: RateLimit = RateLimit::new(1, 2);

    #[test]
    fn a_bucket_lets_a_burst_through_then_refills_at_its_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::full(ONE_PER_SECOND_BURST_2, t0);
        assert!(b.take(ONE_PER_SECOND_BURST_2, 1, t0));
        assert!(b.take(ONE_PER_SECOND_BURST_2, 1, t0));
        assert!(!b.take(ONE_PER_SECOND_BURST_2, 1, t0), "burst spent");
        assert!(!b.take(ONE_PER_SECOND_BURST_2, 1, t0 + Duration::from_millis(500)));
        assert!(b.take(ONE_PER_SECOND_BURST_2, 1, t0 + Duration::from_millis(1_000)));
        // Refill stops at the burst.
        let later = t0 + Duration::from_secs(60);
        assert!(b.take(ONE_PER_SECOND_BURST_2, 2, later));
        assert!(!b.take(ONE_PER_SECOND_BURST_2, 1, later));
    }

    #[test]
    fn a_frame_larger_than_the_burst_passes_on_a_full_bucket_only() {
        let limit = RateLimit::new(100, 100);
        let t0 = Instant::now();
        let mut b = Bucket::full(limit, t0);
        assert!(b.take(limit, 500, t0));
        assert!(!b.take(limit, 500, t0 + Duration::from_secs(1)), "in debt for 4 more seconds");
        assert!(b.take(limit, 500, t0 + Duration::from_secs(5)));
    }

    #[test]
    fn a_budget_refuses_when_either_frames_or_bytes_run_out_and_takes_nothing_then() {
        let limit = BudgetLimit { frames: RateLimit::new(10, 3), bytes: RateLimit::new(1_000, 1_000) };
        let t0 = Instant::now();
        let mut b = Budget::full(limit, t0);
        assert!(b.take(limit, 600, t0));
        assert!(!b.take(limit, 600, t0), "bytes");
        assert!(b.take(limit, 400, t0), "the refused frame took no frame token");
        assert!(b.take(limit, 0, t0));
        assert!(!b.take(limit, 0, t0), "frames");
    }

    #[test]
    fn a_full_budget_table_forgets_idle_keys_and_refuses_new_ones_while_all_are_busy() {
        let limit = BudgetLimit { frames: RateLimit::new(1, 1), bytes: RateLimit::new(1_000, 1_000) };
        let t0 = Instant::now();
        let mut t: BudgetTable<u32> = BudgetTable::new(limit, 2);
        assert!(t.take(1, 10, t0));
        assert!(t.take(2, 10, t0));
        assert!(!t.take(3, 10, t0), "no room: 1 and 2 are still refilling");
        assert!(!t.take(3, 10, t0 + Duration::from_millis(500)), "one sweep a second at most");
        assert!(t.take(3, 10, t0 + Duration::from_secs(2)), "1 and 2 refilled and were forgotten");
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn recent_keys_expire_after_their_ttl_and_the_table_stays_bounded() {
        let t0 = Instant::now();
        let mut r: Recent<u32> = Recent::new(Duration::from_secs(10), 2);
        assert!(r.note(1, t0));
        assert!(r.note(2, t0));
        assert!(r.contains(&1, t0 + Duration::from_secs(9)));
        assert!(!r.contains(&1, t0 + Duration::from_secs(10)));
        assert!(!r.note(3, t0 + Duration::from_secs(5)), "full of live keys");
        assert!(r.note(1, t0 + Duration::from_secs(5)), "refreshing a key needs no room");
        assert!(r.note(3, t0 + Duration::from_secs(12)), "2 expired and was swept");
        assert!(r.contains(&1, t0 + Duration::from_secs(12)));
        assert_eq!(r.len(), 2);
    }
}
