//! Tests of the packet trace ([`Simulation::set_tracing`]) that the dashboard animates: every packet
//! is recorded once with its kind, endpoints and fate, nothing is recorded while tracing is off, and
//! tracing does not change the run.

use core::time::Duration;

use super::{LinkModel, SimConfig, Simulation};
use shoal_core::node::TransmitKind;
use shoal_core::time::Instant;

fn small(seed: u64) -> SimConfig {
    SimConfig::lan(8, seed)
}

#[test]
fn nothing_is_traced_while_tracing_is_off() {
    let mut sim = Simulation::new(small(1));
    sim.run_for(Duration::from_secs(3));
    assert!(sim.drain_trace().is_empty());
}

#[test]
fn every_sent_packet_is_traced_once_with_its_fate() {
    let mut sim = Simulation::new(small(2));
    sim.set_tracing(true);
    sim.run_for(Duration::from_secs(3));
    let trace = sim.drain_trace();
    assert_eq!(trace.len() as u64, sim.network().stats().sent);
    assert!(trace.iter().any(|t| t.kind == TransmitKind::Ping));
    assert!(trace.iter().any(|t| t.kind == TransmitKind::Ack));
    for t in &trace {
        assert_ne!(t.from, t.to);
        let arrives = t.arrives.expect("a lossless link delivers everything");
        assert!(arrives > t.sent && arrives <= t.sent + Duration::from_millis(4), "{t:?}");
    }
    assert!(sim.drain_trace().is_empty(), "drain empties the trace");
}

#[test]
fn lost_and_partitioned_packets_are_traced_without_arrival() {
    let mut config = small(3);
    config.link = LinkModel { loss: 0.3, ..LinkModel::LAN };
    let mut sim = Simulation::new(config);
    sim.set_tracing(true);
    sim.partition(alloc::vec![0, 0, 0, 0, 1, 1, 1, 1]);
    sim.run_for(Duration::from_secs(3));
    let trace = sim.drain_trace();
    let lost = trace.iter().filter(|t| t.arrives.is_none()).count() as u64;
    let stats = sim.network().stats();
    assert!(lost > 0);
    assert_eq!(lost, stats.lost + stats.partitioned);
    assert!(trace.iter().filter(|t| (t.from < 4) != (t.to < 4)).all(|t| t.arrives.is_none()));
}

#[test]
fn a_suspected_member_brings_ping_req_traffic_into_the_trace() {
    let mut sim = Simulation::new(small(4));
    sim.run_for(Duration::from_secs(1));
    sim.set_tracing(true);
    sim.crash(5);
    sim.run_for(Duration::from_secs(4));
    let trace = sim.drain_trace();
    assert!(trace.iter().any(|t| t.kind == TransmitKind::PingReq));
    assert!(trace.iter().all(|t| t.sent >= Instant::from_millis(1_000)));
    assert!(trace.iter().filter(|t| t.to == 5).all(|t| t.from != 5));
}

#[test]
fn tracing_does_not_change_the_run() {
    let run = |trace: bool| {
        let mut sim = Simulation::new(small(5));
        sim.set_tracing(trace);
        sim.crash(2);
        sim.run_for(Duration::from_secs(10));
        (sim.network().stats(), sim.recorder().detections().to_vec())
    };
    assert_eq!(run(true), run(false));
}
