//! The simulated world: many [`Node`]s, a [`Network`] between them, a virtual clock, and faults.
//!
//! The clock never ticks on its own: [`Simulation::step`] jumps it straight to the next packet arrival
//! or node deadline, so idle time costs nothing and a 10,000-node run is bounded by the work the
//! protocol really does. Node `i` has address `i` and name `n{i}`.
//!
//! Faults: [`Simulation::crash`] silences a node (its packets are dropped), [`Simulation::restart`]
//! brings it back as a fresh process with the same name that joins through the seeds,
//! [`Simulation::stall`] freezes a node for a while (a GC pause or an overloaded CPU: packets queue up
//! and timers are late, then timers run before the backlog), and the network can lose packets or be
//! partitioned.
//!
//! Members can also come and go for good: [`Simulation::add_node`] starts a member that never
//! existed before (a new name) after the world was built, and [`Simulation::remove_node`] drops one
//! such member entirely, so that a run in which 100,000 short-lived members pass through holds memory
//! for the members present only. Their addresses are reused, after a quarantine the caller chooses.
//! The [`Recorder`]'s ground truth covers the nodes the world was built with only.

use alloc::collections::{BinaryHeap, VecDeque};
use alloc::format;
use alloc::vec::Vec;
use core::cmp::Reverse;
use core::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::network::{Fate, LinkModel, Network};
use super::stats::Recorder;
use shoal_core::config::Config;
use shoal_core::event::Event;
use shoal_core::identity::NodeId;
use shoal_core::member::MemberSnapshot;
use shoal_core::node::{Node, TransmitKind};
use shoal_core::time::Instant;

/// How a simulation starts.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Number of nodes.
    pub nodes: usize,
    /// Protocol configuration of every node.
    pub node: Config,
    /// Network model.
    pub link: LinkModel,
    /// Seed of everything random in the run.
    pub seed: u64,
    /// Start with every node already knowing every other (as after a long, quiet run). Otherwise each
    /// node joins through node 0, one every `join_spacing`.
    pub warm_start: bool,
    /// Time between two nodes starting in a cold start.
    pub join_spacing: Duration,
    /// Keyring every node starts with (for `SecurityMode`s other than plaintext).
    pub keyring: Option<shoal_core::security::Keyring>,
    /// Per-node protocol configurations (mixed presets): node `i` uses `node_configs[i]` when present,
    /// `node` otherwise.
    pub node_configs: Vec<Config>,
    /// Nodes that do not exist at the start, not even in a warm start's shared view; start them
    /// later with [`Simulation::restart`].
    pub start_later: Vec<usize>,
    /// The seeds every node joins through in a cold start (a node never joins through itself).
    pub cold_seeds: Vec<u32>,
}

impl SimConfig {
    /// `nodes` LAN-preset nodes on a lossless LAN, warm-started.
    pub fn lan(nodes: usize, seed: u64) -> Self {
        SimConfig {
            nodes,
            node: Config::lan(),
            link: LinkModel::LAN,
            seed,
            warm_start: true,
            join_spacing: Duration::from_millis(10),
            keyring: None,
            node_configs: Vec::new(),
            start_later: Vec::new(),
            cold_seeds: alloc::vec![0],
        }
    }

    /// The protocol configuration of node `i`.
    pub fn config_of(&self, i: usize) -> &Config {
        self.node_configs.get(i).unwrap_or(&self.node)
    }
}

/// One traced packet (when tracing is on), for visualisation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceEntry {
    /// Virtual time it was sent.
    pub sent: Instant,
    /// Arrival time; `None` when lost or dropped at a partition.
    pub arrives: Option<Instant>,
    /// Index of the node that sent it.
    pub from: u32,
    /// Address it was sent to.
    pub to: u32,
    /// What the packet is for.
    pub kind: TransmitKind,
    /// Size of the packet or frame, in bytes.
    pub bytes: u32,
}

