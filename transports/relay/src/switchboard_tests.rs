//! Unit tests of the [`Switchboard`](super::Switchboard): routing, admission, full queues, closes,
//! rate limits, the UDP policy and signalling.
use std::time::Duration;

use shoal_core::relay::{accept_relay_datagram, SignalKind};

use crate::cidr::Cidr;
use crate::rate::RateLimit;

use super::*;

const RELAY: &str = "127.0.0.1:8080";

fn board() -> Switchboard {
    board_with(RelayConfig::default())
}

fn board_with(config: RelayConfig) -> Switchboard {
    Switchboard::new(RELAY, &config)
}

/// Admits `peer` and takes its welcome frame out of its queue.
fn join(b: &mut Switchboard, peer: &str) -> (Session, Arc<Outbox>) {
    b.check_admission(Some(peer), None).unwrap();
    let (s, q) = b.admit(peer, None).unwrap();
    q.try_pop().expect("welcome");
    (s, q)
}

fn frame(dest: &str, packet: &[u8]) -> Vec<u8> {
    encode_ws_frame(dest, packet).unwrap()
}

fn next(q: &Outbox) -> (String, Vec<u8>) {
    let f = q.try_pop().expect("a frame");
    let (addr, packet) = decode_ws_frame(&f).unwrap();
    (addr.to_string(), packet.to_vec())
}

#[test]
fn an_admitted_member_is_welcomed_with_its_own_relay_address_and_an_empty_packet() {
    let mut b = board();
    let (s, q) = b.admit("tab-7", None).unwrap();
    assert_eq!(s.addr(), "relay://127.0.0.1:8080/tab-7");
    assert_eq!(next(&q), ("relay://127.0.0.1:8080/tab-7".to_string(), vec![]));
    assert_eq!((b.stats().connections, b.stats().accepted), (1, 1));
}

#[test]
fn a_relay_with_a_token_refuses_a_missing_or_wrong_token_and_counts_it() {
    let mut b = board_with(RelayConfig { token: Some("s3cret".into()), ..Default::default() });
    assert_eq!(b.check_admission(Some("p"), None), Err(Refusal::MissingToken));
    assert_eq!(b.check_admission(Some("p"), Some("s3cre")), Err(Refusal::WrongToken));
    assert_eq!(b.check_admission(Some("p"), Some("s3cret!")), Err(Refusal::WrongToken));
    assert_eq!(b.check_admission(Some("p"), Some("s3cret")), Ok(()));
    assert_eq!(b.stats().rejected_token, 3);
    assert_eq!(b.connections(), 0, "checking admits nobody");
}

#[test]
fn an_open_relay_ignores_tokens() {
    let mut b = board();
    assert_eq!(b.check_admission(Some("p"), Some("anything")), Ok(()));
    assert_eq!(b.check_admission(Some("p"), None), Ok(()));
}

#[test]
fn invalid_or_missing_peer_ids_are_refused_and_counted() {
    let mut b = board();
    for bad in [None, Some(""), Some("a/b"), Some("sp ace"), Some(&*"x".repeat(65))] {
        assert_eq!(b.check_admission(bad, None), Err(Refusal::BadPeerId), "{bad:?}");
    }
    assert_eq!(b.admit("a:b", None).unwrap_err(), Refusal::BadPeerId);
    assert_eq!(b.stats().rejected_peer_id, 6);
}

#[test]
fn the_token_is_checked_before_the_peer_id() {
    let mut b = board_with(RelayConfig { token: Some("t".into()), ..Default::default() });
    assert_eq!(b.check_admission(Some("bad/id"), None), Err(Refusal::MissingToken));
}

#[test]
fn a_newer_connection_with_the_same_peer_id_replaces_the_older_one() {
    let mut b = board();
    let (old, old_q) = join(&mut b, "tab");
    let (new, new_q) = join(&mut b, "tab");
    assert!(old_q.is_closed(), "the old connection is told to go away");
    assert!(!new_q.is_closed());
    assert_eq!((b.connections(), b.stats().replaced), (1, 1));
    // The old connection's cleanup must not remove the new one.
    assert!(!b.disconnect(&old));
    assert!(b.is_connected("tab"));
    let (other, _) = join(&mut b, "other");
    assert_eq!(b.route_ws(&other, &frame("relay://127.0.0.1:8080/tab", b"\x01hi")), WsRoute::Delivered);
    assert_eq!(next(&new_q).1, b"\x01hi");
    assert!(b.disconnect(&new));
    assert!(!b.is_connected("tab"));
}

#[test]
fn a_replaced_connection_is_closed_with_the_replaced_code() {
    let mut b = board();
    let (_, old_q) = join(&mut b, "tab");
    let (_, new_q) = join(&mut b, "tab");
    assert_eq!(old_q.close_reason(), Some(CloseReason::Replaced));
    assert_eq!(new_q.close_reason(), None);
}

#[test]
fn a_member_the_server_finds_stalled_is_closed_as_a_slow_consumer_and_its_backlog_counted() {
    let mut b = board_with(RelayConfig { queue_frames: 8, queue_bytes: 1 << 20, ..Default::default() });
    let (p, _) = join(&mut b, "p");
    let (slow, slow_q) = join(&mut b, "slow");
    let f = frame("relay://127.0.0.1:8080/slow", b"\x01x");
    assert_eq!(b.route_ws(&p, &f), WsRoute::Delivered);
    assert_eq!(b.route_ws(&p, &f), WsRoute::Delivered);
    b.close(&slow, &slow_q, CloseReason::SlowConsumer);
    assert_eq!(slow_q.close_reason(), Some(CloseReason::SlowConsumer));
    assert!(!b.is_connected("slow"));
    let s = b.stats();
    assert_eq!((s.slow_consumers, s.dropped(DropReason::SlowConsumer)), (1, 2));
    assert_eq!(s.queued_frames, 0, "nothing held for it any more");
}

