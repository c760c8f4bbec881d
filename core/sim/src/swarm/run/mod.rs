//! Runs one scenario on the simulator: applies its schedule at the virtual times it names, records the
//! ground truth and what every member said, checks the oracles, and reports the violations.
//!
//! The run is a pure function of the [`Scenario`]: the same scenario gives the same packets, events
//! and violations on every machine.

use alloc::collections::{BTreeMap, BTreeSet, BinaryHeap};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::cmp::Reverse;
use core::time::Duration;

use rand::Rng;

mod checks;

use super::oracle::{self, Oracle, Violation};
use super::scenario::{Encryption, FaultKind, Scenario, Start};
use super::truth::{Life, SentBroadcast, SentReliable, Truth};
use crate::{LinkModel, SimConfig, Simulation};
use shoal_core::identity::NodeId;
use shoal_core::security::{Key, Keyring, SecurityMode};
use shoal_core::time::Instant;
use shoal_core::wire::{begin_packet, Message, Writer, PROTOCOL_VERSION};

/// Topics the workload uses; payloads start with an 8-byte tag unique in the run.
const TOPIC_BROADCAST: &str = "swarm/b";
const TOPIC_KEYED: &str = "swarm/k";
const TOPIC_RELIABLE: &str = "swarm/r";
/// Broadcasts owed, per `(receiver, origin, epoch)`: how many, their tags, and whether one went
/// missing on a calm network.
type Owed = BTreeMap<(u32, u32, u32), (u64, Vec<u64>, bool)>;

/// Violations of one oracle beyond this many are counted, not described.
const DETAILS_PER_ORACLE: usize = 3;

/// What one scenario did and which properties failed.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The scenario that ran.
    pub scenario: Scenario,
    /// The properties that failed, at most three described per oracle plus one entry counting the
    /// rest; empty when every oracle held.
    pub violations: Vec<Violation>,
    /// Virtual time simulated, in ms.
    pub simulated_ms: u64,
    /// Packets and frames sent.
    pub packets: u64,
    /// Broadcasts their origin accepted.
    pub broadcasts: usize,
    /// Reliable messages their sender accepted.
    pub reliable_messages: usize,
}

impl Outcome {
    /// True when every oracle held.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    /// The oracles that failed, each once, in report order.
    pub fn failed_oracles(&self) -> Vec<Oracle> {
        let mut v: Vec<Oracle> = self.violations.iter().map(|v| v.oracle).collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Action {
    Fault(usize),
    PartitionEnd(usize),
    SlowEnd(u32),
    ShutDownLeaver(u32),
    RotateUse,
    RotateRemove,
    CheckFormation,
    CheckCompleteness { victim: u32, crashed_at: u64 },
    CheckIdentity { node: u32, restarted_at: u64 },
    CheckRecovery { observer: u32, subject: u32, failed_at: u64 },
}

struct Runner {
    s: Scenario,
    sim: Simulation,
    truth: Truth,
    actions: BinaryHeap<Reverse<(u64, u64, Action)>>,
    order: u64,
    active_partitions: Vec<usize>,
    violations: Vec<Violation>,
    counts: BTreeMap<Oracle, usize>,
    next_tag: u64,
    keys: (Key, Key),
    /// When each failure declaration (declarer, subject, and the incarnation declared) was first
    /// reported by anyone: the accuracy oracle judges a declaration once, at the earliest time it
    /// is known to have been made, not when a member stalled meanwhile hears of it late. (No life
    /// in the key: a declarer holding a member dead at an incarnation never declares it failed at
    /// that incarnation again, whichever life of the member claims it.)
    declarations: BTreeMap<(u32, u32, u32), u64>,
    /// `SHOAL_SWARM_WATCH`, read once: the member whose events are printed (a debugging aid).
    watch: Option<String>,
}

/// Runs `scenario` and checks every oracle. A panic anywhere in the protocol is caught and reported
/// as a violation of [`Oracle::Panic`].
pub fn run(scenario: &Scenario) -> Outcome {
    let s = scenario.clone();
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Runner::new(s).execute()));
    match caught {
        Ok(outcome) => outcome,
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|m| m.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| String::from("(non-text panic)"));
            Outcome {
                scenario: scenario.clone(),
                violations: alloc::vec![Violation { oracle: Oracle::Panic, at_ms: 0, detail: message }],
                simulated_ms: 0,
                packets: 0,
                broadcasts: 0,
                reliable_messages: 0,
            }
        }
    }
}

fn ms(d: Duration) -> u64 {
    shoal_core::time::duration_millis(d)
}

