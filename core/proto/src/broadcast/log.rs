//! The broadcasts a member keeps to repair others: events for `broadcast_retention`, the latest
//! keyed value per key for as long as its origin lives. Both bounded by `broadcast_log_depth`.

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use core::time::Duration;

use super::ledger::{DigestEntry, Ledger};
use crate::identity::NodeId;
use crate::time::Instant;

#[derive(Debug)]
struct Kept {
    origin: NodeId,
    epoch: u32,
    seq: u64,
    /// `(topic, key)` of a keyed value.
    name: Option<(String, Vec<u8>)>,
    /// The encoded broadcast message, as gossiped.
    bytes: Vec<u8>,
    at: Instant,
}

/// Which kept broadcasts a member asks for (see [`Log::lacking`]).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Wanted<'a> {
    /// The keyed values only: a member that joins knowing no broadcast gets the current state, not
    /// the past events.
    State,
    /// A push-pull: whatever its digest lacks, lives it does not list included (it never heard of
    /// them).
    Lacking(&'a [DigestEntry]),
    /// A repair request: what its digest lacks of the lives it lists, and nothing else. (Answering
    /// an empty request with the whole log would let a 4-byte datagram draw a full frame.)
    Listed(&'a [DigestEntry]),
}

/// Retained broadcasts. See the module docs.
#[derive(Debug)]
pub(crate) struct Log {
    events: VecDeque<Kept>,
    /// The latest value per `(origin, topic, key)` (a vector: bounded by `depth`, and searched only
    /// when a keyed broadcast arrives).
    state: Vec<Kept>,
    depth: usize,
}

impl Log {
    pub fn new(depth: usize) -> Self {
        Log { events: VecDeque::new(), state: Vec::new(), depth }
    }

    /// Broadcasts kept, events and keyed values together.
    pub fn len(&self) -> usize {
        self.events.len() + self.state.len()
    }

    /// Keeps a delivered (or our own) broadcast. A keyed value replaces the one held for its key.
    pub fn add(
        &mut self,
        origin: &NodeId,
        epoch: u32,
        seq: u64,
        name: Option<(&str, &[u8])>,
        bytes: Vec<u8>,
        now: Instant,
    ) {
        let name = name.map(|(topic, key)| (String::from(topic), key.to_vec()));
        let keyed = name.is_some();
        let kept = Kept { origin: origin.clone(), epoch, seq, name, bytes, at: now };
        if !keyed {
            self.events.push_back(kept);
            while self.events.len() > self.depth {
                self.events.pop_front();
            }
            return;
        }
        match self.state.iter().position(|k| k.origin == kept.origin && k.name == kept.name) {
            Some(i) => self.state[i] = kept,
            None => {
                if self.state.len() >= self.depth {
                    // The oldest value goes: the first of the vector (values are appended).
                    self.state.remove(0);
                }
                self.state.push(kept);
            }
        }
    }

    /// Forgets events older than `retention`, and keyed values of origins that are gone (`live`
    /// says which are not) once they are older than `retention` too. Call periodically.
    pub fn expire(&mut self, now: Instant, retention: Duration, live: impl Fn(&NodeId) -> bool) {
        while self.events.front().is_some_and(|k| now.saturating_duration_since(k.at) >= retention) {
            self.events.pop_front();
        }
        self.state.retain(|k| live(&k.origin) || now.saturating_duration_since(k.at) < retention);
    }

    /// The kept broadcasts a member `wanted`, keyed values first, then events newest first, up to
    /// `budget` bytes, none whose origin is `asker` (a member never delivers its own broadcasts, of
    /// any life). Call to answer a push-pull or a repair request.
    pub fn lacking(&self, ledger: &Ledger, wanted: Wanted<'_>, asker: Option<&NodeId>, budget: usize) -> Vec<&[u8]> {
        let (digest, listed_only) = match wanted {
            Wanted::State => (&[][..], false),
            Wanted::Lacking(d) => (d, false),
            Wanted::Listed(d) => (d, true),
        };
        // `Some(None)`: a life the digest does not list. `None`: one not to send at all, because
        // it is not asked for, or the asker's own, or pushed out of our ledger by newer lives (and,
        // not listed, most likely out of the asker's too).
        let find = |k: &Kept| {
            if asker == Some(&k.origin) {
                return None;
            }
            let entry = digest.iter().find(|e| e.epoch == k.epoch && e.origin == k.origin);
            let skip = entry.is_none() && (listed_only || ledger.is_gone(&k.origin, k.epoch));
            (!skip).then_some(entry)
        };
        let mut out = Vec::new();
        let mut size = 0;
        for k in &self.state {
            let Some(entry) = find(k) else { continue };
            if ledger.keyed_differs(entry, &k.origin, k.epoch) && size + k.bytes.len() <= budget {
                size += k.bytes.len();
                out.push(&k.bytes[..]);
            }
        }
        if matches!(wanted, Wanted::State) {
            return out;
        }
        for k in self.events.iter().rev() {
            let Some(entry) = find(k) else { continue };
            if Ledger::lacks(entry, k.seq) && size + k.bytes.len() <= budget {
                size += k.bytes.len();
                out.push(&k.bytes[..]);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> NodeId {
        NodeId::new(s).unwrap()
    }

    #[test]
    fn a_member_gets_the_events_its_digest_lacks_and_a_joiner_only_the_state() {
        let o = id("o");
        let mut ours = Ledger::new();
        let mut log = Log::new(16);
        for seq in 0..4 {
            ours.accept(&o, 7, seq, true, Instant::ZERO);
            log.add(&o, 7, seq, None, alloc::vec![seq as u8], Instant::ZERO);
        }
        ours.accept_keyed(&o, 7, 0, ("cursor", b"k"), Instant::ZERO);
        log.add(&o, 7, 0, Some(("cursor", b"k")), alloc::vec![99], Instant::ZERO);
        let mut theirs = Ledger::new();
        theirs.accept(&o, 7, 0, true, Instant::ZERO);
        theirs.accept(&o, 7, 2, true, Instant::ZERO);
        let digest = theirs.digest();
        let sent = log.lacking(&ours, Wanted::Lacking(&digest), None, usize::MAX);
        assert_eq!(sent, [&[99u8][..], &[3], &[1]], "the keyed value, then the newest events it lacks");
        assert_eq!(log.lacking(&ours, Wanted::State, None, usize::MAX), [&[99u8][..]]);
        assert_eq!(log.lacking(&ours, Wanted::Lacking(&digest), None, 1), [&[99u8][..]], "the budget is respected");
    }

    #[test]
    fn a_repair_request_gets_only_what_it_lacks_of_the_lives_it_lists() {
        let (o, p) = (id("o"), id("p"));
        let mut ours = Ledger::new();
        let mut log = Log::new(16);
        for (origin, byte) in [(&o, 1u8), (&p, 2)] {
            for seq in 0..2 {
                ours.accept(origin, 7, seq, true, Instant::ZERO);
                log.add(origin, 7, seq, None, alloc::vec![byte, seq as u8], Instant::ZERO);
            }
        }
        assert!(
            log.lacking(&ours, Wanted::Listed(&[]), None, usize::MAX).is_empty(),
            "asking for nothing gets nothing"
        );
        let asked = [DigestEntry { origin: p.clone(), epoch: 7, next: 2, holes: alloc::vec![0], keyed: 0 }];
        assert_eq!(log.lacking(&ours, Wanted::Listed(&asked), None, usize::MAX), [&[2u8, 0][..]]);
        assert_eq!(log.lacking(&ours, Wanted::Lacking(&asked), None, usize::MAX).len(), 3, "a push-pull gets o's too");
    }

    #[test]
    fn events_expire_and_keyed_values_live_as_long_as_their_origin() {
        let (o, p) = (id("o"), id("p"));
        let mut log = Log::new(16);
        log.add(&o, 1, 0, None, alloc::vec![1], Instant::ZERO);
        log.add(&o, 1, 0, Some(("t", b"k")), alloc::vec![2], Instant::ZERO);
        log.add(&p, 1, 0, Some(("t", b"k")), alloc::vec![3], Instant::ZERO);
        log.add(&o, 1, 1, Some(("t", b"k")), alloc::vec![4], Instant::ZERO);
        assert_eq!(log.len(), 3, "a newer value replaces the kept one");
        log.expire(Instant::from_millis(10), Duration::from_millis(10), |n| *n == o);
        assert_eq!(log.len(), 1, "o's value stays while o lives");
    }
}
