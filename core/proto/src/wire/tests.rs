//! Tests of the wire format as a whole: every message round-trips through a packet for every
//! address type, hostile input is rejected with a typed error (never a panic), a failed packet
//! leaves nothing behind, and the sizes the node relies on when packing packets hold.

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::net::SocketAddr;

use super::*;
use crate::identity::{Address, NodeId};
use crate::member::MemberState;

/// Tags as documented by the wire format. Pinned here (and checked against the encoder) so that an
/// accidental renumbering, which would break compatibility with deployed peers, fails a test.
const PING: u8 = 1;
const ACK: u8 = 2;
const PING_REQ: u8 = 3;
const NACK: u8 = 4;
const ALIVE: u8 = 5;
const SUSPECT: u8 = 6;
const DEAD: u8 = 7;
const BROADCAST: u8 = 8;
const DIRECT: u8 = 9;
const PUSH_PULL: u8 = 10;
const META_REQUEST: u8 = 11;
const BROADCAST_DIGEST: u8 = 12;
const RELIABLE: u8 = 13;
const RELIABLE_ACK: u8 = 14;
const BROADCAST_PULL: u8 = 15;
const MEMBER_DIGEST: u8 = 22;
const WANTED_RECORDS: u8 = 23;

/// How many pseudo-random buffers the garbage test feeds the decoder (each as three address types).
const RANDOM_BUFFERS: usize = 200_000;

// ------------------------------------------------------------------------------------------------
// Helpers
// ------------------------------------------------------------------------------------------------

/// A tiny deterministic xorshift64 generator: no dependency, same sequence on every run.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        XorShift(seed | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform-enough value in `0..n` (`n > 0`).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn byte(&mut self) -> u8 {
        (self.next() >> 24) as u8
    }

    fn chance(&mut self, one_in: u64) -> bool {
        self.below(one_in) == 0
    }

    /// Appends `n` random bytes.
    fn extend(&mut self, buf: &mut Vec<u8>, n: usize) {
        let mut left = n;
        while left > 0 {
            let word = self.next().to_le_bytes();
            let k = left.min(8);
            buf.extend_from_slice(&word[..k]);
            left -= k;
        }
    }
}

fn id(name: &str) -> NodeId {
    NodeId::new(name).unwrap()
}

/// A name of exactly [`NodeId::MAX_LEN`] bytes, the longest accepted.
fn longest_name() -> String {
    "n".repeat(NodeId::MAX_LEN)
}

/// A packet header followed by every message of `msgs`, in order.
fn encode_packet<A: Address>(msgs: &[Message<A>]) -> Vec<u8> {
    let mut w = Writer::default();
    begin_packet(&mut w, PROTOCOL_VERSION);
    for m in msgs {
        m.encode(&mut w);
    }
    w.into_vec()
}

/// One `[tag][len][body]` message built by hand, with the correct length.
fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut w = Writer::default();
    w.u8(tag);
    w.bytes(body);
    w.into_vec()
}

/// A packet header followed by the given raw messages.
fn packet_of(frames: &[&[u8]]) -> Vec<u8> {
    let mut w = Writer::default();
    begin_packet(&mut w, PROTOCOL_VERSION);
    for f in frames {
        w.raw(f);
    }
    w.into_vec()
}

/// Splits one encoded message into its tag and body, checking the length prefix covers it exactly.
fn split_frame(encoded: &[u8]) -> (u8, &[u8]) {
    let mut r = Reader::new(encoded);
    let tag = r.u8().unwrap();
    let body = r.bytes().unwrap();
    assert!(r.is_empty(), "the length prefix must cover the whole body");
    (tag, body)
}

/// Builds a message body with a writer.
fn body(build: impl FnOnce(&mut Writer)) -> Vec<u8> {
    let mut w = Writer::default();
    build(&mut w);
    w.into_vec()
}

/// Decodes `bytes` as a packet of `Message<A>` into a vector that already holds a stale message.
fn decode<A: Address>(bytes: &[u8]) -> (Result<usize, DecodeError>, Vec<Message<A>>) {
    let mut out = vec![Message::Ack { seq: 0xdead }];
    let result = decode_packet(bytes, &mut out);
    (result, out)
}

/// Decodes arbitrary bytes and checks the decoder's contract whatever the outcome: an error leaves
/// the output empty; success yields at least one message or skipped message, and what was decoded
/// re-encodes to a packet that decodes to the same messages. Returns whether the packet decoded.
fn decode_checked<A: Address>(bytes: &[u8]) -> bool {
    let (result, out) = decode::<A>(bytes);
    match result {
        Ok(skipped) => {
            assert!(!out.is_empty() || skipped > 0, "Ok for a packet with no message: {bytes:02x?}");
            if !out.is_empty() {
                let again = encode_packet(&out);
                let (result2, out2) = decode::<A>(&again);
                assert_eq!(result2, Ok(0), "re-encoding of {bytes:02x?} does not decode");
                assert_eq!(out2, out, "re-encoding of {bytes:02x?} changed the messages");
            }
            true
        }
        Err(e) => {
            assert!(out.is_empty(), "error {e:?} left messages in the output for {bytes:02x?}");
            false
        }
    }
}

/// Member records in every [`MemberState`], two per state, with varied incarnations and metadata.
fn member_records<A: Address>(addrs: &[A; 3]) -> Vec<MemberRecord<A>> {
    let states = [MemberState::Alive, MemberState::Suspect, MemberState::Dead, MemberState::Left];
    let incarnations = [0, 1, 127, 128, 16_384, u32::MAX];
    let mut records = Vec::new();
    for (i, state) in states.iter().enumerate() {
        for j in 0..2 {
            let n = i * 2 + j;
            records.push(MemberRecord {
                id: if n == 7 { id(&longest_name()) } else { id(&format!("member-{i}-{j}")) },
                addr: addrs[n % 3].clone(),
                incarnation: incarnations[n % incarnations.len()],
                state: *state,
                meta: if j == 0 { Vec::new() } else { b"role=web;".repeat(i + 1) },
                min_version: 1,
                max_version: 1 + i as u8,
            });
        }
    }
    records
}

