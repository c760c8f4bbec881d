//! A sliding window over sequence numbers: "have I seen this one?" for the newest 128 of a stream,
//! tolerant of reordering. Used for broadcast de-duplication and for the replay guard.

/// How far below the highest sequence number the window reaches.
pub(crate) const WINDOW: u64 = 128;

/// The highest sequence number seen and a bitmap of the ones just below it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SeqWindow {
    highest: u64,
    /// Bit `i` set: `highest - i` was seen.
    seen: u128,
}

impl SeqWindow {
    /// A window that has seen exactly `first`.
    pub fn starting_at(first: u64) -> Self {
        SeqWindow { highest: first, seen: 1 }
    }

    /// Records `seq`; true if it was not seen before. Anything older than the window counts as seen.
    pub fn accept(&mut self, seq: u64) -> bool {
        if seq > self.highest {
            let shift = seq - self.highest;
            self.seen = if shift >= WINDOW { 1 } else { (self.seen << shift) | 1 };
            self.highest = seq;
            return true;
        }
        let age = self.highest - seq;
        if age >= WINDOW {
            return false;
        }
        let bit = 1u128 << age;
        let fresh = self.seen & bit == 0;
        self.seen |= bit;
        fresh
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
}
