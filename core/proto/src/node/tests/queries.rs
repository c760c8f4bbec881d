//! Queries (Serf's `query`): who is asked, who answers, what the origin counts.

use super::*;
use crate::node::{Inquiry, QueryId, MAX_PENDING_QUERIES};
use crate::tags::{MemberFilter, Tags};

/// A formed cluster of `roles.len()` members, member `i` tagged `role=roles[i]`.
fn tagged(roles: &[&str]) -> Cluster {
    let mut c = Cluster::formed(roles.len(), Config::local());
    for (i, role) in roles.iter().enumerate() {
        let tags = Tags::from_pairs([("role", *role)]).unwrap();
        c.nodes[i].set_metadata(&tags.to_metadata()).unwrap();
    }
    c.advance(2_000);
    c.clear_events();
    c
}

/// The queries member `i` was handed.
fn inquiries(c: &Cluster, i: u32) -> Vec<Inquiry<u32>> {
    c.events(i)
        .iter()
        .filter_map(|e| match e {
            Event::Query { inquiry, .. } => Some(inquiry.clone()),
            _ => None,
        })
        .collect()
}

/// Every member answers every query it is handed, once, with its own name.
fn answer_all(c: &mut Cluster, answered: &mut HashSet<(u32, QueryId)>) {
    for i in 0..c.nodes.len() as u32 {
        for inquiry in inquiries(c, i) {
            if answered.insert((i, inquiry.id)) {
                let now = c.now;
                let name = String::from(c.node(i).local_id().as_str());
                c.nodes[i as usize].respond(now, &inquiry, name.as_bytes()).unwrap();
            }
        }
    }
}

fn names(events: &[Event<u32>], pick: impl Fn(&Event<u32>) -> Option<&NodeId>) -> Vec<String> {
    let mut out: Vec<String> = events.iter().filter_map(|e| pick(e).map(|n| String::from(n.as_str()))).collect();
    out.sort();
    out
}

#[test]
fn a_query_reaches_the_members_its_filter_selects_and_each_acks_and_responds_once() {
    let mut c = tagged(&["web", "web", "web", "db", "db"]);
    let now = c.now;
    let filter = MemberFilter::new().tag("role", "web");
    let q = c.nodes[0].query(now, "version?", b"", &filter, Duration::from_secs(3)).unwrap();
    assert_eq!(q.id, 0, "the first query of a life is number 0");
    // Members answer as the queries reach them, in steps of 100 ms.
    let mut answered = HashSet::new();
    for _ in 0..60 {
        c.advance(100);
        answer_all(&mut c, &mut answered);
    }
    let origin = c.events(0).to_vec();
    let acks = names(&origin, |e| match e {
        Event::QueryAck { from, .. } => Some(from),
        _ => None,
    });
    let responses = names(&origin, |e| match e {
        Event::QueryResponse { from, .. } => Some(from),
        _ => None,
    });
    assert_eq!(acks, ["a", "b", "c"], "the three web members, the origin included, ack");
    assert_eq!(responses, ["a", "b", "c"]);
    for e in &origin {
        if let Event::QueryResponse { from, payload, .. } = e {
            assert_eq!(payload, from.as_str().as_bytes(), "each response is its member's");
        }
    }
    assert!(origin.iter().any(|e| matches!(e, Event::QueryDone { acks: 3, responses: 3, .. })));
    for db in [3u32, 4] {
        assert!(inquiries(&c, db).is_empty(), "node {db} is not selected");
    }
    for web in [1u32, 2] {
        assert_eq!(inquiries(&c, web).len(), 1, "node {web} is handed the query once");
        assert_eq!(c.node(web).stats().queries_received, 1);
    }
    assert_eq!(c.node(0).stats().query_responses_received, 3);
    assert_eq!(c.node(0).stats().query_answers_dropped, 0);
}

