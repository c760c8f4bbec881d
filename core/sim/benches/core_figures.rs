//! Figures for BENCHMARKS.md. Run all: `cargo bench -p shoal-sim --bench core_figures`.
//! Run one (for a clean peak-memory reading, run `scale` alone):
//! `cargo bench -p shoal-sim --bench core_figures -- pairs|scale|detect|false-positives|broadcast|packet|crypto`.

use std::hint::black_box;
use std::time::{Duration, Instant as Wall};

use shoal_core::wire::{begin_packet, Alive, Message, MetaField, Ping, Writer, PROTOCOL_VERSION};
use shoal_core::{Config, Instant, Lifeguard, MemberSnapshot, Node, NodeId};
use shoal_sim::{scenario, LinkModel};

/// A field of /proc/self/status given in kB (`VmHWM`, `VmRSS`), in bytes; NaN where unreadable.
fn status_bytes(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb * 1024.0)
}

fn peak_rss_mib() -> f64 {
    status_bytes("VmHWM") / (1024.0 * 1024.0)
}

fn scale() {
    let (nodes, periods) = (10_000, 100);
    let t = Wall::now();
    let r = scenario::steady_state(nodes, periods, 1);
    println!(
        "scale: {nodes} nodes x {periods} periods: wall {:.1} s, peak RSS {:.0} MiB, {} packets, {:.1} packets/member/s, false positives {}",
        t.elapsed().as_secs_f64(),
        peak_rss_mib(),
        r.packets,
        r.packets as f64 / nodes as f64 / f64::from(periods),
        r.false_positives
    );
}

fn rss_bytes() -> f64 {
    status_bytes("VmRSS")
}

/// What one node's knowledge of one member costs: 200 nodes that each know 10,000 members, started
/// from one shared snapshot (the simulator's warm start) and built member by member (a cold start,
/// a real deployment). Shared first: memory freed by the other would hide its cost.
fn memory_per_pair() {
    let (nodes, members) = (200usize, 10_000usize);
    let everyone: Vec<(NodeId, u32)> =
        (0..members).map(|i| (NodeId::new(&format!("n{i}")).expect("valid"), i as u32)).collect();
    for shared in [true, false] {
        let before = rss_bytes();
        let snapshot = MemberSnapshot::alive(Instant::ZERO, everyone.iter().cloned(), 1);
        let built: Vec<Node<u32>> = (0..nodes)
            .map(|i| {
                let (id, addr) = everyone[i].clone();
                let mut node = Node::new(Instant::ZERO, Config::lan(), id, addr, i as u64).expect("valid config");
                if shared {
                    node.assume_alive_shared(Instant::ZERO, &snapshot);
                } else {
                    node.assume_alive(Instant::ZERO, everyone.iter().cloned());
                }
                node
            })
            .collect();
        let per_pair = (rss_bytes() - before) / (nodes * members) as f64;
        println!(
            "memory per (node, member) pair, {nodes} nodes x {members} members, {}: {per_pair:.1} bytes",
            if shared { "from one shared snapshot" } else { "each table built member by member" }
        );
        black_box(built);
    }
}

fn detect() {
    for nodes in [100, 1_000] {
        let t = Wall::now();
        let r = scenario::crash_detection(nodes, Config::lan(), LinkModel::LAN, 100, 7);
        println!(
            "detect: {nodes} members, {} crashes, LAN preset: first detection median {:.2} periods (p90 {:.2}), all members declared failed median {:.1} s (p90 {:.1}), undetected {}, false positives {}  [{:.1} s]",
            r.trials,
            scenario::median(&r.first_detection_periods),
            scenario::percentile(&r.first_detection_periods, 0.9),
            scenario::median(&r.all_failed_secs),
            scenario::percentile(&r.all_failed_secs, 0.9),
            r.undetected,
            r.false_positives,
            t.elapsed().as_secs_f64()
        );
    }
}