/// At least one message of every type, with the edge values of every field.
fn sample_messages<A: Address>(addrs: &[A; 3]) -> Vec<Message<A>> {
    let [a0, a1, a2] = addrs.clone();
    let long = longest_name();
    let short = id("a");
    let inline = id("inline-14-byte");
    let shared = id("a-rather-long-node-name.example.internal");
    let longest = id(&long);
    let unicode = id("nœud-λ-東京");
    let max_topic = "t".repeat(MAX_TOPIC_LEN);

    let mut msgs = vec![
        Message::Ping(Ping { seq: 0, target: short.clone(), source: inline.clone() }),
        Message::Ping(Ping { seq: u32::MAX, target: longest.clone(), source: unicode.clone() }),
        Message::Ack { seq: 0 },
        Message::Ack { seq: 127 },
        Message::Ack { seq: 128 },
        Message::Ack { seq: u32::MAX },
        Message::PingReq { seq: 42, target: shared.clone(), target_addr: a0.clone(), want_nack: true },
        Message::PingReq { seq: u32::MAX, target: short.clone(), target_addr: a1.clone(), want_nack: false },
        Message::Nack { seq: 0 },
        Message::Nack { seq: 300 },
        Message::Alive(Alive {
            id: short.clone(),
            addr: a0.clone(),
            incarnation: 0,
            meta: MetaField::Included(Vec::new()),
            min_version: 1,
            max_version: 1,
        }),
        Message::Alive(Alive {
            id: unicode.clone(),
            addr: a1.clone(),
            incarnation: u32::MAX,
            meta: MetaField::Included(vec![0xab; 300]),
            min_version: 1,
            max_version: 255,
        }),
        Message::Alive(Alive {
            id: inline.clone(),
            addr: a2.clone(),
            incarnation: 7,
            meta: MetaField::Omitted { len: 0 },
            min_version: 2,
            max_version: 3,
        }),
        Message::Alive(Alive {
            id: longest.clone(),
            addr: a0.clone(),
            incarnation: 128,
            meta: MetaField::Omitted { len: u32::MAX },
            min_version: 255,
            max_version: 255,
        }),
        Message::Suspect { id: shared.clone(), incarnation: 0, from: short.clone() },
        Message::Suspect { id: short.clone(), incarnation: u32::MAX, from: longest.clone() },
        Message::Dead { id: inline.clone(), incarnation: 3, from: shared.clone(), left: false },
        Message::Dead { id: unicode.clone(), incarnation: u32::MAX, from: unicode.clone(), left: true },
        Message::Broadcast(UserBroadcast {
            origin: short.clone(),
            epoch: 0,
            seq: 0,
            topic: String::new(),
            key: None,
            payload: Vec::new(),
            ttl_ms: None,
        }),
        Message::Broadcast(UserBroadcast {
            origin: shared.clone(),
            epoch: u32::MAX,
            seq: u64::MAX,
            topic: String::from("deploys/ünïcødé"),
            key: Some(b"service:web".to_vec()),
            payload: (0..=255).collect(),
            ttl_ms: None,
        }),
        Message::Broadcast(UserBroadcast {
            origin: longest.clone(),
            epoch: 9,
            seq: 1 << 40,
            topic: max_topic.clone(),
            key: Some(Vec::new()),
            payload: vec![0; 1],
            ttl_ms: None,
        }),
        Message::Direct { from: inline.clone(), topic: String::new(), payload: Vec::new() },
        Message::Direct { from: unicode.clone(), topic: max_topic, payload: vec![0xff; 200] },
        Message::MetaRequest { from: short.clone() },
        Message::MetaRequest { from: longest.clone() },
        Message::BroadcastDigest { entries: Vec::new() },
        Message::BroadcastDigest {
            entries: vec![
                DigestEntry { origin: short.clone(), epoch: 0, next: 0, holes: Vec::new(), keyed: 0 },
                DigestEntry {
                    origin: longest.clone(),
                    epoch: u32::MAX,
                    next: u64::MAX,
                    holes: vec![0, 1, 1 << 40, u64::MAX - 1],
                    keyed: u64::MAX,
                },
            ],
        },
        Message::Reliable { from: short, epoch: 7, id: 1, topic: String::new(), payload: Vec::new() },
        Message::Reliable {
            from: unicode,
            epoch: u32::MAX,
            id: u64::MAX,
            topic: String::from("blob"),
            payload: vec![9; 3_000],
        },
        Message::ReliableAck { epoch: 0, id: 0 },
        Message::BroadcastPull { entries: Vec::new() },
        Message::BroadcastPull {
            entries: vec![DigestEntry { origin: inline_name(), epoch: 3, next: 7, holes: vec![2, 4, 6], keyed: 9 }],
        },
        Message::ReliableAck { epoch: u32::MAX, id: u64::MAX },
    ];
    let records = member_records(addrs);
    for (join, reply) in [(false, false), (true, false), (false, true), (true, true)] {
        msgs.push(Message::PushPull { from: shared.clone(), join, reply, members: records.clone() });
    }
    msgs.push(Message::PushPull { from: inline, join: true, reply: false, members: Vec::new() });
    msgs.push(Message::WantedRecords { names: vec![inline_name()] });
    msgs.push(Message::WantedRecords {
        names: (0..crate::wire::MAX_WANTED_RECORDS).map(|i| id(&format!("member-{i}"))).collect(),
    });
    msgs.push(Message::MemberDigest { salt: 0, hashes: vec![0] });
    msgs.push(Message::MemberDigest {
        salt: u32::MAX,
        hashes: (0..crate::wire::MAX_MEMBER_DIGEST_BUCKETS as u32).collect(),
    });
    msgs
}

fn u32_addrs() -> [u32; 3] {
    [0, 300, u32::MAX]
}

fn socket_addrs() -> [SocketAddr; 3] {
    ["10.0.0.1:7946".parse().unwrap(), "[2001:db8::1]:65535".parse().unwrap(), "0.0.0.0:0".parse().unwrap()]
}

fn string_addrs() -> [String; 3] {
    [
        String::new(),
        String::from("relay://host:port/peer-ñ"),
        // The longest string address a receiver accepts.
        "x".repeat(1024),
    ]
}

/// Encodes all of `msgs` into one packet, decodes it and checks nothing changed; also checks every
/// message alone through `to_bytes` and `decode_message`.
fn assert_round_trip<A: Address>(msgs: &[Message<A>]) {
    let packet = encode_packet(msgs);
    let (result, out) = decode::<A>(&packet);
    assert_eq!(result, Ok(0));
    assert_eq!(out.len(), msgs.len());
    for (got, want) in out.iter().zip(msgs) {
        assert_eq!(got, want);
    }

    // The packet is exactly the version byte followed by each message's standalone encoding.
    let mut concatenated = vec![PROTOCOL_VERSION];
    for m in msgs {
        concatenated.extend_from_slice(&m.to_bytes());
    }
    assert_eq!(packet, concatenated);

    // Each message alone, read with `decode_message` from the middle of a longer buffer.
    for m in msgs {
        let mut bytes = m.to_bytes();
        let len = bytes.len();
        bytes.extend_from_slice(&[0xee, 0xee]);
        let mut r = Reader::new(&bytes);
        assert_eq!(decode_message::<A>(&mut r), Ok(Decoded::Message(m.clone())));
        assert_eq!(r.remaining(), 2, "decode_message must consume exactly {len} bytes");
    }
}

// ------------------------------------------------------------------------------------------------
// 1. Round trips
// ------------------------------------------------------------------------------------------------

#[test]
fn every_message_type_round_trips_with_u32_addresses() {
    assert_round_trip(&sample_messages(&u32_addrs()));
}

#[test]
fn every_message_type_round_trips_with_socket_addresses() {
    assert_round_trip(&sample_messages(&socket_addrs()));
}

#[test]
fn every_message_type_round_trips_with_string_addresses() {
    assert_round_trip(&sample_messages(&string_addrs()));
}

#[test]
fn the_sample_set_covers_every_message_type_and_member_state() {
    let msgs = sample_messages(&u32_addrs());
    let mut tags: Vec<u8> = msgs.iter().map(|m| m.to_bytes()[0]).collect();
    tags.sort_unstable();
    tags.dedup();
    assert_eq!(tags, (1..=15).chain([MEMBER_DIGEST, WANTED_RECORDS]).collect::<Vec<u8>>());
    let states: Vec<MemberState> = member_records(&u32_addrs()).iter().map(|r| r.state).collect();
    for s in [MemberState::Alive, MemberState::Suspect, MemberState::Dead, MemberState::Left] {
        assert!(states.contains(&s), "{s:?} missing from the sample records");
    }
}

