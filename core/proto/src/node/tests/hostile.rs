//! Hostile senders: requests that would make a member work or send for free are bounded and
//! counted.

use super::*;

#[test]
fn a_flood_of_record_requests_from_one_address_is_answered_once_per_probe_interval_and_counted() {
    // A `MetaRequest` is a few bytes; its answer carries our record, metadata and all. Repeated
    // at will (or with a forged source), it would make us send our record as fast as it arrives.
    let config = Config::local();
    let mut c = Cluster::formed(2, config.clone());
    let meta = vec![b'm'; 1_000];
    c.nodes[0].set_metadata(&meta).unwrap();
    c.deliver_all();
    let request = |from: &str| {
        let mut w = Writer::default();
        begin_packet(&mut w, PROTOCOL_VERSION);
        Message::<u32>::MetaRequest { from: id(from) }.encode(&mut w);
        w.into_vec()
    };
    let answers = |c: &mut Cluster, to: u32| {
        let mut n = 0;
        while let Some(t) = c.nodes[0].poll_transmit() {
            n += usize::from(t.to == to && t.kind == TransmitKind::PushPull);
        }
        n
    };
    let refused_before = c.node(0).stats().meta_requests_refused;
    let now = c.now;
    for _ in 0..100 {
        c.nodes[0].handle_packet(now, 7, &request("mallory")).unwrap();
    }
    assert_eq!(answers(&mut c, 7), 1, "one answer per probe interval to one address");
    assert_eq!(c.node(0).stats().meta_requests_refused - refused_before, 99, "every refusal counted");
    // Another address is answered; the first one again after a probe interval.
    c.nodes[0].handle_packet(now, 8, &request("other")).unwrap();
    assert_eq!(answers(&mut c, 8), 1);
    let later = now + config.probe_interval;
    c.nodes[0].handle_packet(later, 7, &request("mallory")).unwrap();
    assert_eq!(answers(&mut c, 7), 1);
}

#[test]
fn a_flood_of_indirect_probe_requests_is_served_up_to_a_bound_and_the_rest_are_refused_and_counted() {
    // Each request makes us ping a target and remember the requester for two probe intervals: a
    // sender repeating them at will would make us hold that state without end.
    let mut c = Cluster::formed(3, Config::local());
    let flood = 5_000u32;
    for i in 0..flood {
        let mut w = Writer::default();
        begin_packet(&mut w, PROTOCOL_VERSION);
        Message::<u32>::PingReq { seq: i, target: id(&name_of(2)), target_addr: 2, want_nack: true }.encode(&mut w);
        let now = c.now;
        c.nodes[0].handle_packet(now, 1, &w.into_vec()).unwrap();
    }
    let bound = crate::node::probe::max_indirect_probes(2);
    let stats = c.node(0).stats();
    assert_eq!(c.node(0).footprint().indirect_probes, bound, "held at the bound");
    assert_eq!(stats.ping_reqs_served as usize, bound);
    assert_eq!(stats.ping_reqs_refused as usize, flood as usize - bound, "every refusal counted");
    // Served ones expire on schedule, and requests are served again.
    c.advance(c.node(0).config().probe_interval.as_millis() as u64 * 3);
    assert_eq!(c.node(0).footprint().indirect_probes, 0);
}
