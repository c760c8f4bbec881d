//! Churn: 100,000 short-lived members join a small stable cluster, stay a while and go (most leave
//! gracefully, some crash), and the stable members' state must stay bounded by the members present
//! plus what the reap time keeps, never growing with the number of members ever seen (memberlist's
//! users met unbounded left-member state: consul #11970).
//!
//! Run both configurations, each in a process of its own so that its memory readings are its own:
//! `cargo bench -p shoal-sim --bench churn`
//! Run one: `cargo bench -p shoal-sim --bench churn -- lan|short [--members N]`
//! With `--broadcasts` and/or `--messages`, each passing member also sends one user broadcast and/or
//! one reliable message to a stable member, which exercises the other state kept per member
//! (broadcast origins and the push-pull digest, reliable de-duplication records).
//!
//! The scenario: 5 stable members (LAN preset, warm-started) run throughout. Members arrive at a
//! steady rate (6 per second), each joining through two of the stable members picked at random, stay
//! 15-60 s (about 225 are present at any time), then leave gracefully (80%) or crash (20%). A member that leaves is stopped once its departure is
//! disseminated (at most 10 s later). Arrivals go on until 100,000 members have departed. Departed
//! members are removed from the simulator (`Simulation::remove_node`), so the simulator holds memory
//! for members present only; their addresses are reused after a quarantine longer than anyone can
//! still hold or contact them.
//!
//! Every 10 simulated seconds, each stable member is sampled: its member table (all states), what it
//! believes live, its `footprint()`, and its full push-pull state, obtained by asking it for one
//! (a push-pull request from an address that is no member, carrying no records, whose answer is
//! decoded and counted instead of sent). Push-pull frames the members really exchange are measured
//! from the packet trace. Checks printed as PASS/FAIL (exit status 1 on any FAIL):
//! - the table never exceeds the bound: the members present plus the departures recent enough to be
//!   held (see [`Run::bound`] for the margin);
//! - the push-pull state has at most bound + 1 records, and its size does not grow from the second
//!   quarter of the run (25k-50k departures) to the last (75k-100k);
//! - the footprint at 100k departures is no larger than at 25k and 50k (within noise).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::io::{BufRead, BufReader};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant as Wall};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use shoal_core::wire::{begin_packet, decode_packet, Message, Writer, PROTOCOL_VERSION};
use shoal_core::{Config, Event, Footprint, Instant, MemberState, MessageKind, NodeId, TransmitKind};
use shoal_sim::{SimConfig, Simulation};

const CORE: usize = 5;
/// The ledger's table of forgotten broadcast lives (core's `ledger::MAX_FORGOTTEN`).
const FORGOTTEN_LIVES_CAP: usize = 8_192;
const SEEDS_PER_JOIN: usize = 2;
/// Arrivals per simulated second; with stays of 15-60 s (37.5 s on average) about 225 are present,
/// and 1,800 depart per LAN reap time. (Stays of 30-120 s at 4 per second, about 300 present, cost
/// some 16 CPU minutes per configuration: the cost is dissemination, which grows with the members
/// present times the changes per second; the shorter stays save a third for the same departures.)
const RATE: f64 = 6.0;
const STAY_MS: (u64, u64) = (15_000, 60_000);
const CRASH_SHARE: f64 = 0.2;
const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// A leaving member is stopped once its departure is disseminated, or this long after it started.
const LEAVE_CAP: Duration = Duration::from_secs(10);
/// A table row is printed every this many samples.
const PRINT_EVERY: u64 = 100;
/// The address of the asker of the sampling push-pulls: no member has it.
const PROBE_ADDR: u32 = u32::MAX - 1;
/// Histogram buckets of push-pull frame sizes.
const BUCKET: usize = 64;
const BUCKETS: usize = 8_192;

fn rss_mib(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// CPU time this (single-threaded) process has run, from the scheduler's own account.
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/schedstat").unwrap_or_default();
    stat.split_whitespace().next().and_then(|ns| ns.parse::<f64>().ok()).map_or(f64::NAN, |ns| ns / 1e9)
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Sizes of frames, in buckets of [`BUCKET`] bytes (constant memory however long the run).
struct Histogram {
    counts: Vec<u64>,
    n: u64,
    max: usize,
}

impl Histogram {
    fn new() -> Self {
        Histogram { counts: vec![0; BUCKETS], n: 0, max: 0 }
    }

    fn add(&mut self, bytes: usize) {
        self.counts[(bytes / BUCKET).min(BUCKETS - 1)] += 1;
        self.n += 1;
        self.max = self.max.max(bytes);
    }

    /// The upper edge of the bucket holding quantile `q`.
    fn quantile(&self, q: f64) -> usize {
        if self.n == 0 {
            return 0;
        }
        let rank = ((self.n as f64 * q).ceil() as u64).max(1);
        let mut seen = 0;
        for (b, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return ((b + 1) * BUCKET).min(self.max);
            }
        }
        self.max
    }
}

/// Running mean and maximum.
#[derive(Clone, Copy, Default)]
struct Agg {
    sum: f64,
    n: u64,
    max: f64,
}

impl Agg {
    fn add(&mut self, v: f64) {
        self.sum += v;
        self.n += 1;
        self.max = self.max.max(v);
    }

