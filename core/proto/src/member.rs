//! The membership table: what this node believes about every other member, and the shuffled
//! round-robin order in which it probes them.
//!
//! SWIM's round-robin probing walks a randomly shuffled list of members; when the walk reaches the
//! end the list is reshuffled. New members are inserted at a random position so a fresh member is
//! probed, on average, half a round after it joins rather than always last. This bounds the time until
//! every member probes a given member to at most two rounds (SWIM §4.3).
//!
//! The table holds members in a dense vector indexed by a hash map keyed with a per-node seeded hasher,
//! so lookups cost one hash of a short name and iteration order is deterministic for a given seed.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::hash::BuildHasher;
use core::time::Duration;

use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::Rng;

use crate::identity::{Address, NodeId};
use crate::time::Instant;

/// What this node believes about a member.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum MemberState {
    /// Answers probes, as far as we know.
    Alive = 0,
    /// A probe failed; the member has until its suspicion timeout to refute.
    Suspect = 1,
    /// Declared failed (suspicion timed out, or confirmed by others).
    Dead = 2,
    /// Left the cluster on purpose.
    Left = 3,
}

impl MemberState {
    /// Decodes the wire byte.
    pub fn from_wire(b: u8) -> Option<Self> {
        match b {
            0 => Some(MemberState::Alive),
            1 => Some(MemberState::Suspect),
            2 => Some(MemberState::Dead),
            3 => Some(MemberState::Left),
            _ => None,
        }
    }

    /// Alive or suspect: still counted as a member, still probed and gossiped to.
    pub fn is_live(self) -> bool {
        matches!(self, MemberState::Alive | MemberState::Suspect)
    }
}

/// Opaque application metadata of a member (for example `role=web`), versioned by incarnation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Metadata(Option<Arc<[u8]>>);

impl Metadata {
    /// Wraps bytes; empty bytes take no allocation.
    pub fn new(bytes: &[u8]) -> Self {
        if bytes.is_empty() {
            Metadata(None)
        } else {
            Metadata(Some(Arc::from(bytes)))
        }
    }

    /// The bytes (empty when none were set).
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_deref().unwrap_or(&[])
    }

    /// Size in bytes.
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    /// True when no metadata is set.
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }
}

/// One member as this node sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member<A> {
    /// Unique name.
    pub id: NodeId,
    /// Where it receives packets.
    pub addr: A,
    /// Its incarnation: only the member itself raises it, to refute suspicion or publish new metadata.
    /// Compare incarnations with [`crate::incarnation::is_newer`], not `>`: they wrap.
    pub incarnation: u32,
    /// Our belief about it.
    pub state: MemberState,
    /// False while metadata announced too large for gossip has not been fetched yet.
    pub meta_complete: bool,
    /// Protocol versions it speaks (min, max).
    pub versions: (u8, u8),
    /// Round-trip time of the last direct probe we got an ack for, in ms; `u32::MAX` when unknown.
    #[doc(hidden)]
    pub rtt_ms: u32,
    /// When `state` last changed, on the driver's clock.
    pub state_since: Instant,
    /// Its metadata at `incarnation` (may lag when large metadata is still being fetched).
    pub meta: Metadata,
}

impl<A> Member<A> {
    /// Last measured round-trip time of a direct probe from this node.
    pub fn rtt(&self) -> Option<Duration> {
        (self.rtt_ms != u32::MAX).then(|| Duration::from_millis(u64::from(self.rtt_ms)))
    }
}

/// The table of known members plus the probe order. Does not contain the local node.
///
/// Members live in a dense vector; a hash table of vector positions finds them by name, and the probe
/// order is a vector of positions too, so each known member costs about 70 bytes.
#[derive(Debug)]
pub(crate) struct MemberTable<A> {
    members: Vec<Member<A>>,
    index: hashbrown::HashTable<u32>,
    hasher: foldhash::fast::FixedState,
    probe_order: Vec<u32>,
    probe_cursor: usize,
    live: usize,
}

impl<A: Address> MemberTable<A> {
    pub fn new(hash_seed: u64) -> Self {
        MemberTable {
            members: Vec::new(),
            index: hashbrown::HashTable::new(),
            hasher: foldhash::fast::FixedState::with_seed(hash_seed),
            probe_order: Vec::new(),
            probe_cursor: 0,
            live: 0,
        }
    }

