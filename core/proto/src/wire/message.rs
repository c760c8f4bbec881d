//! The protocol's messages and their wire encoding.
//!
//! A packet is `[version: u8]` followed by one or more messages, each `[tag: u8][len: varint][body]`.
//! The length prefix lets a receiver skip message types a newer protocol version added, so a packet
//! from a newer peer still yields everything this version understands. A reliable frame (push-pull,
//! reliable direct messages) has the same layout without a size cap beyond the configured maximum.
//!
//! Integers are LEB128 varints, byte strings and text are length-prefixed, node names are text.

use alloc::string::String;
use alloc::vec::Vec;

use super::codec::{DecodeError, Reader, Writer};
use crate::identity::{Address, NodeId};
use crate::member::MemberState;

/// The protocol version this build writes.
pub const PROTOCOL_VERSION: u8 = 1;
/// The oldest protocol version this build reads.
pub const MIN_PROTOCOL_VERSION: u8 = 1;

/// Longest topic accepted for broadcasts and direct messages, in bytes.
pub const MAX_TOPIC_LEN: usize = 255;

/// Longest application payload an ack carries (`Node::set_ack_payload`), in bytes.
pub const MAX_ACK_PAYLOAD: usize = 256;

/// Most holes one digest entry may list (a sender lists its oldest this many); a longer list is a
/// decode error.
pub const MAX_DIGEST_HOLES: usize = 256;

mod tag {
    pub const PING: u8 = 1;
    pub const ACK: u8 = 2;
    pub const PING_REQ: u8 = 3;
    pub const NACK: u8 = 4;
    pub const ALIVE: u8 = 5;
    pub const SUSPECT: u8 = 6;
    pub const DEAD: u8 = 7;
    pub const BROADCAST: u8 = 8;
    pub const DIRECT: u8 = 9;
    pub const PUSH_PULL: u8 = 10;
    pub const META_REQUEST: u8 = 11;
    pub const BROADCAST_DIGEST: u8 = 12;
    pub const RELIABLE: u8 = 13;
    pub const RELIABLE_ACK: u8 = 14;
    pub const BROADCAST_PULL: u8 = 15;
    /// Taken even in builds without the `app-state` feature, which skip it as unknown.
    #[cfg_attr(not(any(feature = "app-state", test)), allow(dead_code))]
    pub const APP_STATE: u8 = 16;
    /// Taken even in builds without the `coordinates` feature, which skip them as unknown.
    #[cfg_attr(not(any(feature = "coordinates", test)), allow(dead_code))]
    pub const COORDINATE: u8 = 17;
    #[cfg_attr(not(any(feature = "coordinates", test)), allow(dead_code))]
    pub const ACK_PAYLOAD: u8 = 18;
    /// Taken even in builds without the `queries` feature, which skip them as unknown.
    #[cfg_attr(not(any(feature = "queries", test)), allow(dead_code))]
    pub const QUERY: u8 = 19;
    #[cfg_attr(not(any(feature = "queries", test)), allow(dead_code))]
    pub const QUERY_RESPONSE: u8 = 20;
    /// A keyed broadcast with a time to live. Members of the first release skip it (they never
    /// hold values that expire, rather than hold them for ever).
    pub const BROADCAST_TTL: u8 = 21;
    /// A summary of the sender's membership view in a periodic push-pull request. Members of the
    /// first release skip it and answer with their whole view, as they always did.
    #[cfg_attr(not(any(feature = "member-digests", test)), allow(dead_code))]
    pub const MEMBER_DIGEST: u8 = 22;
    /// The members whose records a push-pull request asks for. Members of earlier releases skip it
    /// and answer with their whole view.
    #[cfg_attr(not(any(feature = "member-digests", test)), allow(dead_code))]
    pub const WANTED_RECORDS: u8 = 23;
}

/// Most buckets a [`Message::MemberDigest`] may hash the membership into; more is a decode error.
pub const MAX_MEMBER_DIGEST_BUCKETS: usize = 4096;

/// Most names a [`Message::WantedRecords`] may list; more is a decode error.
pub const MAX_WANTED_RECORDS: usize = 64;

/// Most tag conditions a query's filter carries; more is a decode error.
pub const MAX_QUERY_TAGS: usize = 16;

/// A direct probe: "are you `target`? answer with an ack carrying `seq`".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ping {
    /// The probe's sequence number, which the ack carries back.
    pub seq: u32,
    /// The member the pinger means to reach; a receiver of another name drops the ping.
    pub target: NodeId,
    /// The pinger's name; a receiver that does not hold it as a live member asks it for its record.
    pub source: NodeId,
}

/// Metadata as carried by an [`Alive`] announcement: inline when small, or only its length when it is
/// too large for gossip (receivers then fetch it over a reliable exchange).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetaField {
    /// The metadata bytes.
    Included(Vec<u8>),
    /// Too large for gossip: receivers fetch it with a [`Message::MetaRequest`].
    Omitted {
        /// The metadata's length in bytes.
        len: u32,
    },
}

