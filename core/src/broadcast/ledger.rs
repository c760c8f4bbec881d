//! What a member has delivered, per origin and epoch: exactly-once delivery and the holes left.
//!
//! Bounded everywhere: at most [`MAX_ORIGINS`] origins (the least recently active is forgotten), at
//! most [`MAX_EPOCHS`] lives per origin, at most [`MAX_HOLES`] holes per life (past that the oldest
//! are given up and reported), at most [`MAX_KEYS`] keyed values per origin.

use alloc::string::String;
use alloc::vec::Vec;
use core::hash::{BuildHasher, Hash, Hasher};
use core::time::Duration;

use crate::identity::NodeId;
use crate::time::Instant;
pub(crate) use crate::wire::DigestEntry;
use crate::wire::MAX_DIGEST_HOLES;

/// Origins remembered; past this the least recently active one is forgotten.
pub(crate) const MAX_ORIGINS: usize = 4_096;
/// Lives remembered per origin (a restarted origin starts a new one).
pub(crate) const MAX_EPOCHS: usize = 4;
/// Holes remembered per life; past this the oldest are given up.
pub(crate) const MAX_HOLES: usize = 4_096;
/// Keyed values remembered per origin.
pub(crate) const MAX_KEYS: usize = 1_024;

/// What to do with an arriving broadcast.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// New: deliver it (and keep it for repair).
    Deliver,
    /// Delivered before.
    Duplicate,
    /// Sent before this member joined: not expected, not delivered.
    BeforeOurTime,
    /// A keyed value older than the one held for its key.
    Superseded,
    /// Impossible: an unkeyed sequence number no origin reaches (`u64::MAX`, past which `next` could
    /// not count). Hostile or corrupt input, dropped and counted by the caller.
    Invalid,
}

#[derive(Debug)]
struct Life {
    epoch: u32,
    /// Unkeyed sequence numbers below `start` are before our time.
    start: u64,
    next: u64,
    /// Holes, ascending: sequence number and when we noticed it. (A vector: holes are few, and opened
    /// in order, above every hole already there.)
    holes: Vec<(u64, Instant)>,
}

#[derive(Debug)]
struct Keyed {
    topic: String,
    key: Vec<u8>,
    epoch: u32,
    seq: u64,
}

#[derive(Debug, Default)]
struct Origin {
    /// In the order first seen: the last is the newest life.
    lives: Vec<Life>,
    /// The newest value delivered per `(topic, key)`: its life and sequence number.
    keyed: Vec<Keyed>,
    last_active: u64,
}

impl Origin {
    fn life_rank(&self, epoch: u32) -> Option<usize> {
        self.lives.iter().position(|l| l.epoch == epoch)
    }

    /// The life `epoch`, created (as the newest) if unknown.
    fn life_mut(&mut self, epoch: u32, start: u64) -> &mut Life {
        let i = match self.life_rank(epoch) {
            Some(i) => i,
            None => {
                if self.lives.len() >= MAX_EPOCHS {
                    self.lives.remove(0);
                }
                self.lives.push(Life { epoch, start, next: start, holes: Vec::new() });
                self.lives.len() - 1
            }
        };
        &mut self.lives[i]
    }
}

/// Holes given up: `(origin, epoch, count)`.
pub(crate) type Missed = (NodeId, u32, u64);

/// Exactly-once delivery state of one member. See the module docs.
#[derive(Debug)]
pub(crate) struct Ledger {
    origins: hashbrown::HashMap<NodeId, Origin, foldhash::fast::FixedState>,
    hasher: foldhash::fast::FixedState,
    clock: u64,
    /// Holes dropped to stay within [`MAX_HOLES`], reported at the next [`Ledger::expire`].
    overflow: Vec<Missed>,
}

impl Ledger {
    pub fn new(hash_seed: u64) -> Self {
        Ledger {
            origins: hashbrown::HashMap::with_hasher(foldhash::fast::FixedState::with_seed(hash_seed)),
            hasher: foldhash::fast::FixedState::with_seed(hash_seed ^ 0x6b),
            clock: 0,
            overflow: Vec::new(),
        }
    }

    /// Origins remembered.
    pub fn len(&self) -> usize {
        self.origins.len()
    }