fn key_of(seed: u64, which: u8) -> Key {
    let mut k = [which; 32];
    k[..8].copy_from_slice(&seed.to_le_bytes());
    k
}

impl Runner {
    fn new(s: Scenario) -> Runner {
        let keys = (key_of(s.seed, 1), key_of(s.seed, 2));
        let mut node = s.config_of(0);
        let security = match s.encryption {
            Encryption::Off => SecurityMode::Plaintext,
            _ => SecurityMode::Encrypted,
        };
        let node_configs: Vec<_> = (0..s.nodes)
            .map(|i| {
                let mut c = s.config_of(i);
                c.security = security;
                c.label = String::from("swarm");
                c
            })
            .collect();
        node.security = security;
        let link = LinkModel {
            latency: Duration::from_millis(s.latency_ms),
            jitter: Duration::from_millis(s.jitter_ms),
            loss: s.loss,
        };
        let (warm_start, join_spacing) = match s.start {
            Start::Warm => (true, Duration::ZERO),
            Start::Cold { spacing_ms } => (false, Duration::from_millis(spacing_ms)),
        };
        let config = SimConfig {
            nodes: s.nodes,
            node,
            link,
            seed: s.seed,
            warm_start,
            join_spacing,
            keyring: (s.encryption != Encryption::Off).then(|| Keyring::new(keys.0)),
            node_configs,
            start_later: s.late_nodes(),
            cold_seeds: alloc::vec![0, 1, 2],
        };
        let mut sim = Simulation::new(config);
        sim.set_event_log(true);
        sim.network_mut().set_reliable_bandwidth(s.bandwidth);
        for &(from, to, loss) in &s.asymmetric {
            sim.network_mut().set_link_between(from, to, Some(LinkModel { loss, ..link }));
        }
        let mut truth = Truth::new(s.nodes);
        let late = s.late_nodes();
        for i in (0..s.nodes).filter(|i| !late.contains(i)) {
            let start = match s.start {
                Start::Warm => 0,
                Start::Cold { spacing_ms } => spacing_ms * i as u64,
            };
            // Warm members, and the first member of a cold start, are members from the start.
            let joined = (matches!(s.start, Start::Warm) || i == 0).then_some(start);
            truth.lives[i].push(Life::starting(start, joined));
        }
        let mut runner = Runner {
            s,
            sim,
            truth,
            actions: BinaryHeap::new(),
            order: 0,
            active_partitions: Vec::new(),
            violations: Vec::new(),
            counts: BTreeMap::new(),
            next_tag: 1,
            keys,
            declarations: BTreeMap::new(),
            watch: std::env::var("SHOAL_SWARM_WATCH").ok(),
        };
        for (i, f) in runner.s.faults.clone().iter().enumerate() {
            runner.schedule(f.at_ms, Action::Fault(i));
        }
        if matches!(runner.s.start, Start::Cold { .. }) {
            let at = runner.s.formation_end() + ms(oracle::formation_bound(&runner.s));
            runner.schedule(at, Action::CheckFormation);
        }
        runner
    }

    fn schedule(&mut self, at: u64, action: Action) {
        self.order += 1;
        self.actions.push(Reverse((at, self.order, action)));
    }

    fn now(&self) -> u64 {
        self.sim.now().as_millis()
    }

    fn violation(&mut self, oracle: Oracle, detail: String) {
        let count = self.counts.entry(oracle).or_insert(0);
        *count += 1;
        if *count <= DETAILS_PER_ORACLE {
            let at_ms = self.now();
            self.violations.push(Violation { oracle, at_ms, detail });
        }
    }

    fn name(i: u32) -> NodeId {
        NodeId::new(&format!("n{i}")).expect("generated names are valid")
    }

    fn index(id: &NodeId) -> Option<u32> {
        id.as_str().strip_prefix('n')?.parse().ok()
    }

    // ----- the run -------------------------------------------------------------------------------

