//! Membership updates: how alive, suspect and dead claims change what we believe, with incarnation
//! numbers deciding which claim wins.
//!
//! Incarnations are ordered as serial numbers ([`crate::incarnation`]): "newer" means less than 2^31
//! ahead modulo 2^32, "older" the reverse, and raising one wraps from `u32::MAX` to 0. There is no
//! largest incarnation, so no claim can leave a member unable to refute.
//!
//! The rules (SWIM §4.2, with memberlist's and Lifeguard's refinements):
//! - a claim about a member at an incarnation older than the one we hold (or exactly 2^31 away from
//!   it, which is neither older nor newer) is stale and ignored;
//! - `Alive` at a newer incarnation overrides anything; at an equal incarnation it changes nothing
//!   (except filling in metadata that was too large to gossip);
//! - `Suspect` overrides `Alive` at the same or a newer incarnation; further suspects of a suspect
//!   member are confirmations that shrink its timeout;
//! - `Dead`/`Left` override `Alive` and `Suspect` at the same or a newer incarnation;
//! - only a member raises its own incarnation: on hearing it is suspected or dead (refutation), or to
//!   publish new metadata. A refutation takes the incarnation just after the claim's, which is always
//!   newer than the claim, even at `u32::MAX`. A claim older than our own incarnation (one we already
//!   refuted, or an absurd jump more than 2^31 ahead) is answered with our current record instead.
//!   A restarted member that learns it was declared dead therefore takes over with an incarnation
//!   newer than the old one;
//! - an `Alive` claim for a live member's name from another address is a conflict: reported, ignored
//!   (unless it is newer and moves a member between two relays of the fleet, see `relay_move`, or
//!   a conflict policy takes it);
//! - stale news gets answered: a `Suspect` or `Dead` claim that arrives in a packet and is older than
//!   the record we hold of a member we hold alive is answered with that record (an `Alive` at the
//!   newer incarnation), sent straight back to the packet's sender; a stale claim against ourselves
//!   is answered with our current `Alive`, to the sender and to the claimant. A member that missed
//!   every copy of a refutation would otherwise keep, and spread, its stale view until a push-pull.
//!   Answers are rate limited to one per (subject, destination) per probe interval (see `answers`).
//!
//! What this leaves a hostile sender (any peer in a plaintext cluster, a key holder in an encrypted
//! one): it can cause false suspicions and false deaths, each of which the member refutes when the
//! claim reaches it; it cannot make a death permanent, since every claim has a newer successor.
//!
//! Every accepted change is queued for dissemination and reported as an event.

use rand::Rng;

use crate::dissemination::UpdateKey;
use crate::event::Event;
use crate::identity::{Address, NodeId};
use crate::incarnation::{is_at_least, is_newer, next};
use crate::member::{MemberState, Metadata};
use crate::node::CommandError;
use crate::suspicion::Suspicion;
use crate::time::Instant;
use crate::wire::{Alive, Message, MetaField, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION};

use super::recent::RecentUpdates;
use super::timers::Timer;
use super::{Node, Status};

/// Total forward travel of held incarnations after which the filter of recent updates is started
/// afresh: a quarter of the circle (see [`Node::incarnation_moved`]).
const FILTER_TRAVEL_LIMIT: u64 = 1 << 30;

impl<A: Address> Node<A> {
    pub(super) fn local_key(&self) -> UpdateKey {
        UpdateKey::Member(self.local.id.clone())
    }

    /// Our own alive announcement (metadata inline when small enough for gossip).
    pub(super) fn self_alive(&self) -> Message<A> {
        let meta = if self.local.meta.len() <= self.config.max_gossip_meta {
            MetaField::Included(self.local.meta.as_bytes().to_vec())
        } else {
            MetaField::Omitted { len: self.local.meta.len() as u32 }
        };
        Message::Alive(Alive {
            id: self.local.id.clone(),
            addr: self.local.addr.clone(),
            incarnation: self.local.incarnation,
            meta,
            min_version: MIN_PROTOCOL_VERSION,
            max_version: PROTOCOL_VERSION,
        })
    }

