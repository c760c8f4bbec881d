//! Property tests of the wire format: every message variant with arbitrary valid fields survives an
//! encode/decode round trip, `to_bytes` agrees with `encode`, and the decoder never panics on
//! truncated or arbitrary input.

use std::fmt::Debug;
use std::net::SocketAddr;

use proptest::collection::vec;
use proptest::prelude::*;
use shoal_core::wire::{
    begin_packet, decode_packet, Alive, DigestEntry, MemberRecord, Message, MetaField, Ping, Query, UserBroadcast,
    Writer, MAX_TOPIC_LEN, PROTOCOL_VERSION,
};
use shoal_core::{Address, MemberState, NodeId};

/// Characters pushed while the text stays within `max_bytes` (the first one always fits).
fn text_within(chars: Vec<char>, max_bytes: usize) -> String {
    let mut s = String::new();
    for c in chars {
        if s.len() + c.len_utf8() > max_bytes {
            break;
        }
        s.push(c);
    }
    s
}

/// Node names: 1 to 40 bytes of arbitrary UTF-8.
fn node_id() -> impl Strategy<Value = NodeId> {
    vec(any::<char>(), 1..=40).prop_map(|chars| NodeId::new(&text_within(chars, 40)).expect("1-40 bytes"))
}

/// Topics: up to `MAX_TOPIC_LEN` (255) bytes of arbitrary UTF-8.
fn topic() -> impl Strategy<Value = String> {
    vec(any::<char>(), 0..=MAX_TOPIC_LEN).prop_map(|chars| text_within(chars, MAX_TOPIC_LEN))
}

/// Payloads: up to 2 KB.
fn payload() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..=2048)
}

fn member_state() -> impl Strategy<Value = MemberState> {
    prop_oneof![Just(MemberState::Alive), Just(MemberState::Suspect), Just(MemberState::Dead), Just(MemberState::Left),]
}

/// Protocol version ranges as the decoder accepts them: `1 <= min <= max`.
fn versions() -> impl Strategy<Value = (u8, u8)> {
    (1..=u8::MAX, 1..=u8::MAX).prop_map(|(a, b)| (a.min(b), a.max(b)))
}

fn meta_field() -> impl Strategy<Value = MetaField> {
    prop_oneof![payload().prop_map(MetaField::Included), any::<u32>().prop_map(|len| MetaField::Omitted { len })]
}

fn member_record<A: Debug + Clone>(addr: impl Strategy<Value = A>) -> impl Strategy<Value = MemberRecord<A>> {
    (node_id(), addr, any::<u32>(), member_state(), vec(any::<u8>(), 0..=64), versions()).prop_map(
        |(id, addr, incarnation, state, meta, (min_version, max_version))| MemberRecord {
            id,
            addr,
            incarnation,
            state,
            meta,
            min_version,
            max_version,
        },
    )
}

/// One life in a broadcast digest: holes ascending and distinct.
fn digest_entry() -> impl Strategy<Value = DigestEntry> {
    (node_id(), any::<u32>(), any::<u64>(), proptest::collection::btree_set(any::<u64>(), 0..=16), any::<u64>())
        .prop_map(|(origin, epoch, next, holes, keyed)| DigestEntry {
            origin,
            epoch,
            next,
            holes: holes.into_iter().collect(),
            keyed,
        })
}

