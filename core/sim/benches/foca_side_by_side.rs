//! Steady-state traffic of foca 2.0.0 (crates.io; a sans-IO SWIM library) next to Shoal's own
//! simulator, measured in one process so that the two figures give a same-run ratio.
//! Run: `cargo bench -p shoal-sim --bench foca_side_by_side`.
//!
//! For n = 100 and n = 1,000 members:
//!
//! - **foca**: a deterministic discrete-event simulation written here. n `foca::Foca` instances,
//!   each with its own seeded `SmallRng` (rand 0.10, the version foca's RNG bound needs); identities
//!   are a `u32` address plus a `u16` generation (so `Identity::renew` can rejoin with a winning
//!   identity); packets are encoded with foca's own `PostcardCodec`. The network delivers every
//!   packet 1 ms plus a seeded uniform 0-0.5 ms jitter after `send_to`, with no loss; timers fire at
//!   microsecond resolution on a virtual clock. The configuration is foca's LAN preset,
//!   `Config::new_lan(n)`, unchanged: 1 s probe period, 500 ms probe RTT, 3 indirect probes,
//!   `max_transmissions` and the suspicion timeout scaled to n, 1,400-byte packets, and the extensions
//!   the preset already turns on: periodic gossip (every 200 ms to 3 members, sent only while there
//!   are updates to disseminate), periodic announce (every 30 s to 1 member, answered with a feed
//!   packet of known members), periodic announce to down members (65 s, 2 members; nothing is down
//!   here) and `notify_down_members`. Nothing else is enabled.
//!   Warm-up: every member announces to member 0 at t = 0 and the cluster runs until every instance
//!   has `num_members() == n - 1` (checked every 100 virtual ms, at most 1,200 virtual s; the detail
//!   line prints when it happened). Most pairs meet within seconds through the join updates' gossip;
//!   at n = 1,000 a handful of (member, member) pairs miss every copy of an update and only meet later,
//!   through a periodic announce's feed or a probe, which takes a few hundred virtual seconds. Then
//!   30 virtual seconds settle (the update backlog is empty by then; the detail line prints it), then a
//!   120-virtual-second window is measured: payload bytes handed to `Runtime::send_to` and the
//!   number of `send_to` calls, divided by n and by the window, plus `MemberDown` notifications
//!   (false positives: nobody fails).
//! - **Shoal**: `shoal_sim::scenario::traffic(n, Config::lan(), periods, seed)`, as `shoal-sim traffic`
//!   runs it: a warm-started cluster on the simulator's LAN link (1 ms + 0-1 ms jitter, no loss), a
//!   warm-up of one push-pull period plus its jitter, then `periods` push-pull periods measured (4 at
//!   n = 100, 2 at n = 1,000). Its bytes are the packets and reliable frames (push-pull) the nodes
//!   hand to the network, payload only, as foca's.
//!
//! Neither figure includes UDP/IP (or TCP) headers; the detail lines add 28 bytes per packet
//! (IPv4 + UDP) to both for an on-the-wire estimate.
//!
//! Last, the per-packet cost at n = 1,000: the median time of one foca `handle_data` of a ping
//! captured in the measured window (answered with an ack) against one Shoal `Node::handle_packet` of
//! a ping captured from a warm Shoal simulation (plus draining the ack it queues), each replayed to
//! its real receiver.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::hint::black_box;
use std::num::NonZeroU32;
use std::time::{Duration, Instant as Wall};

use foca::{Codec, Foca, Header, Identity, Message, NoCustomBroadcast, Notification, PostcardCodec, Runtime, Timer};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use shoal_core::{Config, TransmitKind};
use shoal_sim::{scenario, SimConfig, Simulation};

const SEED: u64 = 0x5eed_f0ca;
/// Bytes of IPv4 + UDP headers, for the on-the-wire estimate.
const UDP_IP: f64 = 28.0;
const SETTLE: Duration = Duration::from_secs(30);
const WINDOW: Duration = Duration::from_secs(120);
/// Give up waiting for full membership after this long (virtual); reported if it happens.
const MAX_JOIN: Duration = Duration::from_secs(1_200);

/// A member's identity: its address and a generation bumped on each auto-rejoin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Id {
    addr: u32,
    generation: u16,
}

impl Identity for Id {
    type Addr = u32;

    fn renew(&self) -> Option<Self> {
        Some(Id { addr: self.addr, generation: self.generation.wrapping_add(1) })
    }

    fn addr(&self) -> u32 {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        // Serial-number comparison, so a renewed identity wins even after wrapping.
        (self.generation.wrapping_sub(adversary.generation) as i16) > 0
    }
}