    /// Queues our own alive announcement, replacing any earlier one of ours still queued.
    pub(super) fn enqueue_self_alive(&mut self) {
        let bytes = self.self_alive().to_bytes();
        let order = self.next_announcement();
        self.membership_updates.push(Some(self.local_key()), order, bytes);
    }

    /// The queue order of our next announcement about ourselves. Incarnations wrap, so they cannot
    /// order queued announcements; this counter of our own announcements never does.
    pub(super) fn next_announcement(&mut self) -> u64 {
        self.announcements += 1;
        self.announcements
    }

    /// Records that an incarnation we hold (ours or a member's) moved forward from `old` to `new`.
    /// Call after every such move.
    ///
    /// The filter of recent updates skips a byte-identical repeat because applying it again would
    /// change nothing. With serial order that stays true only while the incarnations we hold do not
    /// travel far: a record that was half a circle behind when we first saw it becomes newer once
    /// its member's incarnation has gone round, and a member that refutes past `u32::MAX` can come
    /// back to a value whose record we saw long ago. Once the incarnations we hold have travelled a
    /// quarter of the circle in total since the filter started, the filter is started afresh, so no
    /// record that was less than a quarter circle behind when we saw it is ever skipped as old news.
    /// Honest members move by one per refutation, so in practice only forged jumps trigger this.
    pub(super) fn incarnation_moved(&mut self, old: u32, new: u32) {
        self.incarnation_travel += u64::from(new.wrapping_sub(old));
        if self.incarnation_travel >= FILTER_TRAVEL_LIMIT {
            self.incarnation_travel = 0;
            self.recent = RecentUpdates::new(self.rng.random());
        }
    }

    /// Queues a membership message about `id` for gossip, replacing older news about the same member.
    /// Metadata too large for gossip (an `Alive` learned by push-pull carries it whole) is replaced by
    /// its length, as its owner announces it: receivers fetch it. Left whole, the update would never
    /// fit in a packet and the news would never spread.
    fn enqueue_member(&mut self, id: &NodeId, message: &Message<A>) {
        self.enqueue_member_with(id, message, false);
    }

    /// Queues the news that `id` joined (or came back): sent twice as often as other news, since a
    /// member that misses it would not know the newcomer until anti-entropy.
    fn enqueue_join(&mut self, id: &NodeId, message: &Message<A>) {
        self.enqueue_member_with(id, message, true);
    }

    fn enqueue_member_with(&mut self, id: &NodeId, message: &Message<A>, boost: bool) {
        let bytes = match message {
            Message::Alive(a) => match &a.meta {
                MetaField::Included(meta) if meta.len() > self.config.max_gossip_meta => {
                    let len = meta.len() as u32;
                    Message::Alive(Alive { meta: MetaField::Omitted { len }, ..a.clone() }).to_bytes()
                }
                _ => message.to_bytes(),
            },
            _ => message.to_bytes(),
        };
        let key = Some(UpdateKey::Member(id.clone()));
        if boost {
            self.membership_updates.push_boosted(key, 0, bytes);
        } else {
            self.membership_updates.push(key, 0, bytes);
        }
    }

    /// Moves our incarnation just past `incarnation` (a claim not older than ours) and announces we
    /// are alive. The result is newer than the claim, whatever its value.
    fn refute(&mut self, incarnation: u32) {
        let old_incarnation = self.local.incarnation;
        let base = if is_newer(old_incarnation, incarnation) { old_incarnation } else { incarnation };
        self.local.incarnation = next(base);
        self.incarnation_moved(old_incarnation, self.local.incarnation);
        // A refutation that misses a member lets that member declare us failed: sent twice as often.
        let bytes = self.self_alive().to_bytes();
        let order = self.next_announcement();
        self.membership_updates.push_boosted(Some(self.local_key()), order, bytes);
        self.stats.refutations += 1;
        self.adjust_health(1);
        self.emit(Event::Refuted { incarnation: self.local.incarnation });
    }

