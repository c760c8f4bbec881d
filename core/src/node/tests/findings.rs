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
    let now = c.now;
    c.nodes[2].set_metadata(&big, now).unwrap();
    // Member 1 learns the new record only through a push-pull with member 2.
    c.blocked.insert((2, 1));
    c.deliver_all();
    c.blocked.clear();
    let now = c.now;
    c.nodes[1].join(&[2], now).unwrap();
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
    c.nodes[2].join(&[1], now).unwrap();
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
        c.nodes[i].join(&[0], now).unwrap();
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
    c.nodes[2].join(&[3], now).unwrap();
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
        c.nodes[i].join(&[0], now).unwrap();
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
