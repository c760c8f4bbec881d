//! Native runtime figures for BENCHMARKS.md.
//! `cargo bench -p shoal-tests --bench native -- send` (direct-send rate vs a raw tokio socket)
//! `cargo bench -p shoal-tests --bench native -- idle` (CPU of 200 idle members over 60 s)
//! `cargo bench -p shoal-tests --bench native -- cold-start` (48 staggered starts of 20 and of 50
//! members, each joining a random earlier one: how long until every member lists every other)
//! `cargo bench -p shoal-tests --bench native -- traffic` (20 and 50 members, LAN preset, UDP + TCP
//! on loopback, with and without member digests: packets and bytes per member per second by kind
//! over one push-pull period, once the cluster is formed and quiet)
//! `cargo bench -p shoal-tests --bench native -- detection` (50 members, UDP + TCP on loopback: 10
//! members crashed one after another, seconds until every other member lists each one failed; the
//! LAN preset beside it with memberlist's `α = 4, k = 2` and no checks of suspects, and HashiCorp
//! memberlist itself where Go and its Debian source are installed, same run)

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shoal::{Cluster, Transport};
use shoal_core::Config;
use shoal_testkit::{alive_count, eventually, member_with, state_of};
use shoal_udp::UdpTransport;

const MESSAGES: u64 = 200_000;
const PAYLOAD: usize = 64;

/// Process CPU time (user + system) from /proc/self/stat, in seconds.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

async fn raw_rate(size: usize) -> f64 {
    let rx = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let tx = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let to = rx.local_addr().unwrap();
    let got = Arc::new(AtomicU64::new(0));
    let counter = got.clone();
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        while let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(300), rx.recv_from(&mut buf)).await {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    });
    let payload = vec![1u8; size];
    let start = Instant::now();
    for i in 0..MESSAGES {
        let _ = tx.send_to(&payload, to).await;
        if i % 256 == 0 {
            tokio::task::yield_now().await;
        }
    }
    let _ = reader.await;
    // The reader stops 300 ms after the last packet; do not count that wait.
    let elapsed = start.elapsed().saturating_sub(Duration::from_millis(300));
    got.load(Ordering::Relaxed) as f64 / elapsed.as_secs_f64()
}

async fn udp_member(name: &str, seed: u64, encrypted: bool) -> Cluster {
    let udp = UdpTransport::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let transports: Vec<Arc<dyn Transport>> = vec![udp];
    let mut config = Config::lan();
    let mut builder = Cluster::builder(name).unwrap().seed(seed);
    if encrypted {
        config.security = shoal_core::SecurityMode::Encrypted;
        builder = builder.keyring(shoal_core::Keyring::new([9; 32]));
    }
    builder.config(config).spawn(transports).unwrap()
}

async fn shoal_rate(encrypted: bool) -> (f64, usize) {
    let a = udp_member("sender", 1, encrypted).await;
    let b = udp_member("receiver", 2, encrypted).await;
    // No join: direct sends to an address need no membership, and gossip would add traffic.
    let got = Arc::new(AtomicU64::new(0));
    let counter = got.clone();
    b.on_message(move |_| {
        counter.fetch_add(1, Ordering::Relaxed);
    });
    let to = b.local_addr();
    let payload = vec![1u8; PAYLOAD];
    let start = Instant::now();
    for i in 0..MESSAGES {
        a.send_to_addr(&to, "m", &payload, false).unwrap();
        if i % 256 == 0 {
            a.flush().await;
        }
    }
    a.flush().await;
    // From here on, the clock stops at the last arrival.
    let mut last_change = Instant::now();
    let mut seen = got.load(Ordering::Relaxed);
    while last_change.elapsed() < Duration::from_millis(300) {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let now = got.load(Ordering::Relaxed);
        if now != seen {
            seen = now;
            last_change = Instant::now();
        }
    }
    let elapsed = last_change.duration_since(start);
    a.shutdown().await;
    b.shutdown().await;
    // Wire size of one direct message: version byte + tag + length + sender name + topic + payload
    // (+ the encryption envelope).
    let envelope = if encrypted { shoal_core::security::OVERHEAD } else { 0 };
    (seen as f64 / elapsed.as_secs_f64(), PAYLOAD + 1 + 1 + 2 + 7 + 2 + 1 + envelope)
}