#[test]
fn closing_an_old_session_leaves_the_newer_connection_with_its_peer_id_alone() {
    let mut b = board();
    let (old, old_q) = join(&mut b, "tab");
    let (_, new_q) = join(&mut b, "tab");
    b.close(&old, &old_q, CloseReason::Idle);
    assert!(b.is_connected("tab") && !new_q.is_closed());
    assert_eq!(b.stats().connection_drops(ConnectionDrop::Idle), 1);
}

#[test]
fn shutting_down_closes_every_connection_with_the_going_away_code() {
    let mut b = board();
    let (_, a) = join(&mut b, "a");
    let (_, c) = join(&mut b, "c");
    b.close_all();
    assert_eq!(a.close_reason(), Some(CloseReason::ShuttingDown));
    assert_eq!(c.close_reason(), Some(CloseReason::ShuttingDown));
}

#[test]
fn a_connection_that_ended_by_itself_is_closed_without_a_reason() {
    let mut b = board();
    let (p, p_q) = join(&mut b, "p");
    assert!(b.disconnect(&p));
    assert!(p_q.is_closed());
    assert_eq!(p_q.close_reason(), None);
    // The relay shutting down afterwards does not invent one.
    b.close_all();
    assert_eq!(p_q.close_reason(), None);
}

#[test]
fn a_frame_to_another_member_arrives_stamped_with_the_senders_address() {
    let mut b = board();
    let (p, _) = join(&mut b, "p");
    let (_, q_out) = join(&mut b, "q");
    let f = frame("relay://127.0.0.1:8080/q", b"\x01ping");
    assert_eq!(b.route_ws(&p, &f), WsRoute::Delivered);
    assert_eq!(next(&q_out), ("relay://127.0.0.1:8080/p".to_string(), b"\x01ping".to_vec()));
    let s = b.stats();
    assert_eq!(s.ws_to_ws.frames, 1);
    assert_eq!(s.ws_to_ws.bytes, (1 + "relay://127.0.0.1:8080/p".len() + 5) as u64);
}

#[test]
fn a_member_cannot_choose_the_source_address_its_frames_carry() {
    let mut b = board();
    let (mallory, _) = join(&mut b, "mallory");
    let (_, victim_q) = join(&mut b, "victim");
    // Whatever the frame claims, the relay writes the sender's own address.
    let f = frame("relay://127.0.0.1:8080/victim", b"relay://127.0.0.1:8080/alice");
    b.route_ws(&mallory, &f);
    assert_eq!(next(&victim_q).0, "relay://127.0.0.1:8080/mallory");
}

#[test]
fn a_frame_to_a_udp_address_becomes_a_relay_datagram_a_native_member_accepts() {
    let mut b = board();
    let (p, _) = join(&mut b, "tab-7");
    let route = b.route_ws(&p, &frame("udp://10.0.0.5:7946", b"\x01probe"));
    let WsRoute::Udp { to, datagram } = route else { panic!("{route:?}") };
    assert_eq!(to, "10.0.0.5:7946".parse().unwrap());
    let relay_socket: SocketAddr = RELAY.parse().unwrap();
    let (source, packet) = accept_relay_datagram(relay_socket, &datagram).unwrap();
    assert_eq!(source.as_str(), "relay://127.0.0.1:8080/tab-7");
    assert_eq!(packet, b"\x01probe");
    assert_eq!(b.stats().ws_to_udp, crate::metrics::Forwarded { frames: 1, bytes: datagram.len() as u64 });
}

#[test]
fn a_datagram_from_a_native_member_arrives_stamped_with_its_udp_address() {
    let mut b = board();
    let (_, q) = join(&mut b, "tab-7");
    let from: SocketAddr = "10.0.0.5:7946".parse().unwrap();
    let d = encode_datagram("tab-7", b"\x01ack").unwrap();
    assert_eq!(b.route_udp(from, &d), Ok(()));
    assert_eq!(next(&q), ("udp://10.0.0.5:7946".to_string(), b"\x01ack".to_vec()));
    assert_eq!(b.stats().udp_to_ws.frames, 1);
}

#[test]
fn frames_to_unknown_destinations_are_dropped_and_counted() {
    let mut b = board();
    let (p, _) = join(&mut b, "p");
    for dest in [
        "relay://127.0.0.1:8080/nobody",
        "relay://other.relay:8080/p",
        "relay://127.0.0.1:8080/bad:id",
        "tcp://10.0.0.5:7946",
        "rtc://peer",
    ] {
        assert_eq!(b.route_ws(&p, &frame(dest, b"\x01")), WsRoute::Dropped(DropReason::UnknownDestination), "{dest}");
    }
    let from: SocketAddr = "10.0.0.5:7946".parse().unwrap();
    assert_eq!(b.route_udp(from, &encode_datagram("nobody", b"\x01").unwrap()), Err(DropReason::UnknownDestination));
    assert_eq!(b.stats().dropped(DropReason::UnknownDestination), 6);
    assert_eq!(b.stats().forwarded_frames(), 0);
}

#[test]
fn malformed_frames_and_datagrams_are_dropped_and_counted() {
    let mut b = board();
    let (p, _) = join(&mut b, "p");
    let from: SocketAddr = "10.0.0.5:7946".parse().unwrap();
    assert_eq!(b.route_ws(&p, &[]), WsRoute::Dropped(DropReason::Malformed));
    assert_eq!(b.route_ws(&p, &[9, b'a']), WsRoute::Dropped(DropReason::Malformed));
    assert_eq!(b.route_ws(&p, &frame("udp://not-an-ip:1", b"x")), WsRoute::Dropped(DropReason::Malformed));
    assert_eq!(b.route_ws(&p, &frame("relay://no-slash", b"x")), WsRoute::Dropped(DropReason::Malformed));
    assert_eq!(b.route_udp(from, b"\x01not a relay datagram"), Err(DropReason::Malformed));
    assert_eq!(b.route_udp(from, &encode_datagram("bad/id", b"x").unwrap()), Err(DropReason::Malformed));
    assert_eq!(b.route_udp(from, &[]), Err(DropReason::Malformed));
    assert_eq!(b.stats().dropped(DropReason::Malformed), 7);
}

