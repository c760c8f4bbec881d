//! The protocol state machine: one [`Node`] per cluster member.
//!
//! # The run loop
//!
//! A `Node` does no I/O and reads no clock. The driver feeds it inputs and drains its outputs:
//!
//! 1. Feed an input: [`Node::handle_packet`] for every packet or reliable frame that arrives,
//!    [`Node::handle_timeout`] when the deadline from [`Node::poll_timeout`] has passed, or a command
//!    ([`Node::join`], [`Node::broadcast`], [`Node::send`], [`Node::set_metadata`], [`Node::leave`]).
//! 2. Drain [`Node::poll_transmit`] until `None` and send each [`Transmit`] (reliable ones over a
//!    stream or reliable channel, the rest as datagrams).
//! 3. Drain [`Node::poll_event`] until `None` and hand events to the application.
//! 4. Sleep until [`Node::poll_timeout`] or the next packet, whichever comes first, then go to 1.
//!
//! After *every* input, drain both queues before sleeping: an input may schedule an earlier deadline.
//! Calling `handle_timeout` early or twice is harmless.
//!
//! Every call that needs the time takes `now` as its first argument ([`Node::new`],
//! [`Node::handle_packet`], [`Node::handle_timeout`], [`Node::join`], [`Node::leave`],
//! [`Node::send`], [`Node::send_reliable`], [`Node::send_to_addr`], [`Node::set_link_up`],
//! [`Node::assume_alive`]); the others need none.
//!
//! Randomness comes from the `seed` given to [`Node::new`]: the same seed and the same inputs always
//! produce the same outputs, which is what makes the simulator deterministic. Drivers seed it from the
//! operating system's CSPRNG.

#[cfg(any(feature = "admission", test))]
pub mod admission;
#[cfg(not(any(feature = "admission", test)))]
mod admission_off;
mod answers;
#[cfg(any(feature = "app-state", test))]
mod app_state;
#[cfg(any(feature = "coordinates", test))]
mod coordinates;
mod errors;
mod footprint;
mod gossip;
mod housekeeping;
mod link;
#[cfg(any(feature = "member-digests", test))]
mod member_digest;
mod membership;
mod probe;
mod push_pull;
pub use push_pull::CATCH_UP_ROUNDS;
#[cfg(any(feature = "queries", test))]
mod queries;
#[cfg(any(feature = "queries", test))]
pub use queries::{Inquiry, QueryId, MAX_PENDING_QUERIES};
mod recent;
mod relay_move;
pub use relay_move::RELAY_TAG;
mod reliable;
mod repair;
mod timers;

#[cfg(test)]
mod tests;

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::broadcast::{Ledger, Log};
use crate::config::{Config, ConfigError};
use crate::dissemination::{Order, UpdateQueue};
use crate::event::{BroadcastId, Event};
use crate::health::LocalHealth;
use crate::identity::{Address, NodeId};
use crate::member::{Member, MemberSnapshot, MemberState, MemberTable, Metadata};
use crate::security::{Keyring, Opened, Security, SecurityMode, SecurityStats};
use crate::stats::Stats;
use crate::suspicion::Suspicion;
use crate::time::Instant;
use crate::wire::{
    begin_packet, decode_packet_skipping, skips_repeats, Message, Writer, MAX_TOPIC_LEN, PROTOCOL_VERSION,
};
#[cfg(any(feature = "admission", test))]
pub use admission::{AdmissionPolicy, Candidate, Conflict, ConflictPolicy};
use answers::AnswerLimit;
pub use errors::{CommandError, PacketError};
pub use footprint::Footprint;
use recent::RecentUpdates;
use reliable::Reliable;
use timers::{Timer, Timers};

/// Live members a leaving member tells of its departure at once, at least (see [`Node::leave`]).
const LEAVE_FANOUT: usize = 8;

/// What a packet is for; drivers and the simulator use it for metrics and visualisation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TransmitKind {
    /// A ping: one of our probes, or one we send for a member that asked us to probe (ping-req).
    Ping,
    /// An ack to a ping (or one we forward to the member that asked us to probe), or a frame of
    /// acknowledgements of reliable messages.
    Ack,
    /// A request that a member ping a target for us (indirect probe).
    PingReq,
    /// A nack (Lifeguard): the target of a probe we ran for another member did not answer in time.
    Nack,
    /// A dedicated gossip packet (only piggybacked updates).
    Gossip,
    /// A push-pull state exchange (request or answer), or another reliable frame of anti-entropy: a
    /// request for a member's record, a broadcast repair request or its answer.
    PushPull,
    /// A direct user message.
    Direct,
}

impl TransmitKind {
    /// Every kind, in the order of [`TransmitKind::index`].
    pub const ALL: [TransmitKind; 7] = [
        TransmitKind::Ping,
        TransmitKind::Ack,
        TransmitKind::PingReq,
        TransmitKind::Nack,
        TransmitKind::Gossip,
        TransmitKind::PushPull,
        TransmitKind::Direct,
    ];

    /// A dense index (0..7) for per-kind counters and compact encodings.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The kind's name in metrics: `ping`, `ack`, `ping_req`, `nack`, `gossip`, `push_pull`,
    /// `direct`.
    pub const fn name(self) -> &'static str {
        match self {
            TransmitKind::Ping => "ping",
            TransmitKind::Ack => "ack",
            TransmitKind::PingReq => "ping_req",
            TransmitKind::Nack => "nack",
            TransmitKind::Gossip => "gossip",
            TransmitKind::PushPull => "push_pull",
            TransmitKind::Direct => "direct",
        }
    }
}

