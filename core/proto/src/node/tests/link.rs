//! A member that knows its own link is down (a browser tab whose relay connection dropped).

use super::*;

/// Cuts node `i` off from every other node, both ways.
fn cut_off(c: &mut Cluster, i: u32) {
    for other in 0..c.nodes.len() as u32 {
        if other != i {
            c.blocked.insert((i, other));
            c.blocked.insert((other, i));
        }
    }
}

fn accusations_by(c: &Cluster, i: u32) -> Vec<Event<u32>> {
    c.events(i).iter().filter(|e| matches!(e, Event::Suspected { .. } | Event::Failed { .. })).cloned().collect()
}

fn all_alive_everywhere(c: &Cluster) -> bool {
    let n = c.nodes.len();
    c.nodes.iter().all(|node| node.members().filter(|m| m.state == MemberState::Alive).count() == n - 1)
}

#[test]
fn a_member_whose_relay_link_drops_for_3_s_accuses_nobody_and_converges_within_2_s_of_the_reconnect() {
    // A tab declared every native member failed 2.2-4.5 s into a relay outage, and its accusations
    // reached the natives after the reconnect.
    for seed_shift in 0..10u64 {
        let mut c = Cluster::formed(6, Config::lan());
        c.advance(seed_shift * 137);
        c.clear_events();
        cut_off(&mut c, 0);
        let now = c.now;
        c.nodes[0].set_link_up(now, false);
        c.advance(3_000);
        c.blocked.clear();
        let now = c.now;
        c.nodes[0].set_link_up(now, true);
        let converged = c.advance_until(2_000, all_alive_everywhere);
        c.advance(10_000);
        assert_eq!(accusations_by(&c, 0), [], "shift {seed_shift}: the member cut off accused others");
        // The others may declare the member cut off failed (3 s of silence is past the LAN preset's
        // shortest suspicion at 6 members), never one another.
        let n0 = id(&name_of(0));
        for i in 1..6 {
            assert!(
                !c.events(i).iter().any(|e| matches!(e, Event::Failed { id, .. } if *id != n0)),
                "shift {seed_shift}: n{i} declared a failure: {:?}",
                c.events(i)
            );
        }
        assert!(converged, "shift {seed_shift}: not converged 2 s after the reconnect");
        assert_eq!(c.node(0).stats().link_outages, 1);
    }
}

/// Links of `i` with every node not in `still_out`, restored both ways.
fn plug_back(c: &mut Cluster, i: u32, still_out: &[u32]) {
    for other in 0..c.nodes.len() as u32 {
        if !still_out.contains(&other) {
            c.blocked.remove(&(i, other));
            c.blocked.remove(&(other, i));
        }
    }
}

#[test]
fn members_cut_off_by_one_relay_outage_do_not_accuse_each_other_when_they_come_back_one_by_one() {
    // A relay restart cuts every relayed member off at once; they reconnect on their own jittered
    // backoff schedules, up to seconds apart. The first one back used to suspect (and, given time,
    // declare failed) the ones still reconnecting.
    for seed_shift in 0..40u64 {
        let config = Config::browser();
        // n0, n1, n2 are relayed; n3 and n4 are native members, which cannot tell and may accuse.
        let mut c = Cluster::formed(5, config.clone());
        c.advance(seed_shift * 137);
        c.clear_events();
        let relayed = [0u32, 1, 2];
        for &i in &relayed {
            cut_off(&mut c, i);
            let now = c.now;
            c.nodes[i as usize].set_link_up(now, false);
        }
        c.advance(3_000);
        // Back at 3 s, 4.5 s and 8 s: the last one 5 s after the first, the longest a reconnect
        // wait lasts.
        let mut out = relayed.to_vec();
        for (i, wait) in [(0u32, 0u64), (1, 1_500), (2, 3_500)] {
            c.advance(wait);
            out.retain(|&o| o != i);
            plug_back(&mut c, i, &out);
            let now = c.now;
            c.nodes[i as usize].set_link_up(now, true);
        }
        let converged = c.advance_until(2_000, all_alive_everywhere);
        c.advance(10_000);
        // No relayed member raised an accusation: a member that raises one reports it with itself
        // as `by` (elsewhere `by` may name the member a push-pull brought the news from). What the
        // native members raised, they raise for an outage they cannot tell from crashes.
        for &i in &relayed {
            let me = id(&name_of(i as usize));
            let raised = c
                .events(i)
                .iter()
                .filter(|e| matches!(e, Event::Suspected { by, .. } | Event::Failed { by, .. } if *by == me))
                .count();
            assert_eq!(raised, 0, "shift {seed_shift}: n{i}, relayed, accused: {:?}", c.events(i));
        }
        assert!(converged, "shift {seed_shift}: not converged 2 s after the last one came back");
    }
}

