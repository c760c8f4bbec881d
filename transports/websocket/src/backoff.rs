//! [`Backoff`]: how long a disconnected [`WsTransport`](crate::WsTransport) waits before each
//! attempt to reconnect.
//!
//! The wait before attempt `n` (counting from 0) is `min(initial · 2ⁿ, max)`, scaled by a random
//! factor in `[0.5, 1)`: the npm package's schedule. The first attempt waits too: when a relay
//! restarts, every member it had loses its connection at the same instant, and the jitter spreads
//! their returns instead of having them all knock at once. The spread stays bounded: whatever the
//! draws, a wait is at most about twice the time waited before it, and never more than `max`, so
//! members cut off together come back within about twice the outage, or `max`, of each other
//! (what the protocol core allows for before it accuses anyone after an outage). The randomness
//! only has to differ between members, not resist an adversary: a xorshift generator seeded from
//! the process's hash keys and the member's address.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::time::Duration;

/// When to retry a lost connection to the relay. See the module documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The wait before the first attempt, before jitter (default 250 ms, at least 1 ms).
    pub initial: Duration,
    /// The longest wait; the doubling stops here (default 5 s, at least `initial`).
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { initial: Duration::from_millis(250), max: Duration::from_secs(5) }
    }
}

impl Backoff {
    /// Why these settings are unusable, if they are.
    pub(crate) fn check(&self) -> Result<(), &'static str> {
        if self.initial < Duration::from_millis(1) {
            return Err("reconnect backoff must start at 1 ms or more");
        }
        if self.max < self.initial {
            return Err("reconnect backoff max must be at least its initial wait");
        }
        Ok(())
    }

    /// The wait before attempt `attempt` (0 for the first), before jitter.
    pub(crate) fn base(&self, attempt: u32) -> Duration {
        let doubled = 1u32.checked_shl(attempt).and_then(|factor| self.initial.checked_mul(factor));
        doubled.map_or(self.max, |d| d.min(self.max))
    }

    /// The wait before attempt `attempt`, jittered by `jitter`.
    pub(crate) fn delay(&self, attempt: u32, jitter: &mut Jitter) -> Duration {
        self.base(attempt).mul_f64(jitter.factor())
    }
}

/// A tiny xorshift64 generator of jitter factors in `[0.5, 1)`. Not for anything secret.
#[derive(Debug)]
pub(crate) struct Jitter(u64);

impl Jitter {
    /// A generator seeded from the process's random hash keys and `salt` (the member's address).
    pub(crate) fn new(salt: &str) -> Jitter {
        Jitter::from_seed(RandomState::new().hash_one(salt))
    }

    /// A generator with a fixed seed (tests).
    pub(crate) fn from_seed(seed: u64) -> Jitter {
        // xorshift's one fixed point is 0.
        Jitter(if seed == 0 { 0x9E37_79B9_7F4A_7C15 } else { seed })
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A factor in `[0.5, 1)`.
    pub(crate) fn factor(&mut self) -> f64 {
        // The top 53 bits, as a fraction in [0, 1).
        let unit = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        0.5 + unit / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_doubles_from_initial_up_to_max() {
        let b = Backoff::default();
        let ms: Vec<u128> = (0..7).map(|n| b.base(n).as_millis()).collect();
        assert_eq!(ms, [250, 500, 1_000, 2_000, 4_000, 5_000, 5_000]);
    }

    #[test]
    fn a_huge_attempt_number_stays_at_max_without_overflowing() {
        let b = Backoff { initial: Duration::from_secs(3_600), max: Duration::from_secs(7_200) };
        for n in [31, 32, 64, u32::MAX] {
            assert_eq!(b.base(n), b.max, "{n}");
        }
    }

    #[test]
    fn jitter_stays_between_half_the_base_wait_and_the_base_wait() {
        let b = Backoff::default();
        let mut j = Jitter::from_seed(42);
        let mut seen = (f64::MAX, f64::MIN);
        for n in 0..1_000 {
            let ratio = b.delay(n % 8, &mut j).as_secs_f64() / b.base(n % 8).as_secs_f64();
            assert!((0.5..1.0).contains(&ratio), "{ratio}");
            seen = (seen.0.min(ratio), seen.1.max(ratio));
        }
        assert!(seen.0 < 0.55 && seen.1 > 0.95, "the whole range is used: {seen:?}");
    }

    #[test]
    fn after_any_outage_the_next_wait_is_at_most_about_twice_the_time_already_waited_or_max() {
        // What bounds how far apart members cut off together come back (see the module docs).
        let b = Backoff::default();
        for seed in 1..200u64 {
            let mut j = Jitter::from_seed(seed);
            let mut waited = std::time::Duration::ZERO;
            for n in 0..12 {
                let next = b.delay(n, &mut j);
                let bound = (waited * 2 + b.initial).min(b.max);
                assert!(next <= bound, "seed {seed}, attempt {n}: {next:?} after {waited:?}");
                waited += next;
            }
        }
    }

    #[test]
    fn two_members_draw_different_waits() {
        let (mut a, mut b) = (Jitter::new("relay://h:1/a"), Jitter::new("relay://h:1/b"));
        let a: Vec<u64> = (0..4).map(|_| a.next()).collect();
        let b: Vec<u64> = (0..4).map(|_| b.next()).collect();
        assert_ne!(a, b);
    }

    #[test]
    fn a_zero_seed_does_not_get_stuck() {
        let mut j = Jitter::from_seed(0);
        assert_ne!(j.next(), 0);
    }

    #[test]
    fn unusable_settings_are_refused() {
        assert!(Backoff::default().check().is_ok());
        assert!(Backoff { initial: Duration::ZERO, ..Backoff::default() }.check().is_err());
        let inverted = Backoff { initial: Duration::from_secs(2), max: Duration::from_secs(1) };
        assert!(inverted.check().is_err());
    }
}
