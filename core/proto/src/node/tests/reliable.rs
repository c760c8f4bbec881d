//! Reliable direct messages: acknowledged, retried, delivered at most once, reported when lost.

use super::*;

fn reliable_received(c: &Cluster, i: u32, topic: &str) -> usize {
    c.events(i)
        .iter()
        .filter(|e| matches!(e, Event::Message { topic: t, kind: MessageKind::Direct, .. } if t == topic))
        .count()
}

fn failures(c: &Cluster, i: u32) -> Vec<u64> {
    c.events(i)
        .iter()
        .filter_map(|e| match e {
            Event::SendFailed { id, .. } => Some(*id),
            _ => None,
        })
        .collect()
}

#[test]
fn a_reliable_message_to_a_member_that_died_is_reported_failed_not_silently_dropped() {
    let config = Config::local();
    let mut c = Cluster::formed(3, config.clone());
    c.clear_events();
    c.crash(2);
    let now = c.now;
    let id = c.nodes[0].send_reliable(now, &NodeId::new("c").unwrap(), "job", b"payload").unwrap();
    let bound = config.reliable_timeout * config.reliable_attempts + config.probe_interval;
    let reported = c.advance_until(bound.as_millis() as u64, |c| failures(c, 0) == [id]);
    assert!(reported, "the sender hears its message was lost: {:?}", c.events(0));
    assert_eq!(c.node(0).stats().reliable_failed, 1);
    assert_eq!(c.node(0).stats().reliable_retries, u64::from(config.reliable_attempts - 1));
    assert_eq!(c.node(0).footprint().reliable_pending, 0, "nothing waits any more");
}

#[test]
fn a_reliable_message_whose_first_copy_is_lost_arrives_once_on_a_retry() {
    let mut c = Cluster::formed(2, Config::local());
    c.clear_events();
    let first_copy = Rc::new(Cell::new(true));
    let flag = first_copy.clone();
    c.drop_rule = Some(Box::new(move |_, t: &Transmit<u32>| {
        let is_message = t.reliable && t.kind == TransmitKind::Direct;
        is_message && flag.replace(false)
    }));
    let now = c.now;
    c.nodes[0].send_reliable(now, &id("b"), "job", b"payload").unwrap();
    let arrived = c.advance_until(10_000, |c| reliable_received(c, 1, "job") == 1);
    assert!(arrived);
    c.advance(10_000);
    assert_eq!(reliable_received(&c, 1, "job"), 1, "delivered once");
    assert!(failures(&c, 0).is_empty(), "acknowledged, so not reported lost");
    assert_eq!(c.node(0).stats().reliable_retries, 1);
}

#[test]
fn a_lost_acknowledgement_makes_the_sender_retry_but_the_receiver_delivers_once() {
    let mut c = Cluster::formed(2, Config::local());
    c.clear_events();
    let acks_lost = Rc::new(Cell::new(true));
    let flag = acks_lost.clone();
    c.drop_rule = Some(Box::new(move |from, t: &Transmit<u32>| {
        from == 1 && t.reliable && t.kind == TransmitKind::Ack && flag.get()
    }));
    let now = c.now;
    c.nodes[0].send_reliable(now, &id("b"), "job", b"payload").unwrap();
    let timeout = c.node(0).config().reliable_timeout.as_millis() as u64;
    c.advance(timeout + 100);
    acks_lost.set(false);
    c.advance(3 * timeout);
    assert_eq!(reliable_received(&c, 1, "job"), 1);
    assert!(c.node(1).stats().reliable_duplicates >= 1, "the retry arrived and was recognised");
    assert!(failures(&c, 0).is_empty());
}