#[test]
fn a_suspicion_held_when_the_link_drops_is_not_settled_until_the_link_is_back_and_a_grace_has_passed() {
    let config = Config::lan();
    let mut c = Cluster::formed(4, config.clone());
    c.clear_events();
    // n3 really crashes; n0 suspects it, then n0's own link drops before the suspicion times out.
    c.crash(3);
    assert!(c.advance_until(10_000, |c| c.events(0).iter().any(|e| matches!(e, Event::Suspected { .. }))));
    cut_off(&mut c, 0);
    let now = c.now;
    c.nodes[0].set_link_up(now, false);
    c.advance(30_000);
    assert!(!c.events(0).iter().any(|e| matches!(e, Event::Failed { .. })), "declared while its link was down");
    c.blocked.clear();
    let now = c.now;
    c.nodes[0].set_link_up(now, true);
    // Back: the crash is real, so it is declared (by n0 or learned from the others) soon after.
    let declared = c.advance_until(config.probe_interval.as_millis() as u64 + 5_000, |c| {
        c.node(0).member(&id(&name_of(3))).is_some_and(|m| m.state == MemberState::Dead)
    });
    assert!(declared, "the real crash is still declared once the link is back");
}

#[test]
fn a_member_that_never_reports_its_link_behaves_as_before() {
    // UDP members never call `set_link_up`: a crash is declared as ever.
    let mut c = Cluster::formed(4, Config::local());
    c.crash(3);
    assert!(
        c.advance_until(20_000, |c| c.node(0).member(&id(&name_of(3))).is_some_and(|m| m.state == MemberState::Dead))
    );
    assert_eq!(c.node(0).stats().link_outages, 0);
}

fn alive_everywhere(c: &Cluster, i: u32) -> bool {
    let who = id(&name_of(i as usize));
    (0..c.nodes.len() as u32)
        .filter(|&j| j != i)
        .all(|j| c.node(j).member(&who).is_some_and(|m| m.state == MemberState::Alive))
}

#[test]
fn a_member_that_did_not_run_for_10_s_accuses_nobody_when_it_runs_again_and_is_alive_everywhere_within_1_s() {
    // A frozen page, a process stopped in a debugger: when it runs again every timer is overdue at
    // once, and the probe in flight and the suspicions it held expired before it read a reply.
    for seed_shift in 0..10u64 {
        let mut c = Cluster::formed(6, Config::lan());
        c.advance(seed_shift * 137);
        c.clear_events();
        c.down.insert(0);
        c.advance(10_000);
        c.resume(0);
        let back = c.advance_until(1_000, |c| alive_everywhere(c, 0));
        c.advance(10_000);
        assert_eq!(accusations_by(&c, 0), [], "shift {seed_shift}: the member that stalled accused others");
        assert!(back, "shift {seed_shift}: not alive everywhere 1 s after it ran again");
        assert_eq!(c.node(0).stats().stalls, 1, "shift {seed_shift}");
        for i in 1..6 {
            assert_eq!(c.node(i).stats().stalls, 0, "shift {seed_shift}: n{i} counted a stall it never had");
        }
    }
}