    fn execute(mut self) -> Outcome {
        let heal_at = self.s.heal_at();
        self.run_actions_until(heal_at);
        // Convergence: the live sets agree, at some moment within the bound.
        let bound = ms(oracle::convergence_bound(&self.s));
        let sample = ms(self.s.fastest().probe_interval);
        let deadline = self.now() + bound;
        let mut converged = false;
        let mut seen_live = BTreeSet::new();
        loop {
            for o in self.observers() {
                for j in (0..self.s.nodes as u32).filter(|&j| j != o && self.believes_live(o, j)) {
                    seen_live.insert((o, j));
                }
            }
            if let Err(why) = self.live_sets_converged(&seen_live) {
                if self.now() >= deadline {
                    self.violation(Oracle::Convergence, format!("{bound} ms after the last fault healed: {why}"));
                    break;
                }
                let next = self.now() + sample;
                self.run_actions_until(next);
            } else {
                converged = true;
                break;
            }
        }
        // Agreement: with the network clean, everyone alive at the incarnation it holds itself.
        self.sim.set_link(LinkModel { loss: 0.0, ..self.sim.network().link() });
        for &(from, to, _) in &self.s.asymmetric.clone() {
            self.sim.network_mut().set_link_between(from, to, None);
        }
        // With push-pull off nothing repairs an incarnation a member missed (a refutation, new
        // metadata) until the next change: only the live sets must agree.
        if converged && !self.s.push_pull_off {
            let deadline = self.now() + bound;
            loop {
                match self.incarnations_agree() {
                    Ok(()) => break,
                    Err(why) if self.now() >= deadline => {
                        self.violation(Oracle::Agreement, format!("{bound} ms after the network cleared: {why}"));
                        break;
                    }
                    Err(_) => {
                        let next = self.now() + sample;
                        self.run_actions_until(next);
                    }
                }
            }
        }
        // Broadcasts and reliable messages settle (repairs by anti-entropy, retries).
        let settle = ms(oracle::settle_bound(&self.s));
        let deadline = self.now() + settle;
        while self.now() < deadline && !self.settled() {
            let next = self.now() + sample * 5;
            self.run_actions_until(next);
        }
        // Checks scheduled beyond the end still run.
        let last = self.actions.iter().map(|a| a.0 .0).max().unwrap_or(0);
        self.run_actions_until(last);
        self.check_broadcasts();
        self.check_keyed();
        self.check_reliable();
        self.check_growth();
        if let Some(i) = self.watch.as_deref().and_then(|w| w.parse::<usize>().ok()) {
            if let Some(node) = self.sim.node(i) {
                std::eprintln!(
                    "n{i} at the end: {:?}\n{:?}\n{:?}",
                    node.stats(),
                    node.security_stats(),
                    node.footprint()
                );
            }
        }
        for i in self.up_nodes() {
            self.check_intake(i);
        }
        let mut violations = self.violations;
        for (oracle, count) in self.counts {
            if count > DETAILS_PER_ORACLE {
                violations.push(Violation {
                    oracle,
                    at_ms: 0,
                    detail: format!("{} more violations of this oracle", count - DETAILS_PER_ORACLE),
                });
            }
        }
        Outcome {
            simulated_ms: self.sim.now().as_millis(),
            packets: self.sim.network().stats().sent,
            broadcasts: self.truth.broadcasts.len(),
            reliable_messages: self.truth.reliable.len(),
            scenario: self.s,
            violations,
        }
    }

    /// Runs the simulation to `t`, applying every action due on the way.
    fn run_actions_until(&mut self, t: u64) {
        loop {
            let next = self.actions.peek().map(|a| a.0 .0);
            match next {
                Some(at) if at <= t => {
                    let Some(Reverse((at, _, action))) = self.actions.pop() else { break };
                    self.advance_to(at);
                    self.observe();
                    self.apply(action);
                    self.observe();
                }
                _ => break,
            }
        }
        self.advance_to(t);
        self.observe();
    }

    /// Runs the simulation to `t`. With eager joiners, one instant at a time, observing after
    /// each: a joiner broadcasts at the very instant its join succeeds.
    fn advance_to(&mut self, t: u64) {
        let t = Instant::from_millis(t);
        if self.s.eager_joiners {
            while self.sim.next_event_time().is_some_and(|next| next <= t) {
                self.sim.step();
                self.observe();
            }
        }
        self.sim.run_until(t);
    }

    fn up_nodes(&self) -> Vec<u32> {
        (0..self.s.nodes as u32).filter(|&i| self.sim.is_up(i as usize)).collect()
    }

    /// The seeds a member (re)starting joins through: the first three members, as a deployment lists
    /// a few stable seed addresses, and up to three other members that are up.
    fn random_seeds(&mut self, except: u32) -> Vec<u32> {
        let mut seeds: Vec<u32> = (0..3.min(self.s.nodes as u32)).filter(|&i| i != except).collect();
        let mut up: Vec<u32> = self.up_nodes().into_iter().filter(|&i| i != except && !seeds.contains(&i)).collect();
        for _ in 0..3 {
            if up.is_empty() {
                break;
            }
            let pick = self.sim.rng().random_range(0..up.len());
            seeds.push(up.swap_remove(pick));
        }
        seeds
    }

