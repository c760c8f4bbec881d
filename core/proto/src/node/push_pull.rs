//! Push-pull anti-entropy, joining and re-announcing.
//!
//! Gossip is probabilistic: a member that was partitioned away, restarted, or simply unlucky can miss
//! updates. Push-pull repairs that: two members exchange their membership over a reliable transmit
//! and merge each other's records with the usual incarnation rules. It runs at join (with every
//! seed, the whole view both ways), periodically with one random member (less often in large
//! clusters), and as the re-announce that heals partitions: every `reannounce_interval` the node
//! pushes its whole view to a seed that is not a live member and to a member it believes dead. A
//! member that hears it was declared dead refutes, the other side learns it is alive, and both
//! halves merge without operator action. The periodic exchange and the catch-up rounds send a
//! digest of the asker's view instead of the view, and get back only the records that differ (see
//! `member_digest`), unless `Config::push_pull_digests` is off.
//!
//! A remote `Dead` record is merged as a suspicion (the remote may be the partitioned one), which
//! makes the accused member refute if it is in fact alive.

use alloc::vec::Vec;

use rand::seq::IndexedRandom;
#[cfg(any(feature = "member-digests", test))]
use rand::Rng;

use crate::event::Event;
use crate::identity::{Address, NodeId};
use crate::member::{Member, MemberState};
use crate::time::Instant;
use crate::wire::{begin_packet, bytes_len, Alive, MemberRecord, Message, MetaField, Writer, PROTOCOL_VERSION};

#[cfg(any(feature = "member-digests", test))]
use super::member_digest::{bucket_count, Differing};
use super::repair::Asker;
use super::timers::Timer;
use super::{CommandError, Node, Status, TransmitKind};

/// Push-pulls a member runs with random members right after its first join (after 1, 2 and 4
/// protocol periods): two members that joined a moment apart through different seeds may each have
/// missed the news of the other, and would otherwise wait for a periodic push-pull. A member that
/// moves between relays runs them too (`Node::move_to`).
pub const CATCH_UP_ROUNDS: u32 = 3;

/// Which records of our view a push-pull frame carries (our own always, first).
#[derive(Clone, Debug)]
enum RecordFilter {
    /// Every record (joins, re-announces, answers to whole-view requests).
    All,
    /// Our own record only (a digest request, an answer to a request for our record).
    OnlySelf,
    /// The records a member digest showed differ (see `member_digest`).
    #[cfg(any(feature = "member-digests", test))]
    Differing(Differing),
    /// The records the asker listed (a pull of the moves of a burst, see `relay_move`).
    #[cfg(any(feature = "member-digests", test))]
    Wanted(Vec<NodeId>),
}

impl RecordFilter {
    /// True for a member's record this filter lets through.
    #[cfg_attr(not(any(feature = "member-digests", test)), allow(unused_variables))]
    fn passes(&self, id: &NodeId) -> bool {
        match self {
            RecordFilter::All => true,
            RecordFilter::OnlySelf => false,
            #[cfg(any(feature = "member-digests", test))]
            RecordFilter::Differing(d) => d.passes(id),
            #[cfg(any(feature = "member-digests", test))]
            RecordFilter::Wanted(names) => names.contains(id),
        }
    }
}

impl<A: Address> Node<A> {
    pub(super) fn start_join(&mut self, seeds: &[A], now: Instant) -> Result<(), CommandError> {
        if self.status != Status::Running {
            return Err(CommandError::NotRunning);
        }
        let seeds: Vec<A> = seeds.iter().filter(|s| **s != self.local.addr).cloned().collect();
        if seeds.is_empty() {
            return Err(CommandError::NoSeeds);
        }
        for seed in &seeds {
            if !self.join.seeds.contains(seed) {
                self.join.seeds.push(seed.clone());
            }
            self.send_push_pull(seed.clone(), true);
        }
        self.join.asked = seeds;
        self.join.attempt += 1;
        self.join.pending = true;
        self.timers.set(now + self.config.join_timeout, Timer::JoinTimeout { attempt: self.join.attempt });
        Ok(())
    }

    pub(super) fn on_join_timeout(&mut self, attempt: u32) {
        if attempt == self.join.attempt && self.join.pending {
            self.join.pending = false;
            let seeds = self.join.seeds.clone();
            self.emit(Event::JoinFailed { seeds });
        }
    }

