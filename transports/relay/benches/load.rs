//! Relay load benchmark: N WebSocket clients connected to a `shoal-relay` child process, each
//! sending frames to random other clients; reports connections held, forwarded frames per
//! second and the relay's resident memory per connection.
//!
//! ```text
//! cargo bench -p shoal-relay --bench load -- [--clients 1000] [--secs 10] [--rate 60000] [--size 120]
//! ```
//!
//! `--rate` is the total offered load in frames per second (spread evenly over the clients, sent
//! in 50 ms ticks); `--rate 0` sends as fast as the sockets take it. The relay runs as a child
//! process (the `shoal-relay` binary of this build) so its memory is measured alone, from
//! `/proc/<pid>/status`. Everything stays on 127.0.0.1 and stops by itself.
//!
//! Targets (DESIGN.md): 1,000 concurrent connections, >= 50,000 forwarded frames/s,
//! <= 64 KiB of relay memory per connection.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use futures_util::SinkExt;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use shoal::relay::{decode_ws_frame, encode_ws_frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

struct Args {
    clients: usize,
    secs: u64,
    rate: u64,
    size: usize,
}

fn args() -> Args {
    let mut a = Args { clients: 1_000, secs: 10, rate: 60_000, size: 120 };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let value = argv.get(i + 1).and_then(|v| v.parse::<u64>().ok());
        match (argv[i].as_str(), value) {
            ("--clients", Some(v)) => a.clients = v as usize,
            ("--secs", Some(v)) => a.secs = v,
            ("--rate", Some(v)) => a.rate = v,
            ("--size", Some(v)) => a.size = v as usize,
            // `cargo bench` passes `--bench`; ignore anything else too.
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    a
}

/// `VmRSS` and `VmHWM` of a process, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Starts the relay binary on a free loopback port; returns the child and the bound address.
fn start_relay() -> (Child, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_shoal-relay"))
        // Every client connects from 127.0.0.1: lift the per-IP connection cap (256 by default).
        .args(["--bind", "127.0.0.1:0", "--max-connections-per-ip", "1000000"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start shoal-relay");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("read the relay's address");
    let addr = line.trim().strip_prefix("listening on ").expect("`listening on <addr>`").parse().expect("address");
    (child, addr)
}

/// Fetches `/metrics` and returns the value of the sample line starting with `prefix`.
async fn metric(relay: SocketAddr, prefix: &str) -> u64 {
    let Ok(mut tcp) = tokio::net::TcpStream::connect(relay).await else { return 0 };
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {relay}\r\nConnection: close\r\n\r\n");
    if tcp.write_all(request.as_bytes()).await.is_err() {
        return 0;
    }
    let mut text = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_string(&mut text)).await;
    text.lines()
        .find(|l| l.starts_with(prefix) && l[prefix.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[derive(Default)]
struct Totals {
    received: AtomicU64,
    sent: AtomicU64,
    send_errors: AtomicU64,
    closed_early: AtomicU64,
}

fn client_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(8 << 10).write_buffer_size(8 << 10)
}

fn main() {
    let a = args();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(run(a));
}

async fn run(a: Args) {
    let (mut child, relay) = start_relay();
    let pid = child.id();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (rss_base, _) = memory_kib(pid);
    println!("relay pid {pid} on {relay}; baseline RSS {rss_base} KiB");

    // Connect every client (64 handshakes in flight at a time).
    let started = Instant::now();
    let connected: Vec<_> = stream::iter(0..a.clients)
        .map(|i| async move {
            let url = format!("ws://{relay}/ws?peer=c{i}");
            let (mut ws, _) =
                tokio_tungstenite::connect_async_with_config(url, Some(client_config()), true).await.ok()?;
            match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
                Ok(Some(Ok(Message::Binary(_)))) => Some((i, ws)),
                _ => None,
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let clients: Vec<_> = connected.into_iter().flatten().collect();
    let n = clients.len();
    println!("connected {n} of {} clients in {:.2?}", a.clients, started.elapsed());
    if n < 2 {
        let _ = child.kill();
        panic!("too few clients connected");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (rss_idle, _) = memory_kib(pid);

    // Traffic: every client sends to random others, paced in 50 ms ticks (or unpaced).
    let totals = Arc::new(Totals::default());
    let stop = Arc::new(AtomicBool::new(false));
    let per_tick = a.rate as f64 / n as f64 / 20.0;
    // One ready-made frame per destination (cloning `Bytes` is a reference count).
    let frames: Arc<Vec<bytes::Bytes>> = Arc::new(
        (0..a.clients)
            .map(|to| encode_ws_frame(&format!("relay://{relay}/c{to}"), &vec![1u8; a.size]).expect("frame").into())
            .collect(),
    );
    let mut tasks = Vec::with_capacity(2 * n);
    let ids: Vec<usize> = clients.iter().map(|(i, _)| *i).collect();
    let ids = Arc::new(ids);
    let forwarded_before = metric(relay, "shoal_relay_forwarded_frames_total{path=\"ws_ws\"}").await;
    let load_started = Instant::now();
    for (me, ws) in clients {
        let (mut sink, mut source) = ws.split();
        let (totals_r, stop_r) = (totals.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            while let Some(m) = source.next().await {
                match m {
                    Ok(Message::Binary(b)) => {
                        if decode_ws_frame(&b).is_ok() {
                            totals_r.received.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            if !stop_r.load(Ordering::Relaxed) {
                totals_r.closed_early.fetch_add(1, Ordering::Relaxed);
            }
        }));
        let (totals, stop, ids, frames) = (totals.clone(), stop.clone(), ids.clone(), frames.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = SmallRng::seed_from_u64(me as u64);
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            // Spread the clients' ticks over the period.
            tokio::time::sleep(Duration::from_micros(rng.random_range(0..50_000))).await;
            let mut owed = 0.0f64;
            while !stop.load(Ordering::Relaxed) {
                let batch = if per_tick == 0.0 {
                    32
                } else {
                    tick.tick().await;
                    owed += per_tick;
                    let whole = owed.floor();
                    owed -= whole;
                    whole as usize
                };
                for _ in 0..batch {
                    let to = ids[rng.random_range(0..ids.len())];
                    if sink.feed(Message::Binary(frames[to].clone())).await.is_err() {
                        totals.send_errors.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                }
                if sink.flush().await.is_err() {
                    totals.send_errors.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                totals.sent.fetch_add(batch as u64, Ordering::Relaxed);
            }
            let _ = sink.close().await;
        }));
    }

    let mut rss_peak = rss_idle;
    let mut last = (Instant::now(), 0u64);
    for second in 1..=a.secs {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (rss, _) = memory_kib(pid);
        rss_peak = rss_peak.max(rss);
        let received = totals.received.load(Ordering::Relaxed);
        let now = Instant::now();
        let rate = (received - last.1) as f64 / now.duration_since(last.0).as_secs_f64();
        last = (now, received);
        println!("  t={second:>2}s delivered {rate:>9.0} frames/s  relay RSS {rss} KiB");
    }
    let (rss_loaded, _) = memory_kib(pid);
    let connections = metric(relay, "shoal_relay_connections").await;
    // Stop sending, let what is in flight arrive, then count: every frame sent in the window.
    stop.store(true, Ordering::Relaxed);
    let elapsed = load_started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let forwarded = metric(relay, "shoal_relay_forwarded_frames_total{path=\"ws_ws\"}").await - forwarded_before;
    let slow = metric(relay, "shoal_relay_slow_consumers_disconnected_total").await;
    let (_, hwm) = memory_kib(pid);
    let received = totals.received.load(Ordering::Relaxed);
    let sent = totals.sent.load(Ordering::Relaxed);

    let per_conn = |rss: u64| (rss.saturating_sub(rss_base)) as f64 / n as f64;
    let fwd_rate = forwarded as f64 / elapsed;
    println!();
    println!(
        "clients {n}, {:.1} s of load, {}-byte packets, offered {}",
        elapsed,
        a.size,
        match a.rate {
            0 => "unpaced".to_string(),
            r => format!("{r} frames/s"),
        }
    );
    println!(
        "sent {sent} frames, delivered {received} ({:.0}/s), relay forwarded {forwarded} ws->ws",
        received as f64 / elapsed
    );
    println!(
        "connections held at the end: {connections} (relay gauge); closed early: {}; slow consumers disconnected: {slow}; send errors: {}",
        totals.closed_early.load(Ordering::Relaxed),
        totals.send_errors.load(Ordering::Relaxed)
    );
    println!(
        "relay RSS: baseline {rss_base} KiB, idle with {n} connections {rss_idle} KiB, under load {rss_loaded} KiB (peak sampled {rss_peak} KiB, VmHWM {hwm} KiB)"
    );
    println!(
        "relay memory per connection: idle {:.1} KiB, under load {:.1} KiB, peak {:.1} KiB",
        per_conn(rss_idle),
        per_conn(rss_loaded),
        per_conn(rss_peak.max(hwm))
    );
    let verdict = |ok: bool| if ok { "MET" } else { "MISSED" };
    println!();
    println!("target 1,000 concurrent connections: {} ({connections})", verdict(connections >= 1_000));
    println!("target >= 50,000 forwarded frames/s: {} ({fwd_rate:.0}/s)", verdict(fwd_rate >= 50_000.0));
    println!(
        "target <= 64 KiB relay memory per connection: {} ({:.1} KiB peak)",
        verdict(per_conn(rss_peak.max(hwm)) <= 64.0),
        per_conn(rss_peak.max(hwm))
    );

    for t in &tasks {
        t.abort();
    }
    let _ = child.kill();
    let _ = child.wait();
}
