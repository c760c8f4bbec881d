//! Unit tests of the [`Switchboard`](super::Switchboard)'s links to other relays: routing across
//! relays, stamping, the checks on what a link delivers, drops and their counters, and which link
//! wins when two relays link twice.
use std::time::Duration;

use shoal_core::relay::{encode_farewell, SignalKind};

use crate::link::{encode_packet, encode_signal};
use crate::rate::{BudgetLimit, RateLimit};

use super::*;

const A: &str = "127.0.0.1:8080";
const B: &str = "127.0.0.1:9090";

fn board_at(relay: &str, config: RelayConfig) -> Switchboard {
    Switchboard::new(relay, &config)
}

fn join(b: &mut Switchboard, peer: &str) -> (Session, Arc<Outbox>) {
    let (s, q) = b.admit(peer, None).unwrap();
    q.try_pop().expect("welcome");
    (s, q)
}

/// Two relays linked both ways over one link (A dialed): each side's session and queue.
struct Pair {
    a: Switchboard,
    a_link: LinkSession,
    a_out: Arc<Outbox>,
    b: Switchboard,
    b_link: LinkSession,
    b_out: Arc<Outbox>,
}

fn pair_with(config: RelayConfig) -> Pair {
    let mut a = board_at(A, config.clone());
    let mut b = board_at(B, config);
    let (a_link, a_out) = a.link_up(B, true).unwrap();
    let (b_link, b_out) = b.link_up(A, false).unwrap();
    Pair { a, a_link, a_out, b, b_link, b_out }
}

fn pair() -> Pair {
    pair_with(RelayConfig::default())
}

/// Hands every frame waiting in `queue` to `to` as if its link carried it: the routes.
fn carry(queue: &Outbox, to: &mut Switchboard, link: &LinkSession) -> Vec<Result<(), DropReason>> {
    std::iter::from_fn(|| queue.try_pop()).map(|f| to.route_link(link, &f)).collect()
}

fn next(q: &Outbox) -> (String, Vec<u8>) {
    let f = q.try_pop().expect("a frame");
    let (addr, packet) = decode_ws_frame(&f).unwrap();
    (addr.to_string(), packet.to_vec())
}

fn to(relay: &str, peer: &str, packet: &[u8]) -> Vec<u8> {
    encode_ws_frame(&format!("relay://{relay}/{peer}"), packet).unwrap()
}

#[test]
fn a_frame_for_a_member_of_a_linked_relay_arrives_with_the_sender_stamped_under_the_first_relay() {
    let mut p = pair();
    let (alice, alice_q) = join(&mut p.a, "alice");
    let (bob, bob_q) = join(&mut p.b, "bob");
    assert_eq!(p.a.route_ws(&alice, &to(B, "bob", b"\x01ping")), WsRoute::Delivered);
    assert_eq!(carry(&p.a_out, &mut p.b, &p.b_link), [Ok(())]);
    assert_eq!(next(&bob_q), (format!("relay://{A}/alice"), b"\x01ping".to_vec()));
    // And back, over the same link.
    assert_eq!(p.b.route_ws(&bob, &to(A, "alice", b"\x01ack")), WsRoute::Delivered);
    assert_eq!(carry(&p.b_out, &mut p.a, &p.a_link), [Ok(())]);
    assert_eq!(next(&alice_q), (format!("relay://{B}/bob"), b"\x01ack".to_vec()));
    let (sa, sb) = (p.a.stats(), p.b.stats());
    assert_eq!((sa.link_out.frames, sa.link_in.frames, sb.link_out.frames, sb.link_in.frames), (1, 1, 1, 1));
    assert_eq!((sa.ws_to_ws.frames, sb.ws_to_ws.frames), (0, 0), "not counted as local frames");
    assert_eq!((sa.links, sb.links), (1, 1));
    assert_eq!(sa.dropped_total() + sb.dropped_total(), 0);
    let links = p.a.links();
    assert_eq!(links.len(), 1);
    assert_eq!((links[0].relay.as_str(), links[0].up, links[0].dialed), (B, true, true));
    assert_eq!((links[0].sent.frames, links[0].received.frames), (1, 1));
}