#[test]
fn frames_larger_than_the_cap_are_dropped_and_counted() {
    let mut b = board_with(RelayConfig { max_frame: 1_000, ..Default::default() });
    let (p, _) = join(&mut b, "p");
    let (_, q) = join(&mut b, "q");
    let dest = "relay://127.0.0.1:8080/q";
    let at_cap = frame(dest, &vec![1u8; 1_000 - 1 - dest.len()]);
    assert_eq!(at_cap.len(), 1_000);
    assert_eq!(b.route_ws(&p, &at_cap), WsRoute::Delivered);
    let over = frame(dest, &vec![1u8; 1_000 - dest.len()]);
    assert_eq!(b.route_ws(&p, &over), WsRoute::Dropped(DropReason::Oversized));
    let from: SocketAddr = "10.0.0.5:7946".parse().unwrap();
    assert_eq!(b.route_udp(from, &encode_datagram("q", &[1u8; 1_000]).unwrap()), Err(DropReason::Oversized));
    assert_eq!(b.stats().dropped(DropReason::Oversized), 2);
    assert_eq!(q.len(), 1);
}

#[test]
fn a_full_queue_drops_the_frame_and_keeps_the_member_connected() {
    let mut b = board_with(RelayConfig { queue_frames: 4, queue_bytes: 1 << 20, ..Default::default() });
    let (p, _) = join(&mut b, "p");
    let (_, busy_q) = join(&mut b, "busy");
    let f = frame("relay://127.0.0.1:8080/busy", b"\x01x");
    for _ in 0..4 {
        assert_eq!(b.route_ws(&p, &f), WsRoute::Delivered);
    }
    assert_eq!(b.route_ws(&p, &f), WsRoute::Dropped(DropReason::QueueFull));
    assert!(!busy_q.is_closed(), "a full queue says nothing about whether the member reads");
    assert!(b.is_connected("busy"));
    assert_eq!((b.stats().slow_consumers, b.stats().dropped(DropReason::QueueFull)), (0, 1));
    // Once it has taken a frame, the next one fits again.
    busy_q.try_pop().unwrap();
    assert_eq!(b.route_ws(&p, &f), WsRoute::Delivered);
    assert_eq!(b.stats().queued_frames, 4);
}

#[test]
fn a_queue_is_full_by_bytes_as_well_as_by_frames() {
    let mut b = board_with(RelayConfig { queue_frames: 1_000, queue_bytes: 2_000, ..Default::default() });
    let (p, _) = join(&mut b, "p");
    let (_, busy_q) = join(&mut b, "busy");
    let f = frame("relay://127.0.0.1:8080/busy", &[1u8; 900]);
    assert_eq!(b.route_ws(&p, &f), WsRoute::Delivered);
    assert_eq!(b.route_ws(&p, &f), WsRoute::Delivered);
    assert_eq!(b.route_ws(&p, &f), WsRoute::Dropped(DropReason::QueueFull));
    assert!(!busy_q.is_closed());
    assert_eq!(b.stats().queued_bytes, busy_q.bytes() as u64);
}

#[test]
fn a_disconnected_member_is_forgotten_and_its_queue_closed() {
    let mut b = board();
    let (p, p_q) = join(&mut b, "p");
    assert!(b.disconnect(&p));
    assert!(p_q.is_closed());
    assert!(!b.disconnect(&p), "a second disconnect changes nothing");
    assert_eq!(b.stats().connections, 0);
}

#[test]
fn closing_everything_closes_every_queue() {
    let mut b = board();
    let (_, a) = join(&mut b, "a");
    let (_, c) = join(&mut b, "c");
    b.close_all();
    assert!(a.is_closed() && c.is_closed());
    assert_eq!(b.connections(), 0);
}

#[test]
fn a_relay_shutting_down_admits_nobody() {
    let mut b = board();
    b.close_all();
    assert_eq!(b.check_admission(Some("late"), None), Err(Refusal::ShuttingDown));
    assert_eq!(b.admit("late", None).unwrap_err(), Refusal::ShuttingDown);
    assert_eq!(b.connections(), 0);
}

fn signal(dest: &str, kind: SignalKind, body: &[u8]) -> Vec<u8> {
    encode_signal_frame(dest, kind, body).unwrap()
}

#[test]
fn a_signal_to_another_member_arrives_stamped_with_the_senders_address() {
    let mut b = board();
    let (alice, _) = join(&mut b, "alice");
    let (_, bob_q) = join(&mut b, "bob");
    let route = b.route_ws(&alice, &signal("relay://127.0.0.1:8080/bob", SignalKind::Offer, b"{sdp}"));
    assert_eq!(route, WsRoute::Delivered);
    let out = bob_q.try_pop().unwrap();
    assert_eq!(decode_signal_frame(&out).unwrap(), ("relay://127.0.0.1:8080/alice", SignalKind::Offer, &b"{sdp}"[..]));
    assert_eq!(b.stats().signals.frames, 1);
    assert_eq!(b.stats().ws_to_ws.frames, 0, "signals are counted apart from packets");
}

#[test]
fn every_signal_kind_is_forwarded_in_order() {
    let mut b = board();
    let (alice, _) = join(&mut b, "alice");
    let (_, bob_q) = join(&mut b, "bob");
    let kinds = [SignalKind::Offer, SignalKind::Candidate, SignalKind::Candidate, SignalKind::Bye];
    for k in kinds {
        assert_eq!(b.route_ws(&alice, &signal("relay://127.0.0.1:8080/bob", k, b"")), WsRoute::Delivered);
    }
    for k in kinds {
        assert_eq!(decode_signal_frame(&bob_q.try_pop().unwrap()).unwrap().1, k);
    }
}