    /// Someone suspects us or declared us dead or gone. While we run we have not left in this life, so
    /// a claim that is not older than our incarnation (a previous life's, a mistake, or a forgery) is
    /// refuted, and an older one means our refutation has not reached everyone yet. A claim exactly
    /// 2^31 away is unordered; it is refuted too, since members holding it would not take our
    /// current record as newer.
    ///
    /// A stale claim that came in a packet is also answered directly: our current `Alive` goes to the
    /// packet's sender (`reply_to`) and to the claimant `by`, so those spreading the old news learn
    /// the new record even if our gossip never picks them.
    fn claim_against_us(&mut self, incarnation: u32, by: &NodeId, reply_to: Option<&A>, now: Instant) {
        if self.status != Status::Running {
            return;
        }
        if !is_newer(self.local.incarnation, incarnation) {
            self.refute(incarnation);
        } else {
            self.reannounce_self();
            if let Some(sender) = reply_to {
                self.answer_stale_claim_about_us(sender, by, now);
            }
        }
    }

    /// Someone still spreads a suspicion or death of ours that we already refuted: our refutation
    /// got lost on its way to them. Gossip it again, at the same incarnation.
    fn reannounce_self(&mut self) {
        if !self.membership_updates.contains(&self.local_key()) {
            self.enqueue_self_alive();
        }
    }