    /// `node` broadcasts `count` payloads of `size` bytes (keyed over `keys` keys if not 0), each
    /// recorded for the broadcast oracles when accepted.
    pub(super) fn broadcast_burst(&mut self, node: u32, count: u32, keys: u32, size: u32, now: u64) {
        for b in 0..count {
            let key = if keys > 0 { Some(b % keys) } else { None };
            let (tag, payload) = self.payload(size);
            let topic = if key.is_some() { TOPIC_KEYED } else { TOPIC_BROADCAST };
            let key_bytes = key.map(|k| k.to_le_bytes());
            let sent = self
                .sim
                .with_node(node as usize, |n, _| n.broadcast(topic, &payload, key_bytes.as_ref().map(|k| &k[..])));
            if let Some(Ok(id)) = sent {
                let life = self.truth.lives[node as usize].len().saturating_sub(1);
                self.truth.broadcasts.push(SentBroadcast {
                    origin: node,
                    life,
                    at: now,
                    tag,
                    key,
                    epoch: id.epoch,
                    seq: id.seq,
                    reported_dropped: false,
                });
            }
        }
    }

    fn payload(&mut self, size: u32) -> (u64, Vec<u8>) {
        let tag = self.next_tag;
        self.next_tag += 1;
        let mut p = tag.to_le_bytes().to_vec();
        p.resize((size as usize).max(8), b'.');
        (tag, p)
    }

    fn start_life(&mut self, i: u32) {
        let now = self.now();
        self.truth.new_life(i as usize);
        self.truth.lives[i as usize].push(Life::starting(now, None));
    }

    fn end_life(&mut self, i: u32) {
        let now = self.now();
        if let Some(l) = self.truth.lives[i as usize].last_mut() {
            if l.end.is_none() {
                l.end = Some(now);
            }
        }
    }

    fn apply(&mut self, action: Action) {
        let now = self.now();
        match action {
            Action::Fault(k) => {
                let kind = self.s.faults[k].kind.clone();
                self.apply_fault(k, kind);
            }
            Action::PartitionEnd(k) => {
                self.active_partitions.retain(|&p| p != k);
                self.set_groups();
            }
            Action::SlowEnd(i) => self.sim.set_receive_delay(i as usize, Duration::ZERO),
            Action::ShutDownLeaver(i) => {
                let leaving =
                    self.truth.lives[i as usize].last().is_some_and(|l| l.end.is_none() && l.leaving_since.is_some());
                if leaving && self.sim.is_up(i as usize) {
                    self.check_intake(i);
                    self.sim.shut_down(i as usize);
                    self.end_life(i);
                }
            }
            Action::RotateUse => {
                for i in self.up_nodes() {
                    let k = self.keys.1;
                    self.sim.with_node(i as usize, |n, _| n.keyring_mut().map(|r| r.use_key(k)));
                }
                let mut ring = Keyring::new(self.keys.1);
                ring.install(self.keys.0);
                self.sim.set_keyring(Some(ring));
            }
            Action::RotateRemove => {
                for i in self.up_nodes() {
                    let k = self.keys.0;
                    self.sim.with_node(i as usize, |n, _| n.keyring_mut().map(|r| r.remove(k)));
                }
                self.sim.set_keyring(Some(Keyring::new(self.keys.1)));
            }
            Action::CheckFormation => self.check_formation(),
            Action::CheckCompleteness { victim, crashed_at } => self.check_completeness(victim, crashed_at, now),
            Action::CheckIdentity { node, restarted_at } => self.check_identity(node, restarted_at, now),
            Action::CheckRecovery { observer, subject, failed_at } => {
                self.check_recovery(observer, subject, failed_at, now)
            }
        }
    }