/// Every `Message` variant, with arbitrary valid fields.
fn message<A: Debug + Clone + 'static>(addr: impl Strategy<Value = A> + Clone + 'static) -> BoxedStrategy<Message<A>> {
    prop_oneof![
        (any::<u32>(), node_id(), node_id()).prop_map(|(seq, target, source)| Message::Ping(Ping {
            seq,
            target,
            source
        })),
        any::<u32>().prop_map(|seq| Message::Ack { seq }),
        (any::<u32>(), node_id(), addr.clone(), any::<bool>()).prop_map(|(seq, target, target_addr, want_nack)| {
            Message::PingReq { seq, target, target_addr, want_nack }
        }),
        any::<u32>().prop_map(|seq| Message::Nack { seq }),
        (node_id(), addr.clone(), any::<u32>(), meta_field(), versions()).prop_map(
            |(id, addr, incarnation, meta, (min_version, max_version))| {
                Message::Alive(Alive { id, addr, incarnation, meta, min_version, max_version })
            }
        ),
        (node_id(), any::<u32>(), node_id()).prop_map(|(id, incarnation, from)| Message::Suspect {
            id,
            incarnation,
            from
        }),
        (node_id(), any::<u32>(), node_id(), any::<bool>())
            .prop_map(|(id, incarnation, from, left)| { Message::Dead { id, incarnation, from, left } }),
        (
            (node_id(), any::<u32>(), any::<u64>(), topic()),
            (proptest::option::of(vec(any::<u8>(), 0..=64)), payload(), proptest::option::of(1u32..)),
        )
            .prop_map(|((origin, epoch, seq, topic), (key, payload, ttl_ms))| {
                // Only keyed values have a time to live.
                let ttl_ms = ttl_ms.filter(|_| key.is_some());
                Message::Broadcast(UserBroadcast { origin, epoch, seq, topic, key, payload, ttl_ms })
            }),
        (node_id(), topic(), payload()).prop_map(|(from, topic, payload)| Message::Direct { from, topic, payload }),
        (node_id(), any::<bool>(), any::<bool>(), vec(member_record(addr.clone()), 0..=20))
            .prop_map(|(from, join, reply, members)| Message::PushPull { from, join, reply, members }),
        node_id().prop_map(|from| Message::MetaRequest { from }),
        vec(node_id(), 1..=shoal_core::wire::MAX_WANTED_RECORDS).prop_map(|names| Message::WantedRecords { names }),
        vec(digest_entry(), 0..=8).prop_map(|entries| Message::BroadcastDigest { entries }),
        vec(digest_entry(), 0..=8).prop_map(|entries| Message::BroadcastPull { entries }),
        (node_id(), any::<u32>(), any::<u64>(), topic(), payload())
            .prop_map(|(from, epoch, id, topic, payload)| Message::Reliable { from, epoch, id, topic, payload }),
        (any::<u32>(), any::<u64>()).prop_map(|(epoch, id)| Message::ReliableAck { epoch, id }),
        payload().prop_map(|state| Message::AppState { state }),
        (vec(-100_000.0f32..100_000.0, 8), 0.01f32..100_000.0, 0.0f32..1.5).prop_map(|(v, height, error)| {
            let mut vec = [0.0; 8];
            vec.copy_from_slice(&v);
            Message::Coordinate { units: shoal_core::coordinate::Coordinate { vec, height, error }.to_wire() }
        }),
        vec(any::<u8>(), 0..=shoal_core::wire::MAX_ACK_PAYLOAD).prop_map(|payload| Message::AckPayload { payload }),
        (
            (node_id(), addr.clone(), any::<u32>(), any::<u64>(), any::<u32>(), any::<bool>()),
            (
                proptest::option::of(topic()),
                vec((topic(), topic()), 0..=shoal_core::wire::MAX_QUERY_TAGS),
                topic(),
                payload()
            ),
        )
            .prop_map(
                |((origin, origin_addr, epoch, id, timeout_ms, want_ack), (name, tags, topic, payload))| {
                    Message::Query(Query {
                        origin,
                        origin_addr,
                        epoch,
                        id,
                        timeout_ms,
                        want_ack,
                        name,
                        tags,
                        topic,
                        payload,
                    })
                }
            ),
        (any::<u32>(), any::<u64>(), node_id(), any::<bool>(), payload())
            .prop_map(|(epoch, id, from, ack, payload)| Message::QueryResponse { epoch, id, from, ack, payload }),
    ]
    .boxed()
}

