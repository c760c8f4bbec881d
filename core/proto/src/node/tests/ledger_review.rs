//! Defects a review of the broadcast ledger, its digests and repairs found, each kept fixed.

use super::*;
use crate::wire::{DecodeError, DigestEntry};

/// A digest entry for a life of `origin` that says it reached `next`.
fn life_at(origin: &str, epoch: u32, next: u64) -> DigestEntry {
    DigestEntry { origin: id(origin), epoch, next, holes: vec![], keyed: 0 }
}

#[test]
fn a_digest_entry_listing_more_holes_than_any_sender_lists_is_a_decode_error() {
    // The decoder reserved room for as many holes as the entry claimed (up to the bytes left, eight
    // bytes of memory for each byte of input) and accepted lists no sender ever writes.
    let mut c = Cluster::formed(2, Config::local());
    let most = crate::wire::MAX_DIGEST_HOLES as u64;
    let listing = |n: u64| {
        let entry = DigestEntry { holes: (0..n).collect(), ..life_at("b", 1, n + 1) };
        packet_of(&[Message::BroadcastDigest { entries: vec![entry] }])
    };
    let now = c.now;
    assert_eq!(c.nodes[0].handle_packet(now, 1, &listing(most)), Ok(()));
    let errors = c.node(0).stats().decode_errors;
    assert_eq!(
        c.nodes[0].handle_packet(now, 1, &listing(most + 1)),
        Err(PacketError::Decode(DecodeError::TooLong)),
        "one hole more than a sender lists"
    );
    assert_eq!(c.node(0).stats().decode_errors, errors + 1, "and the drop is counted");
}

/// A broadcast from `origin`'s life `epoch` at `seq`, unkeyed, as anyone could forge it.
fn forged_broadcast(origin: &str, epoch: u32, seq: u64) -> Message<u32> {
    let topic = String::from("t");
    Message::Broadcast(crate::wire::UserBroadcast {
        origin: id(origin),
        epoch,
        seq,
        topic,
        key: None,
        payload: vec![],
        ttl_ms: None,
    })
}

#[test]
fn a_broadcast_at_the_last_sequence_number_is_dropped_and_counted_not_a_panic() {
    // `next = seq + 1` overflowed at `u64::MAX`: one forged broadcast panicked a debug build (and
    // wrapped `next` to 0 in release, so everything the origin sent was delivered again).
    let mut c = Cluster::formed(2, Config::local());
    let now = c.now;
    let pkt = packet_of(&[forged_broadcast("x", 1, u64::MAX), forged_broadcast("x", 1, 0)]);
    assert_eq!(c.nodes[0].handle_packet(now, 1, &pkt), Ok(()));
    c.deliver_all();
    let stats = c.node(0).stats();
    assert_eq!(stats.broadcasts_rejected, 1, "the impossible one is counted");
    assert_eq!(stats.broadcasts_delivered, 1, "the rest of the packet is delivered");
}

#[test]
fn a_digest_claiming_the_last_sequence_number_overflows_no_counter() {
    // Each entry made us expect (and, past the bound, give up and count) everything below `next`:
    // two entries at `u64::MAX` overflowed `broadcasts_missed` (`+=`) and panicked a debug build.
    let config = Config::local();
    let mut c = Cluster::formed(2, config.clone());
    let digest = Message::BroadcastDigest { entries: vec![life_at("x", 1, u64::MAX), life_at("y", 1, u64::MAX)] };
    let now = c.now;
    c.nodes[0].handle_packet(now, 1, &packet_of(&[digest])).unwrap();
    c.advance(2 * config.reannounce_interval.as_millis() as u64);
    // Neither is a member: what the digest says we lack of them is counted at once, a bounded step.
    let bound = crate::broadcast::MAX_HOLES as u64;
    assert_eq!(c.node(0).stats().broadcasts_missed, 2 * bound);
    assert_eq!(c.node(0).footprint().broadcast_holes, 0);
}

#[test]
fn made_up_lives_in_a_forged_digest_open_no_holes() {
    // A digest entry opened up to 4,096 holes for any origin it named, known or not: sixty made-up
    // lives in one datagram held 245,760 holes (16 bytes each), and a stream of them about 1 GiB.
    // Now only members' lives keep holes (and all of them together at most `MAX_OPEN_HOLES`).
    let mut c = Cluster::formed(2, Config::local());
    let entries = (0..60).map(|i| life_at(&format!("o{i}"), 1, 1 << 40)).collect();
    let pkt = packet_of(&[Message::BroadcastDigest { entries }]);
    assert!(pkt.len() <= 1_400);
    let now = c.now;
    c.nodes[0].handle_packet(now, 1, &pkt).unwrap();
    assert_eq!(c.node(0).footprint().broadcast_holes, 0, "from one {}-byte datagram", pkt.len());
}

