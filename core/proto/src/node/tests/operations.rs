//! Operator commands on a running node: forcing a failed member out.

use super::*;
use crate::incarnation::is_newer;

fn is_left(e: &Event<u32>, who: &NodeId) -> bool {
    matches!(e, Event::Left { id, .. } if id == who)
}

/// Every member in `watchers` holds `who` in `state`.
fn all_hold(c: &Cluster, watchers: &[u32], who: &NodeId, state: MemberState) -> bool {
    watchers.iter().all(|i| c.node(*i).member(who).is_some_and(|m| m.state == state))
}

#[test]
fn a_failed_member_forced_out_is_seen_as_left_by_every_member_and_never_contacted_again() {
    let mut c = Cluster::formed(5, Config::local());
    let gone = id(&name_of(4));
    c.crash(4);
    let watchers = [0u32, 1, 2, 3];
    assert!(
        c.advance_until(20_000, |c| all_hold(c, &watchers, &gone, MemberState::Dead)),
        "everyone declares it failed"
    );
    c.clear_events();

    let now = c.now;
    c.nodes[0].force_leave(now, &gone).unwrap();
    assert_eq!(c.node(0).stats().forced_leaves, 1);
    c.collect();
    assert_eq!(c.count(0, |e| is_left(e, &gone)), 1, "the operator's member reports the departure at once");
    assert!(c.advance_until(20_000, |c| all_hold(c, &watchers, &gone, MemberState::Left)), "the departure spreads");

    // Failed members are push-pulled at every re-announce, so that a cut-off member finds its way
    // back; a departed one is left alone for as long as it is remembered.
    let config = c.node(0).config().clone();
    let sent_before = c.log.len();
    let quiet = config.reannounce_interval * 4;
    assert!(quiet < config.dead_member_reap_time, "the member is still remembered throughout");
    c.advance(quiet.as_millis() as u64);
    let contacts = c.log[sent_before..].iter().filter(|s| s.to == 4).count();
    assert_eq!(contacts, 0, "nobody contacts a member forced out");
    for i in watchers {
        assert_eq!(c.count(i, |e| is_left(e, &gone)), 1, "node {i}: Left once");
        assert_eq!(c.node(i).cluster_size(), 4);
    }
}

#[test]
fn a_member_forced_out_while_only_cut_off_refutes_the_departure_and_is_back_when_it_returns() {
    let mut c = Cluster::formed(4, Config::local());
    let cut = id(&name_of(3));
    for other in 0..3u32 {
        c.blocked.insert((other, 3));
        c.blocked.insert((3, other));
    }
    let watchers = [0u32, 1, 2];
    assert!(c.advance_until(20_000, |c| all_hold(c, &watchers, &cut, MemberState::Dead)), "the cut-off member fails");
    let failed_at = c.node(0).member(&cut).unwrap().incarnation;
    let now = c.now;
    c.nodes[1].force_leave(now, &cut).unwrap();
    assert!(c.advance_until(20_000, |c| all_hold(c, &watchers, &cut, MemberState::Left)), "the departure spreads");

    c.blocked.clear();
    let back = c.advance_until(30_000, |c| {
        watchers.iter().all(|i| {
            c.node(*i).member(&cut).is_some_and(|m| m.state == MemberState::Alive && is_newer(m.incarnation, failed_at))
        })
    });
    assert!(back, "it learns of its forced departure, refutes it and is alive everywhere again");
    assert_eq!(c.node(3).cluster_size(), 4, "and it sees everyone again");
}

#[test]
fn only_a_failed_member_can_be_forced_out_and_a_departed_one_changes_nothing() {
    let mut c = Cluster::formed(3, Config::local());
    let now = c.now;
    let alive = id(&name_of(1));
    assert_eq!(c.nodes[0].force_leave(now, &alive), Err(CommandError::NotFailed(alive.clone())));
    assert_eq!(c.nodes[0].force_leave(now, &id("nobody")), Err(CommandError::UnknownMember(id("nobody"))));
    assert_eq!(c.node(0).member(&alive).unwrap().state, MemberState::Alive, "refused: nothing changed");

    let leaver = id(&name_of(2));
    let now = c.now;
    c.nodes[2].leave(now);
    assert!(c.advance_until(10_000, |c| all_hold(c, &[0, 1], &leaver, MemberState::Left)));
    c.clear_events();
    let now = c.now;
    assert_eq!(c.nodes[0].force_leave(now, &leaver), Ok(()));
    c.collect();
    assert_eq!(c.count(0, |_| true), 0, "no second departure reported");
    assert_eq!(c.node(0).stats().forced_leaves, 0);

    let now = c.now;
    c.nodes[0].leave(now);
    assert_eq!(c.nodes[0].force_leave(now, &leaver), Err(CommandError::NotRunning));
}

