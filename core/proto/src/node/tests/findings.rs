//! Defects the swarm simulation found, each kept fixed.

use super::*;

#[test]
fn metadata_too_large_for_gossip_learned_by_push_pull_still_spreads_by_gossip() {
    // Found by the swarm (seed 30037): an `Alive` learned from a push-pull record carries the
    // metadata whole; queued for gossip as it was, it never fit in a packet, so the news of the new
    // incarnation never spread and half the cluster kept the old one for good.
    let config = Config { push_pull_interval: Duration::ZERO, ..Config::local() };
    let mut c = Cluster::formed(3, config.clone());
    let big = vec![b'm'; config.max_gossip_meta + 100];
    c.nodes[2].set_metadata(&big).unwrap();
    // Member 1 learns the new record only through a push-pull with member 2.
    c.blocked.insert((2, 1));
    c.deliver_all();
    c.blocked.clear();
    let now = c.now;
    c.nodes[1].join(now, &[2]).unwrap();
    c.deliver_all();
    let incarnation = c.node(2).incarnation();
    assert_eq!(c.node(1).member(&id("c")).map(|m| m.incarnation), Some(incarnation));
    // Whatever member 1 gossips about member 2 now fits in a packet, metadata announced by length.
    let mark = c.log.len();
    c.advance(2_000);
    let carried = c.log[mark..].iter().filter(|s| s.from == 1 && !s.reliable).any(|s| {
        decode(&s.bytes).iter().any(|m| {
            matches!(m, Message::Alive(a) if a.id == id("c") && a.incarnation == incarnation
                && matches!(a.meta, MetaField::Omitted { len } if len as usize == big.len()))
        })
    });
    assert!(carried, "member 1 gossips member 2's new record");
    assert_eq!(c.node(1).queued_updates().0, 0, "nothing is stuck in the queue");
}

#[test]
fn a_suspicion_of_a_member_nobody_remembers_does_not_bring_it_back() {
    // Found by the swarm (seed 31895): a member cut off for long still held a long-dead member as
    // suspect; its push-pull records made everyone who had forgotten the dead member learn it again
    // (`Joined`), suspect it and fail it, over and over.
    let mut c = Cluster::formed(2, Config::local());
    c.clear_events();
    let ghost = MemberRecord {
        id: id("ghost"),
        addr: 99u32,
        incarnation: 3,
        state: MemberState::Suspect,
        meta: Vec::new(),
        min_version: 1,
        max_version: 1,
    };
    let msg = Message::PushPull { from: id("b"), join: false, reply: true, members: vec![ghost] };
    let mut w = Writer::default();
    begin_packet(&mut w, PROTOCOL_VERSION);
    msg.encode(&mut w);
    let now = c.now;
    c.nodes[0].handle_packet(now, 1, w.as_slice()).unwrap();
    c.collect();
    assert!(c.node(0).member(&id("ghost")).is_none());
    assert!(!c.events(0).iter().any(|e| matches!(e, Event::Joined(m) if m.id == id("ghost"))));
}

#[test]
fn a_member_that_missed_a_restart_learns_of_it_when_the_restarted_member_probes_it() {
    // Found by the swarm (seed 32461), push-pull off: a member that held a restarted member as left
    // kept it so; now a ping from a member it holds as gone makes it ask for that member's record.
    let config = Config { push_pull_interval: Duration::ZERO, ..Config::local() };
    let mut c = Cluster::formed(3, config.clone());
    let now = c.now;
    c.nodes[2].leave(now);
    c.advance(1_000);
    assert_eq!(c.node(0).member(&id("c")).map(|m| m.state), Some(MemberState::Left));
    // c comes back; a hears nothing of it from b, and from c only its probes and the answer to a's
    // request for its record (a reliable frame).
    c.restart(2, "c", config.clone());
    c.blocked.insert((1, 0));
    c.drop_rule =
        Some(Box::new(|from, t: &Transmit<u32>| from == 2 && t.to == 0 && t.kind != TransmitKind::Ping && !t.reliable));
    let now = c.now;
    c.nodes[2].join(now, &[1]).unwrap();
    let back = c.advance_until(20_000, |c| c.node(0).member(&id("c")).is_some_and(|m| m.state.is_live()));
    c.drop_rule = None;
    assert!(back, "a learns c is back from c's own record");
    assert!(c.node(0).stats().unknown_pingers_asked >= 1);
}

