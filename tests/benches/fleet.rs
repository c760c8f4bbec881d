//! A relay fleet under load, and the failover of one relay's members.
//!
//! ```text
//! cargo build --release -p shoal-relay
//! cargo bench -p shoal-tests --bench fleet -- [--members 1000] [--relays 3] [--preset lan|browser] [--relayed-packet-size N]
//! ```
//!
//! `--relays` `shoal-relay` processes (this build's, `target/release/shoal-relay`) linked pairwise
//! with a relay key, each running its own cluster member (`--join`), which announces it; one native
//! UDP member as the seed; `--members` members over WebSocket (`shoal_websocket::WsTransport`, each
//! a whole `shoal::Cluster` in this process), spread evenly over the relays, each given every relay
//! (its own first) to fail over to. Once every member lists every other alive, it prints, per relay,
//! the connections it holds, the frames it forwards a second (over 10 s) and its resident memory per
//! connection. Then it kills the first relay with SIGKILL and prints how long until every other
//! member holds each of that relay's members alive again at its new address (on another relay), and
//! how many members of the other relays anyone suspected or declared failed meanwhile (false
//! alarms: they never went away). With `--relays 1` it prints the single-relay figures alone.
//!
//! Everything stays on 127.0.0.1; the relays are killed when the bench ends.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shoal::{Addr, Cluster, ClusterEvent, Transport};
use shoal_core::{Config, Event, MemberState, NodeId};
use shoal_websocket::WsTransport;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const RELAY_KEY: &str = "fleet-bench-relay-key-0123456789";

struct Args {
    members: usize,
    relays: usize,
    preset: String,
    /// `Config::relayed_packet_size` of the WebSocket members, if not the preset's.
    relayed_packet_size: Option<usize>,
}

fn args() -> Args {
    let mut a = Args { members: 1_000, relays: 3, preset: "lan".into(), relayed_packet_size: None };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let value = argv.get(i + 1).cloned().unwrap_or_default();
        match argv[i].as_str() {
            "--members" => a.members = value.parse().expect("--members N"),
            "--relays" => a.relays = value.parse().expect("--relays N"),
            "--preset" => a.preset = value,
            "--relayed-packet-size" => a.relayed_packet_size = Some(value.parse().expect("--relayed-packet-size N")),
            // `cargo bench` passes `--bench`; ignore anything else too.
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    assert!(a.relays >= 1 && a.members >= a.relays, "at least one relay and a member for each");
    a
}

fn preset(name: &str) -> Config {
    match name {
        "browser" => Config::browser(),
        "lan" => Config::lan(),
        other => panic!("unknown preset {other} (lan or browser)"),
    }
}

/// `VmRSS` of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// `target/release/shoal-relay`, next to this bench's `deps/` directory.
fn relay_bin() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("the bench's path");
    let bin = exe.parent().and_then(|deps| deps.parent()).expect("target/release").join("shoal-relay");
    assert!(bin.exists(), "{} is missing: cargo build --release -p shoal-relay", bin.display());
    bin
}

struct Relay {
    child: Child,
    /// `host:port`, as its members' addresses name it.
    addr: String,
}

impl Relay {
    fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    fn start(seed: &Addr, peers: &[String], preset: &str) -> Relay {
        let mut cmd = Command::new(relay_bin());
        cmd.args(["--bind", "127.0.0.1:0", "--max-connections-per-ip", "1000000", "--relay-key", RELAY_KEY])
            .args(["--join", &seed.to_string(), "--member-bind", "127.0.0.1:0", "--preset", preset])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for p in peers {
            cmd.args(["--peer-relay", p]);
        }
        let mut child = cmd.spawn().expect("start shoal-relay");
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        out.read_line(&mut line).expect("the relay's address");
        let addr = line.trim().strip_prefix("listening on ").expect("`listening on <addr>`").to_string();
        // Keep reading: a relay whose stdout is closed dies on its next line.
        std::thread::spawn(move || for _ in out.lines() {});
        Relay { child, addr }
    }