    fn origin_mut(&mut self, origin: &NodeId) -> &mut Origin {
        self.clock += 1;
        if !self.origins.contains_key(origin) && self.origins.len() >= MAX_ORIGINS {
            if let Some(victim) = self.origins.iter().min_by_key(|(_, o)| o.last_active).map(|(k, _)| k.clone()) {
                self.origins.remove(&victim);
            }
        }
        let clock = self.clock;
        let o = self.origins.entry(origin.clone()).or_default();
        o.last_active = clock;
        o
    }

    /// Decides about an unkeyed broadcast `(origin, epoch, seq)` and records it. `joined`: whether
    /// this member had joined when it arrived (before that, a life first seen starts at `seq`; after,
    /// at 0, so everything it sent is expected).
    pub fn accept(&mut self, origin: &NodeId, epoch: u32, seq: u64, joined: bool, now: Instant) -> Verdict {
        let Some(after) = seq.checked_add(1) else { return Verdict::Invalid };
        let start = if joined { 0 } else { seq };
        let o = self.origin_mut(origin);
        let life = o.life_mut(epoch, start);
        if seq < life.start {
            return Verdict::BeforeOurTime;
        }
        if seq < life.next {
            return match life.holes.binary_search_by_key(&seq, |h| h.0) {
                Ok(i) => {
                    life.holes.remove(i);
                    Verdict::Deliver
                }
                Err(_) => Verdict::Duplicate,
            };
        }
        let (from, to) = (life.next, seq);
        life.next = after;
        self.open_holes(origin, epoch, from, to, now);
        Verdict::Deliver
    }

    /// Records holes `[from, to)` in `origin`'s life `epoch`, giving up the oldest past the bound.
    fn open_holes(&mut self, origin: &NodeId, epoch: u32, from: u64, to: u64, now: Instant) {
        if from >= to {
            return;
        }
        let Some(life) = self.origins.get_mut(origin).and_then(|o| o.lives.iter_mut().find(|l| l.epoch == epoch))
        else {
            return;
        };
        // More holes than we keep: the oldest of them are given up at once.
        let span = to - from;
        let keep = (MAX_HOLES as u64).min(span);
        let mut dropped = span - keep;
        life.holes.extend(((to - keep)..to).map(|seq| (seq, now)));
        if life.holes.len() > MAX_HOLES {
            let excess = life.holes.len() - MAX_HOLES;
            life.holes.drain(..excess);
            dropped += excess as u64;
        }
        if dropped > 0 {
            self.overflow.push((origin.clone(), epoch, dropped));
        }
    }

    /// Decides about a keyed broadcast and records it when delivered.
    pub fn accept_keyed(&mut self, origin: &NodeId, epoch: u32, seq: u64, name: (&str, &[u8])) -> Verdict {
        let o = self.origin_mut(origin);
        // Keyed values do not use the unkeyed sequence; the life just has to be known.
        let next = o.life_rank(epoch).map_or(0, |i| o.lives[i].next);
        o.life_mut(epoch, next);
        let rank = o.life_rank(epoch);
        let held = o.keyed.iter().position(|k| k.topic == name.0 && k.key == name.1);
        if let Some(i) = held {
            let k = &o.keyed[i];
            let newer = if k.epoch == epoch { seq > k.seq } else { rank > o.life_rank(k.epoch) };
            if !newer {
                return if k.epoch == epoch && seq == k.seq { Verdict::Duplicate } else { Verdict::Superseded };
            }
            o.keyed[i].epoch = epoch;
            o.keyed[i].seq = seq;
        } else {
            if o.keyed.len() >= MAX_KEYS {
                o.keyed.remove(0);
            }
            o.keyed.push(Keyed { topic: String::from(name.0), key: name.1.to_vec(), epoch, seq });
        }
        Verdict::Deliver
    }

    /// Learns from a digest that `origin`'s life `epoch` reached `next`. A member joining takes it as
    /// where its time starts; a member already in the cluster opens holes for what it never saw.
    pub fn learn(&mut self, origin: &NodeId, epoch: u32, next: u64, joining: bool, now: Instant) {
        let o = self.origin_mut(origin);
        let life = o.life_mut(epoch, if joining { next } else { 0 });
        if joining {
            // Everything below `next` was sent before we joined.
            life.start = life.start.max(next);
            life.holes.retain(|&(seq, _)| seq >= next);
            life.next = life.next.max(next);
            return;
        }
        if next > life.next {
            let from = life.next;
            life.next = next;
            self.open_holes(origin, epoch, from, next, now);
        }
    }

