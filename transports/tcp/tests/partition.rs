//! A black-holed link between two network namespaces joined by a veth pair.
//!
//! A pooled connection that we keep writing into while the peer acknowledges nothing must fail
//! within `ack_timeout`, so that a frame sent once the link heals crosses it on a fresh connection
//! at once. Without that, the kernel keeps the connection established and retransmits with a
//! doubling backoff (retries about 0.2, 0.6, 1.4, 3, 6.2, 12.6 and 25.4 s after the first lost
//! segment), and the frame waits behind the queued ones for the next retry.
//!
//! The namespaces, the veth pair and the nftables rules exist only for the test and are deleted
//! by a guard, also when it fails. It needs root, `ip` and `nft` (nf_tables); without them it
//! prints why and passes.
#![cfg(target_os = "linux")]

use std::fs::File;
use std::future::Future;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shoal::{Addr, Transport};
use shoal_tcp::{TcpOptions, TcpTransport};
use shoal_testkit::eventually_blocking as wait_for;
use tokio::runtime::Runtime;

const ADDR_A: &str = "10.201.0.1";
const ADDR_B: &str = "10.201.0.2";
/// The veth end's name inside each namespace (names are per namespace, so no clash).
const LINK: &str = "veth0";
/// The nftables table holding the black-hole rule, one in each namespace.
const TABLE: &str = "shoal_blackhole";

/// How long frames are sent into the black hole: many times `ack_timeout`, and long enough that
/// without the fix the next retransmission comes about 11 s after the heal.
const BLACK_HOLE: Duration = Duration::from_secs(14);
/// A frame sent after healing must arrive within this.
const DELIVERY_BOUND: Duration = Duration::from_secs(5);