    /// The state our own record says: left once we leave, alive until then. Push-pull records and
    /// member digests must say the same.
    pub(super) fn own_record_state(&self) -> MemberState {
        if self.status == Status::Leaving {
            MemberState::Left
        } else {
            MemberState::Alive
        }
    }

    /// Our view as `filter` selects it, ourselves always first, cut short (live members first) if it
    /// would exceed the reliable frame limit.
    fn state_records(&self, filter: &RecordFilter, limit: usize) -> Vec<MemberRecord<A>> {
        let only_self = matches!(filter, RecordFilter::OnlySelf);
        let capacity = if matches!(filter, RecordFilter::All) { self.members.len() + 1 } else { 8 };
        let mut records = Vec::with_capacity(capacity);
        let local_state = self.own_record_state();
        records.push(MemberRecord {
            id: self.local.id.clone(),
            addr: self.local.addr.clone(),
            incarnation: self.local.incarnation,
            state: local_state,
            meta: self.local.meta.as_bytes().to_vec(),
            min_version: crate::wire::MIN_PROTOCOL_VERSION,
            max_version: PROTOCOL_VERSION,
        });
        if only_self {
            return records;
        }
        // Our own record counts against the limit too: with metadata near `max_meta_size` it is a
        // good part of a small (relay) frame.
        let own = &records[0];
        let own_size = own.id.encoded_len() + own.addr.encoded_len() + bytes_len(own.meta.len()) + 10;
        let budget = limit.saturating_sub(256 + crate::security::OVERHEAD + own_size);
        let mut size = 0usize;
        let live_first = self.members.iter().filter(|m| m.state.is_live());
        let then_gone = self.members.iter().filter(|m| !m.state.is_live());
        for m in live_first.chain(then_gone).filter(|m| filter.passes(&m.id)) {
            let approx = m.id.encoded_len() + m.addr.encoded_len() + bytes_len(m.meta.len()) + 10;
            if size + approx > budget {
                break;
            }
            size += approx;
            records.push(MemberRecord {
                id: m.id.clone(),
                addr: m.addr.clone(),
                incarnation: m.incarnation,
                state: m.state,
                meta: m.meta.as_bytes().to_vec(),
                min_version: m.versions.0,
                max_version: m.versions.1,
            });
        }
        records
    }

    /// Sends our state to `to`: our member records, then, for a request, our broadcast digest (so
    /// the answer brings what we lack; none while we are new here), or, for an answer, the
    /// broadcasts the asker's digest lacks followed by our own digest (so the asker learns of
    /// broadcasts it never heard about).
    fn send_push_pull(&mut self, to: A, join: bool) {
        self.send_push_pull_frame(to, join, None, false);
    }

    /// A periodic or catch-up push-pull request: our digest instead of our view, unless
    /// `Config::push_pull_digests` is off or we are new here.
    pub(super) fn send_push_pull_digest(&mut self, to: A) {
        self.send_push_pull_frame(to, false, None, self.config.push_pull_digests);
    }

    /// Sends the answer to a push-pull request (or a request, when `asker` is `None`).
    pub(super) fn send_push_pull_answering(&mut self, to: A, join: bool, asker: Option<Asker<'_>>) {
        self.send_push_pull_frame(to, join, asker, false);
    }

    /// A push-pull request for the records of `names` (at most [`MAX_WANTED_RECORDS`]) alone: our
    /// own record and the list, answered with the partner's own record and its records of them.
    /// Sent to pull the moves of a burst we missed (see `relay_move`); a member new here asks as a
    /// member that joins instead.
    ///
    /// [`MAX_WANTED_RECORDS`]: crate::wire::MAX_WANTED_RECORDS
    #[cfg(any(feature = "member-digests", test))]
    pub(super) fn send_push_pull_wanting(&mut self, to: A, names: Vec<NodeId>) {
        if !self.join.baseline || names.is_empty() {
            return self.send_push_pull_digest(to);
        }
        let members = self.state_records(&RecordFilter::OnlySelf, self.config.max_reliable_size);
        let msg = Message::PushPull { from: self.local.id.clone(), join: false, reply: false, members };
        let mut w = Writer::with_capacity(256);
        begin_packet(&mut w, PROTOCOL_VERSION);
        msg.encode(&mut w);
        Message::<A>::WantedRecords { names }.encode(&mut w);
        let bytes = w.into_vec();
        let datagram = bytes.len() <= self.packet_budget();
        if datagram {
            self.stats.push_pulls_as_packets += 1;
        }
        self.push_transmit(to, bytes, !datagram, TransmitKind::PushPull);
        self.stats.push_pulls_sent += 1;
    }