#[test]
fn a_restarted_member_is_told_of_the_departure_it_must_refute_when_it_announces_itself() {
    // Found by the swarm (seed 43611): c left at incarnation 1 and restarted at 0 through a seed that
    // no longer knew it. Those that still held it as left dropped its alive at 0 as old news, and it
    // stayed gone in their view for a push-pull period or until they forgot it. Now an alive that
    // does not beat a member's death or departure is answered, to the member itself too.
    let config = Config { push_pull_interval: Duration::ZERO, ..Config::local() };
    let forgetful = Config { dead_member_reap_time: Duration::from_secs(2), ..config.clone() };
    let mut c = Cluster::new();
    for cfg in [&config, &config, &config, &forgetful] {
        c.add(cfg.clone());
    }
    let now = c.now;
    for i in 1..4 {
        c.nodes[i].join(now, &[0]).unwrap();
        c.deliver_all();
    }
    c.advance(3_000);
    let now = c.now;
    c.nodes[2].leave(now);
    c.advance(1_000);
    c.crash(2);
    // d forgets c; a and b still hold it as left.
    c.advance(
        forgetful.dead_member_reap_time.as_millis() as u64 + forgetful.reannounce_interval.as_millis() as u64 * 2,
    );
    assert!(c.node(3).member(&id("c")).is_none());
    assert_eq!(c.node(0).member(&id("c")).map(|m| m.state), Some(MemberState::Left));
    c.restart(2, "c", config.clone());
    // No push-pull between c and the members that remember its departure: c's catch-ups would tell
    // it otherwise, and this is about what gossip alone does.
    c.drop_rule =
        Some(Box::new(|from, t: &Transmit<u32>| t.reliable && (from == 2) != (t.to == 2) && (from < 2 || t.to < 2)));
    let now = c.now;
    c.nodes[2].join(now, &[3]).unwrap();
    let bound = config.probe_interval + config.gossip_interval * 15;
    let back = c.advance_until(bound.as_millis() as u64, |c| {
        (0..4u32).filter(|&i| i != 2).all(|i| c.node(i).member(&id("c")).is_some_and(|m| m.state == MemberState::Alive))
    });
    let views: Vec<_> = (0..4u32).map(|i| c.node(i).member(&id("c")).map(|m| (m.state, m.incarnation))).collect();
    assert!(
        back,
        "everyone holds c alive again within {bound:?}: {views:?}; c saw {:?}; a answered {}",
        c.events(2),
        c.node(0).stats().stale_claims_answered
    );
}

#[test]
fn a_member_with_a_broadcast_hole_asks_for_it_before_shorter_lived_logs_forget_it() {
    // Found by the swarm (seed 30617 of an earlier generator): in a cluster mixing presets, a member
    // that keeps broadcasts for minutes had a hole that only its own push-pull (a minute apart)
    // could fill, while the members it happened to ask kept broadcasts for 30 s. Now a hole that
    // gossip has not filled within a few rounds is asked for at once.
    let long = Config {
        broadcast_retention: Duration::from_secs(600),
        push_pull_interval: Duration::from_secs(600),
        ..Config::local()
    };
    let short = Config {
        broadcast_retention: Duration::from_secs(2),
        push_pull_interval: Duration::from_secs(600),
        ..Config::local()
    };
    let mut c = Cluster::new();
    c.add(short.clone());
    c.add(short.clone());
    c.add(long.clone());
    let now = c.now;
    for i in 1..3 {
        c.nodes[i].join(now, &[0]).unwrap();
        c.deliver_all();
    }
    c.advance(2_000);
    c.clear_events();
    // Member 2 misses the second of three broadcasts: cut off while it spreads.
    c.nodes[0].broadcast("news", b"1", None).unwrap();
    c.advance(300);
    c.blocked.extend([(0, 2), (1, 2)]);
    c.nodes[0].broadcast("news", b"2", None).unwrap();
    c.advance(700);
    c.blocked.clear();
    c.nodes[0].broadcast("news", b"3", None).unwrap();
    let got = c.advance_until(1_000, |c| {
        c.events(2).iter().any(|e| matches!(e, Event::Message { payload, .. } if payload == b"2"))
    });
    assert!(got, "member 2 asked for the hole and got it: {:?}", c.node(2).stats());
    assert!(c.node(2).stats().broadcast_pulls_sent >= 1);
    assert_eq!(c.node(2).stats().broadcasts_missed, 0);
}