    /// Reserves room for `n` more members (the simulator's warm start).
    pub fn reserve(&mut self, n: usize) {
        self.members.reserve(n);
        let (members, hasher) = (&self.members, &self.hasher);
        self.index.reserve(n, |&i| hasher.hash_one(&members[i as usize].id));
        self.probe_order.reserve(n);
    }

    fn position(&self, id: &NodeId) -> Option<usize> {
        let hash = self.hasher.hash_one(id);
        self.index.find(hash, |&i| self.members[i as usize].id == *id).map(|&i| i as usize)
    }

    pub fn get(&self, id: &NodeId) -> Option<&Member<A>> {
        self.position(id).map(|i| &self.members[i])
    }

    pub fn get_mut(&mut self, id: &NodeId) -> Option<&mut Member<A>> {
        self.position(id).map(|i| &mut self.members[i])
    }

    pub fn iter(&self) -> impl Iterator<Item = &Member<A>> {
        self.members.iter()
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Members believed alive or suspect (excluding the local node).
    pub fn live_count(&self) -> usize {
        self.live
    }

    /// Adds a member not yet in the table. It is placed at a random position among the members not
    /// yet probed in this round (the member it displaces moves to the end of the round).
    pub fn insert(&mut self, member: Member<A>, rng: &mut SmallRng) {
        debug_assert!(self.position(&member.id).is_none());
        let pos = self.members.len() as u32;
        if member.state.is_live() {
            self.live += 1;
        }
        let hash = self.hasher.hash_one(&member.id);
        self.members.push(member);
        let (members, hasher) = (&self.members, &self.hasher);
        self.index.insert_unique(hash, pos, |&i| hasher.hash_one(&members[i as usize].id));
        self.probe_order.push(pos);
        let last = self.probe_order.len() - 1;
        let slot = rng.random_range(self.probe_cursor.min(last)..=last);
        self.probe_order.swap(slot, last);
    }

    /// Shuffles the probe order and restarts the round (after a bulk insert).
    pub fn shuffle_order(&mut self, rng: &mut SmallRng) {
        self.probe_order.shuffle(rng);
        self.probe_cursor = 0;
    }

    /// Changes a member's state, keeping the live count right. Returns the previous state.
    pub fn set_state(&mut self, id: &NodeId, state: MemberState, now: Instant) -> Option<MemberState> {
        let i = self.position(id)?;
        let m = &mut self.members[i];
        let old = m.state;
        if old != state {
            m.state = state;
            m.state_since = now;
            match (old.is_live(), state.is_live()) {
                (true, false) => self.live -= 1,
                (false, true) => self.live += 1,
                _ => {}
            }
        }
        Some(old)
    }

    /// Forgets a member entirely (reaping long-dead members). Costs a scan of the probe order.
    pub fn remove(&mut self, id: &NodeId) -> Option<Member<A>> {
        let i = self.position(id)?;
        let hash = self.hasher.hash_one(id);
        if let Ok(entry) = self.index.find_entry(hash, |&p| p as usize == i) {
            entry.remove();
        }
        let last = self.members.len() - 1;
        let removed = self.members.swap_remove(i);
        if i != last {
            // The former last member now sits at `i`: repoint its index entry and probe slot.
            let moved_hash = self.hasher.hash_one(&self.members[i].id);
            if let Some(p) = self.index.find_mut(moved_hash, |&p| p as usize == last) {
                *p = i as u32;
            }
        }
        let mut k = 0;
        while k < self.probe_order.len() {
            let p = self.probe_order[k] as usize;
            if p == i {
                self.probe_order.remove(k);
                if k < self.probe_cursor {
                    self.probe_cursor -= 1;
                }
                continue;
            }
            if p == last {
                self.probe_order[k] = i as u32;
            }
            k += 1;
        }
        if removed.state.is_live() {
            self.live -= 1;
        }
        Some(removed)
    }

    /// The next live member in round-robin order, reshuffling at the end of each round.
    /// Call once per protocol period.
    pub fn next_probe_target(&mut self, rng: &mut SmallRng) -> Option<NodeId> {
        if self.live == 0 {
            return None;
        }
        for _ in 0..2 {
            while self.probe_cursor < self.probe_order.len() {
                let m = &self.members[self.probe_order[self.probe_cursor] as usize];
                self.probe_cursor += 1;
                if m.state.is_live() {
                    return Some(m.id.clone());
                }
            }
            self.shuffle_order(rng);
        }
        None
    }

    /// Up to `k` distinct random members accepted by `keep`, in random order.
    pub fn random_members(
        &self,
        k: usize,
        rng: &mut SmallRng,
        mut keep: impl FnMut(&Member<A>) -> bool,
    ) -> Vec<&Member<A>> {
        let mut out: Vec<&Member<A>> = Vec::with_capacity(k);
        if k == 0 || self.members.is_empty() {
            return out;
        }
        if self.members.len() <= 4 * k + 16 {
            let mut all: Vec<&Member<A>> = self.members.iter().filter(|m| keep(m)).collect();
            let (chosen, _) = all.partial_shuffle(rng, k);
            out.extend_from_slice(chosen);
            return out;
        }
        // Large tables: sample with rejection, bounded so a mostly-dead table cannot loop for long.
        let mut picked: Vec<usize> = Vec::with_capacity(k);
        for _ in 0..(8 * k + 32) {
            let i = rng.random_range(0..self.members.len());
            if picked.contains(&i) {
                continue;
            }
            let m = &self.members[i];
            if keep(m) {
                picked.push(i);
                out.push(m);
                if out.len() == k {
                    break;
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn member(name: &str, state: MemberState) -> Member<u32> {
        Member {
            id: NodeId::new(name).unwrap(),
            addr: 0,
            incarnation: 0,
            state,
            meta: Metadata::default(),
            meta_complete: true,
            state_since: Instant::ZERO,
            rtt_ms: u32::MAX,
            versions: (1, 1),
        }
    }

    #[test]
    fn every_live_member_is_probed_once_per_round() {
        let mut rng = SmallRng::seed_from_u64(7);
        let mut t = MemberTable::new(1);
        for i in 0..10 {
            t.insert(member(&alloc::format!("m{i}"), MemberState::Alive), &mut rng);
        }
        t.insert(member("gone", MemberState::Dead), &mut rng);
        let mut seen: Vec<NodeId> = (0..10).map(|_| t.next_probe_target(&mut rng).unwrap()).collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 10);
        assert!(!seen.iter().any(|id| id.as_str() == "gone"));
    }

    #[test]
    fn removing_a_member_keeps_the_index_consistent() {
        let mut rng = SmallRng::seed_from_u64(1);
        let mut t = MemberTable::new(1);
        for name in ["a", "b", "c"] {
            t.insert(member(name, MemberState::Alive), &mut rng);
        }
        t.remove(&NodeId::new("a").unwrap());
        assert_eq!(t.get(&NodeId::new("c").unwrap()).unwrap().id.as_str(), "c");
        assert_eq!(t.get(&NodeId::new("b").unwrap()).unwrap().id.as_str(), "b");
        assert_eq!(t.live_count(), 2);
        assert!(t.get(&NodeId::new("a").unwrap()).is_none());
        let mut probed: Vec<_> = (0..2).map(|_| t.next_probe_target(&mut rng).unwrap()).collect();
        probed.sort();
        assert_eq!(probed, [NodeId::new("b").unwrap(), NodeId::new("c").unwrap()]);
    }

    #[test]
    fn random_members_are_distinct_and_filtered() {
        let mut rng = SmallRng::seed_from_u64(3);
        let mut t = MemberTable::new(1);
        for i in 0..200 {
            let state = if i % 2 == 0 { MemberState::Alive } else { MemberState::Dead };
            t.insert(member(&alloc::format!("m{i}"), state), &mut rng);
        }
        let picked = t.random_members(5, &mut rng, |m| m.state == MemberState::Alive);
        assert_eq!(picked.len(), 5);
        let mut ids: Vec<_> = picked.iter().map(|m| m.id.clone()).collect();
        ids.dedup();
        assert_eq!(ids.len(), 5);
        assert!(picked.iter().all(|m| m.state == MemberState::Alive));
    }

    #[test]
    fn no_probe_target_when_nobody_is_live() {
        let mut rng = SmallRng::seed_from_u64(3);
        let mut t: MemberTable<u32> = MemberTable::new(1);
        t.insert(member("x", MemberState::Left), &mut rng);
        assert_eq!(t.next_probe_target(&mut rng), None);
    }
}