#[test]
fn message_tags_are_stable() {
    let n = id("n");
    let cases: [(Message<u32>, u8); 17] = [
        (Message::Ping(Ping { seq: 1, target: n.clone(), source: n.clone() }), PING),
        (Message::Ack { seq: 1 }, ACK),
        (Message::PingReq { seq: 1, target: n.clone(), target_addr: 1, want_nack: false }, PING_REQ),
        (Message::Nack { seq: 1 }, NACK),
        (
            Message::Alive(Alive {
                id: n.clone(),
                addr: 1,
                incarnation: 1,
                meta: MetaField::Omitted { len: 1 },
                min_version: 1,
                max_version: 1,
            }),
            ALIVE,
        ),
        (Message::Suspect { id: n.clone(), incarnation: 1, from: n.clone() }, SUSPECT),
        (Message::Dead { id: n.clone(), incarnation: 1, from: n.clone(), left: true }, DEAD),
        (
            Message::Broadcast(UserBroadcast {
                origin: n.clone(),
                epoch: 1,
                seq: 1,
                topic: String::new(),
                key: None,
                payload: Vec::new(),
                ttl_ms: None,
            }),
            BROADCAST,
        ),
        (Message::Direct { from: n.clone(), topic: String::new(), payload: Vec::new() }, DIRECT),
        (Message::PushPull { from: n.clone(), join: false, reply: false, members: Vec::new() }, PUSH_PULL),
        (Message::MetaRequest { from: n.clone() }, META_REQUEST),
        (Message::BroadcastDigest { entries: Vec::new() }, BROADCAST_DIGEST),
        (Message::Reliable { from: n, epoch: 1, id: 1, topic: String::new(), payload: Vec::new() }, RELIABLE),
        (Message::ReliableAck { epoch: 1, id: 1 }, RELIABLE_ACK),
        (Message::BroadcastPull { entries: Vec::new() }, BROADCAST_PULL),
        (Message::MemberDigest { salt: 1, hashes: vec![1] }, MEMBER_DIGEST),
        (Message::WantedRecords { names: vec![id("a")] }, WANTED_RECORDS),
    ];
    for (msg, tag) in cases {
        assert_eq!(msg.to_bytes()[0], tag, "tag of {msg:?}");
    }
}

#[test]
fn a_body_longer_than_sixteen_kib_round_trips_with_a_three_byte_length_prefix() {
    let msg: Message<u32> = Message::Direct {
        from: id("big"),
        topic: String::from("blob"),
        payload: (0..20_000u32).map(|i| (i % 251) as u8).collect(),
    };
    let bytes = msg.to_bytes();
    let body_len = bytes.len() - 1 - 3;
    assert_eq!(varint_len(body_len as u64), 3);
    assert_eq!(split_frame(&bytes).1.len(), body_len);
    assert_round_trip(&[msg.clone(), Message::Ack { seq: 5 }, msg]);
}

#[test]
fn a_packet_holding_only_messages_of_unknown_type_is_accepted_but_empty() {
    let packet = packet_of(&[&frame(200, b"future"), &frame(99, &[])]);
    let (result, out) = decode::<u32>(&packet);
    assert_eq!(result, Ok(2));
    assert!(out.is_empty());
}

// ------------------------------------------------------------------------------------------------
// 2. Rejection of garbage
// ------------------------------------------------------------------------------------------------

/// Valid packets (each well under 2000 bytes) for the mutation half of the garbage test.
fn seed_packets() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    let small_strings = [String::from("s"), String::from("relay://h:1/p"), String::new()];
    for msgs in [
        sample_messages(&u32_addrs()).into_iter().map(|m| encode_packet(&[m])).collect::<Vec<_>>(),
        sample_messages(&socket_addrs()).into_iter().map(|m| encode_packet(&[m])).collect(),
        sample_messages(&small_strings).into_iter().map(|m| encode_packet(&[m])).collect(),
    ] {
        seeds.extend(msgs.into_iter().filter(|p| p.len() < 2000));
    }
    // A few multi-message packets as well.
    let a: Message<u32> = Message::Ack { seq: 9 };
    let p: Message<u32> = Message::Ping(Ping { seq: 77, target: id("x"), source: id("y") });
    seeds.push(encode_packet(&[a.clone(), p.clone(), a]));
    seeds.push(packet_of(&[&p.to_bytes(), &frame(99, b"unknown"), &p.to_bytes()]));
    seeds
}

/// Appends a plausible field (small varint, short ASCII string, flag, IPv4 address...).
fn push_plausible_field(rng: &mut XorShift, w: &mut Writer) {
    match rng.below(7) {
        0 => w.varint(rng.below(300)),
        1 => push_short_text(rng, w, 0),
        2 => w.u8(rng.below(5) as u8),
        3 => push_plausible_address(rng, w),
        4 => w.u8(rng.byte()),
        5 => w.varint(rng.next() >> rng.below(64)),
        _ => {
            let len = rng.below(12) as usize;
            let mut tmp = Vec::new();
            rng.extend(&mut tmp, len);
            w.bytes(&tmp);
        }
    }
}

/// Appends a length-prefixed ASCII string of `min..min + 6` bytes (occasionally empty).
fn push_short_text(rng: &mut XorShift, w: &mut Writer, min: u64) {
    let len = if rng.chance(20) { 0 } else { min + rng.below(6) };
    let s: Vec<u8> = (0..len).map(|_| b'a' + rng.below(26) as u8).collect();
    w.bytes(&s);
}

/// Appends the wire form of a `u32`, an IPv4 `SocketAddr` or a `String` address, so each address
/// type's decoder sees its own format a third of the time.
fn push_plausible_address(rng: &mut XorShift, w: &mut Writer) {
    match rng.below(3) {
        0 => w.varint(rng.below(1000)),
        1 => {
            w.u8(4);
            let mut tmp = Vec::new();
            rng.extend(&mut tmp, 6);
            w.raw(&tmp);
        }
        _ => push_short_text(rng, w, 0),
    }
}