#[test]
fn broadcasts_of_a_member_forgotten_during_a_partition_are_reported_missed_after_it_heals() {
    // Keeping holes for members only must not lose the news of broadcasts nobody holds any more: a
    // member cut off for longer than the reap time has forgotten their origin, and still reports
    // them missed when a digest tells it of them (swarm seeds 100536, 101158, 101904).
    let config = Config::local();
    let mut c = Cluster::formed(3, config.clone());
    c.clear_events();
    for other in [1, 2] {
        c.blocked.insert((0, other));
        c.blocked.insert((other, 0));
    }
    c.nodes[1].broadcast("news", b"1", None).unwrap();
    c.nodes[1].broadcast("news", b"2", None).unwrap();
    c.advance(1_000);
    c.crash(1);
    c.advance((config.dead_member_reap_time + config.broadcast_retention).as_millis() as u64 + 10_000);
    assert!(c.node(0).member(&id("b")).is_none() && c.node(2).member(&id("b")).is_none(), "b is forgotten");
    c.blocked.clear();
    let reported = c.advance_until(60_000, |c| {
        c.events(0).iter().any(|e| matches!(e, Event::BroadcastsMissed { origin, count: 2, .. } if *origin == id("b")))
    });
    assert!(reported, "a reports the two broadcasts of b it never got");
    assert_eq!(c.node(0).footprint().broadcast_holes, 0);
}

#[test]
fn a_digest_moves_a_members_life_forward_a_bounded_step_at_a_time() {
    // A member's name is easy to forge too: however far a digest says its life reached, we expect
    // at most `MAX_HOLES` more per digest, and every life's holes together stay bounded.
    let config = Config::local();
    let mut c = Cluster::formed(3, config.clone());
    c.clear_events();
    let bound = crate::broadcast::MAX_HOLES;
    let now = c.now;
    for epoch in 1..=3 {
        let entries = vec![life_at("b", epoch, u64::MAX), life_at("c", epoch, u64::MAX)];
        c.nodes[0].handle_packet(now, 1, &packet_of(&[Message::BroadcastDigest { entries }])).unwrap();
    }
    let holes = c.node(0).footprint().broadcast_holes;
    assert!(holes <= crate::broadcast::MAX_OPEN_HOLES, "{holes} holes");
    assert!(holes >= bound, "a real gap is still expected: {holes} holes");
    c.advance(config.broadcast_retention.as_millis() as u64 + 5_000);
    let stats = c.node(0).stats();
    assert_eq!(stats.broadcasts_missed, 6 * bound as u64, "expected, given up and counted, no more");
    assert_eq!(c.node(0).footprint().broadcast_holes, 0);
}

#[test]
fn an_empty_repair_request_draws_no_answer() {
    // A repair request was answered with everything the asker's digest did not list, and an empty
    // one lists nothing: a 4-byte datagram made a member send 61 KB of its log.
    let mut c = Cluster::formed(3, Config::local());
    for i in 0..60u8 {
        c.nodes[0].broadcast("news", &[i; 1_000], None).unwrap();
        c.advance(100);
    }
    c.advance(3_000);
    let mark = c.log.len();
    let now = c.now;
    // [version, BROADCAST_PULL, body length 1, no entries]
    c.nodes[1].handle_packet(now, 2, &[PROTOCOL_VERSION, 15, 1, 0]).unwrap();
    c.deliver_all();
    let sent: usize = c.log[mark..].iter().filter(|s| s.from == 1 && s.to == 2).map(|s| s.bytes.len()).sum();
    assert!(sent < 1_000, "a 4-byte datagram made member 1 send {sent} bytes");
}