#[test]
fn an_answer_after_the_deadline_or_a_second_one_is_refused_and_the_origin_drops_late_ones() {
    let mut c = tagged(&["web", "web", "db"]);
    let now = c.now;
    let filter = MemberFilter::new().name("b");
    c.nodes[0].query(now, "t", b"", &filter, Duration::from_secs(2)).unwrap();
    assert!(c.advance_until(5_000, |c| !inquiries(c, 1).is_empty()));
    let inquiry = inquiries(&c, 1).remove(0);
    let now = c.now;
    c.nodes[1].respond(now, &inquiry, b"first").unwrap();
    assert_eq!(c.nodes[1].respond(now, &inquiry, b"second"), Err(CommandError::QueryClosed));
    c.advance(3_000);
    assert!(c.events(0).iter().any(|e| matches!(e, Event::QueryDone { acks: 1, responses: 1, .. })));

    // A second query, answered too late: the member refuses it past its own timeout, and an
    // answer that reaches the origin after the deadline is dropped and counted.
    let now = c.now;
    c.nodes[0].query(now, "t", b"", &filter, Duration::from_secs(2)).unwrap();
    assert!(c.advance_until(5_000, |c| inquiries(c, 1).len() == 2));
    let inquiry = inquiries(&c, 1).remove(1);
    c.advance(2_500);
    let now = c.now;
    assert_eq!(c.nodes[1].respond(now, &inquiry, b"late"), Err(CommandError::QueryClosed));
    let dropped_before = c.node(0).stats().query_answers_dropped;
    let mut w = Writer::default();
    begin_packet(&mut w, PROTOCOL_VERSION);
    Message::<u32>::QueryResponse {
        epoch: inquiry.id.epoch,
        id: inquiry.id.id,
        from: id("b"),
        ack: false,
        payload: vec![],
    }
    .encode(&mut w);
    c.nodes[0].handle_packet(now, 1, &w.into_vec()).unwrap();
    assert_eq!(c.node(0).stats().query_answers_dropped, dropped_before + 1);
}

#[test]
fn a_query_naming_another_address_for_its_origin_is_relayed_but_never_answered() {
    // Forged: `a`'s name, a bystander's address (99). Answering would make every member selected
    // send the bystander an ack: a reflection attack.
    let mut c = tagged(&["web", "web", "web"]);
    let forged = crate::wire::Query {
        origin: id("a"),
        origin_addr: 99u32,
        epoch: 7,
        id: 1,
        timeout_ms: 5_000,
        want_ack: true,
        name: None,
        tags: vec![],
        topic: "t".into(),
        payload: vec![],
    };
    let mut w = Writer::default();
    begin_packet(&mut w, PROTOCOL_VERSION);
    Message::Query(forged).encode(&mut w);
    let now = c.now;
    let sent_before = c.log.len();
    c.nodes[1].handle_packet(now, 0, &w.into_vec()).unwrap();
    c.advance(3_000);
    assert!(c.log[sent_before..].iter().all(|s| s.to != 99), "nothing goes to the bystander");
    assert_eq!(c.node(1).stats().queries_refused, 1);
    assert!(inquiries(&c, 1).is_empty());
    assert_eq!(c.node(2).stats().queries_refused, 1, "relayed: node 2 got it too, and refused it too");
}

#[test]
fn a_query_that_gossip_brings_again_is_handed_over_once() {
    let mut c = tagged(&["web", "web", "web", "web", "web", "web"]);
    let now = c.now;
    c.nodes[0].query(now, "t", b"", &MemberFilter::new(), Duration::from_secs(5)).unwrap();
    c.advance(8_000);
    for i in 1..6u32 {
        assert_eq!(inquiries(&c, i).len(), 1, "node {i}");
    }
    assert_eq!(inquiries(&c, 0).len(), 1, "the origin, selected by an empty filter, once");
}

