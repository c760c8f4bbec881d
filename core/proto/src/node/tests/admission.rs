//! The admission policy: refused members are never added, refused joins fail, refused records
//! take a member out.

use super::*;
use crate::tags::Tags;

fn tagged(c: &mut Cluster, name: &str, cluster: &str) -> u32 {
    let i = c.add_named(name, Config::local());
    let meta = Tags::from_pairs([("cluster", cluster)]).unwrap().to_metadata();
    c.nodes[i as usize].set_metadata(&meta).unwrap();
    c.nodes[i as usize].set_admission(|m: &crate::Candidate<'_, u32>| {
        m.meta.and_then(|meta| Tags::from_metadata(meta).ok()).is_some_and(|t| t.get("cluster") == Some("blue"))
    });
    i
}

fn knows(c: &Cluster, i: u32, name: &str) -> bool {
    c.node(i).member(&id(name)).is_some()
}

#[test]
fn a_member_the_policy_refuses_is_never_added_anywhere_and_its_join_fails() {
    let mut c = Cluster::new();
    let a = tagged(&mut c, "a", "blue");
    let b = tagged(&mut c, "b", "blue");
    let red = tagged(&mut c, "red", "red");
    let now = c.now;
    c.nodes[b as usize].join(now, &[a]).unwrap();
    c.nodes[red as usize].join(now, &[a, b]).unwrap();
    c.advance(15_000);

    assert!(knows(&c, a, "b") && knows(&c, b, "a"), "blue members admit each other");
    assert!(!knows(&c, a, "red") && !knows(&c, b, "red"), "nobody adds the red member");
    assert!(c.count(red, |e| matches!(e, Event::JoinSucceeded { .. })) == 0, "its join never succeeds");
    assert!(c.count(red, |e| matches!(e, Event::JoinFailed { .. })) >= 1, "it is told no seed answered");
    assert_eq!(c.node(red).cluster_size(), 1, "and it took nobody from the seeds");
    assert!(c.node(a).stats().members_refused > 0 && c.node(b).stats().members_refused > 0, "refusals counted");
}

#[test]
fn a_member_whose_new_record_the_policy_refuses_is_declared_failed_by_every_member_that_runs_it() {
    let mut c = Cluster::new();
    let a = tagged(&mut c, "a", "blue");
    let b = tagged(&mut c, "b", "blue");
    let d = tagged(&mut c, "d", "blue");
    let now = c.now;
    c.nodes[b as usize].join(now, &[a]).unwrap();
    c.nodes[d as usize].join(now, &[a]).unwrap();
    assert!(c.advance_until(15_000, |c| (0..3).all(|i| c.node(i).cluster_size() == 3)));
    c.clear_events();

    // d moves to another cluster's tag: a and b take it out, and nothing brings it back.
    let meta = Tags::from_pairs([("cluster", "red")]).unwrap().to_metadata();
    c.nodes[d as usize].set_metadata(&meta).unwrap();
    let out = c.advance_until(10_000, |c| {
        [a, b].iter().all(|i| c.node(*i).member(&id("d")).is_some_and(|m| !m.state.is_live()))
    });
    assert!(out, "a and b no longer count d");
    c.advance(20_000);
    for i in [a, b] {
        assert!(c.node(i).member(&id("d")).is_none_or(|m| !m.state.is_live()), "node {i} keeps d out");
        let failed = c.count(i, |e| matches!(e, Event::Failed { id: who, .. } if *who == id("d")));
        assert_eq!(failed, 1, "node {i} reports it once");
        assert!(c.node(i).member(&id(if i == a { "b" } else { "a" })).is_some_and(|m| m.state == MemberState::Alive));
    }
}

// ----- Address conflicts -------------------------------------------------------------------------

/// `c` crashes and comes back as a new process at a new address (node 3), as a rescheduled
/// container does, before anyone noticed the crash. Returns the cluster with the new `c` joined.
fn restarted_elsewhere(policy_at_a: bool) -> Cluster {
    let mut c = Cluster::formed(3, Config::local());
    if policy_at_a {
        c.nodes[0].set_conflict_policy(|_| true);
    }
    c.clear_events();
    c.crash(2);
    let new_c = c.add_named("c", Config::local());
    let now = c.now;
    c.nodes[new_c as usize].join(now, &[0]).unwrap();
    c.deliver_all();
    c
}

#[test]
fn without_a_conflict_policy_a_restarted_member_waits_for_its_old_address_to_be_declared_failed() {
    let mut c = restarted_elsewhere(false);
    let who = id("c");
    c.advance(500);
    assert_eq!(c.node(0).member(&who).map(|m| m.addr), Some(2), "still held at its old address");
    assert!(c.events(0).iter().any(|e| matches!(e, Event::AddressConflict { claimed: 3, .. })));
    assert!(c.advance_until(30_000, |c| c.node(0).member(&who).is_some_and(|m| m.addr == 3 && m.state.is_live())));
    assert!(c.events(0).iter().any(|e| matches!(e, Event::Failed { id, .. } if *id == who)), "after a failure");
}

#[test]
fn a_conflict_policy_that_takes_newer_claims_moves_a_restarted_member_to_its_new_address_at_once() {
    let mut c = restarted_elsewhere(true);
    let who = id("c");
    // The new process learns the incarnation it must beat, refutes from its new address, and `a`
    // takes that claim: no failure to wait for.
    assert!(c.advance_until(2_000, |c| c.node(0).member(&who).is_some_and(|m| m.addr == 3 && m.state.is_live())));
    assert!(c.node(0).stats().address_conflicts_taken >= 1);
    assert!(!c.events(0).iter().any(|e| matches!(e, Event::Failed { id, .. } if *id == who)), "never failed at a");
    assert!(c.events(0).iter().any(|e| matches!(e, Event::Updated(m) if m.id == who && m.addr == 3)));
}

#[test]
fn a_conflict_policy_is_never_offered_a_claim_older_than_the_record_held_nor_our_own_name() {
    let mut c = Cluster::formed(2, Config::local());
    let offered = std::sync::Arc::new(core::sync::atomic::AtomicU32::new(0));
    let seen = offered.clone();
    c.nodes[0].set_conflict_policy(move |_| {
        seen.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
        true
    });
    let held = c.node(0).member(&id("b")).unwrap().incarnation;
    let claim = |name: &str, incarnation: u32| {
        let mut w = Writer::default();
        begin_packet(&mut w, PROTOCOL_VERSION);
        Message::Alive(Alive {
            id: id(name),
            addr: 9u32,
            incarnation,
            meta: MetaField::Included(Vec::new()),
            min_version: 1,
            max_version: 1,
        })
        .encode(&mut w);
        w.into_vec()
    };
    let now = c.now;
    c.nodes[0].handle_packet(now, 9, &claim("b", held)).unwrap();
    assert_eq!(offered.load(core::sync::atomic::Ordering::Relaxed), 0, "the same incarnation is no newer");
    c.nodes[0].handle_packet(now, 9, &claim("a", 1_000)).unwrap();
    assert_eq!(offered.load(core::sync::atomic::Ordering::Relaxed), 0, "our own name is refuted, never offered");
    assert!(c.node(0).incarnation() > 0, "it refuted");
    c.nodes[0].handle_packet(now, 9, &claim("b", held + 1)).unwrap();
    assert_eq!(offered.load(core::sync::atomic::Ordering::Relaxed), 1);
    assert_eq!(c.node(0).member(&id("b")).map(|m| m.addr), Some(9), "taken");
}