    /// Sends a push-pull request (`asker` is `None`), with our digest instead of our view when
    /// `digest` is set, or the answer to one.
    fn send_push_pull_frame(&mut self, to: A, join: bool, asker: Option<Asker<'_>>, digest: bool) {
        let reply = asker.is_some();
        // New here (in this life): we ask as a member that joins, the past events are not ours.
        let join = join || (!reply && !self.join.baseline);
        let digest = digest && !join && !reply && cfg!(any(feature = "member-digests", test));
        // Some paths (a relay) carry smaller reliable frames than we could: fit the state to them.
        let limit = to.reliable_limit().map_or(self.config.max_reliable_size, |l| l.min(self.config.max_reliable_size));
        #[cfg(any(feature = "app-state", test))]
        let records_limit = limit - self.local_state_room(limit);
        #[cfg(not(any(feature = "app-state", test)))]
        let records_limit = limit;
        let (filter, member_digest) = self.records_to_send(digest, asker, limit);
        let members = self.state_records(&filter, records_limit);
        let msg = Message::PushPull { from: self.local.id.clone(), join, reply, members };
        let mut w = Writer::with_capacity(256);
        begin_packet(&mut w, PROTOCOL_VERSION);
        msg.encode(&mut w);
        // Our application state rides right after the push-pull, whose sender it belongs to.
        #[cfg(any(feature = "app-state", test))]
        self.write_local_state(&mut w, limit);
        if let Some(member_digest) = member_digest {
            member_digest.encode(&mut w);
        }
        let budget = limit.saturating_sub(64 + crate::security::OVERHEAD);
        let datagram_answer = asker.as_ref().and_then(|a| Self::datagram_answer_limit(a));
        self.write_broadcast_state(&mut w, asker, budget);
        let bytes = w.into_vec();
        let datagram =
            bytes.len() <= self.packet_budget() && (digest || datagram_answer.is_some_and(|max| bytes.len() <= max));
        if datagram {
            self.stats.push_pulls_as_packets += 1;
        }
        self.push_transmit(to, bytes, !datagram, TransmitKind::PushPull);
        self.stats.push_pulls_sent += 1;
    }

    /// How large the answer to `asker` may be to go as a plain packet, if it may: a periodic
    /// push-pull with member digests is two datagrams when both fit one, instead of a reliable
    /// frame each way (over TCP, a connection's dozen segments). A lost one costs a push-pull
    /// period of anti-entropy, which is what the next period is for; joins and whole views stay
    /// reliable. The answer is never larger than the request was, so that a request forged from
    /// another member's address reflects no more bytes to it than it cost.
    #[cfg(any(feature = "member-digests", test))]
    fn datagram_answer_limit(asker: &Asker<'_>) -> Option<usize> {
        ((asker.members.is_some() || asker.wanted.is_some()) && !asker.join).then_some(asker.size)
    }

    #[cfg(not(any(feature = "member-digests", test)))]
    fn datagram_answer_limit(_: &Asker<'_>) -> Option<usize> {
        None
    }

    /// What a push-pull frame carries of our view: for a digest request, our record and the
    /// digest; for an answer to one, the records that differ; otherwise all.
    #[cfg(any(feature = "member-digests", test))]
    fn records_to_send(
        &mut self,
        digest: bool,
        asker: Option<Asker<'_>>,
        limit: usize,
    ) -> (RecordFilter, Option<Message<A>>) {
        if digest {
            let buckets = bucket_count(self.members.len() + 1, limit);
            let salt: u32 = self.rng.random();
            self.stats.member_digests_sent += 1;
            let hashes = self.member_digest(salt, buckets);
            return (RecordFilter::OnlySelf, Some(Message::MemberDigest { salt, hashes }));
        }
        if let Some(names) = asker.as_ref().filter(|a| !a.join).and_then(|a| a.wanted) {
            return (RecordFilter::Wanted(names.to_vec()), None);
        }
        match asker.and_then(|a| a.members.filter(|_| !a.join).map(|m| (a.id, m))) {
            Some((id, (salt, theirs))) => (RecordFilter::Differing(self.differing_buckets(id, salt, theirs)), None),
            None => (RecordFilter::All, None),
        }
    }

    /// Without member digests every push-pull carries our whole view.
    #[cfg(not(any(feature = "member-digests", test)))]
    fn records_to_send(&mut self, _: bool, _: Option<Asker<'_>>, _: usize) -> (RecordFilter, Option<Message<A>>) {
        (RecordFilter::All, None)
    }