#[test]
fn a_member_cannot_choose_the_source_its_frames_carry_across_relays() {
    let mut p = pair();
    let (alice, _) = join(&mut p.a, "alice");
    let (_, bob_q) = join(&mut p.b, "bob");
    // Whatever the member writes, only the destination goes over the link; the source is stamped.
    assert_eq!(p.a.route_ws(&alice, &to(B, "bob", b"\x01x")), WsRoute::Delivered);
    let frame = p.a_out.try_pop().unwrap();
    assert_eq!(
        link::decode_frame(&frame).unwrap(),
        LinkFrame::Packet { source: "relay://127.0.0.1:8080/alice", peer: "bob", packet: b"\x01x" }
    );
    p.b.route_link(&p.b_link, &frame).unwrap();
    assert_eq!(next(&bob_q).0, "relay://127.0.0.1:8080/alice");
}

#[test]
fn a_signal_for_a_member_of_a_linked_relay_crosses_with_its_kind_and_body_and_the_sender_stamped() {
    let mut p = pair();
    let (alice, _) = join(&mut p.a, "alice");
    let (_, bob_q) = join(&mut p.b, "bob");
    let offer = encode_signal_frame(&format!("relay://{B}/bob"), SignalKind::Offer, b"{sdp}").unwrap();
    assert_eq!(p.a.route_ws(&alice, &offer), WsRoute::Delivered);
    assert_eq!(carry(&p.a_out, &mut p.b, &p.b_link), [Ok(())]);
    let out = bob_q.try_pop().unwrap();
    assert_eq!(decode_signal_frame(&out).unwrap(), ("relay://127.0.0.1:8080/alice", SignalKind::Offer, &b"{sdp}"[..]));
    assert_eq!((p.a.stats().link_out.frames, p.b.stats().link_in.frames), (1, 1));
    assert_eq!(p.a.stats().signals.frames, 0, "local signals are counted apart");
}

#[test]
fn a_link_frame_stamped_under_another_relay_than_the_links_is_dropped_and_counted() {
    let mut p = pair();
    let (_, bob_q) = join(&mut p.b, "bob");
    for source in [
        "relay://127.0.0.1:9090/bob", // B's own member: a linked relay cannot speak for it
        "relay://10.9.9.9:1/mallory", // a third relay
        "relay://127.0.0.1:8080",     // no peer id
        "relay://127.0.0.1:8080/a/b", // not a peer id
        "udp://127.0.0.1:8080",       // not a relay address
        "127.0.0.1:8080/alice",       // no scheme
    ] {
        let frame = encode_packet(source, "bob", b"\x01forged").unwrap();
        assert_eq!(p.b.route_link(&p.b_link, &frame), Err(DropReason::BadStamp), "{source}");
    }
    let signal = encode_signal("relay://10.9.9.9:1/mallory", "bob", SignalKind::Offer, b"").unwrap();
    assert_eq!(p.b.route_link(&p.b_link, &signal), Err(DropReason::BadStamp));
    assert!(bob_q.is_empty());
    assert_eq!(p.b.stats().dropped(DropReason::BadStamp), 7);
    assert_eq!(p.b.stats().link_in.frames, 0);
}

#[test]
fn a_link_frame_for_a_peer_the_far_relay_does_not_have_is_dropped_and_counted_there() {
    let mut p = pair();
    let (alice, _) = join(&mut p.a, "alice");
    assert_eq!(p.a.route_ws(&alice, &to(B, "nobody", b"\x01")), WsRoute::Delivered, "A cannot know");
    assert_eq!(carry(&p.a_out, &mut p.b, &p.b_link), [Err(DropReason::UnknownDestination)]);
    assert_eq!(p.b.stats().dropped(DropReason::UnknownDestination), 1);
    assert_eq!(p.b.links()[0].received.frames, 0);
}

