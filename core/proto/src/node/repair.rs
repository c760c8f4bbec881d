//! Broadcast anti-entropy: the broadcast part of push-pulls (what the asker lacks, and digests),
//! repair requests for holes and their answers, and giving up holes that can no longer be repaired.
//! The model is in the `broadcast` module docs; this is how the node drives it.

use alloc::vec::Vec;

use rand::Rng;

use crate::broadcast::Wanted;
use crate::event::Event;
use crate::identity::{Address, NodeId};
use crate::member::MemberState;
use crate::time::Instant;
use crate::wire::{begin_packet, decode_message, Decoded, DigestEntry, Message, Reader, Writer, PROTOCOL_VERSION};

use super::timers::Timer;
use super::{Node, Status, TransmitKind};

/// The member a push-pull answer goes to: its name, whether it joins, the broadcast digest its
/// request carried (none from a member new here), and the member digest (salt and bucket hashes)
/// that stands for its view in a periodic request (see `member_digest`).
#[derive(Clone, Copy, Debug)]
pub(super) struct Asker<'a> {
    pub id: &'a NodeId,
    pub join: bool,
    pub digest: Option<&'a [DigestEntry]>,
    #[cfg(any(feature = "member-digests", test))]
    pub members: Option<(u32, &'a [u32])>,
    /// The members whose records the asker wants, when it lists them instead of a digest.
    #[cfg(any(feature = "member-digests", test))]
    pub wanted: Option<&'a [NodeId]>,
    /// Bytes of the frame that asked (plaintext).
    #[cfg(any(feature = "member-digests", test))]
    pub size: usize,
}

/// Stranger lives kept at most; past this, what a digest lists for a stranger is given up at once.
const MAX_STRANGER_LIVES: usize = 256;

/// A digest entry for a life whose origin was not a member when it arrived: what the sender had
/// of it. News of a join travels by gossip like the joiner's first broadcasts, and often after
/// them, so a digest can list a life before its origin's alive record reaches us. Learned once the
/// origin is a member, or given up (and reported) after a housekeeping period.
#[derive(Debug)]
pub(super) struct StrangerLife {
    origin: NodeId,
    epoch: u32,
    next: u64,
    since: Instant,
}

impl<A: Address> Node<A> {
    /// Writes the broadcast part of a push-pull into `w`, within `budget` bytes in all: for an
    /// answer, the broadcasts the asker lacks; then our digest (so the other side learns of
    /// broadcasts it never heard about, and for a request, so the answer brings what we lack). A
    /// request from a member new here carries nothing: it has no past to compare.
    pub(super) fn write_broadcast_state(&self, w: &mut Writer, asker: Option<Asker<'_>>, budget: usize) {
        if let Some(asker) = asker {
            let wanted = match asker.digest {
                // New here in this life: the keyed state, not the past events.
                None => Wanted::State,
                // The same for a member that joins knowing no broadcast (older versions send an
                // empty digest then); one that re-announces itself gets what its digest lacks.
                Some([]) if asker.join => Wanted::State,
                Some(digest) => Wanted::Lacking(digest),
            };
            let room = budget.saturating_sub(w.len()) / 2;
            let lacking = self.log.lacking(&self.ledger, wanted, Some(asker.id), room, self.now);
            for bytes in lacking {
                w.raw(&bytes);
            }
        } else if !self.join.baseline {
            return;
        }
        let mut digest = self.ledger.digest();
        // The digest goes last: what the answer carried is received before its holes are opened.
        let room = budget.saturating_sub(w.len());
        let mut encoded = Message::<A>::BroadcastDigest { entries: core::mem::take(&mut digest) }.to_bytes();
        if encoded.len() > room {
            // Cut short (rare: thousands of origins over a small relay frame); the rest waits.
            if let Message::BroadcastDigest { mut entries } = decode_digest::<A>(&encoded) {
                while !entries.is_empty() && encoded.len() > room {
                    let keep = entries.len() / 2;
                    entries.truncate(keep);
                    encoded = Message::<A>::BroadcastDigest { entries: entries.clone() }.to_bytes();
                }
            }
        }
        if encoded.len() <= room {
            w.raw(&encoded);
        }
    }