/// Text addresses (scheme-qualified relay addresses and the like); the decoder accepts up to 1 KB.
fn text_addr() -> impl Strategy<Value = String> + Clone {
    vec(any::<char>(), 0..=64).prop_map(|chars| chars.into_iter().collect())
}

fn encode_packet<A: Address>(messages: &[Message<A>]) -> Vec<u8> {
    let mut w = Writer::default();
    begin_packet(&mut w, PROTOCOL_VERSION);
    for m in messages {
        m.encode(&mut w);
    }
    w.into_vec()
}

fn assert_round_trip<A: Address>(messages: &[Message<A>]) -> Result<(), TestCaseError> {
    let bytes = encode_packet(messages);
    let mut decoded = Vec::new();
    prop_assert_eq!(decode_packet::<A>(&bytes, &mut decoded), Ok(0));
    prop_assert_eq!(decoded.as_slice(), messages);
    Ok(())
}

fn assert_to_bytes_matches_encode<A: Address>(m: &Message<A>) -> Result<(), TestCaseError> {
    let mut w = Writer::default();
    begin_packet(&mut w, PROTOCOL_VERSION);
    let before = w.len();
    m.encode(&mut w);
    let alone = m.to_bytes();
    prop_assert_eq!(alone.len(), w.len() - before);
    prop_assert_eq!(alone.as_slice(), &w.as_slice()[before..]);
    Ok(())
}

/// Decodes every prefix of a valid packet. None panics, and each either fails or, when it ends on a
/// message boundary, yields the messages it holds whole: a prefix of the original ones.
fn assert_truncations_are_safe<A: Address>(messages: &[Message<A>]) -> Result<(), TestCaseError> {
    let bytes = encode_packet(messages);
    let mut decoded = Vec::new();
    for len in 0..bytes.len() {
        if decode_packet::<A>(&bytes[..len], &mut decoded).is_ok() {
            prop_assert!(decoded.len() < messages.len(), "a truncated packet decoded to every message");
            prop_assert_eq!(decoded.as_slice(), &messages[..decoded.len()]);
        } else {
            prop_assert!(decoded.is_empty(), "a failed decode left messages behind");
        }
    }
    Ok(())
}

proptest! {
    #[test]
    fn a_packet_of_one_to_eight_messages_with_numeric_addresses_decodes_to_the_same_messages(
        messages in vec(message(any::<u32>()), 1..=8)
    ) {
        assert_round_trip(&messages)?;
    }

    #[test]
    fn a_packet_of_one_to_eight_messages_with_text_addresses_decodes_to_the_same_messages(
        messages in vec(message(text_addr()), 1..=8)
    ) {
        assert_round_trip(&messages)?;
    }

    #[test]
    fn to_bytes_is_exactly_what_encode_appends_for_every_message_with_numeric_addresses(m in message(any::<u32>())) {
        assert_to_bytes_matches_encode(&m)?;
    }

    #[test]
    fn to_bytes_is_exactly_what_encode_appends_for_every_message_with_text_addresses(m in message(text_addr())) {
        assert_to_bytes_matches_encode(&m)?;
    }

    #[test]
    fn decoding_any_truncation_of_a_valid_packet_never_panics_and_yields_only_whole_messages(
        messages in vec(message(any::<u32>()), 1..=8)
    ) {
        assert_truncations_are_safe(&messages)?;
    }

    #[test]
    fn decoding_any_truncation_of_a_valid_packet_with_text_addresses_never_panics(
        messages in vec(message(text_addr()), 1..=8)
    ) {
        assert_truncations_are_safe(&messages)?;
    }

    #[test]
    fn decoding_arbitrary_bytes_up_to_4_kb_never_panics(
        mut bytes in vec(any::<u8>(), 0..=4096),
        current_version in any::<bool>(),
    ) {
        // Half the inputs carry the current version byte, so the decoder gets past the header.
        if current_version && !bytes.is_empty() {
            bytes[0] = PROTOCOL_VERSION;
        }
        let _ = decode_packet::<u32>(&bytes, &mut Vec::new());
        let _ = decode_packet::<String>(&bytes, &mut Vec::new());
        let _ = decode_packet::<SocketAddr>(&bytes, &mut Vec::new());
    }
}