#[test]
fn signals_to_native_members_other_relays_or_absent_peers_are_dropped() {
    let mut b = board();
    let (alice, _) = join(&mut b, "alice");
    for dest in ["udp://127.0.0.1:9", "relay://elsewhere:1/bob", "relay://127.0.0.1:8080/nobody"] {
        let route = b.route_ws(&alice, &signal(dest, SignalKind::Offer, b""));
        assert_eq!(route, WsRoute::Dropped(DropReason::UnknownDestination), "{dest}");
    }
    let mut bad_kind = signal("relay://127.0.0.1:8080/alice", SignalKind::Bye, b"");
    *bad_kind.last_mut().unwrap() = 0x7f;
    assert_eq!(b.route_ws(&alice, &bad_kind), WsRoute::Dropped(DropReason::Malformed));
    assert_eq!(b.route_ws(&alice, &[SIGNAL_TAG]), WsRoute::Dropped(DropReason::Malformed));
    assert_eq!(b.stats().signals.frames, 0);
}

#[test]
fn a_member_cannot_forge_the_source_of_a_signal() {
    let mut b = board();
    let (mallory, _) = join(&mut b, "mallory");
    let (_, bob_q) = join(&mut b, "bob");
    // The body may claim anything; the address the receiver sees is the relay's stamp.
    let forged = signal("relay://127.0.0.1:8080/bob", SignalKind::Answer, b"from alice");
    assert_eq!(b.route_ws(&mallory, &forged), WsRoute::Delivered);
    let out = bob_q.try_pop().unwrap();
    assert_eq!(decode_signal_frame(&out).unwrap().0, "relay://127.0.0.1:8080/mallory");
}

#[test]
fn a_member_may_send_to_itself() {
    let mut b = board();
    let (p, q) = join(&mut b, "p");
    assert_eq!(b.route_ws(&p, &frame("relay://127.0.0.1:8080/p", b"\x01echo")), WsRoute::Delivered);
    assert_eq!(next(&q), ("relay://127.0.0.1:8080/p".to_string(), b"\x01echo".to_vec()));
}

/// A relay on a public (not loopback) address, so nothing is trusted by default.
const PUBLIC_RELAY: &str = "203.0.113.7:8080";

fn public_board(config: RelayConfig) -> Switchboard {
    Switchboard::new(PUBLIC_RELAY, &config)
}

fn public_join(b: &mut Switchboard, peer: &str) -> (Session, Arc<Outbox>) {
    let (s, q) = b.admit(peer, None).unwrap();
    q.try_pop().expect("welcome");
    (s, q)
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn datagrams_from_a_stranger_pass_at_the_strangers_rate_only() {
    let limits = Limits { unknown_source: RateLimit::new(1, 2), ..Limits::default() };
    let mut b = public_board(RelayConfig { limits, ..Default::default() });
    let (_, q) = public_join(&mut b, "tab");
    let t0 = Instant::now();
    let d = encode_datagram("tab", b"\x01flood").unwrap();
    let stranger = sa("198.51.100.9:4000");
    let results: Vec<_> = (0..10).map(|_| b.route_udp_at(stranger, &d, t0)).collect();
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 2, "the burst");
    assert_eq!(b.stats().dropped(DropReason::UnknownSource), 8);
    // Another port of the same IP is the same stranger.
    assert_eq!(b.route_udp_at(sa("198.51.100.9:4001"), &d, t0), Err(DropReason::UnknownSource));
    assert_eq!(b.route_udp_at(stranger, &d, t0 + Duration::from_secs(1)), Ok(()), "one a second");
    assert_eq!(q.len(), 3);
    assert!(b.is_connected("tab"));
}

#[test]
fn strangers_together_pass_at_the_total_rate_only() {
    let limits = Limits { unknown_sources: RateLimit::new(1, 3), ..Limits::default() };
    let mut b = public_board(RelayConfig { limits, ..Default::default() });
    public_join(&mut b, "tab");
    let t0 = Instant::now();
    let d = encode_datagram("tab", b"\x01").unwrap();
    let passed = (0..20).filter(|i| b.route_udp_at(sa(&format!("198.51.100.{i}:4000")), &d, t0).is_ok()).count();
    assert_eq!(passed, 3);
}

#[test]
fn a_socket_a_member_sent_to_is_known_to_it_and_reaches_it_at_full_rate() {
    let mut b = public_board(RelayConfig::default());
    let (tab, q) = public_join(&mut b, "tab");
    public_join(&mut b, "other");
    let native = sa("198.51.100.9:7946");
    let t0 = Instant::now();
    assert!(matches!(b.route_ws_at(&tab, &frame("udp://198.51.100.9:7946", b"\x01probe"), t0), WsRoute::Udp { .. }));
    assert!(b.knows("tab", native) && !b.knows("other", native));
    let d = encode_datagram("tab", b"\x01ack").unwrap();
    for _ in 0..100 {
        assert_eq!(b.route_udp_at(native, &d, t0), Ok(()));
    }
    assert_eq!(q.len(), 100);
    // To a member that never sent to it, the same socket is a stranger.
    let to_other = encode_datagram("other", b"\x01").unwrap();
    let passed = (0..10).filter(|_| b.route_udp_at(native, &to_other, t0).is_ok()).count();
    assert_eq!(passed, Limits::default().unknown_source.burst as usize);
    // Known for known_ttl, then a stranger again.
    let later = t0 + Limits::default().known_ttl + Duration::from_secs(1);
    let passed = (0..10).filter(|_| b.route_udp_at(native, &d, later).is_ok()).count();
    assert_eq!(passed, Limits::default().unknown_source.burst as usize);
}

#[test]
fn a_known_source_is_still_limited_per_source() {
    let source = crate::rate::BudgetLimit { frames: RateLimit::new(10, 20), bytes: RateLimit::new(1 << 20, 1 << 20) };
    let limits = Limits { source, ..Limits::default() };
    let mut b = public_board(RelayConfig { limits, ..Default::default() });
    let (tab, _) = public_join(&mut b, "tab");
    let t0 = Instant::now();
    b.route_ws_at(&tab, &frame("udp://198.51.100.9:7946", b"\x01"), t0);
    let d = encode_datagram("tab", b"\x01").unwrap();
    let passed = (0..100).filter(|_| b.route_udp_at(sa("198.51.100.9:7946"), &d, t0).is_ok()).count();
    assert_eq!(passed, 20);
    assert_eq!(b.stats().dropped(DropReason::SourceRate), 80);
}