#[derive(Debug)]
struct SimNode {
    node: Option<Node<u32>>,
    id: NodeId,
    stalled_until: Option<Instant>,
    held: Vec<(u32, Vec<u8>)>,
    scheduled: Option<Instant>,
    restarts: u32,
    receive_delay: Duration,
    /// Started a graceful leave in its current life (the recorder keeps this for the first nodes).
    left: bool,
    /// Removed for good by [`Simulation::remove_node`]; the slot waits to be reused.
    removed: bool,
}

impl SimNode {
    fn empty(id: NodeId) -> Self {
        SimNode {
            node: None,
            id,
            stalled_until: None,
            held: Vec::new(),
            scheduled: None,
            restarts: 0,
            receive_delay: Duration::ZERO,
            left: false,
            removed: false,
        }
    }
}

/// A deterministic many-node simulation.
#[derive(Debug)]
pub struct Simulation {
    config: SimConfig,
    now: Instant,
    nodes: Vec<SimNode>,
    network: Network,
    wakeups: BinaryHeap<Reverse<(Instant, u32)>>,
    rng: SmallRng,
    recorder: Recorder,
    trace: Option<Vec<TraceEntry>>,
    pending_starts: Vec<(Instant, u32)>,
    event_log: Option<Vec<(Instant, u32, Event<u32>)>>,
    /// Nodes below this index are the ones the world was built with: the recorder knows them.
    recorded: usize,
    /// Slots freed by [`Simulation::remove_node`], oldest first, with when they were freed.
    freed: VecDeque<(Instant, u32)>,
    /// Nodes added so far by [`Simulation::add_node`] (the next one's name).
    added: u64,
}

impl Simulation {
    /// Builds the world at virtual time 0.
    ///
    /// # Panics
    /// If `config.node` fails [`Config::validate`] (a programming error in the scenario).
    pub fn new(config: SimConfig) -> Self {
        let mut rng = SmallRng::seed_from_u64(config.seed);
        let network = Network::new(config.link, rng.random());
        let n = config.nodes;
        let mut sim = Simulation {
            now: Instant::ZERO,
            nodes: Vec::with_capacity(n),
            network,
            wakeups: BinaryHeap::with_capacity(n * 2),
            recorder: Recorder::new(n),
            trace: None,
            pending_starts: Vec::new(),
            event_log: None,
            recorded: n,
            freed: VecDeque::new(),
            added: 0,
            rng,
            config,
        };
        for i in 0..n {
            let id = NodeId::new(&format!("n{i}")).expect("generated names are valid");
            sim.nodes.push(SimNode::empty(id));
        }
        let later = sim.config.start_later.clone();
        if sim.config.warm_start {
            let everyone: Vec<(NodeId, u32)> = sim
                .nodes
                .iter()
                .enumerate()
                .filter(|(i, _)| !later.contains(i))
                .map(|(i, s)| (s.id.clone(), i as u32))
                .collect();
            // One table of everyone, shared by all nodes until each changes a part of it: ten
            // thousand nodes that know each other cost one table plus their own probe orders.
            let snapshot = MemberSnapshot::alive(Instant::ZERO, everyone, sim.config.seed ^ 0x5eed_7ab1e);
            for i in (0..n).filter(|i| !later.contains(i)) {
                let mut node = sim.fresh_node(i);
                node.assume_alive_shared(Instant::ZERO, &snapshot);
                // As if they had joined through the first three members, like a real deployment.
                node.remember_seeds(&[0, 1, 2]);
                sim.nodes[i].node = Some(node);
                sim.recorder.on_up(i);
                sim.after_input(i);
            }
        } else {
            for i in (0..n).filter(|i| !later.contains(i)) {
                let at = Instant::ZERO + sim.config.join_spacing * i as u32;
                sim.pending_starts.push((at, i as u32));
            }
            sim.pending_starts.reverse();
        }
        sim
    }

