//! The oracles: properties every seed must satisfy, and the time bounds they allow, derived from the
//! members' configurations (never tuned to make a seed pass).
//!
//! | oracle | property |
//! |---|---|
//! | formation | at <= 5% loss, members that started together all know each other within [`formation_bound`] of the last start |
//! | completeness | a crashed member is declared failed by every calm member within [`detection_bound`] |
//! | accuracy | at <= 5% loss, nobody declares a member failed while it runs, unless a partition, a stall, a slow receiver, a lossy one-way link or a forged accusation touched it or its accuser |
//! | convergence | within [`convergence_bound`] of the last fault healing, every member lists exactly the running members as live |
//! | agreement | (with push-pull on: it repairs missed incarnations) once loss stops too, every member lists every running member alive at the incarnation it holds itself |
//! | identity | a restarted member is alive in every calm member's view within [`identity_bound`] |
//! | broadcast | (with push-pull on: it is what repairs and reports) an accepted broadcast reaches every member that was up for the whole run exactly once, or its loss is reported (dropped by the origin, or missed by the receiver); at most once always; at <= 5% loss with no fault touching them, all of them |
//! | keyed | (with push-pull on) a keyed broadcast ends at its origin's latest value everywhere, and an older value never follows a newer one |
//! | reliable | a reliable message is delivered exactly once or its failure is reported to the sender; delivered when nothing stood in the way |
//! | recovery | a member declared failed while it runs is alive again in its accuser's view within [`recovery_bound`], when nothing stands between them |
//! | intake | no honest packet is refused on arrival: nothing undecodable, oversized, unauthenticated or taken for a replay |
//! | growth | no queue or table outgrows its bound |
//! | panic | nothing panics |

use alloc::string::String;
use core::fmt;
use core::time::Duration;

use super::scenario::Scenario;
use shoal_core::config::Config;

/// Which property failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Oracle {
    /// At <= 5% loss, members that started together all know each other within
    /// [`formation_bound`] of the last start.
    Formation,
    /// A crashed member is declared failed by every calm member within [`detection_bound`].
    Completeness,
    /// At <= 5% loss, nobody declares a member failed while it runs, unless a disturbance (a
    /// partition, a stall, a slow receiver, a lossy one-way link, a forged accusation) explains it.
    Accuracy,
    /// Within [`convergence_bound`] of the last fault healing, every member lists exactly the
    /// running members as live.
    Convergence,
    /// With push-pull on, once loss stops too, every member lists every running member alive at the
    /// incarnation that member holds itself.
    Agreement,
    /// A restarted member is alive in every calm member's view within [`identity_bound`].
    Identity,
    /// No member delivers a broadcast twice in one life; with push-pull on, an accepted broadcast
    /// also reaches every member that was up all along, or its loss is reported.
    Broadcast,
    /// With push-pull on, a keyed broadcast ends at its origin's latest value everywhere, and an
    /// older value never follows a newer one.
    Keyed,
    /// A reliable message is delivered exactly once or its failure is reported to the sender, and it
    /// is delivered when nothing stood in the way.
    Reliable,
    /// A member declared failed while it runs is alive again in its accuser's view within
    /// [`recovery_bound`], when nothing stands between them.
    Recovery,
    /// No honest packet is refused on arrival (undecodable, oversized, unauthenticated, or taken for
    /// a replay).
    Intake,
    /// No queue or table outgrows its bound.
    Growth,
    /// Nothing panics.
    Panic,
}

impl Oracle {
    /// Every oracle, in report order.
    pub const ALL: [Oracle; 13] = [
        Oracle::Formation,
        Oracle::Completeness,
        Oracle::Accuracy,
        Oracle::Convergence,
        Oracle::Agreement,
        Oracle::Identity,
        Oracle::Broadcast,
        Oracle::Keyed,
        Oracle::Reliable,
        Oracle::Recovery,
        Oracle::Intake,
        Oracle::Growth,
        Oracle::Panic,
    ];
}

impl fmt::Display for Oracle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// One failed property, with when and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The property that failed.
    pub oracle: Oracle,
    /// Virtual time of the failure, in ms.
    pub at_ms: u64,
    /// What was seen, for a person to read; members are named `n{i}`. Beyond three violations of
    /// one oracle, a last entry with `at_ms` 0 counts the rest; a panic has `at_ms` 0 and its message.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at {} ms: {}", self.oracle, self.at_ms, self.detail)
    }
}

/// The push-pull period of `config` in a cluster of `n`.
fn push_pull_period(config: &Config, n: usize) -> Duration {
    config.push_pull_period(n)
}

fn suspicion_max(config: &Config, n: usize) -> Duration {
    config.suspicion_timeouts(n).1
}