#[test]
fn sources_inside_udp_allow_are_trusted_and_with_allow_only_nothing_else_passes() {
    let allow: Vec<Cidr> = vec!["10.0.0.0/8".parse().unwrap()];
    let mut b = public_board(RelayConfig { udp_allow: Some(allow.clone()), ..Default::default() });
    let (tab, q) = public_join(&mut b, "tab");
    let t0 = Instant::now();
    let d = encode_datagram("tab", b"\x01").unwrap();
    for _ in 0..50 {
        assert_eq!(b.route_udp_at(sa("10.1.2.3:7946"), &d, t0), Ok(()));
    }
    assert_eq!(q.len(), 50);
    let mut only = public_board(RelayConfig { udp_allow: Some(allow), udp_allow_only: true, ..Default::default() });
    let (tab2, _) = public_join(&mut only, "tab");
    assert_eq!(only.route_udp_at(sa("198.51.100.9:7946"), &d, t0), Err(DropReason::ForbiddenSource));
    let out = only.route_ws_at(&tab2, &frame("udp://198.51.100.9:7946", b"\x01"), t0);
    assert_eq!(out, WsRoute::Dropped(DropReason::ForbiddenTarget));
    assert!(matches!(only.route_ws_at(&tab2, &frame("udp://10.9.9.9:7946", b"\x01"), t0), WsRoute::Udp { .. }));
    let _ = tab;
}

#[test]
fn the_relay_refuses_to_send_to_loopback_multicast_broadcast_or_unspecified_targets() {
    let mut b = public_board(RelayConfig::default());
    let (tab, _) = public_join(&mut b, "tab");
    for dest in [
        "udp://127.0.0.1:22",
        "udp://[::1]:53",
        "udp://0.0.0.0:7946",
        "udp://224.0.0.251:5353",
        "udp://255.255.255.255:7946",
        "udp://198.51.100.9:0",
    ] {
        assert_eq!(b.route_ws(&tab, &frame(dest, b"\x01")), WsRoute::Dropped(DropReason::ForbiddenTarget), "{dest}");
    }
    assert_eq!(b.stats().dropped(DropReason::ForbiddenTarget), 6);
    assert_eq!(b.stats().ws_to_udp.frames, 0);
    // Private ranges are where native members usually live: not refused, only rate limited.
    assert!(matches!(b.route_ws(&tab, &frame("udp://10.0.0.5:7946", b"\x01")), WsRoute::Udp { .. }));
}

#[test]
fn a_relay_on_loopback_sends_to_loopback_targets() {
    let mut b = board_with(RelayConfig { udp_allow: Some(vec![]), ..Default::default() });
    let (tab, _) = join(&mut b, "tab");
    assert!(matches!(b.route_ws(&tab, &frame("udp://127.0.0.1:7946", b"\x01")), WsRoute::Udp { .. }));
    assert_eq!(b.route_ws(&tab, &frame("udp://0.0.0.0:7946", b"\x01")), WsRoute::Dropped(DropReason::ForbiddenTarget));
}

#[test]
fn an_unverified_target_gets_a_few_datagrams_and_a_verified_one_full_rate() {
    let limits = Limits { unverified_target: RateLimit::new(1, 3), ..Limits::default() };
    let mut b = public_board(RelayConfig { limits, ..Default::default() });
    let (tab, _) = public_join(&mut b, "tab");
    let t0 = Instant::now();
    let to = frame("udp://198.51.100.9:7946", b"\x01");
    let sent = (0..50).filter(|_| matches!(b.route_ws_at(&tab, &to, t0), WsRoute::Udp { .. })).count();
    assert_eq!(sent, 3);
    assert_eq!(b.stats().dropped(DropReason::UnverifiedTarget), 47);
    // The target answers: it is verified, and taken at full rate.
    let answer = encode_datagram("tab", b"\x01ack").unwrap();
    assert_eq!(b.route_udp_at(sa("198.51.100.9:7946"), &answer, t0), Ok(()));
    assert!(b.is_verified(sa("198.51.100.9:7946")));
    let sent = (0..50).filter(|_| matches!(b.route_ws_at(&tab, &to, t0), WsRoute::Udp { .. })).count();
    assert_eq!(sent, 50);
}

#[test]
fn unverified_targets_together_get_the_total_rate_only() {
    let limits = Limits { unverified_targets: RateLimit::new(1, 5), ..Limits::default() };
    let mut b = public_board(RelayConfig { limits, ..Default::default() });
    let (tab, _) = public_join(&mut b, "tab");
    let t0 = Instant::now();
    let sent = (0..40)
        .filter(|i| {
            matches!(
                b.route_ws_at(&tab, &frame(&format!("udp://198.51.100.{i}:7946"), b"\x01"), t0),
                WsRoute::Udp { .. }
            )
        })
        .count();
    assert_eq!(sent, 5);
}

#[test]
fn a_flooding_member_is_limited_per_source_and_stays_connected() {
    let source = crate::rate::BudgetLimit { frames: RateLimit::new(100, 10), bytes: RateLimit::new(1 << 20, 1 << 20) };
    let mut b = board_with(RelayConfig { limits: Limits { source, ..Limits::default() }, ..Default::default() });
    let (flooder, _) = join(&mut b, "flooder");
    let (_, victim_q) = join(&mut b, "victim");
    let t0 = Instant::now();
    let f = frame("relay://127.0.0.1:8080/victim", b"\x01");
    let passed = (0..100).filter(|_| b.route_ws_at(&flooder, &f, t0) == WsRoute::Delivered).count();
    assert_eq!(passed, 10);
    assert_eq!(b.stats().dropped(DropReason::SourceRate), 90);
    assert_eq!(victim_q.len(), 10);
    assert!(b.is_connected("flooder") && b.is_connected("victim"));
    assert_eq!(b.route_ws_at(&flooder, &f, t0 + Duration::from_millis(100)), WsRoute::Delivered, "refilled");
}