#[test]
fn a_repair_request_for_one_life_gets_only_that_life() {
    // The same flaw with a real request: asking for one broadcast of c brought a all of its own.
    let mut c = Cluster::formed(3, Config::local());
    for i in 0..40u8 {
        c.nodes[0].broadcast("a-news", &[i; 200], None).unwrap();
        c.advance(100);
    }
    let cid = c.nodes[2].broadcast("c-news", b"one", None).unwrap();
    c.advance(3_000);
    // a asks b for c's broadcast 0, and for nothing else.
    let asked = DigestEntry { origin: id("c"), epoch: cid.epoch, next: 1, holes: vec![0], keyed: 0 };
    let mark = c.log.len();
    let now = c.now;
    c.nodes[1].handle_packet(now, 0, &packet_of(&[Message::BroadcastPull { entries: vec![asked] }])).unwrap();
    c.deliver_all();
    let answer: Vec<Message<u32>> = c.log[mark..]
        .iter()
        .filter(|s| s.from == 1 && s.to == 0 && s.reliable)
        .flat_map(|s| decode(&s.bytes))
        .collect();
    let of = |who: &str| answer.iter().filter(|m| matches!(m, Message::Broadcast(b) if b.origin == id(who))).count();
    assert_eq!((of("a"), of("c")), (0, 1), "a was sent {} of its own broadcasts", of("a"));
}

#[test]
fn push_pulls_between_members_holding_the_same_keyed_values_do_not_resend_them() {
    // The digest's hash of keyed values was seeded per node at random, so two members never agreed
    // and every push-pull sent every keyed value again (160 here in 12 s).
    let mut c = Cluster::formed(3, Config::local());
    for k in 0..20u8 {
        c.nodes[2].broadcast("state", &[k; 500], Some(&[k])).unwrap();
        c.advance(50);
    }
    c.advance(3_000);
    let mark = c.log.len();
    c.advance(12_000);
    let pushes = c.log[mark..].iter().filter(|s| s.reliable && s.kind == TransmitKind::PushPull);
    let resent: usize = pushes
        .map(|s| decode(&s.bytes).iter().filter(|m| matches!(m, Message::Broadcast(b) if b.key.is_some())).count())
        .sum();
    assert_eq!(resent, 0, "{resent} keyed values sent again to members holding them");
}

#[test]
fn a_restarted_member_is_not_handed_its_previous_lifes_broadcasts() {
    // Its new life's ledger did not know the old one, and nothing stopped a member from delivering a
    // broadcast of its own name: the catch-up push-pulls after its join handed it all 4 back.
    let config = Config::local();
    let mut c = Cluster::formed(3, config.clone());
    for i in 0..3u8 {
        c.nodes[2].broadcast("mine", &[i], None).unwrap();
    }
    c.nodes[2].broadcast("mine", b"state", Some(b"k")).unwrap();
    c.advance(2_000);
    c.crash(2);
    c.restart(2, "c", config.clone());
    let now = c.now;
    c.nodes[2].join(now, &[0]).unwrap();
    c.advance(10_000);
    let own = c.count(2, |e| matches!(e, Event::Message { from, .. } if *from == id("c")));
    assert_eq!(own, 0, "c was handed {own} of its previous life's broadcasts");
}

#[test]
fn a_seed_restarted_without_joining_is_not_handed_the_old_broadcasts() {
    // Only the answer to a join said "broadcasts before this are not yours". A seed that comes back
    // without joining is found by the others (they ping it, it asks for their records); its catch-up
    // push-pulls then got every past event its empty digest lacked, and their digests opened holes
    // for the rest: all 5 old broadcasts were delivered to it.
    let config = Config::local();
    let mut c = Cluster::formed(3, config.clone());
    for i in 0..5u8 {
        c.nodes[1].broadcast("old", &[i], None).unwrap();
        c.advance(100);
    }
    c.advance(2_000);
    c.crash(0);
    c.restart(0, "a", config.clone());
    c.advance(10_000);
    let old = c.count(0, |e| matches!(e, Event::Message { topic, .. } if topic == "old"));
    assert_eq!(old, 0, "a was delivered {old} broadcasts sent before it came back");
    // It is a member like any other for what follows.
    c.nodes[1].broadcast("new", b"1", None).unwrap();
    c.advance(2_000);
    assert_eq!(c.count(0, |e| matches!(e, Event::Message { topic, .. } if topic == "new")), 1);
    assert_eq!(c.node(0).stats().broadcasts_missed, 0);
}

#[test]
fn a_founding_member_found_by_joiners_still_expects_every_broadcast_of_theirs() {
    // The other side of the rule above: a member that never joins, found by the members that join
    // through it, catches up at once and then expects everything, so a lost broadcast is repaired.
    let config = Config::local();
    let mut c = Cluster::start(3, config.clone());
    c.advance(100);
    c.drop_rule = Some(Box::new(|_, t: &Transmit<u32>| {
        !t.reliable && decode(&t.bytes).iter().any(|m| matches!(m, Message::Broadcast(b) if b.seq == 0))
    }));
    c.nodes[1].broadcast("early", b"0", None).unwrap();
    c.advance(500);
    c.drop_rule = None;
    c.nodes[1].broadcast("early", b"1", None).unwrap();
    c.advance(10_000);
    let got = c.count(0, |e| matches!(e, Event::Message { topic, .. } if topic == "early"));
    assert_eq!(got, 2, "the founder got both, the lost one by repair");
}

