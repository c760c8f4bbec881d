//! Runs one scenario on the simulator: applies its schedule at the virtual times it names, records the
//! ground truth and what every member said, checks the oracles, and reports the violations.
//!
//! The run is a pure function of the [`Scenario`]: the same scenario gives the same packets, events
//! and violations on every machine.

use alloc::collections::{BTreeMap, BinaryHeap};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::cmp::Reverse;
use core::time::Duration;

use rand::Rng;

use super::oracle::{self, Oracle, Violation};
use super::scenario::{Encryption, FaultKind, Scenario, Start};
use super::truth::{Life, SentBroadcast, SentReliable, Truth};
use crate::event::{Event, MessageKind};
use crate::identity::NodeId;
use crate::member::MemberState;
use crate::security::{Key, Keyring, SecurityMode};
use crate::sim::{LinkModel, SimConfig, Simulation};
use crate::time::Instant;
use crate::wire::{begin_packet, Message, Writer, PROTOCOL_VERSION};

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
    pub scenario: Scenario,
    pub violations: Vec<Violation>,
    /// Virtual time simulated, in ms.
    pub simulated_ms: u64,
    /// Packets and frames sent.
    pub packets: u64,
    pub broadcasts: usize,
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
    crate::time::duration_millis(d)
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
            .map(|i| crate::config::Config { security, label: String::from("swarm"), ..s.config_of(i) })
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
            truth.lives[i].push(Life { start, end: None, leaving_since: None, joined });
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
        loop {
            if let Err(why) = self.live_sets_agree() {
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
        if let Some(i) = std::env::var("SHOAL_SWARM_WATCH").ok().and_then(|w| w.parse::<usize>().ok()) {
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
                    self.sim.run_until(Instant::from_millis(at));
                    self.observe();
                    self.apply(action);
                    self.observe();
                }
                _ => break,
            }
        }
        self.sim.run_until(Instant::from_millis(t));
        self.observe();
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
        self.truth.lives[i as usize].push(Life { start: now, end: None, leaving_since: None, joined: None });
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
            FaultKind::Broadcasts { node, count, keys, size } => {
                for b in 0..count {
                    let key = if keys > 0 { Some(b % keys) } else { None };
                    let (tag, payload) = self.payload(size);
                    let topic = if key.is_some() { TOPIC_KEYED } else { TOPIC_BROADCAST };
                    let key_bytes = key.map(|k| k.to_le_bytes());
                    let sent = self.sim.with_node(node as usize, |n, _| {
                        n.broadcast(topic, &payload, key_bytes.as_ref().map(|k| &k[..]))
                    });
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
            FaultKind::Reliable { from, to, size } => {
                let (tag, payload) = self.payload(size);
                let to_name = Self::name(to);
                let sent = self
                    .sim
                    .with_node(from as usize, |n, now| n.send_reliable(&to_name, TOPIC_RELIABLE, &payload, now));
                if let Some(Ok(id)) = sent {
                    let life = self.truth.lives[from as usize].len().saturating_sub(1);
                    self.truth.reliable.push(SentReliable { from, life, to, at: now, tag, id, failed_reported: false });
                }
            }
            FaultKind::Metadata { node, size } => {
                let meta = alloc::vec![b'm'; size as usize];
                self.sim.with_node(node as usize, |n, now| n.set_metadata(&meta, now));
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
                    bytes = crate::security::seal_packet(&ring, "swarm", entropy, bytes);
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

    // ----- what members say ------------------------------------------------------------------------

    fn observe(&mut self) {
        let watch = std::env::var("SHOAL_SWARM_WATCH").ok();
        for (at, observer, event) in self.sim.drain_events() {
            let t = at.as_millis();
            if let Some(w) = &watch {
                // Debugging aid: `SHOAL_SWARM_WATCH=3` prints every event node 3 emits, and every
                // event about n3 that anyone emits.
                let me = format!("n{w}");
                let about = format!("{event:?}").contains(&format!("\"{me}\""));
                if w.parse() == Ok(observer) || about {
                    std::eprintln!("{t:>9} n{observer}: {event:?}");
                }
            }
            match event {
                Event::Failed { id, by, .. } => self.check_accuracy(t, observer, &id, &by),
                Event::JoinSucceeded { .. } => {
                    if let Some(l) = self.truth.lives[observer as usize].last_mut() {
                        l.joined.get_or_insert(t);
                    }
                }
                Event::Message { from, topic, payload, kind } => {
                    let Some(tag) = payload.get(..8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes) else {
                        continue;
                    };
                    let o = observer as usize;
                    let counts = match (kind, topic.as_str()) {
                        (MessageKind::Broadcast, TOPIC_BROADCAST | TOPIC_KEYED) => &mut self.truth.delivered[o],
                        (MessageKind::Direct, TOPIC_RELIABLE) => {
                            self.truth.reliable_ever.insert(tag);
                            &mut self.truth.reliable_delivered[o]
                        }
                        _ => continue,
                    };
                    let count = counts.entry(tag).or_insert(0);
                    *count += 1;
                    if *count == 2 {
                        let (oracle, what) = match kind {
                            MessageKind::Broadcast => (Oracle::Broadcast, "broadcast"),
                            MessageKind::Direct => (Oracle::Reliable, "reliable message"),
                        };
                        self.violation(oracle, format!("n{observer} delivered {what} #{tag} twice in one life"));
                    }
                    if topic == TOPIC_KEYED {
                        let key = self.truth.broadcasts.iter().find(|b| b.tag == tag).and_then(|b| b.key);
                        if let (Some(origin), Some(key)) = (Self::index(&from), key) {
                            self.truth.keyed[o].entry((origin, key)).or_default().push(tag);
                        }
                    }
                }
                Event::BroadcastDropped { id, .. } => {
                    let life = self.truth.lives[observer as usize].len().saturating_sub(1);
                    if let Some(b) = self.truth.broadcasts.iter_mut().find(|b| {
                        b.origin == observer
                            && b.life == life
                            && b.epoch == id.epoch
                            && b.seq == id.seq
                            && b.key.is_some() == id.keyed
                    }) {
                        b.reported_dropped = true;
                    }
                }
                Event::BroadcastsMissed { origin, epoch, count } => {
                    if let Some(origin) = Self::index(&origin) {
                        *self.truth.missed[observer as usize].entry((origin, epoch)).or_insert(0) += count;
                    }
                }
                Event::SendFailed { id, .. } => {
                    let life = self.truth.lives[observer as usize].len().saturating_sub(1);
                    if let Some(r) =
                        self.truth.reliable.iter_mut().find(|r| r.from == observer && r.life == life && r.id == id)
                    {
                        r.failed_reported = true;
                    }
                }
                _ => {}
            }
        }
    }

    // ----- oracles ---------------------------------------------------------------------------------

    fn believes_live(&self, observer: u32, subject: u32) -> bool {
        self.sim
            .node(observer as usize)
            .and_then(|n| n.member(&Self::name(subject)))
            .is_some_and(|m| m.state.is_live() && m.addr == subject)
    }

    fn observers(&self) -> Vec<u32> {
        let now = self.now();
        (0..self.s.nodes as u32).filter(|&o| self.truth.is_up(o as usize, now) && self.sim.is_up(o as usize)).collect()
    }

    fn leaving(&self, j: u32) -> bool {
        let now = self.now();
        self.truth.life_at(j as usize, now).is_some() && !self.truth.is_up(j as usize, now)
    }

    fn live_sets_agree(&self) -> Result<(), String> {
        self.live_sets_agree_except(&[])
    }

    /// As [`Runner::live_sets_agree`], ignoring the members in `skip`.
    fn live_sets_agree_except(&self, skip: &[u32]) -> Result<(), String> {
        let now = self.now();
        for o in self.observers().into_iter().filter(|o| !skip.contains(o)) {
            for j in (0..self.s.nodes as u32).filter(|&j| j != o && !self.leaving(j) && !skip.contains(&j)) {
                let expected = self.truth.is_up(j as usize, now);
                if self.believes_live(o, j) != expected {
                    let what = if expected { "running but not live" } else { "down but live" };
                    return Err(format!("n{o} lists n{j} as {what}"));
                }
            }
        }
        Ok(())
    }

    fn incarnations_agree(&self) -> Result<(), String> {
        let now = self.now();
        let observers = self.observers();
        for &o in &observers {
            let Some(node) = self.sim.node(o as usize) else { continue };
            for j in (0..self.s.nodes as u32).filter(|&j| j != o && !self.leaving(j)) {
                let m = node.member(&Self::name(j));
                if self.truth.is_up(j as usize, now) {
                    let own = self.sim.node(j as usize).map(|n| n.incarnation());
                    match m {
                        Some(m) if m.state == MemberState::Alive && Some(m.incarnation) == own && m.addr == j => {}
                        Some(m) => {
                            return Err(format!(
                                "n{o} lists n{j} as {:?} at incarnation {} (it holds {:?})",
                                m.state, m.incarnation, own
                            ))
                        }
                        None => return Err(format!("n{o} does not know running n{j}")),
                    }
                } else if m.is_some_and(|m| m.state.is_live()) {
                    return Err(format!("n{o} lists down n{j} as live"));
                }
            }
        }
        Ok(())
    }

    fn check_formation(&mut self) {
        // Gossip reaches everyone with high probability, not certainty: at more than 5% loss a member
        // may miss a join and learn of it from anti-entropy (the convergence oracle's bound).
        if self.s.loss > 0.05 {
            return;
        }
        // A member behind a lossy one-way link joins late (its join frame waits out retransmission
        // timeouts); the bound is for the network the presets are made for.
        let lossy: Vec<u32> = self.s.asymmetric.iter().flat_map(|&(a, b, _)| [a, b]).collect();
        if let Err(why) = self.live_sets_agree_except(&lossy) {
            let bound = ms(oracle::formation_bound(&self.s));
            self.violation(Oracle::Formation, format!("{bound} ms after the last member started: {why}"));
        }
    }

    fn check_completeness(&mut self, victim: u32, crashed_at: u64, now: u64) {
        let restarted = self.truth.lives[victim as usize].iter().any(|l| l.start >= crashed_at);
        if restarted || self.truth.any_partition(crashed_at, now) || self.s.nodes < 3 {
            return;
        }
        for o in self.observers() {
            if !self.truth.up_throughout(o as usize, crashed_at, now)
                || self.truth.disturbed(o as usize, crashed_at, now)
            {
                continue;
            }
            if self.believes_live(o, victim) {
                let bound = now - crashed_at;
                self.violation(
                    Oracle::Completeness,
                    format!("n{o} still lists n{victim} as live {bound} ms after it crashed at {crashed_at} ms"),
                );
                return;
            }
        }
    }

    fn check_identity(&mut self, node: u32, restarted_at: u64, now: u64) {
        let i = node as usize;
        if !self.truth.up_throughout(i, restarted_at, now)
            || self.truth.any_partition(restarted_at, now)
            || self.truth.disturbed(i, restarted_at, now)
        {
            return;
        }
        let lossy = |o: u32| self.s.asymmetric.iter().any(|&(a, b, _)| a == o || b == o || a == node || b == node);
        for o in self.observers() {
            if o == node
                || !self.truth.up_throughout(o as usize, restarted_at, now)
                || self.truth.disturbed(o as usize, restarted_at, now)
                || lossy(o)
            {
                continue;
            }
            if !self.believes_live(o, node) {
                let state = self
                    .sim
                    .node(o as usize)
                    .and_then(|n| n.member(&Self::name(node)))
                    .map(|m| (m.state, m.incarnation));
                self.violation(
                    Oracle::Identity,
                    format!(
                        "n{o} lists n{node} as {state:?} {} ms after it restarted at {restarted_at} ms",
                        now - restarted_at
                    ),
                );
                return;
            }
        }
    }

    fn check_accuracy(&mut self, t: u64, observer: u32, id: &NodeId, by: &NodeId) {
        let (Some(x), Some(c)) = (Self::index(id), Self::index(by)) else { return };
        if !self.truth.is_up(x as usize, t) {
            return;
        }
        let at = t + ms(oracle::recovery_bound(&self.s));
        self.schedule(at, Action::CheckRecovery { observer, subject: x, failed_at: t });
        if self.s.loss > 0.05 {
            return;
        }
        let w = ms(oracle::accuracy_window(&self.s));
        let from = t.saturating_sub(w);
        let touched = |n: u32| self.s.asymmetric.iter().any(|&(a, b, _)| a == n || b == n);
        let life_start = |n: u32| self.truth.life_at(n as usize, t).map(|l| self.truth.lives[n as usize][l].start);
        let excused = touched(x)
            || touched(c)
            || self.truth.disturbed(x as usize, from, t)
            || self.truth.disturbed(c as usize, from, t)
            || self.truth.any_partition(from, t)
            || self.truth.forged.iter().any(|&(a, at)| a == x && at >= from)
            || life_start(x).is_some_and(|s| s >= from)
            || life_start(c).map_or(true, |s| s >= from);
        if !excused {
            self.violation(
                Oracle::Accuracy,
                format!("n{c} declared running n{x} failed (seen by n{observer}) at {t} ms"),
            );
        }
    }

    /// `observer` declared running `subject` failed at `failed_at`: by now it must list it live again,
    /// unless something stood between them meanwhile.
    fn check_recovery(&mut self, observer: u32, subject: u32, failed_at: u64, now: u64) {
        let (o, x) = (observer as usize, subject as usize);
        let lossy = |n: u32| self.s.asymmetric.iter().any(|&(a, b, _)| a == n || b == n);
        // The storm of claims and refutations after a partition or a stall is the accuracy oracle's
        // business; this one asks for a quick repair of a failure declared in calm conditions.
        let from = failed_at.saturating_sub(ms(oracle::accuracy_window(&self.s)));
        if !self.truth.up_throughout(o, failed_at, now)
            || !self.truth.up_throughout(x, failed_at, now)
            || self.truth.any_partition(from, now)
            || self.truth.disturbed(o, from, now)
            || self.truth.disturbed(x, from, now)
            || lossy(observer)
            || lossy(subject)
        {
            return;
        }
        if !self.believes_live(observer, subject) {
            let state = self.sim.node(o).and_then(|n| n.member(&Self::name(subject))).map(|m| (m.state, m.incarnation));
            self.violation(
                Oracle::Recovery,
                format!(
                    "n{observer} still lists running n{subject} as {state:?} {} ms after declaring it failed at {failed_at} ms",
                    now - failed_at
                ),
            );
        }
    }

    /// Checks that node `i` refused no honest packet on arrival. Call before it stops, and at the end.
    fn check_intake(&mut self, i: u32) {
        let Some(node) = self.sim.node(i as usize) else { return };
        let (st, sec) = (node.stats(), node.security_stats());
        // A member frozen while the key changed could not have applied the change in time.
        let rotation = self.s.faults.iter().find_map(|f| match f.kind {
            FaultKind::RotateKey { step_ms } => Some((f.at_ms, f.at_ms + 2 * step_ms)),
            _ => None,
        });
        let frozen_in_rotation = rotation.is_some_and(|(a, b)| self.truth.disturbed(i as usize, a, b));
        let refused = [
            ("undecodable", st.decode_errors),
            ("oversized", st.oversized_dropped),
            ("taken for replays", sec.replays),
            ("plaintext while encrypted", sec.plaintext_rejected),
            ("truncated", sec.truncated),
            ("without a keyring", sec.no_keyring),
            ("unsendable", sec.unsendable),
            ("unauthenticated", if frozen_in_rotation { 0 } else { sec.unauthenticated }),
        ];
        for (what, count) in refused {
            if count > 0 {
                self.violation(Oracle::Intake, format!("n{i} refused {count} honest packets as {what}"));
            }
        }
    }

    /// True when every tracked broadcast and reliable message has reached every member it must
    /// reach, or been reported lost.
    fn settled(&self) -> bool {
        let now = self.now();
        if self.s.push_pull_off {
            return self.truth.reliable.iter().all(|r| r.failed_reported || self.truth.reliable_ever.contains(&r.tag));
        }
        let broadcasts_done = self.owed_broadcasts().iter().all(|(&(r, origin, epoch), (count, _, _))| {
            self.truth.missed[r as usize].get(&(origin, epoch)).copied().unwrap_or(0) >= *count
        });
        let mut latest: BTreeMap<(u32, u32), u64> = BTreeMap::new();
        for b in &self.truth.broadcasts {
            if let Some(k) = b.key {
                latest.insert((b.origin, k), b.tag);
            }
        }
        let keyed_done = latest.iter().all(|(&(origin, key), &tag)| {
            (0..self.s.nodes as u32)
                .filter(|&r| r != origin && self.truth.is_up(r as usize, now))
                .all(|r| self.truth.keyed[r as usize].get(&(origin, key)).and_then(|v| v.last()) == Some(&tag))
        });
        let reliable_done =
            self.truth.reliable.iter().all(|r| r.failed_reported || self.truth.reliable_ever.contains(&r.tag));
        broadcasts_done && keyed_done && reliable_done
    }

    /// The receiver must hold the broadcast: a member from before it was sent (long enough to be
    /// known) until the end, in one life. Broadcasts sent before a member joined are not its own.
    fn eligible(&self, r: u32, sent_at: u64) -> bool {
        let now = self.now();
        let known_after = ms(oracle::formation_bound(&self.s));
        self.truth.member_throughout(r as usize, sent_at.saturating_sub(known_after), now)
    }

    fn calm(&self, a: u32, b: u32) -> bool {
        let now = self.now();
        self.s.loss <= 0.05
            && self.s.asymmetric.is_empty()
            && !self.truth.any_partition(0, now)
            && !self.truth.disturbed(a as usize, 0, now)
            && !self.truth.disturbed(b as usize, 0, now)
    }

    /// The unkeyed broadcasts owed to each eligible receiver that it neither delivered nor can blame
    /// on a drop its origin reported, per `(receiver, origin, epoch)`: how many, which tags, and
    /// whether any of them went missing on a calm network (where nothing excuses a loss).
    fn owed_broadcasts(&self) -> Owed {
        let n = self.s.nodes as u32;
        let mut owed = Owed::new();
        for b in self.truth.broadcasts.iter().filter(|b| b.key.is_none() && !b.reported_dropped) {
            let origin_ran_on = self.truth.lives[b.origin as usize][b.life].end.is_none();
            // A broadcast whose origin stopped is owed to everyone only if a member that still runs
            // holds it: what only stopped members knew is gone with them.
            let anyone =
                (0..n).any(|r| self.sim.is_up(r as usize) && self.truth.delivered[r as usize].contains_key(&b.tag));
            if !origin_ran_on && !anyone {
                continue;
            }
            for r in (0..n).filter(|&r| r != b.origin && self.eligible(r, b.at)) {
                if self.truth.delivered[r as usize].contains_key(&b.tag) {
                    continue;
                }
                let e = owed.entry((r, b.origin, b.epoch)).or_insert((0, Vec::new(), false));
                e.0 += 1;
                e.1.push(b.tag);
                e.2 |= origin_ran_on && self.calm(r, b.origin);
            }
        }
        owed
    }

    fn check_broadcasts(&mut self) {
        let now = self.now();
        if self.s.push_pull_off {
            // Without push-pull nothing repairs or reports a lost broadcast: only at-most-once
            // (checked as they arrive) is promised.
            return;
        }
        for ((r, origin, epoch), (count, tags, calm)) in self.owed_broadcasts() {
            if calm {
                self.violation(
                    Oracle::Broadcast,
                    format!(
                        "n{r} never received {count} of n{origin}'s broadcasts (first #{}) on a calm network",
                        tags[0]
                    ),
                );
                continue;
            }
            let reported = self.truth.missed[r as usize].get(&(origin, epoch)).copied().unwrap_or(0);
            if reported < count {
                self.violation(
                    Oracle::Broadcast,
                    format!(
                        "n{r} silently missed {} of n{origin}'s broadcasts (first #{}; {reported} reported missed) at {now} ms",
                        count - reported,
                        tags[0]
                    ),
                );
            }
        }
    }

    fn check_keyed(&mut self) {
        let n = self.s.nodes as u32;
        let repaired = !self.s.push_pull_off;
        for r in 0..n {
            let lists: Vec<((u32, u32), Vec<u64>)> =
                self.truth.keyed[r as usize].iter().map(|(k, v)| (*k, v.clone())).collect();
            for ((origin, key), tags) in lists {
                if tags.windows(2).any(|w| w[1] <= w[0]) {
                    self.violation(
                        Oracle::Keyed,
                        format!("n{r} got an older value of n{origin}'s key {key} after a newer one: {tags:?}"),
                    );
                }
            }
        }
        let mut latest: BTreeMap<(u32, u32), SentBroadcast> = BTreeMap::new();
        for b in &self.truth.broadcasts {
            if let Some(k) = b.key {
                latest.insert((b.origin, k), b.clone());
            }
        }
        for ((origin, key), b) in latest {
            if !repaired || b.reported_dropped || self.truth.lives[origin as usize][b.life].end.is_some() {
                continue;
            }
            let receivers: Vec<u32> = (0..n).filter(|&r| r != origin && self.eligible(r, b.at)).collect();
            for r in receivers {
                let last = self.truth.keyed[r as usize].get(&(origin, key)).and_then(|v| v.last().copied());
                if last != Some(b.tag) {
                    self.violation(
                        Oracle::Keyed,
                        format!("n{r} ends at value {last:?} of n{origin}'s key {key}, not the latest #{}", b.tag),
                    );
                }
            }
        }
    }

    fn check_reliable(&mut self) {
        let now = self.now();
        let slow = self.s.slowest();
        let bound = ms(slow.reliable_timeout * slow.reliable_attempts) + ms(slow.probe_interval);
        for r in self.truth.reliable.clone() {
            let count = u32::from(self.truth.reliable_ever.contains(&r.tag));
            let sender_lived = self.truth.lives[r.from as usize][r.life].end.map_or(true, |e| e >= r.at + bound);
            if count == 1 || !sender_lived {
                continue;
            }
            if !r.failed_reported {
                self.violation(
                    Oracle::Reliable,
                    format!(
                        "n{}'s reliable message #{} (id {}) to n{} sent at {} ms vanished without a failure report",
                        r.from, r.tag, r.id, r.to, r.at
                    ),
                );
            } else if self.truth.up_throughout(r.to as usize, r.at, now)
                && !self.truth.any_partition(r.at, now)
                && !self.truth.disturbed(r.to as usize, r.at, now)
                && self.calm(r.from, r.to)
            {
                self.violation(
                    Oracle::Reliable,
                    format!(
                        "n{}'s reliable message #{} to n{} failed although nothing stood in the way",
                        r.from, r.tag, r.to
                    ),
                );
            }
        }
    }

    fn check_growth(&mut self) {
        let n = self.s.nodes;
        for o in self.up_nodes() {
            let c = self.s.config_of(o as usize);
            let Some(node) = self.sim.node(o as usize) else { continue };
            let f = node.footprint();
            let indirect_bound = 2 * n * (c.indirect_checks + 1) + 16;
            let timer_bound = 64 + 2 * indirect_bound + n * (c.suspicion_mult as usize + 2) + 4 * n;
            let checks = [
                ("members", f.members, n),
                ("suspicions", f.suspicions, n),
                ("timers", f.timers, timer_bound),
                ("indirect probes", f.indirect_probes, indirect_bound),
                ("membership queue", f.membership_queue, c.membership_queue_depth),
                ("broadcast queue", f.broadcast_queue, c.broadcast_queue_depth),
                ("undrained transmits", f.outbox, 0),
                ("undrained events", f.events, 0),
                ("metadata requests", f.meta_requests, n),
            ];
            for (what, size, bound) in checks {
                if size > bound {
                    self.violation(Oracle::Growth, format!("n{o} holds {size} {what} (bound {bound})"));
                }
            }
        }
    }
}
