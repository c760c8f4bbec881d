//! The membership table: what this node believes about every other member, and the shuffled
//! round-robin order in which it probes them.
//!
//! SWIM's round-robin probing walks a randomly shuffled list of members; when the walk reaches the
//! end the list is reshuffled. New members are inserted at a random position so a fresh member is
//! probed, on average, half a round after it joins rather than always last. This bounds the time until
//! every member probes a given member to at most two rounds (SWIM §4.3).
//!
//! The table holds members in slots (chunks of 64, shared copy-on-write with the
//! [`MemberSnapshot`] a simulated node may start from) found through a hash table keyed with a
//! seeded hasher, so lookups cost one hash of a short name and iteration order (slot order) is
//! deterministic for a given seed. Round-trip times are kept beside the members, not in them, so
//! probing never copies a shared chunk.

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
    /// When `state` last changed, on the driver's clock.
    pub state_since: Instant,
    /// Its metadata at `incarnation` (may lag when large metadata is still being fetched).
    pub meta: Metadata,
}

/// Slots per chunk of a table's storage: the unit a table copies when it first changes a member it
/// still shares with the snapshot it was cloned from.
const CHUNK: usize = 64;

impl<A> Member<A> {
    /// A member known out of band (a snapshot, the simulator's warm start): alive at incarnation 0
    /// since `now`, speaking protocol version 1, without metadata.
    pub(crate) fn assumed_alive(id: NodeId, addr: A, now: Instant) -> Self {
        Member {
            id,
            addr,
            incarnation: 0,
            state: MemberState::Alive,
            meta_complete: true,
            versions: (1, 1),
            state_since: now,
            meta: Metadata::default(),
        }
    }
}

/// The table of known members plus the probe order. Does not contain the local node.
///
/// Members live in slots, [`CHUNK`] to a chunk; a hash table of slot positions finds them by name,
/// and the probe order is a vector of positions too. A forgotten member leaves its slot vacant for
/// the next member to fill, so positions never move.
///
/// Chunks are shared copy-on-write: a table cloned from a [`MemberSnapshot`] shares the snapshot's
/// chunks and its index until it changes a member, and then copies that member's chunk only. Ten
/// thousand simulated members started from one snapshot thus cost one copy of the members, plus, per
/// node, its probe order (4 bytes a member), the chunks it changed, and the round-trip times it
/// measured. A table built member by member owns everything and costs about 70 bytes a member.
#[derive(Clone, Debug)]
pub(crate) struct MemberTable<A> {
    chunks: Vec<Arc<Vec<Option<Member<A>>>>>,
    /// Slots handed out, vacant ones included.
    slots: usize,
    vacant: Vec<u32>,
    len: usize,
    /// Positions of the snapshot's members, shared by every table cloned from it. An entry may name
    /// a slot vacated or refilled since: a lookup checks the name in the slot.
    shared_index: Option<Arc<hashbrown::HashTable<u32>>>,
    /// Positions of the members this table inserted itself.
    index: hashbrown::HashTable<u32>,
    hasher: foldhash::fast::FixedState,
    probe_order: Vec<u32>,
    probe_cursor: usize,
    live: usize,
    /// Round-trip time of the last direct probe acknowledged, in ms, by position: a map, not a
    /// vector, so that a node pays only for the members it probed (a vector would cost 4 bytes a
    /// member in every simulated node from its first probes on).
    rtt_ms: hashbrown::HashMap<u32, u32, foldhash::fast::FixedState>,
}

/// The members of a [`MemberTable`] in slot order.
pub(crate) struct Iter<'a, A> {
    chunks: &'a [Arc<Vec<Option<Member<A>>>>],
    pos: usize,
}

impl<'a, A> Iterator for Iter<'a, A> {
    type Item = &'a Member<A>;