#[test]
fn an_origin_restarted_four_times_within_retention_leaves_no_phantom_holes() {
    // A member remembers four lives per origin. The fifth pushed the first out, and the next digest
    // or repair that mentioned the first started it again as the newest, pushing out the second,
    // and so on round: holes for broadcasts long delivered (4 here), 312 repair pulls in a minute,
    // and as many false `BroadcastsMissed`.
    let config = Config { broadcast_retention: Duration::from_secs(60), ..Config::local() };
    let mut c = Cluster::formed(3, config.clone());
    c.clear_events();
    c.nodes[2].broadcast("event", b"1", None).unwrap();
    c.advance(1_000);
    for life in 2..=5u8 {
        c.crash(2);
        c.advance(4_000);
        c.restart(2, "c", config.clone());
        let now = c.now;
        c.nodes[2].join(now, &[0]).unwrap();
        c.advance(1_000);
        c.nodes[2].broadcast("event", &[b'0' + life], None).unwrap();
        c.advance(1_000);
    }
    c.advance(10_000);
    let holes = c.node(0).footprint().broadcast_holes;
    let pulls = c.node(0).stats().broadcast_pulls_sent;
    c.advance(config.broadcast_retention.as_millis() as u64 + 5_000);
    let delivered = c.count(0, |e| matches!(e, Event::Message { topic, .. } if topic == "event"));
    let missed: u64 =
        c.events(0).iter().map(|e| if let Event::BroadcastsMissed { count, .. } = e { *count } else { 0 }).sum();
    assert_eq!((delivered, holes, missed), (5, 0, 0));
    assert_eq!(c.node(0).stats().broadcast_pulls_sent, pulls, "no repair pulls for lives long gone");
}

#[test]
fn a_life_pushed_out_by_four_newer_ones_is_not_delivered_again() {
    // The same, in the ledger: life 1 of an origin, pushed out by lives 2 to 5, came back as new;
    // its old broadcast was delivered a second time and its old keyed value replaced life 5's.
    use crate::broadcast::{Ledger, Verdict};
    let (o, t, k) = (id("o"), Instant::from_millis(0), ("cursor", &b"x"[..]));
    let mut l = Ledger::new();
    assert_eq!(l.accept(&o, 1, 0, true, t), Verdict::Deliver);
    assert_eq!(l.accept_keyed(&o, 1, 0, k, t), Verdict::Deliver);
    for epoch in 2..=5 {
        l.accept(&o, epoch, 0, true, t);
        l.accept_keyed(&o, epoch, 0, k, t);
    }
    assert_eq!(l.accept_keyed(&o, 1, 0, k, t), Verdict::Superseded, "life 1's value replaces life 5's");
    assert_eq!(l.accept(&o, 1, 0, true, t), Verdict::Duplicate, "delivered twice");
}

#[test]
fn with_reannounce_off_holes_still_expire_and_are_reported() {
    // Expiring holes (and kept broadcasts), reaping dead members and sweeping spent timers rode on
    // the re-announce timer: with `reannounce_interval = 0` none of them ever ran.
    let config = Config { reannounce_interval: Duration::ZERO, ..Config::local() };
    let mut c = Cluster::formed(2, config.clone());
    c.clear_events();
    let now = c.now;
    c.nodes[0].handle_packet(now, 1, &packet_of(&[forged_broadcast("x", 1, 0), forged_broadcast("x", 1, 2)])).unwrap();
    c.advance(2 * config.broadcast_retention.as_millis() as u64);
    assert_eq!(c.node(0).footprint().broadcast_holes, 0, "the hole at 1 is never given up");
    assert!(c.events(0).iter().any(|e| matches!(e, Event::BroadcastsMissed { count: 1, .. })));
    assert_eq!(c.node(0).footprint().broadcast_log, 0, "what was kept is forgotten after retention");
}

#[test]
fn with_reannounce_off_a_dead_member_is_still_forgotten() {
    let config = Config { reannounce_interval: Duration::ZERO, ..Config::local() };
    let mut c = Cluster::formed(3, config.clone());
    c.crash(2);
    c.advance(config.dead_member_reap_time.as_millis() as u64 + 20_000);
    assert!(c.node(0).member(&id("c")).is_none(), "c is reaped");
}
