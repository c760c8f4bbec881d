//! What the cluster believes about each node, estimated from a rotating sample of observers.
//!
//! Asking every node about every other costs O(n²) per frame (4 million lookups at 2,000 nodes), so
//! each [`Sampler::sample`] walks the member lists of at most [`OBSERVERS`] nodes that are up, a
//! different slice of them every call, and votes: a node is *failed* when at least half of the
//! observers that know it hold it dead, *left* likewise, *suspect* when any observer suspects it or
//! holds it dead, *alive* otherwise. Nodes no observer knows (reaped, or not joined yet) take their
//! ground truth. The same walk gives the share of (observer, member) beliefs that match the truth
//! exactly: alive for a node that is up, failed (or forgotten) for one that is down; a suspicion is
//! never right, so a partition shows up before anyone is declared failed.

use shoal_core::MemberState;
use shoal_sim::Simulation;

/// Observers consulted per sample.
pub const OBSERVERS: usize = 32;

/// Node state codes shared with the page (`states()`).
pub const ALIVE: u8 = 0;
pub const SUSPECT: u8 = 1;
pub const FAILED: u8 = 2;
pub const LEFT: u8 = 3;

/// Reusable buffers for the vote.
#[derive(Debug, Default)]
pub struct Sampler {
    votes: Vec<[u16; 4]>,
    offset: usize,
    /// Per-node state code, after the last sample.
    pub states: Vec<u8>,
    /// Share of sampled beliefs that match the ground truth exactly, 0.0 to 1.0.
    pub agreement: f64,
}

/// Node index from a simulated node's name (`n{i}`).
pub fn index_of(name: &str) -> Option<usize> {
    name.strip_prefix('n')?.parse().ok()
}

impl Sampler {
    /// Votes over a fresh slice of observers and updates `states` and `agreement`.
    pub fn sample(&mut self, sim: &Simulation) {
        let n = sim.len();
        self.votes.clear();
        self.votes.resize(n, [0; 4]);
        self.states.resize(n, ALIVE);
        let up: Vec<usize> = (0..n).filter(|&i| sim.is_up(i)).collect();
        let (mut right, mut total) = (0u64, 0u64);
        if !up.is_empty() {
            let take = OBSERVERS.min(up.len());
            let stride = (up.len() / take).max(1);
            self.offset = (self.offset + 1) % stride;
            for k in 0..take {
                let observer = up[(self.offset + k * stride) % up.len()];
                let Some(node) = sim.node(observer) else { continue };
                for m in node.members() {
                    let Some(j) = index_of(m.id.as_str()).filter(|&j| j < n) else { continue };
                    self.votes[j][m.state as usize] += 1;
                    if !sim.recorder().has_left(j) {
                        total += 1;
                        let correct = if sim.is_up(j) { m.state == MemberState::Alive } else { !m.state.is_live() };
                        right += u64::from(correct);
                    }
                }
            }
        }
        self.agreement = if total == 0 { 1.0 } else { right as f64 / total as f64 };
        for (j, v) in self.votes.iter().enumerate() {
            let known = u32::from(v[0]) + u32::from(v[1]) + u32::from(v[2]) + u32::from(v[3]);
            let [_, suspect, dead, left] = v.map(u32::from);
            self.states[j] = if known == 0 {
                if sim.recorder().has_left(j) {
                    LEFT
                } else if sim.is_up(j) {
                    ALIVE
                } else {
                    FAILED
                }
            } else if dead * 2 >= known {
                FAILED
            } else if left * 2 >= known {
                LEFT
            } else if suspect + dead > 0 {
                SUSPECT
            } else {
                ALIVE
            };
        }
    }
}

/// How far the news about node `target` has spread: `[suspecting, failed]`, the shares of sampled
/// members that hold it suspect or worse, and dead or gone.
pub fn spread(sim: &Simulation, target: usize) -> [f64; 2] {
    let name = sim.name(target).clone();
    let (mut suspecting, mut failed, mut total) = (0u32, 0u32, 0u32);
    let up: Vec<usize> = (0..sim.len()).filter(|&i| i != target && sim.is_up(i)).collect();
    let stride = (up.len() / (OBSERVERS * 4)).max(1);
    for &i in up.iter().step_by(stride) {
        let Some(node) = sim.node(i) else { continue };
        total += 1;
        let state = node.member(&name).map(|m| m.state);
        suspecting += u32::from(state != Some(MemberState::Alive));
        failed += u32::from(!state.is_some_and(MemberState::is_live));
    }
    if total == 0 {
        return [1.0, 1.0];
    }
    [f64::from(suspecting) / f64::from(total), f64::from(failed) / f64::from(total)]
}

// The votes are indexed by the core's state discriminants, which must match the page's codes.
const _: () = assert!(MemberState::Alive as u8 == ALIVE);
const _: () = assert!(MemberState::Suspect as u8 == SUSPECT);
const _: () = assert!(MemberState::Dead as u8 == FAILED);
const _: () = assert!(MemberState::Left as u8 == LEFT);