#[test]
fn a_replayed_reliable_frame_older_than_the_receivers_memory_is_neither_delivered_nor_acknowledged() {
    let mut c = Cluster::formed(2, Config::local());
    let now = c.now;
    let first = c.nodes[0].send_reliable(now, &id("b"), "job", b"0").unwrap();
    c.collect();
    let at = c.in_flight.iter().position(|(from, t, _)| *from == 0 && t.reliable && t.kind == TransmitKind::Direct);
    let (_, stale, _) = c.in_flight.remove(at.expect("the first frame")).expect("it is there");
    c.in_flight.clear();
    for k in 0..(super::super::reliable::REMEMBERED_IDS + 5) {
        c.nodes[0].send_reliable(now, &id("b"), "job", &k.to_be_bytes()).unwrap();
        c.deliver_all();
    }
    c.clear_events();
    let before = c.node(1).stats().reliable_stale;
    c.nodes[1].handle_packet(now, 0, &stale.bytes).unwrap();
    c.collect();
    assert_eq!(reliable_received(&c, 1, "job"), 0);
    assert_eq!(c.node(1).stats().reliable_stale, before + 1);
    assert!(c.in_flight.iter().all(|(from, _, _)| *from != 1), "no acknowledgement: the sender will report it");
    assert!(first > 0);
}

#[test]
fn a_departed_senders_de_duplication_record_is_forgotten_once_it_is_reaped() {
    // The records were reused only once 4,096 were held: a member that 4,000 passing members had
    // each sent one reliable message kept 4,000 records.
    let config = Config::local();
    let mut c = Cluster::formed(3, config.clone());
    let now = c.now;
    c.nodes[1].send_reliable(now, &id("a"), "job", b"1").unwrap();
    c.nodes[2].send_reliable(now, &id("a"), "job", b"2").unwrap();
    assert!(c.advance_until(10_000, |c| reliable_received(c, 0, "job") == 2));
    assert_eq!(c.node(0).footprint().reliable_senders, 2);
    c.crash(2);
    let horizon = config.reliable_timeout * (config.reliable_attempts + 1) + config.housekeeping_period();
    c.advance(horizon.as_millis() as u64 + 1_000);
    assert_eq!(c.node(0).footprint().reliable_senders, 2, "a member's record stays while it is one");
    // Declared failed within a minute (local preset), then reaped.
    let reaped = config.dead_member_reap_time + Duration::from_secs(60) + horizon;
    assert!(
        c.advance_until(reaped.as_millis() as u64 + 10_000, |c| c.node(0).footprint().reliable_senders == 1),
        "records still held: {}",
        c.node(0).footprint().reliable_senders
    );
    assert!(c.node(0).member(&id("c")).is_none(), "c is reaped");
}

#[test]
fn a_copy_that_arrives_after_its_senders_record_was_forgotten_is_refused_not_delivered_again() {
    // Swarm seed 411310: a sender with a longer retry schedule than ours (another preset) sent a
    // copy after we had forgotten its record, and it was delivered a second time.
    let config = Config::local();
    let mut c = Cluster::formed(3, config.clone());
    let now = c.now;
    c.nodes[2].send_reliable(now, &id("a"), "job", b"once").unwrap();
    c.collect();
    let at = c.in_flight.iter().position(|(from, t, _)| *from == 2 && t.reliable && t.kind == TransmitKind::Direct);
    let (_, copy, _) = c.in_flight.get(at.expect("the frame")).cloned().expect("it is there");
    assert!(c.advance_until(5_000, |c| reliable_received(c, 0, "job") == 1));
    c.crash(2);
    let reaped = config.dead_member_reap_time * 2 + Duration::from_secs(60);
    assert!(
        c.advance_until(reaped.as_millis() as u64, |c| c.node(0).footprint().reliable_senders == 0),
        "the record is forgotten"
    );
    let before = c.node(0).stats().reliable_stale;
    let now = c.now;
    c.nodes[0].handle_packet(now, 2, &copy.bytes).unwrap();
    c.collect();
    assert_eq!(reliable_received(&c, 0, "job"), 1, "delivered once");
    assert_eq!(c.node(0).stats().reliable_stale, before + 1, "refused as too old, so never acknowledged");
}
