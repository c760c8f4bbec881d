//! Encryption, keys, labels and replays, at the level of whole clusters and single packets.

use std::time::Duration;

use shoal_core::{
    Config, Event, Instant, Keyring, MemberState, Node, NodeId, PacketError, SecurityError, SecurityMode,
};
use shoal_sim::{SimConfig, Simulation};

const KEY_A: [u8; 32] = [0xA1; 32];
const KEY_B: [u8; 32] = [0xB2; 32];

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn encrypted_sim(nodes: usize, seed: u64) -> Simulation {
    let node = {
        let mut c = Config::local();
        c.security = SecurityMode::Encrypted;
        c.label = "prod".into();
        c
    };
    Simulation::new(SimConfig { node, keyring: Some(Keyring::new(KEY_A)), ..SimConfig::lan(nodes, seed) })
}

fn unauthenticated(sim: &Simulation) -> u64 {
    (0..sim.len()).filter_map(|i| sim.node(i)).map(|n| n.security_stats().unauthenticated).sum()
}

#[test]
fn an_encrypted_cluster_forms_and_detects_a_crash() {
    let mut sim = encrypted_sim(10, 1);
    sim.run_for(secs(2));
    assert!(sim.node(0).unwrap().security_stats().decrypted > 10);
    sim.crash(3);
    assert!(sim.run_until_condition(secs(20), |s| s.converged()).is_some());
    assert_eq!(sim.recorder().false_positives(), 0);
}

#[test]
fn keys_rotate_across_a_live_cluster_without_losing_membership() {
    let mut sim = encrypted_sim(10, 2);
    sim.run_for(secs(2));
    // Each step reaches the members one at a time, with traffic flowing in between.
    for i in 0..10 {
        sim.with_node(i, |n, _| n.keyring_mut().unwrap().install(KEY_B));
        sim.run_for(Duration::from_millis(300));
    }
    for i in 0..10 {
        sim.with_node(i, |n, _| n.keyring_mut().unwrap().use_key(KEY_B).unwrap());
        sim.run_for(Duration::from_millis(300));
    }
    for i in 0..10 {
        sim.with_node(i, |n, _| n.keyring_mut().unwrap().remove(KEY_A).unwrap());
        sim.run_for(Duration::from_millis(300));
    }
    sim.run_for(secs(5));
    assert_eq!(unauthenticated(&sim), 0, "no member ever received a packet it could not read");
    assert_eq!(sim.recorder().false_positives(), 0);
    assert_eq!(sim.recorder().suspicions_of_live(), 0);
    assert!(sim.converged());
    assert!((0..10).all(|i| sim.node(i).unwrap().members().all(|m| m.state == MemberState::Alive)));
}

#[test]
fn encryption_is_turned_on_in_a_running_cluster_without_downtime() {
    let mut sim = Simulation::new(SimConfig { node: Config::local(), ..SimConfig::lan(8, 3) });
    sim.run_for(secs(2));
    let steps = [
        SecurityMode::Transition { send_encrypted: false },
        SecurityMode::Transition { send_encrypted: true },
        SecurityMode::Encrypted,
    ];
    for (step, mode) in steps.into_iter().enumerate() {
        for i in 0..8 {
            sim.with_node(i, |n, _| {
                if step == 0 {
                    n.set_keyring(Keyring::new(KEY_A), [i as u8; 32]);
                }
                n.set_security_mode(mode);
            });
            sim.run_for(Duration::from_millis(250));
        }
    }
    sim.run_for(secs(5));
    assert_eq!(sim.recorder().false_positives(), 0);
    assert_eq!(sim.recorder().suspicions_of_live(), 0, "no member was ever unreachable");
    assert!(sim.converged());
    let stats = sim.node(0).unwrap().security_stats();
    assert!(stats.decrypted > 0 && stats.plaintext_rejected == 0);
    // Now plaintext is refused.
    let plain = sim.with_node(0, |n, now| n.handle_packet(now, 1, &[1, 2, 1, 7])).unwrap();
    assert_eq!(plain, Err(PacketError::Security(SecurityError::PlaintextRejected)));
}

fn node(name: &str, addr: u32, label: &str, key: [u8; 32]) -> Node<u32> {
    let config = {
        let mut c = Config::local();
        c.security = SecurityMode::Encrypted;
        c.label = label.into();
        c
    };
    let mut n = Node::new(Instant::ZERO, config, NodeId::new(name).unwrap(), addr, u64::from(addr)).unwrap();
    n.set_keyring(Keyring::new(key), [addr as u8; 32]);
    n
}

/// Delivers every pending transmit of `from` to `to`, returning what `to` said about each.
fn deliver(from: &mut Node<u32>, to: &mut Node<u32>, now: Instant) -> Vec<Result<(), PacketError>> {
    let mut results = Vec::new();
    while let Some(t) = from.poll_transmit() {
        if t.to == *to.local_addr() {
            results.push(to.handle_packet(now, *from.local_addr(), &t.bytes));
        }
    }
    results
}