/// Appends a body that follows the field layout of `tag` with plausible (sometimes invalid) values,
/// so that generated packets regularly decode and the decoders are exercised past their first field.
fn push_plausible_body(rng: &mut XorShift, tag: u8, w: &mut Writer) {
    fn flag(rng: &mut XorShift, w: &mut Writer) {
        w.u8(if rng.chance(10) { 2 } else { rng.below(2) as u8 });
    }
    fn versions(rng: &mut XorShift, w: &mut Writer) {
        let min = rng.below(3) as u8;
        w.u8(min);
        w.u8(min + rng.below(3) as u8);
    }
    fn small(rng: &mut XorShift, w: &mut Writer) {
        w.varint(rng.below(300));
    }
    fn name(rng: &mut XorShift, w: &mut Writer) {
        push_short_text(rng, w, 1);
    }
    fn blob(rng: &mut XorShift, w: &mut Writer) {
        let len = rng.below(10) as usize;
        let mut tmp = Vec::new();
        rng.extend(&mut tmp, len);
        w.bytes(&tmp);
    }
    match tag {
        PING => {
            small(rng, w);
            name(rng, w);
            name(rng, w);
        }
        ACK | NACK => small(rng, w),
        PING_REQ => {
            small(rng, w);
            name(rng, w);
            push_plausible_address(rng, w);
            flag(rng, w);
        }
        ALIVE => {
            name(rng, w);
            push_plausible_address(rng, w);
            small(rng, w);
            if rng.chance(2) {
                w.u8(0);
                blob(rng, w);
            } else {
                w.u8(1);
                small(rng, w);
            }
            versions(rng, w);
        }
        SUSPECT => {
            name(rng, w);
            small(rng, w);
            name(rng, w);
        }
        DEAD => {
            name(rng, w);
            small(rng, w);
            name(rng, w);
            flag(rng, w);
        }
        BROADCAST => {
            name(rng, w);
            small(rng, w);
            small(rng, w);
            push_short_text(rng, w, 0);
            if rng.chance(2) {
                w.u8(0);
            } else {
                w.u8(1);
                blob(rng, w);
            }
            blob(rng, w);
        }
        DIRECT => {
            name(rng, w);
            push_short_text(rng, w, 0);
            blob(rng, w);
        }
        PUSH_PULL => {
            name(rng, w);
            w.u8(rng.below(5) as u8);
            let count = rng.below(4);
            w.varint(count + u64::from(rng.chance(10)));
            for _ in 0..count {
                name(rng, w);
                push_plausible_address(rng, w);
                small(rng, w);
                w.u8(rng.below(5) as u8);
                blob(rng, w);
                versions(rng, w);
            }
        }
        META_REQUEST => name(rng, w),
        _ => {
            for _ in 0..rng.below(8) {
                push_plausible_field(rng, w);
            }
        }
    }
}

/// Fills `buf` with one pseudo-random buffer of length `0..2000`, in one of four styles.
fn random_buffer(rng: &mut XorShift, seeds: &[Vec<u8>], buf: &mut Vec<u8>) -> usize {
    buf.clear();
    let len = rng.below(2000) as usize;
    let style = rng.below(4) as usize;
    match style {
        // Pure noise.
        0 => rng.extend(buf, len),
        // Noise behind a valid version byte.
        1 => {
            buf.push(PROTOCOL_VERSION);
            rng.extend(buf, len.saturating_sub(1));
        }
        // Messages with plausible tags, lengths and fields.
        2 => {
            buf.push(if rng.chance(32) { rng.byte() } else { PROTOCOL_VERSION });
            for _ in 0..1 + rng.below(4) {
                if buf.len() >= len {
                    break;
                }
                let tag = rng.below(14) as u8;
                let mut w = Writer::default();
                if rng.chance(4) {
                    for _ in 0..rng.below(8) {
                        push_plausible_field(rng, &mut w);
                    }
                } else {
                    push_plausible_body(rng, tag, &mut w);
                }
                let body = w.into_vec();
                let claimed = match rng.below(16) {
                    0 => body.len() as u64 + 1 + rng.below(4),
                    1 => (body.len() as u64).saturating_sub(1 + rng.below(4)),
                    2 => rng.next(),
                    _ => body.len() as u64,
                };
                buf.push(tag);
                let mut w = Writer::default();
                w.varint(claimed);
                buf.extend_from_slice(w.as_slice());
                buf.extend_from_slice(&body);
            }
            if rng.chance(4) {
                buf.truncate(len);
            }
        }
        // Mutations of valid packets.
        _ => {
            buf.extend_from_slice(&seeds[rng.below(seeds.len() as u64) as usize]);
            for _ in 0..1 + rng.below(4) {
                if buf.is_empty() {
                    break;
                }
                let at = rng.below(buf.len() as u64) as usize;
                match rng.below(7) {
                    0 => buf[at] ^= 1 << rng.below(8),
                    1 => buf[at] = rng.byte(),
                    2 => buf[at] = rng.below(4) as u8,
                    3 => buf.insert(at, rng.byte()),
                    4 => {
                        buf.remove(at);
                    }
                    5 => {
                        let end = (at + 1 + rng.below(16) as usize).min(buf.len());
                        let copy = buf[at..end].to_vec();
                        buf.splice(at..at, copy);
                    }
                    _ => buf.truncate(at),
                }
            }
        }
    }
    buf.truncate(1999);
    style
}

#[test]
fn random_buffers_are_rejected_or_decoded_without_panicking() {
    let seeds = seed_packets();
    let mut rng = XorShift::new(0x5eed_f00d_5401);
    let mut buf = Vec::with_capacity(4096);
    // [style][address type] -> number of buffers that decoded.
    let mut decoded = [[0usize; 3]; 4];
    let mut tried = [0usize; 4];
    for _ in 0..RANDOM_BUFFERS {
        let style = random_buffer(&mut rng, &seeds, &mut buf);
        assert!(buf.len() < 2000);
        tried[style] += 1;
        decoded[style][0] += usize::from(decode_checked::<u32>(&buf));
        decoded[style][1] += usize::from(decode_checked::<SocketAddr>(&buf));
        decoded[style][2] += usize::from(decode_checked::<String>(&buf));
    }
    assert_eq!(tried.iter().sum::<usize>(), RANDOM_BUFFERS);
    // The generator must actually reach the message decoders, not just fail on the version byte:
    // structured garbage and mutated packets decode successfully a fair share of the time.
    for style in [2, 3] {
        for (addr, &n) in decoded[style].iter().enumerate() {
            assert!(n > 100, "style {style} address type {addr}: only {n} of {} decoded", tried[style]);
        }
    }
}

/// Checks every prefix of a multi-message packet: a cut inside a message is always an error; a cut
/// exactly at a message boundary is itself a valid, shorter packet and yields the leading messages.
fn assert_every_truncation_handled<A: Address>(msgs: &[Message<A>]) {
    let mut w = Writer::default();
    begin_packet(&mut w, PROTOCOL_VERSION);
    let mut boundaries = vec![w.len()];
    for m in msgs {
        m.encode(&mut w);
        boundaries.push(w.len());
    }
    let packet = w.into_vec();
    assert_eq!(decode::<A>(&packet), (Ok(0), msgs.to_vec()));

    for cut in 0..packet.len() {
        let prefix = &packet[..cut];
        let (result, out) = decode::<A>(prefix);
        if cut <= 1 {
            assert_eq!(result, Err(DecodeError::Empty), "prefix of {cut} bytes");
            assert!(out.is_empty());
        } else if let Some(k) = boundaries.iter().position(|&b| b == cut) {
            assert_eq!(result, Ok(0), "prefix of {cut} bytes ends after message {k}");
            assert_eq!(out, msgs[..k].to_vec());
        } else {
            assert!(
                matches!(result, Err(DecodeError::Truncated | DecodeError::TooLong)),
                "prefix of {cut} bytes gave {result:?}"
            );
            assert!(out.is_empty(), "prefix of {cut} bytes left messages behind");
        }
    }
}

#[test]
fn a_truncated_packet_is_rejected_at_every_length_that_cuts_a_message() {
    assert_every_truncation_handled(&sample_messages(&u32_addrs()));
    assert_every_truncation_handled(&sample_messages(&socket_addrs()));
    assert_every_truncation_handled(&sample_messages(&string_addrs()));
}