/// A packet or frame the driver must send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit<A> {
    /// The address to send to.
    pub to: A,
    /// The packet or frame, already encrypted if the security mode says so: send these bytes as
    /// they are.
    pub bytes: Vec<u8>,
    /// Send over the reliable path (stream, reliable channel). Otherwise a best-effort datagram of at
    /// most `max_packet_size` bytes (between two relayed members, a message of at most
    /// `relayed_packet_size` bytes: see [`Config::relayed_packet_size`]).
    pub reliable: bool,
    /// What the packet is for, for metrics; it does not change how the packet is sent.
    pub kind: TransmitKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    Running,
    Leaving,
}

/// The local member's own record.
#[derive(Debug)]
struct Local<A> {
    id: NodeId,
    addr: A,
    incarnation: u32,
    meta: Metadata,
}

/// The probe this node currently has in flight (one per protocol period).
#[derive(Debug)]
struct Probe<A> {
    seq: u32,
    target: NodeId,
    target_addr: A,
    sent_at: Instant,
    acked: bool,
    concluded: bool,
    expected_nacks: u32,
    nacks: u32,
}

/// A probe we run on behalf of another member (we received its ping-req).
#[derive(Debug)]
struct IndirectProbe<A> {
    requester: A,
    their_seq: u32,
    want_nack: bool,
    acked: bool,
}

#[derive(Debug)]
struct JoinState<A> {
    seeds: Vec<A>,
    /// The seeds the pending `join` call asked: once we are a member, only an answer from one of
    /// them completes it (a catch-up answer from a member we already knew proves nothing about
    /// the seeds the caller named).
    asked: Vec<A>,
    attempt: u32,
    pending: bool,
    joined: bool,
    /// A push-pull digest told us where every origin's broadcasts stood when we arrived (in this
    /// life): what they sent before is not ours. Until then we ask as a member that joins (our
    /// push-pulls carry no digest, so the answers bring the keyed state and no past events), and a
    /// life we first hear of starts where we first see it.
    baseline: bool,
}

type FixedMap<K, V> = hashbrown::HashMap<K, V, foldhash::fast::FixedState>;

/// A cluster member's protocol state machine. See the module docs for the run loop.
pub struct Node<A: Address> {
    config: Config,
    /// The application's say in who becomes a member (see `admission`).
    #[cfg(any(feature = "admission", test))]
    admission: Option<admission::AdmissionPolicy<A>>,
    /// The application's say in address conflicts (see `admission`).
    #[cfg(any(feature = "admission", test))]
    conflict_policy: Option<admission::ConflictPolicy<A>>,
    local: Local<A>,
    members: MemberTable<A>,
    suspicions: FixedMap<NodeId, Suspicion>,
    timers: Timers,
    rng: SmallRng,
    health: LocalHealth,
    membership_updates: UpdateQueue,
    user_broadcasts: UpdateQueue,
    probe: Option<Probe<A>>,
    probe_round: u64,
    indirect: FixedMap<u32, IndirectProbe<A>>,
    /// Rate limit of answers to stale claims (see `answers`).
    answer_limit: AnswerLimit<A>,
    /// Rate limit of the record requests sent to unknown pingers, per pinger address: apart from
    /// `answer_limit`, so that pings under made-up names cannot crowd out stale-claim answers.
    pinger_limit: AnswerLimit<A>,
    /// Rate limit on answers to requests for our record, per requesting address.
    meta_answer_limit: AnswerLimit<A>,
    /// Answers owed for the packet being handled: (destination, subject).
    answers_owed: Vec<(A, NodeId)>,
    /// Members held alive at addresses through a relay that no live member announces any more:
    /// probed before the round-robin order goes on (see `relay_move`).
    stranded: Vec<NodeId>,
    /// Our address before our last move between relays (see `relay_move`): members we still hold
    /// through its relay are no partners for a push-pull.
    moved_from: Option<A>,
    /// The last pull of the other moves of a burst we scheduled (see `relay_move`).
    #[cfg(any(feature = "member-digests", test))]
    moves_pulled: Option<relay_move::MovesPulled<A>>,
    next_seq: u32,
    broadcast_epoch: u32,
    broadcast_seq: u64,
    join: JoinState<A>,
    meta_requests: Vec<NodeId>,
    /// When the last periodic push-pull ran (initially: creation time plus a random phase).
    last_push_pull: Instant,
    status: Status,
    outbox: VecDeque<Transmit<A>>,
    events: VecDeque<Event<A>>,
    stats: Stats,
    scratch: Vec<Message<A>>,
    recent: RecentUpdates,
    recent_pending: Vec<u64>,
    security: Security,
    ledger: Ledger,
    log: Log,
    keyed_seq: u64,
    reliable: Reliable<A>,
    /// The latest time any input carried (commands without a time of their own use it).
    now: Instant,
    /// When we last asked a member for broadcasts we have holes in (see `broadcast` repairs).
    last_repair: Instant,
    /// No member gone can be due for reaping before this (see `reap`).
    reap_due: Instant,
    /// Digest entries of lives whose origin we do not know as a member yet (see
    /// `repair::StrangerLife`).
    stranger_lives: Vec<repair::StrangerLife>,
    /// What the packet being handled asked for once it is all read (see `handle_plain`).
    frame: FrameState<A>,
    /// Counts our announcements about ourselves; their order in the update queue (incarnations wrap,
    /// this does not).
    announcements: u64,
    /// Forward travel of the incarnations we hold since `recent` started (see `incarnation_moved`).
    incarnation_travel: u64,
    /// Our own link: up, or known to be down (see `link`).
    link: link::Link,
    /// When the pending timer for keyed values' expiry fires (see `repair::expire_state`).
    state_expiry_at: Option<Instant>,
    /// The application state every push-pull carries (see `app_state`).
    #[cfg(any(feature = "app-state", test))]
    local_state: Vec<u8>,
    /// Network coordinates, while on (see `coordinates`).
    #[cfg(any(feature = "coordinates", test))]
    coordinates: Option<coordinates::CoordinateBook>,
    /// The application's bytes every ack carries (see `coordinates`).
    #[cfg(any(feature = "coordinates", test))]
    ack_payload: Vec<u8>,
    /// Counts our queries in this life (see `queries`).
    #[cfg(any(feature = "queries", test))]
    query_seq: u64,
    /// Our queries waiting for their deadline.
    #[cfg(any(feature = "queries", test))]
    pending_queries: Vec<queries::PendingQuery>,
    /// Queries we received, remembered for a while.
    #[cfg(any(feature = "queries", test))]
    seen_queries: queries::SeenQueries<A>,
}

