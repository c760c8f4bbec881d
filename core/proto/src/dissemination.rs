//! Infection-style dissemination: a bounded queue of encoded updates that ride on outgoing packets.
//!
//! Every update (membership change or user broadcast) is encoded once and queued. Whenever the node
//! sends a packet it fills the space left after the packet's own message with queued updates,
//! fewest-transmitted first (newest first among equals), and counts one transmit for each. An update
//! leaves the queue after `limit` transmits, which the node takes from
//! [`Config::retransmit_limit`](crate::Config::retransmit_limit): `λ` times a factor that grows
//! with `log10 n`, at least 2 (SWIM §4.1: with λ·log n transmits every member receives it with high
//! probability).
//!
//! Updates may carry a key: a new update with the same key replaces the queued one (a newer
//! membership record for the same member, a newer broadcast under the same invalidation key). The
//! queue is bounded: past its depth, the most-transmitted update (the oldest among equals) is dropped
//! and counted, since it has already reached the most members.

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use core::cmp::Reverse;

use crate::event::BroadcastId;
use crate::identity::NodeId;
use crate::wire::Writer;

/// What makes two queued updates "the same thing", so the newer replaces the older.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum UpdateKey {
    /// Any membership update about this member.
    Member(NodeId),
    /// A broadcast from `origin` under an invalidation key within a topic.
    Keyed { origin: NodeId, topic: String, key: Vec<u8> },
}

/// Ordering position: fewest transmits first, then by arrival (see [`Order`]).
type Slot = (u32, Reverse<u64>);

/// Which of the updates sent equally often goes first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Order {
    /// The newest: membership news, where the latest matters most.
    NewestFirst,
    /// The oldest: user broadcasts leave in the order they were made, and a full queue refuses the
    /// newest rather than dropping what it accepted earlier.
    OldestFirst,
}

#[derive(Debug)]
struct Queued {
    key: Option<UpdateKey>,
    /// Replacement order within a key: a queued update is only replaced by one with a higher order.
    order: u64,
    bytes: Vec<u8>,
    /// Our own broadcast: reported if the queue drops it before its last transmit.
    own: Option<(BroadcastId, String)>,
    /// Sent twice the usual number of times (news of a member joining).
    boost: bool,
}

/// The queued updates in send order (ascending [`Slot`]): `runs[t]` holds the updates sent `t` times,
/// highest position first. Updates enter and leave at a run's ends in the usual cases (a new update
/// is the newest or the oldest; the first ones sent move on to the next run as its newest or oldest),
/// so a deque per run keeps those O(1); a replaced update leaves from the middle (binary search). The
/// same order as an ordered map keyed by slot, in a fraction of the code (a `BTreeMap` here was 8 KB
/// of the wasm build).
///
/// Each update is boxed, so that moving one between runs, or growing a run, copies 16 bytes, not the
/// update's fields; and a run that empties gives its memory back. At 1,000 members a join's burst
/// passes every update through every run (30 of them for a join's news, sent twice the usual
/// count): runs kept at their peak capacity held megabytes per member, and growing them copied
/// whole records (the `fleet` bench spent a third of its CPU there and grew to 5 GB).
#[derive(Debug, Default)]
struct Runs {
    runs: Vec<VecDeque<(u64, Box<Queued>)>>,
    len: usize,
}

impl Runs {
    /// Where the update at `slot` is, or would go, in its run.
    fn search(&self, (sent, Reverse(position)): Slot) -> (usize, Result<usize, usize>) {
        let t = sent as usize;
        let found = match self.runs.get(t) {
            Some(run) => run.binary_search_by(|(p, _)| position.cmp(p)),
            None => Err(0),
        };
        (t, found)
    }

    fn get(&self, slot: Slot) -> Option<&Queued> {
        match self.search(slot) {
            (t, Ok(i)) => self.runs[t].get(i).map(|(_, q)| &**q),
            _ => None,
        }
    }

    fn remove(&mut self, slot: Slot) -> Option<Box<Queued>> {
        let (t, Ok(i)) = self.search(slot) else { return None };
        let (_, q) = self.runs[t].remove(i)?;
        self.len -= 1;
        self.release_if_empty(t);
        Some(q)
    }

    /// Frees run `t` once it is empty, and drops the empty runs at the end.
    fn release_if_empty(&mut self, t: usize) {
        if self.runs[t].is_empty() {
            self.runs[t] = VecDeque::new();
            while self.runs.last().is_some_and(VecDeque::is_empty) {
                self.runs.pop();
            }
        }
    }

