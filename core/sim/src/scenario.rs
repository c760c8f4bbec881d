//! Standard experiments, each a function from parameters to a report. The `shoal-sim` binary, the
//! simulation tests and the benchmarks all run these, so the figures in BENCHMARKS.md come from the
//! same code the tests check.

use alloc::vec::Vec;
use core::time::Duration;

use rand::Rng;

use super::network::LinkModel;
use super::world::{SimConfig, Simulation};
use shoal_core::config::{Config, Lifeguard};

/// Median of a sample (0 for an empty one).
pub fn median(values: &[f64]) -> f64 {
    percentile(values, 0.5)
}

/// The `p` quantile (0.0 to 1.0) of a sample, nearest-rank.
pub fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v: Vec<f64> = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = libm::ceil(p * v.len() as f64).max(1.0) as usize;
    v[rank.min(v.len()) - 1]
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Crash detection over many trials.
#[derive(Clone, Debug, Default)]
pub struct DetectionReport {
    /// Crashes made: the `trials` asked for, but at most `nodes - 2`, and fewer if no node was left up.
    pub trials: usize,
    /// Crash to first suspicion anywhere, in protocol periods, per trial.
    pub first_detection_periods: Vec<f64>,
    /// Crash until every member had the node failed, in seconds, per trial (detected trials only).
    pub all_failed_secs: Vec<f64>,
    /// Trials where not every member declared the failure within the time limit.
    pub undetected: usize,
    /// `Failed` events about members that were up, over the whole run
    /// (see [`crate::Recorder::false_positives`]).
    pub false_positives: u64,
}

/// Crashes `trials` distinct random members of a warm `nodes`-member cluster one after the other, each
/// at a random moment, and records how each crash was detected.
pub fn crash_detection(nodes: usize, config: Config, link: LinkModel, trials: usize, seed: u64) -> DetectionReport {
    let period = config.probe_interval;
    let mut sim = Simulation::new(SimConfig { node: config, link, ..SimConfig::lan(nodes, seed) });
    sim.run_for(period * 3);
    let mut report = DetectionReport::default();
    for _ in 0..trials.min(nodes.saturating_sub(2)) {
        let offset = Duration::from_millis(sim.rng().random_range(0..period.as_millis() as u64));
        sim.run_for(offset);
        let Some(victim) = sim.random_up_node() else { break };
        sim.crash(victim);
        let done = sim.run_until_condition(period * 120, |s| {
            s.recorder().detections().last().is_some_and(|d| d.all_failed.is_some())
        });
        report.trials += 1;
        let d = sim.recorder().detections().last().cloned();
        if let Some(d) = d {
            if let Some(first) = d.first_suspicion {
                report.first_detection_periods.push(secs(first) / secs(period));
            }
            match (done, d.all_failed) {
                (Some(_), Some(all)) => report.all_failed_secs.push(secs(all)),
                _ => report.undetected += 1,
            }
        }
        // Let the failure's gossip settle before the next crash.
        sim.run_for(period * 2);
    }
    report.false_positives = sim.recorder().false_positives();
    report
}

/// False positives under loss and stalls.
#[derive(Clone, Debug, Default)]
pub struct FalsePositiveReport {
    /// True when every Lifeguard extension was on ([`Lifeguard::ON`]); false for any other setting.
    pub lifeguard: bool,
    /// Number of members.
    pub nodes: usize,
    /// The virtual time the run was asked to last (the `duration` argument); the run may go on a
    /// little past it, to the end of its last stall or 10 ms step.
    pub simulated: Duration,
    /// `Failed` events about members that were up.
    pub false_positives: u64,
    /// False positives about members not stalled in the 10 s before.
    pub false_positives_of_healthy: u64,
    /// `Suspected` events about members that were up (most are refuted in time).
    pub suspicions_of_live: u64,
    /// Stalls applied (one per [`crate::Simulation::stall`] call, so a member stalled twice counts
    /// twice). Always 0 for [`StallPattern::SlowReceive`], which slows members instead.
    pub stalls: u64,
}

/// How stalls are spread over the members in [`false_positives`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StallPattern {
    /// Every `stall`, a fresh random `share` of all members freezes for `stall` (transient pauses that
    /// hit everyone in turn).
    Rotating,
    /// A fixed random `share` of the members are slow: each freezes for `stall`, runs for a random
    /// time up to `stall`, and freezes again.
    SlowMembers,
    /// A fixed random `share` of the members handle every received packet `stall` late while their
    /// timers run on time (the Lifeguard paper's slow message processing).
    SlowReceive,
}