    pub(super) fn send_reliable_message(&mut self, to: A, msg: &Message<A>) {
        let mut w = Writer::with_capacity(256);
        begin_packet(&mut w, PROTOCOL_VERSION);
        msg.encode(&mut w);
        self.push_transmit(to, w.into_vec(), true, TransmitKind::PushPull);
    }

    pub(super) fn handle_push_pull(
        &mut self,
        sender: NodeId,
        join: bool,
        reply: bool,
        records: Vec<MemberRecord<A>>,
        from: &A,
        now: Instant,
    ) {
        self.stats.push_pulls_received += 1;
        // A member the admission policy refuses gets nothing from us, and we take nothing from it:
        // not its view, not the answer a join waits for.
        if let Some(own) = records.first().filter(|r| r.id == sender && r.id != self.local.id) {
            if !self.admits(&own.id, &own.addr, Some(&own.meta), (own.min_version, own.max_version)) {
                return;
            }
        }
        self.frame.push_pull = true;
        #[cfg(any(feature = "app-state", test))]
        self.expect_remote_state(&sender, join);
        // The address the sender advertises for itself (its first record), for a seed that
        // answers from another address than the one it was asked at.
        let advertised = records.first().filter(|r| r.id == sender).map(|r| r.addr.clone());
        if !reply {
            // Answered once the whole frame is read: the asker's digest follows this message.
            self.frame.answer = Some((from.clone(), join, sender.clone()));
        }
        for record in records {
            self.merge_record(&sender, record, now);
        }
        if !self.join.joined {
            self.frame.found = Some(from.clone());
        }
        let answers_the_join = self.join.pending
            && (!self.join.joined
                || self.join.asked.contains(from)
                || advertised.as_ref().is_some_and(|a| self.join.asked.contains(a)));
        if reply && (answers_the_join || !self.join.joined) {
            if !self.join.joined {
                // Members that started together may each have joined before hearing of the other:
                // catch up with a few random members soon instead of waiting a push-pull period.
                self.timers.set(now + self.config.probe_interval, Timer::CatchUp { round: 1 });
            }
            self.join.pending = false;
            self.join.joined = true;
            self.emit(Event::JoinSucceeded { via: from.clone() });
        } else if !reply {
            // Someone found us: we are part of a cluster now.
            self.join.joined = true;
        }
    }

    fn merge_record(&mut self, sender: &NodeId, r: MemberRecord<A>, now: Instant) {
        match r.state {
            // A suspect we do not know of is no news to act on: only the member's own alive record (or
            // one whose life we can vouch for) should make it a member. Learning it from a suspicion
            // raises members that died and were forgotten long ago. (We are never among our own
            // members: a suspicion of us is always news, which we refute.)
            MemberState::Suspect if r.id != self.local.id && self.members.get(&r.id).is_none() => {}
            MemberState::Alive | MemberState::Suspect => {
                let suspect = r.state == MemberState::Suspect;
                let (id, incarnation) = (r.id.clone(), r.incarnation);
                let alive = Alive {
                    id: r.id,
                    addr: r.addr,
                    incarnation: r.incarnation,
                    meta: MetaField::Included(r.meta),
                    min_version: r.min_version,
                    max_version: r.max_version,
                };
                self.apply_alive(alive, None, now);
                if suspect {
                    self.apply_suspect(&id, incarnation, sender.clone(), None, now);
                }
            }
            // The remote may be the one cut off: suspect rather than declare, so a live member refutes.
            MemberState::Dead => self.apply_suspect(&r.id, r.incarnation, sender.clone(), None, now),
            MemberState::Left => self.apply_dead(&r.id, r.incarnation, r.id.clone(), true, None, now),
        }
    }

    pub(super) fn on_push_pull_tick(&mut self, now: Instant) {
        let period = self.config.push_pull_period(self.cluster_size());
        let due = self.last_push_pull + period;
        if now < due {
            // The cluster grew since this timer was set: the period is longer now.
            self.timers.set(due, Timer::PushPull);
            return;
        }
        self.last_push_pull = now;
        self.timers.set(now + period, Timer::PushPull);
        self.push_pull_with_random_member();
    }

    /// A push-pull with one random alive member (none while we leave), not one we address through
    /// the relay we left when we last moved (see `relay_move`): it is likely gone from there too,
    /// and what we would send it is lost.
    pub(super) fn push_pull_with_random_member(&mut self) {
        if self.status != Status::Running {
            return;
        }
        let left = self.moved_from.clone();
        let target = self.random_alive_addr_avoiding(left.as_ref());
        if let Some(to) = target {
            self.send_push_pull_digest(to);
        }
    }