/// "`id` is alive at `addr` with incarnation `incarnation`."
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alive<A> {
    /// The member's name.
    pub id: NodeId,
    /// The address it is reachable at.
    pub addr: A,
    /// Its incarnation: a newer one overrides older claims (see [`crate::incarnation`]).
    pub incarnation: u32,
    /// Its metadata, or only the metadata's length.
    pub meta: MetaField,
    /// The oldest protocol version the member speaks.
    pub min_version: u8,
    /// The newest protocol version the member speaks.
    pub max_version: u8,
}

/// One member's full record, as exchanged by push-pull.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberRecord<A> {
    /// The member's name.
    pub id: NodeId,
    /// The address it is reachable at.
    pub addr: A,
    /// Its incarnation.
    pub incarnation: u32,
    /// What the sender believes of it. A receiver merges `Dead` as a suspicion, since the sender
    /// may be the one cut off.
    pub state: MemberState,
    /// Its metadata, whole, whatever its size.
    pub meta: Vec<u8>,
    /// The oldest protocol version the member speaks.
    pub min_version: u8,
    /// The newest protocol version the member speaks.
    pub max_version: u8,
}

/// A user broadcast, identified by `(origin, epoch, seq)` for de-duplication.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserBroadcast {
    /// The member that made the broadcast.
    pub origin: NodeId,
    /// The origin's life, drawn when it started.
    pub epoch: u32,
    /// The broadcast's number in that life; keyed and unkeyed broadcasts count separately.
    pub seq: u64,
    /// At most [`MAX_TOPIC_LEN`] bytes.
    pub topic: String,
    /// The invalidation key of a keyed broadcast: a newer one from the same origin under the same
    /// topic and key replaces it. `None` for an unkeyed broadcast.
    pub key: Option<Vec<u8>>,
    /// The application's bytes.
    pub payload: Vec<u8>,
    /// How long a keyed value lives after it was received, in milliseconds (`None`: until its
    /// origin leaves). Carried by a message type of its own (see `BROADCAST_TTL`).
    pub ttl_ms: Option<u32>,
}

/// A query (Serf's): gossiped to every member like a broadcast, answered by the members its filter
/// selects, with an ack and a response sent straight to `origin_addr`. See `node::queries`.
#[cfg(any(feature = "queries", test))]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query<A> {
    /// The member that asks.
    pub origin: NodeId,
    /// Where acks and responses go.
    pub origin_addr: A,
    /// The origin's life (its broadcast epoch), so a restarted origin's ids never collide.
    pub epoch: u32,
    /// The query's number in that life.
    pub id: u64,
    /// How long after receiving it a member may still answer, in milliseconds.
    pub timeout_ms: u32,
    /// Members that match send an ack as soon as they receive it.
    pub want_ack: bool,
    /// Only members whose name matches this pattern (`*`, `?`) answer.
    pub name: Option<String>,
    /// Only members with every one of these tags, values matching the patterns, answer; at most
    /// [`MAX_QUERY_TAGS`].
    pub tags: Vec<(String, String)>,
    /// At most [`MAX_TOPIC_LEN`] bytes.
    pub topic: String,
    /// The application's bytes.
    pub payload: Vec<u8>,
}

/// One origin's life in a broadcast digest: how far its unkeyed broadcasts reached at the sender of
/// the digest, which it never received, and a hash of the keyed values it holds (0: none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DigestEntry {
    /// The member that made the broadcasts.
    pub origin: NodeId,
    /// The origin's life.
    pub epoch: u32,
    /// One past the highest unkeyed sequence number seen.
    pub next: u64,
    /// Unkeyed sequence numbers below `next` not received, ascending.
    pub holes: Vec<u64>,
    /// A hash of the keyed values the sender holds for this life, the same on every member that
    /// holds the same values; 0 when it holds none.
    pub keyed: u64,
}