    /// Called once every message of a frame was handled: learns from the frame's digest, answers a
    /// push-pull request with what the asker lacks, and a repair request likewise.
    pub(super) fn finish_frame(&mut self, now: Instant) {
        let frame = core::mem::take(&mut self.frame);
        if frame.digest.is_some() {
            // Broadcasts that came with a digest came from a push-pull or a repair.
            self.stats.broadcasts_repaired += frame.delivered;
        }
        let new_here = frame.digest.as_deref().map_or(true, <[DigestEntry]>::is_empty);
        if matches!(frame.answer, Some((_, true, _))) && new_here && !self.join.baseline {
            // A member new in this life (its request carries no digest, or an empty one from older
            // versions) joins through us before we knew where the cluster's broadcasts stood: we
            // are a seed that started alone. It brings no past, and whatever anyone sends from now
            // on is sent after we were here: all of it is ours.
            self.join.baseline = true;
        }
        if let Some(digest) = &frame.digest {
            // The first push-pull digest of our life says where the cluster stood when we arrived.
            let arriving = !self.join.baseline;
            for e in digest {
                if e.origin == self.local.id {
                    continue;
                }
                // Holes are kept for members only (see `Ledger::learn`). A life whose origin we do
                // not know yet waits a while: a joiner's first broadcasts often outrun the news
                // of its join.
                let member = self.members.get(&e.origin).is_some();
                if member || arriving || !self.defer_stranger_life(e, now) {
                    self.ledger.learn(&e.origin, e.epoch, e.next, arriving, member, now);
                }
            }
            self.join.baseline |= frame.push_pull;
        }
        #[cfg(any(feature = "member-digests", test))]
        if (frame.member_digest.is_some() || frame.wanted.is_some()) && frame.answer.is_none() {
            // A member digest (or a list of wanted records) stands for a request's view: alone it
            // asks nothing.
            self.stats.member_digests_unused += 1;
        }
        if let Some((to, join, id)) = &frame.answer {
            let asker = Asker {
                id,
                join: *join,
                digest: frame.digest.as_deref(),
                #[cfg(any(feature = "member-digests", test))]
                members: frame.member_digest.as_ref().map(|(salt, hashes)| (*salt, hashes.as_slice())),
                #[cfg(any(feature = "member-digests", test))]
                wanted: frame.wanted.as_deref(),
                #[cfg(any(feature = "member-digests", test))]
                size: frame.size,
            };
            self.send_push_pull_answering(to.clone(), *join, Some(asker));
        }
        if let Some(to) = frame.found.filter(|_| !self.join.baseline) {
            // Found by a member (a seed that started, or came back, without joining): ask it at once
            // where the cluster's broadcasts stand, so that what is sent from now on is all ours.
            self.send_push_pull_answering(to, true, None);
        }
        if let Some((to, asked)) = frame.pull.filter(|_| frame.answer.is_none()) {
            self.answer_repair(to, &asked);
        }
    }

    /// Keeps a digest entry whose origin is not a member (yet) for [`Node::settle_stranger_lives`],
    /// unless it says nothing new. False when there is no room: the caller gives up what it lacks
    /// at once.
    fn defer_stranger_life(&mut self, e: &DigestEntry, now: Instant) -> bool {
        if self.ledger.reached(&e.origin, e.epoch, e.next) {
            // Nothing to learn (a life we gave up already, listed back to us): nothing to wait for.
            return true;
        }
        let lives = &mut self.stranger_lives;
        if let Some(s) = lives.iter_mut().find(|s| s.origin == e.origin && s.epoch == e.epoch) {
            s.next = s.next.max(e.next);
        } else if lives.len() < MAX_STRANGER_LIVES {
            lives.push(StrangerLife { origin: e.origin.clone(), epoch: e.epoch, next: e.next, since: now });
        } else {
            return false;
        }
        true
    }

    /// Learns the deferred digest entries whose origin has become a member (holes open, and are
    /// repaired like any), and gives up, reported, those still strangers after a housekeeping
    /// period: a name forgotten while we were cut off, or one a forged digest made up. Called
    /// every gossip round.
    pub(super) fn settle_stranger_lives(&mut self, now: Instant) {
        if self.stranger_lives.is_empty() {
            return;
        }
        let patience = self.config.housekeeping_period();
        let mut lives = core::mem::take(&mut self.stranger_lives);
        lives.retain(|s| {
            let member = self.members.get(&s.origin).is_some();
            let due = member || now.saturating_duration_since(s.since) >= patience;
            if due {
                self.ledger.learn(&s.origin, s.epoch, s.next, false, member, now);
            }
            !due
        });
        self.stranger_lives = lives;
    }

    /// Asks a member for the broadcasts we have holes in, once they have had a few gossip rounds to
    /// arrive on their own, at most once per protocol period: a hole closes long before a push-pull
    /// period ends, and members that keep broadcasts a shorter time than we do still hold them.
    pub(super) fn pull_repairs(&mut self, now: Instant) {
        if self.status != Status::Running || now < self.last_repair + self.config.probe_interval {
            return;
        }
        let settled = self.config.gossip_interval * 4;
        let Some(origin) = self.ledger.origin_with_hole_older_than(now, settled) else { return };
        // The origin keeps what it sent; anyone else may hold it too.
        let origin_addr = self.members.get(&origin).filter(|m| m.state == MemberState::Alive).map(|m| m.addr.clone());
        let random = self.random_alive_addr();
        let to = match origin_addr {
            Some(a) if self.rng.random_bool(0.5) => Some(a),
            _ => random,
        };
        let Some(to) = to else { return };
        self.last_repair = now;
        self.stats.broadcast_pulls_sent += 1;
        let msg = Message::<A>::BroadcastPull { entries: self.ledger.digest_of_holes() };
        self.send_reliable_message(to, &msg);
    }

