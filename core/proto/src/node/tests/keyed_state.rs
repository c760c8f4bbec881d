//! Keyed state: values that expire, values that go with their origin, values joiners get.

use super::*;
use crate::wire::UserBroadcast;

fn expired(c: &Cluster, i: u32, origin: &str, key: &[u8]) -> usize {
    c.count(i, |e| matches!(e, Event::StateExpired { origin: o, key: k, .. } if o.as_str() == origin && k == key))
}

fn got(c: &Cluster, i: u32, from: &str, payload: &[u8]) -> bool {
    c.events(i)
        .iter()
        .any(|e| matches!(e, Event::Message { from: f, payload: p, .. } if f.as_str() == from && p == payload))
}

fn holds(c: &Cluster, i: u32, origin: &str, key: &[u8]) -> bool {
    c.node(i).keyed_state().iter().any(|(o, _, k, _)| o.as_str() == origin && k == key)
}

#[test]
fn a_value_with_a_time_to_live_expires_everywhere_once_unless_it_is_set_again_in_time() {
    let mut c = Cluster::formed(4, Config::local());
    c.clear_events();
    let ttl = Duration::from_secs(3);
    c.nodes[0].broadcast_with_ttl("presence", b"here", b"me", ttl).unwrap();
    c.advance(1_000);
    for i in 1..4u32 {
        assert!(got(&c, i, "a", b"here") && holds(&c, i, "a", b"me"), "node {i} has it");
    }
    assert!(holds(&c, 0, "a", b"me"), "the origin holds its own value");
    c.advance(3_000);
    for i in 0..4u32 {
        assert_eq!(expired(&c, i, "a", b"me"), 1, "node {i}: expired once");
        assert!(!holds(&c, i, "a", b"me"), "node {i}: gone");
    }
    // Refreshed every 2 s, a value with a 3 s life never expires.
    c.clear_events();
    for round in 0..6u8 {
        c.nodes[0].broadcast_with_ttl("presence", &[round], b"me", ttl).unwrap();
        c.advance(2_000);
    }
    for i in 0..4u32 {
        assert_eq!(expired(&c, i, "a", b"me"), 0, "node {i}: refreshed in time");
        assert!(holds(&c, i, "a", b"me"));
    }
    c.advance(4_000);
    assert!((0..4u32).all(|i| expired(&c, i, "a", b"me") == 1), "and once the refreshes stop, it goes");
}

#[test]
fn a_member_that_joins_gets_a_live_value_with_only_what_is_left_of_its_time() {
    let mut c = Cluster::formed(3, Config::local());
    c.nodes[0].broadcast_with_ttl("lease", b"held", b"db", Duration::from_secs(6)).unwrap();
    c.advance(4_000);
    let late = c.add(Config::local());
    let now = c.now;
    c.nodes[late as usize].join(now, &[1]).unwrap();
    c.deliver_all();
    assert!(got(&c, late, "a", b"held"), "the joiner gets the live value with its join");
    let joined_at = c.now;
    assert!(c.advance_until(10_000, |c| expired(c, late, "a", b"db") == 1));
    let lived = c.now.saturating_duration_since(joined_at);
    assert!(lived < Duration::from_millis(3_500), "about 2 s left, not a fresh 6 s: {lived:?}");
}

#[test]
fn the_values_of_a_member_that_leaves_go_with_it_and_a_later_joiner_never_gets_them() {
    let mut c = Cluster::formed(3, Config::local());
    c.nodes[2].broadcast("config", b"v1", Some(b"k")).unwrap();
    c.advance(1_000);
    assert!(holds(&c, 0, "c", b"k") && holds(&c, 1, "c", b"k"));
    let now = c.now;
    c.nodes[2].leave(now);
    c.advance(2_000);
    c.crash(2);
    let config = c.node(0).config().clone();
    c.advance(config.housekeeping_period().as_millis() as u64 + 100);
    assert!(!holds(&c, 0, "c", b"k") && !holds(&c, 1, "c", b"k"), "dropped at housekeeping");
    let late = c.add(Config::local());
    let now = c.now;
    c.nodes[late as usize].join(now, &[0]).unwrap();
    c.advance(3_000);
    assert!(!got(&c, late, "c", b"v1"), "not handed to a joiner");
}

#[test]
fn a_member_that_knows_no_time_to_live_skips_values_that_expire_and_takes_the_rest() {
    // Members of the first release skip `BROADCAST_TTL` as an unknown message type: emulated by
    // turning it into one for node `old`.
    let mut c = Cluster::formed(3, Config::local());
    let old = 2u32;
    c.rewrite = Some(Box::new(move |_, to, bytes| {
        if to != old {
            return bytes.to_vec();
        }
        let mut w = Writer::default();
        begin_packet(&mut w, PROTOCOL_VERSION);
        for m in decode(bytes) {
            match m {
                Message::Broadcast(UserBroadcast { ttl_ms: Some(_), .. }) => {
                    w.u8(200);
                    w.bytes(&m.to_bytes());
                }
                m => m.encode(&mut w),
            }
        }
        w.into_vec()
    }));
    c.clear_events();
    c.nodes[0].broadcast_with_ttl("presence", b"here", b"me", Duration::from_secs(30)).unwrap();
    c.nodes[0].broadcast("config", b"plain", Some(b"k")).unwrap();
    c.advance(12_000);
    assert!(got(&c, 1, "a", b"here"));
    assert!(!got(&c, old, "a", b"here"), "skipped");
    assert!(got(&c, old, "a", b"plain"), "the rest taken");
    assert_eq!(c.node(old).stats().decode_errors, 0);
}
