//! Stale news gets answered.
//!
//! Gossip sends every update a bounded number of times to random members, so at scale and under loss
//! a member M can miss every copy of a refutation: X was suspected at incarnation `i`, refuted with
//! `Alive` at `i + 1`, and M never heard it. M's own suspicion timer then declares X failed at `i`,
//! and M spreads that claim. Everyone else holds X alive at `i + 1` and used to drop the claim as
//! stale, and X re-gossiped its `Alive` to random members only; nobody told M, which kept X failed
//! until its next push-pull, tens of seconds or minutes later.
//!
//! Now whoever receives a stale claim answers the one spreading it:
//! - a member that holds X alive at an incarnation newer than a `Suspect` or `Dead` claim it
//!   receives sends its record of X (an `Alive` at the newer incarnation) straight back to the
//!   packet's sender;
//! - X itself, hearing a claim against it older than its own incarnation, sends its current `Alive`
//!   to the packet's sender and to the claimant named in the claim (when it knows that member's
//!   address), besides gossiping it again.
//!
//! The answer is an ordinary gossip packet carrying the record(s), with queued updates filling the
//! rest. The receiver applies it like any `Alive`: newer than its stale view, it wins.
//!
//! A stale claim keeps circulating for a while (every member that spreads it sends it several
//! times), and a hostile sender can repeat one at will, so answers are rate limited: at most one per
//! (subject, destination) per probe interval or second, whichever is shorter, tracked in a bounded
//! table. When the table is full of
//! recent answers, further answers are suppressed rather than the table grown. All the answers owed
//! for one incoming packet go out together, one packet per destination. Suppressed answers are
//! counted in [`crate::Stats::stale_answers_suppressed`], sent ones in
//! [`crate::Stats::stale_claims_answered`].
//!
//! Push-pull needs none of this (each side receives the other's whole state), so only claims that
//! arrive in packets are answered.

use alloc::vec::Vec;
use core::time::Duration;

use crate::identity::{Address, NodeId};
use crate::member::MemberState;
use crate::time::Instant;
use crate::wire::{Alive, Message, MetaField};

use super::{Node, TransmitKind};

/// Bound on the (subject, destination) pairs remembered by the rate limit.
const CAPACITY: usize = 256;

/// Remembers when we last answered each destination about each subject.
#[derive(Debug)]
pub(crate) struct AnswerLimit<A: Address> {
    /// At most [`CAPACITY`] entries (a vector: the table is small, and a map type of its own would
    /// cost the wasm build more than the scans cost the CPU). A scan compares the subjects' keys
    /// ([`name_key`]), and names and addresses only where a key matches: during a burst of stale
    /// claims (a relay's members all moving) every claim scans the table, and comparing names there
    /// took a fifth of the CPU of 1,000 members in the `fleet` bench.
    last: Vec<Answered<A>>,
}

#[derive(Debug)]
struct Answered<A> {
    /// `name_key(subject)`.
    key: u64,
    subject: NodeId,
    to: A,
    at: Instant,
}

impl<A: Address> AnswerLimit<A> {
    pub fn new(_hash_seed: u64) -> Self {
        AnswerLimit { last: Vec::new() }
    }

    /// Whether we may answer `to` about `subject` now, at most once per `interval`. Records the answer
    /// when it is allowed. Call once per answer about to be sent.
    pub fn allow(&mut self, subject: &NodeId, to: &A, now: Instant, interval: Duration) -> bool {
        let key = name_key(subject);
        if let Some(entry) = self.last.iter_mut().find(|e| e.key == key && e.subject == *subject && e.to == *to) {
            if now < entry.at + interval {
                return false;
            }
            entry.at = now;
            return true;
        }
        if self.last.len() >= CAPACITY {
            self.last.retain(|e| now < e.at + interval);
            if self.last.len() >= CAPACITY {
                return false;
            }
        }
        self.last.push(Answered { key, subject: subject.clone(), to: to.clone(), at: now });
        true
    }
}

/// A name's length and its last 7 bytes, packed: names that differ almost always differ here
/// (`tab-17`, `tab-18`), and computing it costs the wasm build far less than hashing. Names made
/// to collide only bring back the name comparisons of a table of [`CAPACITY`] entries.
fn name_key(id: &NodeId) -> u64 {
    let name = id.as_bytes();
    let tail = &name[name.len().saturating_sub(7)..];
    tail.iter().fold(name.len() as u64, |key, &b| key << 8 | u64::from(b))
}

impl<A: Address> Node<A> {
    /// A claim about `subject` older than the record we hold arrived in a packet from `to`: owe `to`
    /// our record of `subject`. Call from the membership rules; the answer goes out when the packet
    /// has been handled ([`Node::send_answers`]).
    pub(super) fn answer_stale_claim(&mut self, subject: &NodeId, to: &A, now: Instant) {
        if *to == self.local.addr {
            return;
        }
        if self.answer_limit.allow(subject, to, now, self.answer_interval()) {
            self.answers_owed.push((to.clone(), subject.clone()));
        } else {
            self.stats.stale_answers_suppressed += 1;
        }
    }