    fn insert(&mut self, slot: Slot, q: Box<Queued>) {
        let (t, found) = self.search(slot);
        if self.runs.len() <= t {
            self.runs.resize_with(t + 1, VecDeque::new);
        }
        match found {
            Ok(i) => self.runs[t][i].1 = q,
            Err(i) => {
                self.runs[t].insert(i, (slot.1 .0, q));
                self.len += 1;
            }
        }
    }

    /// Removes the last update in send order: the most sent, lowest position among those.
    fn pop_last(&mut self) -> Option<Box<Queued>> {
        let t = self.runs.iter().rposition(|run| !run.is_empty())?;
        let (_, q) = self.runs[t].pop_back()?;
        self.len -= 1;
        self.release_if_empty(t);
        Some(q)
    }

    fn iter(&self) -> impl Iterator<Item = (Slot, &Queued)> {
        self.runs.iter().enumerate().flat_map(|(t, run)| run.iter().map(move |(p, q)| ((t as u32, Reverse(*p)), &**q)))
    }
}

/// A bounded queue of encoded updates awaiting piggybacking.
#[derive(Debug)]
pub(crate) struct UpdateQueue {
    items: Runs,
    by_key: hashbrown::HashMap<UpdateKey, Slot, foldhash::fast::FixedState>,
    depth: usize,
    next_id: u64,
    dropped: u64,
    smallest: usize,
    order: Order,
    dropped_own: Vec<(BroadcastId, String)>,
}

impl UpdateQueue {
    pub fn new(depth: usize, hash_seed: u64, order: Order) -> Self {
        UpdateQueue {
            items: Runs::default(),
            by_key: hashbrown::HashMap::with_hasher(foldhash::fast::FixedState::with_seed(hash_seed)),
            depth,
            next_id: 0,
            dropped: 0,
            smallest: usize::MAX,
            order,
            dropped_own: Vec::new(),
        }
    }

    /// Our own broadcasts dropped from the full queue since the last call.
    pub fn take_dropped_own(&mut self) -> Vec<(BroadcastId, String)> {
        core::mem::take(&mut self.dropped_own)
    }

    /// Updates waiting to be sent.
    pub fn len(&self) -> usize {
        self.items.len
    }

    pub fn is_empty(&self) -> bool {
        self.items.len == 0
    }

    /// Updates dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// True while an update under `key` is still queued.
    pub fn contains(&self, key: &UpdateKey) -> bool {
        self.by_key.contains_key(key)
    }

    /// Queues an encoded update (a complete `[tag][len][body]` message). With a key, replaces a queued
    /// update of the same key unless that one has a higher `order` (then the new one is discarded and
    /// `false` returned).
    pub fn push(&mut self, key: Option<UpdateKey>, order: u64, bytes: Vec<u8>) -> bool {
        self.push_item(key, order, bytes, None, false)
    }

    /// As [`UpdateQueue::push`], for news that must reach everyone with near certainty (a member
    /// joining, which otherwise goes unnoticed until anti-entropy): sent twice the usual number of
    /// times, so the chance a member misses every copy is squared.
    pub fn push_boosted(&mut self, key: Option<UpdateKey>, order: u64, bytes: Vec<u8>) -> bool {
        self.push_item(key, order, bytes, None, true)
    }

    /// As [`UpdateQueue::push`], for one of our own broadcasts: if the full queue later drops it
    /// before its last transmit, [`UpdateQueue::take_dropped_own`] returns `own`.
    pub fn push_own(
        &mut self,
        key: Option<UpdateKey>,
        order: u64,
        bytes: Vec<u8>,
        own: Option<(BroadcastId, String)>,
    ) -> bool {
        self.push_item(key, order, bytes, own, false)
    }

    fn push_item(
        &mut self,
        key: Option<UpdateKey>,
        order: u64,
        bytes: Vec<u8>,
        own: Option<(BroadcastId, String)>,
        boost: bool,
    ) -> bool {
        if let Some(k) = &key {
            if let Some(slot) = self.by_key.get(k).copied() {
                if self.items.get(slot).is_some_and(|q| q.order > order) {
                    return false;
                }
                self.items.remove(slot);
                self.by_key.remove(k);
            }
        }
        let position = match self.order {
            Order::NewestFirst => self.next_id,
            Order::OldestFirst => u64::MAX - self.next_id,
        };
        let slot = (0, Reverse(position));
        self.next_id += 1;
        self.smallest = self.smallest.min(bytes.len());
        if let Some(k) = &key {
            self.by_key.insert(k.clone(), slot);
        }
        self.items.insert(slot, Box::new(Queued { key, order, bytes, own, boost }));
        while self.items.len > self.depth {
            if let Some(evicted) = self.items.pop_last() {
                if let Some(k) = evicted.key {
                    self.by_key.remove(&k);
                }
                if let Some(own) = evicted.own {
                    self.dropped_own.push(own);
                }
                self.dropped += 1;
            }
        }
        true
    }