async fn send(encrypted: bool) {
    let label = if encrypted { "send-encrypted" } else { "send" };
    let mut ratios = Vec::new();
    for round in 1..=5 {
        let (ours, wire) = shoal_rate(encrypted).await;
        let raw = raw_rate(wire).await;
        ratios.push(ours / raw);
        println!(
            "{label} (round {round}): Shoal direct send {:.0} msgs/s delivered, raw tokio UdpSocket {:.0} datagrams/s ({wire}-byte datagrams), ratio {:.2}",
            ours,
            raw,
            ours / raw
        );
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "{label}: median ratio {:.2} over {} alternating rounds of {MESSAGES} messages",
        ratios[ratios.len() / 2],
        ratios.len()
    );
}

async fn idle() {
    let n = 200;
    let seed = member_with("idle-0", 0, Config::lan()).await;
    let mut all = vec![seed.clone()];
    for i in 1..n {
        let m = member_with(&format!("idle-{i}"), i as u64, Config::lan()).await;
        m.join(&[seed.local_addr()]).await.expect("join");
        all.push(m);
    }
    let formed = eventually(Duration::from_secs(60), || all.iter().all(|m| alive_count(m) == n - 1)).await;
    assert!(formed, "cluster did not converge");
    // Let join-time push-pulls and gossip settle.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(60)).await;
    let cpu = cpu_seconds() - cpu0;
    let wall = t0.elapsed().as_secs_f64();
    let packets: u64 = all.iter().map(|m| m.metrics().stats.packets_sent).sum();
    println!(
        "idle: {n} members (LAN preset, UDP + TCP) in one process for {wall:.0} s: CPU {cpu:.2} s = {:.1}% of one core, {:.2} ms CPU per member per second; {packets} packets sent in total",
        100.0 * cpu / wall,
        1000.0 * cpu / wall / n as f64
    );
    for m in &all {
        m.shutdown().await;
    }
}

/// `n` members named `{prefix}-{i}`, each joining the first, once every one lists every other.
async fn formed_cluster(prefix: &str, n: usize, config: &Config) -> Vec<Cluster> {
    let seed = member_with(&format!("{prefix}-0"), 0, config.clone()).await;
    let mut all = vec![seed.clone()];
    for i in 1..n {
        let m = member_with(&format!("{prefix}-{i}"), i as u64, config.clone()).await;
        m.join(&[seed.local_addr()]).await.expect("join");
        all.push(m);
    }
    let formed = eventually(Duration::from_secs(60), || all.iter().all(|m| alive_count(m) == n - 1)).await;
    assert!(formed, "cluster did not converge");
    all
}

/// Packets and bytes per member per second, by kind, of `n` formed LAN members over one push-pull
/// period (after one period of settling).
async fn traffic_once(n: usize, digests: bool) {
    let mut config = Config::lan();
    config.push_pull_digests = digests;
    let all = formed_cluster("traffic", n, &config).await;
    let period = config.push_pull_period(n);
    tokio::time::sleep(period).await;
    let sum = |all: &[Cluster]| {
        let mut packets = [0u64; 7];
        let mut bytes = [0u64; 7];
        for m in all {
            let s = m.metrics().stats;
            for k in 0..7 {
                packets[k] += s.packets_sent_by_kind[k];
                bytes[k] += s.bytes_sent_by_kind[k];
            }
        }
        (packets, bytes)
    };
    let (p0, b0) = sum(&all);
    let t0 = Instant::now();
    tokio::time::sleep(period).await;
    let (p1, b1) = sum(&all);
    let per = |v: u64| v as f64 / n as f64 / t0.elapsed().as_secs_f64();
    let kinds: Vec<String> = shoal_core::TransmitKind::ALL
        .iter()
        .map(|k| {
            format!("{} {:.2}/{:.1}", k.name(), per(p1[k.index()] - p0[k.index()]), per(b1[k.index()] - b0[k.index()]))
        })
        .collect();
    let packets: u64 = (0..7).map(|k| p1[k] - p0[k]).sum();
    let bytes: u64 = (0..7).map(|k| b1[k] - b0[k]).sum();
    println!(
        "traffic: {n} members, digests {}, {:.0} s: {:.2} packets and {:.1} bytes per member per second (packets/bytes by kind: {})",
        if digests { "on" } else { "off" },
        t0.elapsed().as_secs_f64(),
        per(packets),
        per(bytes),
        kinds.join(", ")
    );
    for m in &all {
        m.shutdown().await;
    }
}