    /// Applies an `Alive` claim (from gossip, or from a push-pull record).
    /// Applies an `Alive` claim. `reply_to` is the sender of the packet that carried it, if it came in
    /// one: an `Alive` older than our record is answered there with the record, and one that does not
    /// beat our record of the member's death or departure is answered to the member itself too, so
    /// that a restarted member hears what it must refute.
    pub(super) fn apply_alive(&mut self, a: Alive<A>, reply_to: Option<&A>, now: Instant) {
        if a.id == self.local.id {
            self.alive_about_us(&a, reply_to, now);
            return;
        }
        if a.max_version < MIN_PROTOCOL_VERSION || a.min_version > PROTOCOL_VERSION {
            self.stats.incompatible_members += 1;
            return;
        }
        let (meta, meta_complete) = match &a.meta {
            MetaField::Included(bytes) => (Some(Metadata::new(bytes)), true),
            MetaField::Omitted { len } => (None, *len == 0),
        };
        let announced_meta = match &a.meta {
            MetaField::Included(bytes) => Some(bytes.as_slice()),
            MetaField::Omitted { len: 0 } => Some(&[][..]),
            MetaField::Omitted { .. } => None,
        };
        let versions = (a.min_version, a.max_version);
        // Looked up, not borrowed for a change: repeats of what we know are most of gossip, and a
        // change copies the member's chunk when the table shares it (see `MemberTable`).
        let Some(m) = self.members.get(&a.id) else {
            if !self.admits(&a.id, &a.addr, announced_meta, versions) {
                return;
            }
            let member = self.new_member(
                a.id.clone(),
                a.addr.clone(),
                a.incarnation,
                meta.unwrap_or_default(),
                meta_complete,
                (a.min_version, a.max_version),
                now,
            );
            self.members.insert(member.clone(), &mut self.rng);
            if !meta_complete {
                self.request_meta(&a.id, a.addr.clone());
            }
            let id = a.id.clone();
            self.enqueue_join(&id, &Message::Alive(a));
            self.emit(Event::Joined(member));
            return;
        };
        if a.addr != m.addr && m.state.is_live() && !is_newer(m.incarnation, a.incarnation) {
            // A member moving between relays of the fleet (see `relay_move`), or a conflict policy
            // (see `admission`), may take a newer claim; the update below then moves the member.
            // A claim older than our record is old news whatever address it names (gossip of where
            // a member was before it moved), answered as such below, not a conflict.
            let (known, held) = (m.addr.clone(), m.incarnation);
            let newer = is_newer(a.incarnation, held);
            if newer && self.is_relay_move(&known, &a.addr) {
                self.stats.relay_moves += 1;
                #[cfg(any(feature = "member-digests", test))]
                self.pull_the_other_moves(now, &a.id, known.clone());
            } else if !(newer && self.takes_claim(&a.id, (&known, held), (&a.addr, a.incarnation))) {
                self.stats.address_conflicts += 1;
                let event = Event::AddressConflict { id: a.id.clone(), known, claimed: a.addr };
                self.emit(event);
                return;
            }
        }
        let Some(m) = self.members.get(&a.id) else {
            return;
        };
        if !is_newer(a.incarnation, m.incarnation) && (!m.state.is_live() || a.incarnation != m.incarnation) {
            // Old news (or an alive claim our record of its death or departure beats). A member we
            // hold gone is told too, at the address we hold for it (never at one the claim names:
            // that would let one packet aim our answers anywhere).
            let (id, gone) = (a.id.clone(), !m.state.is_live());
            let addr = (gone && a.addr == m.addr).then(|| m.addr.clone());
            if let Some(sender) = reply_to {
                self.answer_stale_claim(&id, sender, now);
                if let Some(addr) = addr.filter(|addr| addr != sender) {
                    self.answer_stale_claim(&id, &addr, now);
                }
            }
            return;
        }
        if a.incarnation == m.incarnation {
            // Same incarnation: only a missing large metadata value can be filled in.
            if m.state.is_live() && !m.meta_complete {
                if let (Some(meta), true, Some(m)) = (meta, meta_complete, self.members.get_mut(&a.id)) {
                    m.meta = meta;
                    m.meta_complete = true;
                    let member = m.clone();
                    self.emit(Event::Updated(member));
                }
            }
            return;
        }
        // (Only with a policy to ask: the lookup below costs the wasm package bytes otherwise.)
        #[cfg(any(feature = "admission", test))]
        {
            let (old_state, incarnation) = (m.state, m.incarnation);
            if !self.admits(&a.id, &a.addr, announced_meta, versions) {
                // A member we admitted announced a record we refuse: it is out, here. Our own
                // verdict, not news to spread; members that run the same policy reach it themselves.
                if old_state.is_live() {
                    self.members.set_state(&a.id, MemberState::Dead, now);
                    self.suspicions.remove(&a.id);
                    let by = self.local.id.clone();
                    self.emit(Event::Failed { id: a.id, incarnation, by });
                }
                return;
            }
        }
        let Some(m) = self.members.get_mut(&a.id) else {
            return;
        };
        let old_state = m.state;
        // Metadata still being fetched is reported by the fetch's own `Updated`, not here.
        let meta_changed = meta_complete && meta.as_ref().is_some_and(|new| *new != m.meta);
        // A live member moves only when it changed relays or a conflict policy took the claim.
        let moved = m.state.is_live() && m.addr != a.addr;
        let old_incarnation = m.incarnation;
        m.addr = a.addr.clone();
        m.incarnation = a.incarnation;
        m.versions = (a.min_version, a.max_version);
        if let Some(meta) = meta {
            m.meta = meta;
        }
        m.meta_complete = meta_complete;
        self.members.set_state(&a.id, MemberState::Alive, now);
        self.incarnation_moved(old_incarnation, a.incarnation);
        self.suspicions.remove(&a.id);
        if !meta_complete {
            self.request_meta(&a.id, a.addr.clone());
        }
        let id = a.id.clone();
        let incarnation = a.incarnation;
        self.enqueue_member_with(&id, &Message::Alive(a), !old_state.is_live());
        let Some(member) = self.members.get(&id).cloned() else {
            return;
        };
        match old_state {
            MemberState::Dead | MemberState::Left => {
                self.emit(Event::Joined(member));
            }
            MemberState::Suspect => {
                self.emit(Event::Alive { id, incarnation });
                if meta_changed || moved {
                    self.emit(Event::Updated(member));
                }
            }
            MemberState::Alive => {
                if meta_changed || moved {
                    self.emit(Event::Updated(member));
                }
            }
        }
    }