#[test]
fn a_member_is_limited_per_destination_across_all_its_senders() {
    let destination =
        crate::rate::BudgetLimit { frames: RateLimit::new(100, 10), bytes: RateLimit::new(1 << 20, 1 << 20) };
    let mut b = board_with(RelayConfig { limits: Limits { destination, ..Limits::default() }, ..Default::default() });
    let senders: Vec<_> = (0..5).map(|i| join(&mut b, &format!("s{i}")).0).collect();
    let (_, q) = join(&mut b, "target");
    let t0 = Instant::now();
    let f = frame("relay://127.0.0.1:8080/target", b"\x01");
    let passed = senders.iter().cycle().take(50).filter(|s| b.route_ws_at(s, &f, t0) == WsRoute::Delivered).count();
    assert_eq!(passed, 10);
    assert_eq!(b.stats().dropped(DropReason::DestinationRate), 40);
    assert_eq!(q.len(), 10);
}

#[test]
fn the_addresses_the_policy_tracks_are_counted() {
    let mut b = public_board(RelayConfig::default());
    let (tab, _) = public_join(&mut b, "tab");
    assert_eq!(b.stats().udp_tracked, 0);
    b.route_ws(&tab, &frame("udp://198.51.100.9:7946", b"\x01"));
    assert!(b.stats().udp_tracked >= 2, "a target budget and a known source: {}", b.stats().udp_tracked);
}

const SECRET: FarewellSecret = *b"farewell-secret!";

/// Admits `peer` with a farewell secret, checks the welcome carries it and takes it out.
fn join_with_secret(b: &mut Switchboard, peer: &str, secret: FarewellSecret) -> (Session, Arc<Outbox>) {
    b.check_admission(Some(peer), None).unwrap();
    let (s, q) = b.admit(peer, Some(secret)).unwrap();
    assert_eq!(next(&q), (s.addr().to_string(), secret.to_vec()), "the welcome carries the secret");
    (s, q)
}

fn farewell_body(peer: &str, secret: &FarewellSecret, frames: &[Vec<u8>]) -> Vec<u8> {
    shoal_core::relay::encode_farewell(peer, secret, frames).unwrap()
}

/// A farewell body with `extra` appended as one more `[u16 len][frame]`, which `encode_farewell`
/// would refuse to write.
fn farewell_with_extra(peer: &str, secret: &FarewellSecret, frames: &[Vec<u8>], extra: &[u8]) -> Vec<u8> {
    let mut body = farewell_body(peer, secret, frames);
    body.extend_from_slice(&(extra.len() as u16).to_be_bytes());
    body.extend_from_slice(extra);
    body
}

#[test]
fn an_admitted_member_that_asked_for_a_farewell_is_welcomed_with_its_secret() {
    let mut b = board();
    let (_, q) = b.admit("tab-7", Some(SECRET)).unwrap();
    assert_eq!(next(&q), ("relay://127.0.0.1:8080/tab-7".to_string(), SECRET.to_vec()));
}

#[test]
fn a_farewell_with_the_connections_secret_is_forwarded_as_if_the_member_sent_it() {
    let mut b = board();
    let (alice, alice_q) = join_with_secret(&mut b, "alice", SECRET);
    let (_, bob_q) = join(&mut b, "bob");
    let frames = [frame("relay://127.0.0.1:8080/bob", b"\x01leave"), frame("udp://10.0.0.5:7946", b"\x01leave")];
    let routes = b.farewell(&farewell_body("alice", &SECRET, &frames)).unwrap();
    assert_eq!(routes.len(), 2);
    assert_eq!(routes[0], WsRoute::Delivered);
    assert_eq!(next(&bob_q), (alice.addr().to_string(), b"\x01leave".to_vec()), "stamped with alice's address");
    let WsRoute::Udp { to, datagram } = &routes[1] else { panic!("{:?}", routes[1]) };
    assert_eq!(*to, "10.0.0.5:7946".parse::<SocketAddr>().unwrap());
    let relay: SocketAddr = RELAY.parse().unwrap();
    let (source, packet) = accept_relay_datagram(relay, datagram).unwrap();
    assert_eq!((source.as_str(), packet), (alice.addr(), &b"\x01leave"[..]));
    let s = b.stats();
    assert_eq!((s.farewells_accepted, s.ws_to_ws.frames, s.ws_to_udp.frames), (1, 1, 1));
    assert!(FarewellRefusal::ALL.iter().all(|r| s.farewells_refused(*r) == 0));
    assert!(b.is_connected("alice") && alice_q.is_empty(), "the connection itself is left alone");
    assert!(b.knows("alice", *to), "as for any datagram alice sends, its answers are welcome");
}

#[test]
fn a_farewell_with_a_wrong_secret_is_refused_and_counted_and_the_right_one_still_works() {
    let mut b = board();
    join_with_secret(&mut b, "alice", SECRET);
    let (_, bob_q) = join(&mut b, "bob");
    let frames = [frame("relay://127.0.0.1:8080/bob", b"\x01leave")];
    let mut wrong = SECRET;
    wrong[15] ^= 1;
    assert_eq!(b.farewell(&farewell_body("alice", &wrong, &frames)), Err(FarewellRefusal::WrongSecret));
    assert_eq!(b.farewell(&farewell_body("alice", &[0; 16], &frames)), Err(FarewellRefusal::WrongSecret));
    assert!(bob_q.is_empty());
    assert_eq!(b.stats().farewells_refused(FarewellRefusal::WrongSecret), 2);
    assert_eq!(b.farewell(&farewell_body("alice", &SECRET, &frames)).unwrap(), [WsRoute::Delivered]);
    assert_eq!(bob_q.len(), 1);
}

