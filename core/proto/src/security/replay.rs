//! Replay protection: each sender's nonces are `prefix (8 random bytes) || counter`, so a receiver
//! can keep, per prefix, the highest counter seen and a 1,024-wide window below it, and drop any
//! packet whose nonce it has already accepted. Only packets that authenticated are recorded, so
//! forged nonces cannot poison a window.
//!
//! A sender seals datagrams and reliable frames in two nonce spaces with distinct prefixes, so it
//! has two windows here. The datagram window absorbs the reordering of a lossy network; the
//! reliable window sees frames the transport delivers in order per destination. Neither is pushed
//! forward by the other: a reliable frame that waited behind a TCP connect is not refused because
//! hundreds of newer datagrams arrived first.
//!
//! The table is bounded: past `capacity` prefixes the least recently used one is forgotten (a
//! replay of that sender's old packets would then be accepted once more). With two prefixes per
//! sender, the capacity is twice the number of senders to remember. A restarted receiver
//! starts with an empty table, and a replayed packet is harmless to it only as far as the protocol's
//! own rules go (incarnations make stale membership claims no-ops; broadcasts are de-duplicated).

use hashbrown::HashMap;

use crate::window::SeqWindow;

#[derive(Clone, Copy, Debug)]
struct Window {
    window: SeqWindow,
    last_used: u64,
}

#[derive(Debug)]
pub(crate) struct ReplayGuard {
    windows: HashMap<u64, Window, foldhash::fast::FixedState>,
    capacity: usize,
    clock: u64,
}

impl ReplayGuard {
    pub fn new(capacity: usize, hash_seed: u64) -> Self {
        ReplayGuard {
            windows: HashMap::with_hasher(foldhash::fast::FixedState::with_seed(hash_seed)),
            capacity,
            clock: 0,
        }
    }

    /// True if `(prefix, counter)` was not accepted before (and records it); false for a replay or a
    /// counter older than the window.
    pub fn accept(&mut self, prefix: u64, counter: u64) -> bool {
        self.clock += 1;
        let clock = self.clock;
        if let Some(w) = self.windows.get_mut(&prefix) {
            w.last_used = clock;
            return w.window.accept(counter);
        }
        if self.windows.len() >= self.capacity {
            if let Some((&oldest, _)) = self.windows.iter().min_by_key(|(_, w)| w.last_used) {
                self.windows.remove(&oldest);
            }
        }
        self.windows.insert(prefix, Window { window: SeqWindow::starting_at(counter), last_used: clock });
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replayed_nonce_is_refused_and_reordering_within_the_window_is_not() {
        let mut g = ReplayGuard::new(8, 0);
        assert!(g.accept(7, 10));
        assert!(g.accept(7, 12));
        assert!(g.accept(7, 11), "late but new");
        assert!(!g.accept(7, 11));
        assert!(!g.accept(7, 12));
        assert!(g.accept(7, 5_000));
        assert!(!g.accept(7, 3_000), "older than the window");
        assert!(g.accept(8, 11), "another sender has its own window");
    }

    #[test]
    fn the_least_recently_used_sender_is_forgotten_first() {
        let mut g = ReplayGuard::new(2, 0);
        assert!(g.accept(1, 1));
        assert!(g.accept(2, 1));
        assert!(!g.accept(1, 1));
        assert!(g.accept(3, 1), "evicts sender 2, the least recently used");
        assert!(!g.accept(1, 1), "sender 1 is still remembered");
        assert!(g.accept(2, 1), "sender 2 was forgotten");
    }
}