#[test]
fn a_frame_for_a_relay_whose_link_is_down_is_dropped_and_counted() {
    let mut p = pair();
    let (alice, _) = join(&mut p.a, "alice");
    assert!(p.a.link_down(&p.a_link));
    assert!(p.a_out.is_closed(), "the server's writer is told to stop");
    assert!(!p.a.has_link(B));
    assert_eq!(p.a.route_ws(&alice, &to(B, "bob", b"\x01")), WsRoute::Dropped(DropReason::LinkDown));
    let signal = encode_signal_frame(&format!("relay://{B}/bob"), SignalKind::Bye, b"").unwrap();
    assert_eq!(p.a.route_ws(&alice, &signal), WsRoute::Dropped(DropReason::LinkDown));
    // A relay never linked to is just an unknown destination.
    let never = to("10.9.9.9:1", "bob", b"\x01");
    assert_eq!(p.a.route_ws(&alice, &never), WsRoute::Dropped(DropReason::UnknownDestination));
    let s = p.a.stats();
    assert_eq!((s.dropped(DropReason::LinkDown), s.dropped(DropReason::UnknownDestination)), (2, 1));
    assert_eq!(s.links, 0);
    let links = p.a.links();
    assert_eq!((links[0].relay.as_str(), links[0].up), (B, false), "its counters stay");
}

#[test]
fn frames_waiting_on_a_link_that_goes_down_are_counted() {
    let mut p = pair();
    let (alice, _) = join(&mut p.a, "alice");
    for _ in 0..3 {
        assert_eq!(p.a.route_ws(&alice, &to(B, "bob", b"\x01")), WsRoute::Delivered);
    }
    p.a.close_link(&p.a_link, &p.a_out, CloseReason::Idle);
    assert_eq!(p.a_out.close_reason(), Some(CloseReason::Idle));
    assert_eq!(p.a.stats().dropped(DropReason::LinkClosed), 3);
    assert!(!p.a.has_link(B));
}

#[test]
fn a_full_link_queue_drops_frames_and_local_routing_goes_on() {
    // A link's queue holds LINK_QUEUE_FACTOR times a member's: 16 frames here.
    let config = RelayConfig { queue_frames: 1, queue_bytes: 1 << 20, ..Default::default() };
    let mut p = pair_with(config);
    let (alice, _) = join(&mut p.a, "alice");
    let (_, carol_q) = join(&mut p.a, "carol");
    for _ in 0..LINK_QUEUE_FACTOR {
        assert_eq!(p.a.route_ws(&alice, &to(B, "bob", b"\x01")), WsRoute::Delivered);
    }
    assert_eq!(p.a.route_ws(&alice, &to(B, "bob", b"\x01")), WsRoute::Dropped(DropReason::LinkQueueFull));
    assert_eq!(p.a.route_ws(&alice, &to(A, "carol", b"\x01local")), WsRoute::Delivered);
    assert_eq!(next(&carol_q).1, b"\x01local");
    assert!(p.a.has_link(B), "a full queue does not take the link down");
    assert_eq!(p.a.stats().dropped(DropReason::LinkQueueFull), 1);
    assert_eq!(p.a.stats().link_out.frames, LINK_QUEUE_FACTOR as u64);
}

#[test]
fn malformed_and_oversized_link_frames_are_dropped_and_counted() {
    let mut p = pair_with(RelayConfig { max_frame: 1_000, ..Default::default() });
    let (_, bob_q) = join(&mut p.b, "bob");
    for garbage in [&[][..], &[0x10], &[0x03], &[0x10, 200, b'x'], &[0x42, 1, b'a', 1, b'b']] {
        assert_eq!(p.b.route_link(&p.b_link, garbage), Err(DropReason::LinkMalformed), "{garbage:?}");
    }
    let huge = encode_packet(&format!("relay://{A}/alice"), "bob", &[1u8; 1_000 + MAX_LINK_OVERHEAD]).unwrap();
    assert_eq!(p.b.route_link(&p.b_link, &huge), Err(DropReason::Oversized));
    assert!(bob_q.is_empty());
    assert_eq!((p.b.stats().dropped(DropReason::LinkMalformed), p.b.stats().dropped(DropReason::Oversized)), (5, 1));
}