/// `crashes` members of a formed cluster of `n` crashed one after another (each once the previous
/// one is failed everywhere): seconds from each crash until every running member lists it failed.
async fn detection_once(n: usize, crashes: usize, label: &str, config: Config) {
    let mut all = formed_cluster("detect", n, &config).await;
    tokio::time::sleep(config.push_pull_period(n)).await;
    let mut times = Vec::new();
    // Where the time goes: until the first member suspects the crashed one, and until the first
    // declares it failed.
    let (mut first_suspected, mut first_failed) = (Vec::new(), Vec::new());
    for c in 0..crashes {
        // Crash the member at the end (never the seed), and wait for every other one to list it failed.
        let victim = all.pop().expect("members left");
        let name = victim.name().as_str().to_string();
        let crashed_at = Instant::now();
        victim.shutdown().await;
        let (mut suspected_at, mut failed_at) = (None, None);
        let failed_everywhere = || {
            let states: Vec<_> = all.iter().map(|m| state_of(m, &name)).collect();
            use shoal_core::MemberState::{Dead, Suspect};
            if suspected_at.is_none() && states.iter().any(|s| matches!(s, Some(Suspect | Dead))) {
                suspected_at = Some(crashed_at.elapsed().as_secs_f64());
            }
            if failed_at.is_none() && states.iter().any(|s| matches!(s, Some(Dead))) {
                failed_at = Some(crashed_at.elapsed().as_secs_f64());
            }
            states.iter().all(|s| matches!(s, Some(Dead) | None))
        };
        if eventually(Duration::from_secs(90), failed_everywhere).await {
            times.push(crashed_at.elapsed().as_secs_f64());
            first_suspected.extend(suspected_at);
            first_failed.extend(failed_at);
        } else {
            println!("detection: crash {c} not failed everywhere in 90 s");
        }
        // Let the news settle before the next crash.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let at = |times: &mut Vec<f64>, q: f64| {
        times.sort_by(f64::total_cmp);
        times.get(((times.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(f64::NAN)
    };
    println!(
        "detection: {n} members, {label}: {} crashes, failed everywhere {:.2} s after the crash (median), p90 {:.2} s, max {:.2} s; first suspicion {:.2} s, first failure {:.2} s (medians)",
        times.len(),
        at(&mut times, 0.5),
        at(&mut times, 0.9),
        at(&mut times, 1.0),
        at(&mut first_suspected, 0.5),
        at(&mut first_failed, 0.5),
    );
    for m in &all {
        m.shutdown().await;
    }
}

/// One cold start: `n` members start `20..=300` ms apart (as processes launched by a script or a
/// scheduler do), each joining one member started before it, picked at random (so two members that
/// start a moment apart often join through different seeds). Returns the seconds from the last start
/// until every member lists every other alive, or `None` if that took over `limit`.
async fn cold_start_once(n: usize, run: u64, rng: &mut impl rand::Rng, limit: Duration) -> Option<f64> {
    let mut all: Vec<Cluster> = Vec::with_capacity(n);
    let mut joins = Vec::new();
    for i in 0..n {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(rng.random_range(20..=300))).await;
        }
        let m = member_with(&format!("cold-{run}-{i}"), run * 1000 + i as u64, Config::lan()).await;
        if !all.is_empty() {
            let (m2, seed) = (m.clone(), all[rng.random_range(0..all.len())].local_addr());
            joins.push(tokio::spawn(async move { m2.join(&[seed]).await }));
        }
        all.push(m);
    }
    let last_start = Instant::now();
    let formed = eventually(limit, || all.iter().all(|m| alive_count(m) == n - 1)).await;
    let took = last_start.elapsed().as_secs_f64();
    for j in joins {
        let _ = j.await;
    }
    for m in &all {
        m.shutdown().await;
    }
    formed.then_some(took)
}

async fn cold_start(n: usize, runs: u64) {
    use rand::SeedableRng;
    let mut rng = rand::rngs::SmallRng::seed_from_u64(n as u64);
    let limit = Duration::from_secs(90);
    let mut times = Vec::new();
    let mut never = 0;
    for run in 0..runs {
        match cold_start_once(n, run, &mut rng, limit).await {
            Some(t) => times.push(t),
            None => never += 1,
        }
    }
    times.sort_by(f64::total_cmp);
    let at = |q: f64| times.get(((times.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(f64::NAN);
    let slow = times.iter().filter(|&&t| t > 5.0).count();
    println!(
        "cold-start: {n} members (LAN preset, UDP + TCP) started 20-300 ms apart, each joining a random earlier one, {runs} starts: every member lists every other {:.2} s after the last start (median), p90 {:.2} s, max {:.2} s; {slow} starts took over 5 s; {never} not formed in {} s",
        at(0.5),
        at(0.9),
        at(1.0),
        limit.as_secs()
    );
}

/// HashiCorp memberlist's own detection time in the same run, from the Go source Debian packages
/// (`golang-go golang-github-hashicorp-memberlist-dev`): `benches/memberlist/detection.go` does what
/// `detection_once` does. Skipped, with a line saying so, where Go or the source is missing.
fn memberlist_detection(n: usize, crashes: usize) {
    const GOPATH: &str = "/usr/share/gocode";
    if !std::path::Path::new(GOPATH).join("src/github.com/hashicorp/memberlist").is_dir() {
        println!("detection: HashiCorp memberlist skipped: no Go source at {GOPATH} (apt-get install golang-go golang-github-hashicorp-memberlist-dev)");
        return;
    }
    let program = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/memberlist/detection.go");
    let run = std::process::Command::new("go")
        .args(["run", program, "-n", &n.to_string(), "-crashes", &crashes.to_string()])
        .env("GO111MODULE", "off")
        .env("GOPATH", GOPATH)
        .output();
    match run {
        Ok(out) if out.status.success() => print!("{}", String::from_utf8_lossy(&out.stdout)),
        Ok(out) => println!("detection: HashiCorp memberlist failed: {}", String::from_utf8_lossy(&out.stderr).trim()),
        Err(e) => println!("detection: HashiCorp memberlist skipped: cannot run go ({e})"),
    }
}

fn main() {
    let which: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let wants = |name: &str| which.is_empty() || which.iter().any(|w| w == name);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        if wants("send") {
            send(false).await;
        }
        if wants("send-encrypted") {
            send(true).await;
        }
        if wants("idle") {
            idle().await;
        }
        if wants("traffic") {
            for n in [20, 50] {
                traffic_once(n, false).await;
                traffic_once(n, true).await;
            }
        }
        if wants("detection") {
            detection_once(50, 10, "LAN preset (alpha 2, k 3, checks)", Config::lan()).await;
            let mut memberlist = Config::lan();
            memberlist.suspicion_mult = 4;
            memberlist.suspicion_confirmations = 2;
            memberlist.suspect_checks = false;
            detection_once(50, 10, "memberlist's alpha 4, k 2, no checks", memberlist).await;
            memberlist_detection(50, 10);
        }
        if wants("cold-start") {
            cold_start(20, 48).await;
            cold_start(50, 48).await;
        }
    });
}