/// Runs a warm cluster for `duration` with `loss` packet loss while stalls hit `share` of the members
/// as `pattern` describes, and counts false positives.
#[allow(clippy::too_many_arguments)]
pub fn false_positives(
    nodes: usize,
    preset: Config,
    lifeguard: Lifeguard,
    loss: f64,
    share: f64,
    stall: Duration,
    pattern: StallPattern,
    duration: Duration,
    seed: u64,
) -> FalsePositiveReport {
    let mut node = preset;
    node.lifeguard = lifeguard;
    let link = LinkModel { loss, ..LinkModel::LAN };
    let mut sim = Simulation::new(SimConfig { node, link, ..SimConfig::lan(nodes, seed) });
    let count = libm::round(nodes as f64 * share) as usize;
    let end = sim.now() + duration;
    let mut stalls = 0;
    match pattern {
        StallPattern::Rotating => {
            while sim.now() < end {
                for _ in 0..count {
                    let i = sim.rng().random_range(0..nodes);
                    sim.stall(i, stall);
                    stalls += 1;
                }
                sim.run_for(stall);
            }
        }
        StallPattern::SlowReceive => {
            for k in 0..count {
                sim.set_receive_delay(k * nodes / count.max(1), stall);
            }
            sim.run_until(end);
        }
        StallPattern::SlowMembers => {
            let slow: Vec<usize> = (0..count).map(|k| k * nodes / count.max(1)).collect();
            let stall_ms = shoal_core::time::duration_millis(stall).max(1);
            let mut next_stall: Vec<shoal_core::time::Instant> = slow.iter().map(|_| sim.now()).collect();
            let tick = Duration::from_millis(10);
            while sim.now() < end {
                let now = sim.now();
                for (k, &i) in slow.iter().enumerate() {
                    if next_stall[k] <= now {
                        sim.stall(i, stall);
                        stalls += 1;
                        let pause = Duration::from_millis(sim.rng().random_range(0..stall_ms));
                        next_stall[k] = now + stall + pause;
                    }
                }
                sim.run_for(tick);
            }
        }
    }
    FalsePositiveReport {
        lifeguard: lifeguard == Lifeguard::ON,
        nodes,
        simulated: duration,
        false_positives: sim.recorder().false_positives(),
        false_positives_of_healthy: sim.recorder().false_positives_of_healthy(),
        suspicions_of_live: sim.recorder().suspicions_of_live(),
        stalls,
    }
}

/// A partition and its healing.
#[derive(Clone, Debug, Default)]
pub struct PartitionReport {
    /// Time until each side saw the other side as failed.
    pub split_detected: Option<Duration>,
    /// Time from healing the network until every member saw every other as alive again.
    pub heal_converged: Option<Duration>,
    /// `(seconds since heal, agreement)` sampled every protocol period.
    pub curve: Vec<(f64, f64)>,
}

/// Splits a warm cluster into two halves for `split_for`, heals it, and measures convergence.
pub fn partition_heal(nodes: usize, config: Config, split_for: Duration, seed: u64) -> PartitionReport {
    let period = config.probe_interval;
    let mut sim = Simulation::new(SimConfig { node: config, ..SimConfig::lan(nodes, seed) });
    sim.run_for(period * 3);
    let half = nodes / 2;
    sim.partition((0..nodes).map(|i| u16::from(i >= half)).collect());
    let split_detected = sim.run_until_condition(split_for, |s| sees_split(s, half));
    let start = sim.now();
    sim.run_until(start + split_for);
    sim.heal();
    let mut report = PartitionReport { split_detected, ..PartitionReport::default() };
    let heal_at = sim.now();
    for _ in 0..600 {
        let agreement = sim.agreement();
        report.curve.push((secs(sim.now().saturating_duration_since(heal_at)), agreement));
        if agreement >= 1.0 {
            report.heal_converged = Some(sim.now().saturating_duration_since(heal_at));
            break;
        }
        sim.run_for(period);
    }
    report
}

fn sees_split(sim: &Simulation, half: usize) -> bool {
    let n = sim.len();
    (0..n).all(|i| {
        let Some(node) = sim.node(i) else { return true };
        (0..n)
            .filter(|&j| (j < half) != (i < half))
            .all(|j| node.member(sim.name(j)).is_some_and(|m| !m.state.is_live()))
    })
}

/// Spread of one broadcast.
#[derive(Clone, Debug, Default)]
pub struct BroadcastReport {
    /// Number of members, the sender included.
    pub nodes: usize,
    /// Members that received the broadcast, each counted once; at most `nodes - 1`, as the sender
    /// does not receive its own.
    pub delivered: usize,
    /// Time from the broadcast until every member that was up had it; `None` if that took more than
    /// 60 s of virtual time.
    pub all_delivered: Option<Duration>,
    /// `all_delivered` in gossip intervals.
    pub rounds: Option<f64>,
}

/// One member of a warm cluster broadcasts once; measures when every member has it.
pub fn broadcast_spread(nodes: usize, loss: f64, seed: u64) -> BroadcastReport {
    let config = Config::lan();
    let gossip = config.gossip_interval;
    let link = LinkModel { loss, ..LinkModel::LAN };
    let mut sim = Simulation::new(SimConfig { node: config, link, ..SimConfig::lan(nodes, seed) });
    sim.run_for(Duration::from_secs(2));
    let origin = sim.random_up_node().unwrap_or(0);
    let _ = sim.broadcast(origin, "bench", b"hello, shoal");
    let took = sim.run_until_condition(Duration::from_secs(60), |s| {
        s.recorder().broadcasts().first().is_some_and(|b| b.all_delivered.is_some())
    });
    let b = &sim.recorder().broadcasts()[0];
    BroadcastReport {
        nodes,
        delivered: b.delivered,
        all_delivered: took.and(b.all_delivered),
        rounds: b.all_delivered.map(|d| secs(d) / secs(gossip)),
    }
}