#[test]
fn a_truncated_single_message_packet_is_rejected_at_every_length() {
    // With one message there is no inner boundary: every strict prefix must fail.
    for msg in sample_messages(&socket_addrs()) {
        let packet = encode_packet(&[msg]);
        for cut in 0..packet.len() {
            let (result, out) = decode::<SocketAddr>(&packet[..cut]);
            assert!(result.is_err(), "prefix of {cut} bytes of {packet:02x?}");
            assert!(out.is_empty());
        }
    }
}

fn assert_every_bit_flip_is_survived<A: Address>(msgs: &[Message<A>]) -> usize {
    let packet = encode_packet(msgs);
    let mut buf = packet.clone();
    let mut still_decoding = 0;
    for bit in 0..packet.len() * 8 {
        buf[bit / 8] ^= 1 << (bit % 8);
        if bit < 8 {
            let (result, out) = decode::<A>(&buf);
            assert_eq!(result, Err(DecodeError::UnsupportedVersion(buf[0])));
            assert!(out.is_empty());
        } else {
            still_decoding += usize::from(decode_checked::<A>(&buf));
        }
        buf[bit / 8] ^= 1 << (bit % 8);
    }
    assert_eq!(buf, packet);
    still_decoding
}

/// Up to two messages of each type (the smaller ones) from the sample set, so that flipping every
/// bit of their packet stays quick while still covering every decoder.
fn compact_messages<A: Address>(addrs: &[A; 3]) -> Vec<Message<A>> {
    let mut per_tag = [0usize; 256];
    let mut msgs = Vec::new();
    for m in sample_messages(addrs) {
        let bytes = m.to_bytes();
        if bytes.len() <= 700 && per_tag[usize::from(bytes[0])] < 2 {
            per_tag[usize::from(bytes[0])] += 1;
            msgs.push(m);
        }
    }
    assert!((1..=11).all(|t| per_tag[t] > 0), "every message type must be represented");
    msgs
}

#[test]
fn flipping_any_single_bit_of_a_valid_packet_never_panics() {
    let short_strings = [String::new(), String::from("relay://h:1/p"), String::from("tcp://10.0.0.7:7946")];
    // Some flips land in payloads or counters and still decode (to something else); the rest fail.
    assert!(assert_every_bit_flip_is_survived(&compact_messages(&u32_addrs())) > 0);
    assert!(assert_every_bit_flip_is_survived(&compact_messages(&socket_addrs())) > 0);
    assert!(assert_every_bit_flip_is_survived(&compact_messages(&short_strings)) > 0);
}

#[test]
fn a_packet_with_an_unsupported_version_is_rejected() {
    let ack: Message<u32> = Message::Ack { seq: 1 };
    for version in [0u8, PROTOCOL_VERSION + 1, 0x7f, 0xff] {
        let mut w = Writer::default();
        begin_packet(&mut w, version);
        ack.encode(&mut w);
        let (result, out) = decode::<u32>(w.as_slice());
        assert_eq!(result, Err(DecodeError::UnsupportedVersion(version)));
        assert!(out.is_empty());
        // The version is checked before anything else, even with nothing after it.
        assert_eq!(decode::<u32>(&[version]).0, Err(DecodeError::UnsupportedVersion(version)));
    }
}

#[test]
fn an_empty_buffer_is_rejected_as_empty() {
    assert_eq!(decode::<u32>(&[]), (Err(DecodeError::Empty), Vec::new()));
    assert_eq!(decode::<String>(&[]), (Err(DecodeError::Empty), Vec::new()));
}

#[test]
fn a_packet_with_only_the_version_byte_is_rejected_as_empty() {
    assert_eq!(decode::<u32>(&[PROTOCOL_VERSION]), (Err(DecodeError::Empty), Vec::new()));
}

#[test]
fn a_message_with_an_unknown_tag_is_skipped_and_its_neighbours_kept() {
    let before: Message<u32> = Message::Ack { seq: 1 };
    let after: Message<u32> = Message::Ping(Ping { seq: 2, target: id("t"), source: id("s") });
    let bodies: [(u8, Vec<u8>); 5] = [
        (0, Vec::new()),
        (64, vec![1, 2, 3]),
        // Bytes that would be a malformed message of any known type.
        (99, vec![0xff; 200]),
        (255, vec![0x80; 20_000]),
        (128, b"a future message".to_vec()),
    ];
    for (tag, unknown_body) in &bodies {
        let packet = packet_of(&[&before.to_bytes(), &frame(*tag, unknown_body), &after.to_bytes()]);
        let (result, out) = decode::<u32>(&packet);
        assert_eq!(result, Ok(1), "tag {tag}");
        assert_eq!(out, vec![before.clone(), after.clone()]);

        let mut r = Reader::new(&packet[1 + before.to_bytes().len()..]);
        assert_eq!(decode_message::<u32>(&mut r), Ok(Decoded::Unknown(*tag)));
        assert_eq!(r.remaining(), after.to_bytes().len());
    }

    // Several unknown messages interleaved with known ones are all counted.
    let frames: Vec<Vec<u8>> = bodies.iter().map(|(t, b)| frame(*t, b)).collect();
    let packet = packet_of(&[&frames[0], &before.to_bytes(), &frames[1], &frames[2], &after.to_bytes(), &frames[4]]);
    let (result, out) = decode::<u32>(&packet);
    assert_eq!(result, Ok(4));
    assert_eq!(out, vec![before, after]);
}

#[test]
fn an_unknown_tag_whose_length_runs_past_the_end_rejects_the_packet() {
    let ack = Message::<u32>::Ack { seq: 1 }.to_bytes();
    let mut lying = frame(99, &[0; 10]);
    lying.truncate(lying.len() - 1);
    let (result, out) = decode::<u32>(&packet_of(&[&ack, &lying]));
    assert_eq!(result, Err(DecodeError::TooLong));
    assert!(out.is_empty());
    // Tag present, length missing.
    assert_eq!(decode::<u32>(&packet_of(&[&ack, &[99]])), (Err(DecodeError::Truncated), Vec::new()));
}

#[test]
fn a_body_with_trailing_bytes_is_rejected() {
    fn check<A: Address>(msgs: &[Message<A>]) {
        let ack = Message::<A>::Ack { seq: 3 }.to_bytes();
        for m in msgs {
            let encoded = m.to_bytes();
            let (tag, body) = split_frame(&encoded);
            for extra in [&[0u8][..], &[1, 2, 3], &[0xff; 130]] {
                let mut padded = body.to_vec();
                padded.extend_from_slice(extra);
                let packet = packet_of(&[&ack, &frame(tag, &padded), &ack]);
                let (result, out) = decode::<A>(&packet);
                assert_eq!(result, Err(DecodeError::TrailingBytes), "{m:?} + {extra:?}");
                assert!(out.is_empty());
            }
        }
    }
    check(&sample_messages(&u32_addrs()));
    check(&sample_messages(&socket_addrs()));
    check(&sample_messages(&string_addrs()));
}

