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