/// Things a frame's messages leave for after the whole frame is read: a push-pull is answered with
/// the broadcasts the digest that follows it says the asker lacks.
#[derive(Debug)]
struct FrameState<A> {
    /// A push-pull request to answer: `(from, join, the asker's name)`.
    answer: Option<(A, bool, NodeId)>,
    /// The frame carried a push-pull (request or answer): its digest is a member's whole view.
    push_pull: bool,
    /// The frame made us part of a cluster (it answers our join, or someone found us): the member
    /// it came from.
    found: Option<A>,
    /// Broadcasts this frame delivered (repairs, when the frame turns out to carry a digest).
    delivered: u64,
    digest: Option<Vec<crate::wire::DigestEntry>>,
    /// A repair request to answer: the asker and its digest of the lives it has holes in.
    pull: Option<(A, Vec<crate::wire::DigestEntry>)>,
    /// The member digest (salt, bucket hashes) of a periodic push-pull request in this frame.
    #[cfg(any(feature = "member-digests", test))]
    member_digest: Option<(u32, Vec<u32>)>,
    /// The members whose records a push-pull request in this frame asks for (instead of a digest).
    #[cfg(any(feature = "member-digests", test))]
    wanted: Option<Vec<NodeId>>,
    /// The sender of the admitted push-pull a state in this frame belongs to, and its join flag.
    #[cfg(any(feature = "app-state", test))]
    state_from: Option<(NodeId, bool)>,
    /// The target of our direct probe whose ack came in this packet, and the round trip: a
    /// coordinate or payload after the ack is its.
    #[cfg(any(feature = "coordinates", test))]
    acked: Option<(NodeId, Duration)>,
    /// Bytes of the frame (plaintext).
    #[cfg(any(feature = "member-digests", test))]
    size: usize,
}

impl<A> Default for FrameState<A> {
    fn default() -> Self {
        FrameState {
            answer: None,
            push_pull: false,
            found: None,
            delivered: 0,
            digest: None,
            pull: None,
            #[cfg(any(feature = "member-digests", test))]
            member_digest: None,
            #[cfg(any(feature = "member-digests", test))]
            wanted: None,
            #[cfg(any(feature = "app-state", test))]
            state_from: None,
            #[cfg(any(feature = "coordinates", test))]
            acked: None,
            #[cfg(any(feature = "member-digests", test))]
            size: 0,
        }
    }
}

impl<A: Address> fmt::Debug for Node<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.local.id)
            .field("incarnation", &self.local.incarnation)
            .field("members", &self.members.len())
            .field("health", &self.health.score())
            .finish_non_exhaustive()
    }
}

impl<A: Address> Node<A> {
    /// Creates a node named `id`, reachable at `addr`, alone in its cluster until [`Node::join`].
    /// `seed` drives every random choice (probe order, gossip targets, jitter); give each node a
    /// different one from a CSPRNG in production, or a fixed one in tests for reproducibility.
    pub fn new(now: Instant, config: Config, id: NodeId, addr: A, seed: u64) -> Result<Self, ConfigError> {
        config.validate()?;
        let mut rng = SmallRng::seed_from_u64(seed);
        let hash_seed: u64 = rng.random();
        let mut node = Node {
            local: Local { id, addr, incarnation: 0, meta: Metadata::default() },
            members: MemberTable::new(hash_seed),
            suspicions: FixedMap::with_hasher(foldhash::fast::FixedState::with_seed(hash_seed ^ 1)),
            timers: Timers::default(),
            health: LocalHealth::new(config.awareness_max_multiplier),
            membership_updates: UpdateQueue::new(config.membership_queue_depth, hash_seed ^ 2, Order::NewestFirst),
            user_broadcasts: UpdateQueue::new(config.broadcast_queue_depth, hash_seed ^ 3, Order::OldestFirst),
            probe: None,
            probe_round: 0,
            indirect: FixedMap::with_hasher(foldhash::fast::FixedState::with_seed(hash_seed ^ 5)),
            answer_limit: AnswerLimit::new(hash_seed ^ 8),
            pinger_limit: AnswerLimit::new(hash_seed ^ 9),
            meta_answer_limit: AnswerLimit::new(hash_seed ^ 10),
            answers_owed: Vec::new(),
            stranded: Vec::new(),
            moved_from: None,
            #[cfg(any(feature = "member-digests", test))]
            moves_pulled: None,
            next_seq: rng.random(),
            broadcast_epoch: rng.random(),
            broadcast_seq: 0,
            join: JoinState {
                seeds: Vec::new(),
                asked: Vec::new(),
                attempt: 0,
                pending: false,
                joined: false,
                baseline: false,
            },
            meta_requests: Vec::new(),
            last_push_pull: now,
            status: Status::Running,
            outbox: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
            scratch: Vec::new(),
            recent: RecentUpdates::new(hash_seed ^ 6),
            recent_pending: Vec::new(),
            security: Security::new(config.security, &config.label, hash_seed ^ 7),
            ledger: Ledger::new(),
            log: Log::new(config.broadcast_log_depth),
            keyed_seq: 0,
            reliable: Reliable::new(),
            now,
            last_repair: now,
            reap_due: Instant::ZERO,
            stranger_lives: Vec::new(),
            frame: FrameState::default(),
            announcements: 0,
            incarnation_travel: 0,
            link: link::Link::default(),
            state_expiry_at: None,
            #[cfg(any(feature = "app-state", test))]
            local_state: Vec::new(),
            #[cfg(any(feature = "coordinates", test))]
            coordinates: None,
            #[cfg(any(feature = "coordinates", test))]
            ack_payload: Vec::new(),
            #[cfg(any(feature = "queries", test))]
            query_seq: 0,
            #[cfg(any(feature = "queries", test))]
            pending_queries: Vec::new(),
            #[cfg(any(feature = "queries", test))]
            seen_queries: VecDeque::new(),
            rng,
            config,
            #[cfg(any(feature = "admission", test))]
            admission: None,
            #[cfg(any(feature = "admission", test))]
            conflict_policy: None,
        };
        // Random phases, so that members started together do not probe and gossip in lockstep.
        let probe_at = now + node.jitter(node.config.probe_interval);
        node.timers.set(probe_at, Timer::Probe { round: 0 });
        let gossip_at = now + node.jitter(node.config.gossip_interval);
        node.timers.set(gossip_at, Timer::Gossip);
        if !node.config.push_pull_interval.is_zero() {
            let at = now + node.config.push_pull_interval + node.jitter(node.config.push_pull_interval);
            node.timers.set(at, Timer::PushPull);
        }
        if !node.config.reannounce_interval.is_zero() {
            let at = now + node.config.reannounce_interval + node.jitter(node.config.reannounce_interval);
            node.timers.set(at, Timer::Reannounce);
        }
        node.timers.set(now + node.config.housekeeping_period(), Timer::Housekeeping);
        Ok(node)
    }