    /// Someone announced us. Our own echo is harmless; a claim that contradicts us is refuted.
    fn alive_about_us(&mut self, a: &Alive<A>, reply_to: Option<&A>, now: Instant) {
        if a.addr != self.local.addr {
            if !is_newer(self.local.incarnation, a.incarnation) {
                self.stats.address_conflicts += 1;
                let event = Event::AddressConflict {
                    id: a.id.clone(),
                    known: self.local.addr.clone(),
                    claimed: a.addr.clone(),
                };
                self.emit(event);
                if self.status == Status::Running {
                    self.refute(a.incarnation);
                }
            }
            return;
        }
        // Our own address at an incarnation not older than ours (other than ours): a previous life of
        // ours. Take over past it.
        if !is_at_least(self.local.incarnation, a.incarnation) && self.status == Status::Running {
            self.refute(a.incarnation);
        } else if is_newer(self.local.incarnation, a.incarnation) {
            // Someone spreads an old record of us (it missed a refutation or new metadata): tell it.
            if let Some(sender) = reply_to {
                let me = self.local.id.clone();
                self.answer_stale_claim(&me, sender, now);
            }
        }
    }

    /// Applies a `Suspect` claim raised by `by` (ourselves after a failed probe). `reply_to` is the
    /// sender of the packet that carried it, if it came in one: a stale claim is answered there.
    pub(super) fn apply_suspect(
        &mut self,
        id: &NodeId,
        incarnation: u32,
        by: NodeId,
        reply_to: Option<&A>,
        now: Instant,
    ) {
        if *id == self.local.id {
            self.claim_against_us(incarnation, &by, reply_to, now);
            return;
        }
        let n = self.cluster_size();
        let Some(m) = self.members.get(id) else {
            return;
        };
        if is_newer(m.incarnation, incarnation) {
            let alive = m.state == MemberState::Alive;
            if let (true, Some(sender)) = (alive, reply_to) {
                self.answer_stale_claim(id, sender, now);
            }
            return;
        }
        if !is_at_least(incarnation, m.incarnation) || !m.state.is_live() {
            return;
        }
        if m.state == MemberState::Suspect && incarnation == m.incarnation {
            let Some(s) = self.suspicions.get_mut(id) else {
                return;
            };
            if s.incarnation == incarnation && s.confirm(&by) {
                let deadline = s.deadline();
                self.timers.set(deadline, Timer::Suspicion { id: id.clone(), incarnation });
                // Confirmations are news too: they help others shrink their timeouts.
                self.enqueue_member(id, &Message::Suspect { id: id.clone(), incarnation, from: by });
            }
            return;
        }
        let old_incarnation = m.incarnation;
        if let Some(m) = self.members.get_mut(id) {
            m.incarnation = incarnation;
        }
        self.members.set_state(id, MemberState::Suspect, now);
        self.incarnation_moved(old_incarnation, incarnation);
        let suspicion = Suspicion::new(&self.config, n, incarnation, by.clone(), now);
        if self.config.suspect_checks {
            // Our own check of the suspect: from half to three quarters of the earliest deadline
            // (jittered, so that the members that heard the suspicion together do not all ping at
            // once), leaving a quarter of it for the answer. The timer finds the suspicion not due.
            let half = suspicion.min / 2;
            let check_at = now + half + self.jitter(half / 2);
            self.timers.set(check_at, Timer::Suspicion { id: id.clone(), incarnation });
        }
        self.timers.set(suspicion.deadline(), Timer::Suspicion { id: id.clone(), incarnation });
        self.suspicions.insert(id.clone(), suspicion);
        // The suspect must hear of it to refute in time: sent twice as often as other news.
        self.enqueue_member_with(id, &Message::Suspect { id: id.clone(), incarnation, from: by.clone() }, true);
        self.emit(Event::Suspected { id: id.clone(), incarnation, by });
    }

    /// A suspicion timer fired: check the suspect ourselves if that is due (see
    /// [`Node::check_suspect`]), declare it dead if the suspicion still stands and is due.
    pub(super) fn on_suspicion_timer(&mut self, id: &NodeId, incarnation: u32, now: Instant) {
        let still_suspect = self.members.get(id).is_some_and(|m| m.state == MemberState::Suspect);
        let Some(s) = self.suspicions.get(id).filter(|s| s.incarnation == incarnation && still_suspect) else {
            return;
        };
        if s.deadline() > now {
            // Only the check's timers fire before the deadline: a confirmation moves the deadline
            // earlier, never later, and a deferred accusation is due when its timer fires.
            self.check_suspect(id, incarnation, now);
            return;
        }
        if let Some(later) = self.accusation_deferred_to(now) {
            // Our own link is or was just down: the refutation may be on its way (see `link`).
            self.timers.set(later, Timer::Suspicion { id: id.clone(), incarnation });
            return;
        }
        self.stats.failures_declared += 1;
        let me = self.local.id.clone();
        self.apply_dead(id, incarnation, me, false, None, now);
    }

