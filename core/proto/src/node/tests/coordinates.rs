//! What rides on acks: network coordinates and the application's ack payload. (The harness
//! delivers instantly, so round trips here are all zero; the estimate's accuracy over real
//! latencies is measured in the simulator, `tests/simulation.rs`.)

use super::*;

fn extras_in(bytes: &[u8]) -> (usize, usize) {
    let messages = decode(bytes);
    let coordinates = messages.iter().filter(|m| matches!(m, Message::Coordinate { .. })).count();
    let payloads = messages.iter().filter(|m| matches!(m, Message::AckPayload { .. })).count();
    (coordinates, payloads)
}

#[test]
fn coordinates_are_off_by_default_and_acks_then_carry_nothing_but_the_ack() {
    let mut c = Cluster::formed(3, Config::local());
    c.advance(5_000);
    assert!(c.log.iter().all(|s| extras_in(&s.bytes) == (0, 0)));
    assert!(c.node(0).coordinate().is_none() && c.node(0).nearest(5).is_empty());
    assert_eq!(c.node(0).estimate_rtt(&id("b")), None);
}

#[test]
fn with_coordinates_on_every_member_gets_an_estimate_for_every_other_from_its_probes() {
    let mut c = Cluster::formed(4, Config::local());
    for n in &mut c.nodes {
        n.set_coordinates(true);
    }
    let everyone_estimated = c.advance_until(20_000, |c| {
        (0..4u32)
            .all(|i| (0..4u32).filter(|j| *j != i).all(|j| c.node(i).estimate_rtt(&id(&name_of(j as usize))).is_some()))
    });
    assert!(everyone_estimated, "every member probed every other and holds its coordinate");
    for i in 0..4u32 {
        let node = c.node(i);
        assert!(node.stats().coordinate_updates > 0);
        assert_eq!(node.stats().coordinate_resets, 0);
        assert!(node.coordinate().is_some_and(|own| own.is_valid()));
        let nearest = node.nearest(10);
        assert_eq!(nearest.len(), 3, "node {i}: the three others, ordered");
        assert!(nearest.windows(2).all(|w| w[0].1 <= w[1].1));
        // Instant delivery: every round trip measured is zero, so every estimate is small.
        assert!(nearest.iter().all(|(_, rtt)| *rtt < Duration::from_millis(5)), "{nearest:?}");
    }
    // Acks carry exactly one coordinate; nothing else does.
    let acks: Vec<&Sent> = c.log.iter().filter(|s| s.kind == TransmitKind::Ack).collect();
    assert!(acks.iter().rev().take(10).all(|s| extras_in(&s.bytes).0 == 1));
    assert!(c.log.iter().filter(|s| s.kind != TransmitKind::Ack).all(|s| extras_in(&s.bytes).0 == 0));
}

#[test]
fn a_member_reaped_from_the_table_takes_its_coordinate_with_it() {
    let mut config = Config::local();
    config.dead_member_reap_time = Duration::from_secs(10);
    let mut c = Cluster::formed(3, config);
    for n in &mut c.nodes {
        n.set_coordinates(true);
    }
    let gone = id("c");
    assert!(c.advance_until(20_000, |c| c.node(0).coordinate_of(&gone).is_some()));
    c.crash(2);
    assert!(c.advance_until(60_000, |c| c.node(0).member(&gone).is_none()), "reaped");
    c.advance(10_000);
    assert_eq!(c.node(0).coordinate_of(&gone), None);
    assert!(c.node(0).nearest(5).iter().all(|(id, _)| *id != gone));
}

#[test]
fn an_ack_payload_reaches_every_prober_as_ping_complete_with_the_round_trip() {
    let mut c = Cluster::formed(3, Config::local());
    c.nodes[2].set_ack_payload(b"load=0.3").unwrap();
    c.clear_events();
    let reported = c.advance_until(20_000, |c| {
        (0..2u32).all(|i| {
            c.events(i).iter().any(|e| {
                matches!(e, Event::PingComplete { id, payload, .. }
                if *id == NodeId::new("c").unwrap() && payload == b"load=0.3")
            })
        })
    });
    assert!(reported, "both other members probed c and got its payload");
    assert!(
        !c.events(0).iter().any(|e| matches!(e, Event::PingComplete { id, .. } if *id == NodeId::new("b").unwrap())),
        "b set no payload: its acks are plain"
    );
    let too_long = vec![0; crate::wire::MAX_ACK_PAYLOAD + 1];
    assert!(matches!(c.nodes[2].set_ack_payload(&too_long), Err(CommandError::TooLarge { .. })));
}

#[test]
fn a_coordinate_or_payload_without_an_ack_of_our_own_probe_before_it_is_counted_and_not_used() {
    let mut c = Cluster::formed(2, Config::local());
    c.nodes[0].set_coordinates(true);
    let mut w = Writer::default();
    begin_packet(&mut w, PROTOCOL_VERSION);
    let far = crate::coordinate::Coordinate { vec: [500.0; 8], height: 1.0, error: 0.1 };
    Message::<u32>::Coordinate { units: far.to_wire() }.encode(&mut w);
    Message::<u32>::AckPayload { payload: b"forged".to_vec() }.encode(&mut w);
    Message::<u32>::Ack { seq: 12345 }.encode(&mut w);
    let now = c.now;
    c.nodes[0].handle_packet(now, 1, &w.into_vec()).unwrap();
    c.collect();
    assert_eq!(c.node(0).stats().ack_extras_unmatched, 2);
    assert_eq!(c.node(0).stats().coordinate_updates, 0);
    assert_eq!(c.node(0).coordinate(), Some(&crate::coordinate::Coordinate::ORIGIN));
    assert!(!c.events(0).iter().any(|e| matches!(e, Event::PingComplete { .. })));
}

#[test]
fn a_member_without_coordinates_skips_what_rides_on_acks_and_probes_as_before() {
    // A member built without the `coordinates` feature skips both messages as unknown types;
    // emulated by cutting them out of what node `old` receives, as its decoder does.
    let mut c = Cluster::formed(3, Config::local());
    let old = 2u32;
    for n in &mut c.nodes[..2] {
        n.set_coordinates(true);
        n.set_ack_payload(b"p").unwrap();
    }
    c.rewrite = Some(Box::new(move |_, to, bytes| {
        let mut w = Writer::default();
        begin_packet(&mut w, PROTOCOL_VERSION);
        for m in decode(bytes) {
            if to != old || !matches!(m, Message::Coordinate { .. } | Message::AckPayload { .. }) {
                m.encode(&mut w);
            }
        }
        w.into_vec()
    }));
    c.clear_events();
    c.advance(20_000);
    assert_eq!(c.node(old).stats().coordinate_updates, 0);
    assert!(!c.events(old).iter().any(|e| matches!(e, Event::PingComplete { .. })));
    for i in 0..3u32 {
        assert_eq!(c.node(i).stats().suspicions_raised, 0, "node {i}: probing works as before");
    }
    assert!(c.node(0).estimate_rtt(&id("b")).is_some(), "the new members estimate each other");
    assert_eq!(c.node(0).estimate_rtt(&id("c")), None, "the old member's acks carry no coordinate");
}