/// Every message the protocol exchanges.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message<A> {
    /// A direct probe.
    Ping(Ping),
    /// "I am here": the answer to a [`Message::Ping`].
    Ack {
        /// The ping's `seq`. A member that pinged for another forwards the ack with the
        /// requester's `seq`.
        seq: u32,
    },
    /// "Ping `target` for me and forward its ack": an indirect probe.
    PingReq {
        /// The requester's probe sequence number, which the forwarded ack or the nack carries.
        seq: u32,
        /// The member to probe.
        target: NodeId,
        /// Where to ping it.
        target_addr: A,
        /// Send a [`Message::Nack`] back if the target does not ack in time (Lifeguard).
        want_nack: bool,
    },
    /// "Your target has not answered me" (Lifeguard): the helper of an indirect probe is there, the
    /// target is silent.
    Nack {
        /// The requester's probe sequence number.
        seq: u32,
    },
    /// "This member is alive."
    Alive(Alive<A>),
    /// "`id` is suspected at `incarnation`."
    Suspect {
        /// The suspected member.
        id: NodeId,
        /// The member's incarnation the suspicion is about.
        incarnation: u32,
        /// The member that suspects it; suspicions from other members confirm it and shrink its
        /// timeout (Lifeguard).
        from: NodeId,
    },
    /// "`id` failed", or with `left`, "`id` left".
    Dead {
        /// The member that failed or left.
        id: NodeId,
        /// The member's incarnation it failed or left at.
        incarnation: u32,
        /// The member that declared the failure; for a departure, the member itself.
        from: NodeId,
        /// A graceful departure rather than a failure.
        left: bool,
    },
    /// A user broadcast.
    Broadcast(UserBroadcast),
    /// A best-effort direct message.
    Direct {
        /// The sender's name.
        from: NodeId,
        /// At most [`MAX_TOPIC_LEN`] bytes.
        topic: String,
        /// The application's bytes.
        payload: Vec<u8>,
    },
    /// A push-pull: the sender's view of the membership, as a request or as the answer to one.
    /// Broadcasts and a [`Message::BroadcastDigest`] may follow it in the same frame.
    PushPull {
        /// The sender's name.
        from: NodeId,
        /// Set on a request from a member that joins, re-announces itself to a seed, or is new here
        /// in this life; an answer repeats its request's flag. With an empty digest it asks for the
        /// keyed broadcast state only, not past broadcasts.
        join: bool,
        /// The answer to a request, not answered in turn.
        reply: bool,
        /// The sender's records, its own first, then live members before gone ones, cut short to
        /// fit the frame. Only its own when it answers a [`Message::MetaRequest`].
        members: Vec<MemberRecord<A>>,
    },
    /// "Send me your record": asks a member for its metadata (too large for gossip), or a pinger we
    /// do not know for its record. Answered with a push-pull carrying only the receiver's record.
    MetaRequest {
        /// The requester's name. The answer goes to the address the request came from.
        from: NodeId,
    },
    /// Which broadcasts the sender holds (rides in push-pull frames, see the `broadcast` module).
    BroadcastDigest {
        /// One entry per origin life the sender knows of, cut short when the frame has no room.
        entries: Vec<DigestEntry>,
    },
    /// A reliable direct message: `id` counts the sender's reliable messages in its life `epoch`;
    /// the receiver acknowledges it with [`Message::ReliableAck`].
    Reliable {
        /// The sender's name.
        from: NodeId,
        /// The sender's life, the same as its broadcasts'.
        epoch: u32,
        /// The message's number in that life, from 1.
        id: u64,
        /// At most [`MAX_TOPIC_LEN`] bytes.
        topic: String,
        /// The application's bytes.
        payload: Vec<u8>,
    },
    /// "Your reliable message `id` of your life `epoch` arrived."
    ReliableAck {
        /// The life of the message's sender, as the message gave it.
        epoch: u32,
        /// The message's id.
        id: u64,
    },
    /// "Send me what I lack of these lives": a repair request for broadcasts the sender has holes in,
    /// answered with the broadcasts and a [`Message::BroadcastDigest`].
    BroadcastPull {
        /// The sender's digest entries for the lives it has holes in.
        entries: Vec<DigestEntry>,
    },
    /// The sender's application state (`Node::set_local_state`), riding in a push-pull frame right
    /// after the [`Message::PushPull`], whose sender it belongs to. Added after the first release
    /// under a tag of its own: members without the `app-state` feature skip it as unknown.
    #[cfg(any(feature = "app-state", test))]
    AppState {
        /// The application's bytes, opaque to the protocol.
        state: Vec<u8>,
    },
    /// The sender's network coordinate (see [`crate::coordinate`]), riding in an ack packet right
    /// after the [`Message::Ack`] it belongs to. Members without the `coordinates` feature skip it.
    #[cfg(any(feature = "coordinates", test))]
    Coordinate {
        /// The coordinate in its fixed-point wire form: error, height, then each component
        /// (`Coordinate::to_wire`); a decoded one is always a valid coordinate.
        units: [i64; crate::coordinate::DIMENSIONS + 2],
    },
    /// A query, gossiped (see [`Query`]).
    #[cfg(any(feature = "queries", test))]
    Query(Query<A>),
    /// The answer to a query, sent straight to its origin: an ack (no payload) or a response.
    #[cfg(any(feature = "queries", test))]
    QueryResponse {
        /// The query's origin life.
        epoch: u32,
        /// The query's number.
        id: u64,
        /// The member that answers.
        from: NodeId,
        /// An ack: the member received the query (no payload).
        ack: bool,
        /// The response's bytes (empty for an ack).
        payload: Vec<u8>,
    },
    /// A summary of the sender's membership view, riding in a periodic push-pull request after the
    /// [`Message::PushPull`] (which then carries only the sender's own record): every member, the
    /// sender included, falls in one of `hashes.len()` buckets by a hash of its name salted with
    /// `salt`, and each bucket's hash sums what its members' records say (name, incarnation, and
    /// whether it is live, dead or left). The answer carries only the records of the buckets whose
    /// hashes differ (see `node::push_pull`). Members of the first release skip it and answer with
    /// their whole view.
    #[cfg(any(feature = "member-digests", test))]
    MemberDigest {
        /// Chosen at random for each request, so that a collision never hides the same difference
        /// twice.
        salt: u32,
        /// One 32-bit hash per bucket, at least 1 and at most [`MAX_MEMBER_DIGEST_BUCKETS`].
        hashes: Vec<u32>,
    },
    /// The members whose records a push-pull request asks for, riding after the
    /// [`Message::PushPull`] (which then carries only the sender's own record) instead of a
    /// [`Message::MemberDigest`]: the answer carries the answerer's own record and its records of
    /// these members, nothing else. A member pulling the moves of a burst it missed sends it (see
    /// `node::relay_move`). Members of earlier releases skip it and answer with their whole view.
    #[cfg(any(feature = "member-digests", test))]
    WantedRecords {
        /// At least 1 and at most [`MAX_WANTED_RECORDS`] names.
        names: Vec<NodeId>,
    },
    /// The application's bytes attached to the sender's acks (`Node::set_ack_payload`), right
    /// after the [`Message::Ack`]. Members without the `coordinates` feature skip it.
    #[cfg(any(feature = "coordinates", test))]
    AckPayload {
        /// At most [`MAX_ACK_PAYLOAD`] bytes.
        payload: Vec<u8>,
    },
}

