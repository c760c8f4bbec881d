//! A swarm scenario: everything one seed draws, as plain data.
//!
//! [`Scenario::draw`] turns a seed into a cluster (size, presets, network, encryption, how it starts)
//! and a schedule of faults and workload. The schedule is data, not code, so a failing scenario can
//! be printed, replayed and shrunk: [`Scenario::spec`] writes it as a short replay spec (the seed plus
//! whatever shrinking removed) that [`Scenario::from_spec`] reads back into the identical scenario.
//!
//! Times are virtual milliseconds since the simulation started. A scenario has three phases:
//! formation (members start, warm or one by one), faults (from [`Scenario::faults_from`] on), and
//! quiet (from [`Scenario::heal_at`], when every fault has ended, until the end). The oracles'
//! bounds are measured from these instants.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use shoal_core::config::Config;

/// A configuration preset a member runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preset {
    /// [`Config::lan`]: a local network, one-second protocol period.
    Lan,
    /// [`Config::wan`]: wide-area links, long probe period and timeout.
    Wan,
    /// [`Config::local`]: one machine, everything fast.
    Local,
    /// [`Config::browser`]: browser and edge members behind a relay, fast detection.
    Browser,
}

impl Preset {
    /// The preset's protocol configuration.
    pub fn config(self) -> Config {
        match self {
            Preset::Lan => Config::lan(),
            Preset::Wan => Config::wan(),
            Preset::Local => Config::local(),
            Preset::Browser => Config::browser(),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Preset::Lan => "lan",
            Preset::Wan => "wan",
            Preset::Local => "local",
            Preset::Browser => "browser",
        }
    }
}

/// Encryption of the whole cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encryption {
    /// Plaintext packets, no keyring.
    Off,
    /// Every member encrypts with one shared key that never changes.
    On,
    /// On, and the key is rotated while faults run (see [`FaultKind::RotateKey`]).
    Rotating,
}

/// How the cluster forms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// Every member starts knowing every other, as after a long quiet run.
    Warm,
    /// Members start one every `spacing_ms` and join through the first three.
    Cold {
        /// Virtual milliseconds between two members starting (0: all at once).
        spacing_ms: u64,
    },
}

/// One scheduled fault or piece of workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// The member dies without a word.
    Crash {
        /// Index of the member.
        node: u32,
    },
    /// A member that crashed or left starts again as a new process with the same name and address,
    /// joining through members that are up.
    Restart {
        /// Index of the member.
        node: u32,
    },
    /// The member leaves gracefully, then stops.
    Leave {
        /// Index of the member.
        node: u32,
    },
    /// The member freezes (a GC pause, a stopped VM): no timers, no packets, then a backlog.
    Stall {
        /// Index of the member.
        node: u32,
        /// How long it stays frozen, in virtual milliseconds.
        ms: u64,
    },
    /// The member handles every packet `delay_ms` late while its timers run on time.
    SlowReceive {
        /// Index of the member.
        node: u32,
        /// How late it handles each packet, in virtual milliseconds.
        delay_ms: u64,
        /// How long it stays slow, in virtual milliseconds.
        for_ms: u64,
    },
    /// `side` is cut off from everyone else for `for_ms`.
    Partition {
        /// Indices of the members cut off from the rest. While several partitions are in force,
        /// two members talk only if none of them separates the two.
        side: Vec<u32>,
        /// How long the partition lasts, in virtual milliseconds.
        for_ms: u64,
    },
    /// `count` broadcasts in a burst; with `keys > 0` they are keyed, spread over that many keys.
    Broadcasts {
        /// Index of the member that broadcasts.
        node: u32,
        /// Number of broadcasts.
        count: u32,
        /// Number of keys they cycle through (broadcast `b` uses key `b % keys`); 0 for unkeyed
        /// broadcasts.
        keys: u32,
        /// Payload size of each, in bytes (at least 8: a payload starts with a tag unique in the run).
        size: u32,
    },
    /// A reliable direct message of `size` bytes.
    Reliable {
        /// Index of the sending member.
        from: u32,
        /// Index of the receiving member.
        to: u32,
        /// Payload size, in bytes (at least 8: a payload starts with a tag unique in the run).
        size: u32,
    },
    /// New metadata of `size` bytes (above `max_gossip_meta` it is fetched, not gossiped).
    Metadata {
        /// Index of the member.
        node: u32,
        /// Metadata size, in bytes.
        size: u32,
    },
    /// A hostile or buggy key holder tells `to` that `about` is suspect at `incarnation`.
    ForgedSuspect {
        /// Index of the member accused.
        about: u32,
        /// The incarnation the accusation names.
        incarnation: u32,
        /// Index of the member the forged packet is sent to (never `about`).
        to: u32,
    },
    /// A member that did not exist yet starts and joins while the others run.
    StartLate {
        /// Index of the member; it is absent from the cluster until this fault.
        node: u32,
    },
    /// A key rotation in three steps: install the new key everywhere, make it primary, retire the old.
    RotateKey {
        /// Time between two steps, in virtual milliseconds.
        step_ms: u64,
    },
}

