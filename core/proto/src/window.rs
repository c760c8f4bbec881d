//! A sliding window over sequence numbers: "have I seen this one?" for the newest [`WINDOW`] of a
//! stream, tolerant of reordering. The replay guard keeps one per sender and nonce space.
//!
//! A sender numbers every packet it seals, whoever it is for, so a receiver sees every sender's
//! numbers with gaps, and a packet that arrives late (a slow receiver catching up, a reordering
//! path) lags the newest by however many packets its sender sealed meanwhile: about 100 a second
//! for a busy member. The window reaches 1,024 back, ten seconds of that, in 136 bytes.

/// How far below the highest sequence number the window reaches.
pub(crate) const WINDOW: u64 = 1_024;
const WORDS: usize = (WINDOW / 64) as usize;

/// What [`SeqWindow::classify`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Seen {
    New,
    Before,
    /// Older than the window reaches: whether it was seen is no longer known.
    TooOld,
}

/// The highest sequence number seen and a bitmap of the ones just below it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SeqWindow {
    highest: u64,
    /// Bit `i` (word `i / 64`, bit `i % 64`) set: `highest - i` was seen.
    seen: [u64; WORDS],
}

impl SeqWindow {
    /// A window that has seen exactly `first`.
    pub fn starting_at(first: u64) -> Self {
        let mut seen = [0; WORDS];
        seen[0] = 1;
        SeqWindow { highest: first, seen }
    }

    /// The highest sequence number seen.
    pub fn highest(&self) -> u64 {
        self.highest
    }

    /// Records `seq` and says whether it is new, seen before, or too old to tell.
    pub fn classify(&mut self, seq: u64) -> Seen {
        if seq.saturating_add(WINDOW) <= self.highest {
            Seen::TooOld
        } else if self.accept(seq) {
            Seen::New
        } else {
            Seen::Before
        }
    }

    /// Records `seq`; true if it was not seen before. Anything older than the window counts as seen.
    pub fn accept(&mut self, seq: u64) -> bool {
        if seq > self.highest {
            self.shift(seq - self.highest);
            self.highest = seq;
            self.seen[0] |= 1;
            return true;
        }
        let age = self.highest - seq;
        if age >= WINDOW {
            return false;
        }
        let (word, bit) = ((age / 64) as usize, age % 64);
        let fresh = self.seen[word] & (1 << bit) == 0;
        self.seen[word] |= 1 << bit;
        fresh
    }

    /// Ages every recorded number by `by`: bit `i` moves to bit `i + by`.
    fn shift(&mut self, by: u64) {
        if by >= WINDOW {
            self.seen = [0; WORDS];
            return;
        }
        let (words, bits) = ((by / 64) as usize, (by % 64) as u32);
        for i in (0..WORDS).rev() {
            let from = i.checked_sub(words);
            let high = from.map_or(0, |j| self.seen[j]);
            let low = from.and_then(|j| j.checked_sub(1)).map_or(0, |j| self.seen[j]);
            self.seen[i] = if bits == 0 { high } else { (high << bits) | (low >> (64 - bits)) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_sequence_number_is_accepted_once_within_the_window() {
        let mut w = SeqWindow::starting_at(10);
        assert!(!w.accept(10));
        assert!(w.accept(12));
        assert!(w.accept(11), "late but new");
        assert!(!w.accept(11));
        assert!(w.accept(10 + WINDOW + 5));
        assert!(!w.accept(12), "fell out of the window");
    }

    #[test]
    fn a_number_a_thousand_behind_is_still_told_apart() {
        let mut w = SeqWindow::starting_at(0);
        for seq in (1..=WINDOW).step_by(3) {
            assert!(w.accept(seq));
        }
        // Everything not accepted above, newest first, then all again.
        for seq in (1..=WINDOW).rev().filter(|s| (s - 1) % 3 != 0) {
            assert!(w.accept(seq), "{seq} arrives late");
        }
        for seq in 1..=WINDOW {
            assert!(!w.accept(seq), "{seq} twice");
        }
        assert!(!w.accept(0), "0 is now older than the window reaches");
    }

    #[test]
    fn the_window_agrees_with_a_set_of_everything_seen_over_random_streams() {
        use rand::{Rng, SeedableRng};
        for seed in 0..50 {
            let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
            let mut w = SeqWindow::starting_at(0);
            let mut seen = alloc::collections::BTreeSet::from([0u64]);
            let mut highest = 0u64;
            for _ in 0..5_000 {
                // Mostly forward, sometimes far ahead, often late.
                let seq = match rng.random_range(0..10) {
                    0 => highest + rng.random_range(1..3_000),
                    1..=4 => highest + rng.random_range(1..5),
                    _ => highest.saturating_sub(rng.random_range(0..1_200)),
                };
                let expected = if seq > highest {
                    true
                } else if highest - seq >= WINDOW {
                    false
                } else {
                    !seen.contains(&seq)
                };
                assert_eq!(w.accept(seq), expected, "seed {seed}: {seq} with highest {highest}");
                seen.insert(seq);
                highest = highest.max(seq);
            }
        }
    }
}