impl<A: Address> Message<A> {
    /// Appends `[tag][len][body]` to `w`.
    pub fn encode(&self, w: &mut Writer) {
        w.u8(self.tag());
        let body_at = w.len();
        self.encode_body(w);
        finish_length_prefix(w, body_at);
    }

    /// The message encoded alone (tag, length and body), for queues that store encoded updates.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(64);
        self.encode(&mut w);
        w.into_vec()
    }

    fn tag(&self) -> u8 {
        match self {
            Message::Ping(_) => tag::PING,
            Message::Ack { .. } => tag::ACK,
            Message::PingReq { .. } => tag::PING_REQ,
            Message::Nack { .. } => tag::NACK,
            Message::Alive(_) => tag::ALIVE,
            Message::Suspect { .. } => tag::SUSPECT,
            Message::Dead { .. } => tag::DEAD,
            Message::Broadcast(b) if b.ttl_ms.is_some() => tag::BROADCAST_TTL,
            Message::Broadcast(_) => tag::BROADCAST,
            Message::Direct { .. } => tag::DIRECT,
            Message::PushPull { .. } => tag::PUSH_PULL,
            #[cfg(any(feature = "member-digests", test))]
            Message::MemberDigest { .. } => tag::MEMBER_DIGEST,
            #[cfg(any(feature = "member-digests", test))]
            Message::WantedRecords { .. } => tag::WANTED_RECORDS,
            Message::MetaRequest { .. } => tag::META_REQUEST,
            Message::BroadcastDigest { .. } => tag::BROADCAST_DIGEST,
            Message::Reliable { .. } => tag::RELIABLE,
            Message::ReliableAck { .. } => tag::RELIABLE_ACK,
            Message::BroadcastPull { .. } => tag::BROADCAST_PULL,
            #[cfg(any(feature = "app-state", test))]
            Message::AppState { .. } => tag::APP_STATE,
            #[cfg(any(feature = "coordinates", test))]
            Message::Coordinate { .. } => tag::COORDINATE,
            #[cfg(any(feature = "coordinates", test))]
            Message::AckPayload { .. } => tag::ACK_PAYLOAD,
            #[cfg(any(feature = "queries", test))]
            Message::Query(_) => tag::QUERY,
            #[cfg(any(feature = "queries", test))]
            Message::QueryResponse { .. } => tag::QUERY_RESPONSE,
        }
    }

    fn encode_body(&self, w: &mut Writer) {
        match self {
            Message::Ping(p) => {
                w.varint(u64::from(p.seq));
                p.target.encode(w);
                p.source.encode(w);
            }
            Message::Ack { seq } | Message::Nack { seq } => w.varint(u64::from(*seq)),
            Message::PingReq { seq, target, target_addr, want_nack } => {
                w.varint(u64::from(*seq));
                target.encode(w);
                target_addr.encode(w);
                w.u8(u8::from(*want_nack));
            }
            Message::Alive(a) => {
                a.id.encode(w);
                a.addr.encode(w);
                w.varint(u64::from(a.incarnation));
                match &a.meta {
                    MetaField::Included(bytes) => {
                        w.u8(0);
                        w.bytes(bytes);
                    }
                    MetaField::Omitted { len } => {
                        w.u8(1);
                        w.varint(u64::from(*len));
                    }
                }
                w.u8(a.min_version);
                w.u8(a.max_version);
            }
            Message::Suspect { id, incarnation, from } => {
                id.encode(w);
                w.varint(u64::from(*incarnation));
                from.encode(w);
            }
            Message::Dead { id, incarnation, from, left } => {
                id.encode(w);
                w.varint(u64::from(*incarnation));
                from.encode(w);
                w.u8(u8::from(*left));
            }
            Message::Broadcast(b) => {
                b.origin.encode(w);
                w.varint(u64::from(b.epoch));
                w.varint(b.seq);
                w.str(&b.topic);
                match &b.key {
                    None => w.u8(0),
                    Some(key) => {
                        w.u8(1);
                        w.bytes(key);
                    }
                }
                w.bytes(&b.payload);
                if let Some(ttl) = b.ttl_ms {
                    w.varint(u64::from(ttl));
                }
            }
            Message::Direct { from, topic, payload } => {
                from.encode(w);
                w.str(topic);
                w.bytes(payload);
            }
            Message::PushPull { from, join, reply, members } => {
                from.encode(w);
                w.u8(u8::from(*join) | (u8::from(*reply) << 1));
                w.varint(members.len() as u64);
                for m in members {
                    m.id.encode(w);
                    m.addr.encode(w);
                    w.varint(u64::from(m.incarnation));
                    w.u8(m.state as u8);
                    w.bytes(&m.meta);
                    w.u8(m.min_version);
                    w.u8(m.max_version);
                }
            }
            Message::MetaRequest { from } => from.encode(w),
            #[cfg(any(feature = "member-digests", test))]
            Message::MemberDigest { salt, hashes } => {
                w.raw(&salt.to_le_bytes());
                w.varint(hashes.len() as u64);
                for h in hashes {
                    w.raw(&h.to_le_bytes());
                }
            }
            #[cfg(any(feature = "member-digests", test))]
            Message::WantedRecords { names } => {
                w.varint(names.len() as u64);
                for name in names {
                    name.encode(w);
                }
            }
            Message::BroadcastDigest { entries } | Message::BroadcastPull { entries } => {
                w.varint(entries.len() as u64);
                for e in entries {
                    e.origin.encode(w);
                    w.varint(u64::from(e.epoch));
                    w.varint(e.next);
                    w.varint(e.holes.len() as u64);
                    // Ascending: the first absolutely, then each as its distance from the previous.
                    let mut prev = None;
                    for &h in &e.holes {
                        w.varint(prev.map_or(h, |p: u64| h.wrapping_sub(p)));
                        prev = Some(h);
                    }
                    w.raw(&e.keyed.to_le_bytes());
                }
            }
            Message::Reliable { from, epoch, id, topic, payload } => {
                from.encode(w);
                w.varint(u64::from(*epoch));
                w.varint(*id);
                w.str(topic);
                w.bytes(payload);
            }
            Message::ReliableAck { epoch, id } => {
                w.varint(u64::from(*epoch));
                w.varint(*id);
            }
            #[cfg(any(feature = "app-state", test))]
            Message::AppState { state } => w.bytes(state),
            #[cfg(any(feature = "coordinates", test))]
            Message::Coordinate { units } => {
                for &v in units {
                    // Zigzag: small magnitudes of either sign take one or two bytes.
                    w.varint(((v << 1) ^ (v >> 63)) as u64);
                }
            }
            #[cfg(any(feature = "coordinates", test))]
            Message::AckPayload { payload } => w.bytes(payload),
            #[cfg(any(feature = "queries", test))]
            Message::Query(q) => {
                q.origin.encode(w);
                q.origin_addr.encode(w);
                w.varint(u64::from(q.epoch));
                w.varint(q.id);
                w.varint(u64::from(q.timeout_ms));
                w.u8(u8::from(q.want_ack) | (u8::from(q.name.is_some()) << 1));
                if let Some(name) = &q.name {
                    w.str(name);
                }
                w.varint(q.tags.len() as u64);
                for (k, v) in &q.tags {
                    w.str(k);
                    w.str(v);
                }
                w.str(&q.topic);
                w.bytes(&q.payload);
            }
            #[cfg(any(feature = "queries", test))]
            Message::QueryResponse { epoch, id, from, ack, payload } => {
                w.varint(u64::from(*epoch));
                w.varint(*id);
                from.encode(w);
                w.u8(u8::from(*ack));
                w.bytes(payload);
            }
        }
    }
}