/// The npm package encodes tags in JavaScript (`encodeTags`, `parseTags`); this fixture, which its
/// test (`wasm/test/tags.test.mjs`) reads too, holds both to the same bytes.
#[test]
fn tags_encode_to_the_same_metadata_in_rust_and_in_the_npm_package() {
    let fixtures: serde_json::Value = serde_json::from_str(include_str!("../wasm/test/tags-fixtures.json")).unwrap();
    for f in fixtures.as_array().unwrap() {
        let pairs: Vec<(String, String)> =
            f["tags"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string())).collect();
        let tags = shoal_core::Tags::from_pairs(pairs.iter().map(|(k, v)| (k, v))).unwrap();
        let meta = f["meta"].as_str().unwrap();
        assert_eq!(String::from_utf8(tags.to_metadata()).unwrap(), meta);
        assert_eq!(shoal_core::Tags::from_metadata(meta.as_bytes()).unwrap(), tags);
    }
}

/// What a native member (with the `app-state` feature) answers a tab's join with when it has set an
/// application state: push-pull, state, broadcast digest.
fn native_join_answer() -> Vec<u8> {
    use shoal_core::addr::Addr;
    use shoal_core::{Config, Instant, Node};
    let native = Addr::parse("udp://10.0.0.1:7946").unwrap();
    let tab = Addr::parse("relay://relay.test:9/tab-1").unwrap();
    let mut node = Node::new(Instant::ZERO, Config::local(), NodeId::new("native-1").unwrap(), native, 1).unwrap();
    node.set_local_state(b"native state").unwrap();
    let record = MemberRecord {
        id: NodeId::new("tab-1").unwrap(),
        addr: tab.clone(),
        incarnation: 1,
        state: MemberState::Alive,
        meta: Vec::new(),
        min_version: 1,
        max_version: 1,
    };
    let request = encode_packet(&[Message::PushPull {
        from: NodeId::new("tab-1").unwrap(),
        join: true,
        reply: false,
        members: vec![record],
    }]);
    node.handle_packet(Instant::ZERO, tab.clone(), &request).unwrap();
    let answer = std::iter::from_fn(|| node.poll_transmit()).find(|t| t.reliable && t.to == tab);
    answer.expect("the join is answered").bytes
}

/// The npm package's wasm is built without the `app-state` feature: it is the "old member" that
/// must take a native member's join answer and skip the state in it. Its wasm-bindgen test
/// (`wasm/tests/wasm.rs`) feeds it this fixture; this test keeps the fixture what a native member
/// really sends. Regenerate with `SHOAL_WRITE_FIXTURES=1` after a deliberate change of the format.
#[test]
fn the_npm_package_fixture_is_what_a_native_member_with_application_state_answers_a_join_with() {
    let answer = native_join_answer();
    let mut out = Vec::new();
    decode_packet::<shoal_core::addr::Addr>(&answer, &mut out).unwrap();
    let kinds: Vec<&str> = out
        .iter()
        .map(|m| match m {
            Message::PushPull { .. } => "push-pull",
            Message::AppState { .. } => "state",
            Message::BroadcastDigest { .. } => "digest",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, ["push-pull", "state", "digest"]);
    let hex: String = answer.iter().map(|b| format!("{b:02x}")).collect();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../wasm/tests/push-pull-with-app-state.hex");
    if std::env::var_os("SHOAL_WRITE_FIXTURES").is_some() {
        std::fs::write(path, format!("{hex}\n")).unwrap();
    }
    let fixture = std::fs::read_to_string(path).expect("the fixture exists (SHOAL_WRITE_FIXTURES=1 writes it)");
    assert_eq!(fixture.trim(), hex, "the fixture is stale: regenerate it with SHOAL_WRITE_FIXTURES=1");
}