    /// How often one (subject, destination) pair may be answered: a probe interval, at most one
    /// second. A member with a slow preset (5 s probes) answering one with a fast one (which gossips
    /// a stale claim to the member it holds dead for 10 s only) must answer more than twice in that
    /// window, or at high loss every answer may be lost and nothing else tells the claimant.
    fn answer_interval(&self) -> core::time::Duration {
        self.config.probe_interval.min(core::time::Duration::from_secs(1))
    }

    /// A claim against us older than our incarnation arrived from `sender`, raised by `claimant`:
    /// owe both our current `Alive` (the claimant only if we know its address).
    pub(super) fn answer_stale_claim_about_us(&mut self, sender: &A, claimant: &NodeId, now: Instant) {
        let me = self.local.id.clone();
        self.answer_stale_claim(&me, sender, now);
        if *claimant == me {
            return;
        }
        let claimant_addr = self.members.get(claimant).map(|m| m.addr.clone());
        if let Some(addr) = claimant_addr.filter(|a| a != sender) {
            self.answer_stale_claim(&me, &addr, now);
        }
    }

    /// Our current record of `subject`: our own `Alive`; a member's `Alive` while we hold it alive
    /// with complete metadata; its failure or departure while we hold it dead or gone (a restarted
    /// member told of its old death refutes past it). `None` when we have no record worth giving.
    fn record_of(&self, subject: &NodeId) -> Option<Message<A>> {
        if *subject == self.local.id {
            return Some(self.self_alive());
        }
        let m = self.members.get(subject)?;
        match m.state {
            MemberState::Alive if m.meta_complete => {}
            MemberState::Dead => {
                let (id, incarnation, from) = (m.id.clone(), m.incarnation, self.local.id.clone());
                return Some(Message::Dead { id, incarnation, from, left: false });
            }
            MemberState::Left => {
                let (id, incarnation) = (m.id.clone(), m.incarnation);
                return Some(Message::Dead { from: id.clone(), id, incarnation, left: true });
            }
            _ => return None,
        }
        let meta = if m.meta.len() <= self.config.max_gossip_meta {
            MetaField::Included(m.meta.as_bytes().to_vec())
        } else {
            MetaField::Omitted { len: m.meta.len() as u32 }
        };
        Some(Message::Alive(Alive {
            id: m.id.clone(),
            addr: m.addr.clone(),
            incarnation: m.incarnation,
            meta,
            min_version: m.versions.0,
            max_version: m.versions.1,
        }))
    }

    /// Sends the answers owed for the packet just handled: one gossip packet per destination with
    /// every record owed to it that fits. Call after the packet's messages have all been applied.
    pub(super) fn send_answers(&mut self) {
        if self.answers_owed.is_empty() {
            return;
        }
        let mut owed = core::mem::take(&mut self.answers_owed);
        let room = self.packet_budget() - 1;
        // A handful per packet: group by destination in place, keeping each pair once.
        while let Some((to, first)) = owed.pop() {
            let mut subjects = alloc::vec![first];
            owed.retain(|(dest, subject)| {
                if *dest != to {
                    return true;
                }
                if !subjects.contains(subject) {
                    subjects.push(subject.clone());
                }
                false
            });
            let mut records: Vec<u8> = Vec::new();
            for subject in &subjects {
                let Some(bytes) = self.record_of(subject).map(|m| m.to_bytes()) else { continue };
                if records.len() + bytes.len() <= room {
                    records.extend_from_slice(&bytes);
                    self.stats.stale_claims_answered += 1;
                } else {
                    self.stats.stale_answers_suppressed += 1;
                }
            }
            if !records.is_empty() {
                self.send_packet(to, TransmitKind::Gossip, |w| w.raw(&records));
            }
        }
        self.answers_owed = owed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> NodeId {
        NodeId::new(s).unwrap()
    }

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn one_answer_per_subject_and_destination_per_interval() {
        let mut limit: AnswerLimit<u32> = AnswerLimit::new(1);
        let t0 = Instant::from_millis(1_000);
        assert!(limit.allow(&id("x"), &7, t0, SECOND));
        assert!(!limit.allow(&id("x"), &7, t0 + Duration::from_millis(999), SECOND), "too soon");
        assert!(limit.allow(&id("x"), &8, t0, SECOND), "another destination");
        assert!(limit.allow(&id("y"), &7, t0, SECOND), "another subject");
        assert!(limit.allow(&id("x"), &7, t0 + SECOND, SECOND), "a full interval later");
    }

    #[test]
    fn a_full_table_suppresses_new_pairs_until_entries_expire() {
        let mut limit: AnswerLimit<u32> = AnswerLimit::new(1);
        let t0 = Instant::from_millis(1_000);
        for dest in 0..CAPACITY as u32 {
            assert!(limit.allow(&id("x"), &dest, t0, SECOND));
        }
        assert!(!limit.allow(&id("x"), &u32::MAX, t0 + Duration::from_millis(10), SECOND), "full of recent answers");
        assert_eq!(limit.last.len(), CAPACITY, "the table does not grow");
        assert!(limit.allow(&id("x"), &u32::MAX, t0 + SECOND, SECOND), "expired entries make room");
        assert!(limit.last.len() <= CAPACITY);
    }
}