/// Writes the varint length of everything after `body_at` just before it (shifting the body).
fn finish_length_prefix(w: &mut Writer, body_at: usize) {
    let body_len = w.len() - body_at;
    w.insert_varint(body_at, body_len as u64);
}

/// What a packet decoder yields per message: a known message, or the tag of one it skipped.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<A> {
    /// A message of a type this version knows.
    Message(Message<A>),
    /// The tag of a message of a type this version does not know, skipped.
    Unknown(u8),
}

/// A keyed broadcast encoded without a time to live (`[BROADCAST][len][body]`, as the broadcast
/// log keeps it), re-framed with `ttl_ms` left to live: `[BROADCAST_TTL][len][body ttl]`. Bytes
/// that are not such a broadcast come back unchanged.
pub(crate) fn with_ttl(plain: &[u8], ttl_ms: u32) -> Vec<u8> {
    let mut r = Reader::new(plain);
    let Ok((tag::BROADCAST, body)) = read_frame(&mut r) else { return plain.to_vec() };
    let mut w = Writer::with_capacity(plain.len() + 6);
    w.u8(tag::BROADCAST_TTL);
    let body_at = w.len();
    w.raw(body);
    w.varint(u64::from(ttl_ms.max(1)));
    finish_length_prefix(&mut w, body_at);
    w.into_vec()
}