    /// Appends queued updates to `w` while they fit within `budget` bytes in total, fewest-sent first,
    /// counting one transmit each and retiring those that reach `limit`. Returns how many were written.
    /// Call once per outgoing packet, after the packet's own message is written.
    pub fn fill(&mut self, w: &mut Writer, budget: usize, limit: u32) -> usize {
        if self.is_empty() || w.len() + self.smallest > budget {
            return 0;
        }
        let mut chosen: Vec<Slot> = Vec::new();
        let mut remaining = budget.saturating_sub(w.len());
        // Bound the scan so a queue full of large updates cannot make one packet expensive.
        for (slot, q) in self.items.iter().take(512) {
            if q.bytes.len() <= remaining {
                w.raw(&q.bytes);
                remaining -= q.bytes.len();
                chosen.push(slot);
                if remaining < self.smallest {
                    break;
                }
            }
        }
        for slot in &chosen {
            if let Some(q) = self.items.remove(*slot) {
                let transmits = slot.0 + 1;
                if transmits >= limit << u32::from(q.boost) {
                    if let Some(k) = &q.key {
                        self.by_key.remove(k);
                    }
                    continue;
                }
                let new_slot = (transmits, slot.1);
                if let Some(at) = q.key.as_ref().and_then(|k| self.by_key.get_mut(k)) {
                    *at = new_slot;
                }
                self.items.insert(new_slot, q);
            }
        }
        if self.is_empty() {
            self.smallest = usize::MAX;
        }
        chosen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> Option<UpdateKey> {
        Some(UpdateKey::Member(NodeId::new(name).unwrap()))
    }

    #[test]
    fn an_update_is_retired_after_its_transmit_limit() {
        let mut q = UpdateQueue::new(16, 0, Order::NewestFirst);
        q.push(key("a"), 0, alloc::vec![1; 10]);
        for _ in 0..3 {
            let mut w = Writer::default();
            assert_eq!(q.fill(&mut w, 100, 3), 1);
        }
        let mut w = Writer::default();
        assert_eq!(q.fill(&mut w, 100, 3), 0);
        assert!(q.is_empty());
    }

    #[test]
    fn fewest_sent_updates_go_first() {
        let mut q = UpdateQueue::new(16, 0, Order::NewestFirst);
        q.push(key("old"), 0, alloc::vec![1; 10]);
        let mut w = Writer::default();
        q.fill(&mut w, 100, 10);
        q.push(key("new"), 0, alloc::vec![2; 10]);
        let mut w = Writer::default();
        assert_eq!(q.fill(&mut w, 15, 10), 1);
        assert_eq!(w.as_slice()[0], 2, "the never-sent update wins the only slot");
    }

    #[test]
    fn a_newer_update_with_the_same_key_replaces_the_queued_one() {
        let mut q = UpdateQueue::new(16, 0, Order::NewestFirst);
        q.push(key("a"), 1, alloc::vec![1; 4]);
        q.push(key("a"), 2, alloc::vec![2; 4]);
        assert_eq!(q.len(), 1);
        assert!(!q.push(key("a"), 1, alloc::vec![3; 4]), "an older order does not replace");
        let mut w = Writer::default();
        q.fill(&mut w, 100, 5);
        assert_eq!(w.as_slice(), &[2, 2, 2, 2]);
    }

    #[test]
    fn a_full_queue_drops_the_most_sent_update_and_counts_it() {
        let mut q = UpdateQueue::new(2, 0, Order::NewestFirst);
        q.push(None, 0, alloc::vec![1; 4]);
        let mut w = Writer::default();
        q.fill(&mut w, 100, 10);
        q.push(None, 0, alloc::vec![2; 4]);
        q.push(None, 0, alloc::vec![3; 4]);
        assert_eq!(q.len(), 2);
        assert_eq!(q.dropped(), 1);
        let mut w = Writer::default();
        q.fill(&mut w, 100, 10);
        assert!(!w.as_slice().contains(&1), "the already-sent update was the one dropped");
    }

    #[test]
    fn oldest_first_sends_in_arrival_order_and_a_full_queue_drops_the_newest() {
        let mut q = UpdateQueue::new(2, 0, Order::OldestFirst);
        let own = |seq| Some((BroadcastId { epoch: 1, seq, keyed: false }, alloc::string::String::from("t")));
        q.push_own(None, 0, alloc::vec![1; 4], own(0));
        q.push_own(None, 1, alloc::vec![2; 4], own(1));
        q.push_own(None, 2, alloc::vec![3; 4], own(2));
        let dropped = q.take_dropped_own();
        assert_eq!(dropped.len(), 1);
        assert_eq!(dropped[0].0.seq, 2, "the one the queue had no room for is reported");
        let mut w = Writer::default();
        assert_eq!(q.fill(&mut w, 4, 10), 1);
        assert_eq!(w.as_slice(), &[1, 1, 1, 1], "the oldest leaves first");
    }

    #[test]
    fn a_boosted_update_is_sent_twice_as_many_times() {
        let mut q = UpdateQueue::new(16, 0, Order::NewestFirst);
        q.push_boosted(key("joined"), 0, alloc::vec![1; 4]);
        let sent = (0..10).take_while(|_| q.fill(&mut Writer::default(), 100, 3) == 1).count();
        assert_eq!(sent, 6);
    }

    #[test]
    fn runs_keep_the_order_an_ordered_map_of_slots_keeps() {
        use alloc::collections::BTreeMap;
        use rand::{Rng, SeedableRng};
        let queued = |order| Queued { key: None, order, bytes: Vec::new(), own: None, boost: false };
        for seed in 0..200 {
            let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
            let mut runs = Runs::default();
            let mut model: BTreeMap<Slot, u64> = BTreeMap::new();
            for step in 0..300u64 {
                let slot = (rng.random_range(0..6), Reverse(rng.random_range(0..40)));
                match rng.random_range(0..10) {
                    0..=4 => {
                        runs.insert(slot, Box::new(queued(step)));
                        model.insert(slot, step);
                    }
                    5..=6 => assert_eq!(runs.remove(slot).map(|q| q.order), model.remove(&slot), "seed {seed}"),
                    7 => assert_eq!(runs.pop_last().map(|q| q.order), model.pop_last().map(|(_, o)| o), "seed {seed}"),
                    _ => assert_eq!(runs.get(slot).map(|q| q.order), model.get(&slot).copied(), "seed {seed}"),
                }
                assert_eq!(runs.len, model.len(), "seed {seed}");
                assert!(
                    runs.runs.iter().all(|run| !run.is_empty() || run.capacity() == 0),
                    "seed {seed}: empty runs freed"
                );
                assert!(runs.runs.last().is_none_or(|run| !run.is_empty()), "seed {seed}: no empty run at the end");
                let order: Vec<(Slot, u64)> = runs.iter().map(|(s, q)| (s, q.order)).collect();
                let want: Vec<(Slot, u64)> = model.iter().map(|(s, o)| (*s, *o)).collect();
                assert_eq!(order, want, "seed {seed}, step {step}");
            }
        }
    }

    #[test]
    fn a_queue_holds_memory_for_the_updates_it_holds_not_for_a_burst_it_sent_long_ago() {
        // A join's burst at 1,000 members: every update sent 30 times, 40 to a packet.
        let mut q = UpdateQueue::new(2_048, 0, Order::NewestFirst);
        for i in 0..1_000 {
            q.push_boosted(key(&alloc::format!("m{i}")), 0, alloc::vec![7; 30]);
        }
        let held = |q: &UpdateQueue| q.items.runs.iter().map(VecDeque::capacity).sum::<usize>();
        let mut most = 0;
        while !q.is_empty() {
            q.fill(&mut Writer::default(), 1_200, 15);
            most = most.max(held(&q));
        }
        // At most two runs hold the burst at once (the one being sent and the next), each at most
        // twice its length.
        assert!(most <= 4 * 1_024, "slots held at the peak: {most}");
        assert_eq!(held(&q), 0, "the drained queue holds no slot");
        assert!(q.items.runs.is_empty());
    }

    #[test]
    fn updates_that_do_not_fit_are_skipped_not_split() {
        let mut q = UpdateQueue::new(16, 0, Order::NewestFirst);
        q.push(None, 0, alloc::vec![9; 50]);
        q.push(None, 0, alloc::vec![8; 5]);
        let mut w = Writer::default();
        w.raw(&[0; 40]);
        assert_eq!(q.fill(&mut w, 60, 10), 1);
        assert_eq!(w.len(), 45);
    }
}