/// Time for news to reach every member by gossip with high probability: `O(log n)` rounds, with a
/// wide margin for loss.
fn dissemination(config: &Config, n: usize) -> Duration {
    let rounds = libm::ceil(libm::log2(n.max(2) as f64)) as u32;
    config.gossip_interval * (3 * rounds + 20)
}

/// Members that started together all know each other this long after the last one started.
pub fn formation_bound(s: &Scenario) -> Duration {
    super::scenario::formation_bound(s)
}

/// A crashed member is declared failed by every calm member within this bound: someone probes it
/// within 12 of its (possibly health-stretched) protocol periods (nobody probing it for `k`
/// periods has probability about `e^-k`), the suspicion runs its longest timeout, and the death
/// spreads.
pub fn detection_bound(s: &Scenario) -> Duration {
    let slow = s.slowest();
    let n = s.nodes;
    slow.probe_interval * 12 * slow.awareness_max_multiplier + suspicion_max(&slow, n) + dissemination(&slow, n)
}

/// After the last fault heals, every member lists exactly the running members as live within this
/// bound: two push-pull periods (the anti-entropy that repairs anything gossip missed), two
/// re-announce periods (how split halves find each other again), a suspicion timeout (to refute what
/// the other side believed), and dissemination. With push-pull off, a member that missed the news of
/// another learns of it from probing: within two rounds of probes, `2n` of its periods.
pub fn convergence_bound(s: &Scenario) -> Duration {
    let slow = s.slowest();
    let n = s.nodes;
    anti_entropy(s)
        + slow.reannounce_interval * 2
        + suspicion_max(&slow, n)
        + slow.join_timeout
        + dissemination(&slow, n)
}

/// How long anti-entropy takes to repair anything gossip missed: two push-pull periods, or with
/// push-pull off, two rounds of probes (the member that was missed probes the one that missed it
/// and is asked for its record; a member that missed a death probes the dead one itself), `2n`
/// protocol periods. Those periods are health-stretched: on a lossy network a member's own probes
/// fail, its local health multiplier climbs, and it probes up to `awareness_max_multiplier` times
/// less often (seed 22347: 20% loss, 97 members, a member that missed a death gossiped inside a
/// partition probes 1.6 s apart and reaches the dead one after a minute).
fn anti_entropy(s: &Scenario) -> Duration {
    let slow = s.slowest();
    match push_pull_period(&slow, s.nodes) {
        d if d.is_zero() => slow.probe_interval * slow.awareness_max_multiplier * (2 * s.nodes as u32),
        d => d * 2,
    }
}

/// A restarted member is alive in every calm member's view this long after it starts: its join, a
/// re-announce, the refutation of its old death, and dissemination (with push-pull off, a member
/// that missed all that learns it when the restarted one probes it).
pub fn identity_bound(s: &Scenario) -> Duration {
    let slow = s.slowest();
    let n = s.nodes;
    let repair = if s.push_pull_off { anti_entropy(s) } else { Duration::ZERO };
    slow.join_timeout + slow.reannounce_interval * 2 + suspicion_max(&slow, n) + dissemination(&slow, n) + repair
}

/// A member falsely declared failed is alive again in its accuser's view this long after: the
/// accuser gossips the failure within a gossip interval, whoever holds the member's newer record
/// answers at once, and the member refutes a claim at its own incarnation as soon as it hears it.
pub fn recovery_bound(s: &Scenario) -> Duration {
    let slow = s.slowest();
    slow.probe_interval + slow.gossip_interval * 15
}

/// How long a suspicion and its aftermath can take: the window in which a disturbance explains a
/// false failure.
pub fn accuracy_window(s: &Scenario) -> Duration {
    let slow = s.slowest();
    suspicion_max(&slow, s.nodes) * 2 + slow.probe_interval * 10
}

/// Time for broadcasts and reliable messages to settle after the cluster agrees again: push-pull
/// periods for the repairs, or, for a hole nobody can fill any more, the time for the news of it to
/// reach every member by digests plus the retention after which it is given up and reported; and
/// the reliable retries.
pub fn settle_bound(s: &Scenario) -> Duration {
    let slow = s.slowest();
    let pp = push_pull_period(&slow, s.nodes);
    let repairs = pp * 3 + dissemination(&slow, s.nodes);
    // News of a broadcast nobody holds any more spreads from digest to digest, one push-pull at a
    // time: an epidemic over push-pull periods, `log2 n` of them and a margin.
    let rounds = libm::ceil(libm::log2(s.nodes.max(2) as f64)) as u32 + 3;
    let reports = pp * rounds + slow.broadcast_retention + slow.housekeeping_period() * 2;
    repairs.max(reports) + slow.reliable_timeout * slow.reliable_attempts
}