    fn next(&mut self) -> Option<&'a Member<A>> {
        loop {
            let chunk = self.chunks.get(self.pos / CHUNK)?;
            let Some(slot) = chunk.get(self.pos % CHUNK) else {
                // A last chunk not full: nothing after it.
                self.pos = self.chunks.len() * CHUNK;
                continue;
            };
            self.pos += 1;
            if let Some(m) = slot {
                return Some(m);
            }
        }
    }
}

fn slot<A>(chunks: &[Arc<Vec<Option<Member<A>>>>], pos: usize) -> Option<&Member<A>> {
    chunks.get(pos / CHUNK).and_then(|c| c.get(pos % CHUNK)).and_then(Option::as_ref)
}

impl<A: Address> MemberTable<A> {
    pub fn new(hash_seed: u64) -> Self {
        MemberTable {
            chunks: Vec::new(),
            slots: 0,
            vacant: Vec::new(),
            len: 0,
            shared_index: None,
            index: hashbrown::HashTable::new(),
            hasher: foldhash::fast::FixedState::with_seed(hash_seed),
            probe_order: Vec::new(),
            probe_cursor: 0,
            live: 0,
            rtt_ms: hashbrown::HashMap::with_hasher(foldhash::fast::FixedState::with_seed(hash_seed ^ 7)),
        }
    }

    /// Reserves room for `n` more members.
    pub fn reserve(&mut self, n: usize) {
        self.chunks.reserve(n / CHUNK + 1);
        let (chunks, hasher) = (&self.chunks, &self.hasher);
        self.index.reserve(n, |&p| hasher.hash_one(&slot(chunks, p as usize).expect("indexed slots hold members").id));
        self.probe_order.reserve(n);
    }

    /// Turns a table built member by member into a snapshot's: its index becomes the shared one,
    /// and clones share its chunks.
    fn share(mut self) -> Self {
        if self.shared_index.is_none() {
            self.shared_index = Some(Arc::new(core::mem::take(&mut self.index)));
        }
        self
    }

    fn position(&self, id: &NodeId) -> Option<usize> {
        let hash = self.hasher.hash_one(id);
        let holds = |&p: &u32| slot(&self.chunks, p as usize).is_some_and(|m| m.id == *id);
        if let Some(&p) = self.shared_index.as_ref().and_then(|shared| shared.find(hash, holds)) {
            return Some(p as usize);
        }
        self.index.find(hash, holds).map(|&p| p as usize)
    }

    /// The member at `pos`, its chunk copied first if it is shared.
    fn slot_mut(&mut self, pos: usize) -> &mut Option<Member<A>> {
        &mut Arc::make_mut(&mut self.chunks[pos / CHUNK])[pos % CHUNK]
    }

    pub fn get(&self, id: &NodeId) -> Option<&Member<A>> {
        self.position(id).and_then(|p| slot(&self.chunks, p))
    }

    /// The member to change. Copies its chunk when the table shares it: look with [`Self::get`]
    /// first when the change may turn out to be none.
    pub fn get_mut(&mut self, id: &NodeId) -> Option<&mut Member<A>> {
        let p = self.position(id)?;
        self.slot_mut(p).as_mut()
    }

    pub fn iter(&self) -> Iter<'_, A> {
        Iter { chunks: &self.chunks, pos: 0 }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Members believed alive or suspect (excluding the local node).
    pub fn live_count(&self) -> usize {
        self.live
    }

