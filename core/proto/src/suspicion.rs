//! Suspicion timeouts, Lifeguard style ("LHA-Suspicion").
//!
//! A suspicion starts at the maximum timeout and shrinks logarithmically towards the minimum as
//! independent members confirm it, reaching the minimum once `k` confirmations arrived:
//!
//! `timeout(c) = max(min, max - (max - min) · ln(c + 1) / ln(k + 1))`
//!
//! with `min = α · max(1, log10 n) · probe_interval` and `max = β · min`. A false suspicion raised by
//! one slow member therefore waits long enough to be refuted, while a real failure that many members
//! observe is declared almost as fast as plain SWIM would. With confirmations switched off every
//! suspicion uses `min`, which is plain SWIM with memberlist's timeout.

use alloc::vec::Vec;
use core::time::Duration;

use crate::config::Config;
use crate::identity::NodeId;
use crate::time::{scale, Instant};

/// An open suspicion about one member at one incarnation.
#[derive(Clone, Debug)]
pub(crate) struct Suspicion {
    pub incarnation: u32,
    started: Instant,
    expected: u32,
    /// Distinct members that suspected it, the first one included.
    suspecters: Vec<NodeId>,
    /// The earliest the suspicion can run out, however many confirm it.
    pub min: Duration,
    /// Our own check of the suspect (see `Node::check_suspect`).
    pub check: Check,
    max: Duration,
}

/// Where our own check of a suspect stands: a ping sent once, halfway to the earliest deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Check {
    /// Not sent yet.
    Planned,
    /// Sent with this sequence number; no ack yet.
    Sent(u32),
    /// Acked, or given up: nothing more to do.
    Done,
}

/// `(min, max)` suspicion timeouts for a cluster of `n` members (the local node included).
/// Always inlined: it has one caller in the protocol (the other, `Config::suspicion_timeouts`,
/// is for applications), and a call of its own costs the wasm build about 120 bytes.
#[inline(always)]
pub(crate) fn suspicion_bounds(config: &Config, n: usize) -> (Duration, Duration) {
    let node_scale = libm::log10(n.max(1) as f64).max(1.0);
    let min = scale(config.probe_interval, f64::from(config.suspicion_mult) * node_scale);
    let max = if config.lifeguard.suspicion_confirmations { min * config.suspicion_max_timeout_mult } else { min };
    (min, max)
}

/// Independent confirmations expected before the timeout reaches its minimum.
pub(crate) fn expected_confirmations(config: &Config, n: usize) -> u32 {
    if !config.lifeguard.suspicion_confirmations {
        return 0;
    }
    let k = config.suspicion_confirmations;
    // Only members other than ourselves and the suspect can confirm.
    if (n as u64) < u64::from(k) + 2 {
        0
    } else {
        k
    }
}

impl Suspicion {
    /// Opens a suspicion raised by `first`.
    pub fn new(config: &Config, n: usize, incarnation: u32, first: NodeId, now: Instant) -> Self {
        let (min, max) = suspicion_bounds(config, n);
        let mut suspecters = Vec::with_capacity(2);
        suspecters.push(first);
        let expected = expected_confirmations(config, n);
        Suspicion { incarnation, started: now, expected, suspecters, min, max, check: Check::Planned }
    }

    /// Independent confirmations received so far (the first suspecter excluded).
    pub fn confirmations(&self) -> u32 {
        (self.suspecters.len() - 1) as u32
    }

    /// Records that `from` also suspects the member. Returns true if `from` is new and the timeout
    /// shrank as a result. Confirmations beyond the expected count change nothing.
    pub fn confirm(&mut self, from: &NodeId) -> bool {
        if self.confirmations() >= self.expected || self.suspecters.contains(from) {
            return false;
        }
        self.suspecters.push(from.clone());
        true
    }

    /// The current timeout given the confirmations so far.
    pub fn timeout(&self) -> Duration {
        if self.expected == 0 || self.max <= self.min {
            return self.min;
        }
        let c = f64::from(self.confirmations());
        let frac = libm::log(c + 1.0) / libm::log(f64::from(self.expected) + 1.0);
        let span = (self.max - self.min).as_millis() as f64;
        let t = self.max.as_millis() as f64 - span * frac;
        Duration::from_millis(t.max(self.min.as_millis() as f64) as u64)
    }

    /// When the member is declared dead unless it refutes first.
    pub fn deadline(&self) -> Instant {
        self.started + self.timeout()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> NodeId {
        NodeId::new(s).unwrap()
    }

    /// `α = 4`, `β = 6`, `k = 2`: memberlist's LAN values, with a one second period.
    fn memberlist_lan() -> Config {
        Config { suspicion_mult: 4, suspicion_max_timeout_mult: 6, suspicion_confirmations: 2, ..Config::lan() }
    }

    #[test]
    fn the_minimum_timeout_grows_with_log10_of_the_cluster_size() {
        let c = memberlist_lan();
        assert_eq!(suspicion_bounds(&c, 5).0, Duration::from_secs(4));
        assert_eq!(suspicion_bounds(&c, 100).0, Duration::from_secs(8));
        assert_eq!(suspicion_bounds(&c, 100).1, Duration::from_secs(48));
    }

    #[test]
    fn a_suspicion_starts_at_the_maximum_and_reaches_the_minimum_after_k_confirmations() {
        let c = memberlist_lan();
        let mut s = Suspicion::new(&c, 100, 0, id("a"), Instant::ZERO);
        assert_eq!(s.timeout(), Duration::from_secs(48));
        assert!(s.confirm(&id("b")));
        let after_one = s.timeout();
        assert!(after_one < Duration::from_secs(48) && after_one > Duration::from_secs(8));
        assert!(!s.confirm(&id("b")), "the same member confirms only once");
        assert!(s.confirm(&id("c")));
        assert_eq!(s.timeout(), Duration::from_secs(8));
        assert!(!s.confirm(&id("d")), "confirmations beyond k change nothing");
    }

    #[test]
    fn the_confirmations_a_suspicion_needs_are_their_own_setting_not_derived_from_alpha() {
        // The LAN preset: a short minimum (α = 2: 4 s at 100 members) that needs three members to
        // agree before it applies.
        let c = Config::lan();
        let mut s = Suspicion::new(&c, 100, 0, id("a"), Instant::ZERO);
        assert_eq!(s.timeout(), Duration::from_secs(24));
        for (i, other) in ["b", "c"].iter().enumerate() {
            assert!(s.confirm(&id(other)));
            assert!(s.timeout() > Duration::from_secs(4), "{} confirmations", i + 1);
        }
        assert!(s.confirm(&id("d")));
        assert_eq!(s.timeout(), Duration::from_secs(4));
    }

    #[test]
    fn without_lifeguard_every_suspicion_uses_the_minimum() {
        let c = Config { lifeguard: crate::config::Lifeguard::OFF, ..memberlist_lan() };
        let s = Suspicion::new(&c, 100, 0, id("a"), Instant::ZERO);
        assert_eq!(s.timeout(), Duration::from_secs(8));
    }

    #[test]
    fn tiny_clusters_expect_no_confirmations() {
        let c = memberlist_lan();
        assert_eq!(expected_confirmations(&c, 3), 0);
        assert_eq!(expected_confirmations(&c, 4), 2);
        assert_eq!(expected_confirmations(&Config::lan(), 4), 0);
        assert_eq!(expected_confirmations(&Config::lan(), 5), 3);
    }
}