    // ----- queries -------------------------------------------------------------------------------

    /// Our own name.
    pub fn local_id(&self) -> &NodeId {
        &self.local.id
    }

    /// Our own address.
    pub fn local_addr(&self) -> &A {
        &self.local.addr
    }

    /// Our current incarnation.
    pub fn incarnation(&self) -> u32 {
        self.local.incarnation
    }

    /// Our current metadata.
    pub fn metadata(&self) -> &[u8] {
        self.local.meta.as_bytes()
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Every member we know (not ourselves), in any state.
    pub fn members(&self) -> impl Iterator<Item = &Member<A>> {
        self.members.iter()
    }

    /// One member by name.
    pub fn member(&self, id: &NodeId) -> Option<&Member<A>> {
        self.members.get(id)
    }

    /// Round-trip time of the last direct probe of `id` that was acknowledged; `None` until one was.
    pub fn rtt(&self, id: &NodeId) -> Option<core::time::Duration> {
        self.members.rtt(id)
    }

    /// Members believed alive or suspect, plus ourselves: the `n` the protocol scales with.
    pub fn cluster_size(&self) -> usize {
        self.members.live_count() + 1
    }

    /// Lifeguard local health score (0 is healthy).
    pub fn health_score(&self) -> u32 {
        self.health.score()
    }

    /// Counters since start.
    pub fn stats(&self) -> Stats {
        let mut s = self.stats;
        s.updates_dropped = self.membership_updates.dropped();
        s.broadcasts_dropped = self.user_broadcasts.dropped();
        s
    }

    /// Transmits produced but not yet taken with [`Node::poll_transmit`].
    pub fn pending_transmits(&self) -> usize {
        self.outbox.len()
    }

    /// Membership updates and user broadcasts waiting to be gossiped.
    pub fn queued_updates(&self) -> (usize, usize) {
        (self.membership_updates.len(), self.user_broadcasts.len())
    }

    /// True once we joined a cluster through a seed (or were contacted by one).
    pub fn is_joined(&self) -> bool {
        self.join.joined
    }

    /// After [`Node::leave`]: true once the leave announcement has been gossiped its full number of
    /// times (or there is nobody to tell). The driver may shut down then, or after its own timeout.
    pub fn leave_disseminated(&self) -> bool {
        self.status == Status::Leaving
            && (self.members.live_count() == 0 || !self.membership_updates.contains(&self.local_key()))
    }

    /// The highest protocol version every live member speaks.
    pub fn effective_protocol_version(&self) -> u8 {
        self.members
            .iter()
            .filter(|m| m.state.is_live())
            .map(|m| m.versions.1)
            .fold(crate::wire::PROTOCOL_VERSION, u8::min)
    }

    // ----- run loop ------------------------------------------------------------------------------

    /// The next packet to send, if any. Drain after every input.
    pub fn poll_transmit(&mut self) -> Option<Transmit<A>> {
        self.outbox.pop_front()
    }

    /// The next event for the application, if any. Drain after every input.
    pub fn poll_event(&mut self) -> Option<Event<A>> {
        self.events.pop_front()
    }

    /// When to call [`Node::handle_timeout`] next. Always `Some` while the node runs.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next_deadline()
    }

