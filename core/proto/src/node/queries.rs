//! Queries, as Serf's `query`: ask the members a filter selects, and collect their answers until a
//! deadline.
//!
//! # The exchange
//! [`Node::query`] gossips the query to every member, as a broadcast spreads (it is not kept for
//! repair: a query lives only until its deadline). Each member relays it once and checks the
//! filter against itself (name pattern and tags; every member is alive to itself). A member the
//! filter selects sends an ack straight back to the origin and hands the query to its application
//! as [`Event::Query`]; the application may answer once with [`Node::respond`], a response that
//! also goes straight back. The origin reports each ack and response as it arrives
//! ([`Event::QueryAck`], [`Event::QueryResponse`], one per member) and, at the deadline,
//! [`Event::QueryDone`] with the counts. The origin is a member like any other: if its filter
//! selects it, it receives its own query and its answer counts.
//!
//! # Deadlines without a shared clock
//! A query carries its timeout, not an instant: each member may answer until `timeout` after it
//! received it. Gossip takes a few protocol periods to reach everyone, so the last members get the
//! query later than the first and may answer after the origin's deadline; such answers are dropped
//! by the origin and counted (`Stats::query_answers_dropped`). Pick a timeout of several gossip
//! rounds at the least; the `shoal` crate's default grows with the cluster, as Serf's does.
//!
//! # Whom answers go to
//! Answers go to the address the query names for its origin, but only when that is the address we
//! hold for that member, live: a forged query naming a bystander's address would otherwise make
//! every member send it an ack (a reflection attack). Such queries are relayed (a member that does
//! know the origin there may answer) but not answered here, and counted (`Stats::queries_refused`).
//!
//! # Bounds
//! At most [`MAX_PENDING_QUERIES`] of our own queries run at once, each taking one ack and one
//! response from each member we know (an answer in any other name is dropped and counted); queries we received are
//! remembered (to drop the copies gossip brings again) for twice their timeout, at most 1,024 of
//! them. Answers must fit one packet.
//!
//! Members without the `queries` feature (older versions, the npm package's wasm) neither relay nor
//! answer queries: they skip them as unknown messages. A query still reaches every member that has
//! the feature as long as gossip reaches them through one another.

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use core::time::Duration;

use crate::event::Event;
use crate::identity::{Address, NodeId};
use crate::member::MemberState;
use crate::tags::MemberFilter;
use crate::time::{duration_millis, Instant};
use crate::wire::{Message, Query, MAX_QUERY_TAGS, MAX_TOPIC_LEN};

use super::timers::Timer;
use super::{CommandError, Node, Status, TransmitKind};

/// Our own queries that may run at once; [`Node::query`] refuses more.
pub const MAX_PENDING_QUERIES: usize = 64;
/// Queries received that are remembered, to drop repeats and accept one answer each.
const MAX_SEEN_QUERIES: usize = 1_024;

/// Names one query: its origin's life and its number in it. [`Node::query`] returns it, and the
/// events about the query's answers carry it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct QueryId {
    /// The origin's life (its broadcast epoch).
    pub epoch: u32,
    /// The query's number in that life.
    pub id: u64,
}

/// A query we received, as [`Event::Query`] hands it to the application: pass it to
/// [`Node::respond`] to answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inquiry<A> {
    /// The member that asks.
    pub origin: NodeId,
    /// Where the answer goes.
    pub addr: A,
    /// The query.
    pub id: QueryId,
}

/// One of our queries, waiting for its deadline.
#[derive(Debug)]
pub(super) struct PendingQuery {
    id: QueryId,
    acks: Vec<NodeId>,
    responses: Vec<NodeId>,
}

/// A query we received.
#[derive(Debug)]
pub(super) struct SeenQuery<A> {
    origin: NodeId,
    id: QueryId,
    /// The origin's address, when it is the one we hold for it: where an answer may go.
    answer_to: Option<A>,
    /// Answers are accepted until then.
    until: Instant,
    /// Forgotten from then on.
    forget_at: Instant,
    responded: bool,
}