#[test]
fn a_push_pull_whose_member_count_is_huge_is_rejected_before_allocating() {
    let started = std::time::Instant::now();
    for count in [1u64 << 40, u64::MAX, 1 << 62, u32::MAX as u64 + 1] {
        let b = body(|w| {
            w.str("from");
            w.u8(0);
            w.varint(count);
            w.raw(&[0; 64]);
        });
        let packet = packet_of(&[&frame(PUSH_PULL, &b)]);
        assert_eq!(decode::<u32>(&packet), (Err(DecodeError::TooLong), Vec::new()), "count {count}");
        assert_eq!(decode::<SocketAddr>(&packet).0, Err(DecodeError::TooLong), "count {count}");
        assert_eq!(decode::<String>(&packet).0, Err(DecodeError::TooLong), "count {count}");
    }
    // Just beyond what the remaining bytes could hold (6 bytes per record) is rejected up front.
    let b = body(|w| {
        w.str("from");
        w.u8(0);
        w.varint(11);
        w.raw(&[0; 60]);
    });
    assert_eq!(decode::<u32>(&packet_of(&[&frame(PUSH_PULL, &b)])).0, Err(DecodeError::TooLong));
    // A count the bytes could hold but that the records do not back up fails on the records.
    let b = body(|w| {
        w.str("from");
        w.u8(0);
        w.varint(10);
        w.raw(&[0; 60]);
    });
    assert_eq!(decode::<u32>(&packet_of(&[&frame(PUSH_PULL, &b)])).0, Err(DecodeError::InvalidName));
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "rejecting huge counts took {:?}",
        started.elapsed()
    );
}

#[test]
fn out_of_range_field_values_are_rejected_with_the_right_error() {
    use DecodeError::*;
    let big_name = "x".repeat(NodeId::MAX_LEN + 1);
    let big_topic = "t".repeat(MAX_TOPIC_LEN + 1);
    let u32_cases: Vec<(&str, u8, Vec<u8>, DecodeError)> = vec![
        ("ack seq above u32", ACK, body(|w| w.varint(u64::from(u32::MAX) + 1)), InvalidValue),
        ("nack seq overlong varint", NACK, body(|w| w.raw(&[0xff; 11])), BadVarint),
        (
            "ping with an empty target name",
            PING,
            body(|w| {
                w.varint(1);
                w.str("");
                w.str("b");
            }),
            InvalidName,
        ),
        (
            "ping with a 256-byte name",
            PING,
            body(|w| {
                w.varint(1);
                w.str("a");
                w.str(&big_name);
            }),
            InvalidName,
        ),
        (
            "ping with a name that is not UTF-8",
            PING,
            body(|w| {
                w.varint(1);
                w.bytes(&[0xc3, 0x28]);
                w.str("b");
            }),
            InvalidUtf8,
        ),
        (
            "ping missing its source",
            PING,
            body(|w| {
                w.varint(1);
                w.str("a");
            }),
            Truncated,
        ),
        (
            "ping-req with want_nack 2",
            PING_REQ,
            body(|w| {
                w.varint(1);
                w.str("a");
                w.varint(5);
                w.u8(2);
            }),
            InvalidValue,
        ),
        (
            "ping-req with a u32 address above u32",
            PING_REQ,
            body(|w| {
                w.varint(1);
                w.str("a");
                w.varint(1 << 32);
                w.u8(0);
            }),
            InvalidAddress,
        ),
        (
            "alive with meta marker 2",
            ALIVE,
            body(|w| {
                w.str("a");
                w.varint(5);
                w.varint(1);
                w.u8(2);
                w.bytes(b"m");
                w.raw(&[1, 1]);
            }),
            InvalidValue,
        ),
        (
            "alive with an omitted meta length above u32",
            ALIVE,
            body(|w| {
                w.str("a");
                w.varint(5);
                w.varint(1);
                w.u8(1);
                w.varint(1 << 32);
                w.raw(&[1, 1]);
            }),
            InvalidValue,
        ),
        (
            "alive with min version 0",
            ALIVE,
            body(|w| {
                w.str("a");
                w.varint(5);
                w.varint(1);
                w.u8(1);
                w.varint(0);
                w.raw(&[0, 1]);
            }),
            InvalidValue,
        ),
        (
            "alive with min version above max version",
            ALIVE,
            body(|w| {
                w.str("a");
                w.varint(5);
                w.varint(1);
                w.u8(1);
                w.varint(0);
                w.raw(&[3, 2]);
            }),
            InvalidValue,
        ),
        (
            "alive with an incarnation above u32",
            ALIVE,
            body(|w| {
                w.str("a");
                w.varint(5);
                w.varint(1 << 32);
                w.u8(1);
                w.varint(0);
                w.raw(&[1, 1]);
            }),
            InvalidValue,
        ),
        (
            "dead with left flag 2",
            DEAD,
            body(|w| {
                w.str("a");
                w.varint(1);
                w.str("b");
                w.u8(2);
            }),
            InvalidValue,
        ),
        (
            "suspect missing its accuser",
            SUSPECT,
            body(|w| {
                w.str("a");
                w.varint(1);
            }),
            Truncated,
        ),
        (
            "broadcast with key marker 2",
            BROADCAST,
            body(|w| {
                w.str("a");
                w.varint(1);
                w.varint(1);
                w.str("topic");
                w.u8(2);
                w.bytes(b"payload");
            }),
            InvalidValue,
        ),
        (
            "broadcast with a 256-byte topic",
            BROADCAST,
            body(|w| {
                w.str("a");
                w.varint(1);
                w.varint(1);
                w.str(&big_topic);
                w.u8(0);
                w.bytes(b"payload");
            }),
            TooLong,
        ),
        (
            "broadcast with a topic that is not UTF-8",
            BROADCAST,
            body(|w| {
                w.str("a");
                w.varint(1);
                w.varint(1);
                w.bytes(&[0xff]);
                w.u8(0);
                w.bytes(b"payload");
            }),
            InvalidUtf8,
        ),
        (
            "broadcast whose payload length runs past the body",
            BROADCAST,
            body(|w| {
                w.str("a");
                w.varint(1);
                w.varint(1);
                w.str("t");
                w.u8(0);
                w.varint(50);
                w.raw(b"short");
            }),
            TooLong,
        ),
        (
            "direct with a 256-byte topic",
            DIRECT,
            body(|w| {
                w.str("a");
                w.str(&big_topic);
                w.bytes(b"payload");
            }),
            TooLong,
        ),
        (
            "push-pull with flags 4",
            PUSH_PULL,
            body(|w| {
                w.str("a");
                w.u8(4);
                w.varint(0);
            }),
            InvalidValue,
        ),
        (
            "push-pull with a member in state 4",
            PUSH_PULL,
            body(|w| {
                w.str("a");
                w.u8(0);
                w.varint(1);
                w.str("m");
                w.varint(5);
                w.varint(1);
                w.u8(4);
                w.bytes(b"");
                w.raw(&[1, 1]);
            }),
            InvalidValue,
        ),
        (
            "push-pull with a member whose versions are reversed",
            PUSH_PULL,
            body(|w| {
                w.str("a");
                w.u8(0);
                w.varint(1);
                w.str("m");
                w.varint(5);
                w.varint(1);
                w.u8(0);
                w.bytes(b"");
                w.raw(&[2, 1]);
            }),
            InvalidValue,
        ),
        ("meta request with an empty name", META_REQUEST, body(|w| w.str("")), InvalidName),
        (
            "member digest with no bucket",
            MEMBER_DIGEST,
            body(|w| {
                w.raw(&7u32.to_le_bytes());
                w.varint(0);
            }),
            InvalidValue,
        ),
        (
            "member digest with more buckets than the limit",
            MEMBER_DIGEST,
            body(|w| {
                w.raw(&7u32.to_le_bytes());
                let n = crate::wire::MAX_MEMBER_DIGEST_BUCKETS + 1;
                w.varint(n as u64);
                w.raw(&vec![0; 4 * n]);
            }),
            TooLong,
        ),
        (
            "member digest claiming more buckets than its body holds",
            MEMBER_DIGEST,
            body(|w| {
                w.raw(&7u32.to_le_bytes());
                w.varint(3);
                w.raw(&[0; 8]);
            }),
            TooLong,
        ),
    ];
    for (what, tag, b, want) in &u32_cases {
        let (result, out) = decode::<u32>(&packet_of(&[&frame(*tag, b)]));
        assert_eq!(result, Err(*want), "{what}");
        assert!(out.is_empty(), "{what}");
    }

    let ping_req_to = |addr: &dyn Fn(&mut Writer)| {
        body(|w| {
            w.varint(1);
            w.str("a");
            addr(w);
            w.u8(0);
        })
    };
    let socket_cases: [(&str, Vec<u8>, DecodeError); 3] = [
        (
            "address family 5",
            ping_req_to(&|w| {
                w.u8(5);
                w.raw(&[0; 6]);
            }),
            InvalidAddress,
        ),
        (
            "IPv6 address cut short",
            ping_req_to(&|w| {
                w.u8(6);
                w.raw(&[0; 4]);
            }),
            Truncated,
        ),
        (
            "IPv4 address without a port",
            ping_req_to(&|w| {
                w.u8(4);
                w.raw(&[127, 0, 0, 1]);
            }),
            // The flag byte is read as half of the port, then the port runs out.
            Truncated,
        ),
    ];
    for (what, b, want) in &socket_cases {
        let (result, out) = decode::<SocketAddr>(&packet_of(&[&frame(PING_REQ, b)]));
        assert_eq!(result, Err(*want), "{what}");
        assert!(out.is_empty(), "{what}");
    }

    let string_cases: [(&str, Vec<u8>, DecodeError); 2] = [
        ("1025-byte address", ping_req_to(&|w| w.str(&"x".repeat(1025))), InvalidAddress),
        ("address that is not UTF-8", ping_req_to(&|w| w.bytes(&[0xe2, 0x82])), InvalidUtf8),
    ];
    for (what, b, want) in &string_cases {
        let (result, out) = decode::<String>(&packet_of(&[&frame(PING_REQ, b)]));
        assert_eq!(result, Err(*want), "{what}");
        assert!(out.is_empty(), "{what}");
    }
}