#[test]
fn timers_of_suspicions_refuted_long_ago_do_not_pile_up() {
    // Found by the swarm (seed 118625): at 18% loss with WAN members (suspicions that may last
    // minutes), refuted suspicions left thousands of spent timers in the heap until their deadlines.
    let config = Config { suspicion_max_timeout_mult: 64, ..Config::local() };
    let mut c = Cluster::formed(3, config.clone());
    let c_id = id("c");
    for round in 0..300u32 {
        // Someone claims c is suspect; a adopts it, c refutes, a clears it: one spent timer each.
        let incarnation = c.node(2).incarnation();
        let claim = Message::<u32>::Suspect { id: c_id.clone(), incarnation, from: id("b") };
        let mut w = Writer::default();
        begin_packet(&mut w, PROTOCOL_VERSION);
        claim.encode(&mut w);
        let now = c.now;
        c.nodes[0].handle_packet(now, 1, w.as_slice()).unwrap();
        c.advance(20);
        assert!(c.node(0).member(&c_id).is_some_and(|m| m.state.is_live()), "round {round}");
    }
    c.advance(2 * config.reannounce_interval.as_millis() as u64);
    let timers = c.node(0).footprint().timers;
    assert!(timers < 100, "{timers} timers pending");
}

// ----- found by review ---------------------------------------------------------------------------

#[test]
fn a_reliable_message_is_delivered_once_even_after_a_flood_of_made_up_sender_names() {
    // De-duplication records were evicted oldest first once 4,096 senders were remembered: a frame
    // of messages under made-up names pushed out a real sender's record, and its next copy of a
    // message already delivered was delivered again.
    let mut c = Cluster::formed(2, Config::local());
    let real =
        Message::<u32>::Reliable { from: id("b"), epoch: 77, id: 1, topic: "t".into(), payload: b"once".to_vec() };
    let flood: Vec<Message<u32>> = (0..4_096u32)
        .map(|i| Message::Reliable {
            from: id(&format!("f{i}")),
            epoch: 1,
            id: 1,
            topic: String::new(),
            payload: vec![],
        })
        .collect();
    for pkt in [packet_of(core::slice::from_ref(&real)), packet_of(&flood), packet_of(&[real])] {
        let now = c.now;
        c.nodes[0].handle_packet(now, 1, &pkt).unwrap();
    }
    c.collect();
    let got = c.count(0, |e| matches!(e, Event::Message { payload, .. } if payload == b"once"));
    assert_eq!(got, 1, "delivered {got} times");
    assert!(c.node(0).stats().reliable_refused > 0, "the sender that found no record is counted");
}

#[test]
fn the_copies_one_frame_carries_are_acknowledged_in_one_frame() {
    // Every reliable message was acknowledged with a frame of its own: one frame of 4,096 tiny
    // messages made the receiver send 4,096 frames back.
    let mut c = Cluster::formed(2, Config::local());
    let batch: Vec<Message<u32>> = (1..=500u64)
        .map(|i| Message::Reliable { from: id("b"), epoch: 3, id: i, topic: String::new(), payload: vec![] })
        .collect();
    let mark = c.log.len();
    let now = c.now;
    c.nodes[0].handle_packet(now, 1, &packet_of(&batch)).unwrap();
    c.deliver_all();
    let acks: Vec<_> = c.log[mark..].iter().filter(|s| s.from == 0 && s.kind == TransmitKind::Ack).collect();
    assert_eq!(acks.len(), 1, "{} frames of acknowledgements", acks.len());
    let acked = decode(&acks[0].bytes).iter().filter(|m| matches!(m, Message::ReliableAck { .. })).count();
    assert_eq!(acked, 500);
}