#[test]
fn members_with_another_label_or_key_never_join() {
    for (label, key) in [("staging", KEY_A), ("prod", KEY_B)] {
        let now = Instant::ZERO;
        let mut a = node("a", 1, "prod", KEY_A);
        let mut b = node("b", 2, label, key);
        b.join(now, &[1]).unwrap();
        let results = deliver(&mut b, &mut a, now);
        assert_eq!(results, vec![Err(PacketError::Security(SecurityError::Unauthenticated))]);
        assert_eq!(a.members().count(), 0);
        assert_eq!(a.security_stats().unauthenticated, 1);
        assert!(a.poll_transmit().is_none(), "nothing answered");
    }
}

#[test]
fn hostile_packets_are_dropped_counted_and_change_nothing() {
    let now = Instant::ZERO;
    let mut a = node("a", 1, "prod", KEY_A);
    let mut b = node("b", 2, "prod", KEY_A);
    b.join(now, &[1]).unwrap();
    let join = b.poll_transmit().unwrap().bytes;
    assert_eq!(a.handle_packet(now, 2, &join), Ok(()));
    while a.poll_transmit().is_some() {}
    while a.poll_event().is_some() {}
    let members_before: Vec<_> = a.members().cloned().collect();
    let incarnation = a.incarnation();

    let mut wrong_key = node("b", 2, "prod", KEY_B);
    wrong_key.send_to_addr(now, 1, "t", b"x", false).unwrap();
    let forged = wrong_key.poll_transmit().map(|t| t.bytes);
    let mut cases: Vec<(&str, Vec<u8>, SecurityError)> = vec![
        ("replayed", join.clone(), SecurityError::Replayed),
        ("truncated", join[..20].to_vec(), SecurityError::Truncated),
        ("plaintext", vec![1, 2, 1, 7], SecurityError::PlaintextRejected),
    ];
    if let Some(f) = forged {
        cases.push(("wrong key", f, SecurityError::Unauthenticated));
    }
    for bit in (8..join.len() * 8).step_by(7) {
        let mut flipped = join.clone();
        flipped[bit / 8] ^= 1 << (bit % 8);
        cases.push(("bit flip", flipped, SecurityError::Unauthenticated));
    }
    for (what, bytes, expected) in &cases {
        assert_eq!(a.handle_packet(now, 2, bytes), Err(PacketError::Security(*expected)), "{what}");
    }
    let oversized = vec![0xE1; a.config().max_reliable_size + 64];
    assert!(matches!(a.handle_packet(now, 2, &oversized), Err(PacketError::Oversized(_))));
    assert!(a.poll_transmit().is_none(), "no answer to anything hostile");
    assert!(a.poll_event().is_none(), "no event from anything hostile");
    assert_eq!(a.members().cloned().collect::<Vec<_>>(), members_before);
    assert_eq!(a.incarnation(), incarnation);
    let s = a.security_stats();
    assert_eq!(s.replays, 1);
    assert_eq!(s.truncated, 1);
    assert_eq!(s.plaintext_rejected, 1);
    assert!(s.unauthenticated >= 1);
}

#[test]
fn a_replayed_direct_message_is_not_delivered_twice() {
    let now = Instant::ZERO;
    let mut a = node("a", 1, "prod", KEY_A);
    let mut b = node("b", 2, "prod", KEY_A);
    b.send_to_addr(now, 1, "pay", b"$100", false).unwrap();
    let packet = b.poll_transmit().unwrap().bytes;
    assert_eq!(a.handle_packet(now, 2, &packet), Ok(()));
    assert!(matches!(a.poll_event(), Some(Event::Message { .. })));
    // Direct messages have no de-duplication of their own: only the replay window stops this.
    assert_eq!(a.handle_packet(now, 2, &packet), Err(PacketError::Security(SecurityError::Replayed)));
    assert!(a.poll_event().is_none());
}

#[test]
fn a_reliable_message_that_arrives_after_thousands_of_newer_datagrams_is_delivered() {
    let now = Instant::ZERO;
    let mut a = node("a", 1, "prod", KEY_A);
    let mut b = node("b", 2, "prod", KEY_A);
    // The reliable frame waits behind a TCP connect while the datagrams sealed after it go out.
    a.send_to_addr(now, 2, "order", b"reliable", true).unwrap();
    let frame = a.poll_transmit().unwrap();
    assert!(frame.reliable);
    for i in 0..2_000u32 {
        a.send_to_addr(now, 2, "tick", &i.to_be_bytes(), false).unwrap();
    }
    let datagrams = deliver(&mut a, &mut b, now);
    assert_eq!(datagrams.len(), 2_000);
    assert!(datagrams.iter().all(Result::is_ok));
    while b.poll_event().is_some() {}
    assert_eq!(b.handle_packet(now, 1, &frame.bytes), Ok(()));
    let delivered = std::iter::from_fn(|| b.poll_event())
        .any(|e| matches!(e, Event::Message { topic, payload, .. } if topic == "order" && payload == b"reliable"));
    assert!(delivered, "the reliable message reached the application");
    assert_eq!(b.handle_packet(now, 1, &frame.bytes), Err(PacketError::Security(SecurityError::Replayed)));
}