type FocaRng = rand_foca::rngs::SmallRng;
type Instance = Foca<Id, PostcardCodec, FocaRng, NoCustomBroadcast>;

/// What foca asked for during one call: collected, then applied to the simulation.
#[derive(Default)]
struct Outbox {
    sends: Vec<(u32, Vec<u8>)>,
    timers: Vec<(Duration, Timer<Id>)>,
    downs: u64,
    /// Defunct, Rejoin, Idle or Rename: none should happen in a fault-free run.
    trouble: u64,
}

impl Runtime<Id> for Outbox {
    fn notify(&mut self, notification: Notification<'_, Id>) {
        match notification {
            Notification::MemberDown(_) => self.downs += 1,
            Notification::Defunct | Notification::Rejoin(_) | Notification::Idle | Notification::Rename(..) => {
                self.trouble += 1
            }
            _ => {}
        }
    }

    fn send_to(&mut self, to: Id, data: &[u8]) {
        self.sends.push((to.addr, data.to_vec()));
    }

    fn submit_after(&mut self, event: Timer<Id>, after: Duration) {
        self.timers.push((after, event));
    }
}

/// A runtime that drops everything, for timing `handle_data` alone (plus encoding its answer).
struct Sink;

impl Runtime<Id> for Sink {
    fn notify(&mut self, notification: Notification<'_, Id>) {
        black_box(notification);
    }

    fn send_to(&mut self, to: Id, data: &[u8]) {
        black_box((to, data.len()));
    }

    fn submit_after(&mut self, event: Timer<Id>, after: Duration) {
        black_box((event, after));
    }
}

enum What {
    Packet { to: u32, data: Vec<u8> },
    Timer { node: u32, timer: Timer<Id> },
}

struct Scheduled {
    at_us: u64,
    seq: u64,
    what: What,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at_us, self.seq) == (other.at_us, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at_us, self.seq).cmp(&(other.at_us, other.seq))
    }
}

/// Packet kinds counted in the measured window, by foca message.
const FOCA_KINDS: [&str; 6] = ["ping", "ack", "indirect", "gossip", "announce+feed", "other"];

fn foca_kind(message: &Message<Id>) -> usize {
    match message {
        Message::Ping(_) => 0,
        Message::Ack(_) => 1,
        Message::PingReq { .. }
        | Message::IndirectPing { .. }
        | Message::IndirectAck { .. }
        | Message::ForwardedAck { .. } => 2,
        Message::Gossip => 3,
        Message::Announce | Message::Feed => 4,
        Message::Broadcast | Message::TurnUndead => 5,
    }
}

struct FocaCluster {
    nodes: Vec<Instance>,
    queue: BinaryHeap<Reverse<Scheduled>>,
    now_us: u64,
    seq: u64,
    net_rng: SmallRng,
    out: Outbox,
    packets: u64,
    bytes: u64,
    downs: u64,
    trouble: u64,
    errors: u64,
    /// While true, sends are classified by message and the first ping is kept.
    measuring: bool,
    packets_by_kind: [u64; 6],
    bytes_by_kind: [u64; 6],
    captured_ping: Option<(u32, Vec<u8>)>,
}

impl FocaCluster {
    fn new(n: usize, seed: u64) -> Self {
        let config = foca::Config::new_lan(NonZeroU32::new(n as u32).expect("n > 0"));
        let nodes = (0..n)
            .map(|i| {
                let rng =
                    <FocaRng as rand_foca::SeedableRng>::seed_from_u64(seed ^ (i as u64).wrapping_mul(0x9e37_79b9));
                Foca::new(Id { addr: i as u32, generation: 0 }, config.clone(), rng, PostcardCodec)
            })
            .collect();
        FocaCluster {
            nodes,
            queue: BinaryHeap::new(),
            now_us: 0,
            seq: 0,
            net_rng: SmallRng::seed_from_u64(seed),
            out: Outbox::default(),
            packets: 0,
            bytes: 0,
            downs: 0,
            trouble: 0,
            errors: 0,
            measuring: false,
            packets_by_kind: [0; 6],
            bytes_by_kind: [0; 6],
            captured_ping: None,
        }
    }

    fn schedule(&mut self, at_us: u64, what: What) {
        self.seq += 1;
        self.queue.push(Reverse(Scheduled { at_us, seq: self.seq, what }));
    }