/// Writes the packet header (the protocol version) into an empty writer.
pub fn begin_packet(w: &mut Writer, version: u8) {
    w.u8(version);
}

/// Decodes a whole packet into `out` (cleared first). Either every message decodes and `Ok` returns
/// the count of messages of unknown type that were skipped, or nothing is kept and the first error is
/// returned. Never panics, whatever the input.
#[cfg(any(test, feature = "wire-internals"))]
pub fn decode_packet<A: Address>(bytes: &[u8], out: &mut Vec<Message<A>>) -> Result<usize, DecodeError> {
    decode_packet_skipping(bytes, out, |_, _| false)
}

/// As [`decode_packet`], but `skip(tag, body)` is asked about every message first; messages it
/// answers `true` for are neither decoded nor returned (nor counted as unknown). The node uses it to
/// pass over updates it has already applied.
pub fn decode_packet_skipping<A: Address>(
    bytes: &[u8],
    out: &mut Vec<Message<A>>,
    mut skip: impl FnMut(u8, &[u8]) -> bool,
) -> Result<usize, DecodeError> {
    out.clear();
    let mut r = Reader::new(bytes);
    let version = r.u8().map_err(|_| DecodeError::Empty)?;
    if !(MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&version) {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    let mut skipped = 0;
    let mut known = 0;
    while !r.is_empty() {
        let decoded = read_frame(&mut r).and_then(|(t, body)| {
            if skip(t, body) {
                known += 1;
                Ok(None)
            } else {
                decode_body(t, body).map(Some)
            }
        });
        match decoded {
            Ok(Some(Decoded::Message(m))) => out.push(m),
            Ok(Some(Decoded::Unknown(_))) => skipped += 1,
            Ok(None) => {}
            Err(e) => {
                out.clear();
                return Err(e);
            }
        }
    }
    if out.is_empty() && skipped == 0 && known == 0 {
        return Err(DecodeError::Empty);
    }
    Ok(skipped)
}

/// Decodes one `[tag][len][body]` message.
pub fn decode_message<A: Address>(r: &mut Reader<'_>) -> Result<Decoded<A>, DecodeError> {
    let (t, body) = read_frame(r)?;
    decode_body(t, body)
}

/// Splits off one `[tag][len][body]` frame without looking inside the body.
fn read_frame<'a>(r: &mut Reader<'a>) -> Result<(u8, &'a [u8]), DecodeError> {
    let t = r.u8()?;
    let body = r.bytes()?;
    Ok((t, body))
}

/// True for the gossip updates (alive, suspect, dead, broadcast): applying one twice changes nothing
/// the first application did not, so a receiver may skip byte-identical repeats without decoding them.
#[cfg(feature = "wire-internals")]
pub fn is_update_tag(t: u8) -> bool {
    matches!(t, tag::ALIVE | tag::SUSPECT | tag::DEAD | tag::BROADCAST | tag::BROADCAST_TTL)
}

/// The updates a node skips when it has seen the very same bytes lately: alive records and
/// broadcasts, the bulk of gossip. Suspicions and deaths are always decoded, however often they
/// repeat: a repeat that has gone stale (its subject refuted meanwhile) must be answered, or the one
/// spreading it declares a healthy member failed.
pub fn skips_repeats(t: u8) -> bool {
    matches!(t, tag::ALIVE | tag::BROADCAST | tag::BROADCAST_TTL)
}

