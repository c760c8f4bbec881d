//! The protocol state machine under arbitrary inputs: three `Node<u32>` (names `n0`..`n2`, addresses
//! 0..2, fixed seeds, `Config::local()`) receive a fuzzer-chosen sequence of operations: raw bytes,
//! well-formed packets of arbitrary messages, time advancing, delivery of what the nodes sent each
//! other (with losses and corruption), and commands.
//!
//! After every single input to a node, its outputs are drained and these invariants are asserted:
//! - a best-effort transmit is at most `config.max_packet_size` bytes;
//! - every transmit (best-effort or reliable) decodes with `decode_packet`;
//! - `poll_timeout()` is `Some`;
//! - a node never lists itself in `members()`;
//! - `cluster_size() == 1 + members in state Alive or Suspect`;
//! - a node's own incarnation never moves back: each input leaves it equal or newer in serial order
//!   (`shoal_core::incarnation::is_at_least`; it wraps past `u32::MAX`, SWIM relies on the order).
//!
//! Command errors (unknown member, too large, not running) are expected and ignored; anything else
//! that panics is a bug in shoal-core.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use shoal_core::wire::{
    begin_packet, decode_packet, Alive, DigestEntry, MemberRecord, Message, MetaField, Ping, UserBroadcast, Writer, MAX_TOPIC_LEN,
};
use shoal_core::{Config, Instant, MemberState, Node, NodeId, Transmit};

const NODES: usize = 3;
/// Transmits waiting for a `Deliver` op; beyond this the oldest are lost (a full network queue).
const MAX_IN_FLIGHT: usize = 512;
/// Sequence numbers of recent pings and ping-reqs, so acks and nacks can match a live probe.
const MAX_SEQS: usize = 16;

/// Names the messages talk about: the three nodes, a stranger, a name too long to be stored inline,
/// or anything the fuzzer makes up.
#[derive(Arbitrary, Debug)]
enum Name {
    Pool(u8),
    Custom(String),
}

const POOL: [&str; 5] = ["n0", "n1", "n2", "ghost", "a-name-longer-than-the-inline-capacity"];

impl Name {
    fn id(&self) -> NodeId {
        match self {
            Name::Pool(i) => NodeId::new(POOL[usize::from(*i) % POOL.len()]).unwrap(),
            Name::Custom(s) => NodeId::new(truncate(s, NodeId::MAX_LEN)).unwrap_or_else(|_| NodeId::new("x").unwrap()),
        }
    }
}

/// An address: one of the three nodes (most of the time), or any other (no node there).
#[derive(Arbitrary, Debug)]
enum Addr {
    Node(u8),
    Other(u32),
}

impl Addr {
    fn get(&self) -> u32 {
        match self {
            Addr::Node(i) => u32::from(*i) % NODES as u32,
            Addr::Other(a) => *a,
        }
    }
}

/// Incarnations: small ones (the interesting range for three fresh nodes) or any.
#[derive(Arbitrary, Debug)]
enum Inc {
    Small(u8),
    Any(u32),
}

impl Inc {
    fn get(&self) -> u32 {
        match self {
            Inc::Small(v) => u32::from(*v % 8),
            Inc::Any(v) => *v,
        }
    }
}

/// Probe sequence numbers: one the nodes recently used (so it matches a live probe), or any.
#[derive(Arbitrary, Debug)]
enum Seq {
    Recent(u8),
    Any(u32),
}