    fn fresh_node(&mut self, i: usize) -> Node<u32> {
        let seed = self.rng.random();
        let id = self.nodes[i].id.clone();
        let config = self.config.config_of(i).clone();
        let mut node = Node::new(self.now, config, id, i as u32, seed).expect("simulation config must be valid");
        if let Some(keyring) = &self.config.keyring {
            node.set_keyring(keyring.clone(), self.rng.random());
        }
        node
    }

    // ----- clock -------------------------------------------------------------------------------

    /// Current virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// The time of the next thing that will happen: a packet's arrival, a node's timer, a start.
    /// Call before [`Simulation::step`] to act between steps at an exact time.
    pub fn next_event_time(&self) -> Option<Instant> {
        let a = self.network.next_arrival();
        let b = self.wakeups.peek().map(|w| w.0 .0);
        let c = self.pending_starts.last().map(|p| p.0);
        [a, b, c].into_iter().flatten().min()
    }

    /// Advances to the next event and processes everything due then. Returns false when nothing is
    /// left to happen (every node crashed).
    pub fn step(&mut self) -> bool {
        let Some(t) = self.next_event_time() else { return false };
        self.now = self.now.max(t);
        self.process_due();
        true
    }

    /// Runs until virtual time `t` (inclusive), then sets the clock to `t`.
    pub fn run_until(&mut self, t: Instant) {
        while let Some(next) = self.next_event_time() {
            if next > t {
                break;
            }
            self.now = self.now.max(next);
            self.process_due();
        }
        self.now = self.now.max(t);
    }