    /// Gives up holes noticed `retention` ago or more (and those dropped for space), returning how
    /// many per origin and life. Call periodically.
    pub fn expire(&mut self, now: Instant, retention: Duration) -> Vec<Missed> {
        let mut missed = core::mem::take(&mut self.overflow);
        for (id, o) in &mut self.origins {
            for life in &mut o.lives {
                let before = life.holes.len();
                life.holes.retain(|&(_, noticed)| now.saturating_duration_since(noticed) < retention);
                let gone = (before - life.holes.len()) as u64;
                if gone > 0 {
                    missed.push((id.clone(), life.epoch, gone));
                }
            }
        }
        missed
    }

    /// An origin we have a hole in noticed `age` ago or more, if any.
    pub fn origin_with_hole_older_than(&self, now: Instant, age: Duration) -> Option<NodeId> {
        self.origins.iter().find_map(|(id, o)| {
            let old = o
                .lives
                .iter()
                .any(|l| l.holes.iter().any(|&(_, noticed)| now.saturating_duration_since(noticed) >= age));
            old.then(|| id.clone())
        })
    }

    /// The digest of the lives we have holes in: what a repair request asks for.
    pub fn digest_of_holes(&self) -> Vec<DigestEntry> {
        let mut d = self.digest();
        d.retain(|e| !e.holes.is_empty());
        d
    }

    /// Open holes, all origins together.
    pub fn holes(&self) -> usize {
        self.origins.values().flat_map(|o| &o.lives).map(|l| l.holes.len()).sum()
    }

    /// A hash of the keyed values held for `o`'s life `epoch`, the same whatever order they came in
    /// (a sum of per-value hashes). 0 when there are none.
    fn keyed_hash(&self, o: &Origin, epoch: u32) -> u64 {
        let mut sum = 0u64;
        for k in o.keyed.iter().filter(|k| k.epoch == epoch) {
            let mut h = self.hasher.build_hasher();
            k.topic.hash(&mut h);
            k.key.hash(&mut h);
            k.seq.hash(&mut h);
            sum = sum.wrapping_add(h.finish() | 1);
        }
        sum
    }

    /// This member's digest: every life it knows of, however old. A member cut off for longer than
    /// any retention still learns from it what it never heard of, and reports it missed: a digest
    /// that forgot quiet origins would let that loss go unnoticed.
    pub fn digest(&self) -> Vec<DigestEntry> {
        let mut out = Vec::new();
        for (id, o) in &self.origins {
            for life in o.lives.iter().rev() {
                out.push(DigestEntry {
                    origin: id.clone(),
                    epoch: life.epoch,
                    next: life.next,
                    holes: life.holes.iter().take(MAX_DIGEST_HOLES).map(|h| h.0).collect(),
                    keyed: self.keyed_hash(o, life.epoch),
                });
            }
        }
        out
    }

    /// True when a member whose digest says `entry` (or nothing about this life, `None`) lacks the
    /// unkeyed broadcast `(epoch, seq)` we hold.
    pub fn lacks(entry: Option<&DigestEntry>, seq: u64) -> bool {
        match entry {
            None => true,
            Some(e) => seq >= e.next || e.holes.binary_search(&seq).is_ok(),
        }
    }