impl Seq {
    fn get(&self, seen: &[u32]) -> u32 {
        match self {
            Seq::Recent(i) if !seen.is_empty() => seen[usize::from(*i) % seen.len()],
            Seq::Recent(i) => u32::from(*i),
            Seq::Any(v) => *v,
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Meta {
    Included(Vec<u8>),
    Omitted(u32),
}

#[derive(Arbitrary, Debug)]
struct Record {
    id: Name,
    addr: Addr,
    incarnation: Inc,
    state: u8,
    meta: Vec<u8>,
    versions: (u8, u8),
}

/// A structurally valid message with arbitrary fields.
#[derive(Arbitrary, Debug)]
enum Msg {
    Ping { seq: Seq, target: Name, source: Name },
    Ack { seq: Seq },
    PingReq { seq: Seq, target: Name, target_addr: Addr, want_nack: bool },
    Nack { seq: Seq },
    Alive { id: Name, addr: Addr, incarnation: Inc, meta: Meta, versions: (u8, u8) },
    Suspect { id: Name, incarnation: Inc, from: Name },
    Dead { id: Name, incarnation: Inc, from: Name, left: bool },
    Broadcast { origin: Name, epoch: u32, seq: u64, topic: String, key: Option<Vec<u8>>, payload: Vec<u8> },
    Direct { from: Name, topic: String, payload: Vec<u8> },
    PushPull { from: Name, join: bool, reply: bool, members: Vec<Record> },
    MetaRequest { from: Name },
    BroadcastDigest { entries: Vec<Digest> },
    BroadcastPull { entries: Vec<Digest> },
    Reliable { from: Name, epoch: u32, id: u64, topic: String, payload: Vec<u8> },
    ReliableAck { epoch: u32, id: u64 },
}

/// One life in a broadcast digest (holes made ascending and distinct, as the decoder demands).
#[derive(Arbitrary, Debug)]
struct Digest {
    origin: Name,
    epoch: u32,
    next: u64,
    holes: Vec<u64>,
    keyed: u64,
}

fn digest(entries: &[Digest]) -> Vec<DigestEntry> {
    entries
        .iter()
        .map(|d| {
            let mut holes = d.holes.clone();
            holes.sort_unstable();
            holes.dedup();
            DigestEntry { origin: d.origin.id(), epoch: d.epoch, next: d.next, holes, keyed: d.keyed }
        })
        .collect()
}

/// Versions as the decoder accepts them: `1 <= min <= max`.
fn versions((a, b): (u8, u8)) -> (u8, u8) {
    let min = a.max(1);
    (min, b.max(min))
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn topic(s: &str) -> String {
    String::from(truncate(s, MAX_TOPIC_LEN))
}

impl Msg {
    fn build(&self, seen: &[u32]) -> Message<u32> {
        match self {
            Msg::Ping { seq, target, source } => {
                Message::Ping(Ping { seq: seq.get(seen), target: target.id(), source: source.id() })
            }
            Msg::Ack { seq } => Message::Ack { seq: seq.get(seen) },
            Msg::PingReq { seq, target, target_addr, want_nack } => Message::PingReq {
                seq: seq.get(seen),
                target: target.id(),
                target_addr: target_addr.get(),
                want_nack: *want_nack,
            },
            Msg::Nack { seq } => Message::Nack { seq: seq.get(seen) },
            Msg::Alive { id, addr, incarnation, meta, versions: v } => {
                let (min_version, max_version) = versions(*v);
                Message::Alive(Alive {
                    id: id.id(),
                    addr: addr.get(),
                    incarnation: incarnation.get(),
                    meta: match meta {
                        Meta::Included(bytes) => MetaField::Included(bytes.clone()),
                        Meta::Omitted(len) => MetaField::Omitted { len: *len },
                    },
                    min_version,
                    max_version,
                })
            }
            Msg::Suspect { id, incarnation, from } => {
                Message::Suspect { id: id.id(), incarnation: incarnation.get(), from: from.id() }
            }
            Msg::Dead { id, incarnation, from, left } => {
                Message::Dead { id: id.id(), incarnation: incarnation.get(), from: from.id(), left: *left }
            }
            Msg::Broadcast { origin, epoch, seq, topic: t, key, payload } => Message::Broadcast(UserBroadcast {
                origin: origin.id(),
                epoch: *epoch,
                seq: *seq,
                topic: topic(t),
                key: key.clone(),
                payload: payload.clone(),
            }),
            Msg::Direct { from, topic: t, payload } => {
                Message::Direct { from: from.id(), topic: topic(t), payload: payload.clone() }
            }
            Msg::PushPull { from, join, reply, members } => Message::PushPull {
                from: from.id(),
                join: *join,
                reply: *reply,
                members: members
                    .iter()
                    .map(|r| {
                        let (min_version, max_version) = versions(r.versions);
                        MemberRecord {
                            id: r.id.id(),
                            addr: r.addr.get(),
                            incarnation: r.incarnation.get(),
                            state: MemberState::from_wire(r.state % 4).unwrap(),
                            meta: r.meta.clone(),
                            min_version,
                            max_version,
                        }
                    })
                    .collect(),
            },
            Msg::MetaRequest { from } => Message::MetaRequest { from: from.id() },
            Msg::BroadcastDigest { entries } => Message::BroadcastDigest { entries: digest(entries) },
            Msg::BroadcastPull { entries } => Message::BroadcastPull { entries: digest(entries) },
            Msg::Reliable { from, epoch, id, topic: t, payload } => {
                Message::Reliable { from: from.id(), epoch: *epoch, id: *id, topic: topic(t), payload: payload.clone() }
            }
            Msg::ReliableAck { epoch, id } => Message::ReliableAck { epoch: *epoch, id: *id },
        }
    }
}

#[derive(Arbitrary, Debug)]
enum MetaValue {
    Bytes(Vec<u8>),
    /// Large metadata: beyond `max_gossip_meta` it is fetched reliably, beyond `max_meta_size` refused.
    Filled {
        len: u16,
        unit: u8,
        byte: u8,
    },
}

#[derive(Arbitrary, Debug)]
enum Op {
    /// Arbitrary bytes to node `to` from address `from`.
    Raw {
        to: u8,
        from: Addr,
        bytes: Vec<u8>,
    },
    /// A well-formed packet of arbitrary messages to node `to` from address `from`.
    Packet {
        to: u8,
        from: Addr,
        messages: Vec<Msg>,
    },
    /// Advance the clock by 0..=10_000 ms and run every node's timers.
    Advance {
        ms: u16,
    },
    /// Advance the clock to the earliest deadline any node asked for, and run every node's timers.
    AdvanceToDeadline,
    /// Deliver every transmit in flight, except those whose bit (index mod 64) is set in `drop_mask`.
    Deliver {
        drop_mask: u64,
        reverse: bool,
    },
    /// Flip bits of one transmit in flight (a corrupting network).
    Corrupt {
        index: u16,
        pos: u16,
        xor: u8,
    },
    Join {
        node: u8,
        seeds: Vec<Addr>,
    },
    Broadcast {
        node: u8,
        topic: String,
        payload: Vec<u8>,
        key: Option<Vec<u8>>,
    },
    Send {
        node: u8,
        to: Name,
        topic: String,
        payload: Vec<u8>,
        reliable: bool,
    },
    SendToAddr {
        node: u8,
        to: Addr,
        topic: String,
        payload: Vec<u8>,
        reliable: bool,
    },
    SetMetadata {
        node: u8,
        meta: MetaValue,
    },
    Leave {
        node: u8,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    /// Start with every node already knowing the other two as alive (`assume_alive`).
    warm_start: bool,
    ops: Vec<Op>,
}

struct Harness {
    nodes: Vec<Node<u32>>,
    now: Instant,
    in_flight: Vec<(u32, Transmit<u32>)>,
    seqs: Vec<u32>,
    incarnations: [u32; NODES],
    scratch: Vec<Message<u32>>,
}

impl Harness {
    fn new(warm_start: bool) -> Self {
        let now = Instant::ZERO;
        let mut nodes: Vec<Node<u32>> = (0..NODES)
            .map(|i| {
                let id = NodeId::new(POOL[i]).unwrap();
                Node::new(now, Config::local(), id, i as u32, 0x5eed_0000 + i as u64).expect("valid config")
            })
            .collect();
        if warm_start {
            for (i, node) in nodes.iter_mut().enumerate() {
                let others = (0..NODES).filter(|&j| j != i).map(|j| (NodeId::new(POOL[j]).unwrap(), j as u32));
                node.assume_alive(now, others);
            }
        }
        let mut h = Harness {
            nodes,
            now,
            in_flight: Vec::new(),
            seqs: Vec::new(),
            incarnations: [0; NODES],
            scratch: Vec::new(),
        };
        for i in 0..NODES {
            h.check(i);
        }
        h
    }

    /// Drains node `i`'s outputs and asserts the invariants.
    fn check(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let max_packet = node.config().max_packet_size;
        while let Some(t) = node.poll_transmit() {
            if !t.reliable {
                assert!(
                    t.bytes.len() <= max_packet,
                    "node {i}: best-effort {:?} transmit of {} bytes exceeds max_packet_size {max_packet}",
                    t.kind,
                    t.bytes.len()
                );
            }
            if let Err(e) = decode_packet::<u32>(&t.bytes, &mut self.scratch) {
                panic!("node {i}: {:?} transmit does not decode: {e:?}\nbytes: {:02x?}", t.kind, t.bytes);
            }
            for m in &self.scratch {
                let seq = match m {
                    Message::Ping(p) => p.seq,
                    Message::PingReq { seq, .. } => *seq,
                    _ => continue,
                };
                if self.seqs.len() == MAX_SEQS {
                    self.seqs.remove(0);
                }
                self.seqs.push(seq);
            }
            if self.in_flight.len() == MAX_IN_FLIGHT {
                self.in_flight.remove(0);
            }
            self.in_flight.push((i as u32, t));
        }
        while node.poll_event().is_some() {}
        assert!(node.poll_timeout().is_some(), "node {i}: poll_timeout is None");
        let me = node.local_id().clone();
        assert!(node.members().all(|m| m.id != me), "node {i} lists itself among its members");
        let live = node.members().filter(|m| m.state.is_live()).count();
        assert_eq!(node.cluster_size(), 1 + live, "node {i}: cluster_size disagrees with the member table");
        let inc = node.incarnation();
        assert!(
            shoal_core::incarnation::is_at_least(inc, self.incarnations[i]),
            "node {i}: incarnation went back from {} to {inc}",
            self.incarnations[i]
        );
        self.incarnations[i] = inc;
    }

    fn packet(&mut self, to: usize, from: u32, bytes: &[u8]) {
        let now = self.now;
        let _ = self.nodes[to].handle_packet(now, from, bytes);
        self.check(to);
    }

    fn timeouts(&mut self) {
        for i in 0..NODES {
            let now = self.now;
            self.nodes[i].handle_timeout(now);
            self.check(i);
        }
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::Raw { to, from, bytes } => self.packet(node(*to), from.get(), bytes),
            Op::Packet { to, from, messages } => {
                let mut w = Writer::default();
                begin_packet(&mut w, shoal_core::wire::PROTOCOL_VERSION);
                for m in messages {
                    m.build(&self.seqs).encode(&mut w);
                }
                self.packet(node(*to), from.get(), w.as_slice());
            }
            Op::Advance { ms } => {
                self.now += core::time::Duration::from_millis(u64::from(*ms) % 10_001);
                self.timeouts();
            }
            Op::AdvanceToDeadline => {
                if let Some(at) = self.nodes.iter().filter_map(|n| n.poll_timeout()).min() {
                    self.now = self.now.max(at);
                }
                self.timeouts();
            }
            Op::Deliver { drop_mask, reverse } => {
                let mut batch = core::mem::take(&mut self.in_flight);
                if *reverse {
                    batch.reverse();
                }
                for (k, (from, t)) in batch.into_iter().enumerate() {
                    if drop_mask & (1 << (k % 64)) != 0 {
                        continue;
                    }
                    let to = t.to as usize;
                    if to < NODES {
                        self.packet(to, from, &t.bytes);
                    }
                }
            }
            Op::Corrupt { index, pos, xor } => {
                if !self.in_flight.is_empty() {
                    let k = usize::from(*index) % self.in_flight.len();
                    let bytes = &mut self.in_flight[k].1.bytes;
                    if !bytes.is_empty() {
                        let p = usize::from(*pos) % bytes.len();
                        bytes[p] ^= xor;
                    }
                }
            }
            Op::Join { node: n, seeds } => {
                let i = node(*n);
                let seeds: Vec<u32> = seeds.iter().map(Addr::get).collect();
                let now = self.now;
                let _ = self.nodes[i].join(now, &seeds);
                self.check(i);
            }
            Op::Broadcast { node: n, topic, payload, key } => {
                let i = node(*n);
                let _ = self.nodes[i].broadcast(topic, payload, key.as_deref());
                self.check(i);
            }
            Op::Send { node: n, to, topic, payload, reliable } => {
                let i = node(*n);
                let _ = self.nodes[i].send(self.now, &to.id(), topic, payload, *reliable);
                self.check(i);
            }
            Op::SendToAddr { node: n, to, topic, payload, reliable } => {
                let i = node(*n);
                let _ = self.nodes[i].send_to_addr(self.now, to.get(), topic, payload, *reliable);
                self.check(i);
            }
            Op::SetMetadata { node: n, meta } => {
                let i = node(*n);
                let bytes = match meta {
                    MetaValue::Bytes(b) => b.clone(),
                    MetaValue::Filled { len, unit, byte } => {
                        // Up to 65_535 * 2 bytes: below and above max_gossip_meta and max_meta_size.
                        vec![*byte; usize::from(*len) * usize::from(unit % 3)]
                    }
                };
                let now = self.now;
                let _ = self.nodes[i].set_metadata(&bytes);
                self.check(i);
            }
            Op::Leave { node: n } => {
                let i = node(*n);
                let now = self.now;
                self.nodes[i].leave(now);
                self.check(i);
            }
        }
    }
}

fn node(i: u8) -> usize {
    usize::from(i) % NODES
}

fuzz_target!(|input: Input| {
    let mut h = Harness::new(input.warm_start);
    for op in &input.ops {
        h.apply(op);
    }
});