/// A fault at a virtual time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    /// When it happens, in virtual milliseconds since the simulation started.
    pub at_ms: u64,
    /// What happens.
    pub kind: FaultKind,
}

/// Everything a seed draws.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    /// The seed the scenario was drawn from; it also seeds the simulation.
    pub seed: u64,
    /// Number of members; member `i` has address `i` and name `n{i}`.
    pub nodes: usize,
    /// One preset for everyone, or two that alternate (node `i` runs `presets[i % 2]`).
    pub presets: Vec<Preset>,
    /// One-way base latency of every link, in milliseconds.
    pub latency_ms: u64,
    /// Extra one-way delay drawn per packet from `0..=jitter_ms`, in milliseconds.
    pub jitter_ms: u64,
    /// Loss of best-effort packets on every link.
    pub loss: f64,
    /// Directed links `(from, to, loss)` that lose more than the rest.
    pub asymmetric: Vec<(u32, u32, f64)>,
    /// Whether the cluster encrypts, and whether its key rotates.
    pub encryption: Encryption,
    /// How the cluster forms.
    pub start: Start,
    /// Bytes per second a reliable stream carries.
    pub bandwidth: u64,
    /// Periodic push-pull switched off on every member (`push_pull_interval = 0`, a valid choice):
    /// gossip, re-announcing and the pinger look-up must then bring everyone together alone.
    pub push_pull_off: bool,
    /// Every member broadcasts a short burst the moment a join of its succeeds, as an application
    /// announcing itself does: what it sends must reach the members it just joined, the seed that
    /// started alone included.
    pub eager_joiners: bool,
    /// Every odd-numbered member sends its whole view in periodic push-pulls
    /// (`push_pull_digests` off), as members of the first release did, beside members that send
    /// digests: both kinds of request and answer must keep every view repaired.
    pub whole_views: bool,
    /// The schedule, sorted by time.
    pub faults: Vec<Fault>,
    /// When the fault phase starts (formation is checked just before).
    pub faults_from: u64,
    /// Indices of faults removed by shrinking (kept so the spec can replay the shrunk scenario).
    pub removed: Vec<usize>,
}

/// Draws a value between `lo` and `hi` (inclusive) spread evenly on a log scale, favouring small.
fn log_uniform(rng: &mut SmallRng, lo: f64, hi: f64) -> f64 {
    libm::exp(rng.random_range(libm::log(lo)..=libm::log(hi)))
}

impl Scenario {
    /// The configuration member `i` runs.
    pub fn config_of(&self, i: usize) -> Config {
        let mut c = self.preset_config(self.presets[i % self.presets.len()]);
        if self.whole_views && i % 2 == 1 {
            c.push_pull_digests = false;
        }
        c
    }

    fn preset_config(&self, p: Preset) -> Config {
        let mut c = p.config();
        if self.push_pull_off {
            c.push_pull_interval = Duration::ZERO;
        }
        c
    }

    /// The shortest probe interval in use (what the network must keep up with).
    pub fn fastest(&self) -> Config {
        let c = self.presets.iter().map(|&p| self.preset_config(p)).min_by_key(|c| c.probe_interval);
        c.unwrap_or_else(Config::lan)
    }

    /// The longest probe interval in use (what the bounds must wait for).
    pub fn slowest(&self) -> Config {
        let c = self.presets.iter().map(|&p| self.preset_config(p)).max_by_key(|c| c.probe_interval);
        c.unwrap_or_else(Config::lan)
    }

    /// When the last member of a cold start starts (0 for a warm start).
    pub fn formation_end(&self) -> u64 {
        match self.start {
            Start::Warm => 0,
            Start::Cold { spacing_ms } => spacing_ms * self.nodes.saturating_sub(1) as u64,
        }
    }