    /// Applies what the last call into instance `node` asked for: sends go on the network, timers on
    /// the clock (to be handed back to `node`).
    fn flush_for(&mut self, node: u32) {
        let sends = std::mem::take(&mut self.out.sends);
        for (to, data) in sends {
            self.packets += 1;
            self.bytes += data.len() as u64;
            if self.measuring {
                if let Ok(header) = PostcardCodec.decode_header(&data[..]) {
                    let header: Header<Id> = header;
                    let k = foca_kind(&header.message);
                    self.packets_by_kind[k] += 1;
                    self.bytes_by_kind[k] += data.len() as u64;
                    if k == 0 && self.captured_ping.is_none() {
                        self.captured_ping = Some((to, data.clone()));
                    }
                }
            }
            let delay = 1_000 + self.net_rng.random_range(0..=500u64);
            self.schedule(self.now_us + delay, What::Packet { to, data });
        }
        let timers = std::mem::take(&mut self.out.timers);
        for (after, timer) in timers {
            let at = self.now_us + after.as_micros() as u64;
            self.schedule(at, What::Timer { node, timer });
        }
        self.downs += std::mem::take(&mut self.out.downs);
        self.trouble += std::mem::take(&mut self.out.trouble);
    }

    fn run_until(&mut self, until_us: u64) {
        while self.queue.peek().is_some_and(|Reverse(s)| s.at_us <= until_us) {
            let Reverse(s) = self.queue.pop().expect("peeked");
            self.now_us = s.at_us;
            let (node, result) = match s.what {
                What::Packet { to, data } => (to, self.nodes[to as usize].handle_data(&data, &mut self.out)),
                What::Timer { node, timer } => (node, self.nodes[node as usize].handle_timer(timer, &mut self.out)),
            };
            if result.is_err() {
                self.errors += 1;
            }
            self.flush_for(node);
        }
        self.now_us = until_us;
    }

    fn all_joined(&self) -> bool {
        let n = self.nodes.len();
        self.nodes.iter().all(|f| f.num_members() == n - 1)
    }
}

struct FocaFigures {
    bytes_per_member_s: f64,
    packets_per_member_s: f64,
    downs: u64,
    trouble: u64,
    errors: u64,
    join_secs: Option<f64>,
    backlog_at_start: usize,
    backlog_at_end: usize,
    by_kind: Vec<String>,
    wall: f64,
    /// Median ns of one `handle_data` of a captured steady-state ping, and its size.
    ping_ns: Option<(f64, usize)>,
}

fn run_foca(n: usize, time_packets: bool) -> FocaFigures {
    let t = Wall::now();
    let mut c = FocaCluster::new(n, SEED);
    let seed_id = Id { addr: 0, generation: 0 };
    for i in 1..n {
        if c.nodes[i].announce(seed_id, &mut c.out).is_err() {
            c.errors += 1;
        }
        c.flush_for(i as u32);
    }
    let step = 100_000;
    let mut join_secs = None;
    while c.now_us < MAX_JOIN.as_micros() as u64 {
        c.run_until(c.now_us + step);
        if c.all_joined() {
            join_secs = Some(c.now_us as f64 / 1e6);
            break;
        }
    }
    c.run_until(c.now_us + SETTLE.as_micros() as u64);
    let backlog_at_start = c.nodes.iter().map(|f| f.updates_backlog()).sum();
    let (packets, bytes, downs, trouble, errors) = (c.packets, c.bytes, c.downs, c.trouble, c.errors);
    c.measuring = true;
    c.run_until(c.now_us + WINDOW.as_micros() as u64);
    c.measuring = false;
    let per = |v: u64| v as f64 / n as f64 / WINDOW.as_secs_f64();
    let by_kind = FOCA_KINDS
        .iter()
        .zip(c.packets_by_kind.iter().zip(c.bytes_by_kind.iter()))
        .filter(|(_, (&p, _))| p > 0)
        .map(|(name, (&p, &b))| format!("{name} {:.1} B/{:.2} pk", per(b), per(p)))
        .collect();
    let mut figures = FocaFigures {
        bytes_per_member_s: per(c.bytes - bytes),
        packets_per_member_s: per(c.packets - packets),
        downs: c.downs - downs,
        trouble: c.trouble - trouble,
        errors: c.errors - errors,
        join_secs,
        backlog_at_start,
        backlog_at_end: c.nodes.iter().map(|f| f.updates_backlog()).sum(),
        by_kind,
        wall: t.elapsed().as_secs_f64(),
        ping_ns: None,
    };
    if time_packets {
        if let Some((to, data)) = c.captured_ping.take() {
            let node = &mut c.nodes[to as usize];
            let mut per_batch = Vec::with_capacity(200);
            for _ in 0..200 {
                let t = Wall::now();
                for _ in 0..1_000 {
                    let _ = node.handle_data(black_box(&data), Sink);
                }
                per_batch.push(t.elapsed().as_nanos() as f64 / 1_000.0);
            }
            figures.ping_ns = Some((scenario::median(&per_batch), data.len()));
        }
    }
    figures
}