#[test]
fn an_overlong_length_prefix_is_a_bad_varint() {
    let mut packet = vec![PROTOCOL_VERSION, ACK];
    packet.extend_from_slice(&[0xff; 11]);
    assert_eq!(decode::<u32>(&packet), (Err(DecodeError::BadVarint), Vec::new()));
}

// ------------------------------------------------------------------------------------------------
// 3. Size facts
// ------------------------------------------------------------------------------------------------

#[test]
fn an_ack_packet_is_four_bytes() {
    // [version][tag][body length][seq as a one-byte varint]
    let packet = encode_packet(&[Message::<u32>::Ack { seq: 7 }]);
    assert_eq!(packet, [PROTOCOL_VERSION, ACK, 1, 7]);
    assert_eq!(packet.len(), 4);
    // The largest sequence number costs four more bytes: a five-byte varint.
    let packet = encode_packet(&[Message::<u32>::Ack { seq: u32::MAX }]);
    assert_eq!(packet, [PROTOCOL_VERSION, ACK, 5, 0xff, 0xff, 0xff, 0xff, 0x0f]);
}

#[test]
fn a_ping_between_two_short_names_is_at_most_sixteen_bytes() {
    let ping: Message<u32> = Message::Ping(Ping { seq: 300, target: id("web1"), source: id("db-2") });
    let packet = encode_packet(&[ping]);
    // version, tag, body length 12, seq 300 = ac 02, then two length-prefixed 4-byte names.
    let expected = [PROTOCOL_VERSION, PING, 12, 0xac, 0x02, 4, b'w', b'e', b'b', b'1', 4, b'd', b'b', b'-', b'2'];
    assert_eq!(packet, expected);
    assert_eq!(packet.len(), 15);

    // Any names of up to four bytes with any sequence number below 2^14 stay within 16 bytes.
    for seq in [0, 1, 127, 128, 16_383] {
        for (t, s) in [("a", "b"), ("ab", "cd"), ("abc", "d"), ("abcd", "wxyz")] {
            let p = encode_packet(&[Message::<u32>::Ping(Ping { seq, target: id(t), source: id(s) })]);
            let expected_len = 1 + 1 + 1 + varint_len(u64::from(seq)) + 2 + t.len() + s.len();
            assert_eq!(p.len(), expected_len);
            assert!(p.len() <= 16, "{t}/{s}/{seq}: {} bytes", p.len());
        }
    }
}

#[test]
fn varint_len_and_bytes_len_agree_with_what_the_writer_writes() {
    let mut values = vec![0u64, u64::MAX];
    for k in 1..64 {
        values.extend([(1u64 << k) - 1, 1 << k, (1 << k) + 1]);
    }
    for v in values {
        let mut w = Writer::default();
        w.varint(v);
        assert_eq!(w.len(), varint_len(v), "varint {v}");
        assert_eq!(Reader::new(w.as_slice()).varint(), Ok(v));

        // Inserting in front of existing bytes grows the buffer by the same amount.
        let mut w = Writer::default();
        w.raw(b"xyz");
        w.insert_varint(1, v);
        assert_eq!(w.len(), 3 + varint_len(v), "inserted varint {v}");
        let mut r = Reader::new(w.as_slice());
        assert_eq!(r.u8(), Ok(b'x'));
        assert_eq!(r.varint(), Ok(v));
        assert_eq!(r.take(2), Ok(&b"yz"[..]));
    }
    for (v, len) in [(0u64, 1), (127, 1), (128, 2), (16_383, 2), (16_384, 3), (u64::from(u32::MAX), 5), (u64::MAX, 10)]
    {
        assert_eq!(varint_len(v), len, "varint_len({v})");
    }
    for len in [0usize, 1, 2, 127, 128, 129, 16_383, 16_384, 16_385, 70_000] {
        let data = vec![0x5a; len];
        let mut w = Writer::default();
        w.bytes(&data);
        assert_eq!(w.len(), bytes_len(len), "bytes of {len}");
        let text = "z".repeat(len);
        let mut w = Writer::default();
        w.str(&text);
        assert_eq!(w.len(), bytes_len(len), "str of {len}");
        assert_eq!(Reader::new(w.as_slice()).str(), Ok(text.as_str()));
    }
}