    /// Runs for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let t = self.now + d;
        self.run_until(t);
    }

    /// Runs until `done` holds (checked after each step) or `limit` of virtual time passes. Returns
    /// the time it took, or `None` on timeout.
    pub fn run_until_condition(
        &mut self,
        limit: Duration,
        mut done: impl FnMut(&Simulation) -> bool,
    ) -> Option<Duration> {
        let start = self.now;
        let end = start + limit;
        loop {
            if done(self) {
                return Some(self.now.saturating_duration_since(start));
            }
            match self.next_event_time() {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    self.process_due();
                }
                _ => {
                    self.now = end;
                    return done(self).then(|| end.saturating_duration_since(start));
                }
            }
        }
    }

    fn process_due(&mut self) {
        let now = self.now;
        while let Some(&(at, i)) = self.pending_starts.last() {
            if at > now {
                break;
            }
            self.pending_starts.pop();
            let seeds = self.config.cold_seeds.clone();
            self.start_node(i as usize, &seeds);
        }
        while let Some(d) = self.network.poll_delivery(now) {
            let to = d.to as usize;
            let Some(slot) = self.nodes.get_mut(to) else { continue };
            if slot.node.is_none() {
                continue;
            }
            if !slot.receive_delay.is_zero() && !d.held {
                let at = now + slot.receive_delay;
                self.network.hold(d, at);
                continue;
            }
            let Some(node) = slot.node.as_mut() else { continue };
            if slot.stalled_until.is_some_and(|until| until > now) {
                slot.held.push((d.from, d.bytes));
                continue;
            }
            let _ = node.handle_packet(now, d.from, &d.bytes);
            self.after_input(to);
        }
        while let Some(&Reverse((at, i))) = self.wakeups.peek() {
            if at > now {
                break;
            }
            self.wakeups.pop();
            let i = i as usize;
            if self.nodes[i].scheduled != Some(at) {
                continue; // superseded
            }
            self.nodes[i].scheduled = None;
            self.wake(i);
        }
    }

    fn wake(&mut self, i: usize) {
        let now = self.now;
        let slot = &mut self.nodes[i];
        if let Some(until) = slot.stalled_until {
            if until > now {
                slot.scheduled = Some(until);
                self.wakeups.push(Reverse((until, i as u32)));
                return;
            }
            slot.stalled_until = None;
        }
        let Some(node) = slot.node.as_mut() else { return };
        // A node waking from a stall runs its overdue timers before it reads its backlog.
        node.handle_timeout(now);
        for (from, bytes) in core::mem::take(&mut slot.held) {
            let _ = node.handle_packet(now, from, &bytes);
        }
        self.after_input(i);
    }

    /// Drains a node's outputs into the network and the recorder, and re-arms its wakeup.
    fn after_input(&mut self, i: usize) {
        let now = self.now;
        let Some(node) = self.nodes[i].node.as_mut() else { return };
        while let Some(t) = node.poll_transmit() {
            let bytes = t.bytes.len() as u32;
            let fate = self.network.send(now, i as u32, t.to, t.bytes, t.reliable, t.kind);
            self.recorder.on_transmit(i, bytes, t.kind);
            if let Some(trace) = &mut self.trace {
                let arrives = match fate {
                    Fate::Arrives(at) => Some(at),
                    _ => None,
                };
                trace.push(TraceEntry { sent: now, arrives, from: i as u32, to: t.to, kind: t.kind, bytes });
            }
        }
        while let Some(e) = node.poll_event() {
            if let Some(log) = &mut self.event_log {
                log.push((now, i as u32, e.clone()));
            }
            if i < self.recorded {
                self.recorder.on_event(now, i, e);
            }
        }
        let next = node.poll_timeout();
        let slot = &mut self.nodes[i];
        let next = match slot.stalled_until {
            Some(until) if until > now => next.map(|t| t.max(until)),
            _ => next,
        };
        if next != slot.scheduled {
            if let Some(t) = next {
                self.wakeups.push(Reverse((t, i as u32)));
            }
            slot.scheduled = next;
        }
    }

    // ----- faults and commands -----------------------------------------------------------------

    fn start_node(&mut self, i: usize, seeds: &[u32]) {
        let node = self.fresh_node(i);
        self.nodes[i].node = Some(node);
        self.nodes[i].held.clear();
        self.nodes[i].stalled_until = None;
        self.nodes[i].left = false;
        if i < self.recorded {
            self.recorder.on_up(i);
        }
        let seeds: Vec<u32> = seeds.iter().copied().filter(|&s| s as usize != i).collect();
        if let Some(node) = self.nodes[i].node.as_mut() {
            if !seeds.is_empty() {
                let _ = node.join(self.now, &seeds);
            }
        }
        self.after_input(i);
    }

    /// Kills node `i` at once: no goodbye, packets to it vanish.
    pub fn crash(&mut self, i: usize) {
        if self.nodes[i].node.take().is_some() {
            self.nodes[i].scheduled = None;
            self.nodes[i].held.clear();
            if i < self.recorded {
                self.recorder.on_crash(self.now, i);
            }
        }
    }

    /// Starts a crashed node again as a new process with the same name, joining through `seeds`.
    /// A node removed with [`Simulation::remove_node`] stays removed.
    pub fn restart(&mut self, i: usize, seeds: &[u32]) {
        if self.nodes[i].node.is_none() && !self.nodes[i].removed {
            self.nodes[i].restarts += 1;
            self.start_node(i, seeds);
        }
    }

    /// Freezes node `i` for `d`: it handles nothing until then, and its packets queue up.
    pub fn stall(&mut self, i: usize, d: Duration) {
        let until = self.now + d;
        let slot = &mut self.nodes[i];
        if slot.node.is_none() {
            return;
        }
        slot.stalled_until = Some(slot.stalled_until.map_or(until, |u| u.max(until)));
        slot.scheduled = Some(until);
        self.wakeups.push(Reverse((until, i as u32)));
        if i < self.recorded {
            self.recorder.on_stall(i, until);
        }
    }

    /// Makes node `i` slow to process its input: every packet it receives waits `delay` before it is
    /// handled, while its timers keep firing on time (the Lifeguard paper's "slow message
    /// processing", as under CPU exhaustion). `Duration::ZERO` makes it healthy again.
    pub fn set_receive_delay(&mut self, i: usize, delay: Duration) {
        self.nodes[i].receive_delay = delay;
        if !delay.is_zero() && i < self.recorded {
            // Accusations of a slow member are not counted as accusations of a healthy one.
            self.recorder.on_stall(i, Instant::from_millis(u64::MAX / 2));
        }
    }

    /// Node `i` leaves gracefully; it keeps running (gossiping its departure) until [`Simulation::shut_down`].
    pub fn leave(&mut self, i: usize) {
        let now = self.now;
        if let Some(node) = self.nodes[i].node.as_mut() {
            node.leave(now);
            self.nodes[i].left = true;
            if i < self.recorded {
                self.recorder.on_leave(now, i);
            }
            self.after_input(i);
        }
    }

    /// Stops a node that has left (no crash recorded).
    pub fn shut_down(&mut self, i: usize) {
        self.nodes[i].node = None;
        self.nodes[i].scheduled = None;
    }

    /// Starts a member that never existed before, after the world was built, joining through `seeds`,
    /// and returns its index (its address). It is named `a{k}` for the `k`-th node added, so it is
    /// never mistaken for one of the nodes the world was built with (`n{i}`), and the [`Recorder`]
    /// leaves it out of its ground truth; its packets still count in the traffic totals.
    ///
    /// Its slot is one freed by [`Simulation::remove_node`] at least `reuse_after` ago, if any, or a
    /// new one. A reused slot means a reused address: choose `reuse_after` longer than the other
    /// members can still send to the previous occupant (its detection, gossip to the dead, re-announces
    /// to dead members, reaping) unless address reuse is what the run is about.
    pub fn add_node(&mut self, seeds: &[u32], reuse_after: Duration) -> usize {
        let id = NodeId::new(&format!("a{}", self.added)).expect("generated names are valid");
        self.added += 1;
        let i = match self.freed.front() {
            Some(&(at, i)) if self.now.saturating_duration_since(at) >= reuse_after => {
                self.freed.pop_front();
                self.nodes[i as usize] = SimNode::empty(id);
                i as usize
            }
            _ => {
                self.nodes.push(SimNode::empty(id));
                self.nodes.len() - 1
            }
        };
        self.start_node(i, seeds);
        i
    }

    /// Removes node `i`, one added with [`Simulation::add_node`], for good: stops it at once if it
    /// still runs (as a crash: no goodbye; after [`Simulation::leave`], the end of its departure),
    /// drops everything the simulator holds for it, and offers its slot to later
    /// [`Simulation::add_node`] calls. Packets still on their way to it are dropped when they arrive,
    /// as for a crashed node. Removing a removed node does nothing.
    ///
    /// # Panics
    /// If `i` is one of the nodes the world was built with.
    pub fn remove_node(&mut self, i: usize) {
        assert!(i >= self.recorded, "only nodes added with add_node can be removed");
        let slot = &mut self.nodes[i];
        if slot.removed {
            return;
        }
        let id = slot.id.clone();
        *slot = SimNode { removed: true, ..SimNode::empty(id) };
        self.freed.push_back((self.now, i as u32));
    }

    /// Node `i` broadcasts a user message.
    pub fn broadcast(&mut self, i: usize, topic: &str, payload: &[u8]) -> Result<(), shoal_core::node::CommandError> {
        let node = self.nodes[i].node.as_mut().ok_or(shoal_core::node::CommandError::NotRunning)?;
        node.broadcast(topic, payload, None)?;
        self.recorder.on_broadcast(self.now, topic, payload);
        self.after_input(i);
        Ok(())
    }

    /// Runs a command on node `i` and drains its outputs.
    pub fn with_node<R>(&mut self, i: usize, f: impl FnOnce(&mut Node<u32>, Instant) -> R) -> Option<R> {
        let now = self.now;
        let r = f(self.nodes[i].node.as_mut()?, now);
        self.after_input(i);
        Some(r)
    }

    /// Splits the cluster: `group_of[i]` is node `i`'s side.
    pub fn partition(&mut self, group_of: Vec<u16>) {
        self.network.partition(group_of);
    }

    /// Ends any partition.
    pub fn heal(&mut self) {
        self.network.heal();
    }

    /// Changes the network model from now on.
    pub fn set_link(&mut self, link: LinkModel) {
        self.network.set_link(link);
    }

    /// Sends raw `bytes` from address `from` to node `to` through the network, as a hostile or buggy
    /// peer would (`from` need not be a node). Goes through the link model like any packet.
    pub fn inject(&mut self, from: u32, to: u32, bytes: Vec<u8>, reliable: bool) {
        let kind = if reliable { TransmitKind::PushPull } else { TransmitKind::Gossip };
        self.network.send(self.now, from, to, bytes, reliable, kind);
    }

    /// The keyring nodes started or restarted from now on receive (after a key rotation).
    pub fn set_keyring(&mut self, keyring: Option<shoal_core::security::Keyring>) {
        self.config.keyring = keyring;
    }

    /// The network, to change per-link models or the reliable bandwidth.
    pub fn network_mut(&mut self) -> &mut Network {
        &mut self.network
    }

    /// Starts (or stops) keeping every event every node emits, with its time and node, for
    /// [`Simulation::drain_events`].
    pub fn set_event_log(&mut self, on: bool) {
        self.event_log = if on { Some(self.event_log.take().unwrap_or_default()) } else { None };
    }

    /// Takes the events kept since the last call, in the order they were emitted.
    pub fn drain_events(&mut self) -> Vec<(Instant, u32, Event<u32>)> {
        self.event_log.as_mut().map(core::mem::take).unwrap_or_default()
    }

    /// Starts (or stops) recording every packet for visualisation.
    pub fn set_tracing(&mut self, on: bool) {
        self.trace = if on { Some(self.trace.take().unwrap_or_default()) } else { None };
    }

    /// Takes the packets traced since the last call.
    pub fn drain_trace(&mut self) -> Vec<TraceEntry> {
        self.trace.as_mut().map(core::mem::take).unwrap_or_default()
    }

    // ----- queries -----------------------------------------------------------------------------

    /// Number of node slots: the nodes the world was built with plus every slot
    /// [`Simulation::add_node`] created, whether up, crashed or removed. Node indices run `0..len()`.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True when there is no node slot at all (built with `nodes: 0` and nothing added).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Node `i`, unless crashed or shut down.
    pub fn node(&self, i: usize) -> Option<&Node<u32>> {
        self.nodes[i].node.as_ref()
    }

    /// True when node `i` runs: started, and not crashed, shut down or removed. A stalled or slow
    /// node is up.
    pub fn is_up(&self, i: usize) -> bool {
        self.nodes[i].node.is_some()
    }

    /// Node `i` started a graceful leave in its current life.
    pub fn has_left(&self, i: usize) -> bool {
        if i < self.recorded {
            self.recorder.has_left(i)
        } else {
            self.nodes[i].left
        }
    }

    /// True while node `i` is frozen by [`Simulation::stall`] (not for a slow receiver set with
    /// [`Simulation::set_receive_delay`]).
    pub fn is_stalled(&self, i: usize) -> bool {
        self.nodes[i].stalled_until.is_some_and(|u| u > self.now)
    }

    /// The name of node `i`: `n{i}` for the nodes the world was built with, `a{k}` for the `k`-th
    /// node added. A restarted node keeps its name.
    pub fn name(&self, i: usize) -> &NodeId {
        &self.nodes[i].id
    }

    /// The network, to read its counters ([`Network::stats`]) or its link models.
    pub fn network(&self) -> &Network {
        &self.network
    }

    /// The figures measured so far against the ground truth: detections, false positives, traffic,
    /// broadcasts.
    pub fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    /// The recorder, mutably. [`Recorder`] has no public method that changes it, so this only lets
    /// the caller replace it whole; a replacement from [`Recorder::new`] starts with every node
    /// counted down, so it records no false positives. Read figures with [`Simulation::recorder`].
    pub fn recorder_mut(&mut self) -> &mut Recorder {
        &mut self.recorder
    }

    /// The configuration the world was built from; its keyring is the one last set with
    /// [`Simulation::set_keyring`].
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// Random node index among those up, drawn from the simulation's RNG.
    pub fn random_up_node(&mut self) -> Option<usize> {
        let up: Vec<usize> = (0..self.nodes.len()).filter(|&i| self.is_up(i)).collect();
        if up.is_empty() {
            None
        } else {
            Some(up[self.rng.random_range(0..up.len())])
        }
    }

    /// Draws from the simulation's RNG (for scenarios that pick random times or nodes).
    pub fn rng(&mut self) -> &mut SmallRng {
        &mut self.rng
    }

    /// True when every node that is up sees exactly the up nodes as live (ignoring nodes that left),
    /// i.e. the whole cluster agrees with the ground truth. Costs O(n²).
    pub fn converged(&self) -> bool {
        self.agreement() >= 1.0
    }

    /// Share of (observer, member) pairs, over nodes that are up, where the observer's belief about
    /// the member (live or not) matches the ground truth. 1.0 means full agreement. Costs O(n²).
    pub fn agreement(&self) -> f64 {
        let up: Vec<bool> = self.nodes.iter().map(|s| s.node.is_some()).collect();
        let mut right = 0u64;
        let mut total = 0u64;
        for (i, slot) in self.nodes.iter().enumerate() {
            let Some(node) = &slot.node else { continue };
            for (j, other) in self.nodes.iter().enumerate() {
                if i == j || self.has_left(j) {
                    continue;
                }
                total += 1;
                let believed_live = node.member(&other.id).is_some_and(|m| m.state.is_live());
                if believed_live == up[j] {
                    right += 1;
                }
            }
        }
        if total == 0 {
            1.0
        } else {
            right as f64 / total as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn added_nodes_join_and_removed_ones_give_their_slot_back_after_the_quarantine() {
        let mut sim = Simulation::new(SimConfig::lan(3, 11));
        let quarantine = Duration::from_secs(60);
        let a = sim.add_node(&[0, 1], quarantine);
        assert_eq!((a, sim.name(a).as_str()), (3, "a0"));
        sim.run_for(Duration::from_secs(10));
        for i in 0..3 {
            let m = sim.node(i).unwrap().member(sim.name(a)).expect("the added node joined");
            assert!(m.state.is_live());
        }
        sim.leave(a);
        assert!(sim.has_left(a) && !sim.recorder().has_left(0));
        sim.run_for(Duration::from_secs(2));
        sim.remove_node(a);
        sim.remove_node(a);
        assert!(!sim.is_up(a));
        sim.restart(a, &[0]);
        assert!(!sim.is_up(a), "a removed node stays removed");
        // Within the quarantine the slot is not reused; after it, it is, under a new name.
        let b = sim.add_node(&[0], quarantine);
        assert_eq!((b, sim.name(b).as_str()), (4, "a1"));
        sim.run_for(quarantine);
        let c = sim.add_node(&[0], quarantine);
        assert_eq!((c, sim.name(c).as_str()), (3, "a2"));
        assert_eq!(sim.len(), 5);
        sim.run_for(Duration::from_secs(10));
        let seen = sim.node(0).unwrap();
        assert!(seen.member(&NodeId::new("a0").unwrap()).is_some_and(|m| !m.state.is_live()));
        assert!(seen.member(&NodeId::new("a2").unwrap()).is_some_and(|m| m.state.is_live()));
        assert!(sim.converged());
        assert_eq!(sim.recorder().false_positives(), 0);
    }
}