#[test]
fn a_farewell_is_accepted_once() {
    let mut b = board();
    join_with_secret(&mut b, "alice", SECRET);
    let (_, bob_q) = join(&mut b, "bob");
    let body = farewell_body("alice", &SECRET, &[frame("relay://127.0.0.1:8080/bob", b"\x01leave")]);
    assert!(b.farewell(&body).is_ok());
    assert_eq!(b.farewell(&body), Err(FarewellRefusal::AlreadyUsed));
    assert_eq!(bob_q.len(), 1, "the replay was not forwarded");
    let s = b.stats();
    assert_eq!((s.farewells_accepted, s.farewells_refused(FarewellRefusal::AlreadyUsed)), (1, 1));
}

#[test]
fn a_farewell_for_a_connection_that_did_not_ask_for_a_secret_is_refused() {
    let mut b = board();
    join(&mut b, "alice");
    let (_, bob_q) = join(&mut b, "bob");
    let frames = [frame("relay://127.0.0.1:8080/bob", b"\x01leave")];
    for secret in [SECRET, [0; 16]] {
        assert_eq!(b.farewell(&farewell_body("alice", &secret, &frames)), Err(FarewellRefusal::NoSecret));
    }
    assert!(bob_q.is_empty());
    assert_eq!(b.stats().farewells_refused(FarewellRefusal::NoSecret), 2);
}

#[test]
fn a_farewell_for_a_peer_that_never_connected_is_refused() {
    let mut b = board();
    join_with_secret(&mut b, "alice", SECRET);
    assert_eq!(b.farewell(&farewell_body("nobody", &SECRET, &[])), Err(FarewellRefusal::UnknownPeer));
    assert_eq!(b.stats().farewells_refused(FarewellRefusal::UnknownPeer), 1);
}

#[test]
fn a_farewell_that_arrives_after_its_connection_ended_is_forwarded_within_the_grace() {
    // A closing tab's worker is killed at once: its WebSocket's close reaches the relay before
    // the page's beacon, which needs a new HTTP connection.
    let mut b = board();
    let (alice, _) = join_with_secret(&mut b, "alice", SECRET);
    let (_, bob_q) = join(&mut b, "bob");
    assert!(b.disconnect(&alice));
    assert!(!b.is_connected("alice"));
    assert_eq!(b.departed(), 1);
    let frames = [frame("relay://127.0.0.1:8080/bob", b"\x01leave")];
    let mut wrong = SECRET;
    wrong[0] ^= 1;
    assert_eq!(b.farewell(&farewell_body("alice", &wrong, &frames)), Err(FarewellRefusal::WrongSecret));
    let body = farewell_body("alice", &SECRET, &frames);
    assert_eq!(b.farewell(&body).unwrap(), [WsRoute::Delivered]);
    assert_eq!(next(&bob_q), (alice.addr().to_string(), b"\x01leave".to_vec()), "stamped with alice's address");
    assert_eq!(b.departed(), 0, "spent");
    assert_eq!(b.farewell(&body), Err(FarewellRefusal::UnknownPeer), "once");
    assert!(bob_q.is_empty());
}

#[test]
fn a_departed_connections_farewell_is_refused_after_the_grace() {
    let mut b = board();
    let (alice, _) = join_with_secret(&mut b, "alice", SECRET);
    let (_, bob_q) = join(&mut b, "bob");
    assert!(b.disconnect(&alice));
    let body = farewell_body("alice", &SECRET, &[frame("relay://127.0.0.1:8080/bob", b"\x01leave")]);
    let late = Instant::now() + FAREWELL_GRACE + Duration::from_millis(1);
    assert_eq!(b.farewell_at(&body, late), Err(FarewellRefusal::UnknownPeer));
    assert_eq!(b.departed(), 0, "forgotten");
    assert!(bob_q.is_empty());
}

#[test]
fn a_departed_connections_secret_is_void_once_the_peer_id_connects_again() {
    let mut b = board();
    let (alice, _) = join_with_secret(&mut b, "alice", SECRET);
    let (_, bob_q) = join(&mut b, "bob");
    assert!(b.disconnect(&alice));
    join(&mut b, "alice"); // a reload without a secret
    let body = farewell_body("alice", &SECRET, &[frame("relay://127.0.0.1:8080/bob", b"\x01leave")]);
    assert_eq!(b.farewell(&body), Err(FarewellRefusal::NoSecret));
    assert!(bob_q.is_empty());
    assert_eq!(b.departed(), 0);
}

#[test]
fn connections_without_a_secret_or_that_spent_it_are_not_kept_after_they_end() {
    let mut b = board();
    let (plain, _) = join(&mut b, "plain");
    let (spent, _) = join_with_secret(&mut b, "spent", SECRET);
    b.farewell(&farewell_body("spent", &SECRET, &[])).unwrap();
    assert!(b.disconnect(&plain) && b.disconnect(&spent));
    assert_eq!(b.departed(), 0);
}

#[test]
fn the_departed_table_is_bounded_and_forgets_the_oldest_first() {
    let mut b = board();
    let mut sessions = Vec::new();
    for i in 0..MAX_DEPARTED + 3 {
        let peer = format!("tab-{i}");
        let (s, _) = b.admit(&peer, Some(SECRET)).unwrap();
        sessions.push(s);
    }
    for s in &sessions {
        assert!(b.disconnect(s));
    }
    assert_eq!(b.departed(), MAX_DEPARTED);
    assert_eq!(
        b.farewell(&farewell_body("tab-0", &SECRET, &[])),
        Err(FarewellRefusal::UnknownPeer),
        "the oldest went first"
    );
    let newest = format!("tab-{}", MAX_DEPARTED + 2);
    assert!(b.farewell(&farewell_body(&newest, &SECRET, &[])).is_ok());
}

#[test]
fn a_relay_shutting_down_forgets_departed_connections() {
    let mut b = board();
    let (alice, _) = join_with_secret(&mut b, "alice", SECRET);
    assert!(b.disconnect(&alice));
    b.close_all();
    assert_eq!(b.departed(), 0);
}