/// Prints past the test harness's output capture, so a skip is visible in a plain `cargo test`.
fn skip(why: &str) {
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED a_frame_sent_after_a_black_hole_heals_arrives_on_a_fresh_connection_within_seconds: {why} \
         (it needs root, `ip` and `nft` with nf_tables to build its own network namespaces)"
    );
}

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program).args(args).output().map_err(|e| format!("`{program}` not runnable: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("`{program} {}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// Two namespaces joined by a veth pair, with an empty nftables input chain in each. Dropping it
/// deletes the tables and the namespaces (which takes the veth pair with them).
struct Namespaces {
    a: String,
    b: String,
}

impl Namespaces {
    fn create() -> Result<Namespaces, String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err("needs root to create network namespaces".into());
        }
        run("ip", &["-V"])?;
        run("nft", &["--version"])?;
        let pid = std::process::id();
        let ns = Namespaces { a: format!("shoal-tcp-{pid}-a"), b: format!("shoal-tcp-{pid}-b") };
        ns.delete(); // leftovers of an earlier run with the same pid
        let (a, b) = (ns.a.as_str(), ns.b.as_str());
        run("ip", &["netns", "add", a])?;
        run("ip", &["netns", "add", b])?;
        run("ip", &["link", "add", LINK, "netns", a, "type", "veth", "peer", "name", LINK, "netns", b])?;
        for (name, addr) in [(a, ADDR_A), (b, ADDR_B)] {
            run("ip", &["-n", name, "addr", "add", &format!("{addr}/24"), "dev", LINK])?;
            run("ip", &["-n", name, "link", "set", LINK, "up"])?;
            run("ip", &["-n", name, "link", "set", "lo", "up"])?;
            ns.nft(name, &["add", "table", "inet", TABLE])?;
            ns.nft(name, &["add chain inet", TABLE, "input { type filter hook input priority 0 ; policy accept ; }"])?;
        }
        Ok(ns)
    }

    fn nft(&self, ns: &str, args: &[&str]) -> Result<(), String> {
        let mut all = vec!["netns", "exec", ns, "nft"];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// Drops everything arriving over the veth pair, both ways: packets leave and vanish.
    fn black_hole(&self) -> Result<(), String> {
        for ns in [&self.a, &self.b] {
            self.nft(ns, &["add", "rule", "inet", TABLE, "input", "iifname", LINK, "drop"])?;
        }
        Ok(())
    }

    fn heal(&self) -> Result<(), String> {
        for ns in [&self.a, &self.b] {
            self.nft(ns, &["flush", "chain", "inet", TABLE, "input"])?;
        }
        Ok(())
    }

    fn delete(&self) {
        for ns in [&self.a, &self.b] {
            let _ = self.nft(ns, &["delete", "table", "inet", TABLE]);
            let _ = run("ip", &["netns", "delete", ns]);
        }
    }

    /// A tokio runtime whose threads all live in namespace `ns`, so every socket its tasks open
    /// is there. Futures must run as tasks on it ([`in_ns`]), not on the caller's thread.
    fn runtime(&self, ns: &str) -> Runtime {
        let netns = Arc::new(File::open(format!("/run/netns/{ns}")).expect("open the namespace"));
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .on_thread_start(move || {
                // SAFETY: setns with an open namespace descriptor moves only this thread.
                let r = unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
            })
            .build()
            .expect("runtime")
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        self.delete();
    }
}

/// Runs `f` as a task on `rt` (inside its namespace) and waits for it.
fn in_ns<F>(rt: &Runtime, f: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    rt.block_on(rt.spawn(f)).expect("task panicked")
}

/// Receives on `t` until the frame `want` arrives, or `limit` passes. Returns when it arrived.
fn receive(rt: &Runtime, t: &Arc<TcpTransport>, want: &'static [u8], limit: Duration) -> Option<Instant> {
    let t = t.clone();
    in_ns(rt, async move {
        let deadline = tokio::time::Instant::now() + limit;
        let mut buf = Vec::new();
        loop {
            match tokio::time::timeout_at(deadline, t.recv(&mut buf)).await {
                Ok(Ok(_)) if buf == want => return Some(Instant::now()),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => panic!("recv: {e}"),
                Err(_) => return None,
            }
        }
    })
}

#[test]
fn a_frame_sent_after_a_black_hole_heals_arrives_on_a_fresh_connection_within_seconds() {
    let ns = match Namespaces::create() {
        Ok(ns) => ns,
        Err(why) => return skip(&why),
    };
    let (rt_a, rt_b) = (ns.runtime(&ns.a), ns.runtime(&ns.b));
    let options = TcpOptions {
        ack_timeout: Duration::from_secs(2),
        keepalive: Duration::from_secs(1),
        connect_timeout: Duration::from_secs(1),
        ..TcpOptions::default()
    };
    let bind = |rt: &Runtime, addr: &str| {
        let (sa, options) = (format!("{addr}:0").parse().unwrap(), options.clone());
        in_ns(rt, async move { TcpTransport::bind(sa, options).await.expect("bind inside the namespace") })
    };
    let b = bind(&rt_b, ADDR_B);
    let a = bind(&rt_a, ADDR_A);
    let to: Addr = b.local_addr();

    // A pooled connection, in use.
    let (a2, to2) = (a.clone(), to.clone());
    in_ns(&rt_a, async move { a2.send_reliable(&to2, b"before").await }).expect("send before the black hole");
    assert!(receive(&rt_b, &b, b"before", Duration::from_secs(5)).is_some(), "no frame over the veth pair");
    assert_eq!((a.connection_stats().dialled, a.connection_stats().outbound_open), (1, 1));

    // Frames keep going into the black hole, ten a second, for many times ack_timeout.
    ns.black_hole().expect("install the black hole");
    let holed = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let sender = rt_a.spawn({
        let (a, to, stop, sent) = (a.clone(), to.clone(), stop.clone(), sent.clone());
        async move {
            while !stop.load(Ordering::Relaxed) {
                let _ = a.send_reliable(&to, b"during").await; // fails once the connection is gone
                sent.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    let long_enough = wait_for(BLACK_HOLE + Duration::from_secs(10), || {
        holed.elapsed() >= BLACK_HOLE && sent.load(Ordering::Relaxed) >= 10
    });
    assert!(long_enough, "the sender stalled: {} frames sent", sent.load(Ordering::Relaxed));
    stop.store(true, Ordering::Relaxed);
    rt_a.block_on(async { tokio::time::timeout(Duration::from_secs(10), sender).await })
        .expect("the sender stops within its connect and io timeouts")
        .expect("sender task");
    let during = a.connection_stats();

    // Healed: the next frame must not wait for the kernel's next retransmission.
    ns.heal().expect("remove the black hole");
    let healed = Instant::now();
    let marker = rt_a.spawn({
        let (a, to) = (a.clone(), to.clone());
        async move {
            // Sends once; again only if that fails (a connect begun just before the heal).
            while a.send_reliable(&to, b"after").await.is_err() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });
    let arrived = receive(&rt_b, &b, b"after", DELIVERY_BOUND);
    marker.abort();
    let after = a.connection_stats();
    eprintln!(
        "black hole {:.1} s, {} frames sent into it; sender's connections then {during:?}; \
         frame after healing arrived after {:?}; now {after:?}; receiver {:?}",
        BLACK_HOLE.as_secs_f64(),
        sent.load(Ordering::Relaxed),
        arrived.map(|t| t - healed),
        b.connection_stats(),
    );
    let Some(arrived) = arrived else {
        panic!(
            "the frame sent after healing did not arrive within {DELIVERY_BOUND:?} (sender {after:?}, receiver {:?})",
            b.connection_stats()
        );
    };
    assert!(arrived - healed <= DELIVERY_BOUND);
    assert!(during.timed_out >= 1 || during.idle_closed >= 1, "the black-holed connection was not failed: {during:?}");
    assert!(after.dialled >= 2, "the frame went out on the old connection: {after:?}");
}
