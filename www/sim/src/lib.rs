//! The dashboard's simulator: [`shoal_sim::Simulation`] behind a compact wasm-bindgen API.
//!
//! The page owns the clock: every animation frame it calls [`SimWorld::advance`] with the virtual
//! milliseconds to run, then reads flat typed arrays, cheap to cross the JS boundary:
//!
//! - [`SimWorld::states`]: one byte per node, what the cluster believes (0 alive, 1 suspect,
//!   2 failed, 3 left), estimated by [`view::Sampler`];
//! - [`SimWorld::truth`]: one byte per node, the ground truth (0 up, 1 crashed, 2 stalled, 3 left);
//! - [`SimWorld::take_messages`]: the packets sent since the last call, five numbers each
//!   `[sent_ms, arrives_ms or -1 when lost, from, to, kind]`, kinds in [`KIND_NAMES`] order;
//! - [`SimWorld::detections`] and [`SimWorld::spread`] for the charts.
//!
//! Faults (loss, latency, partition, stall, kill, restart) apply from the current virtual time.
//! Everything is seeded, so a run is reproducible from its seed and the faults applied.

pub mod view;

use core::time::Duration;

use shoal_core::Config;
use shoal_sim::{LinkModel, SimConfig, Simulation};
use wasm_bindgen::prelude::*;

/// Message kind names, indexed by `TransmitKind::index`, the `kind` codes of [`SimWorld::take_messages`].
pub const KIND_NAMES: [&str; 7] = ["ping", "ack", "ping-req", "nack", "gossip", "push-pull", "direct"];

/// Most trace entries kept between two `take_messages` calls (older ones are dropped).
const MAX_PENDING_MESSAGES: usize = 200_000;

/// A simulated cluster for the page.
#[wasm_bindgen]
pub struct SimWorld {
    sim: Simulation,
    sampler: view::Sampler,
    pending: Vec<f64>,
    restart_seed: u32,
}

#[wasm_bindgen]
impl SimWorld {
    /// `nodes` members (1 to 10,000), warm-started (everyone knows everyone), with the protocol
    /// `preset` (`lan`, `wan`, `local`, `browser`) over a link of `latency_ms` ± `jitter_ms`.
    #[wasm_bindgen(constructor)]
    pub fn new(nodes: u32, seed: f64, preset: &str, latency_ms: u32, jitter_ms: u32) -> SimWorld {
        let nodes = nodes.clamp(1, 10_000) as usize;
        let node = match preset {
            "wan" => Config::wan(),
            "local" => Config::local(),
            "browser" => Config::browser(),
            _ => Config::lan(),
        };
        let link = LinkModel {
            latency: Duration::from_millis(u64::from(latency_ms.max(1))),
            jitter: Duration::from_millis(u64::from(jitter_ms)),
            loss: 0.0,
        };
        let config = SimConfig { node, link, ..SimConfig::lan(nodes, seed as u64) };
        let mut sim = Simulation::new(config);
        sim.set_tracing(true);
        let mut world = SimWorld { sim, sampler: view::Sampler::default(), pending: Vec::new(), restart_seed: 0 };
        world.sampler.sample(&world.sim);
        world
    }

    /// Number of nodes.
    pub fn len(&self) -> u32 {
        self.sim.len() as u32
    }

    /// True when there are no nodes (never: the constructor makes at least one).
    pub fn is_empty(&self) -> bool {
        self.sim.is_empty()
    }

    /// Virtual time, in ms.
    pub fn now_ms(&self) -> f64 {
        self.sim.now().as_millis() as f64
    }

    /// Runs `ms` of virtual time, collects the packets sent, and refreshes the sampled states.
    pub fn advance(&mut self, ms: f64) {
        if ms > 0.0 {
            self.sim.run_for(Duration::from_millis(ms as u64));
        }
        for t in self.sim.drain_trace() {
            let arrives = t.arrives.map_or(-1.0, |a| a.as_millis() as f64);
            self.pending.extend_from_slice(&[
                t.sent.as_millis() as f64,
                arrives,
                f64::from(t.from),
                f64::from(t.to),
                t.kind.index() as f64,
            ]);
        }
        if self.pending.len() > MAX_PENDING_MESSAGES * 5 {
            let excess = self.pending.len() - MAX_PENDING_MESSAGES * 5;
            self.pending.drain(..excess);
        }
        self.sampler.sample(&self.sim);
    }

    /// The packets sent since the last call: `[sent_ms, arrives_ms | -1, from, to, kind]` each.
    pub fn take_messages(&mut self) -> Vec<f64> {
        core::mem::take(&mut self.pending)
    }

    /// What the cluster believes about each node: 0 alive, 1 suspect, 2 failed, 3 left.
    pub fn states(&self) -> Vec<u8> {
        self.sampler.states.clone()
    }

    /// The ground truth per node: 0 up, 1 crashed, 2 stalled, 3 left.
    pub fn truth(&self) -> Vec<u8> {
        (0..self.sim.len())
            .map(|i| {
                if self.sim.recorder().has_left(i) {
                    3
                } else if !self.sim.is_up(i) {
                    1
                } else if self.sim.is_stalled(i) {
                    2
                } else {
                    0
                }
            })
            .collect()
    }