impl<A: Address> Node<A> {
    /// Asks the members `filter` selects (by name pattern and tags; its states are ignored, every
    /// member being alive to itself) and collects their answers for `timeout`: each selected
    /// member acks at once ([`Event::QueryAck`]) and its application may respond
    /// ([`Event::QueryResponse`]); [`Event::QueryDone`] closes the query at the deadline. We are
    /// asked too if the filter selects us. The query must fit one packet. See the `queries` module
    /// docs.
    pub fn query(
        &mut self,
        now: Instant,
        topic: &str,
        payload: &[u8],
        filter: &MemberFilter,
        timeout: Duration,
    ) -> Result<QueryId, CommandError> {
        self.note_time(now);
        if self.status != Status::Running {
            return Err(CommandError::NotRunning);
        }
        Self::topic_ok(topic)?;
        let (name, tags) = filter.name_and_tags();
        let long = |s: &str| s.len() > MAX_TOPIC_LEN;
        if tags.len() > MAX_QUERY_TAGS || name.is_some_and(long) || tags.iter().any(|(k, v)| long(k) || long(v)) {
            return Err(CommandError::FilterTooLarge);
        }
        if self.pending_queries.len() >= MAX_PENDING_QUERIES {
            return Err(CommandError::TooManyQueries);
        }
        let id = QueryId { epoch: self.broadcast_epoch, id: self.query_seq };
        let timeout_ms = u32::try_from(duration_millis(timeout)).unwrap_or(u32::MAX).max(1);
        let query = Query {
            origin: self.local.id.clone(),
            origin_addr: self.local.addr.clone(),
            epoch: id.epoch,
            id: id.id,
            timeout_ms,
            want_ack: true,
            name: name.map(String::from),
            tags: tags.to_vec(),
            topic: String::from(topic),
            payload: payload.to_vec(),
        };
        let bytes = Message::Query(query).to_bytes();
        let max = self.packet_budget() - 1;
        if bytes.len() > max {
            return Err(CommandError::TooLarge { size: bytes.len(), max });
        }
        self.query_seq += 1;
        self.user_broadcasts.push(None, id.id, bytes);
        self.pending_queries.push(PendingQuery { id, acks: Vec::new(), responses: Vec::new() });
        self.timers.set(now + Duration::from_millis(u64::from(timeout_ms)), Timer::QueryDeadline { id: id.id });
        self.stats.queries_sent += 1;
        // We are a member like any other.
        if filter_selects(name, tags, &self.local.id, &self.local.meta) {
            let local = (self.local.id.clone(), self.local.addr.clone());
            self.remember_query(&local.0, id, Some(local.1.clone()), now, timeout_ms);
            self.record_answer(id, local.0.clone(), true, Vec::new());
            let inquiry = Inquiry { origin: local.0, addr: local.1, id };
            self.emit(Event::Query { inquiry, topic: String::from(topic), payload: payload.to_vec() });
        }
        Ok(id)
    }

    /// How long a query without a timeout of its own takes answers: 16 gossip intervals for each
    /// decimal digit of the cluster's size (`ceil(log10(n + 1))` rounds, at least one), time for
    /// gossip to reach everyone and for answers to come back, as Serf computes its own.
    pub fn default_query_timeout(&self) -> Duration {
        let mut rounds = 1;
        let mut n = self.cluster_size() / 10;
        while n > 0 {
            rounds += 1;
            n /= 10;
        }
        self.config.gossip_interval * (16 * rounds)
    }

    /// Answers a query the application received as [`Event::Query`], once, before its timeout
    /// runs out here. Refused with [`CommandError::QueryClosed`] for a query unknown, over or
    /// already answered, and [`CommandError::TooLarge`] for a response that does not fit a packet.
    pub fn respond(&mut self, now: Instant, inquiry: &Inquiry<A>, payload: &[u8]) -> Result<(), CommandError> {
        self.note_time(now);
        let i = self
            .seen_queries
            .iter()
            .position(|s| s.id == inquiry.id && s.origin == inquiry.origin && !s.responded && now <= s.until)
            .ok_or(CommandError::QueryClosed)?;
        let Some(to) = self.seen_queries[i].answer_to.clone() else { return Err(CommandError::QueryClosed) };
        let answer = Message::<A>::QueryResponse {
            epoch: inquiry.id.epoch,
            id: inquiry.id.id,
            from: self.local.id.clone(),
            ack: false,
            payload: payload.to_vec(),
        };
        let bytes = answer.to_bytes();
        let max = self.packet_budget() - 1;
        if bytes.len() > max {
            return Err(CommandError::TooLarge { size: bytes.len(), max });
        }
        self.seen_queries[i].responded = true;
        if inquiry.origin == self.local.id {
            self.record_answer(inquiry.id, self.local.id.clone(), false, payload.to_vec());
        } else {
            self.send_packet(to, TransmitKind::Direct, |w| w.raw(&bytes));
        }
        Ok(())
    }

