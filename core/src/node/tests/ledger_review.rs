//! Defects a review of the broadcast ledger, its digests and repairs found, each kept fixed.

use super::*;
use crate::wire::{DecodeError, DigestEntry};

/// A digest entry for a life of `origin` that says it reached `next`.
fn life_at(origin: &str, epoch: u32, next: u64) -> DigestEntry {
    DigestEntry { origin: id(origin), epoch, next, holes: vec![], keyed: 0 }
}

#[test]
fn a_digest_entry_listing_more_holes_than_any_sender_lists_is_a_decode_error() {
    // The decoder reserved room for as many holes as the entry claimed (up to the bytes left, eight
    // bytes of memory for each byte of input) and accepted lists no sender ever writes.
    let mut c = Cluster::formed(2, Config::local());
    let most = crate::wire::MAX_DIGEST_HOLES as u64;
    let listing = |n: u64| {
        let entry = DigestEntry { holes: (0..n).collect(), ..life_at("b", 1, n + 1) };
        packet_of(&[Message::BroadcastDigest { entries: vec![entry] }])
    };
    let now = c.now;
    assert_eq!(c.nodes[0].handle_packet(now, 1, &listing(most)), Ok(()));
    let errors = c.node(0).stats().decode_errors;
    assert_eq!(
        c.nodes[0].handle_packet(now, 1, &listing(most + 1)),
        Err(PacketError::Decode(DecodeError::TooLong)),
        "one hole more than a sender lists"
    );
    assert_eq!(c.node(0).stats().decode_errors, errors + 1, "and the drop is counted");
}

/// A broadcast from `origin`'s life `epoch` at `seq`, unkeyed, as anyone could forge it.
fn forged_broadcast(origin: &str, epoch: u32, seq: u64) -> Message<u32> {
    let topic = String::from("t");
    Message::Broadcast(crate::wire::UserBroadcast { origin: id(origin), epoch, seq, topic, key: None, payload: vec![] })
}

#[test]
fn a_broadcast_at_the_last_sequence_number_is_dropped_and_counted_not_a_panic() {
    // `next = seq + 1` overflowed at `u64::MAX`: one forged broadcast panicked a debug build (and
    // wrapped `next` to 0 in release, so everything the origin sent was delivered again).
    let mut c = Cluster::formed(2, Config::local());
    let now = c.now;
    let pkt = packet_of(&[forged_broadcast("x", 1, u64::MAX), forged_broadcast("x", 1, 0)]);
    assert_eq!(c.nodes[0].handle_packet(now, 1, &pkt), Ok(()));
    c.deliver_all();
    let stats = c.node(0).stats();
    assert_eq!(stats.broadcasts_rejected, 1, "the impossible one is counted");
    assert_eq!(stats.broadcasts_delivered, 1, "the rest of the packet is delivered");
}