fn tight(frames: u64) -> Limits {
    let tight = BudgetLimit { frames: RateLimit::new(frames, frames), bytes: RateLimit::new(1 << 20, 1 << 20) };
    Limits { source: tight, destination: tight, ..Limits::default() }
}

#[test]
fn the_senders_budget_is_spent_at_its_own_relay_and_the_receivers_at_the_far_relay() {
    let config = RelayConfig { limits: tight(2), ..Default::default() };
    let mut p = pair_with(config);
    let (alice, _) = join(&mut p.a, "alice");
    let (dave, _) = join(&mut p.a, "dave");
    let (_, bob_q) = join(&mut p.b, "bob");
    let t = Instant::now();
    let send = |b: &mut Switchboard, s: &Session| b.route_ws_at(s, &to(B, "bob", b"\x01"), t);
    assert_eq!(send(&mut p.a, &alice), WsRoute::Delivered);
    assert_eq!(send(&mut p.a, &alice), WsRoute::Delivered);
    assert_eq!(send(&mut p.a, &alice), WsRoute::Dropped(DropReason::SourceRate), "alice's budget, at A");
    assert_eq!(send(&mut p.a, &dave), WsRoute::Delivered, "dave has his own");
    let routed: Vec<_> =
        std::iter::from_fn(|| p.a_out.try_pop()).map(|f| p.b.route_link_at(&p.b_link, &f, t)).collect();
    assert_eq!(routed, [Ok(()), Ok(()), Err(DropReason::DestinationRate)], "bob's budget, at B, for every sender");
    assert_eq!(bob_q.len(), 2);
    assert_eq!(p.a.stats().dropped(DropReason::SourceRate), 1);
    assert_eq!(p.b.stats().dropped(DropReason::DestinationRate), 1);
    let later = t + Duration::from_secs(1);
    let f = p.a.route_ws_at(&alice, &to(B, "bob", b"\x01"), later);
    assert_eq!(f, WsRoute::Delivered, "budgets refill");
}

#[test]
fn a_frame_the_far_relays_member_cannot_take_is_dropped_there_as_queue_full() {
    let mut p = pair_with(RelayConfig { queue_frames: 1, queue_bytes: 1 << 20, ..Default::default() });
    let (alice, _) = join(&mut p.a, "alice");
    let (_, bob_q) = join(&mut p.b, "bob");
    for _ in 0..2 {
        assert_eq!(p.a.route_ws(&alice, &to(B, "bob", b"\x01")), WsRoute::Delivered);
    }
    assert_eq!(carry(&p.a_out, &mut p.b, &p.b_link), [Ok(()), Err(DropReason::QueueFull)]);
    assert_eq!(bob_q.len(), 1);
}

#[test]
fn a_farewell_for_a_member_of_a_linked_relay_goes_over_the_link() {
    let mut p = pair();
    let secret = [7u8; 16];
    let (_, q) = p.a.admit("tab", Some(secret)).unwrap();
    q.try_pop().unwrap();
    let (_, bob_q) = join(&mut p.b, "bob");
    let leave = to(B, "bob", b"\x01leave");
    let body = encode_farewell("tab", &secret, &[&leave[..]]).unwrap();
    assert_eq!(p.a.farewell(&body), Ok(vec![WsRoute::Delivered]));
    assert_eq!(carry(&p.a_out, &mut p.b, &p.b_link), [Ok(())]);
    assert_eq!(next(&bob_q), (format!("relay://{A}/tab"), b"\x01leave".to_vec()));
}

#[test]
fn nothing_from_a_link_goes_on_to_a_third_relay_or_a_udp_socket() {
    let mut p = pair();
    let (_, bob_q) = join(&mut p.b, "bob");
    // The destination of a link frame is a peer id of the receiver: nothing else can be named.
    for peer in ["127.0.0.1:7070/carol", "udp://10.0.0.5:7946"] {
        assert!(encode_packet(&format!("relay://{A}/alice"), peer, b"\x01").is_none(), "{peer}");
    }
    let mut frame = encode_packet(&format!("relay://{A}/alice"), "bob", b"\x01").unwrap();
    let at = frame.len() - 4; // the peer id's first byte: "bob" then the packet
    frame[at] = b'/';
    assert_eq!(p.b.route_link(&p.b_link, &frame), Err(DropReason::LinkMalformed));
    assert!(bob_q.is_empty());
}