fn false_positives() {
    use scenario::StallPattern::{Rotating, SlowMembers, SlowReceive};
    let cases = [
        ("LAN preset, 10% of members stalled 300 ms at a time (rotating)", Config::lan(), Rotating, 300),
        ("LAN preset, 10% slow members stalling 300 ms again and again", Config::lan(), SlowMembers, 300),
        ("LAN preset, 10% slow members handling input 300 ms late", Config::lan(), SlowReceive, 300),
        ("LAN preset, 10% slow members handling input 1 s late", Config::lan(), SlowReceive, 1_000),
        ("local preset, 10% slow members handling input 300 ms late", Config::local(), SlowReceive, 300),
        ("local preset, 10% slow members handling input 1 s late", Config::local(), SlowReceive, 1_000),
    ];
    for (name, preset, pattern, stall_ms) in cases {
        let mut line = format!("false positives, 100 members, 5% loss, 3 x 200 s, {name}:");
        for (label, lg) in [("on", Lifeguard::ON), ("off", Lifeguard::OFF)] {
            let mut total = 0;
            let mut healthy = 0;
            let mut suspicions = 0;
            for seed in 1..=3 {
                let r = scenario::false_positives(
                    100,
                    preset.clone(),
                    lg,
                    0.05,
                    0.1,
                    Duration::from_millis(stall_ms),
                    pattern,
                    Duration::from_secs(200),
                    seed,
                );
                total += r.false_positives;
                healthy += r.false_positives_of_healthy;
                suspicions += r.suspicions_of_live;
            }
            line += &format!("  lifeguard {label}: {total} FP ({healthy} of healthy members), {suspicions} suspicions of live members;");
        }
        println!("{line}");
    }
}

fn broadcast() {
    let mut rounds = Vec::new();
    let mut complete = 0;
    for seed in 1..=20 {
        let r = scenario::broadcast_spread(1_000, 0.05, seed);
        if r.delivered == 999 {
            complete += 1;
        }
        rounds.extend(r.rounds);
    }
    println!(
        "broadcast: 1000 members, 5% loss, 20 runs: delivered to all in {complete}/20, gossip rounds median {:.1} max {:.1} (3 log2 n = {:.1})",
        scenario::median(&rounds),
        scenario::percentile(&rounds, 1.0),
        3.0 * 1000f64.log2()
    );
}

/// A node that knows `members` others, and a full packet of piggybacked alive updates about them.
fn packet_fixture(members: usize) -> (Node<u32>, Vec<u8>) {
    let config = Config::lan();
    let mut node = Node::new(Instant::ZERO, config.clone(), NodeId::new("me").unwrap(), 0, 1).unwrap();
    let ids: Vec<(NodeId, u32)> =
        (1..=members).map(|i| (NodeId::new(&format!("member-{i:05}")).unwrap(), i as u32)).collect();
    node.assume_alive(Instant::ZERO, ids.iter().cloned());
    let mut w = Writer::with_capacity(config.max_packet_size);
    begin_packet(&mut w, PROTOCOL_VERSION);
    Message::<u32>::Ping(Ping { seq: 7, target: NodeId::new("me").unwrap(), source: ids[0].0.clone() }).encode(&mut w);
    for (id, addr) in ids.iter().skip(1) {
        let before = w.len();
        Message::Alive(Alive {
            id: id.clone(),
            addr: *addr,
            incarnation: 0,
            meta: MetaField::Included(b"role=web".to_vec()),
            min_version: 1,
            max_version: 1,
        })
        .encode(&mut w);
        if w.len() > config.max_packet_size {
            w.truncate(before);
            break;
        }
    }
    (node, w.into_vec())
}