#[test]
fn only_the_receiver_can_acknowledge_a_reliable_message() {
    // An acknowledgement counted from anyone: the epoch is public (every broadcast carries it) and
    // ids count up from 1, so any member could forge one and make a lost message look delivered.
    let config = Config::local();
    let mut c = Cluster::formed(3, config.clone());
    c.clear_events();
    let epoch = c.nodes[0].broadcast("x", b"x", None).unwrap().epoch;
    c.blocked.insert((0, 2));
    let now = c.now;
    let rid = c.nodes[0].send_reliable(now, &id("c"), "t", b"p").unwrap();
    c.nodes[0].handle_packet(now, 1, &packet_of(&[Message::ReliableAck { epoch, id: rid }])).unwrap();
    c.advance(config.reliable_timeout.as_millis() as u64 * (u64::from(config.reliable_attempts) + 1));
    assert_eq!(c.count(0, |e| matches!(e, Event::SendFailed { id, .. } if *id == rid)), 1);
    assert_eq!(c.node(0).stats().reliable_acks_misdirected, 1);
}

#[test]
fn a_stale_alive_is_answered_only_at_addresses_we_hold_not_at_ones_it_names() {
    // An `Alive` older than our record of a departed member was answered at the address the claim
    // named: one packet of 40 claims made a member send 40 packets to addresses of the sender's
    // choosing (a reflector).
    let mut c = Cluster::formed(3, Config::local());
    let now = c.now;
    c.nodes[2].leave(now);
    c.advance(1_000);
    c.crash(2);
    let claims: Vec<Message<u32>> = (100..140u32)
        .map(|victim| {
            let meta = MetaField::Included(Vec::new());
            Message::Alive(Alive { id: id("c"), addr: victim, incarnation: 0, meta, min_version: 1, max_version: 1 })
        })
        .collect();
    let mark = c.log.len();
    let now = c.now;
    c.nodes[0].handle_packet(now, 1, &packet_of(&claims)).unwrap();
    c.deliver_all();
    let reflected = c.log[mark..].iter().filter(|s| s.from == 0 && s.to >= 100).count();
    assert_eq!(reflected, 0, "one packet made a send {reflected} packets to addresses it named");
}

#[test]
fn pings_under_made_up_names_do_not_silence_stale_claim_answers() {
    // Record requests to unknown pingers shared the stale-claim answers' rate table: 256 pings
    // under made-up names filled it, and a member spreading a stale suspicion went unanswered.
    let mut c = Cluster::formed(3, Config::local());
    let now = c.now;
    c.nodes[2].handle_packet(now, 1, &forged_suspect("c", 0, "b")).unwrap();
    assert!(c.advance_until(2_000, |c| everyone_holds_alive(c, 2)));
    for chunk in 0..4u32 {
        let pings: Vec<Message<u32>> = (0..64u32)
            .map(|i| {
                Message::Ping(crate::wire::Ping {
                    seq: i,
                    target: id("a"),
                    source: id(&format!("g{}", chunk * 64 + i)),
                })
            })
            .collect();
        let now = c.now;
        c.nodes[0].handle_packet(now, 1, &packet_of(&pings)).unwrap();
    }
    let before = c.node(0).stats().stale_claims_answered;
    let now = c.now;
    c.nodes[0].handle_packet(now, 1, &forged_suspect("c", 0, "b")).unwrap();
    assert_eq!(c.node(0).stats().stale_claims_answered, before + 1, "{:?}", c.node(0).stats());
    assert_eq!(c.node(0).stats().unknown_pingers_asked, 1, "one record request per pinger address");
}

#[test]
fn a_join_call_made_once_already_a_member_completes_only_when_one_of_its_seeds_answers() {
    // Found by CI (the relay's end-to-end test): a member found by another is a member already;
    // its own `join` through a third then reported success via the member that found it (whose
    // answer to its catch-up arrived first), though the seed it named had not answered yet.
    let mut c = Cluster::new();
    for _ in 0..3 {
        c.add(Config::local());
    }
    let now = c.now;
    c.nodes[1].join(now, &[0]).unwrap();
    c.collect();
    let (from, ask, _) = c.in_flight.pop_front().expect("member 1 asks member 0");
    assert_eq!((from, ask.to, ask.kind), (1, 0, TransmitKind::PushPull));
    c.nodes[0].handle_packet(now, 1, &ask.bytes).unwrap();
    assert!(c.node(0).is_joined(), "member 0 was found by member 1");
    // Member 0 answers member 1 and asks it back; its join through member 2 goes out after that,
    // so member 1's answer arrives first.
    c.nodes[0].join(now, &[2]).unwrap();
    c.deliver_all();
    let joins: Vec<_> = c.events(0).iter().filter(|e| matches!(e, Event::JoinSucceeded { .. })).collect();
    assert_eq!(joins, [&Event::JoinSucceeded { via: 2 }], "the join names the seed it asked");
    assert_eq!(c.node(0).cluster_size(), 3);
}