    /// Runs every timer due at `now`. Call when the deadline from `poll_timeout` has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.notice_stall(now);
        self.note_time(now);
        while let Some(timer) = self.timers.pop_due(now) {
            match timer {
                Timer::Probe { round } => self.on_probe_tick(round, now),
                Timer::ProbeTimeout { seq } => self.on_probe_timeout(seq, now),
                Timer::ProbeEnd { seq } => self.on_probe_end(seq, now),
                Timer::IndirectNack { seq } => self.on_indirect_nack(seq),
                Timer::IndirectExpire { seq } => {
                    self.indirect.remove(&seq);
                }
                Timer::Suspicion { id, incarnation } => self.on_suspicion_timer(&id, incarnation, now),
                Timer::Gossip => self.on_gossip_tick(now),
                Timer::PushPull => self.on_push_pull_tick(now),
                Timer::Reannounce => self.on_reannounce_tick(now),
                Timer::Housekeeping => self.on_housekeeping_tick(now),
                Timer::JoinTimeout { attempt } => self.on_join_timeout(attempt),
                Timer::ReliableRetry { id, attempt } => self.on_reliable_retry(id, attempt, now),
                Timer::CatchUp { round } => self.on_catch_up(round, now),
                #[cfg(any(feature = "member-digests", test))]
                Timer::PullMoves { round } => self.on_pull_moves(round, now),
                Timer::StateExpiry => self.expire_state(now),
                #[cfg(any(feature = "queries", test))]
                Timer::QueryDeadline { id } => self.on_query_deadline(id),
            }
        }
    }

    /// Processes one packet or reliable frame received from `from` (the address replies go to).
    /// A packet that fails to decode is counted and dropped whole: it never changes state.
    pub fn handle_packet(&mut self, now: Instant, from: A, bytes: &[u8]) -> Result<(), PacketError> {
        self.note_time(now);
        self.stats.packets_received += 1;
        self.stats.bytes_received += bytes.len() as u64;
        if bytes.len() > self.config.max_reliable_size + crate::security::OVERHEAD {
            self.stats.oversized_dropped += 1;
            return Err(PacketError::Oversized(bytes.len()));
        }
        match self.security.open(bytes).map_err(PacketError::Security)? {
            Opened::Plain => self.handle_plain(now, from, bytes),
            Opened::Decrypted => {
                let plaintext = self.security.take_plaintext();
                let result = self.handle_plain(now, from, &plaintext);
                self.security.put_plaintext(plaintext);
                result
            }
        }
    }

    /// Decodes and applies a packet that passed the security layer.
    fn handle_plain(&mut self, now: Instant, from: A, bytes: &[u8]) -> Result<(), PacketError> {
        let mut messages = core::mem::take(&mut self.scratch);
        let mut pending = core::mem::take(&mut self.recent_pending);
        pending.clear();
        let recent = &self.recent;
        let mut repeats = 0u64;
        let decoded = decode_packet_skipping(bytes, &mut messages, |tag, body| {
            if !skips_repeats(tag) {
                return false;
            }
            let hash = recent.hash(tag, body);
            if recent.contains(hash) {
                repeats += 1;
                return true;
            }
            pending.push(hash);
            false
        });
        match decoded {
            Ok(skipped) => {
                self.stats.unknown_messages_skipped += skipped as u64;
                self.stats.repeated_updates_skipped += repeats;
                for &hash in &pending {
                    self.recent.insert(hash);
                }
                self.recent_pending = pending;
            }
            Err(e) => {
                self.stats.decode_errors += 1;
                self.scratch = messages;
                self.recent_pending = pending;
                return Err(PacketError::Decode(e));
            }
        }
        #[cfg(any(feature = "member-digests", test))]
        {
            self.frame.size = bytes.len();
        }
        for message in messages.drain(..) {
            self.handle_message(now, &from, message);
        }
        self.scratch = messages;
        self.send_reliable_acks(&from);
        self.send_answers();
        self.finish_frame(now);
        Ok(())
    }

    fn handle_message(&mut self, now: Instant, from: &A, message: Message<A>) {
        match message {
            Message::Ping(ping) => self.handle_ping(ping, from, now),
            Message::Ack { seq } => self.handle_ack(seq, now),
            Message::PingReq { seq, target, target_addr, want_nack } => {
                self.handle_ping_req(seq, target, target_addr, want_nack, from, now)
            }
            Message::Nack { seq } => self.handle_nack(seq, now),
            Message::Alive(alive) => self.apply_alive(alive, Some(from), now),
            Message::Suspect { id, incarnation, from: by } => self.apply_suspect(&id, incarnation, by, Some(from), now),
            Message::Dead { id, incarnation, from: by, left } => {
                self.apply_dead(&id, incarnation, by, left, Some(from), now)
            }
            Message::Broadcast(b) => self.handle_broadcast(b, now),
            Message::Direct { from: sender, topic, payload } => self.handle_direct(sender, topic, payload),
            Message::BroadcastDigest { entries } => self.frame.digest = Some(entries),
            Message::BroadcastPull { entries } => self.frame.pull = Some((from.clone(), entries)),
            Message::Reliable { from: sender, epoch, id, topic, payload } => {
                self.handle_reliable(sender, epoch, id, topic, payload, now)
            }
            Message::ReliableAck { epoch, id } => self.handle_reliable_ack(from, epoch, id),
            Message::PushPull { from: sender, join, reply, members } => {
                self.handle_push_pull(sender, join, reply, members, from, now)
            }
            Message::MetaRequest { from: _ } => self.handle_meta_request(from, now),
            #[cfg(any(feature = "member-digests", test))]
            Message::MemberDigest { salt, hashes } => self.frame.member_digest = Some((salt, hashes)),
            #[cfg(any(feature = "member-digests", test))]
            Message::WantedRecords { names } => self.frame.wanted = Some(names),
            #[cfg(any(feature = "app-state", test))]
            Message::AppState { state } => self.handle_app_state(state),
            #[cfg(any(feature = "coordinates", test))]
            Message::Coordinate { units } => self.handle_coordinate(&units),
            #[cfg(any(feature = "coordinates", test))]
            Message::AckPayload { payload } => self.handle_ack_payload(payload),
            #[cfg(any(feature = "queries", test))]
            Message::Query(q) => self.handle_query(q, now),
            #[cfg(any(feature = "queries", test))]
            Message::QueryResponse { epoch, id, from: sender, ack, payload } => {
                self.handle_query_response(QueryId { epoch, id }, sender, ack, payload)
            }
        }
    }

    // ----- security ------------------------------------------------------------------------------

    /// Installs the keyring (needed by every mode but `Plaintext`) and seeds the nonce generator
    /// with 32 bytes from the host's CSPRNG. Call before the first packet is sent.
    pub fn set_keyring(&mut self, keyring: Keyring, entropy: [u8; 32]) {
        self.security.set_keyring(keyring, entropy);
    }

    /// The keyring, for rotation (`install`, `use_key`, `remove`) while running.
    pub fn keyring_mut(&mut self) -> Option<&mut Keyring> {
        self.security.keyring_mut()
    }

    /// Changes the security mode while running (the encryption migration steps).
    pub fn set_security_mode(&mut self, mode: SecurityMode) {
        self.security.set_mode(mode);
        self.config.security = mode;
    }

    /// Counters of the security layer.
    pub fn security_stats(&self) -> SecurityStats {
        self.security.stats
    }

    /// Largest plaintext packet that may have to cross a datagram: the configured size less what
    /// encryption adds. What a user's broadcast or best-effort message must fit in.
    fn packet_budget(&self) -> usize {
        self.config.max_packet_size - self.security.overhead()
    }

    /// Largest plaintext packet to `to`: larger between two relayed members, whose packets travel
    /// as WebSocket, relay-link or data-channel messages and never as datagrams (see
    /// [`Config::relayed_packet_size`]), and never more than the path's frame limit. Call when
    /// filling a packet for `to` with queued updates.
    fn packet_budget_to(&self, to: &A) -> usize {
        let larger = self.config.relayed_packet_size > self.config.max_packet_size;
        if !larger || self.local.addr.relay_route().is_none() || to.relay_route().is_none() {
            return self.packet_budget();
        }
        let path = to.reliable_limit().unwrap_or(usize::MAX);
        let size = self.config.relayed_packet_size.min(path).max(self.config.max_packet_size);
        size - self.security.overhead()
    }

    // ----- commands ------------------------------------------------------------------------------

    /// Adds members known out of band (a saved snapshot, or the simulator's warm start) as alive at
    /// incarnation 0, without events or gossip. Members already known are left as they are. The node
    /// counts as a member from the start: it expects every broadcast of the lives it hears of, from
    /// the first.
    pub fn assume_alive(&mut self, now: Instant, members: impl IntoIterator<Item = (NodeId, A)>) {
        for (id, addr) in members {
            if id == self.local.id || self.members.get(&id).is_some() {
                continue;
            }
            self.members.insert(Member::assumed_alive(id, addr, now), &mut self.rng);
        }
        self.start_with_assumed_members();
    }

    /// Starts from the members of `snapshot`, all alive, shared with every node started from it
    /// until this node changes them (see [`MemberSnapshot`]): the simulator's warm start of
    /// thousands of nodes. Call it once, before the node runs. Otherwise it is [`Node::assume_alive`]
    /// with the snapshot's members: a node that knows members already adds those it lacks.
    pub fn assume_alive_shared(&mut self, now: Instant, snapshot: &MemberSnapshot<A>) {
        if self.members.len() > 0 {
            self.assume_alive(now, snapshot.iter().map(|m| (m.id.clone(), m.addr.clone())));
            return;
        }
        self.members = snapshot.0.clone();
        self.members.remove(&self.local.id);
        self.start_with_assumed_members();
    }

    /// After members were assumed alive: a new probe round over them, and we count as a member.
    fn start_with_assumed_members(&mut self) {
        self.members.shuffle_order(&mut self.rng);
        self.join.joined |= self.members.live_count() > 0;
        self.join.baseline |= self.join.joined;
    }

    /// Remembers `seeds` as addresses to re-announce to whenever they are not live members, as
    /// [`Node::join`] does, without contacting them now. For members restored from a snapshot (and
    /// the simulator's warm start): after a partition longer than `dead_member_reap_time`, the seeds
    /// are how the two sides find each other again.
    pub fn remember_seeds(&mut self, seeds: &[A]) {
        for seed in seeds {
            if *seed != self.local.addr && !self.join.seeds.contains(seed) {
                self.join.seeds.push(seed.clone());
            }
        }
    }

    /// Replaces the addresses re-announced to whenever they are not live members (those `join` and
    /// [`Node::remember_seeds`] gave) with `seeds`, contacting nobody now. Call it when the seeds
    /// are DNS names resolved again: the addresses they list change.
    pub fn set_seeds(&mut self, seeds: &[A]) {
        self.join.seeds = seeds.iter().filter(|s| **s != self.local.addr).cloned().collect();
    }

    /// Reserves room for `n` members ahead of a large join.
    pub fn reserve_members(&mut self, n: usize) {
        self.members.reserve(n);
    }

    /// Sets our metadata and announces it under a new incarnation. Metadata up to `max_gossip_meta`
    /// bytes rides in gossip; larger metadata (up to `max_meta_size`) is fetched by each member over a
    /// reliable exchange.
    pub fn set_metadata(&mut self, meta: &[u8]) -> Result<(), CommandError> {
        if meta.len() > self.config.max_meta_size {
            return Err(CommandError::TooLarge { size: meta.len(), max: self.config.max_meta_size });
        }
        self.local.meta = Metadata::new(meta);
        // Wraps past `u32::MAX`: incarnations are serial numbers, the next one is always newer.
        let old_incarnation = self.local.incarnation;
        self.local.incarnation = crate::incarnation::next(old_incarnation);
        self.incarnation_moved(old_incarnation, self.local.incarnation);
        self.enqueue_self_alive();
        Ok(())
    }

    /// Gracefully leaves: announces the departure, stops probing, and keeps gossiping until the
    /// driver stops calling. See [`Node::leave_disseminated`] for when it is safe to stop.
    pub fn leave(&mut self, now: Instant) {
        if self.status == Status::Leaving {
            return;
        }
        self.status = Status::Leaving;
        // Wraps past `u32::MAX`: the departure is newer than any alive record of ours.
        let old_incarnation = self.local.incarnation;
        self.local.incarnation = crate::incarnation::next(old_incarnation);
        self.incarnation_moved(old_incarnation, self.local.incarnation);
        let msg = Message::<A>::Dead {
            id: self.local.id.clone(),
            incarnation: self.local.incarnation,
            from: self.local.id.clone(),
            left: true,
        };
        let order = self.next_announcement();
        let departure = msg.to_bytes();
        self.membership_updates.push(Some(self.local_key()), order, departure.clone());
        if self.join.pending {
            // Our join still waits for its answer: the seeds we asked may hold us as a member by
            // now, and we may know no member to tell. Tell them straight away, or they would take
            // our silence for a failure.
            for seed in self.join.asked.clone() {
                self.send_packet(seed, TransmitKind::Gossip, |w| w.raw(&departure));
            }
        }
        // Tell live members right away rather than waiting for the next gossip tick, and more than
        // a tick would: a tab leaving on `pagehide` stops after this round, and a round spent on
        // members that died lately (gossip to the dead) told nobody.
        self.gossip_round(now, self.config.gossip_nodes.max(LEAVE_FANOUT), Duration::ZERO);
    }

    /// Replaces the protocol settings of a running node, as foca's `set_config` does: call it to
    /// retune timing without a restart (a longer probe interval on a congested link, a different
    /// suspicion multiplier, more gossip fan-out). Timing and fan-out settings, the Lifeguard
    /// switches, reap and reliable-retry times can change; each takes effect from the next time it
    /// is used (a periodic task at its next tick, within one old period). Settings the rest of the
    /// cluster or the node's buffers rely on cannot ([`Config::fixed_field_changed`] names them):
    /// those are refused with a [`ConfigError`] naming the field, and nothing changes. Mixed
    /// settings are safe while members move from one to the other: members of different presets
    /// already live in one cluster.
    pub fn set_config(&mut self, config: Config) -> Result<(), ConfigError> {
        config.validate()?;
        if let Some(field) = self.config.fixed_field_changed(&config) {
            return Err(ConfigError { field, reason: "cannot change while the node runs: start a new node with it" });
        }
        self.config = config;
        // The reap time may have shortened: look at every member gone at the next housekeeping.
        self.reap_due = Instant::ZERO;
        Ok(())
    }

    /// Removes a failed member for good, as Serf's `force-leave` does: call it when an operator
    /// knows a member that failed will not come back (a decommissioned host), so that nobody keeps
    /// trying to reach it. The member becomes one that left ([`Event::Left`] here and, as the
    /// news spreads, everywhere), which is never contacted again and is reaped after
    /// `dead_member_reap_time` like any departed member.
    ///
    /// Only failed members can be forced out ([`CommandError::NotFailed`] otherwise): a member we
    /// hold alive or suspect may well be running, and would refute the departure at once. A member
    /// forced out that was only cut off refutes it when it reaches the cluster again (it learns it
    /// left at an incarnation it never left at) and is back. Forcing out a member that already left
    /// changes nothing.
    pub fn force_leave(&mut self, now: Instant, id: &NodeId) -> Result<(), CommandError> {
        if self.status != Status::Running {
            return Err(CommandError::NotRunning);
        }
        self.force_left(id, now)
    }

    /// Packets that say what [`Node::leave`] would say first, built now without leaving: our
    /// departure at the incarnation `leave` would take, each to one of up to `fanout` random live
    /// members. Nothing changes here but the random state and, with encryption, the nonce counter
    /// (the packets count in [`SecurityStats::encrypted_sent`]); they are not counted in [`Stats`].
    ///
    /// For a driver that may be stopped before it gets to call `leave`: a browser tab's member
    /// runs in a worker that the browser kills when the tab closes, so the page keeps a fresh
    /// farewell at hand and posts it (`navigator.sendBeacon` to the relay) on `pagehide`. Build a
    /// new one whenever our incarnation or the membership changes: a farewell below our current
    /// incarnation is ignored. Empty once leaving, or with nobody to tell.
    pub fn farewell(&mut self, fanout: usize) -> Vec<Transmit<A>> {
        if self.status != Status::Running {
            return Vec::new();
        }
        let msg = Message::<A>::Dead {
            id: self.local.id.clone(),
            incarnation: crate::incarnation::next(self.local.incarnation),
            from: self.local.id.clone(),
            left: true,
        };
        let body = msg.to_bytes();
        let targets = self.gossip_targets(self.now, fanout, Duration::ZERO);
        let mut out = Vec::with_capacity(targets.len());
        for to in targets {
            let mut w = Writer::with_capacity(body.len() + 1);
            begin_packet(&mut w, PROTOCOL_VERSION);
            w.raw(&body);
            if let Some(bytes) = self.security.seal(w.into_vec(), false) {
                out.push(Transmit { to, bytes, reliable: false, kind: TransmitKind::Gossip });
            }
        }
        out
    }

    /// Broadcasts `payload` under `topic` to every member, each receiving it once as
    /// [`Event::Message`]. With `key`, a newer broadcast from us under the same topic and key replaces
    /// this one in every queue it is still in (only the latest value keeps spreading). The sender does
    /// not receive its own broadcast. The encoded broadcast must fit in one packet.
    pub fn broadcast(&mut self, topic: &str, payload: &[u8], key: Option<&[u8]>) -> Result<BroadcastId, CommandError> {
        if self.status != Status::Running {
            return Err(CommandError::NotRunning);
        }
        self.start_broadcast(topic, payload, key, None)
    }

    /// Broadcasts a keyed value that lives `ttl` (chitchat's `set_with_ttl`): every member drops it,
    /// reports it as [`Event::StateExpired`], and stops handing it to joiners `ttl` after it
    /// reached them, unless a newer value for the same topic and key replaced it. Members that
    /// join meanwhile receive it with what is left of its time. Members of the first release,
    /// which know no time to live, skip such values. Set it again before it runs out to keep it
    /// (presence, leases).
    pub fn broadcast_with_ttl(
        &mut self,
        topic: &str,
        payload: &[u8],
        key: &[u8],
        ttl: Duration,
    ) -> Result<BroadcastId, CommandError> {
        if self.status != Status::Running {
            return Err(CommandError::NotRunning);
        }
        self.start_broadcast(topic, payload, Some(key), Some(ttl))
    }

    /// The keyed values this member holds, ours included, as `(origin, topic, key, payload)`: the
    /// latest value per origin, topic and key, the state every member converges on. Values of a
    /// member that left (or was reaped after failing) are gone, as are values whose time to live
    /// ran out.
    pub fn keyed_state(&self) -> Vec<(NodeId, String, Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        for (origin, topic, key, bytes) in self.log.state() {
            let mut r = crate::wire::Reader::new(bytes);
            if let Ok(crate::wire::Decoded::Message(Message::Broadcast(b))) = crate::wire::decode_message::<A>(&mut r) {
                out.push((origin.clone(), String::from(topic), key.to_vec(), b.payload));
            }
        }
        out
    }

    /// Sends a message to one member by name; it arrives as [`Event::Message`]. Best-effort messages
    /// must fit in one packet; reliable ones go over the reliable path (up to `max_reliable_size`),
    /// acknowledged and retried as [`Node::send_reliable`] describes.
    pub fn send(
        &mut self,
        now: Instant,
        to: &NodeId,
        topic: &str,
        payload: &[u8],
        reliable: bool,
    ) -> Result<(), CommandError> {
        let addr = self.live_addr(to)?;
        self.send_to_addr(now, addr, topic, payload, reliable)
    }

    /// Sends a message to one member over the reliable path and returns its id. The receiver
    /// acknowledges it; without an acknowledgement it is sent again every `reliable_timeout`, up to
    /// `reliable_attempts` times, and then reported lost with [`Event::SendFailed`] carrying this id.
    /// It is delivered at most once whatever the retries. See the `reliable` module docs.
    pub fn send_reliable(
        &mut self,
        now: Instant,
        to: &NodeId,
        topic: &str,
        payload: &[u8],
    ) -> Result<u64, CommandError> {
        let addr = self.live_addr(to)?;
        self.note_time(now);
        self.send_reliable_to(addr, topic, payload, now)
    }

    fn live_addr(&self, id: &NodeId) -> Result<A, CommandError> {
        match self.members.get(id) {
            Some(m) if m.state.is_live() => Ok(m.addr.clone()),
            _ => Err(CommandError::UnknownMember(id.clone())),
        }
    }

    /// Sends a message to an address, member or not (for example a seed before joining). Reliable
    /// messages are acknowledged and retried as [`Node::send_reliable`] describes.
    pub fn send_to_addr(
        &mut self,
        now: Instant,
        to: A,
        topic: &str,
        payload: &[u8],
        reliable: bool,
    ) -> Result<(), CommandError> {
        self.note_time(now);
        if reliable {
            return self.send_reliable_to(to, topic, payload, now).map(|_| ());
        }
        self.send_direct(to, topic, payload)
    }

    /// Starts joining the cluster through `seeds`: a push-pull state exchange with each. Emits
    /// [`Event::JoinSucceeded`] when the first answers, or [`Event::JoinFailed`] after `join_timeout`.
    /// The seeds are remembered and re-announced to periodically, so a cluster that forms later, or
    /// splits and heals, is found again without another call.
    pub fn join(&mut self, now: Instant, seeds: &[A]) -> Result<(), CommandError> {
        self.start_join(seeds, now)
    }

    // ----- helpers shared by the submodules ------------------------------------------------------

    /// Remembers the latest time an input carried.
    fn note_time(&mut self, now: Instant) {
        self.now = self.now.max(now);
    }

    fn jitter(&mut self, span: Duration) -> Duration {
        let ms = crate::time::duration_millis(span).max(1);
        Duration::from_millis(self.rng.random_range(0..ms))
    }

    fn next_seq(&mut self) -> u32 {
        self.next_seq = self.next_seq.wrapping_add(1);
        self.next_seq
    }

    fn emit(&mut self, event: Event<A>) {
        self.events.push_back(event);
    }

    #[allow(clippy::too_many_arguments)]
    fn new_member(
        &self,
        id: NodeId,
        addr: A,
        incarnation: u32,
        meta: Metadata,
        meta_complete: bool,
        versions: (u8, u8),
        now: Instant,
    ) -> Member<A> {
        Member { id, addr, incarnation, state: MemberState::Alive, meta, meta_complete, state_since: now, versions }
    }

    fn topic_ok(topic: &str) -> Result<(), CommandError> {
        if topic.len() > MAX_TOPIC_LEN {
            Err(CommandError::TopicTooLong)
        } else {
            Ok(())
        }
    }
}