fn packet() {
    let (mut node, bytes) = packet_fixture(1_000);
    let now = Instant::from_millis(10);
    let mut per_batch = Vec::new();
    for _ in 0..200 {
        let t = Wall::now();
        for _ in 0..1_000 {
            node.handle_packet(now, 1, black_box(&bytes)).unwrap();
            while let Some(tx) = node.poll_transmit() {
                black_box(tx);
            }
        }
        per_batch.push(t.elapsed().as_nanos() as f64 / 1_000.0);
    }
    let messages = bytes.len();
    println!(
        "packet: {messages}-byte packet (ping + piggybacked alive records of known members): decode + handle + encode ack median {:.0} ns, p90 {:.0} ns",
        scenario::median(&per_batch),
        scenario::percentile(&per_batch, 0.9)
    );

    // The same packet when every record is news: a fresh node each time, so every update is applied,
    // queued for re-gossip and reported as an event.
    let mut fresh = Vec::new();
    for _ in 0..2_000 {
        let mut n: Node<u32> = Node::new(Instant::ZERO, Config::lan(), NodeId::new("me").unwrap(), 0, 1).unwrap();
        let t = Wall::now();
        n.handle_packet(now, 1, black_box(&bytes)).unwrap();
        while let Some(tx) = n.poll_transmit() {
            black_box(tx);
        }
        while let Some(e) = n.poll_event() {
            black_box(e);
        }
        fresh.push(t.elapsed().as_nanos() as f64);
    }
    println!(
        "packet: same packet when every record is a new member (applied, queued, evented): median {:.0} ns",
        scenario::median(&fresh)
    );
}

/// Per-packet cost of a 1,300-byte direct message, plaintext vs AES-256-GCM: the sender's encode
/// (+ seal) and the receiver's (open +) decode + deliver, each the median of 200 batches of 500.
fn crypto() {
    use shoal_core::{Keyring, SecurityMode};
    let payload = vec![0x5a; 1_300];
    let make = |name: &str, addr: u32, secure: bool| {
        let security = if secure { SecurityMode::Encrypted } else { SecurityMode::Plaintext };
        let config = {
            let mut c = Config::lan();
            c.security = security;
            c.label = "bench".into();
            c
        };
        let mut n: Node<u32> = Node::new(Instant::ZERO, config, NodeId::new(name).unwrap(), addr, 1).unwrap();
        if secure {
            n.set_keyring(Keyring::new([3; 32]), [addr as u8; 32]);
        }
        n
    };
    for secure in [false, true] {
        let mut sender = make("s", 1, secure);
        let mut receiver = make("r", 2, secure);
        let (mut send_ns, mut recv_ns) = (Vec::new(), Vec::new());
        let mut size = 0;
        for _ in 0..200 {
            let t = Wall::now();
            let mut packets = Vec::with_capacity(500);
            for _ in 0..500 {
                sender.send_to_addr(Instant::ZERO, 2, "bench", black_box(&payload), false).unwrap();
                packets.push(sender.poll_transmit().unwrap().bytes);
            }
            send_ns.push(t.elapsed().as_nanos() as f64 / 500.0);
            size = packets[0].len();
            let t = Wall::now();
            for p in &packets {
                receiver.handle_packet(Instant::ZERO, 1, black_box(p)).unwrap();
                black_box(receiver.poll_event());
            }
            recv_ns.push(t.elapsed().as_nanos() as f64 / 500.0);
        }
        println!(
            "crypto: {} {size}-byte packet: send (encode{}) median {:.0} ns, receive ({}decode + deliver) median {:.0} ns",
            if secure { "AES-256-GCM" } else { "plaintext  " },
            if secure { " + seal" } else { "" },
            scenario::median(&send_ns),
            if secure { "open + replay check + " } else { "" },
            scenario::median(&recv_ns)
        );
    }
}

fn main() {
    let which: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let all = which.is_empty();
    let wants = |name: &str| all || which.iter().any(|w| w == name);
    // First: it reads the process's memory, which runs before it would leave in the allocator.
    if wants("pairs") {
        memory_per_pair();
    }
    if wants("packet") {
        packet();
    }
    if wants("crypto") {
        crypto();
    }
    if wants("detect") {
        detect();
    }
    if wants("broadcast") {
        broadcast();
    }
    if wants("false-positives") {
        false_positives();
    }
    if wants("scale") {
        scale();
    }
}