    /// True when a member whose digest says `entry` holds other keyed values than we do for
    /// `origin`'s life `epoch`.
    pub fn keyed_differs(&self, entry: Option<&DigestEntry>, origin: &NodeId, epoch: u32) -> bool {
        let ours = self.origins.get(origin).map_or(0, |o| self.keyed_hash(o, epoch));
        ours != entry.map_or(0, |e| e.keyed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> NodeId {
        NodeId::new(s).unwrap()
    }

    const T: Instant = Instant::ZERO;

    #[test]
    fn every_broadcast_is_delivered_once_however_far_out_of_order() {
        let mut l = Ledger::new(1);
        let o = id("o");
        // Newest first, as a queue that sends the newest first would: 300 apart, all delivered.
        for seq in (0..300).rev() {
            assert_eq!(l.accept(&o, 7, seq, true, T), Verdict::Deliver, "seq {seq}");
        }
        for seq in 0..300 {
            assert_eq!(l.accept(&o, 7, seq, true, T), Verdict::Duplicate);
        }
        assert_eq!(l.holes(), 0);
    }

    #[test]
    fn the_last_sequence_number_is_invalid_and_changes_nothing() {
        let mut l = Ledger::new(1);
        let o = id("o");
        assert_eq!(l.accept(&o, 7, u64::MAX, true, T), Verdict::Invalid);
        assert_eq!(l.accept(&o, 7, u64::MAX - 1, false, T), Verdict::Deliver, "the one before is a number like any");
        assert_eq!(l.accept(&o, 7, u64::MAX, true, T), Verdict::Invalid);
        assert_eq!(l.holes(), 0);
    }

    #[test]
    fn a_hole_is_reported_once_when_it_expires() {
        let mut l = Ledger::new(1);
        let o = id("o");
        l.accept(&o, 7, 0, true, T);
        l.accept(&o, 7, 3, true, T);
        assert_eq!(l.holes(), 2);
        assert!(l.expire(Instant::from_millis(999), Duration::from_secs(1)).is_empty());
        assert_eq!(l.accept(&o, 7, 1, true, T), Verdict::Deliver, "a late arrival fills its hole");
        assert_eq!(l.expire(Instant::from_millis(1_000), Duration::from_secs(1)), [(o.clone(), 7, 1)]);
        assert_eq!(l.holes(), 0);
        assert_eq!(l.accept(&o, 7, 2, true, T), Verdict::Duplicate, "given up, it counts as handled");
    }

    #[test]
    fn a_member_joining_does_not_expect_what_was_sent_before_it() {
        let mut l = Ledger::new(1);
        let o = id("o");
        l.learn(&o, 7, 10, true, T);
        assert_eq!(l.accept(&o, 7, 9, true, T), Verdict::BeforeOurTime);
        assert_eq!(l.accept(&o, 7, 12, true, T), Verdict::Deliver);
        assert_eq!(l.holes(), 2, "10 and 11 were sent after it joined");
        // Before its join completed, the first broadcast it sees from a life marks where it starts.
        let p = id("p");
        assert_eq!(l.accept(&p, 1, 40, false, T), Verdict::Deliver);
        assert_eq!(l.holes(), 2);
    }

    #[test]
    fn a_digest_reveals_broadcasts_a_member_never_heard_of() {
        let mut l = Ledger::new(1);
        let o = id("o");
        l.accept(&o, 7, 0, true, T);
        l.learn(&o, 7, 4, false, T);
        assert_eq!(l.holes(), 3);
        let d = l.digest();
        assert_eq!(d[0].next, 4);
        assert_eq!(d[0].holes, [1, 2, 3]);
        assert!(Ledger::lacks(Some(&d[0]), 2));
        assert!(!Ledger::lacks(Some(&d[0]), 0));
        assert!(Ledger::lacks(Some(&d[0]), 4));
    }

    #[test]
    fn keyed_values_only_move_forward_within_and_across_lives() {
        let mut l = Ledger::new(1);
        let o = id("o");
        let k = ("cursor", &b"x"[..]);
        assert_eq!(l.accept_keyed(&o, 1, 5, k), Verdict::Deliver);
        assert_eq!(l.accept_keyed(&o, 1, 4, k), Verdict::Superseded);
        assert_eq!(l.accept_keyed(&o, 1, 5, k), Verdict::Duplicate);
        assert_eq!(l.accept_keyed(&o, 2, 0, k), Verdict::Deliver, "a new life replaces the old one's value");
        assert_eq!(l.accept_keyed(&o, 1, 9, k), Verdict::Superseded, "the older life never comes back");
    }

    #[test]
    fn holes_beyond_the_bound_are_given_up_and_counted() {
        let mut l = Ledger::new(1);
        let o = id("o");
        l.accept(&o, 1, 0, true, T);
        l.accept(&o, 1, MAX_HOLES as u64 + 11, true, T);
        assert_eq!(l.holes(), MAX_HOLES);
        let missed = l.expire(T, Duration::from_secs(1));
        assert_eq!(missed, [(o, 1, 10)]);
    }
}