#[test]
fn queries_are_bounded_in_number_and_in_filter_size() {
    let mut c = Cluster::formed(2, Config::local());
    let now = c.now;
    let mut filter = MemberFilter::new();
    for i in 0..=crate::wire::MAX_QUERY_TAGS {
        filter = filter.tag(&format!("k{i}"), "*");
    }
    assert_eq!(c.nodes[0].query(now, "t", b"", &filter, Duration::from_secs(1)), Err(CommandError::FilterTooLarge));
    let long = MemberFilter::new().name(&"x".repeat(256));
    assert_eq!(c.nodes[0].query(now, "t", b"", &long, Duration::from_secs(1)), Err(CommandError::FilterTooLarge));
    for _ in 0..MAX_PENDING_QUERIES {
        c.nodes[0].query(now, "t", b"", &MemberFilter::new().name("b"), Duration::from_secs(1)).unwrap();
    }
    let refused = c.nodes[0].query(now, "t", b"", &MemberFilter::new(), Duration::from_secs(1));
    assert_eq!(refused, Err(CommandError::TooManyQueries));
    c.advance(1_500);
    let done = c.count(0, |e| matches!(e, Event::QueryDone { .. }));
    assert_eq!(done, MAX_PENDING_QUERIES, "every one closes at its deadline");
    c.nodes[0].query(c.now, "t", b"", &MemberFilter::new(), Duration::from_secs(1)).unwrap();
}

#[test]
fn a_member_without_queries_skips_them_and_the_others_still_get_them_through_one_another() {
    let mut c = tagged(&["web", "web", "web", "web"]);
    let old = 3u32;
    c.rewrite = Some(Box::new(move |_, to, bytes| {
        let mut w = Writer::default();
        begin_packet(&mut w, PROTOCOL_VERSION);
        for m in decode(bytes) {
            if to != old || !matches!(m, Message::Query(_) | Message::QueryResponse { .. }) {
                m.encode(&mut w);
            } else {
                // What the old member's decoder sees: a message of a type it does not know.
                w.u8(200);
                w.bytes(&m.to_bytes());
            }
        }
        w.into_vec()
    }));
    let now = c.now;
    c.nodes[0].query(now, "t", b"", &MemberFilter::new(), Duration::from_secs(5)).unwrap();
    c.advance(8_000);
    assert!(inquiries(&c, old).is_empty());
    assert!(c.node(old).stats().unknown_messages_skipped > 0, "it skipped what it does not know");
    for i in 1..3u32 {
        assert_eq!(inquiries(&c, i).len(), 1, "node {i}");
    }
    assert!(c.events(0).iter().any(|e| matches!(e, Event::QueryDone { acks: 3, .. })), "a, b and c ack");
    for i in 0..4u32 {
        assert_eq!(c.node(i).stats().suspicions_raised, 0, "node {i}");
    }
}

#[test]
fn answers_in_names_the_origin_does_not_know_are_dropped_so_forged_ones_cannot_grow_a_query() {
    let mut c = tagged(&["web", "web"]);
    let now = c.now;
    let q = c.nodes[0].query(now, "t", b"", &MemberFilter::new().name("nobody"), Duration::from_secs(5)).unwrap();
    let dropped_before = c.node(0).stats().query_answers_dropped;
    for i in 0..100u32 {
        let mut w = Writer::default();
        begin_packet(&mut w, PROTOCOL_VERSION);
        let from = id(&format!("forged-{i}"));
        Message::<u32>::QueryResponse { epoch: q.epoch, id: q.id, from, ack: i % 2 == 0, payload: vec![0; 100] }
            .encode(&mut w);
        c.nodes[0].handle_packet(now, 9, &w.into_vec()).unwrap();
    }
    assert_eq!(c.node(0).stats().query_answers_dropped - dropped_before, 100);
    c.collect();
    assert!(!c.events(0).iter().any(|e| matches!(e, Event::QueryAck { .. } | Event::QueryResponse { .. })));
}

#[test]
fn the_default_query_timeout_is_sixteen_gossip_intervals_for_each_decimal_digit_of_the_cluster_size() {
    let gossip = Config::local().gossip_interval;
    for (members, digits) in [(1, 1), (9, 1), (10, 2), (12, 2)] {
        let c = Cluster::formed(members, Config::local());
        assert_eq!(c.node(0).cluster_size(), members);
        assert_eq!(c.node(0).default_query_timeout(), gossip * (16 * digits), "{members} members");
    }
}
