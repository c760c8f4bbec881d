//! Member digests: periodic anti-entropy that sends what differs, not the whole view.
//!
//! A full push-pull carries every member's record both ways: at 1,000 members about 30 kB per
//! exchange, which dominated the protocol's bandwidth. Yet after the first exchange two members
//! almost always agree: gossip already carried every change. So a periodic push-pull request
//! (and the catch-up rounds after a join or an outage) carries only the asker's own record and a
//! [`Message::MemberDigest`](crate::wire::Message::MemberDigest): every member, the asker
//! included, falls into one of `b` buckets by a salted hash of its name, and each bucket's hash
//! sums its members' record hashes (name, incarnation, and whether the record is live, dead or
//! left). The member asked computes the same buckets over its own view and answers, as before,
//! with its own record and then the records of the buckets whose hashes differ, live members
//! first; the broadcast part of the exchange is unchanged. When the two agree the answer is one
//! record and the digest's few hundred bytes replace tens of kilobytes.
//!
//! The model, and what it gives up:
//! - **Pull only.** The asker learns what it lacks; the member asked learns only the asker's own
//!   record. Every member asks on its own schedule, so each view is still repaired once per
//!   push-pull period. The answer also carries the answerer's record of the asker when that is
//!   not plainly alive: a member whose link comes back learns in one round trip that it is
//!   suspected, and refutes. Joins and re-announces (which heal partitions and restarts) still send the
//!   whole view both ways.
//! - **Suspicions are not compared.** A suspect hashes as alive: suspicion is transient, spread by
//!   gossip, and differs between members for good reasons. A record that differs in incarnation,
//!   or in being dead or left, is what anti-entropy must repair.
//! - **Collisions.** A bucket's hash is 32 bits and the salt changes with every request, so a
//!   difference hidden by a collision (about one in four billion) is found by the next exchange.
//! - **Buckets.** About eight records each (`b` a power of two, at most
//!   [`MAX_MEMBER_DIGEST_BUCKETS`]), so a digest costs about half a byte per member and one
//!   changed record costs about eight records in the answer.
//! - **Older members** skip the digest as an unknown message and answer with their whole view:
//!   nothing breaks, they merely answer as they always did.

use alloc::vec::Vec;

use crate::broadcast::Fingerprint;
use crate::identity::{Address, NodeId};
use crate::member::MemberState;
use crate::wire::MAX_MEMBER_DIGEST_BUCKETS;

use super::Node;

/// Records per bucket a digest aims at: fewer buckets make a smaller digest, more make a smaller
/// answer when one record differs.
const RECORDS_PER_BUCKET: usize = 8;

/// The records of our view a digest answer carries besides our own: those in the buckets marked
/// `true` of a digest with this salt, and our record of `accused` (the asker, when we do not hold
/// it plainly alive).
#[derive(Clone, Debug)]
pub(super) struct Differing {
    salt: u32,
    buckets: Vec<bool>,
    accused: Option<NodeId>,
}

impl Differing {
    /// True for a member's record the answer carries.
    pub(super) fn passes(&self, id: &NodeId) -> bool {
        self.accused.as_ref() == Some(id) || self.buckets[bucket_of(name_hash(self.salt, id), self.buckets.len())]
    }
}

/// The salted hash of a member's name, which picks its bucket and starts its record's hash.
fn name_hash(salt: u32, id: &NodeId) -> u64 {
    Fingerprint::new().u64(u64::from(salt)).field(id.as_str().as_bytes()).finish()
}

fn bucket_of(name_hash: u64, buckets: usize) -> usize {
    // The high bits: `finish` mixes them best.
    ((name_hash >> 32) % buckets as u64) as usize
}

/// What a record says that anti-entropy must agree on: its incarnation, and whether it is live
/// (alive or suspect), dead or left.
fn record_hash(name_hash: u64, incarnation: u32, state: MemberState) -> u64 {
    let class = match state {
        MemberState::Alive | MemberState::Suspect => 0,
        MemberState::Dead => 1,
        MemberState::Left => 2,
    };
    Fingerprint::new().u64(name_hash).u64(u64::from(incarnation)).u64(class).finish()
}

/// How many buckets a digest of `records` records uses: about [`RECORDS_PER_BUCKET`] each, a power
/// of two, and at most an eighth of `limit` bytes of digest (small relay frames).
pub(super) fn bucket_count(records: usize, limit: usize) -> usize {
    let wanted = records.div_ceil(RECORDS_PER_BUCKET).next_power_of_two();
    // The largest power of two with 4 bytes per bucket in an eighth of the limit.
    let room = (limit / 32).max(1);
    let room = 1usize << (usize::BITS - 1 - room.leading_zeros());
    wanted.min(MAX_MEMBER_DIGEST_BUCKETS).min(room).max(1)
}

impl<A: Address> Node<A> {
    /// Our view, ourselves included, hashed into `buckets` buckets with `salt`.
    pub(super) fn member_digest(&self, salt: u32, buckets: usize) -> Vec<u32> {
        let mut sums = alloc::vec![0u64; buckets];
        let own = core::iter::once((&self.local.id, self.local.incarnation, self.own_record_state()));
        for (id, incarnation, state) in own.chain(self.members.iter().map(|m| (&m.id, m.incarnation, m.state))) {
            let name = name_hash(salt, id);
            let sum = &mut sums[bucket_of(name, buckets)];
            *sum = sum.wrapping_add(record_hash(name, incarnation, state));
        }
        sums.into_iter().map(|s| (s ^ (s >> 32)) as u32).collect()
    }

    /// Which buckets of `asker`'s digest (`salt`, `theirs`) differ from our view: the records an
    /// answer carries, with our record of the asker if we suspect it (which the digest does not
    /// compare): it refutes at once.
    pub(super) fn differing_buckets(&mut self, asker: &NodeId, salt: u32, theirs: &[u32]) -> Differing {
        let ours = self.member_digest(salt, theirs.len());
        let buckets: Vec<bool> = ours.iter().zip(theirs).map(|(a, b)| a != b).collect();
        self.stats.member_digests_answered += 1;
        self.stats.member_digest_buckets_differing += buckets.iter().filter(|&&d| d).count() as u64;
        let accused = self.members.get(asker).filter(|m| m.state != MemberState::Alive).map(|m| m.id.clone());
        Differing { salt, buckets, accused }
    }
}
