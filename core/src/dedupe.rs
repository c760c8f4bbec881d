//! Exactly-once delivery of user broadcasts.
//!
//! Every broadcast carries `(origin, epoch, seq)`: `epoch` is drawn at random when the origin's node
//! starts (so a restarted origin does not collide with its previous life) and `seq` counts up. For
//! each origin we keep the highest `seq` seen in the current epoch and a 128-bit window of the ones
//! below it, which tolerates reordering of up to 128 broadcasts per origin. Anything older than the
//! window is treated as already delivered. The table is bounded; when full, an arbitrary origin's
//! window is evicted (at worst a very late duplicate from that origin is delivered again).

use crate::identity::NodeId;

use crate::window::SeqWindow;

#[derive(Clone, Copy, Debug)]
struct OriginWindow {
    epoch: u32,
    window: SeqWindow,
}

/// `(origin, topic, invalidation key)` of a keyed broadcast.
type KeyedName = (NodeId, alloc::string::String, alloc::vec::Vec<u8>);

#[derive(Debug)]
pub(crate) struct Dedupe {
    origins: hashbrown::HashMap<NodeId, OriginWindow, foldhash::fast::FixedState>,
    /// Newest `(epoch, seq)` delivered per keyed name, so an older value that arrives late is not
    /// delivered after a newer one.
    keyed: hashbrown::HashMap<KeyedName, (u32, u64), foldhash::fast::FixedState>,
    capacity: usize,
}

impl Dedupe {
    pub fn new(capacity: usize, hash_seed: u64) -> Self {
        Dedupe {
            origins: hashbrown::HashMap::with_hasher(foldhash::fast::FixedState::with_seed(hash_seed)),
            keyed: hashbrown::HashMap::with_hasher(foldhash::fast::FixedState::with_seed(hash_seed ^ 1)),
            capacity,
        }
    }

    /// For a keyed broadcast already accepted by [`Dedupe::first_time`]: true unless a newer value
    /// under the same key (same origin life) was delivered before. Records it as the newest.
    pub fn newest_for_key(&mut self, name: KeyedName, epoch: u32, seq: u64) -> bool {
        match self.keyed.get_mut(&name) {
            Some(newest) if newest.0 == epoch && newest.1 > seq => false,
            Some(newest) => {
                *newest = (epoch, seq);
                true
            }
            None => {
                if self.keyed.len() >= self.capacity {
                    if let Some(victim) = self.keyed.keys().next().cloned() {
                        self.keyed.remove(&victim);
                    }
                }
                self.keyed.insert(name, (epoch, seq));
                true
            }
        }
    }

    /// Records the broadcast and returns true the first time it is seen.
    pub fn first_time(&mut self, origin: &NodeId, epoch: u32, seq: u64) -> bool {
        if let Some(w) = self.origins.get_mut(origin) {
            if w.epoch != epoch {
                *w = OriginWindow { epoch, window: SeqWindow::starting_at(seq) };
                return true;
            }
            return w.window.accept(seq);
        }
        if self.origins.len() >= self.capacity {
            if let Some(victim) = self.origins.keys().next().cloned() {
                self.origins.remove(&victim);
            }
        }
        self.origins.insert(origin.clone(), OriginWindow { epoch, window: SeqWindow::starting_at(seq) });
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broadcast_is_delivered_once_even_when_reordered() {
        let o = NodeId::new("o").unwrap();
        let mut d = Dedupe::new(16, 0);
        assert!(d.first_time(&o, 1, 5));
        assert!(d.first_time(&o, 1, 3));
        assert!(!d.first_time(&o, 1, 5));
        assert!(!d.first_time(&o, 1, 3));
        assert!(d.first_time(&o, 1, 4));
        assert!(d.first_time(&o, 1, 200));
        assert!(!d.first_time(&o, 1, 60), "older than the window counts as seen");
    }

    #[test]
    fn an_older_keyed_value_arriving_late_is_not_delivered() {
        let o = NodeId::new("o").unwrap();
        let name = || (o.clone(), alloc::string::String::from("cursor"), alloc::vec![1]);
        let mut d = Dedupe::new(16, 0);
        assert!(d.newest_for_key(name(), 1, 5));
        assert!(!d.newest_for_key(name(), 1, 4));
        assert!(d.newest_for_key(name(), 1, 6));
        assert!(d.newest_for_key(name(), 2, 0), "a new life of the origin starts over");
    }

    #[test]
    fn a_restarted_origin_starts_a_new_epoch() {
        let o = NodeId::new("o").unwrap();
        let mut d = Dedupe::new(16, 0);
        assert!(d.first_time(&o, 1, 0));
        assert!(d.first_time(&o, 2, 0));
        assert!(!d.first_time(&o, 2, 0));
    }
}