#[test]
fn encoded_lengths_of_names_and_addresses_match_what_is_written() {
    for name in ["a", "inline-14-byte", "nœud-λ-東京", &longest_name()] {
        let n = id(name);
        let mut w = Writer::default();
        n.encode(&mut w);
        assert_eq!(w.len(), n.encoded_len(), "name {name:?}");
    }
    fn check<A: Address>(addrs: &[A]) {
        for a in addrs {
            let mut w = Writer::default();
            a.encode(&mut w);
            assert_eq!(w.len(), a.encoded_len(), "{a:?}");
            let mut r = Reader::new(w.as_slice());
            assert_eq!(A::decode(&mut r).as_ref(), Ok(a));
            assert!(r.is_empty());
        }
    }
    check(&[0u32, 127, 128, u32::MAX]);
    check(&[0u64, 1 << 35, u64::MAX]);
    check(&socket_addrs());
    check(&string_addrs());
}

#[test]
fn a_packet_is_the_version_byte_plus_each_message_length_prefixed() {
    for m in sample_messages(&socket_addrs()) {
        let bytes = m.to_bytes();
        let (_, body) = split_frame(&bytes);
        assert_eq!(bytes.len(), 1 + bytes_len(body.len()), "{m:?}");
    }
    let msgs = sample_messages(&u32_addrs());
    let total: usize = msgs.iter().map(|m| m.to_bytes().len()).sum();
    assert_eq!(encode_packet(&msgs).len(), 1 + total);
}

// ------------------------------------------------------------------------------------------------
// 4. All or nothing
// ------------------------------------------------------------------------------------------------

#[test]
fn decode_packet_leaves_out_empty_on_error_even_if_earlier_messages_decoded() {
    let good = sample_messages(&u32_addrs());
    let mut w = Writer::default();
    begin_packet(&mut w, PROTOCOL_VERSION);
    for m in &good {
        m.encode(&mut w);
    }
    let valid_len = w.len();

    // Each kind of failure placed after every good message.
    let failures: [(Vec<u8>, DecodeError); 5] = [
        (frame(ACK, &[0x80]), DecodeError::Truncated),
        (frame(ACK, &[1, 2]), DecodeError::TrailingBytes),
        (frame(DEAD, &body(|w| w.str(""))), DecodeError::InvalidName),
        (vec![NACK, 40, 1], DecodeError::TooLong),
        (vec![PING], DecodeError::Truncated),
    ];
    for (bad, err) in failures {
        w.truncate(valid_len);
        w.raw(&bad);
        let mut out: Vec<Message<u32>> = vec![Message::Nack { seq: 1 }; 3];
        assert_eq!(decode_packet(w.as_slice(), &mut out), Err(err));
        assert!(out.is_empty(), "{err:?} left {} messages", out.len());
    }

    // The same output vector is reusable: a later good packet replaces whatever it held.
    let mut out: Vec<Message<u32>> = vec![Message::Nack { seq: 1 }];
    w.truncate(valid_len);
    assert_eq!(decode_packet(w.as_slice(), &mut out), Ok(0));
    assert_eq!(out, good);
    assert_eq!(decode_packet(&[PROTOCOL_VERSION, ACK, 1], &mut out), Err(DecodeError::TooLong));
    assert!(out.is_empty());
    assert_eq!(decode_packet(&[PROTOCOL_VERSION, ACK, 1, 9], &mut out), Ok(0));
    assert_eq!(out, vec![Message::Ack { seq: 9 }]);
}

#[test]
fn an_error_in_the_middle_of_a_packet_discards_the_messages_after_it_too() {
    let ack = Message::<u32>::Ack { seq: 1 }.to_bytes();
    let bad = frame(PING_REQ, &body(|w| w.varint(1)));
    let packet = packet_of(&[&ack, &ack, &bad, &ack, &ack]);
    assert_eq!(decode::<u32>(&packet), (Err(DecodeError::Truncated), Vec::new()));
}

#[test]
fn a_digest_whose_holes_do_not_ascend_is_rejected() {
    let entry = |holes: Vec<u64>| DigestEntry { origin: id("o"), epoch: 1, next: 9, holes, keyed: 0 };
    let good = Message::<u32>::BroadcastDigest { entries: vec![entry(vec![2, 5])] }.to_bytes();
    assert_round_trip::<u32>(&[Message::BroadcastDigest { entries: vec![entry(vec![2, 5])] }]);
    // Turn the second hole's distance (3) into 0: the same hole twice.
    let mut repeated = good.clone();
    let at = repeated.iter().rposition(|&b| b == 3).unwrap();
    repeated[at] = 0;
    let (result, _) = decode::<u32>(&packet_of(&[&repeated]));
    assert_eq!(result, Err(DecodeError::InvalidValue));
}

fn inline_name() -> NodeId {
    id("puller")
}

#[test]
fn a_time_to_live_rides_only_on_keyed_values_is_never_zero_and_with_ttl_reframes_a_kept_value() {
    let keyed = |ttl_ms| UserBroadcast {
        origin: NodeId::new("o").unwrap(),
        epoch: 3,
        seq: 4,
        topic: String::from("presence"),
        key: Some(b"me".to_vec()),
        payload: b"here".to_vec(),
        ttl_ms,
    };
    let plain = Message::<u32>::Broadcast(keyed(None)).to_bytes();
    let with = Message::<u32>::Broadcast(keyed(Some(1_500))).to_bytes();
    assert_eq!(super::message::with_ttl(&plain, 1_500), with, "the log's copy, reframed, is what the origin sent");
    assert_eq!(decode::<u32>(&packet_of(&[&with])).1, vec![Message::Broadcast(keyed(Some(1_500)))]);
    // An unkeyed broadcast with a time to live, or a time of 0, is not canonical.
    let unkeyed = UserBroadcast { key: None, ..keyed(Some(1_500)) };
    let bytes = Message::<u32>::Broadcast(unkeyed).to_bytes();
    assert_eq!(decode::<u32>(&packet_of(&[&bytes])).0, Err(DecodeError::InvalidValue));
    let zero = Message::<u32>::Broadcast(keyed(Some(0))).to_bytes();
    assert_eq!(decode::<u32>(&packet_of(&[&zero])).0, Err(DecodeError::InvalidValue));
    // Bytes that are no plain broadcast come back as they were.
    assert_eq!(super::message::with_ttl(&with, 9), with);
}

#[test]
fn a_request_for_no_records_or_for_more_than_the_most_it_may_name_is_rejected() {
    let names = |count: usize| {
        let mut w = Writer::with_capacity(64);
        w.varint(count as u64);
        for i in 0..count {
            id(&format!("m{i}")).encode(&mut w);
        }
        w.into_vec()
    };
    let (result, _) = decode::<u32>(&packet_of(&[&frame(WANTED_RECORDS, &names(0))]));
    assert_eq!(result, Err(DecodeError::InvalidValue));
    let (result, _) = decode::<u32>(&packet_of(&[&frame(WANTED_RECORDS, &names(MAX_WANTED_RECORDS + 1))]));
    assert_eq!(result, Err(DecodeError::TooLong));
    let mut claims_more = names(3);
    claims_more[0] = 40;
    let (result, _) = decode::<u32>(&packet_of(&[&frame(WANTED_RECORDS, &claims_more)]));
    assert_eq!(result, Err(DecodeError::TooLong), "a count its body cannot hold");
    let (result, out) = decode::<u32>(&packet_of(&[&frame(WANTED_RECORDS, &names(MAX_WANTED_RECORDS))]));
    assert_eq!(result, Ok(0));
    assert!(matches!(&out[..], [Message::WantedRecords { names }] if names.len() == MAX_WANTED_RECORDS));
}