/// Work done by a large steady-state run.
#[derive(Clone, Debug, Default)]
pub struct ScaleReport {
    /// Number of members.
    pub nodes: usize,
    /// Protocol periods simulated (probe intervals of [`Config::lan`]).
    pub periods: u32,
    /// Packets and frames all members sent over the run (see [`crate::Recorder::packets_sent`]).
    pub packets: u64,
    /// Bytes of those packets and frames.
    pub bytes: u64,
    /// `Failed` events about members that were up (see [`crate::Recorder::false_positives`]).
    pub false_positives: u64,
}

/// Runs a warm `nodes`-member LAN cluster for `periods` protocol periods with no faults.
pub fn steady_state(nodes: usize, periods: u32, seed: u64) -> ScaleReport {
    let config = Config::lan();
    let period = config.probe_interval;
    let mut sim = Simulation::new(SimConfig { node: config, ..SimConfig::lan(nodes, seed) });
    sim.run_for(period * periods);
    ScaleReport {
        nodes,
        periods,
        packets: sim.recorder().packets_sent(),
        bytes: sim.recorder().bytes_sent(),
        false_positives: sim.recorder().false_positives(),
    }
}

/// Traffic of a steady warm cluster, per kind of transmit: what each member sends per second.
#[derive(Clone, Debug, Default)]
pub struct TrafficReport {
    /// Number of members.
    pub nodes: usize,
    /// Virtual seconds measured (after the warm-up).
    pub secs: f64,
    /// Packets and frames sent over the measured time, per kind (in the order of [`crate::KINDS`]).
    pub packets: [u64; 7],
    /// Their bytes, per kind.
    pub bytes: [u64; 7],
    /// Periodic push-pulls that carried a digest instead of a view, summed over members.
    pub member_digests: u64,
    /// Push-pull requests and answers that went as plain packets, summed over members.
    pub push_pulls_as_packets: u64,
    /// All push-pull requests and answers sent, summed over members.
    pub push_pulls: u64,
    /// `Failed` events about members that were up, over the whole run.
    pub false_positives: u64,
}

impl TrafficReport {
    /// Bytes per member per second, all kinds.
    pub fn bytes_per_member_s(&self) -> f64 {
        self.bytes.iter().sum::<u64>() as f64 / self.nodes as f64 / self.secs
    }

    /// Packets per member per second, all kinds.
    pub fn packets_per_member_s(&self) -> f64 {
        self.packets.iter().sum::<u64>() as f64 / self.nodes as f64 / self.secs
    }
}

/// Runs a warm `nodes`-member cluster of `config` members with no faults: first until every
/// member's first periodic push-pull is behind it (the push-pull period at this size, plus its
/// jitter), then measures `periods` push-pull periods of traffic, by kind.
pub fn traffic(nodes: usize, config: Config, periods: u32, seed: u64) -> TrafficReport {
    let push_pull = config.push_pull_period(nodes);
    let warm_up = push_pull + config.push_pull_interval;
    let mut sim = Simulation::new(SimConfig { node: config, ..SimConfig::lan(nodes, seed) });
    sim.run_for(warm_up);
    let (packets, bytes) = (sim.recorder().packets_by_kind(), sim.recorder().bytes_by_kind());
    let sum = |sim: &Simulation, stat: fn(&shoal_core::Stats) -> u64| -> u64 {
        (0..nodes).filter_map(|i| sim.node(i)).map(|n| stat(&n.stats())).sum()
    };
    let digests_before = sum(&sim, |s| s.member_digests_sent);
    let as_packets_before = sum(&sim, |s| s.push_pulls_as_packets);
    let push_pulls_before = sum(&sim, |s| s.push_pulls_sent);
    let measured = push_pull * periods.max(1);
    sim.run_for(measured);
    let after = (sim.recorder().packets_by_kind(), sim.recorder().bytes_by_kind());
    let digests_after = sum(&sim, |s| s.member_digests_sent);
    TrafficReport {
        nodes,
        secs: secs(measured),
        packets: core::array::from_fn(|k| after.0[k] - packets[k]),
        bytes: core::array::from_fn(|k| after.1[k] - bytes[k]),
        member_digests: digests_after - digests_before,
        push_pulls_as_packets: sum(&sim, |s| s.push_pulls_as_packets) - as_packets_before,
        push_pulls: sum(&sim, |s| s.push_pulls_sent) - push_pulls_before,
        false_positives: sim.recorder().false_positives(),
    }
}