#[test]
fn when_two_relays_dial_each_other_both_keep_the_link_the_lower_address_dialed() {
    // Every order in which the two sides can see the two links.
    for a_sees_own_first in [true, false] {
        for b_sees_own_first in [true, false] {
            let mut a = board_at(A, RelayConfig::default());
            let mut b = board_at(B, RelayConfig::default());
            // A < B: the link A dialed must win on both sides.
            let at_a = if a_sees_own_first {
                let won = a.link_up(B, true);
                (won.is_ok(), a.link_up(B, false).map(|_| ()))
            } else {
                let lost = a.link_up(B, false).unwrap();
                let won = a.link_up(B, true).is_ok();
                assert_eq!(lost.1.close_reason(), Some(CloseReason::LinkSuperseded));
                (won, Err(LinkRefusal::Duplicate))
            };
            let at_b = if b_sees_own_first {
                let lost = b.link_up(A, true).unwrap();
                let won = b.link_up(A, false).is_ok();
                assert_eq!(lost.1.close_reason(), Some(CloseReason::LinkSuperseded));
                (won, Err(LinkRefusal::Duplicate))
            } else {
                let won = b.link_up(A, false);
                (won.is_ok(), b.link_up(A, true).map(|_| ()))
            };
            let case = (a_sees_own_first, b_sees_own_first);
            assert_eq!(at_a, (true, Err(LinkRefusal::Duplicate)), "{case:?}");
            assert_eq!(at_b, (true, Err(LinkRefusal::Duplicate)), "{case:?}");
            assert!(a.links()[0].dialed && !b.links()[0].dialed, "{case:?}");
            assert_eq!((a.stats().links, b.stats().links), (1, 1));
            assert_eq!(a.stats().link_refused(LinkRefusal::Duplicate), 1);
        }
    }
}

#[test]
fn a_newer_link_dialed_by_the_same_relay_replaces_the_stale_one() {
    let mut b = board_at(B, RelayConfig::default());
    let (old, old_q) = b.link_up(A, false).unwrap();
    let (new, new_q) = b.link_up(A, false).unwrap();
    assert_eq!(old_q.close_reason(), Some(CloseReason::LinkSuperseded));
    assert!(!b.link_down(&old), "the stale link's end leaves the new one alone");
    assert!(b.has_link(A) && !new_q.is_closed());
    assert!(b.link_down(&new));
    assert_eq!(b.stats().links_established, 2);
}

#[test]
fn a_link_claiming_the_relays_own_address_or_past_the_relay_cap_is_refused() {
    let mut a = board_at(A, RelayConfig::default());
    assert_eq!(a.link_up(A, false).unwrap_err(), LinkRefusal::OwnAddress);
    for i in 0..MAX_LINKED_RELAYS {
        a.link_up(&format!("10.0.{}.{}:1", i / 256, i % 256), false).unwrap();
    }
    assert_eq!(a.link_up("10.1.0.0:1", false).unwrap_err(), LinkRefusal::TooMany);
    // A relay it knows may still link again.
    assert!(a.link_up("10.0.0.0:1", false).is_ok());
    let s = a.stats();
    assert_eq!((s.link_refused(LinkRefusal::OwnAddress), s.link_refused(LinkRefusal::TooMany)), (1, 1));
}

#[test]
fn shutting_down_closes_every_link_and_refuses_new_ones() {
    let mut p = pair();
    let (alice, _) = join(&mut p.a, "alice");
    assert_eq!(p.a.route_ws(&alice, &to(B, "bob", b"\x01")), WsRoute::Delivered);
    p.a.close_all();
    assert_eq!(p.a_out.close_reason(), Some(CloseReason::ShuttingDown));
    assert_eq!(p.a.stats().dropped(DropReason::LinkClosed), 1);
    assert_eq!(p.a.link_up(B, true).unwrap_err(), LinkRefusal::ShuttingDown);
    assert_eq!(p.a.stats().links, 0);
}