    /// Members that start late (not part of the initial cluster).
    pub fn late_nodes(&self) -> Vec<usize> {
        self.faults
            .iter()
            .filter_map(|f| match f.kind {
                FaultKind::StartLate { node } => Some(node as usize),
                _ => None,
            })
            .collect()
    }

    /// When the last fault ends: partitions healed, stalls and slow receivers over, restarts done.
    pub fn heal_at(&self) -> u64 {
        let end = |f: &Fault| match &f.kind {
            FaultKind::Stall { ms, .. } => f.at_ms + ms,
            FaultKind::SlowReceive { for_ms, .. } => f.at_ms + for_ms,
            FaultKind::Partition { for_ms, .. } => f.at_ms + for_ms,
            FaultKind::RotateKey { step_ms } => f.at_ms + 2 * step_ms,
            _ => f.at_ms,
        };
        self.faults.iter().map(end).max().unwrap_or(self.faults_from).max(self.faults_from)
    }

    /// Draws the scenario of `seed`. Each aspect (the cluster, the network, the fault schedule, each
    /// later addition) draws from a stream of its own, so that a new aspect leaves every existing
    /// seed's other draws as they were: a regression seed keeps meaning the same scenario.
    pub fn draw(seed: u64) -> Scenario {
        let stream = |aspect: u64| SmallRng::seed_from_u64(seed ^ aspect.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut rng = stream(1);
        let nodes = (libm::floor(log_uniform(&mut rng, 3.0, 201.0)) as usize).min(200);
        let all = [Preset::Local, Preset::Local, Preset::Browser, Preset::Lan, Preset::Lan, Preset::Wan];
        let presets = if rng.random_bool(0.3) {
            let a = all[rng.random_range(0..all.len())];
            let mut b = all[rng.random_range(0..all.len())];
            if b == a {
                b = if a == Preset::Local { Preset::Lan } else { Preset::Local };
            }
            alloc::vec![a, b]
        } else {
            alloc::vec![all[rng.random_range(0..all.len())]]
        };
        let mut s = Scenario {
            seed,
            nodes,
            presets,
            latency_ms: 0,
            jitter_ms: 0,
            loss: 0.0,
            asymmetric: Vec::new(),
            encryption: Encryption::Off,
            start: Start::Warm,
            bandwidth: 0,
            push_pull_off: false,
            eager_joiners: false,
            whole_views: false,
            faults: Vec::new(),
            faults_from: 0,
            removed: Vec::new(),
        };
        s.push_pull_off = stream(5).random_bool(0.1);
        // The network must be one the fastest preset is configured for: round trips well inside its
        // probe timeout (the preset docs' advice).
        let mut rng = stream(2);
        let cap = (s.fastest().probe_timeout.as_millis() as u64 / 8).max(1);
        s.latency_ms = rng.random_range(0..=cap);
        s.jitter_ms = rng.random_range(0..=cap / 2);
        s.loss = match rng.random_range(0..10) {
            0..=3 => 0.0,
            4..=6 => rng.random_range(0.001..=0.05),
            _ => rng.random_range(0.05..=0.20),
        };
        if nodes >= 4 && rng.random_bool(0.2) {
            for _ in 0..rng.random_range(1..=3) {
                let from = rng.random_range(0..nodes as u32);
                let to = (from + rng.random_range(1..nodes as u32)) % nodes as u32;
                s.asymmetric.push((from, to, rng.random_range(0.3..=1.0)));
            }
        }
        let mut rng = stream(4);
        s.encryption = match rng.random_range(0..20) {
            0..=11 => Encryption::Off,
            12..=16 => Encryption::On,
            _ => Encryption::Rotating,
        };
        if rng.random_bool(0.4) {
            let spacing = [0, 5, 20, 100, 300][rng.random_range(0..5)];
            s.start = Start::Cold { spacing_ms: spacing };
        }
        s.bandwidth = [1_000_000, 10_000_000, 100_000_000][rng.random_range(0..3)];
        s.draw_faults(&mut stream(3));
        s.eager_joiners = stream(6).random_bool(0.3);
        s.whole_views = stream(7).random_bool(0.2);
        s
    }

    /// The fault schedule: times first, then a kind for each in time order, keeping track of who is
    /// up so that at least two members always are and restarts only revive the dead.
    fn draw_faults(&mut self, rng: &mut SmallRng) {
        let slow = self.slowest();
        let period = slow.probe_interval.as_millis() as u64;
        // Formation: a cold start must have converged before faults begin (that is checked).
        self.faults_from = self.formation_end() + formation_bound(self).as_millis() as u64 + period;
        let span = period * rng.random_range(10..=60);
        let heavy = rng.random_bool(0.2);
        let count = rng.random_range(0..=if heavy { 25 } else { 12 });
        let mut times: Vec<u64> = (0..count).map(|_| self.faults_from + rng.random_range(0..=span)).collect();
        times.sort_unstable();
        let n = self.nodes as u32;
        let mut up: Vec<bool> = alloc::vec![true; self.nodes];
        let mut late: Vec<u32> = Vec::new();
        if n >= 5 && rng.random_bool(0.2) {
            for _ in 0..rng.random_range(1..=3u32.min(n - 4)) {
                let node = rng.random_range(3..n);
                if !late.contains(&node) {
                    late.push(node);
                    up[node as usize] = false;
                }
            }
        }
        for &node in &late {
            let at = self.faults_from + rng.random_range(0..=span);
            self.faults.push(Fault { at_ms: at, kind: FaultKind::StartLate { node } });
        }
        // Partitions longer than the reap time are costly to simulate: a sixth of the seeds.
        let long_partition = rng.random_bool(0.15);
        let mut long_done = false;
        let mut rotated = false;
        let mut down_count = late.len() as u32;
        for at in times {
            let pick = |rng: &mut SmallRng| rng.random_range(0..n);
            let kind = match rng.random_range(0..100) {
                0..=14 if down_count + 2 < n => {
                    let node = pick(rng);
                    if !up[node as usize] || late.contains(&node) {
                        continue;
                    }
                    up[node as usize] = false;
                    down_count += 1;
                    // After a partition longer than the reap time only the seeds (the first three)
                    // bring the sides together: one that crashed for good leaves them apart.
                    if rng.random_bool(0.5) || (long_partition && node < 3) {
                        // Back soon or after it was declared failed.
                        let back = at + period * rng.random_range(1..=40);
                        self.faults.push(Fault { at_ms: back, kind: FaultKind::Restart { node } });
                    }
                    FaultKind::Crash { node }
                }
                15..=21 if down_count + 2 < n => {
                    let node = pick(rng);
                    if !up[node as usize] || late.contains(&node) {
                        continue;
                    }
                    up[node as usize] = false;
                    down_count += 1;
                    if rng.random_bool(0.3) || (long_partition && node < 3) {
                        let back = at + period * rng.random_range(5..=40);
                        self.faults.push(Fault { at_ms: back, kind: FaultKind::Restart { node } });
                    }
                    FaultKind::Leave { node }
                }
                22..=31 => {
                    let node = pick(rng);
                    let ms = libm::round(period as f64 * log_uniform(rng, 0.5, 30.0)) as u64;
                    FaultKind::Stall { node, ms }
                }
                32..=36 => {
                    let node = pick(rng);
                    let timeout = self.config_of(node as usize).probe_timeout.as_millis() as u64;
                    let delay_ms = libm::round(timeout as f64 * rng.random_range(0.2..=2.0)) as u64;
                    FaultKind::SlowReceive { node, delay_ms, for_ms: period * rng.random_range(5..=30) }
                }
                37..=48 if n >= 2 => {
                    let size = if rng.random_bool(0.3) { 1 } else { rng.random_range(1..n.max(2)) };
                    let mut side: Vec<u32> = Vec::new();
                    while (side.len() as u32) < size {
                        let node = pick(rng);
                        if !side.contains(&node) {
                            side.push(node);
                        }
                    }
                    side.sort_unstable();
                    let for_ms = if long_partition && !long_done {
                        long_done = true;
                        let reap = slow.dead_member_reap_time.as_millis() as u64;
                        libm::round(reap as f64 * rng.random_range(1.05..=1.5)) as u64
                    } else {
                        period * rng.random_range(1..=40)
                    };
                    FaultKind::Partition { side, for_ms }
                }
                49..=66 => {
                    let node = pick(rng);
                    let depth = self.config_of(node as usize).broadcast_queue_depth as u32;
                    let count = libm::round(log_uniform(rng, 1.0, f64::from(depth))) as u32;
                    let keys = if rng.random_bool(0.3) { rng.random_range(1..=5) } else { 0 };
                    FaultKind::Broadcasts { node, count, keys, size: rng.random_range(1..=200) }
                }
                67..=76 if n >= 2 => {
                    let from = pick(rng);
                    let to = (from + rng.random_range(1..n)) % n;
                    let size = [100, 10_000, 1_000_000][rng.random_range(0..3)];
                    FaultKind::Reliable { from, to, size }
                }
                77..=84 => {
                    let node = pick(rng);
                    let size =
                        if rng.random_bool(0.7) { rng.random_range(0..=64) } else { rng.random_range(300..=4_096) };
                    FaultKind::Metadata { node, size }
                }
                85..=91 if n >= 2 => {
                    let about = pick(rng);
                    let to = (about + rng.random_range(1..n)) % n;
                    let incarnation = match rng.random_range(0..4) {
                        0 | 1 => u32::MAX,
                        2 => rng.random(),
                        _ => rng.random_range(0..8),
                    };
                    FaultKind::ForgedSuspect { about, incarnation, to }
                }
                _ if self.encryption == Encryption::Rotating && !rotated => {
                    rotated = true;
                    FaultKind::RotateKey { step_ms: rotation_step(&slow) }
                }
                _ => continue,
            };
            self.faults.push(Fault { at_ms: at, kind });
        }
        if self.encryption == Encryption::Rotating && !rotated {
            let step_ms = rotation_step(&slow);
            self.faults.push(Fault { at_ms: self.faults_from + span / 2, kind: FaultKind::RotateKey { step_ms } });
        }
        self.faults.sort_by_key(|f| f.at_ms);
    }

    /// One line describing the scenario (for reports).
    pub fn summary(&self) -> String {
        let presets: Vec<&str> = self.presets.iter().map(|p| p.name()).collect();
        let start = match self.start {
            Start::Warm => String::from("warm"),
            Start::Cold { spacing_ms } => format!("cold/{spacing_ms}ms"),
        };
        format!(
            "n={} presets={}{}{}{} latency={}ms jitter={}ms loss={:.3} asymmetric={:?} encryption={:?} start={} faults={}",
            self.nodes,
            presets.join("+"),
            if self.push_pull_off { " (push-pull off)" } else { "" },
            if self.eager_joiners { " (eager joiners)" } else { "" },
            if self.whole_views { " (odd members send whole views)" } else { "" },
            self.latency_ms,
            self.jitter_ms,
            self.loss,
            self.asymmetric,
            self.encryption,
            start,
            self.faults.len()
        )
    }

    /// The replay spec: `seed` alone for a drawn scenario, plus what shrinking changed
    /// (`seed:n=20:lossless:plain:drop=3,7`). [`Scenario::from_spec`] reads it back.
    pub fn spec(&self) -> String {
        let drawn = Scenario::draw(self.seed);
        let mut spec = format!("{}", self.seed);
        if self.nodes != drawn.nodes {
            spec.push_str(&format!(":n={}", self.nodes));
        }
        if self.loss == 0.0 && drawn.loss != 0.0 {
            spec.push_str(":lossless");
        }
        if self.asymmetric.is_empty() && !drawn.asymmetric.is_empty() {
            spec.push_str(":symmetric");
        }
        if self.encryption == Encryption::Off && drawn.encryption != Encryption::Off {
            spec.push_str(":plain");
        }
        if self.latency_ms != drawn.latency_ms {
            spec.push_str(&format!(":latency={}", self.latency_ms));
        }
        if self.jitter_ms != drawn.jitter_ms {
            spec.push_str(&format!(":jitter={}", self.jitter_ms));
        }
        if !self.removed.is_empty() {
            let list: Vec<String> = self.removed.iter().map(|i| format!("{i}")).collect();
            spec.push_str(&format!(":drop={}", list.join(",")));
        }
        spec
    }

    /// Reads a spec written by [`Scenario::spec`].
    pub fn from_spec(spec: &str) -> Result<Scenario, String> {
        let mut parts = spec.split(':');
        let seed: u64 = parts.next().unwrap_or("").parse().map_err(|_| format!("bad seed in spec {spec:?}"))?;
        let mut s = Scenario::draw(seed);
        let mut nodes = None;
        for part in parts {
            match part {
                "lossless" => s.loss = 0.0,
                "symmetric" => s.asymmetric.clear(),
                "plain" => s.make_plain(),
                // The network a seed drew under an earlier preset (a regression seed keeps its own).
                p if p.starts_with("latency=") => {
                    s.latency_ms = p[8..].parse().map_err(|_| format!("bad latency in {p:?}"))?;
                }
                p if p.starts_with("jitter=") => {
                    s.jitter_ms = p[7..].parse().map_err(|_| format!("bad jitter in {p:?}"))?;
                }
                p if p.starts_with("n=") => {
                    nodes = Some(p[2..].parse::<usize>().map_err(|_| format!("bad node count in {p:?}"))?);
                }
                p if p.starts_with("drop=") => {
                    let mut removed: Vec<usize> = p[5..]
                        .split(',')
                        .filter(|x| !x.is_empty())
                        .map(|x| x.parse().map_err(|_| format!("bad fault index in {p:?}")))
                        .collect::<Result<_, _>>()?;
                    removed.sort_unstable();
                    s.remove_faults(&removed);
                }
                other => return Err(format!("unknown spec part {other:?}")),
            }
        }
        if let Some(n) = nodes {
            s.shrink_nodes(n);
        }
        Ok(s)
    }

    /// Removes the faults at `indices` of the drawn schedule (recorded for the spec).
    pub(crate) fn remove_faults(&mut self, indices: &[usize]) {
        let drawn = Scenario::draw(self.seed).faults;
        for &i in indices {
            if i < drawn.len() && !self.removed.contains(&i) {
                self.removed.push(i);
            }
        }
        self.removed.sort_unstable();
        let nodes = self.nodes as u32;
        self.faults = drawn
            .into_iter()
            .enumerate()
            .filter(|(i, _)| !self.removed.contains(i))
            .map(|(_, f)| f)
            .filter(|f| fault_fits(f, nodes))
            .collect();
        if self.encryption == Encryption::Off {
            self.faults.retain(|f| !matches!(f.kind, FaultKind::RotateKey { .. }));
        }
    }

    /// Keeps only nodes `0..n`, dropping faults and links that name the others.
    pub(crate) fn shrink_nodes(&mut self, n: usize) {
        self.nodes = n.max(2);
        let nodes = self.nodes as u32;
        self.faults.retain(|f| fault_fits(f, nodes));
        for f in &mut self.faults {
            if let FaultKind::Partition { side, .. } = &mut f.kind {
                side.retain(|&x| x < nodes);
            }
        }
        self.faults.retain(|f| !matches!(&f.kind, FaultKind::Partition { side, .. } if side.is_empty()));
        self.asymmetric.retain(|&(a, b, _)| a < nodes && b < nodes);
    }

    /// Turns encryption off (and drops the key rotation).
    pub(crate) fn make_plain(&mut self) {
        self.encryption = Encryption::Off;
        self.faults.retain(|f| !matches!(f.kind, FaultKind::RotateKey { .. }));
    }
}

/// Time between the steps of a key rotation: longer than any packet or frame stays in flight (a
/// reliable frame held back by retransmission timeouts takes up to 12.6 s), as an operator waits
/// before retiring the old key.
fn rotation_step(slow: &Config) -> u64 {
    (slow.gossip_interval.as_millis() as u64 * 10).max(15_000)
}

/// True when every node the fault names exists among `nodes` (partitions are trimmed instead).
fn fault_fits(f: &Fault, nodes: u32) -> bool {
    match &f.kind {
        FaultKind::Crash { node }
        | FaultKind::Restart { node }
        | FaultKind::Leave { node }
        | FaultKind::Stall { node, .. }
        | FaultKind::SlowReceive { node, .. }
        | FaultKind::Broadcasts { node, .. }
        | FaultKind::Metadata { node, .. }
        | FaultKind::StartLate { node } => *node < nodes,
        FaultKind::Reliable { from, to, .. } => *from < nodes && *to < nodes,
        FaultKind::ForgedSuspect { about, to, .. } => *about < nodes && *to < nodes,
        FaultKind::Partition { .. } | FaultKind::RotateKey { .. } => true,
    }
}

/// How long after the last member of a cold start starts every member must know every other: the
/// join (up to `join_timeout`), the catch-up push-pulls that follow it (done `2^rounds` protocol
/// periods later), and dissemination of the news with a margin for loss. Far below a push-pull
/// period, which is what members that started together used to wait for.
pub fn formation_bound(s: &Scenario) -> Duration {
    let slow = s.slowest();
    let n = s.nodes.max(2) as f64;
    let rounds = 3 * libm::ceil(libm::log2(n)) as u32 + 20;
    let catch_up = slow.probe_interval * (1 << shoal_core::node::CATCH_UP_ROUNDS);
    slow.join_timeout + catch_up + slow.gossip_interval * rounds
}