    fn mean(&self) -> f64 {
        if self.n == 0 {
            f64::NAN
        } else {
            self.sum / self.n as f64
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    Arrive,
    Depart {
        slot: u32,
        serial: u64,
    },
    StopLeaver {
        slot: u32,
        serial: u64,
        cap_ms: u64,
    },
    /// A member present for a few seconds sends what `Extras` asks for.
    Speak {
        slot: u32,
        serial: u64,
    },
    Sample,
}

/// Optional traffic from the passing members, for the state other than the member table that is
/// kept per member: each sends one user broadcast, and/or one reliable message to a random stable
/// member, 5 s after it arrives.
#[derive(Clone, Copy, Default)]
struct Extras {
    broadcasts: bool,
    messages: bool,
}

/// How the members pass: departures to reach, arrivals per second, range of stays (ms).
#[derive(Clone, Copy)]
struct Shape {
    target: u64,
    rate: f64,
    stay_ms: (u64, u64),
}

/// A full push-pull state, as one stable member answers a request for it.
#[derive(Clone, Copy, Default)]
struct PushPullState {
    records: usize,
    gone_records: usize,
    /// Entries of the broadcast digest that follows the records (one per life of an origin).
    digest_entries: usize,
    bytes: usize,
}

/// What was seen at a milestone (a number of departures).
#[derive(Clone, Copy)]
struct Snapshot {
    departures: u64,
    sim_secs: f64,
    table: usize,
    bound: usize,
    /// Field by field, the largest over the stable members.
    footprint: Footprint,
    push_pull: PushPullState,
    rss_mib: f64,
    slots: usize,
}

struct Run {
    extras: Extras,
    broadcasts_sent: u64,
    /// Per stable member, a bit per passing member whose broadcast it delivered, and the deliveries
    /// of a broadcast it had delivered already.
    delivered: Vec<Vec<u64>>,
    duplicates: Vec<u64>,
    first_duplicate: Option<String>,
    shape: Shape,
    target: u64,
    sim: Simulation,
    rng: SmallRng,
    events: BinaryHeap<Reverse<(u64, u64, Ev)>>,
    seq: u64,
    arrivals: u64,
    /// Present members added by the run (arrived, not departed): serial to slot and arrival (ms).
    present: HashMap<u64, (u32, u64)>,
    /// Departure times (ms) of members that left / crashed, within their windows.
    recent_leaves: VecDeque<u64>,
    recent_crashes: VecDeque<u64>,
    /// Departure times (ms) within `origin_window`: a departed member's broadcast origin is held
    /// that long (see `origin_bound`).
    recent_origins: VecDeque<u64>,
    origin_window: Duration,
    departures: u64,
    crashes: u64,
    leave_window: Duration,
    crash_window: Duration,
    reuse_after: Duration,
    samples: u64,
    peak_cluster: usize,
    // Results.
    violations: u64,
    first_violation: Option<String>,
    record_violations: u64,
    /// Per-member state besides the table (broadcast origins, reliable senders, digest entries) over
    /// the bound, and the largest seen.
    keyed_violations: u64,
    first_keyed_violation: Option<String>,
    keyed_max: (usize, usize, usize),
    peak_table: usize,
    bound_at_peak: usize,
    peak_ratio: f64,
    table_agg: Agg,
    bound_agg: Agg,
    live_error: Agg,
    missing: Agg,
    falsely_dead: Agg,
    probe_hist: Histogram,
    probe_records: Agg,
    /// Full push-pull state bytes per quarter of the run (by departures).
    probe_quarter: [Agg; 4],
    /// Push-pull frames the stable members sent, and all push-pull frames, as traced.
    core_pp: Histogram,
    all_pp: Histogram,
    core_pp_quarter: [Histogram; 4],
    traffic: [(u64, u64); 7],
    snapshots: Vec<Snapshot>,
    milestones: Vec<u64>,
}

fn serial_of(id: &NodeId) -> Option<u64> {
    id.as_str().strip_prefix('a')?.parse().ok()
}

impl Run {
    fn new(config: Config, shape: Shape, extras: Extras, seed: u64) -> Self {
        let target = shape.target;
        let mut sim = Simulation::new(SimConfig { node: config.clone(), ..SimConfig::lan(CORE, seed) });
        sim.set_tracing(true);
        // Every member broadcasts once: a second delivery of one origin's broadcast is a duplicate.
        sim.set_event_log(extras.broadcasts);
        // See `bound`: how long after a departure its record may be held.
        let housekeeping = config.probe_interval * 5;
        let leave_window = config.dead_member_reap_time + Duration::from_secs(10) + housekeeping;
        let crash_window = config.dead_member_reap_time + detection_allowance(&config, 1_000) + housekeeping;
        // Nobody sends to a departed member once every record of it is reaped.
        let reuse_after = crash_window + Duration::from_secs(60);
        // A ledger forgets a departed origin once reaped and quiet for 2 reap times + retention.
        let origin_window =
            config.dead_member_reap_time * 2 + config.broadcast_retention + housekeeping + Duration::from_secs(10);
        Run {
            extras,
            broadcasts_sent: 0,
            delivered: vec![Vec::new(); CORE],
            duplicates: vec![0; CORE],
            first_duplicate: None,
            shape,
            target,
            sim,
            rng: SmallRng::seed_from_u64(seed ^ 0x5eed),
            events: BinaryHeap::new(),
            seq: 0,
            arrivals: 0,
            present: HashMap::new(),
            recent_leaves: VecDeque::new(),
            recent_crashes: VecDeque::new(),
            recent_origins: VecDeque::new(),
            origin_window,
            departures: 0,
            crashes: 0,
            leave_window,
            crash_window,
            reuse_after,
            samples: 0,
            peak_cluster: CORE,
            violations: 0,
            first_violation: None,
            record_violations: 0,
            keyed_violations: 0,
            first_keyed_violation: None,
            keyed_max: (0, 0, 0),
            peak_table: 0,
            bound_at_peak: 0,
            peak_ratio: 0.0,
            table_agg: Agg::default(),
            bound_agg: Agg::default(),
            live_error: Agg::default(),
            missing: Agg::default(),
            falsely_dead: Agg::default(),
            probe_hist: Histogram::new(),
            probe_records: Agg::default(),
            probe_quarter: [Agg::default(); 4],
            core_pp: Histogram::new(),
            all_pp: Histogram::new(),
            core_pp_quarter: [Histogram::new(), Histogram::new(), Histogram::new(), Histogram::new()],
            traffic: [(0, 0); 7],
            snapshots: Vec::new(),
            milestones: vec![target / 4, target / 2, target],
        }
    }

    fn schedule(&mut self, at_ms: u64, ev: Ev) {
        self.seq += 1;
        self.events.push(Reverse((at_ms, self.seq, ev)));
    }

    fn now_ms(&self) -> u64 {
        self.sim.now().as_millis()
    }

    fn quarter(&self) -> usize {
        ((self.departures * 4 / self.target.max(1)) as usize).min(3)
    }

    /// The most records a stable member may hold: the other stable members, the members present, and
    /// the departures recent enough to be held.
    ///
    /// A member that leaves is marked `Left` (its `state_since`) within a few gossip rounds of its
    /// leave (allowed: 10 s) and reaped `dead_member_reap_time` after that, at the next housekeeping
    /// (every 5 protocol periods). A member that crashes is first probed and missed by someone (30 s
    /// allowed: with ~300 members probing round-robin each member is probed about once a second),
    /// then suspected, and declared dead when the suspicion times out: up to the Lifeguard maximum,
    /// `β · α · max(1, log10 n) · probe_interval`. A stable member that missed the gossip and learns
    /// the death from a push-pull takes it as a suspicion of its own and waits that timeout again,
    /// hence twice the maximum, plus 10 s of gossip spread; then the reap time and one housekeeping
    /// period. `n` is taken as at least 1,000 (the run stays near 300). No further margin in counts.
    fn bound(&self) -> usize {
        CORE - 1 + self.present.len() + self.recent_leaves.len() + self.recent_crashes.len()
    }

    /// Broadcast origins (and digest entries) a stable member may hold: the members present and
    /// those departed within `origin_window` (each sent one broadcast, or none).
    fn origin_bound(&self) -> usize {
        CORE - 1 + self.present.len() + self.recent_origins.len()
    }

    fn trim_windows(&mut self) {
        let now = self.now_ms();
        let origin_cut = now.saturating_sub(self.origin_window.as_millis() as u64);
        while self.recent_origins.front().is_some_and(|&t| t < origin_cut) {
            self.recent_origins.pop_front();
        }
        let leave_cut = now.saturating_sub(self.leave_window.as_millis() as u64);
        while self.recent_leaves.front().is_some_and(|&t| t < leave_cut) {
            self.recent_leaves.pop_front();
        }
        let crash_cut = now.saturating_sub(self.crash_window.as_millis() as u64);
        while self.recent_crashes.front().is_some_and(|&t| t < crash_cut) {
            self.recent_crashes.pop_front();
        }
    }

    fn run(&mut self) {
        self.schedule(0, Ev::Arrive);
        self.schedule(SAMPLE_EVERY.as_millis() as u64, Ev::Sample);
        while self.departures < self.target {
            let Some(Reverse((at, _, ev))) = self.events.pop() else { break };
            self.sim.run_until(Instant::from_millis(at));
            match ev {
                Ev::Arrive => self.arrive(),
                Ev::Depart { slot, serial } => self.depart(slot, serial),
                Ev::StopLeaver { slot, serial, cap_ms } => self.stop_leaver(slot, serial, cap_ms),
                Ev::Speak { slot, serial } => self.speak(slot, serial),
                Ev::Sample => {
                    self.sample(false);
                    let next = self.now_ms() + SAMPLE_EVERY.as_millis() as u64;
                    self.schedule(next, Ev::Sample);
                }
            }
        }
    }

    fn arrive(&mut self) {
        let mut seeds: Vec<u32> = Vec::with_capacity(SEEDS_PER_JOIN);
        while seeds.len() < SEEDS_PER_JOIN {
            let s = self.rng.random_range(0..CORE as u32);
            if !seeds.contains(&s) {
                seeds.push(s);
            }
        }
        let slot = self.sim.add_node(&seeds, self.reuse_after) as u32;
        let serial = serial_of(self.sim.name(slot as usize)).expect("added members are named a{k}");
        self.present.insert(serial, (slot, self.now_ms()));
        let stay = self.rng.random_range(self.shape.stay_ms.0..=self.shape.stay_ms.1);
        self.schedule(self.now_ms() + stay, Ev::Depart { slot, serial });
        if self.extras.broadcasts || self.extras.messages {
            self.schedule(self.now_ms() + 5_000, Ev::Speak { slot, serial });
        }
        self.arrivals += 1;
        let next = (self.arrivals as f64 * 1_000.0 / self.shape.rate).round() as u64;
        self.schedule(next, Ev::Arrive);
    }

    fn depart(&mut self, slot: u32, serial: u64) {
        if self.present.remove(&serial).is_none() {
            return;
        }
        let now = self.now_ms();
        if self.rng.random_bool(CRASH_SHARE) {
            self.sim.remove_node(slot as usize);
            self.recent_crashes.push_back(now);
            self.recent_origins.push_back(now);
            self.crashes += 1;
        } else {
            self.sim.leave(slot as usize);
            self.recent_leaves.push_back(now);
            self.recent_origins.push_back(now);
            let cap_ms = now + LEAVE_CAP.as_millis() as u64;
            self.schedule(now + 500, Ev::StopLeaver { slot, serial, cap_ms });
        }
        self.departures += 1;
        if self.milestones.first() == Some(&self.departures) {
            self.milestones.remove(0);
            self.sample(true);
        }
    }

    fn stop_leaver(&mut self, slot: u32, serial: u64, cap_ms: u64) {
        let i = slot as usize;
        if serial_of(self.sim.name(i)) != Some(serial) || !self.sim.is_up(i) {
            return;
        }
        let done = self.sim.node(i).is_some_and(|n| n.leave_disseminated());
        if done || self.now_ms() >= cap_ms {
            self.sim.remove_node(i);
        } else {
            let at = self.now_ms() + 500;
            self.schedule(at, Ev::StopLeaver { slot, serial, cap_ms });
        }
    }

    fn speak(&mut self, slot: u32, serial: u64) {
        if !self.present.contains_key(&serial) {
            return;
        }
        let to = self.sim.name(self.rng.random_range(0..CORE)).clone();
        let Extras { broadcasts, messages } = self.extras;
        // Through the node itself, not `Simulation::broadcast`: the recorder would track every one.
        self.broadcasts_sent += u64::from(broadcasts);
        self.sim.with_node(slot as usize, |node, now| {
            if broadcasts {
                node.broadcast("churn", b"hello from a passing member", None).expect("a running member broadcasts");
            }
            if messages {
                node.send_reliable(now, &to, "churn", b"hello, stable member").expect("a stable member is live");
            }
        });
    }

    /// The full push-pull state stable member `c` sends a member that asks for it.
    fn probe_push_pull(&mut self, c: usize) -> PushPullState {
        let mut w = Writer::with_capacity(64);
        begin_packet(&mut w, PROTOCOL_VERSION);
        let asker = NodeId::new("churn-bench-probe").expect("valid name");
        Message::<u32>::PushPull { from: asker, join: false, reply: false, members: Vec::new() }.encode(&mut w);
        let request = w.into_vec();
        let answers = self
            .sim
            .with_node(c, |node, now| {
                node.handle_packet(now, PROBE_ADDR, &request).expect("the request is well formed");
                let mut out = Vec::new();
                while let Some(t) = node.poll_transmit() {
                    out.push(t);
                }
                out
            })
            .unwrap_or_default();
        let mut state = PushPullState::default();
        for t in answers {
            assert_eq!(t.to, PROBE_ADDR, "a push-pull request is answered with the answer only");
            assert_eq!(t.kind, TransmitKind::PushPull);
            let mut messages = Vec::new();
            decode_packet::<u32>(&t.bytes, &mut messages).expect("the answer decodes");
            for m in messages {
                match m {
                    Message::PushPull { members, .. } => {
                        state.records += members.len();
                        state.gone_records += members.iter().filter(|r| !r.state.is_live()).count();
                    }
                    Message::BroadcastDigest { entries } => state.digest_entries += entries.len(),
                    _ => {}
                }
            }
            state.bytes += t.bytes.len();
        }
        state
    }

    /// Counts the broadcasts the stable members delivered since the last call, and the duplicates.
    fn count_deliveries(&mut self) {
        for (at, observer, event) in self.sim.drain_events() {
            let c = observer as usize;
            let Event::Message { from, kind: MessageKind::Broadcast, .. } = event else { continue };
            let Some(serial) = serial_of(&from).filter(|_| c < CORE) else { continue };
            let (word, bit) = ((serial / 64) as usize, 1u64 << (serial % 64));
            let bits = &mut self.delivered[c];
            if bits.len() <= word {
                bits.resize(word + 1, 0);
            }
            if bits[word] & bit != 0 {
                self.duplicates[c] += 1;
                self.first_duplicate.get_or_insert_with(|| {
                    format!(
                        "n{c} at {:.3} s delivered the one broadcast of {} a second time",
                        at.as_millis() as f64 / 1e3,
                        from
                    )
                });
            }
            bits[word] |= bit;
        }
    }

    fn sample(&mut self, milestone: bool) {
        self.trim_windows();
        self.count_deliveries();
        self.samples += 1;
        let quarter = self.quarter();
        for t in self.sim.drain_trace() {
            let k = t.kind.index();
            self.traffic[k].0 += 1;
            self.traffic[k].1 += u64::from(t.bytes);
            if t.kind == TransmitKind::PushPull {
                self.all_pp.add(t.bytes as usize);
                if (t.from as usize) < CORE {
                    self.core_pp.add(t.bytes as usize);
                    self.core_pp_quarter[quarter].add(t.bytes as usize);
                }
            }
        }
        let truth_live = CORE - 1 + self.present.len();
        let bound = self.bound();
        let now = self.sim.now();
        let mut biggest = (0usize, Footprint::default(), PushPullState::default());
        let mut fp_max = Footprint::default();
        for c in 0..CORE {
            let Some(node) = self.sim.node(c) else { continue };
            let fp = node.footprint();
            let table = node.members().count();
            let live_seen = node.cluster_size() - 1;
            self.peak_cluster = self.peak_cluster.max(node.cluster_size());
            // Members present for 30 s or more that this one does not hold live, and members present
            // (not leaving) that it holds dead.
            let mut falsely_dead = 0;
            for m in node.members() {
                if m.state == MemberState::Dead && serial_of(&m.id).is_some_and(|s| self.present.contains_key(&s)) {
                    falsely_dead += 1;
                }
            }
            let mut missing = 0;
            for &(slot, arrived) in self.present.values() {
                let Some(n) = self.sim.node(slot as usize) else { continue };
                let long_ago = now.as_millis().saturating_sub(arrived) >= 30_000;
                if long_ago && !node.member(n.local_id()).is_some_and(|m| m.state.is_live()) {
                    missing += 1;
                }
            }
            self.falsely_dead.add(falsely_dead as f64);
            self.missing.add(missing as f64);
            self.live_error.add((live_seen as f64 - truth_live as f64).abs());
            self.table_agg.add(table as f64);
            self.bound_agg.add(bound as f64);
            if table > bound {
                self.violations += 1;
                if self.first_violation.is_none() {
                    self.first_violation = Some(format!(
                        "member n{c} at {:.0} s holds {table} records, bound {bound} ({} present, {} leaves, {} crashes in their windows)",
                        secs(now.saturating_duration_since(Instant::ZERO)),
                        self.present.len(),
                        self.recent_leaves.len(),
                        self.recent_crashes.len()
                    ));
                }
            }
            if table > self.peak_table {
                self.peak_table = table;
                self.bound_at_peak = bound;
            }
            // Until the first departures can have been reaped the table holds everyone, as the bound
            // does: the ratio means something from then on.
            if now.saturating_duration_since(Instant::ZERO) > self.crash_window {
                self.peak_ratio = self.peak_ratio.max(table as f64 / bound as f64);
            }
            fp_max = fp_max.peak(fp);
            let pp = self.probe_push_pull(c);
            if pp.records > bound + 1 {
                self.record_violations += 1;
            }
            // Broadcast origins and reliable senders are members too: present or recently departed.
            let keyed = (fp.broadcast_origins, fp.reliable_senders, pp.digest_entries);
            self.keyed_max =
                (self.keyed_max.0.max(keyed.0), self.keyed_max.1.max(keyed.1), self.keyed_max.2.max(keyed.2));
            let origins = self.origin_bound();
            if keyed.0 > origins + 1 || keyed.1 > bound + 1 || keyed.2 > origins + 1 {
                self.keyed_violations += 1;
                if self.first_keyed_violation.is_none() {
                    self.first_keyed_violation = Some(format!(
                        "member n{c} at {:.0} s ({} departures): {} broadcast origins, {} reliable senders, {} digest entries, bound {bound} (origins {origins})",
                        secs(now.saturating_duration_since(Instant::ZERO)),
                        self.departures,
                        keyed.0,
                        keyed.1,
                        keyed.2
                    ));
                }
            }
            self.probe_hist.add(pp.bytes);
            self.probe_records.add(pp.records as f64);
            self.probe_quarter[quarter].add(pp.bytes as f64);
            if table >= biggest.0 {
                biggest = (table, fp, pp);
            }
        }
        if milestone {
            self.snapshots.push(Snapshot {
                departures: self.departures,
                sim_secs: secs(now.saturating_duration_since(Instant::ZERO)),
                table: biggest.0,
                bound,
                footprint: fp_max,
                push_pull: biggest.2,
                rss_mib: rss_mib("VmRSS:"),
                slots: self.sim.len(),
            });
        }
        if milestone || self.samples % PRINT_EVERY == 0 {
            let node = self.sim.node(0).expect("stable members run throughout");
            let counts = state_counts(node);
            let pp = biggest.2;
            println!(
                "  {:>7.0} s  departed {:>6}  present {:>4}  bound {:>5}  n0 table {:>5} (alive {:>4} suspect {:>3} dead {:>4} left {:>4})  push-pull {:>5} records {:>7} B  queue {:>4}  timers {:>5}  slots {:>5}  RSS {:>5.1} MiB{}",
                secs(now.saturating_duration_since(Instant::ZERO)),
                self.departures,
                self.present.len(),
                bound,
                counts.iter().sum::<usize>(),
                counts[0],
                counts[1],
                counts[2],
                counts[3],
                pp.records,
                pp.bytes,
                fp_max.membership_queue,
                fp_max.timers,
                self.sim.len(),
                rss_mib("VmRSS:"),
                if milestone { "  <- milestone" } else { "" }
            );
        }
    }
}

fn state_counts(node: &shoal_core::Node<u32>) -> [usize; 4] {
    let mut c = [0; 4];
    for m in node.members() {
        c[match m.state {
            MemberState::Alive => 0,
            MemberState::Suspect => 1,
            MemberState::Dead => 2,
            MemberState::Left => 3,
        }] += 1;
    }
    c
}

/// From a crash to the last stable member's `Dead` record (see [`Run::bound`]), in a cluster of at
/// most `n` members: a missed probe, twice the longest suspicion, gossip spread.
fn detection_allowance(config: &Config, n: usize) -> Duration {
    let min = config.probe_interval.as_secs_f64() * f64::from(config.suspicion_mult) * (n as f64).log10().max(1.0);
    let max = min * f64::from(config.suspicion_max_timeout_mult);
    Duration::from_secs(30) + Duration::from_secs_f64(2.0 * max) + Duration::from_secs(10)
}

fn check(ok: bool, what: &str, detail: String, failures: &mut u32) {
    println!("{} {what}: {detail}", if ok { "PASS" } else { "FAIL" });
    if !ok {
        *failures += 1;
    }
}

/// Runs one configuration; returns the number of failed checks.
fn run_one(label: &'static str, shape: Shape, extras: Extras) -> u32 {
    let target = shape.target;
    let config = match label {
        "lan" => Config::lan(),
        "short" => {
            let mut c = Config::lan();
            c.dead_member_reap_time = Duration::from_secs(60);
            c
        }
        other => panic!("unknown configuration {other} (lan, short)"),
    };
    let reap = config.dead_member_reap_time;
    println!(
        "churn [{label}]: {CORE} stable members (LAN preset, reap time {:.0} s); {target} departures; arrivals {}/s through {SEEDS_PER_JOIN} random stable members; stays {}-{} s; {:.0}% crash, the rest leave",
        secs(reap),
        shape.rate,
        shape.stay_ms.0 / 1_000,
        shape.stay_ms.1 / 1_000,
        CRASH_SHARE * 100.0
    );
    let wall = Wall::now();
    if extras.broadcasts || extras.messages {
        println!(
            "  each arriving member, 5 s in, sends{}{}",
            if extras.broadcasts { " one user broadcast" } else { "" },
            if extras.messages { " one reliable message to a random stable member" } else { "" }
        );
    }
    let mut run = Run::new(config, shape, extras, 0xc4u64 << 32 | target);
    println!(
        "  windows: a leave is held up to {:.0} s, a crash up to {:.0} s; addresses reused after {:.0} s",
        secs(run.leave_window),
        secs(run.crash_window),
        secs(run.reuse_after)
    );
    run.run();
    let wall = wall.elapsed();
    let cpu = cpu_secs();
    let sim_secs = secs(run.sim.now().saturating_duration_since(Instant::ZERO));
    let stats = run.sim.node(0).map(|n| n.stats()).unwrap_or_default();
    println!(
        "  done: wall {:.0} s (CPU {:.0} s), simulated {:.0} s ({:.1} reap periods), {} arrivals, {} departures ({} crashes), {} samples, simulator slots {}, peak cluster {}",
        secs(wall),
        cpu,
        sim_secs,
        sim_secs / secs(reap),
        run.arrivals,
        run.departures,
        run.crashes,
        run.samples,
        run.sim.len(),
        run.peak_cluster
    );
    println!(
        "  stable members' view: |believed live - present| mean {:.1} max {:.0}; present members missing (after 30 s) mean {:.2} max {:.0}; present members held dead mean {:.2} max {:.0}",
        run.live_error.mean(),
        run.live_error.max,
        run.missing.mean(),
        run.missing.max,
        run.falsely_dead.mean(),
        run.falsely_dead.max
    );
    println!(
        "  n0 counters: push-pulls sent {} received {}, failures declared {}, refutations {}, updates dropped {}, decode errors {}; broadcasts delivered {} dropped {} missed {}; reliable messages delivered {} refused {}",
        stats.push_pulls_sent,
        stats.push_pulls_received,
        stats.failures_declared,
        stats.refutations,
        stats.updates_dropped,
        stats.decode_errors,
        stats.broadcasts_delivered,
        stats.broadcasts_dropped,
        stats.broadcasts_missed,
        stats.direct_delivered,
        stats.reliable_refused
    );
    println!(
        "  traffic by kind (packets / MB): {}",
        TransmitKind::ALL
            .iter()
            .map(|k| {
                let (p, b) = run.traffic[k.index()];
                format!("{k:?} {p} / {:.1}", b as f64 / 1e6)
            })
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "  push-pull frames sent by stable members: {} (p50 {} B, p90 {} B, max {} B); by everyone: {} (p50 {} B, max {} B)",
        run.core_pp.n,
        run.core_pp.quantile(0.5),
        run.core_pp.quantile(0.9),
        run.core_pp.max,
        run.all_pp.n,
        run.all_pp.quantile(0.5),
        run.all_pp.max
    );
    println!(
        "  full push-pull state of a stable member: records mean {:.0} max {:.0}; bytes p50 {} max {}; by quarter of the run (mean bytes): {}",
        run.probe_records.mean(),
        run.probe_records.max,
        run.probe_hist.quantile(0.5),
        run.probe_hist.max,
        run.probe_quarter.iter().map(|a| format!("{:.0}", a.mean())).collect::<Vec<_>>().join(" / ")
    );
    println!(
        "  member table: mean {:.0}, peak {} (bound then {}), highest table/bound once reaping runs {:.2}; bound mean {:.0}",
        run.table_agg.mean(),
        run.peak_table,
        run.bound_at_peak,
        run.peak_ratio,
        run.bound_agg.mean()
    );
    for s in &run.snapshots {
        println!(
            "  at {:>6} departures ({:.0} s): table {} / bound {}, push-pull {} records ({} gone) + {} digest entries {} B, simulator slots {}, RSS {:.1} MiB, footprint (max over stable members): {}",
            s.departures,
            s.sim_secs,
            s.table,
            s.bound,
            s.push_pull.records,
            s.push_pull.gone_records,
            s.push_pull.digest_entries,
            s.push_pull.bytes,
            s.slots,
            s.rss_mib,
            s.footprint.fields().iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
        );
    }

    println!(
        "  note: RSS is the whole process: the simulator's network keeps the arrival time of the last reliable frame of every (sender, receiver) pair ever used (Network::stream_tail), which grows with the pairs the passing members form, whatever the protocol keeps"
    );
    let mut failures = 0;
    if extras.broadcasts {
        run.count_deliveries();
        let distinct: Vec<u32> = run.delivered.iter().map(|b| b.iter().map(|w| w.count_ones()).sum()).collect();
        check(
            run.duplicates.iter().all(|&d| d == 0),
            "each broadcast delivered at most once on the stable members",
            format!(
                "{} broadcasts sent; distinct delivered per stable member {distinct:?}; duplicates {:?}{}",
                run.broadcasts_sent,
                run.duplicates,
                run.first_duplicate.as_ref().map_or(String::new(), |f| format!("; first: {f}"))
            ),
            &mut failures,
        );
    }
    check(
        run.violations == 0,
        "member table within live + recent departures",
        match &run.first_violation {
            None => format!(
                "{} samples, peak {} (bound {}), highest table/bound once reaping runs {:.2}",
                run.table_agg.n, run.peak_table, run.bound_at_peak, run.peak_ratio
            ),
            Some(v) => format!("{} samples over the bound; first: {v}", run.violations),
        },
        &mut failures,
    );
    check(
        run.record_violations == 0,
        "push-pull state within bound + 1 records",
        format!(
            "{} of {} samples over; largest {:.0} records",
            run.record_violations, run.probe_records.n, run.probe_records.max
        ),
        &mut failures,
    );
    check(
        run.keyed_violations == 0,
        "other per-member state within bound + 1 (reliable senders: the member bound; broadcast origins and digest entries: present + departed in the last 2 reap times + retention)",
        match &run.first_keyed_violation {
            None => format!(
                "largest {} origins, {} senders, {} digest entries",
                run.keyed_max.0, run.keyed_max.1, run.keyed_max.2
            ),
            Some(v) => format!(
                "{} samples over; largest {} origins, {} senders, {} digest entries; first: {v}",
                run.keyed_violations, run.keyed_max.0, run.keyed_max.1, run.keyed_max.2
            ),
        },
        &mut failures,
    );
    // Comparing quarters of the run means something once the first quarter ends with the windows of
    // held departures full; a shorter run only ramps up.
    let first_quarter_secs = run.snapshots.first().map_or(0.0, |s| s.sim_secs);
    let settled = first_quarter_secs >= secs(run.crash_window);
    let growth_check = |ok: bool, what: &str, detail: String, failures: &mut u32| {
        if settled {
            check(ok, what, detail, failures);
        } else {
            println!(
                "SKIP {what}: the first quarter of the run ended at {first_quarter_secs:.0} s, before the reap windows filled ({:.0} s): run more members",
                secs(run.crash_window)
            );
        }
    };
    let (q2, q4) = (run.probe_quarter[1].mean(), run.probe_quarter[3].mean());
    growth_check(
        q4 <= q2 * 1.2,
        "push-pull state does not grow with members ever seen",
        format!(
            "mean {q2:.0} B over 25-50% of departures, {q4:.0} B over 75-100% (growing with the total would be about {:.1}x)",
            0.875 / 0.375
        ),
        &mut failures,
    );
    let (c2, c4) = (run.core_pp_quarter[1].quantile(0.5), run.core_pp_quarter[3].quantile(0.5));
    growth_check(
        c4 as f64 <= c2 as f64 * 1.2 + BUCKET as f64,
        "push-pull frames sent do not grow with members ever seen",
        format!("p50 {c2} B over 25-50% of departures, {c4} B over 75-100%"),
        &mut failures,
    );
    if let [a, b, c] = run.snapshots.as_slice() {
        let mut grown = Vec::new();
        for ((name, x), ((_, y), (_, z))) in
            a.footprint.fields().into_iter().zip(b.footprint.fields().into_iter().zip(c.footprint.fields()))
        {
            // The forgotten broadcast lives fill their fixed table (core's `ledger::MAX_FORGOTTEN`)
            // and stay there: bounded by a constant, not by the members seen. Checked on its own below.
            if name == "broadcast_forgotten" {
                continue;
            }
            // Queues and timers move with the moment's traffic: 50% and 32 entries of slack.
            if z as f64 > x.max(y) as f64 * 1.5 + 32.0 {
                grown.push(format!("{name} {x} -> {y} -> {z}"));
            }
        }
        check(
            c.footprint.broadcast_forgotten <= FORGOTTEN_LIVES_CAP,
            "forgotten broadcast lives within their fixed table",
            format!(
                "{} / {} / {} (cap {FORGOTTEN_LIVES_CAP})",
                a.footprint.broadcast_forgotten, b.footprint.broadcast_forgotten, c.footprint.broadcast_forgotten
            ),
            &mut failures,
        );
        growth_check(
            grown.is_empty(),
            &format!(
                "stable members' footprint does not grow with members ever seen ({} / {} / {} departures)",
                a.departures, b.departures, c.departures
            ),
            if grown.is_empty() {
                format!(
                    "members {} / {} / {}, timers {} / {} / {}, membership queue {} / {} / {}",
                    a.footprint.members,
                    b.footprint.members,
                    c.footprint.members,
                    a.footprint.timers,
                    b.footprint.timers,
                    c.footprint.timers,
                    a.footprint.membership_queue,
                    b.footprint.membership_queue,
                    c.footprint.membership_queue
                )
            } else {
                grown.join("; ")
            },
            &mut failures,
        );
        println!(
            "ROW|{label}|{:.0} s|{:.0} s (CPU {:.0} s)|{:.0} s ({:.0} reap periods)|{} ({} crashes)|{}|{}|{} / {}|{} / {}|{:.0}|{:.1} / {:.1} / {:.1} MiB (peak {:.1})",
            secs(reap),
            secs(wall),
            cpu,
            sim_secs,
            sim_secs / secs(reap),
            run.departures,
            run.crashes,
            run.peak_table,
            run.bound_at_peak,
            run.core_pp.quantile(0.5),
            run.core_pp.max,
            run.probe_hist.quantile(0.5),
            run.probe_hist.max,
            run.probe_records.max,
            a.rss_mib,
            b.rss_mib,
            c.rss_mib,
            rss_mib("VmHWM:")
        );
    } else {
        check(false, "milestones reached", format!("{} of 3", run.snapshots.len()), &mut failures);
    }
    failures
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let mut shape = Shape { target: 100_000, rate: RATE, stay_ms: STAY_MS };
    let mut which = Vec::new();
    let mut extras = Extras::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--members" => shape.target = it.next().and_then(|v| v.parse().ok()).expect("--members N"),
            "--rate" => shape.rate = it.next().and_then(|v| v.parse().ok()).expect("--rate PER_SECOND"),
            "--stay" => {
                let range = it.next().and_then(|v| v.split_once('-')).expect("--stay MIN-MAX (seconds)");
                let parse = |v: &str| v.parse::<u64>().expect("--stay MIN-MAX (seconds)") * 1_000;
                shape.stay_ms = (parse(range.0), parse(range.1));
            }
            "lan" | "short" => which.push(a.clone()),
            "--broadcasts" => extras.broadcasts = true,
            "--messages" => extras.messages = true,
            _ => {}
        }
    }
    if which.len() == 1 {
        let label = if which[0] == "lan" { "lan" } else { "short" };
        return if run_one(label, shape, extras) == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE };
    }
    // Both: each in a child process, so that each one's memory readings are its own.
    let exe = std::env::current_exe().expect("the bench knows its own path");
    let mut rows = Vec::new();
    let mut ok = true;
    for label in ["lan", "short"] {
        let mut args = vec![
            label.to_string(),
            "--members".into(),
            shape.target.to_string(),
            "--rate".into(),
            shape.rate.to_string(),
            "--stay".into(),
            format!("{}-{}", shape.stay_ms.0 / 1_000, shape.stay_ms.1 / 1_000),
        ];
        if extras.broadcasts {
            args.push("--broadcasts".into());
        }
        if extras.messages {
            args.push("--messages".into());
        }
        let mut child =
            Command::new(&exe).args(&args).stdout(Stdio::piped()).spawn().expect("the bench can run itself");
        let out = child.stdout.take().expect("piped");
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            match line.strip_prefix("ROW|") {
                Some(row) => rows.push(row.to_string()),
                None => println!("{line}"),
            }
        }
        ok &= child.wait().is_ok_and(|s| s.success());
    }
    println!();
    println!("| config | reap time | wall | simulated | departures | peak table | bound then | push-pull frames p50 / max (stable members) | full push-pull state p50 / max | max records | RSS at 25k / 50k / 100k |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        println!("| {} |", r.replace('|', " | "));
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