    /// The address of a random alive member that we do not address through the relay `left` names
    /// (any alive member if `left` is `None` or not through a relay).
    pub(super) fn random_alive_addr_avoiding(&mut self, left: Option<&A>) -> Option<A> {
        let relay = left.and_then(|a| a.relay_route()).map(|(relay, _)| relay);
        let elsewhere = |m: &Member<A>| relay.is_none() || m.addr.relay_route().map(|(r, _)| r) != relay;
        let found = self.members.random_members(1, &mut self.rng, |m| m.state == MemberState::Alive && elsewhere(m));
        found.first().map(|m| m.addr.clone())
    }

    /// Our link is back after an outage: a push-pull with a random member now, not at the next
    /// period, so that we learn at once what we missed (see `link`).
    pub(super) fn catch_up_after_outage(&mut self) {
        self.push_pull_with_random_member();
    }

    /// The address of a random alive member, if there is one.
    pub(super) fn random_alive_addr(&mut self) -> Option<A> {
        self.random_alive_addr_avoiding(None)
    }

    /// Catch-up push-pull number `round` after our first join (or a move between relays, see
    /// `relay_move`): with a random member, then again after twice the wait, [`CATCH_UP_ROUNDS`]
    /// times in all.
    pub(super) fn on_catch_up(&mut self, round: u32, now: Instant) {
        if self.status != Status::Running {
            return;
        }
        self.push_pull_with_random_member();
        if round < CATCH_UP_ROUNDS {
            let wait = self.config.probe_interval * (1 << round);
            self.timers.set(now + wait, Timer::CatchUp { round: round + 1 });
        }
    }

    pub(super) fn on_reannounce_tick(&mut self, now: Instant) {
        self.timers.set(now + self.config.reannounce_interval, Timer::Reannounce);
        if self.status != Status::Running {
            return;
        }
        let lonely_seeds = self.lonely_seeds();
        if let Some(seed) = lonely_seeds.choose(&mut self.rng).cloned() {
            self.send_push_pull(seed, true);
        }
        let dead = self
            .members
            .random_members(1, &mut self.rng, |m| m.state == MemberState::Dead)
            .first()
            .map(|m| m.addr.clone());
        if let Some(to) = dead {
            self.send_push_pull(to, false);
        }
        // Retry metadata fetches that got no answer.
        let pending: Vec<NodeId> = core::mem::take(&mut self.meta_requests);
        for id in pending {
            if let Some(m) = self.members.get(&id) {
                if m.state.is_live() && !m.meta_complete {
                    let addr = m.addr.clone();
                    self.request_meta(&id, addr);
                }
            }
        }
    }

    /// The seeds no live member answers at: one pass over the members, which stops once every seed
    /// is accounted for (in a warm cluster, at the first few members).
    fn lonely_seeds(&self) -> Vec<A> {
        let mut lonely: Vec<A> = self.join.seeds.clone();
        if lonely.is_empty() {
            return lonely;
        }
        for m in self.members.iter().filter(|m| m.state.is_live()) {
            lonely.retain(|s| *s != m.addr);
            if lonely.is_empty() {
                break;
            }
        }
        lonely
    }

    /// Asks a member for its own record, to fetch metadata too large for gossip.
    pub(super) fn request_meta(&mut self, id: &NodeId, addr: A) {
        if !self.meta_requests.contains(id) {
            self.meta_requests.push(id.clone());
        }
        let msg = Message::MetaRequest { from: self.local.id.clone() };
        self.send_reliable_message(addr, &msg);
    }

    /// Answers a request for our record with a push-pull carrying it alone, at most once per probe
    /// interval per requesting address (a member asks once per re-announce period at most).
    pub(super) fn handle_meta_request(&mut self, from: &A, now: Instant) {
        if !self.meta_answer_limit.allow(&self.local.id, from, now, self.config.probe_interval) {
            self.stats.meta_requests_refused += 1;
            return;
        }
        let msg = Message::PushPull {
            from: self.local.id.clone(),
            join: false,
            reply: true,
            members: self.state_records(&RecordFilter::OnlySelf, self.config.max_reliable_size),
        };
        self.send_reliable_message(from.clone(), &msg);
        self.stats.push_pulls_sent += 1;
    }
}