#[test]
fn a_slow_preset_member_answers_a_stale_claim_about_itself_every_second_not_every_probe_interval() {
    // Swarm seed 432724: a wan member (5 s probes) answered a local member's stale claim of its
    // death once per 5 s; the local member gossips to a member it holds dead for 10 s only, so at
    // 18% loss both answers could be lost, and it kept the live member dead for over 39 s.
    let mut c = Cluster::formed(2, Config::wan());
    let now = c.now;
    c.nodes[1].handle_packet(now, 0, &forged_suspect("b", 0, "a")).unwrap();
    assert!(c.node(1).incarnation() > 0, "refuted");
    c.drop_rule = Some(Box::new(|_, _| true)); // nothing gets through: the claims keep coming
    let before = c.node(1).stats().stale_claims_answered;
    for step in 0..100u64 {
        let at = now + Duration::from_millis(100 * step);
        c.nodes[1].handle_packet(at, 0, &forged_suspect("b", 0, "a")).unwrap();
    }
    let answered = c.node(1).stats().stale_claims_answered - before;
    assert!(answered >= 9, "{answered} answers in 10 s of stale claims");
    assert!(answered <= 11, "{answered} answers: still rate limited");
}

#[test]
fn a_member_that_missed_every_gossiped_copy_of_a_refutation_hears_it_from_the_suspect_before_declaring_it_failed() {
    // Found by the swarm (seed 1201112: 74 browser members at 4.5% loss): one member heard eight
    // copies of a suspicion and none of the refutation, and declared a healthy member failed at its
    // deadline. Here every gossiped copy of the refutation to the member is lost; only what the
    // suspect sends it after the member pinged it with the suspicion gets through. Several pairs,
    // each with its own accuser: a member's round-robin probe alone rarely reaches the suspect in time.
    let config = without_anti_entropy();
    let n = 20;
    let (_, max_timeout) = crate::suspicion::suspicion_bounds(&config, n);
    for (x, m) in [(3u32, 7u32), (5, 11), (12, 2), (16, 9), (1, 18)] {
        let mut c = Cluster::formed(n, config.clone());
        c.clear_events();
        let x_id = id(&name_of(x as usize));
        let before = c.node(x).incarnation();
        let acks_lost = Rc::new(Cell::new(true));
        let told_by_m = Rc::new(Cell::new(false));
        let (acks, told, who) = (acks_lost.clone(), told_by_m.clone(), x_id.clone());
        c.drop_rule = Some(Box::new(move |from, t: &Transmit<u32>| {
            if from == m && t.to == x {
                let claim = decode(&t.bytes).iter().any(|msg| matches!(msg, Message::Suspect { id, .. } if *id == who));
                told.set(told.get() || claim);
            }
            (acks.get() && from == x && t.kind == TransmitKind::Ack)
                || (t.to == m && !(from == x && told.get()) && carries_newer_alive(t, &who, before))
        }));
        let suspected = c.advance_until(3_000, |c| {
            (0..n as u32).any(|i| c.events(i).iter().any(|e| matches!(e, Event::Suspected { id, .. } if *id == x_id)))
        });
        assert!(suspected, "x{x} is suspected");
        acks_lost.set(false);

        c.advance(2 * max_timeout.as_millis() as u64);
        assert!(crate::incarnation::is_newer(c.node(x).incarnation(), before), "x{x} refuted");
        assert!(!c.events(m).iter().any(|e| is_failed(e, &x_id)), "m{m} declared x{x} failed: {:?}", c.events(m));
        let held = c.node(m).member(&x_id).map(|mm| (mm.state, mm.incarnation));
        assert_eq!(held, Some((MemberState::Alive, c.node(x).incarnation())), "m{m}'s view of x{x}");
    }
}