fn decode_body<A: Address>(t: u8, body: &[u8]) -> Result<Decoded<A>, DecodeError> {
    let mut b = Reader::new(body);
    let msg = match t {
        tag::PING => Message::Ping(Ping {
            seq: b.varint_u32()?,
            target: NodeId::decode(&mut b)?,
            source: NodeId::decode(&mut b)?,
        }),
        tag::ACK => Message::Ack { seq: b.varint_u32()? },
        tag::NACK => Message::Nack { seq: b.varint_u32()? },
        tag::PING_REQ => Message::PingReq {
            seq: b.varint_u32()?,
            target: NodeId::decode(&mut b)?,
            target_addr: A::decode(&mut b)?,
            want_nack: flag(&mut b)?,
        },
        tag::ALIVE => {
            let id = NodeId::decode(&mut b)?;
            let addr = A::decode(&mut b)?;
            let incarnation = b.varint_u32()?;
            let meta = match b.u8()? {
                0 => MetaField::Included(b.bytes()?.to_vec()),
                1 => MetaField::Omitted { len: b.varint_u32()? },
                _ => return Err(DecodeError::InvalidValue),
            };
            let (min_version, max_version) = versions(&mut b)?;
            Message::Alive(Alive { id, addr, incarnation, meta, min_version, max_version })
        }
        tag::SUSPECT => Message::Suspect {
            id: NodeId::decode(&mut b)?,
            incarnation: b.varint_u32()?,
            from: NodeId::decode(&mut b)?,
        },
        tag::DEAD => Message::Dead {
            id: NodeId::decode(&mut b)?,
            incarnation: b.varint_u32()?,
            from: NodeId::decode(&mut b)?,
            left: flag(&mut b)?,
        },
        tag::BROADCAST | tag::BROADCAST_TTL => {
            let origin = NodeId::decode(&mut b)?;
            let epoch = b.varint_u32()?;
            let seq = b.varint()?;
            let topic = topic(&mut b)?;
            let key = match b.u8()? {
                0 => None,
                1 => Some(b.bytes()?.to_vec()),
                _ => return Err(DecodeError::InvalidValue),
            };
            let payload = b.bytes()?.to_vec();
            let ttl_ms = if t == tag::BROADCAST_TTL { Some(b.varint_u32()?) } else { None };
            // Only keyed values expire, after at least a millisecond.
            if ttl_ms.is_some_and(|ttl| ttl == 0 || key.is_none()) {
                return Err(DecodeError::InvalidValue);
            }
            Message::Broadcast(UserBroadcast { origin, epoch, seq, topic, key, payload, ttl_ms })
        }
        tag::DIRECT => {
            Message::Direct { from: NodeId::decode(&mut b)?, topic: topic(&mut b)?, payload: b.bytes()?.to_vec() }
        }
        tag::PUSH_PULL => {
            let from = NodeId::decode(&mut b)?;
            let flags = b.u8()?;
            if flags > 3 {
                return Err(DecodeError::InvalidValue);
            }
            let count = b.varint()?;
            // Each record takes at least 6 bytes, so a count beyond that bound is a lie we can
            // reject before reserving memory for it.
            if count > (b.remaining() / 6) as u64 {
                return Err(DecodeError::TooLong);
            }
            // Reserve for at most what a small frame holds; larger states grow as records decode.
            let mut members = Vec::with_capacity((count as usize).min(256));
            for _ in 0..count {
                let id = NodeId::decode(&mut b)?;
                let addr = A::decode(&mut b)?;
                let incarnation = b.varint_u32()?;
                let state = MemberState::from_wire(b.u8()?).ok_or(DecodeError::InvalidValue)?;
                let meta = b.bytes()?.to_vec();
                let (min_version, max_version) = versions(&mut b)?;
                members.push(MemberRecord { id, addr, incarnation, state, meta, min_version, max_version });
            }
            Message::PushPull { from, join: flags & 1 != 0, reply: flags & 2 != 0, members }
        }
        tag::META_REQUEST => Message::MetaRequest { from: NodeId::decode(&mut b)? },
        #[cfg(any(feature = "member-digests", test))]
        tag::MEMBER_DIGEST => {
            let salt = u32::from_le_bytes(b.array::<4>()?);
            let count = b.varint()?;
            if count == 0 {
                return Err(DecodeError::InvalidValue);
            }
            if count > MAX_MEMBER_DIGEST_BUCKETS as u64 || count > (b.remaining() / 4) as u64 {
                return Err(DecodeError::TooLong);
            }
            let mut hashes = Vec::with_capacity(count as usize);
            for _ in 0..count {
                hashes.push(u32::from_le_bytes(b.array::<4>()?));
            }
            Message::MemberDigest { salt, hashes }
        }
        #[cfg(any(feature = "member-digests", test))]
        tag::WANTED_RECORDS => {
            let count = b.varint()?;
            if count == 0 {
                return Err(DecodeError::InvalidValue);
            }
            // A name takes at least 2 bytes (its length and a character).
            if count > MAX_WANTED_RECORDS as u64 || count > (b.remaining() / 2) as u64 {
                return Err(DecodeError::TooLong);
            }
            let mut names = Vec::with_capacity(count as usize);
            for _ in 0..count {
                names.push(NodeId::decode(&mut b)?);
            }
            Message::WantedRecords { names }
        }
        tag::BROADCAST_DIGEST | tag::BROADCAST_PULL => {
            let count = b.varint()?;
            // An entry takes at least 13 bytes: reject a count the body cannot hold before reserving.
            if count > (b.remaining() / 13) as u64 {
                return Err(DecodeError::TooLong);
            }
            let mut entries = Vec::with_capacity(reservable::<DigestEntry>(count, b.remaining()));
            for _ in 0..count {
                let origin = NodeId::decode(&mut b)?;
                let epoch = b.varint_u32()?;
                let next = b.varint()?;
                let holes_len = b.varint()?;
                if holes_len > MAX_DIGEST_HOLES as u64 || holes_len > b.remaining() as u64 {
                    return Err(DecodeError::TooLong);
                }
                let mut holes = Vec::with_capacity(reservable::<u64>(holes_len, b.remaining()));
                let mut prev: Option<u64> = None;
                for _ in 0..holes_len {
                    let d = b.varint()?;
                    let h = match prev {
                        None => d,
                        // Strictly ascending, so the encoding is canonical.
                        Some(_) if d == 0 => return Err(DecodeError::InvalidValue),
                        Some(p) => p.checked_add(d).ok_or(DecodeError::InvalidValue)?,
                    };
                    holes.push(h);
                    prev = Some(h);
                }
                let keyed = u64::from_le_bytes(b.array::<8>()?);
                entries.push(DigestEntry { origin, epoch, next, holes, keyed });
            }
            if t == tag::BROADCAST_PULL {
                Message::BroadcastPull { entries }
            } else {
                Message::BroadcastDigest { entries }
            }
        }
        tag::RELIABLE => Message::Reliable {
            from: NodeId::decode(&mut b)?,
            epoch: b.varint_u32()?,
            id: b.varint()?,
            topic: topic(&mut b)?,
            payload: b.bytes()?.to_vec(),
        },
        tag::RELIABLE_ACK => Message::ReliableAck { epoch: b.varint_u32()?, id: b.varint()? },
        #[cfg(any(feature = "app-state", test))]
        tag::APP_STATE => Message::AppState { state: b.bytes()?.to_vec() },
        #[cfg(any(feature = "coordinates", test))]
        tag::COORDINATE => {
            let mut w = [0i64; crate::coordinate::DIMENSIONS + 2];
            for v in &mut w {
                let z = b.varint()?;
                *v = ((z >> 1) as i64) ^ -((z & 1) as i64);
            }
            crate::coordinate::Coordinate::from_wire(&w).ok_or(DecodeError::InvalidValue)?;
            Message::Coordinate { units: w }
        }
        #[cfg(any(feature = "queries", test))]
        tag::QUERY => {
            let origin = NodeId::decode(&mut b)?;
            let origin_addr = A::decode(&mut b)?;
            let epoch = b.varint_u32()?;
            let id = b.varint()?;
            let timeout_ms = b.varint_u32()?;
            let flags = b.u8()?;
            if flags > 3 {
                return Err(DecodeError::InvalidValue);
            }
            let name = if flags & 2 != 0 { Some(topic(&mut b)?) } else { None };
            let count = b.varint()?;
            if count > MAX_QUERY_TAGS as u64 {
                return Err(DecodeError::TooLong);
            }
            let mut tags = Vec::with_capacity(count as usize);
            for _ in 0..count {
                tags.push((topic(&mut b)?, topic(&mut b)?));
            }
            let topic = topic(&mut b)?;
            let payload = b.bytes()?.to_vec();
            Message::Query(Query {
                origin,
                origin_addr,
                epoch,
                id,
                timeout_ms,
                want_ack: flags & 1 != 0,
                name,
                tags,
                topic,
                payload,
            })
        }
        #[cfg(any(feature = "queries", test))]
        tag::QUERY_RESPONSE => Message::QueryResponse {
            epoch: b.varint_u32()?,
            id: b.varint()?,
            from: NodeId::decode(&mut b)?,
            ack: flag(&mut b)?,
            payload: b.bytes()?.to_vec(),
        },
        #[cfg(any(feature = "coordinates", test))]
        tag::ACK_PAYLOAD => {
            let payload = b.bytes()?;
            if payload.len() > MAX_ACK_PAYLOAD {
                return Err(DecodeError::TooLong);
            }
            Message::AckPayload { payload: payload.to_vec() }
        }
        other => return Ok(Decoded::Unknown(other)),
    };
    if !b.is_empty() {
        return Err(DecodeError::TrailingBytes);
    }
    Ok(Decoded::Message(msg))
}

/// How many items of type `T` to reserve room for when a length field claims `claimed` and `left`
/// bytes remain: never more memory than the input itself takes (the vector grows if the items are
/// really there), so a lying length cannot make a small packet reserve a large buffer.
fn reservable<T>(claimed: u64, left: usize) -> usize {
    let fits = left / core::mem::size_of::<T>().max(1);
    usize::try_from(claimed).map_or(fits, |c| c.min(fits))
}

fn flag(r: &mut Reader<'_>) -> Result<bool, DecodeError> {
    match r.u8()? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(DecodeError::InvalidValue),
    }
}

fn versions(r: &mut Reader<'_>) -> Result<(u8, u8), DecodeError> {
    let (min, max) = (r.u8()?, r.u8()?);
    if min == 0 || min > max {
        return Err(DecodeError::InvalidValue);
    }
    Ok((min, max))
}

fn topic(r: &mut Reader<'_>) -> Result<String, DecodeError> {
    let t = r.str()?;
    if t.len() > MAX_TOPIC_LEN {
        return Err(DecodeError::TooLong);
    }
    Ok(String::from(t))
}
