//! The broadcasts a member keeps to repair others: events for `broadcast_retention`, the latest
//! keyed value per key for as long as its origin is a member (until it leaves, or is reaped after
//! a failure) and, for a value with a time to live, until that runs out. Both bounded by
//! `broadcast_log_depth`.

use alloc::borrow::Cow;
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
    /// The encoded broadcast message, as gossiped (for a value with a time to live, without it:
    /// what is left of it is added when the value is sent, see [`Log::lacking`]).
    bytes: Vec<u8>,
    at: Instant,
    /// When a value with a time to live expires.
    expires: Option<Instant>,
}

/// A keyed value whose time to live ran out: `(origin, topic, key)`.
pub(crate) type Expired = (NodeId, String, Vec<u8>);

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

    /// Keeps a delivered (or our own) broadcast. A keyed value replaces the one held for its key;
    /// one with a time to live goes at `expires` ([`Log::expire`] reports it).
    #[allow(clippy::too_many_arguments)]
    pub fn add(
        &mut self,
        origin: &NodeId,
        epoch: u32,
        seq: u64,
        name: Option<(&str, &[u8])>,
        bytes: Vec<u8>,
        now: Instant,
        expires: Option<Instant>,
    ) {
        let name = name.map(|(topic, key)| (String::from(topic), key.to_vec()));
        let keyed = name.is_some();
        let kept = Kept { origin: origin.clone(), epoch, seq, name, bytes, at: now, expires };
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

    /// Forgets events older than `retention`, keyed values whose origin is no longer to be
    /// `kept` (it left, or was reaped), and keyed values whose time to live ran out, which it
    /// returns. Call periodically, and when a time to live runs out.
    pub fn expire(&mut self, now: Instant, retention: Duration, kept: impl Fn(&NodeId) -> bool) -> Vec<Expired> {
        while self.events.front().is_some_and(|k| now.saturating_duration_since(k.at) >= retention) {
            self.events.pop_front();
        }
        let mut expired = Vec::new();
        self.state.retain(|k| {
            if k.expires.is_some_and(|at| at <= now) {
                if let Some((topic, key)) = &k.name {
                    expired.push((k.origin.clone(), topic.clone(), key.clone()));
                }
                return false;
            }
            kept(&k.origin)
        });
        expired
    }

    /// When the first value with a time to live expires.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.state.iter().filter_map(|k| k.expires).min()
    }

    /// The keyed values held, as `(origin, topic, key, encoded broadcast)`: the state every member
    /// converges on.
    pub fn state(&self) -> impl Iterator<Item = (&NodeId, &str, &[u8], &[u8])> {
        self.state.iter().filter_map(|k| {
            let (topic, key) = k.name.as_ref()?;
            Some((&k.origin, topic.as_str(), key.as_slice(), k.bytes.as_slice()))
        })
    }

    /// The kept broadcasts a member `wanted`, keyed values first, then events newest first, up to
    /// `budget` bytes, none whose origin is `asker` (a member never delivers its own broadcasts, of
    /// any life). A value with a time to live goes with what is left of it (none once it ran out).
    /// Call to answer a push-pull or a repair request.
    pub fn lacking(
        &self,
        ledger: &Ledger,
        wanted: Wanted<'_>,
        asker: Option<&NodeId>,
        budget: usize,
        now: Instant,
    ) -> Vec<Cow<'_, [u8]>> {
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
            if !ledger.keyed_differs(entry, &k.origin, k.epoch) {
                continue;
            }
            let bytes = match k.expires {
                None => Cow::Borrowed(&k.bytes[..]),
                Some(at) => {
                    let left = crate::time::duration_millis(at.saturating_duration_since(now));
                    match u32::try_from(left) {
                        Ok(0) => continue,
                        Ok(ms) => Cow::Owned(crate::wire::with_ttl(&k.bytes, ms)),
                        Err(_) => Cow::Owned(crate::wire::with_ttl(&k.bytes, u32::MAX)),
                    }
                }
            };
            if size + bytes.len() <= budget {
                size += bytes.len();
                out.push(bytes);
            }
        }
        if matches!(wanted, Wanted::State) {
            return out;
        }
        for k in self.events.iter().rev() {
            let Some(entry) = find(k) else { continue };
            if Ledger::lacks(entry, k.seq) && size + k.bytes.len() <= budget {
                size += k.bytes.len();
                out.push(Cow::Borrowed(&k.bytes[..]));
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
            log.add(&o, 7, seq, None, alloc::vec![seq as u8], Instant::ZERO, None);
        }
        ours.accept_keyed(&o, 7, 0, ("cursor", b"k"), Instant::ZERO);
        log.add(&o, 7, 0, Some(("cursor", b"k")), alloc::vec![99], Instant::ZERO, None);
        let mut theirs = Ledger::new();
        theirs.accept(&o, 7, 0, true, Instant::ZERO);
        theirs.accept(&o, 7, 2, true, Instant::ZERO);
        let digest = theirs.digest();
        let sent = log.lacking(&ours, Wanted::Lacking(&digest), None, usize::MAX, Instant::ZERO);
        assert_eq!(sent, [&[99u8][..], &[3], &[1]], "the keyed value, then the newest events it lacks");
        assert_eq!(log.lacking(&ours, Wanted::State, None, usize::MAX, Instant::ZERO), [&[99u8][..]]);
        assert_eq!(
            log.lacking(&ours, Wanted::Lacking(&digest), None, 1, Instant::ZERO),
            [&[99u8][..]],
            "the budget is respected"
        );
    }

    #[test]
    fn a_repair_request_gets_only_what_it_lacks_of_the_lives_it_lists() {
        let (o, p) = (id("o"), id("p"));
        let mut ours = Ledger::new();
        let mut log = Log::new(16);
        for (origin, byte) in [(&o, 1u8), (&p, 2)] {
            for seq in 0..2 {
                ours.accept(origin, 7, seq, true, Instant::ZERO);
                log.add(origin, 7, seq, None, alloc::vec![byte, seq as u8], Instant::ZERO, None);
            }
        }
        assert!(
            log.lacking(&ours, Wanted::Listed(&[]), None, usize::MAX, Instant::ZERO).is_empty(),
            "asking for nothing gets nothing"
        );
        let asked = [DigestEntry { origin: p.clone(), epoch: 7, next: 2, holes: alloc::vec![0], keyed: 0 }];
        assert_eq!(log.lacking(&ours, Wanted::Listed(&asked), None, usize::MAX, Instant::ZERO), [&[2u8, 0][..]]);
        assert_eq!(
            log.lacking(&ours, Wanted::Lacking(&asked), None, usize::MAX, Instant::ZERO).len(),
            3,
            "a push-pull gets o's too"
        );
    }

    #[test]
    fn events_expire_and_keyed_values_live_as_long_as_their_origin() {
        let (o, p) = (id("o"), id("p"));
        let mut log = Log::new(16);
        log.add(&o, 1, 0, None, alloc::vec![1], Instant::ZERO, None);
        log.add(&o, 1, 0, Some(("t", b"k")), alloc::vec![2], Instant::ZERO, None);
        log.add(&p, 1, 0, Some(("t", b"k")), alloc::vec![3], Instant::ZERO, None);
        log.add(&o, 1, 1, Some(("t", b"k")), alloc::vec![4], Instant::ZERO, None);
        assert_eq!(log.len(), 3, "a newer value replaces the kept one");
        log.expire(Instant::from_millis(10), Duration::from_millis(10), |n| *n == o);
        assert_eq!(log.len(), 1, "o's value stays while o lives");
    }
}