    /// Applies a `Dead` claim (failure declared by `by`) or, with `left`, a graceful departure.
    /// `reply_to` is the sender of the packet that carried it, if it came in one: a stale claim is
    /// answered there.
    pub(super) fn apply_dead(
        &mut self,
        id: &NodeId,
        incarnation: u32,
        by: NodeId,
        left: bool,
        reply_to: Option<&A>,
        now: Instant,
    ) {
        if *id == self.local.id {
            self.claim_against_us(incarnation, &by, reply_to, now);
            return;
        }
        let Some(m) = self.members.get(id) else {
            return;
        };
        if is_newer(m.incarnation, incarnation) {
            let alive = m.state == MemberState::Alive;
            if let (true, Some(sender)) = (alive, reply_to) {
                self.answer_stale_claim(id, sender, now);
            }
            return;
        }
        if !is_at_least(incarnation, m.incarnation) {
            return;
        }
        let new_state = if left { MemberState::Left } else { MemberState::Dead };
        if !m.state.is_live() {
            // Already gone; a leave may still upgrade a failure to a departure: the member's own
            // leave that arrived late, or an operator's `force_leave`. It is reported (the member
            // is not coming back, and nobody contacts it any more) and spread like any news.
            if left && m.state == MemberState::Dead {
                let old_incarnation = m.incarnation;
                if let Some(m) = self.members.get_mut(id) {
                    m.incarnation = incarnation;
                }
                self.members.set_state(id, new_state, now);
                self.incarnation_moved(old_incarnation, incarnation);
                self.enqueue_member(id, &Message::Dead { id: id.clone(), incarnation, from: by, left });
                self.emit(Event::Left { id: id.clone(), incarnation });
            }
            return;
        }
        let (old_incarnation, meta) = (m.incarnation, m.meta.clone());
        if let Some(m) = self.members.get_mut(id) {
            m.incarnation = incarnation;
        }
        self.members.set_state(id, new_state, now);
        self.incarnation_moved(old_incarnation, incarnation);
        self.suspicions.remove(id);
        // A relay's own member: the members it carried may be left behind (see `relay_move`).
        self.member_gone(&meta);
        // Records of the member from before are stale now and must be decoded when they come back (a
        // restarted member's alive is answered with this death): start a fresh filter of repeats.
        self.recent = RecentUpdates::new(self.rng.random());
        self.enqueue_member(id, &Message::Dead { id: id.clone(), incarnation, from: by.clone(), left });
        if left {
            self.emit(Event::Left { id: id.clone(), incarnation });
        } else {
            self.emit(Event::Failed { id: id.clone(), incarnation, by });
        }
    }

    /// Turns a failed member into one that left, on the operator's word ([`Node::force_leave`]):
    /// a departure at the incarnation it failed at, from us, queued for gossip. Members that hold
    /// it failed or still alive at that incarnation take the departure; push-pull carries it to the
    /// rest. Nobody contacts a departed member again, and it is reaped on the usual schedule.
    pub(super) fn force_left(&mut self, id: &NodeId, now: Instant) -> Result<(), CommandError> {
        let Some(m) = self.members.get(id) else {
            return Err(CommandError::UnknownMember(id.clone()));
        };
        match m.state {
            MemberState::Left => return Ok(()),
            MemberState::Dead => {}
            MemberState::Alive | MemberState::Suspect => return Err(CommandError::NotFailed(id.clone())),
        }
        // The same upgrade as a late leave of its own, from us, at the incarnation it failed at.
        let (incarnation, from) = (m.incarnation, self.local.id.clone());
        self.stats.forced_leaves += 1;
        self.apply_dead(id, incarnation, from, true, None, now);
        Ok(())
    }
}
