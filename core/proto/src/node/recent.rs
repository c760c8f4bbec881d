//! A small filter of gossip updates this node has already applied, so byte-identical repeats are
//! skipped before decoding.
//!
//! Infection-style dissemination delivers every update about `λ · log n` times to every member; all
//! but the first are no-ops. Hashing the raw message (with a per-node secret seed) and probing a
//! direct-mapped table of 1,024 hashes costs far less than decoding names and looking members up.
//! A slot collision only means a repeat gets decoded and applied again, which is harmless because
//! updates are idempotent; a false "seen" would need a 64-bit hash collision under a seed the sender
//! cannot know.
//!
//! Skipping a repeat is right only while applying it again would change nothing. Incarnations wrap
//! (serial order, [`crate::incarnation`]), so a record seen long ago can become news once the
//! incarnations the node holds have moved round; the node replaces the filter with a fresh one when
//! they have travelled a quarter of the circle (`Node::incarnation_moved`).

use alloc::vec;
use alloc::vec::Vec;
use core::hash::{BuildHasher, Hasher};

const SLOTS: usize = 1_024;

#[derive(Debug)]
pub(crate) struct RecentUpdates {
    /// Allocated on first use: quiet nodes (most of a steady-state simulation) pay nothing.
    slots: Vec<u64>,
    hasher: foldhash::fast::FixedState,
}

impl RecentUpdates {
    /// An empty filter. Besides at start, the node makes a fresh one whenever it forgets members:
    /// once reaped, a member's old `Alive` is news again (after a partition longer than the reap
    /// time, the other side comes back with exactly the records it was first learned from), so
    /// skipping it as a repeat would be wrong.
    pub fn new(seed: u64) -> Self {
        RecentUpdates { slots: Vec::new(), hasher: foldhash::fast::FixedState::with_seed(seed) }
    }

    /// Hash of one message frame. Never 0 (0 marks an empty slot).
    pub fn hash(&self, tag: u8, body: &[u8]) -> u64 {
        let mut h = self.hasher.build_hasher();
        h.write_u8(tag);
        h.write(body);
        h.finish() | 1
    }

    pub fn contains(&self, hash: u64) -> bool {
        !self.slots.is_empty() && self.slots[hash as usize % SLOTS] == hash
    }

    pub fn insert(&mut self, hash: u64) {
        if self.slots.is_empty() {
            self.slots = vec![0; SLOTS];
        }
        self.slots[hash as usize % SLOTS] = hash;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_inserted_update_is_recognised_and_others_are_not() {
        let mut r = RecentUpdates::new(42);
        let a = r.hash(5, b"alive a");
        let b = r.hash(5, b"alive b");
        assert!(!r.contains(a));
        r.insert(a);
        assert!(r.contains(a));
        assert!(!r.contains(b));
        assert_ne!(r.hash(6, b"alive a"), a, "the tag is part of the identity");
    }
}