#[test]
fn a_replaced_connections_secret_no_longer_speaks_for_the_peer_id() {
    let mut b = board();
    let (_, old_q) = join_with_secret(&mut b, "tab", SECRET);
    let newer = *b"newer-connection";
    join_with_secret(&mut b, "tab", newer);
    assert!(old_q.is_closed());
    let (_, bob_q) = join(&mut b, "bob");
    let frames = [frame("relay://127.0.0.1:8080/bob", b"\x01leave")];
    assert_eq!(b.farewell(&farewell_body("tab", &SECRET, &frames)), Err(FarewellRefusal::WrongSecret));
    assert!(bob_q.is_empty());
    assert!(b.farewell(&farewell_body("tab", &newer, &frames)).is_ok());
    // Replaced by a connection without a secret: the old one's is void all the same.
    join_with_secret(&mut b, "tab2", SECRET);
    join(&mut b, "tab2");
    assert_eq!(b.farewell(&farewell_body("tab2", &SECRET, &frames)), Err(FarewellRefusal::NoSecret));
}

#[test]
fn a_farewell_with_more_than_16_frames_is_refused_as_too_large_and_spends_nothing() {
    let mut b = board();
    join_with_secret(&mut b, "alice", SECRET);
    let (_, bob_q) = join(&mut b, "bob");
    let f = frame("relay://127.0.0.1:8080/bob", b"\x01leave");
    let sixteen = vec![f.clone(); shoal_core::relay::MAX_FAREWELL_FRAMES];
    let body = farewell_with_extra("alice", &SECRET, &sixteen, &f);
    assert_eq!(b.farewell(&body), Err(FarewellRefusal::TooLarge));
    assert!(bob_q.is_empty());
    assert_eq!(b.stats().farewells_refused(FarewellRefusal::TooLarge), 1);
    let routes = b.farewell(&farewell_body("alice", &SECRET, &sixteen)).unwrap();
    assert_eq!(routes, vec![WsRoute::Delivered; 16]);
    assert_eq!(bob_q.len(), 16);
}

#[test]
fn a_farewell_carrying_a_signal_frame_is_refused_as_malformed_and_counted() {
    let mut b = board();
    join_with_secret(&mut b, "alice", SECRET);
    let (_, bob_q) = join(&mut b, "bob");
    let leave = frame("relay://127.0.0.1:8080/bob", b"\x01leave");
    let bye = encode_signal_frame("relay://127.0.0.1:8080/bob", SignalKind::Bye, b"").unwrap();
    let body = farewell_with_extra("alice", &SECRET, std::slice::from_ref(&leave), &bye);
    assert_eq!(b.farewell(&body), Err(FarewellRefusal::Malformed));
    assert!(bob_q.is_empty(), "nothing of it was forwarded, not even the packet before the signal");
    assert_eq!(b.stats().farewells_refused(FarewellRefusal::Malformed), 1);
    assert_eq!(b.stats().signals.frames, 0);
    assert!(b.farewell(&farewell_body("alice", &SECRET, &[leave])).is_ok(), "the secret was not spent");
}

#[test]
fn garbage_posted_as_a_farewell_is_refused_as_malformed_and_counted() {
    let mut b = board();
    join_with_secret(&mut b, "alice", SECRET);
    let mut truncated = farewell_body("alice", &SECRET, &[frame("relay://127.0.0.1:8080/alice", b"\x01")]);
    truncated.pop();
    for body in [&[][..], b"\x05alice", &[0xff; 64], &truncated] {
        assert_eq!(b.farewell(body), Err(FarewellRefusal::Malformed), "{body:?}");
    }
    let too_long = vec![0x05; shoal_core::relay::MAX_FAREWELL_BODY + 1];
    assert_eq!(b.farewell(&too_long), Err(FarewellRefusal::TooLarge));
    let s = b.stats();
    assert_eq!(
        (s.farewells_refused(FarewellRefusal::Malformed), s.farewells_refused(FarewellRefusal::TooLarge)),
        (4, 1)
    );
    assert_eq!(s.farewells_accepted, 0);
}

#[test]
fn a_farewells_frames_are_routed_with_the_members_own_budget_and_drops_counted_as_drops() {
    let source = crate::rate::BudgetLimit { frames: RateLimit::new(1, 2), bytes: RateLimit::new(1 << 20, 1 << 20) };
    let mut b = board_with(RelayConfig { limits: Limits { source, ..Limits::default() }, ..Default::default() });
    let (alice, _) = join_with_secret(&mut b, "alice", SECRET);
    let (_, bob_q) = join(&mut b, "bob");
    let t0 = Instant::now();
    let to_bob = frame("relay://127.0.0.1:8080/bob", b"\x01");
    assert_eq!(
        b.route_ws_at(&alice, &to_bob, t0),
        WsRoute::Delivered,
        "one of the burst of 2 spent over the WebSocket"
    );
    let frames = [to_bob.clone(), to_bob.clone(), frame("relay://127.0.0.1:8080/nobody", b"\x01")];
    let routes = b.farewell_at(&farewell_body("alice", &SECRET, &frames), t0).unwrap();
    assert_eq!(
        routes,
        [WsRoute::Delivered, WsRoute::Dropped(DropReason::SourceRate), WsRoute::Dropped(DropReason::SourceRate)]
    );
    assert_eq!(bob_q.len(), 2);
    let s = b.stats();
    assert_eq!((s.farewells_accepted, s.dropped(DropReason::SourceRate)), (1, 2));
}

#[test]
fn a_relay_shutting_down_refuses_farewells() {
    let mut b = board();
    join_with_secret(&mut b, "alice", SECRET);
    b.close_all();
    assert_eq!(b.farewell(&farewell_body("alice", &SECRET, &[])), Err(FarewellRefusal::ShuttingDown));
    assert_eq!(b.stats().farewells_refused(FarewellRefusal::ShuttingDown), 1);
}