    /// The sum of the `/metrics` samples whose line starts with `prefix`.
    async fn metric(&self, prefix: &str) -> f64 {
        let Ok(mut tcp) = tokio::net::TcpStream::connect(&self.addr).await else { return 0.0 };
        let request = format!("GET /metrics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", self.addr);
        if tcp.write_all(request.as_bytes()).await.is_err() {
            return 0.0;
        }
        let mut text = String::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_string(&mut text)).await;
        text.lines().filter(|l| l.starts_with(prefix)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What members saw after the kill, from their event streams.
#[derive(Default)]
struct Seen {
    /// (observer, moved member) -> when the observer held it alive on another relay.
    moved: HashMap<(usize, NodeId), Instant>,
    /// Suspicions and failures of members that were not on the killed relay, by observer.
    false_alarms: Vec<(usize, NodeId, &'static str)>,
    /// Suspicions and failures of members that were on it (they moved; they never went away).
    alarms_of_moved: Vec<(usize, NodeId, &'static str)>,
    /// Set when the kill happens; events before it are not recorded.
    since: Option<Instant>,
    /// Pairs found in the members' tables, not from an event (an event stream that lagged): their
    /// time is that of the scan, up to a second late.
    found_by_scan: usize,
}

/// Process CPU time (user + system) from /proc/self/stat, in seconds.
fn cpu_seconds() -> f64 {
    cpu_seconds_of("self")
}

/// CPU time (user + system) of process `pid` ("self" for this one), in seconds.
fn cpu_seconds_of(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

fn relay_of(addr: &Addr) -> Option<&str> {
    let rest = addr.as_str().strip_prefix("relay://")?;
    Some(&rest[..rest.rfind('/')?])
}

fn main() {
    let a = args();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(run(a));
}

async fn run(a: Args) {
    let mut config = preset(&a.preset);
    if let Some(size) = a.relayed_packet_size {
        config.relayed_packet_size = size;
    }
    let seed = Cluster::builder("seed").unwrap().config(config.clone()).bind("127.0.0.1:0").await.expect("seed");
    let seed_addr = seed.local_addr();

    // Relays, each linked to every earlier one (one link per pair).
    let mut relays: Vec<Relay> = Vec::new();
    for _ in 0..a.relays {
        let peers: Vec<String> = relays.iter().map(Relay::url).collect();
        relays.push(Relay::start(&seed_addr, &peers, &a.preset));
    }
    let pairs = a.relays * (a.relays - 1) / 2;
    wait_for("the relay links", Duration::from_secs(20), Duration::from_millis(100), || async {
        let mut links = 0.0;
        for r in &relays {
            links += r.metric("shoal_relay_links ").await;
        }
        links >= (2 * pairs) as f64
    })
    .await;
    let baseline: Vec<u64> = relays.iter().map(|r| rss_kib(r.child.id())).collect();
    let relay_addrs: Vec<String> = relays.iter().map(|r| r.addr.clone()).collect();
    println!("fleet: {} relays {:?}, {} members over WebSocket, preset {}", a.relays, relay_addrs, a.members, a.preset);

    // Members: member i is on relay i % relays first, then the others in turn.
    let started = Instant::now();
    let mut members: Vec<Arc<Cluster>> = Vec::with_capacity(a.members);
    let mut home: Vec<usize> = Vec::with_capacity(a.members);
    let mut retried = 0;
    for batch in (0..a.members).collect::<Vec<_>>().chunks(50) {
        let joining = batch.iter().map(|&i| {
            let urls: Vec<String> =
                (0..a.relays).map(|k| format!("{}/ws?peer=m{i}", relays[(i + k) % a.relays].url())).collect();
            let (config, seed_addr) = (config.clone(), seed_addr.clone());
            async move {
                let ws = WsTransport::connect_any(&urls).await.expect("a relay of the fleet");
                let transports: Vec<Arc<dyn Transport>> = vec![ws];
                let c = Cluster::builder(&format!("m{i}")).unwrap().config(config).spawn(transports).expect("member");
                // A join that finds no answer in time (a burst of joiners) is tried again, as an
                // application would; the tries are counted.
                let mut tries = 1;
                while c.join(std::slice::from_ref(&seed_addr)).await.is_err() {
                    tries += 1;
                    assert!(tries <= 5, "m{i} found no seed in 5 tries");
                }
                (c, tries)
            }
        });
        for (c, tries) in futures_util::future::join_all(joining).await {
            members.push(Arc::new(c));
            retried += usize::from(tries > 1);
        }
        home.extend(batch.iter().map(|&i| i % a.relays));
    }
    let everyone = a.members + a.relays; // the seed sees the members and the relays' members
    let mut progress_at = Instant::now();
    wait_for("every member to list every other alive", Duration::from_secs(300), Duration::from_secs(1), || {
        let report = ten_seconds_passed(&mut progress_at);
        let members = &members;
        async move {
            if report {
                // Where a slow convergence stands: members that list everyone, the fewest any
                // lists, updates waiting to be gossiped, and the bench's own footprint.
                let alive: Vec<usize> = members.iter().map(|m| m.alive_members().len()).collect();
                let queued: u64 = members.iter().map(|m| m.metrics().queued_membership_updates).sum();
                println!(
                    "fleet: converging: {} of {} list everyone, fewest {}, {queued} updates queued, bench RSS {} MiB",
                    alive.iter().filter(|&&n| n >= everyone).count(),
                    members.len(),
                    alive.iter().min().copied().unwrap_or(0),
                    rss_kib(std::process::id()) / 1024
                );
            }
            members.iter().all(|m| m.alive_members().len() >= everyone)
        }
    })
    .await;
    println!(
        "fleet: {} members joined ({retried} needed a second try) and converged in {:.1} s; bench RSS {} MiB",
        a.members,
        started.elapsed().as_secs_f64(),
        rss_kib(std::process::id()) / 1024
    );
    for (k, r) in relays.iter().enumerate() {
        let dropped = r.metric("shoal_relay_dropped_frames_total").await;
        println!("fleet: relay {k} dropped {dropped:.0} frames while the members joined");
    }

    // The joins' gossip dies down: wait until no member has membership updates left to send (at
    // most 5 minutes), so that the window below measures the steady state.
    let settling = Instant::now();
    let mut progress_at = Instant::now();
    wait_for("the joins' gossip to end", Duration::from_secs(300), Duration::from_secs(1), || {
        let report = ten_seconds_passed(&mut progress_at);
        let members = &members;
        async move {
            let queued: Vec<u64> = members.iter().map(|m| m.metrics().queued_membership_updates).collect();
            if report {
                println!(
                    "fleet: settling: {} members with updates queued, {} in all, {} listing fewer than everyone",
                    queued.iter().filter(|&&q| q > 0).count(),
                    queued.iter().sum::<u64>(),
                    members.iter().filter(|m| m.alive_members().len() < everyone).count(),
                );
                // Whom the first member does not hold alive, and how many of the next 20 agree
                // (a sample: reading every table would stall the members' runtime).
                for m in members[0].members().into_iter().filter(|m| m.state != MemberState::Alive).take(3) {
                    let agree = members[1..21]
                        .iter()
                        .filter(|o| o.members().iter().any(|x| x.id == m.id && x.state != MemberState::Alive))
                        .count();
                    println!(
                        "fleet:   m0 holds {} as {:?} (incarnation {}, {}); {agree} of m1-m20 hold it not alive",
                        m.id, m.state, m.incarnation, m.addr
                    );
                }
            }
            queued.iter().all(|&q| q == 0)
        }
    })
    .await;
    println!(
        "fleet: the joins' gossip ended {:.0} s after the members converged; bench RSS {} MiB",
        settling.elapsed().as_secs_f64(),
        rss_kib(std::process::id()) / 1024
    );

    // Event streams of every member and the seed: alarms in the steady window, then after the kill.
    let seen = Arc::new(Mutex::new(Seen::default()));
    let killed = relays[0].addr.clone();
    let was_on_killed: Arc<HashSet<NodeId>> =
        Arc::new((0..a.members).filter(|i| home[*i] == 0).map(|i| NodeId::new(&format!("m{i}")).unwrap()).collect());
    let observers: Vec<Arc<Cluster>> = members.iter().cloned().chain(std::iter::once(Arc::new(seed))).collect();
    for (o, c) in observers.iter().enumerate() {
        let mut events = c.events();
        let (seen, killed, moved_set) = (seen.clone(), killed.clone(), was_on_killed.clone());
        tokio::spawn(async move {
            while let Some(e) = events.next().await {
                let mut s = seen.lock().unwrap();
                if s.since.is_none() {
                    continue;
                }
                record(&mut s, o, &e, &killed, &moved_set);
            }
        });
    }
    seen.lock().unwrap().since = Some(Instant::now());

    // Steady state: frames forwarded over 10 s, connections and memory per relay.
    let mut before = Vec::new();
    for r in &relays {
        before.push(r.metric("shoal_relay_forwarded_frames_total").await);
    }
    let (window, cpu0) = (Instant::now(), cpu_seconds());
    tokio::time::sleep(Duration::from_secs(10)).await;
    let secs = window.elapsed().as_secs_f64();
    println!(
        "fleet: this process (the {} members and the seed) used {:.0}% of one core",
        a.members,
        100.0 * (cpu_seconds() - cpu0) / secs
    );
    for (k, r) in relays.iter().enumerate() {
        let frames = (r.metric("shoal_relay_forwarded_frames_total").await - before[k]) / secs;
        let conns = r.metric("shoal_relay_connections ").await;
        let rss = rss_kib(r.child.id());
        println!(
            "fleet: relay {k}: {conns:.0} connections, {frames:.0} frames/s forwarded, RSS {rss} KiB ({} KiB before \
             the members), {:.1} KiB per connection",
            baseline[k],
            rss.saturating_sub(baseline[k]) as f64 / conns.max(1.0)
        );
    }
    {
        let mut s = seen.lock().unwrap();
        let all = || s.false_alarms.iter().chain(&s.alarms_of_moved);
        println!(
            "fleet: alarms in the steady window (nobody went away): {} suspicions, {} failures",
            all().filter(|a| a.2 == "suspect").count(),
            all().filter(|a| a.2 == "fail").count()
        );
        s.false_alarms.clear();
        s.alarms_of_moved.clear();
    }
    if a.relays < 2 {
        return;
    }

    let relay_cpu = |rs: &[Relay]| rs.iter().map(|r| cpu_seconds_of(&r.child.id().to_string())).sum::<f64>();
    let mut dropped_before = Vec::new();
    for r in &relays[1..] {
        dropped_before.push(r.metric("shoal_relay_dropped_frames_total").await);
    }
    // What the members send, by kind, over the failover.
    let sent_by_kind = |members: &[Arc<Cluster>]| {
        let mut sum = [0u64; 7];
        for m in members {
            let stats = m.metrics().stats;
            for (k, bytes) in stats.bytes_sent_by_kind.iter().enumerate() {
                sum[k] += bytes;
            }
        }
        sum
    };
    let pulls = |members: &[Arc<Cluster>]| members.iter().map(|m| m.metrics().stats.moves_pulled).sum::<u64>();
    let (sent_at_kill, pulls_at_kill) = (sent_by_kind(&members), pulls(&members));
    let killed_for_movers = killed.clone();
    let kill_at = Instant::now();
    let (cpu_at_kill, relay_cpu_at_kill) = (cpu_seconds(), relay_cpu(&relays[1..]));
    seen.lock().unwrap().since = Some(kill_at);
    let mut dead = relays.remove(0);
    let _ = dead.child.kill();
    let _ = dead.child.wait();
    let moved: Vec<NodeId> = was_on_killed.iter().cloned().collect();
    println!("fleet: killed relay 0 ({killed}) with SIGKILL: {} members to move", moved.len());

    // When each moved member is welcomed by another relay (its own address changes).
    let movers: Vec<Arc<Cluster>> = (0..a.members).filter(|i| home[*i] == 0).map(|i| members[i].clone()).collect();
    let reconnected = tokio::spawn(async move {
        let mut at: Vec<Option<f64>> = vec![None; movers.len()];
        while at.iter().any(Option::is_none) && kill_at.elapsed() < Duration::from_secs(30) {
            for (k, m) in movers.iter().enumerate() {
                if at[k].is_none() && relay_of(&m.local_addr()).is_some_and(|r| r != killed_for_movers) {
                    at[k] = Some(kill_at.elapsed().as_secs_f64());
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        at
    });

    // Done when every observer (but the member itself) holds every moved member alive elsewhere.
    let wanted = observers.len() * moved.len() - moved.len();
    let last_scan = Arc::new(Mutex::new(Instant::now()));
    let all_moved = wait_for_value(
        "every member to hold the moved members alive on another relay",
        Duration::from_secs(60),
        || {
            let observers = observers.clone();
            let (seen, killed, moved, last_scan) =
                (seen.clone(), killed.clone(), was_on_killed.clone(), last_scan.clone());
            async move {
                let done = |s: &Seen| (s.moved.len() >= wanted).then(|| s.moved.values().max().copied());
                if let Some(v) = done(&seen.lock().unwrap()) {
                    return Some(v);
                }
                // Every second, pairs the event streams missed (a stream that lagged): read the
                // tables, on a blocking thread and outside the lock the event tasks take.
                if last_scan.lock().unwrap().elapsed() < Duration::from_secs(1) {
                    return None;
                }
                let found = tokio::task::spawn_blocking(move || {
                    let mut found = Vec::new();
                    for (o, c) in observers.iter().enumerate() {
                        for m in c.members() {
                            let elsewhere = relay_of(&m.addr).is_some_and(|r| r != killed);
                            if m.state == MemberState::Alive && elsewhere && moved.contains(&m.id) {
                                found.push((o, m.id));
                            }
                        }
                    }
                    found
                })
                .await
                .expect("the table scan");
                *last_scan.lock().unwrap() = Instant::now();
                let now = Instant::now();
                let mut s = seen.lock().unwrap();
                for pair in found {
                    if let std::collections::hash_map::Entry::Vacant(e) = s.moved.entry(pair) {
                        e.insert(now);
                        s.found_by_scan += 1;
                    }
                }
                done(&s)
            }
        },
    )
    .await;
    let mut welcomed: Vec<f64> = reconnected.await.expect("the reconnection watch").into_iter().flatten().collect();
    welcomed.sort_by(f64::total_cmp);
    if let (Some(first), Some(last)) = (welcomed.first(), welcomed.last()) {
        println!(
            "fleet: {} of {} moved members welcomed by another relay between {first:.2} s and {last:.2} s after the kill \
             (median {:.2} s)",
            welcomed.len(),
            moved.len(),
            welcomed[welcomed.len() / 2]
        );
    }
    let secs = kill_at.elapsed().as_secs_f64();
    println!(
        "fleet: since the kill ({secs:.1} s): this process used {:.0}% of one core, the surviving relays {:.0}%",
        100.0 * (cpu_seconds() - cpu_at_kill) / secs,
        100.0 * (relay_cpu(&relays) - relay_cpu_at_kill) / secs
    );
    let sent: Vec<String> = sent_by_kind(&members)
        .iter()
        .zip(sent_at_kill)
        .zip(shoal_core::TransmitKind::ALL)
        .map(|((now, then), kind)| format!("{} {:.1} MB", kind.name(), (now - then) as f64 / 1e6))
        .collect();
    println!(
        "fleet: since the kill the members sent {}; {} pulls of missed moves",
        sent.join(", "),
        pulls(&members) - pulls_at_kill
    );
    for (k, r) in relays.iter().enumerate() {
        let dropped = r.metric("shoal_relay_dropped_frames_total").await - dropped_before[k];
        let full = r.metric("shoal_relay_dropped_frames_total{reason=\"queue_full\"}").await;
        let rate = r.metric("shoal_relay_dropped_frames_total{reason=\"destination_rate\"}").await
            + r.metric("shoal_relay_dropped_frames_total{reason=\"source_rate\"}").await;
        println!("fleet: surviving relay {}: {dropped:.0} frames dropped since the kill ({full:.0} queue full, {rate:.0} over a rate limit, in all)", k + 1);
    }
    let s = seen.lock().unwrap();
    match all_moved.flatten() {
        Some(last) => println!(
            "fleet: every member holds the {} moved members alive on another relay {:.2} s after the kill",
            moved.len(),
            (last - kill_at).as_secs_f64()
        ),
        None => {
            println!(
                "fleet: not every member holds the moved members alive after 60 s ({} of {wanted} pairs)",
                s.moved.len()
            );
            // What the observers that lag hold instead.
            let mut shown = 0;
            for (o, c) in observers.iter().enumerate() {
                for id in moved.iter().filter(|id| !s.moved.contains_key(&(o, (*id).clone())) && **id != c.name()) {
                    if shown < 10 {
                        let held = c.members().into_iter().find(|m| m.id == *id);
                        let held = held.map(|m| (m.addr.to_string(), m.state, m.incarnation));
                        println!("fleet:   {} holds {id} as {held:?}", c.name());
                        shown += 1;
                    }
                }
            }
        }
    }
    let mut times: Vec<f64> = s.moved.values().map(|t| (*t - kill_at).as_secs_f64()).collect();
    times.sort_by(f64::total_cmp);
    if !times.is_empty() {
        let q = |p: f64| times[((times.len() - 1) as f64 * p) as usize];
        println!(
            "fleet: (observer, moved member) pairs: median {:.2} s, p99 {:.2} s, max {:.2} s ({} found by a table \
             scan, up to 1 s late)",
            q(0.5),
            q(0.99),
            q(1.0),
            s.found_by_scan
        );
    }
    // The tail: pairs later than the goal, by what their observer is.
    let goal = Duration::from_secs(5);
    let late: Vec<&(usize, NodeId)> = s.moved.iter().filter(|(_, t)| **t - kill_at > goal).map(|(k, _)| k).collect();
    if !late.is_empty() {
        let observers_late: HashSet<usize> = late.iter().map(|(o, _)| *o).collect();
        let members_late: HashSet<&NodeId> = late.iter().map(|(_, id)| id).collect();
        let by_kind = |kind: &str| {
            late.iter()
                .filter(|(o, _)| match kind {
                    "seed" => *o == a.members,
                    "moved" => *o < a.members && home[*o] == 0,
                    _ => *o < a.members && home[*o] != 0,
                })
                .count()
        };
        println!(
            "fleet: {} pairs later than {goal:?} ({} observers, {} moved members): observed by the seed {}, by a \
             moved member {}, by a member that stayed {}",
            late.len(),
            observers_late.len(),
            members_late.len(),
            by_kind("seed"),
            by_kind("moved"),
            by_kind("stayed")
        );
    }
    let kinds = |v: &[(usize, NodeId, &str)], kind: &str| v.iter().filter(|(_, _, k)| *k == kind).count();
    println!(
        "fleet: false alarms about members of the surviving relays: {} suspicions, {} failures",
        kinds(&s.false_alarms, "suspect"),
        kinds(&s.false_alarms, "fail")
    );
    let mut suspected: HashMap<&NodeId, usize> = HashMap::new();
    for (_, id, _) in &s.false_alarms {
        *suspected.entry(id).or_default() += 1;
    }
    if !suspected.is_empty() {
        let mut most: Vec<(&NodeId, usize)> = suspected.into_iter().collect();
        most.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
        let shown: Vec<String> = most.iter().take(5).map(|(id, n)| format!("{id} ({n})")).collect();
        println!("fleet:   {} members of the surviving relays alarmed about, most: {}", most.len(), shown.join(", "));
    }
    println!(
        "fleet: alarms about the moved members: {} suspicions, {} failures",
        kinds(&s.alarms_of_moved, "suspect"),
        kinds(&s.alarms_of_moved, "fail")
    );
}

fn record(s: &mut Seen, observer: usize, e: &ClusterEvent, killed: &str, moved: &HashSet<NodeId>) {
    let now = Instant::now();
    match e {
        Event::Updated(m) | Event::Joined(m) => {
            let elsewhere = relay_of(&m.addr).is_some_and(|r| r != killed);
            if m.state == MemberState::Alive && elsewhere && moved.contains(&m.id) {
                s.moved.entry((observer, m.id.clone())).or_insert(now);
            }
        }
        Event::Suspected { id, .. } | Event::Failed { id, .. } => {
            let kind = if matches!(e, Event::Suspected { .. }) { "suspect" } else { "fail" };
            if moved.contains(id) {
                s.alarms_of_moved.push((observer, id.clone(), kind));
            } else if id.as_str().starts_with('m') {
                s.false_alarms.push((observer, id.clone(), kind));
            }
        }
        _ => {}
    }
}

/// Whether 10 s have passed since `since`; if so, `since` becomes now. Paces progress reports.
fn ten_seconds_passed(since: &mut Instant) -> bool {
    let passed = since.elapsed() >= Duration::from_secs(10);
    if passed {
        *since = Instant::now();
    }
    passed
}

/// Waits until `check` holds, asking every `every` (a check of 1,000 members' tables costs the
/// members CPU: the long waits ask once a second), for at most `limit`.
async fn wait_for<F, Fut>(what: &str, limit: Duration, every: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < end, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(every).await;
    }
}

async fn wait_for_value<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let end = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if Instant::now() >= end {
            println!("fleet: timed out after {limit:?} waiting for {what}");
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