#[test]
fn a_timer_set_for_a_moment_already_past_is_not_a_stall() {
    // Lifeguard shortens a suspicion with each confirmation: its new deadline can be past already.
    let mut c = Cluster::formed(6, Config::lan());
    c.crash(5);
    c.advance(30_000);
    for i in 0..5 {
        assert_eq!(c.node(i).stats().stalls, 0, "n{i} counted a stall while running all along");
    }
}

#[test]
fn a_member_that_learns_from_a_push_pull_that_it_is_suspected_refutes_at_once() {
    // The push-pull a member sends when its link is back is how a straggler of a relay restart
    // learns, within a round trip, that others suspect it. Records of suspects the receiver does
    // not know are skipped, and we are never among our own members: the suspicion of ourselves
    // was skipped too, and the straggler was declared failed before gossip told it.
    let mut c = Cluster::formed(3, Config::lan());
    c.clear_events();
    cut_off(&mut c, 2);
    let now = c.now;
    c.nodes[2].set_link_up(now, false);
    let suspected = c.advance_until(10_000, |c| {
        (0..2u32).all(|i| c.node(i).member(&id("c")).is_some_and(|m| m.state == MemberState::Suspect))
    });
    assert!(suspected, "a and b suspect c");
    plug_back(&mut c, 2, &[]);
    let now = c.now;
    let before = c.log.len();
    c.nodes[2].set_link_up(now, true);
    c.deliver_all();
    let pushed = c.log[before..].iter().filter(|s| s.from == 2 && s.kind == TransmitKind::PushPull).count();
    assert_eq!(pushed, 1, "c asked for a push-pull when its link came back");
    assert!(
        c.events(2).iter().any(|e| matches!(e, Event::Refuted { .. })),
        "c refuted in the same round trip: {:?}",
        c.events(2)
    );
}

#[test]
fn an_accusation_deferred_while_our_link_is_down_survives_a_sweep_of_the_timers_and_is_settled_after() {
    // The sweep dropped every suspicion timer set past the suspicion's deadline, taking it for one
    // a confirmation had made stale. A deferred accusation's timer is exactly that: swept, it left
    // the member suspect for good in this member's view. (No confirmations expected: our own failed
    // probes of the suspect cannot settle it either, only its timer.)
    let config = Config { suspicion_confirmations: 0, ..Config::local() };
    let mut now = Instant::from_millis(0);
    let mut a: Node<u32> = Node::new(now, config.clone(), id("a"), 0, 11).unwrap();
    a.assume_alive(now, [(id("b"), 1), (id("c"), 2)]);
    a.handle_packet(now, 1, &forged_suspect("c", 0, "b")).unwrap();
    assert_eq!(a.member(&id("c")).unwrap().state, MemberState::Suspect);
    a.set_link_up(now, false);
    let deadline = now + crate::suspicion::suspicion_bounds(&config, 3).0;
    while now <= deadline {
        now = a.poll_timeout().unwrap();
        a.handle_timeout(now);
        while a.poll_transmit().is_some() {}
    }
    assert_eq!(a.member(&id("c")).unwrap().state, MemberState::Suspect, "deferred while the link is down");
    // Enough other timers for the sweep to run (it only does past four times what is current).
    for _ in 0..200 {
        a.timers.set(now + Duration::from_secs(3_600), super::super::timers::Timer::Gossip);
    }
    a.sweep_timers();
    a.set_link_up(now, true);
    let until = now + Duration::from_secs(30);
    while a.member(&id("c")).is_some_and(|m| m.state == MemberState::Suspect) {
        now = a.poll_timeout().unwrap();
        assert!(now <= until, "c still suspect 30 s after the link came back");
        a.handle_timeout(now);
        while a.poll_transmit().is_some() {}
    }
    assert_eq!(a.member(&id("c")).unwrap().state, MemberState::Dead);
}