    fn apply_fault(&mut self, k: usize, kind: FaultKind) {
        let now = self.now();
        match kind {
            FaultKind::Crash { node } => {
                if self.sim.is_up(node as usize) {
                    self.check_intake(node);
                    self.sim.crash(node as usize);
                    self.end_life(node);
                    let at = now + ms(oracle::detection_bound(&self.s));
                    self.schedule(at, Action::CheckCompleteness { victim: node, crashed_at: now });
                }
            }
            FaultKind::Restart { node } | FaultKind::StartLate { node } => {
                if self.sim.is_up(node as usize) {
                    // Still gossiping its departure: stop it first, as a supervisor would.
                    self.check_intake(node);
                    self.sim.shut_down(node as usize);
                    self.end_life(node);
                }
                let seeds = self.random_seeds(node);
                self.sim.restart(node as usize, &seeds);
                self.start_life(node);
                let at = now + ms(oracle::identity_bound(&self.s));
                self.schedule(at, Action::CheckIdentity { node, restarted_at: now });
            }
            FaultKind::Leave { node } => {
                if self.sim.is_up(node as usize) {
                    self.sim.leave(node as usize);
                    if let Some(l) = self.truth.lives[node as usize].last_mut() {
                        l.leaving_since = Some(now);
                    }
                    let wait = self.s.config_of(node as usize).gossip_interval * 20;
                    self.schedule(now + ms(wait), Action::ShutDownLeaver(node));
                }
            }
            FaultKind::Stall { node, ms: d } => {
                if self.sim.is_up(node as usize) {
                    self.sim.stall(node as usize, Duration::from_millis(d));
                    self.truth.stalls[node as usize].push((now, now + d));
                }
            }
            FaultKind::SlowReceive { node, delay_ms, for_ms } => {
                self.sim.set_receive_delay(node as usize, Duration::from_millis(delay_ms));
                self.truth.slow[node as usize].push((now, now + for_ms));
                self.schedule(now + for_ms, Action::SlowEnd(node));
            }
            FaultKind::Partition { side, for_ms } => {
                self.truth.partitions.push((side, now, now + for_ms));
                self.active_partitions.push(self.truth.partitions.len() - 1);
                self.set_groups();
                self.schedule(now + for_ms, Action::PartitionEnd(self.truth.partitions.len() - 1));
            }
            FaultKind::Broadcasts { node, count, keys, size } => self.broadcast_burst(node, count, keys, size, now),
            FaultKind::Reliable { from, to, size } => {
                let (tag, payload) = self.payload(size);
                let to_name = Self::name(to);
                let sent = self
                    .sim
                    .with_node(from as usize, |n, now| n.send_reliable(now, &to_name, TOPIC_RELIABLE, &payload));
                if let Some(Ok(id)) = sent {
                    let life = self.truth.lives[from as usize].len().saturating_sub(1);
                    self.truth.reliable.push(SentReliable { from, life, to, at: now, tag, id, failed_reported: false });
                }
            }
            FaultKind::Metadata { node, size } => {
                let meta = alloc::vec![b'm'; size as usize];
                self.sim.with_node(node as usize, |n, _| n.set_metadata(&meta));
            }
            FaultKind::ForgedSuspect { about, incarnation, to } => {
                let claimant = Self::name((about + 1) % self.s.nodes as u32);
                let msg = Message::<u32>::Suspect { id: Self::name(about), incarnation, from: claimant };
                let mut w = Writer::with_capacity(64);
                begin_packet(&mut w, PROTOCOL_VERSION);
                msg.encode(&mut w);
                let mut bytes = w.into_vec();
                if self.s.encryption != Encryption::Off {
                    let ring = match self.sim.node(to as usize) {
                        Some(_) => self.sim.config().keyring.clone(),
                        None => None,
                    };
                    let Some(ring) = ring else { return };
                    let entropy: [u8; 32] = self.sim.rng().random();
                    bytes = shoal_core::security::seal_packet(&ring, "swarm", entropy, bytes);
                }
                // From an address that is no member: a stranger, or a member's key leaked to one.
                self.sim.inject(1_000_000 + k as u32, to, bytes, false);
                self.truth.forged.push((about, now));
            }
            FaultKind::RotateKey { step_ms } => {
                for i in self.up_nodes() {
                    let k = self.keys.1;
                    self.sim.with_node(i as usize, |n, _| n.keyring_mut().map(|r| r.install(k)));
                }
                let mut ring = Keyring::new(self.keys.0);
                ring.install(self.keys.1);
                self.sim.set_keyring(Some(ring));
                self.schedule(now + step_ms, Action::RotateUse);
                self.schedule(now + 2 * step_ms, Action::RotateRemove);
            }
        }
    }

    /// Network groups from the partitions in force: a node's group is the set of partitions it is
    /// cut off in, so two nodes talk only if no partition separates them.
    fn set_groups(&mut self) {
        if self.active_partitions.is_empty() {
            self.sim.heal();
            return;
        }
        let groups: Vec<u16> = (0..self.s.nodes as u32)
            .map(|i| {
                self.active_partitions.iter().enumerate().fold(0u16, |g, (bit, &p)| {
                    if self.truth.partitions[p].0.contains(&i) {
                        g | (1 << (bit % 16))
                    } else {
                        g
                    }
                })
            })
            .collect();
        self.sim.partition(groups);
    }
}
