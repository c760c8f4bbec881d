//! Native tests of the page API (the same code runs in wasm).

use super::*;

fn world(nodes: u32) -> SimWorld {
    SimWorld::new(nodes, 7.0, "lan", 20, 10)
}

#[test]
fn a_fresh_world_shows_every_node_alive_and_up() {
    let mut w = world(50);
    w.advance(500.0);
    assert_eq!(w.states(), vec![view::ALIVE; 50]);
    assert_eq!(w.truth(), vec![0; 50]);
    assert_eq!(w.agreement(), 1.0);
}

#[test]
fn messages_come_as_five_numbers_with_known_kinds_and_arrivals_after_sending() {
    let mut w = world(20);
    w.advance(2_000.0);
    let m = w.take_messages();
    assert!(!m.is_empty() && m.len() % 5 == 0);
    for row in m.chunks(5) {
        assert!(row[1] >= row[0] + 20.0 && row[1] <= row[0] + 30.0, "{row:?}");
        assert!(row[2] < 20.0 && row[3] < 20.0 && (row[4] as usize) < KIND_NAMES.len());
    }
    assert!(w.take_messages().is_empty());
}

#[test]
fn full_loss_marks_every_message_lost() {
    let mut w = world(10);
    w.set_loss(1.0);
    w.advance(1_500.0);
    let m = w.take_messages();
    assert!(!m.is_empty());
    assert!(m.chunks(5).all(|row| row[1] < 0.0));
}

#[test]
fn a_killed_node_turns_suspect_then_failed_and_is_detected() {
    let mut w = world(40);
    w.advance(1_000.0);
    w.kill(3);
    assert_eq!(w.truth()[3], 1);
    let mut seen_suspect = false;
    for _ in 0..300 {
        w.advance(50.0);
        seen_suspect |= w.states()[3] == view::SUSPECT;
        if w.states()[3] == view::FAILED {
            break;
        }
    }
    assert!(seen_suspect, "suspect before failed");
    assert_eq!(w.states()[3], view::FAILED);
    let d = w.detections();
    assert_eq!(d.len(), 5);
    assert_eq!(d[0], 3.0);
    assert!(d[2] > 0.0 && d[3] >= d[2]);
    w.advance(10_000.0);
    assert_eq!(w.spread(3), vec![1.0, 1.0]);
    assert_eq!(w.spread(4), vec![0.0, 0.0]);
}

#[test]
fn a_restarted_node_is_alive_again_for_everyone() {
    let mut w = world(30);
    w.kill(4);
    w.advance(15_000.0);
    assert_eq!(w.states()[4], view::FAILED);
    assert_eq!(w.restart_all(), 1);
    w.advance(15_000.0);
    assert_eq!(w.truth()[4], 0);
    assert_eq!(w.states()[4], view::ALIVE);
    assert_eq!(w.agreement(), 1.0);
}

#[test]
fn a_partition_makes_each_side_fail_the_other_and_healing_merges_them() {
    let mut w = world(20);
    let groups: Vec<u16> = (0..20).map(|i| u16::from(i >= 10)).collect();
    w.partition(&groups);
    assert!(w.partitioned());
    w.advance(3_000.0);
    assert!(w.agreement() < 1.0, "suspicions count as disagreement");
    w.advance(20_000.0);
    assert!(w.agreement() < 0.7, "agreement {}", w.agreement());
    w.heal();
    assert!(!w.partitioned());
    w.advance(60_000.0);
    assert_eq!(w.agreement(), 1.0);
}

#[test]
fn a_stalled_node_shows_as_stalled_in_the_truth_until_it_wakes() {
    let mut w = world(10);
    w.stall(2, 1_000);
    w.advance(10.0);
    assert_eq!(w.truth()[2], 2);
    w.advance(1_500.0);
    assert_eq!(w.truth()[2], 0);
}

#[test]
fn kill_random_never_kills_the_last_node() {
    let mut w = world(5);
    assert_eq!(w.kill_random(10).len(), 4);
    assert_eq!(w.truth().iter().filter(|&&t| t == 0).count(), 1);
}

#[test]
fn node_names_map_back_to_indices() {
    assert_eq!(view::index_of("n17"), Some(17));
    assert_eq!(view::index_of("x1"), None);
}