    /// A query arrived by gossip: relay it once, and if it selects us, ack it and hand it to the
    /// application.
    pub(super) fn handle_query(&mut self, q: Query<A>, now: Instant) {
        let id = QueryId { epoch: q.epoch, id: q.id };
        if q.origin == self.local.id || self.seen_queries.iter().any(|s| s.id == id && s.origin == q.origin) {
            return;
        }
        // Answers go only to a live member at the address we hold for it (see the module docs).
        let trusted = self.members.get(&q.origin).is_some_and(|m| m.state.is_live() && m.addr == q.origin_addr);
        let answer_to = trusted.then(|| q.origin_addr.clone());
        self.remember_query(&q.origin, id, answer_to.clone(), now, q.timeout_ms);
        if self.status != Status::Running {
            return;
        }
        let selected = filter_selects(q.name.as_deref(), &q.tags, &self.local.id, &self.local.meta);
        let (topic, payload) = (q.topic.clone(), q.payload.clone());
        let (origin, want_ack) = (q.origin.clone(), q.want_ack);
        self.user_broadcasts.push(None, q.id, Message::Query(q).to_bytes());
        if !selected {
            return;
        }
        let Some(to) = answer_to else {
            self.stats.queries_refused += 1;
            return;
        };
        if want_ack {
            let ack = Message::<A>::QueryResponse {
                epoch: id.epoch,
                id: id.id,
                from: self.local.id.clone(),
                ack: true,
                payload: Vec::new(),
            };
            self.send_packet(to.clone(), TransmitKind::Direct, |w| ack.encode(w));
        }
        self.stats.queries_received += 1;
        self.emit(Event::Query { inquiry: Inquiry { origin, addr: to, id }, topic, payload });
    }

    /// An ack or response to one of our queries.
    pub(super) fn handle_query_response(&mut self, id: QueryId, from: NodeId, ack: bool, payload: Vec<u8>) {
        self.record_answer(id, from, ack, payload);
    }

    fn record_answer(&mut self, id: QueryId, from: NodeId, ack: bool, payload: Vec<u8>) {
        // Only members answer: names we do not know would let forged answers grow a query's
        // lists without bound.
        if from != self.local.id && self.members.get(&from).is_none() {
            self.stats.query_answers_dropped += 1;
            return;
        }
        let Some(p) = self.pending_queries.iter_mut().find(|p| p.id == id) else {
            // Late (past the deadline), or not ours.
            self.stats.query_answers_dropped += 1;
            return;
        };
        let seen = if ack { &mut p.acks } else { &mut p.responses };
        if seen.contains(&from) {
            self.stats.query_answers_dropped += 1;
            return;
        }
        seen.push(from.clone());
        if ack {
            self.emit(Event::QueryAck { id, from });
        } else {
            self.stats.query_responses_received += 1;
            self.emit(Event::QueryResponse { id, from, payload });
        }
    }

    /// The deadline of our query `id` (of this life) passed: close it.
    pub(super) fn on_query_deadline(&mut self, id: u64) {
        let epoch = self.broadcast_epoch;
        let Some(i) = self.pending_queries.iter().position(|p| p.id == QueryId { epoch, id }) else { return };
        let p = self.pending_queries.swap_remove(i);
        let (acks, responses) = (p.acks.len() as u32, p.responses.len() as u32);
        self.emit(Event::QueryDone { id: p.id, acks, responses });
    }

    fn remember_query(&mut self, origin: &NodeId, id: QueryId, answer_to: Option<A>, now: Instant, timeout_ms: u32) {
        self.seen_queries.retain(|s| s.forget_at > now);
        if self.seen_queries.len() >= MAX_SEEN_QUERIES {
            self.seen_queries.pop_front();
        }
        let timeout = Duration::from_millis(u64::from(timeout_ms));
        self.seen_queries.push_back(SeenQuery {
            origin: origin.clone(),
            id,
            answer_to,
            until: now + timeout,
            forget_at: now + timeout * 2,
            responded: false,
        });
    }
}

/// Whether a query's filter selects the member with this name and metadata (alive, to itself).
fn filter_selects(name: Option<&str>, tags: &[(String, String)], id: &NodeId, meta: &crate::member::Metadata) -> bool {
    let mut filter = MemberFilter::new();
    if let Some(n) = name {
        filter = filter.name(n);
    }
    for (k, v) in tags {
        filter = filter.tag(k, v);
    }
    filter.matches_parts(id, MemberState::Alive, meta)
}

/// The queries a node keeps, created empty.
pub(super) type SeenQueries<A> = VecDeque<SeenQuery<A>>;