    /// Answers a repair request: the broadcasts we keep of the lives it lists that the asker lacks,
    /// and our own view of those lives (so it learns how far they reached). Nothing else, and nothing
    /// at all when we know none of them: the answer never outgrows what was asked.
    fn answer_repair(&mut self, to: A, asked: &[DigestEntry]) {
        let limit = to.reliable_limit().map_or(self.config.max_reliable_size, |l| l.min(self.config.max_reliable_size));
        let budget = limit.saturating_sub(64 + crate::security::OVERHEAD);
        let ours: Vec<DigestEntry> = self
            .ledger
            .digest()
            .into_iter()
            .filter(|e| asked.iter().any(|a| a.origin == e.origin && a.epoch == e.epoch))
            .collect();
        if ours.is_empty() {
            return;
        }
        let mut w = Writer::with_capacity(256);
        begin_packet(&mut w, PROTOCOL_VERSION);
        for bytes in self.log.lacking(&self.ledger, Wanted::Listed(asked), None, budget / 2, self.now) {
            w.raw(&bytes);
        }
        let digest = Message::<A>::BroadcastDigest { entries: ours }.to_bytes();
        if w.len() + digest.len() <= budget {
            w.raw(&digest);
        }
        self.push_transmit(to, w.into_vec(), true, TransmitKind::PushPull);
    }

    /// Gives up broadcast holes that can no longer be repaired (reporting them) and forgets
    /// broadcasts kept longer than `broadcast_retention`.
    pub(super) fn expire_broadcasts(&mut self, now: Instant) {
        let retention = self.config.broadcast_retention;
        // A departed origin is forgotten once reaped and quiet for twice the reap time and a
        // retention: longer than a partition after which a member cut off still hears, from the
        // digests of the other side, of the broadcasts it missed.
        let quiet = self.config.dead_member_reap_time * 2 + retention;
        let (members, me) = (&self.members, &self.local.id);
        self.ledger.forget_quiet(now, quiet, |id| id == me || members.get(id).is_some());
        let given_up = self.ledger.expire(now, retention);
        self.stats.broadcasts_missed = self.stats.broadcasts_missed.saturating_add(given_up.unattributed);
        for (origin, epoch, count) in given_up.per_life {
            self.stats.broadcasts_missed = self.stats.broadcasts_missed.saturating_add(count);
            self.emit(Event::BroadcastsMissed { origin, epoch, count });
        }
        self.expire_state(now);
    }

    /// Forgets keyed values whose origin left or was reaped (a failed one may come back: its
    /// values stay until it is reaped) and reports those whose time to live ran out; sets the
    /// timer for the next to run out. Call at housekeeping and when that timer fires.
    pub(super) fn expire_state(&mut self, now: Instant) {
        let retention = self.config.broadcast_retention;
        let (members, me) = (&self.members, &self.local.id);
        let kept = |id: &NodeId| id == me || members.get(id).is_some_and(|m| m.state != MemberState::Left);
        for (origin, topic, key) in self.log.expire(now, retention, kept) {
            self.stats.keyed_values_expired += 1;
            self.emit(Event::StateExpired { origin, topic, key });
        }
        // The pending timer stands while it is still ahead (housekeeping runs this too).
        if self.state_expiry_at.is_some_and(|at| at <= now) {
            self.state_expiry_at = None;
        }
        if let Some(at) = self.log.next_expiry() {
            self.schedule_state_expiry(at);
        }
    }

    /// Makes sure [`Node::expire_state`] runs at `at` (one timer, the earliest, at a time).
    pub(super) fn schedule_state_expiry(&mut self, at: Instant) {
        if self.state_expiry_at.map_or(true, |pending| at < pending) {
            self.state_expiry_at = Some(at);
            self.timers.set(at, Timer::StateExpiry);
        }
    }
}

/// Decodes a digest message we just encoded (to cut it short).
fn decode_digest<A: Address>(bytes: &[u8]) -> Message<A> {
    match decode_message::<A>(&mut Reader::new(bytes)) {
        Ok(Decoded::Message(m)) => m,
        _ => Message::BroadcastDigest { entries: Vec::new() },
    }
}