/// Median ns of one Shoal `handle_packet` of a steady-state ping (and draining the ack it queues),
/// replayed to its real receiver in a warm 1,000-member simulation; and the ping's size.
fn shoal_ping(n: usize) -> Option<(f64, usize)> {
    let mut sim = Simulation::new(SimConfig::lan(n, SEED));
    sim.run_for(Duration::from_secs(10));
    let far = sim.now() + Duration::from_secs(60);
    let ping = loop {
        let d = sim.network_mut().poll_delivery(far)?;
        if d.kind == TransmitKind::Ping && !d.reliable {
            break d;
        }
    };
    let size = ping.bytes.len();
    sim.with_node(ping.to as usize, |node, now| {
        let mut per_batch = Vec::with_capacity(200);
        for _ in 0..200 {
            let t = Wall::now();
            for _ in 0..1_000 {
                let _ = node.handle_packet(now, ping.from, black_box(&ping.bytes));
                while let Some(tx) = node.poll_transmit() {
                    black_box(tx);
                }
            }
            per_batch.push(t.elapsed().as_nanos() as f64 / 1_000.0);
        }
        while node.poll_event().is_some() {}
        (scenario::median(&per_batch), size)
    })
}

fn main() {
    for n in [100usize, 1_000] {
        let periods = if n >= 1_000 { 2 } else { 4 };
        let foca = run_foca(n, n == 1_000);

        let t = Wall::now();
        let shoal = scenario::traffic(n, Config::lan(), periods, SEED);
        let shoal_wall = t.elapsed().as_secs_f64();
        let (a, b) = (shoal.bytes_per_member_s(), shoal.packets_per_member_s());
        let (x, y) = (foca.bytes_per_member_s, foca.packets_per_member_s);

        println!(
            "foca side by side: n = {n}: foca 2.0.0 (LAN config new_lan({n}) unchanged: periodic gossip 200 ms x3, periodic announce 30 s x1, postcard codec, 1,400-byte packets; {:.0} s window) {x:.1} bytes/member/s, {y:.2} packets/member/s, {} down; Shoal (LAN preset, {periods} push-pull periods = {:.0} s) {a:.1} bytes/member/s, {b:.2} packets/member/s, {} false positives; bytes ratio Shoal/foca {:.2}, packets ratio {:.2}  [foca {:.1} s, Shoal {:.1} s]",
            WINDOW.as_secs_f64(),
            foca.downs,
            shoal.secs,
            shoal.false_positives,
            a / x,
            b / y,
            foca.wall,
            shoal_wall,
        );
        let shoal_kinds: Vec<String> = shoal
            .bytes
            .iter()
            .zip(shoal.packets.iter())
            .zip(["ping", "ack", "ping-req", "nack", "gossip", "push-pull", "direct"])
            .filter(|((_, &p), _)| p > 0)
            .map(|((&by, &p), name)| {
                let per = |v: u64| v as f64 / n as f64 / shoal.secs;
                format!("{name} {:.1} B/{:.2} pk", per(by), per(p))
            })
            .collect();
        println!(
            "  n = {n} detail: foca joined in {}, update backlog (all members) {} at window start, {} at end, {} errors, {} other notifications; by kind per member/s: {}",
            foca.join_secs.map_or_else(|| format!("NOT ALL (gave up after {} s)", MAX_JOIN.as_secs()), |s| format!("{s:.1} s")),
            foca.backlog_at_start,
            foca.backlog_at_end,
            foca.errors,
            foca.trouble,
            foca.by_kind.join(", "),
        );
        println!(
            "  n = {n} detail: Shoal by kind per member/s: {}; {} of {} push-pulls as packets, {} digest requests",
            shoal_kinds.join(", "),
            shoal.push_pulls_as_packets,
            shoal.push_pulls,
            shoal.member_digests,
        );
        println!(
            "  n = {n} with {UDP_IP:.0} B IPv4+UDP per packet: foca {:.1} bytes/member/s, Shoal {:.1}; ratio {:.2}",
            x + UDP_IP * y,
            a + UDP_IP * b,
            (a + UDP_IP * b) / (x + UDP_IP * y),
        );

        if let Some((foca_ns, foca_size)) = foca.ping_ns {
            match shoal_ping(n) {
                Some((shoal_ns, shoal_size)) => println!(
                    "foca side by side: n = {n}: per packet: foca handle_data of a {foca_size}-byte steady-state ping (+ ack encode) median {foca_ns:.0} ns; Shoal handle_packet of a {shoal_size}-byte steady-state ping (+ ack encode) median {shoal_ns:.0} ns; ratio Shoal/foca {:.2}",
                    shoal_ns / foca_ns
                ),
                None => println!("foca side by side: n = {n}: per packet: no Shoal ping captured"),
            }
        }
    }
}