    /// Adds a member not yet in the table, in a vacant slot if there is one. It is placed at a
    /// random position among the members not yet probed in this round (the member it displaces
    /// moves to the end of the round).
    pub fn insert(&mut self, member: Member<A>, rng: &mut SmallRng) {
        debug_assert!(self.position(&member.id).is_none());
        if member.state.is_live() {
            self.live += 1;
        }
        let hash = self.hasher.hash_one(&member.id);
        let pos = match self.vacant.pop() {
            Some(p) => {
                *self.slot_mut(p as usize) = Some(member);
                p
            }
            None => {
                if self.slots % CHUNK == 0 {
                    self.chunks.push(Arc::new(Vec::with_capacity(CHUNK)));
                }
                let last = self.chunks.len() - 1;
                Arc::make_mut(&mut self.chunks[last]).push(Some(member));
                self.slots += 1;
                (self.slots - 1) as u32
            }
        };
        self.len += 1;
        let (chunks, hasher) = (&self.chunks, &self.hasher);
        self.index.insert_unique(hash, pos, |&p| {
            hasher.hash_one(&slot(chunks, p as usize).expect("indexed slots hold members").id)
        });
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
        let p = self.position(id)?;
        let old = slot(&self.chunks, p)?.state;
        if old != state {
            let m = self.slot_mut(p).as_mut()?;
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

    /// Records the round-trip time of a direct probe of `id` just acknowledged.
    pub fn set_rtt(&mut self, id: &NodeId, rtt: Duration) {
        if let Some(p) = self.position(id) {
            let ms = u32::try_from(rtt.as_millis()).unwrap_or(u32::MAX);
            self.rtt_ms.insert(p as u32, ms);
        }
    }

    /// The round-trip time of the last direct probe of `id` acknowledged, if one was.
    pub fn rtt(&self, id: &NodeId) -> Option<Duration> {
        let p = self.position(id)? as u32;
        self.rtt_ms.get(&p).map(|&ms| Duration::from_millis(u64::from(ms)))
    }

    /// Forgets a member entirely (reaping long-dead members). Costs a scan of the probe order.
    pub fn remove(&mut self, id: &NodeId) -> Option<Member<A>> {
        let p = self.position(id)?;
        let hash = self.hasher.hash_one(id);
        if let Ok(entry) = self.index.find_entry(hash, |&q| q as usize == p) {
            entry.remove();
        }
        let removed = self.slot_mut(p).take()?;
        self.vacant.push(p as u32);
        self.len -= 1;
        self.rtt_ms.remove(&(p as u32));
        if let Some(k) = self.probe_order.iter().position(|&q| q as usize == p) {
            self.probe_order.remove(k);
            if k < self.probe_cursor {
                self.probe_cursor -= 1;
            }
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
                let p = self.probe_order[self.probe_cursor] as usize;
                self.probe_cursor += 1;
                if let Some(m) = slot(&self.chunks, p).filter(|m| m.state.is_live()) {
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
        if k == 0 || self.len == 0 {
            return out;
        }
        // Small tables, and tables mostly vacant after a mass reaping: choose among all.
        if self.slots <= 4 * k + 16 || self.len * 2 < self.slots {
            let mut all: Vec<&Member<A>> = self.iter().filter(|m| keep(m)).collect();
            let (chosen, _) = all.partial_shuffle(rng, k);
            out.extend_from_slice(chosen);
            return out;
        }
        // Large tables: sample with rejection, bounded so a mostly-dead table cannot loop for long.
        let mut picked: Vec<usize> = Vec::with_capacity(k);
        for _ in 0..(8 * k + 32) {
            let i = rng.random_range(0..self.slots);
            if picked.contains(&i) {
                continue;
            }
            let Some(m) = slot(&self.chunks, i) else { continue };
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

/// Members known out of band, alive, built once and shared by every node started from it
/// ([`crate::Node::assume_alive_shared`]): the simulator's warm start of thousands of nodes that
/// each know all the others.
///
/// Nodes share the snapshot's members until they change one, then copy its chunk of 64 (see the
/// table's notes in this module). Each node still pays for its own probe order, 4 bytes a member.
#[derive(Clone, Debug)]
pub struct MemberSnapshot<A>(pub(crate) MemberTable<A>);

impl<A: Address> MemberSnapshot<A> {
    /// `members` alive at incarnation 0 since `now`, speaking protocol version 1, without metadata.
    /// `seed` seeds the hash of the names in the shared index: draw it at random, as a node's own
    /// seed is. A name given twice counts once.
    pub fn alive(now: Instant, members: impl IntoIterator<Item = (NodeId, A)>, seed: u64) -> Self {
        let mut table = MemberTable::new(seed);
        let mut rng = <SmallRng as rand::SeedableRng>::seed_from_u64(seed);
        for (id, addr) in members {
            if table.position(&id).is_some() {
                continue;
            }
            table.insert(Member::assumed_alive(id, addr, now), &mut rng);
        }
        MemberSnapshot(table.share())
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when it holds no member.
    pub fn is_empty(&self) -> bool {
        self.0.len() == 0
    }

    /// Its members.
    pub fn iter(&self) -> impl Iterator<Item = &Member<A>> {
        self.0.iter()
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

    /// Positions of the occupied slots, and those the probe order holds: always the same set.
    fn occupied_and_probed(t: &MemberTable<u32>) -> (Vec<u32>, Vec<u32>) {
        let occupied: Vec<u32> = (0..t.slots as u32).filter(|&p| slot(&t.chunks, p as usize).is_some()).collect();
        let mut probed = t.probe_order.clone();
        probed.sort_unstable();
        (occupied, probed)
    }

    #[test]
    fn a_table_cloned_from_a_snapshot_shares_its_members_until_it_changes_one_and_then_copies_only_that_chunk() {
        let names: Vec<(NodeId, u32)> =
            (0..1_000).map(|i| (NodeId::new(&alloc::format!("n{i}")).unwrap(), i)).collect();
        let snapshot = MemberSnapshot::alive(Instant::ZERO, names.iter().cloned(), 5);
        let mut t = snapshot.0.clone();
        let shared =
            |t: &MemberTable<u32>| t.chunks.iter().zip(&snapshot.0.chunks).filter(|(a, b)| Arc::ptr_eq(a, b)).count();
        let chunks = snapshot.0.chunks.len();
        assert_eq!(shared(&t), chunks, "a clone copies nothing");
        // Reading, probing and measuring round trips copy nothing either.
        let mut rng = SmallRng::seed_from_u64(1);
        for _ in 0..100 {
            let target = t.next_probe_target(&mut rng).unwrap();
            t.set_rtt(&target, Duration::from_millis(3));
            assert!(t.get(&target).is_some());
        }
        assert_eq!(shared(&t), chunks);
        let n7 = NodeId::new("n7").unwrap();
        t.set_state(&n7, MemberState::Suspect, Instant::from_millis(10));
        assert_eq!(shared(&t), chunks - 1, "one change copies one chunk");
        assert_eq!(t.get(&n7).unwrap().state, MemberState::Suspect);
        assert_eq!(snapshot.0.get(&n7).unwrap().state, MemberState::Alive, "the snapshot is untouched");
        t.set_rtt(&n7, Duration::from_millis(4));
        assert_eq!(t.rtt(&n7), Some(Duration::from_millis(4)));
        assert_eq!(snapshot.0.rtt(&n7), None, "round trips are the table's own");
    }

    #[test]
    fn a_table_agrees_with_a_plain_map_after_any_sequence_of_changes_whether_built_alone_or_cloned_from_a_snapshot() {
        use alloc::collections::BTreeMap;
        let pool: Vec<NodeId> = (0..120).map(|i| NodeId::new(&alloc::format!("m{i}")).unwrap()).collect();
        for seed in 0..200u64 {
            let mut rng = SmallRng::seed_from_u64(seed);
            let from_snapshot = seed % 2 == 0;
            // The model: name -> (state, incarnation, rtt in ms).
            let mut model: BTreeMap<NodeId, (MemberState, u32, Option<u64>)> = BTreeMap::new();
            let snapshot = MemberSnapshot::alive(Instant::ZERO, pool[..60].iter().cloned().zip(0..), seed);
            let mut t: MemberTable<u32> = if from_snapshot {
                for name in &pool[..60] {
                    model.insert(name.clone(), (MemberState::Alive, 0, None));
                }
                snapshot.0.clone()
            } else {
                MemberTable::new(seed)
            };
            for step in 0..300 {
                let name = &pool[rng.random_range(0..pool.len())];
                match rng.random_range(0..6) {
                    0 | 1 if !model.contains_key(name) => {
                        let state =
                            [MemberState::Alive, MemberState::Suspect, MemberState::Dead][rng.random_range(0..3)];
                        t.insert(member(name.as_str(), state), &mut rng);
                        model.insert(name.clone(), (state, 0, None));
                    }
                    2 => {
                        let removed = t.remove(name).map(|m| m.id);
                        assert_eq!(
                            removed.as_ref(),
                            model.remove(name).map(|_| name),
                            "seed {seed} step {step}: remove"
                        );
                    }
                    3 => {
                        let state = [MemberState::Alive, MemberState::Suspect, MemberState::Dead, MemberState::Left]
                            [rng.random_range(0..4)];
                        let old = t.set_state(name, state, Instant::from_millis(step));
                        assert_eq!(old, model.get(name).map(|e| e.0), "seed {seed} step {step}: set_state");
                        if let Some(e) = model.get_mut(name) {
                            e.0 = state;
                        }
                    }
                    4 => {
                        if let Some(m) = t.get_mut(name) {
                            m.incarnation += 1;
                        }
                        if let Some(e) = model.get_mut(name) {
                            e.1 += 1;
                        }
                    }
                    _ => {
                        let ms = rng.random_range(0..500u64);
                        t.set_rtt(name, Duration::from_millis(ms));
                        if let Some(e) = model.get_mut(name) {
                            e.2 = Some(ms);
                        }
                    }
                }
                assert_eq!(t.len(), model.len(), "seed {seed} step {step}: len");
                assert_eq!(
                    t.live_count(),
                    model.values().filter(|e| e.0.is_live()).count(),
                    "seed {seed} step {step}: live"
                );
                for name in &pool {
                    let got = t.get(name).map(|m| (m.state, m.incarnation, t.rtt(name).map(|d| d.as_millis() as u64)));
                    assert_eq!(got, model.get(name).cloned(), "seed {seed} step {step}: {name}");
                }
                let mut listed: Vec<NodeId> = t.iter().map(|m| m.id.clone()).collect();
                listed.sort();
                assert_eq!(listed, model.keys().cloned().collect::<Vec<_>>(), "seed {seed} step {step}: iter");
                let (occupied, probed) = occupied_and_probed(&t);
                assert_eq!(
                    occupied, probed,
                    "seed {seed} step {step}: every member, and only members, in the probe order"
                );
            }
            for name in &pool[..60] {
                let m = snapshot.0.get(name).unwrap();
                assert_eq!((m.state, m.incarnation), (MemberState::Alive, 0), "seed {seed}: the snapshot is untouched");
            }
            assert_eq!(snapshot.len(), 60);
        }
    }

    #[test]
    fn random_members_are_found_in_a_table_mostly_emptied_by_forgetting() {
        let mut rng = SmallRng::seed_from_u64(9);
        let mut t = MemberTable::new(1);
        for i in 0..1_000 {
            t.insert(member(&alloc::format!("m{i}"), MemberState::Alive), &mut rng);
        }
        for i in 10..1_000 {
            t.remove(&NodeId::new(&alloc::format!("m{i}")).unwrap());
        }
        for _ in 0..100 {
            assert_eq!(t.random_members(3, &mut rng, |_| true).len(), 3, "three of the ten left, every time");
        }
    }

    #[test]
    fn no_probe_target_when_nobody_is_live() {
        let mut rng = SmallRng::seed_from_u64(3);
        let mut t: MemberTable<u32> = MemberTable::new(1);
        t.insert(member("x", MemberState::Left), &mut rng);
        assert_eq!(t.next_probe_target(&mut rng), None);
    }
}
