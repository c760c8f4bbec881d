//! Local health awareness (Lifeguard "LHA-Probe").
//!
//! A node cannot tell a dead peer from its own slowness by looking at one missed ack. Lifeguard keeps a
//! small score: it rises when this node misses acks it should have got, when indirect probers fail to
//! send the nacks they promised, and when it has to refute a suspicion about itself; it falls with
//! every successful probe. The probe interval and probe timeout are multiplied by `score + 1`, so an
//! overloaded node probes less often and waits longer before it accuses anyone.

/// The local health score, `0` (healthy) to `max_multiplier - 1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LocalHealth {
    score: u32,
    max_score: u32,
}

impl LocalHealth {
    pub fn new(max_multiplier: u32) -> Self {
        LocalHealth { score: 0, max_score: max_multiplier.saturating_sub(1) }
    }

    pub fn score(&self) -> u32 {
        self.score
    }

    /// Factor applied to the probe interval and timeout.
    pub fn multiplier(&self) -> u32 {
        self.score + 1
    }

    /// Moves the score by `delta`, clamped to its range. Returns the new score if it changed.
    pub fn apply(&mut self, delta: i32) -> Option<u32> {
        let new = (i64::from(self.score) + i64::from(delta)).clamp(0, i64::from(self.max_score)) as u32;
        if new == self.score {
            None
        } else {
            self.score = new;
            Some(new)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_score_stays_within_its_bounds() {
        let mut h = LocalHealth::new(8);
        assert_eq!(h.apply(-1), None);
        assert_eq!(h.apply(3), Some(3));
        assert_eq!(h.multiplier(), 4);
        assert_eq!(h.apply(100), Some(7));
        assert_eq!(h.apply(1), None);
        assert_eq!(h.apply(-2), Some(5));
    }

    #[test]
    fn a_multiplier_of_one_pins_the_score_at_zero() {
        let mut h = LocalHealth::new(1);
        assert_eq!(h.apply(5), None);
        assert_eq!(h.multiplier(), 1);
    }
}