    /// Share of sampled beliefs that match the ground truth (1.0: converged).
    pub fn agreement(&self) -> f64 {
        self.sampler.agreement
    }

    /// `[suspecting, failed]`: shares of sampled members that hold `node` suspect or worse, and
    /// failed (or no longer know it).
    pub fn spread(&self, node: u32) -> Vec<f64> {
        view::spread(&self.sim, node as usize).to_vec()
    }

    /// One row per crash: `[node, crashed_at_ms, first_suspicion_ms, first_failure_ms, all_failed_ms]`,
    /// the last three relative to the crash, -1 while not reached.
    pub fn detections(&self) -> Vec<f64> {
        let ms = |d: Option<Duration>| d.map_or(-1.0, |d| d.as_millis() as f64);
        let mut out = Vec::new();
        for d in self.sim.recorder().detections() {
            out.extend_from_slice(&[
                d.target as f64,
                d.crashed_at.as_millis() as f64,
                ms(d.first_suspicion),
                ms(d.first_failure),
                ms(d.all_failed),
            ]);
        }
        out
    }

    /// Packets sent so far, by kind (in [`KIND_NAMES`] order).
    pub fn packets_by_kind(&self) -> Vec<f64> {
        self.sim.recorder().packets_by_kind().iter().map(|&c| c as f64).collect()
    }

    /// `[probe_interval_ms, probe_timeout_ms, gossip_interval_ms, gossip_nodes]` of the preset.
    pub fn protocol(&self) -> Vec<f64> {
        let c = &self.sim.config().node;
        vec![
            c.probe_interval.as_millis() as f64,
            c.probe_timeout.as_millis() as f64,
            c.gossip_interval.as_millis() as f64,
            c.gossip_nodes as f64,
        ]
    }

    /// Sets the loss probability (0 to 1) of best-effort packets.
    pub fn set_loss(&mut self, loss: f64) {
        let link = LinkModel { loss: loss.clamp(0.0, 1.0), ..self.sim.network().link() };
        self.sim.set_link(link);
    }

    /// Sets the one-way latency and jitter, in ms.
    pub fn set_latency(&mut self, latency_ms: u32, jitter_ms: u32) {
        let link = LinkModel {
            latency: Duration::from_millis(u64::from(latency_ms.max(1))),
            jitter: Duration::from_millis(u64::from(jitter_ms)),
            ..self.sim.network().link()
        };
        self.sim.set_link(link);
    }

    /// Splits the nodes: `groups[i]` is node `i`'s side; packets between sides are dropped.
    pub fn partition(&mut self, groups: &[u16]) {
        let mut groups = groups.to_vec();
        groups.resize(self.sim.len(), 0);
        self.sim.partition(groups);
    }

    /// Ends any partition.
    pub fn heal(&mut self) {
        self.sim.heal();
    }

    /// True while a partition is in force.
    pub fn partitioned(&self) -> bool {
        (1..self.sim.len()).any(|i| self.sim.network().is_partitioned(0, i as u32))
    }

    /// Crashes node `i` (no goodbye).
    pub fn kill(&mut self, i: u32) {
        if (i as usize) < self.sim.len() {
            self.sim.crash(i as usize);
        }
    }

    /// Crashes up to `k` random nodes that are up; returns their indices.
    pub fn kill_random(&mut self, k: u32) -> Vec<u32> {
        let mut killed = Vec::new();
        for _ in 0..k {
            let up = (0..self.sim.len()).filter(|&i| self.sim.is_up(i)).count();
            if up <= 1 {
                break;
            }
            if let Some(i) = self.sim.random_up_node() {
                self.sim.crash(i);
                killed.push(i as u32);
            }
        }
        killed
    }

    /// Restarts crashed node `i` with the same name; it joins through a node that is up.
    pub fn restart(&mut self, i: u32) {
        let i = i as usize;
        if i >= self.sim.len() || self.sim.is_up(i) {
            return;
        }
        let n = self.sim.len();
        let seed = (0..n).map(|k| (self.restart_seed as usize + k) % n).find(|&s| s != i && self.sim.is_up(s));
        self.restart_seed = self.restart_seed.wrapping_add(7);
        if let Some(s) = seed {
            self.sim.restart(i, &[s as u32]);
        }
    }

    /// Restarts every crashed node; returns how many.
    pub fn restart_all(&mut self) -> u32 {
        let down: Vec<u32> = (0..self.sim.len())
            .filter(|&i| !self.sim.is_up(i) && !self.sim.recorder().has_left(i))
            .map(|i| i as u32)
            .collect();
        for &i in &down {
            self.restart(i);
        }
        down.len() as u32
    }

    /// Freezes node `i` for `ms` (a GC pause): it handles nothing, its input queues up.
    pub fn stall(&mut self, i: u32, ms: u32) {
        if (i as usize) < self.sim.len() {
            self.sim.stall(i as usize, Duration::from_millis(u64::from(ms)));
        }
    }

    /// Node `i` leaves gracefully.
    pub fn leave(&mut self, i: u32) {
        if (i as usize) < self.sim.len() {
            self.sim.leave(i as usize);
        }
    }
}

#[cfg(test)]
mod tests;