#[test]
fn a_running_node_takes_a_new_probe_interval_at_its_next_tick_and_refuses_settings_it_cannot_change() {
    let mut c = Cluster::formed(3, Config::local());
    let pings = |c: &Cluster| c.node(0).stats().pings_sent;
    let before = pings(&c);
    c.advance(10_000);
    let fast = pings(&c) - before;

    let slower = Config {
        probe_interval: Duration::from_millis(1_000),
        probe_timeout: Duration::from_millis(400),
        ..Config::local()
    };
    c.nodes[0].set_config(slower.clone()).unwrap();
    c.advance(1_000); // the old tick, then the new period
    let before = pings(&c);
    c.advance(10_000);
    let slow = pings(&c) - before;
    assert!((45..=55).contains(&fast), "every 200 ms: {fast} pings in 10 s");
    assert!((9..=11).contains(&slow), "every second once changed: {slow} pings in 10 s");
    assert_eq!(c.node(0).config().probe_interval, slower.probe_interval);

    for (changed, field) in [
        (Config { max_packet_size: 1_000, ..slower.clone() }, "max_packet_size"),
        (Config { label: "other".into(), ..slower.clone() }, "label"),
        (Config { push_pull_interval: Duration::ZERO, ..slower.clone() }, "push_pull_interval"),
        (Config { awareness_max_multiplier: 2, ..slower.clone() }, "awareness_max_multiplier"),
    ] {
        let refused = c.nodes[0].set_config(changed).unwrap_err();
        assert_eq!(refused.field, field);
        assert_eq!(*c.node(0).config(), slower, "refused: nothing changed");
    }
    let invalid = Config { probe_timeout: Duration::from_secs(2), ..slower.clone() };
    assert_eq!(c.nodes[0].set_config(invalid).unwrap_err().field, "probe_timeout");
    // The cluster carries on with mixed settings.
    c.advance(5_000);
    assert!((0..3).all(|i| c.node(i).members().all(|m| m.state == MemberState::Alive)));
}

#[test]
fn every_config_that_validates_lets_handle_timeout_return_with_a_later_deadline() {
    // A zero gossip interval (with gossip_nodes = 0) once passed validation, and the gossip tick
    // then fired again at the same instant for ever: handle_timeout never returned.
    let mut rng = SmallRng::seed_from_u64(5);
    let mut valid = 0;
    for round in 0..400 {
        let pick =
            |rng: &mut SmallRng, choices: &[u64]| Duration::from_millis(choices[rng.random_range(0..choices.len())]);
        let config = Config {
            gossip_interval: pick(&mut rng, &[0, 1, 50, 200]),
            gossip_nodes: rng.random_range(0..4),
            push_pull_interval: pick(&mut rng, &[0, 1, 30_000]),
            reannounce_interval: pick(&mut rng, &[0, 1, 5_000]),
            probe_interval: pick(&mut rng, &[10, 200, 1_000]),
            probe_timeout: pick(&mut rng, &[0, 5, 80]),
            ..Config::local()
        };
        if config.validate().is_err() {
            continue;
        }
        valid += 1;
        let (done_tx, done) = std::sync::mpsc::channel();
        let probe = config.clone();
        std::thread::spawn(move || {
            let mut node: Node<u32> = Node::new(Instant::from_millis(0), probe, id("a"), 0, round).unwrap();
            node.join(Instant::from_millis(0), &[1]).unwrap();
            let mut now = Instant::from_millis(0);
            for _ in 0..50 {
                node.handle_timeout(now);
                while node.poll_transmit().is_some() {}
                while node.poll_event().is_some() {}
                let next = node.poll_timeout().expect("a node always has a timer");
                assert!(next > now, "a deadline at or before the instant just handled");
                now = next;
            }
            let _ = done_tx.send(());
        });
        let returned = done.recv_timeout(Duration::from_secs(20)).is_ok();
        assert!(returned, "handle_timeout did not return (or panicked) with {config:?}");
    }
    assert!(valid > 50, "only {valid} valid configs drawn");
}

#[test]
fn a_member_that_leaves_before_its_join_is_answered_tells_the_seed_that_already_added_it() {
    // Found by the agent's process test on a loaded machine: SIGTERM arrived after the seed took
    // the join request, before the joiner read the answer. Knowing no member, the joiner left
    // without telling anyone, and the seed declared it failed instead of seeing it leave.
    let mut c = Cluster::new();
    let seed = c.add(Config::local());
    let joiner = c.add(Config::local());
    let now = c.now;
    c.nodes[joiner as usize].join(now, &[seed]).unwrap();
    // The request reaches the seed; its answer does not reach the joiner before it leaves.
    c.blocked.insert((seed, joiner));
    c.deliver_all();
    assert!(c.node(seed).member(&id("b")).is_some_and(|m| m.state == MemberState::Alive), "the seed added it");
    let now = c.now;
    c.nodes[joiner as usize].leave(now);
    c.deliver_all();
    c.crash(joiner);
    c.advance(10_000);
    assert_eq!(c.node(seed).member(&id("b")).map(|m| m.state), Some(MemberState::Left));
    assert_eq!(c.count(seed, |e| matches!(e, Event::Failed { .. })), 0, "never reported failed");
}
