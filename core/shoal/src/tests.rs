//! The driver over an in-memory network whose transports misbehave on demand: sends to chosen
//! addresses that never complete or take a while, a receive future that panics, a send that
//! panics. Every wait has a deadline; nothing sleeps a fixed time to let something happen.

use std::boxed::Box;
use std::collections::{HashMap, HashSet, VecDeque};
use std::future::poll_fn;
use std::string::{String, ToString};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::Duration;
use std::vec::Vec;

use futures_util::FutureExt;

use super::signal::lock;
use super::{
    Addr, AddrListener, CloseReason, Cluster, ClusterError, LinkListener, Received, TokioRuntime, Transport,
    TransportError, BEST_EFFORT_SEND_DEADLINE,
};
use crate::{ClusterEvent as Event, CommandError, Config, MemberState};

/// Generous for a loaded machine; a wedged driver misses it by forever.
const DEADLINE: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Mailbox {
    queue: VecDeque<(Addr, Vec<u8>, bool)>,
    waker: Option<Waker>,
    closed: bool,
}

type Net = Arc<Mutex<HashMap<Addr, Arc<Mutex<Mailbox>>>>>;

/// One member's transport on a [`Net`]. Claims every address, best-effort and reliable alike (like
/// TCP-only mode, it has no separate datagram path); sends to addresses outside the net vanish.
struct Mem {
    /// Its address now: [`Mem::move_to`] changes it, as a relay connection that fails over would.
    me: Mutex<Addr>,
    net: Net,
    inbox: Arc<Mutex<Mailbox>>,
    /// Sends to these never complete.
    hang: Mutex<HashSet<Addr>>,
    /// Sends to these take this long.
    slow: Mutex<HashMap<Addr, Duration>>,
    /// Sends to these panic.
    panic_to: Mutex<HashSet<Addr>>,
    /// Set: the receive future panics when next polled.
    recv_panics: AtomicBool,
    /// Frames whose send completed, by destination.
    sent: Mutex<HashMap<Addr, usize>>,
    /// Whether it says when it reaches nobody (see [`Transport::watch_link`]), and whom it tells.
    tells_link: bool,
    link: Mutex<Option<LinkListener>>,
    /// Who hears its address change (see [`Transport::watch_local_addr`]).
    moves: Mutex<Option<AddrListener>>,
}

impl Mem {
    fn new(net: &Net, addr: &str) -> Arc<Mem> {
        Mem::with_link(net, addr, false)
    }

    /// A transport that, with `tells_link`, reports its link as a relay connection does.
    fn with_link(net: &Net, addr: &str, tells_link: bool) -> Arc<Mem> {
        let me = Addr::parse(addr).unwrap();
        let inbox = Arc::new(Mutex::new(Mailbox::default()));
        lock(net).insert(me.clone(), inbox.clone());
        Arc::new(Mem {
            me: Mutex::new(me),
            net: net.clone(),
            inbox,
            hang: Mutex::default(),
            slow: Mutex::default(),
            panic_to: Mutex::default(),
            recv_panics: AtomicBool::new(false),
            sent: Mutex::default(),
            tells_link,
            link: Mutex::default(),
            moves: Mutex::default(),
        })
    }

    /// Reports the link down or up to whoever watches it, as a transport that can tell would.
    fn report_link(&self, up: bool) {
        if let Some(tell) = lock(&self.link).as_ref() {
            tell(up);
        }
    }

    /// Cuts this member off the net both ways (`false`) or plugs it back in (`true`).
    fn plug(&self, plugged: bool) {
        let me = self.me();
        if plugged {
            lock(&self.net).insert(me, self.inbox.clone());
        } else {
            lock(&self.net).remove(&me);
        }
    }

    fn me(&self) -> Addr {
        lock(&self.me).clone()
    }

    /// Receives at `to` from now on, not at its old address, and reports the change first (as a
    /// relay connection welcomed at another relay of the fleet does).
    fn move_to(&self, to: &str) {
        let to = Addr::parse(to).unwrap();
        let old = std::mem::replace(&mut *lock(&self.me), to.clone());
        if let Some(tell) = lock(&self.moves).as_ref() {
            tell(&old, &to);
        }
        let mut net = lock(&self.net);
        net.remove(&old);
        net.insert(to, self.inbox.clone());
    }

    fn sent_to(&self, to: &Addr) -> usize {
        lock(&self.sent).get(to).copied().unwrap_or(0)
    }

    /// Makes the pending receive future panic.
    fn explode_receive(&self) {
        self.recv_panics.store(true, Ordering::SeqCst);
        if let Some(w) = lock(&self.inbox).waker.take() {
            w.wake();
        }
    }

    async fn deliver(&self, to: &Addr, bytes: &[u8], reliable: bool) -> Result<(), TransportError> {
        if lock(&self.panic_to).contains(to) {
            panic!("send to {to} exploded");
        }
        if lock(&self.hang).contains(to) {
            std::future::pending::<()>().await;
        }
        let delay = lock(&self.slow).get(to).copied();
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        let dest = lock(&self.net).get(to).cloned();
        if let Some(dest) = dest {
            let mut mailbox = lock(&dest);
            mailbox.queue.push_back((self.me(), bytes.to_vec(), reliable));
            if let Some(w) = mailbox.waker.take() {
                w.wake();
            }
        }
        *lock(&self.sent).entry(to.clone()).or_default() += 1;
        Ok(())
    }
}

#[async_trait::async_trait]
impl Transport for Mem {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn claims(&self, _to: &Addr, _reliable: bool) -> bool {
        true
    }

    async fn send(&self, to: &Addr, bytes: &[u8]) -> Result<(), TransportError> {
        self.deliver(to, bytes, false).await
    }

    async fn send_reliable(&self, to: &Addr, bytes: &[u8]) -> Result<(), TransportError> {
        self.deliver(to, bytes, true).await
    }

    async fn recv(&self, buf: &mut Vec<u8>) -> Result<Received, TransportError> {
        poll_fn(|cx| {
            if self.recv_panics.load(Ordering::SeqCst) {
                panic!("receive future exploded");
            }
            let mut inbox = lock(&self.inbox);
            if let Some((from, bytes, reliable)) = inbox.queue.pop_front() {
                *buf = bytes;
                return Poll::Ready(Ok(Received { from, reliable }));
            }
            if inbox.closed {
                return Poll::Ready(Err(TransportError::Closed));
            }
            inbox.waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    fn local_addr(&self) -> Addr {
        self.me()
    }

    fn watch_local_addr(&self, listener: AddrListener) {
        *lock(&self.moves) = Some(listener);
    }

    fn watch_link(&self, listener: LinkListener) {
        if self.tells_link {
            *lock(&self.link) = Some(listener);
        }
    }

    async fn close(&self) {
        lock(&self.net).remove(&self.me());
        let mut inbox = lock(&self.inbox);
        inbox.closed = true;
        if let Some(w) = inbox.waker.take() {
            w.wake();
        }
    }
}

fn addr(host: u8) -> Addr {
    Addr::parse(&format!("udp://10.0.0.{host}:7946")).unwrap()
}

/// A member on `net` at `udp://10.0.0.<host>:7946`, its driver spawned; also the driver's task.
fn member_with(net: &Net, name: &str, host: u8, config: Config) -> (Cluster, Arc<Mem>, tokio::task::JoinHandle<()>) {
    let mem = Mem::new(net, &addr(host).to_string());
    let (cluster, task) = member_over(name, host, config, vec![mem.clone()]);
    (cluster, mem, task)
}

/// A member over `transports`, its driver spawned; also the driver's task.
fn member_over(
    name: &str,
    host: u8,
    config: Config,
    transports: Vec<Arc<dyn Transport>>,
) -> (Cluster, tokio::task::JoinHandle<()>) {
    member_on_runtime(name, host, config, transports, Arc::new(TokioRuntime::new()))
}

/// [`member_over`] on a runtime of the caller's.
fn member_on_runtime(
    name: &str,
    host: u8,
    config: Config,
    transports: Vec<Arc<dyn Transport>>,
    runtime: Arc<dyn crate::Runtime>,
) -> (Cluster, tokio::task::JoinHandle<()>) {
    let (cluster, driver) =
        Cluster::builder(name).unwrap().config(config).seed(u64::from(host)).build(transports, runtime).unwrap();
    let task = tokio::spawn(driver.run());
    (cluster, task)
}

/// A member from `builder` (its config made `Config::local()`) on `net` at host `host`, its
/// driver spawned.
fn member_built(net: &Net, host: u8, builder: crate::ClusterBuilder) -> Cluster {
    let mem = Mem::new(net, &addr(host).to_string());
    let (cluster, driver) = builder
        .config(Config::local())
        .seed(u64::from(host))
        .build(vec![mem as Arc<dyn Transport>], Arc::new(TokioRuntime::new()))
        .unwrap();
    tokio::spawn(driver.run());
    cluster
}

fn member(net: &Net, name: &str, host: u8) -> (Cluster, Arc<Mem>) {
    let (cluster, mem, _) = member_with(net, name, host, Config::local());
    (cluster, mem)
}

/// Waits until `check` holds, looking every few milliseconds; false if `DEADLINE` passes first.
async fn eventually(check: impl FnMut() -> bool) -> bool {
    shoal_testkit::eventually(DEADLINE, check).await
}

async fn within<F: std::future::Future>(what: &str, f: F) -> F::Output {
    match tokio::time::timeout(DEADLINE, f).await {
        Ok(out) => out,
        Err(_) => panic!("{what} did not complete within {DEADLINE:?}"),
    }
}

/// Counts the messages a member receives, by topic.
fn count_messages(cluster: &Cluster) -> Arc<Mutex<HashMap<String, usize>>> {
    let counts = Arc::new(Mutex::new(HashMap::new()));
    let sink = counts.clone();
    cluster.on_message(move |m| *lock(&sink).entry(m.topic.clone()).or_default() += 1);
    counts
}

fn count(counts: &Mutex<HashMap<String, usize>>, topic: &str) -> usize {
    lock(counts).get(topic).copied().unwrap_or(0)
}

// ----- Defect: a panic left a zombie handle -------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_message_callback_is_counted_and_the_member_carries_on() {
    let net = Net::default();
    let (a, _) = member(&net, "a", 1);
    let (b, _) = member(&net, "b", 2);
    a.on_message(|m| {
        if m.payload == b"boom" {
            panic!("callback exploded");
        }
    });
    let seen = count_messages(&a);
    b.send_to_addr(&a.local_addr(), "first", b"boom", false).unwrap();
    b.send_to_addr(&a.local_addr(), "second", b"fine", false).unwrap();
    let both = eventually(|| count(&seen, "first") == 1 && count(&seen, "second") == 1).await;
    assert!(both, "a's callbacks saw {:?}", lock(&seen));
    assert_eq!(a.metrics().callback_panics, 1);
    assert!(a.metrics().to_prometheus().contains("shoal_callback_panics_total 1"));
    assert!(a.broadcast("still", b"here").is_ok());
    assert_eq!(a.closed().now_or_never(), None, "the member still runs");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_the_driver_stops_the_member_and_every_command_and_waiter_learns_why() {
    let net = Net::default();
    let (a, mem) = member(&net, "a", 1);
    let mut events = a.events();
    mem.explode_receive();

    let reason = within("closed()", a.closed()).await;
    match &reason {
        CloseReason::Panicked(message) => assert!(message.contains("receive future exploded"), "{message}"),
        other => panic!("closed for {other:?}"),
    }
    fn closed<T>(r: Result<T, ClusterError>) -> bool {
        matches!(r, Err(ClusterError::Closed(CloseReason::Panicked(_))))
    }
    assert!(closed(a.broadcast("t", b"x")), "broadcast after the driver died");
    assert!(closed(a.send_to_addr(&addr(9), "t", b"x", true)));
    assert!(closed(a.set_metadata(b"m")));
    assert!(closed(a.join(&[addr(9)]).await));
    assert!(closed(within("leave", a.leave(Duration::from_millis(100))).await));
    within("shutdown", a.shutdown()).await;
    within("flush", a.flush()).await;
    within("an earlier event stream", async { while events.next().await.is_some() {} }).await;
    assert!(within("a new event stream", a.events().next()).await.is_none());
    assert_eq!(within("closed() again", a.closed()).await, reason);
    assert_eq!(a.metrics().callback_panics, 0, "the handle still reads");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_whose_driver_future_is_dropped_says_so() {
    let net = Net::default();
    let (a, _, task) = member_with(&net, "a", 1, Config::local());
    task.abort();
    assert_eq!(within("closed()", a.closed()).await, CloseReason::DriverDropped);
    assert!(matches!(
        a.send_to_addr(&addr(9), "t", b"x", false),
        Err(ClusterError::Closed(CloseReason::DriverDropped))
    ));
    within("shutdown", a.shutdown()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_and_leave_report_their_own_reason_and_return_in_every_waiting_task() {
    let net = Net::default();
    let (a, _) = member(&net, "a", 1);
    let waiters: Vec<_> = (0..4)
        .map(|_| {
            let a = a.clone();
            tokio::spawn(async move { a.closed().await })
        })
        .collect();
    let shutdowns: Vec<_> = (0..4)
        .map(|_| {
            let a = a.clone();
            tokio::spawn(async move { a.shutdown().await })
        })
        .collect();
    for s in shutdowns {
        within("a concurrent shutdown", s).await.unwrap();
    }
    for w in waiters {
        assert_eq!(within("a closed() waiter", w).await.unwrap(), CloseReason::Shutdown);
    }
    assert!(matches!(a.broadcast("t", b"x"), Err(ClusterError::Shutdown)));

    let (b, _) = member(&net, "b", 2);
    let _ = within("leave", b.leave(Duration::from_millis(100))).await;
    assert_eq!(b.closed().now_or_never(), Some(CloseReason::Left));
}

// ----- Defect: one reliable budget for every destination ------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_destination_cannot_starve_reliable_sends_to_healthy_ones() {
    let net = Net::default();
    let config = {
        let mut c = Config::local();
        c.max_reliable_size = 1 << 20;
        c
    };
    let (a, mem, _) = member_with(&net, "a", 1, config);
    let (b, _) = member(&net, "b", 2);
    let seen = count_messages(&b);
    let dead = addr(66);
    lock(&mem.hang).insert(dead.clone());
    // 70 MiB for a peer whose sends never complete, more than the whole reliable backlog, in large
    // frames and then small ones (which fill what room the large ones leave).
    for (frames, size) in [(140, 512 << 10), (1_000, 1 << 10)] {
        for _ in 0..frames {
            a.send_to_addr(&dead, "bulk", &vec![7u8; size], true).unwrap();
        }
        within("flush", a.flush()).await;
    }
    a.send_to_addr(&b.local_addr(), "healthy", &[1u8; 4 << 10], true).unwrap();
    let delivered = eventually(|| count(&seen, "healthy") == 1).await;
    assert!(delivered, "the healthy peer got nothing; {} frames dropped", a.metrics().reliable_dropped);
    // The dead peer kept one frame in flight and its 8 MiB share: most of the rest was dropped.
    assert!(a.metrics().reliable_dropped >= 120, "{} dropped", a.metrics().reliable_dropped);
    a.shutdown().await;
    b.shutdown().await;
}

// ----- Defect: sends could stall the protocol loop -------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn best_effort_sends_to_stuck_or_slow_peers_never_hold_up_the_protocol_loop() {
    let net = Net::default();
    let (a, mem) = member(&net, "a", 1);
    let (b, _) = member(&net, "b", 2);
    let seen = count_messages(&b);
    let stuck: Vec<Addr> = (100..104).map(addr).collect();
    let slow: Vec<Addr> = (110..120).map(addr).collect();
    lock(&mem.hang).extend(stuck.iter().cloned());
    lock(&mem.slow).extend(slow.iter().map(|a| (a.clone(), Duration::from_millis(50))));
    for to in stuck.iter().chain(&slow) {
        a.send_to_addr(to, "gossip", b"x", false).unwrap();
    }
    a.send_to_addr(&b.local_addr(), "ping", b"x", false).unwrap();
    assert!(eventually(|| count(&seen, "ping") == 1).await, "the loop is stuck behind a send");
    within("flush", a.flush()).await;
    assert!(eventually(|| slow.iter().all(|to| mem.sent_to(to) == 1)).await, "the slow sends completed");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn best_effort_frames_behind_a_stuck_peer_are_bounded_dropped_and_counted() {
    let net = Net::default();
    let (a, mem) = member(&net, "a", 1);
    let (b, _) = member(&net, "b", 2);
    let seen = count_messages(&b);
    let stuck = addr(100);
    lock(&mem.hang).insert(stuck.clone());
    for _ in 0..1_000 {
        a.send_to_addr(&stuck, "flood", &[0u8; 1_000], false).unwrap();
    }
    // One frame in flight, 64 KiB of the newest waiting (about 60 frames); the rest dropped.
    let dropped = eventually(|| a.metrics().best_effort_dropped >= 900).await;
    assert!(dropped, "{} dropped", a.metrics().best_effort_dropped);
    assert!(a.metrics().to_prometheus().contains("shoal_best_effort_dropped_total"));
    assert_eq!(a.metrics().reliable_dropped, 0);
    a.send_to_addr(&b.local_addr(), "datagram", b"x", false).unwrap();
    a.send_to_addr(&b.local_addr(), "reliable", b"x", true).unwrap();
    assert!(eventually(|| count(&seen, "datagram") == 1 && count(&seen, "reliable") == 1).await);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_that_never_completes_is_given_up_at_its_deadline_so_flush_returns() {
    let net = Net::default();
    let (a, mem) = member(&net, "a", 1);
    let (b, _) = member(&net, "b", 2);
    let seen = count_messages(&b);
    let stuck = addr(100);
    lock(&mem.hang).insert(stuck.clone());
    // One send in flight that never completes, twenty waiting behind it.
    for _ in 0..21 {
        a.send_to_addr(&stuck, "gossip", b"x", false).unwrap();
    }
    let started = tokio::time::Instant::now();
    within("flush", a.flush()).await;
    let waited = started.elapsed();
    assert!(waited >= BEST_EFFORT_SEND_DEADLINE - Duration::from_millis(100), "flush returned after {waited:?}");
    let m = a.metrics();
    assert_eq!((m.sends_abandoned, m.best_effort_dropped), (1, 20), "{m:?}");
    assert!(m.to_prometheus().contains("shoal_sends_abandoned_total 1"), "{}", m.to_prometheus());
    // The member carries on, to the healthy peer and to the stuck one alike.
    a.send_to_addr(&b.local_addr(), "ping", b"x", false).unwrap();
    assert!(eventually(|| count(&seen, "ping") == 1).await);
    lock(&mem.hang).clear();
    a.send_to_addr(&stuck, "gossip", b"x", false).unwrap();
    within("flush", a.flush()).await;
    assert!(eventually(|| mem.sent_to(&stuck) == 1).await, "the destination works again once its transport does");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transport_send_that_panics_counts_as_an_error_and_its_destination_keeps_working() {
    let net = Net::default();
    let (a, mem) = member(&net, "a", 1);
    let (b, _) = member(&net, "b", 2);
    let seen = count_messages(&b);
    lock(&mem.panic_to).insert(b.local_addr());
    a.send_to_addr(&b.local_addr(), "lost", b"x", false).unwrap();
    a.send_to_addr(&b.local_addr(), "lost", b"x", true).unwrap();
    assert!(eventually(|| a.metrics().transport_errors >= 2).await, "both panics counted");
    lock(&mem.panic_to).clear();
    a.send_to_addr(&b.local_addr(), "datagram", b"x", false).unwrap();
    a.send_to_addr(&b.local_addr(), "reliable", b"x", true).unwrap();
    let delivered = eventually(|| count(&seen, "datagram") == 1 && count(&seen, "reliable") >= 1).await;
    assert!(delivered, "b saw {:?}", lock(&seen));
    assert_eq!(a.closed().now_or_never(), None, "the member still runs");
    a.shutdown().await;
    b.shutdown().await;
}

// ----- Defect: a native member on a relay connection accused everyone while the relay was away ---

/// Suspicions and failures `cluster` raises itself from now on, collected in the background.
fn accusations_by(cluster: &Cluster) -> Arc<Mutex<Vec<String>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let me = cluster.name();
    let mut events = cluster.events();
    tokio::spawn(async move {
        while let Some(e) = events.next().await {
            match e {
                shoal_core::Event::Suspected { id, by, .. } if by == me => lock(&sink).push(format!("suspect {id}")),
                shoal_core::Event::Failed { id, by, .. } if by == me => lock(&sink).push(format!("fail {id}")),
                _ => {}
            }
        }
    });
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_whose_only_transport_reports_its_link_down_accuses_nobody_until_it_is_back() {
    let net = Net::default();
    let mem = Mem::with_link(&net, &addr(1).to_string(), true);
    let (a, _) = member_over("a", 1, Config::local(), vec![mem.clone()]);
    let (b, _) = member(&net, "b", 2);
    let (c, _) = member(&net, "c", 3);
    within("join", a.join(&[b.local_addr(), c.local_addr()])).await.unwrap();
    assert!(eventually(|| a.alive_members().len() == 2 && b.alive_members().len() == 2).await);
    let accused = accusations_by(&a);

    // The relay goes away: a reaches nobody and nobody reaches a, and its transport says so.
    mem.plug(false);
    mem.report_link(false);
    // b and c, which cannot tell, declare a failed after a suspicion timeout: many of a's probe
    // periods, in which a probes nobody and accuses nobody.
    let pings = a.metrics().stats.pings_sent;
    let a_failed =
        || [&b, &c].iter().all(|m| m.members().iter().any(|m| m.id == a.name() && m.state == MemberState::Dead));
    assert!(eventually(a_failed).await, "b and c declared a failed");
    assert_eq!(a.metrics().stats.pings_sent, pings, "a probed while its link was down");
    assert_eq!(*lock(&accused), Vec::<String>::new(), "a accused others while its link was down");

    mem.plug(true);
    mem.report_link(true);
    let everyone_alive = || [&a, &b, &c].iter().all(|m| m.alive_members().len() == 2);
    assert!(eventually(everyone_alive).await, "converged after the link came back");
    assert_eq!(*lock(&accused), Vec::<String>::new(), "a accused others after its link came back");
    assert_eq!(a.metrics().stats.link_outages, 1);
    for m in [a, b, c] {
        m.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_member_counts_as_cut_off_only_while_every_transport_says_so_and_never_beside_one_that_cannot_tell() {
    let net = Net::default();
    // Two relay connections: the member is cut off only while both are down.
    let (one, two) = (Mem::with_link(&net, "relay://r1:1/a", true), Mem::with_link(&net, "relay://r2:1/a", true));
    let (a, _) = member_over("a", 1, Config::local(), vec![one.clone(), two.clone()]);
    one.report_link(false);
    one.report_link(true);
    assert_eq!(a.metrics().stats.link_outages, 0, "one connection of two dropped: not cut off");
    one.report_link(false);
    two.report_link(false);
    one.report_link(true);
    two.report_link(true);
    assert_eq!(a.metrics().stats.link_outages, 1, "both dropped: cut off until the first came back");
    // Beside a plugin that cannot tell (a UDP socket), a relay connection that drops cuts nothing off.
    let relay = Mem::with_link(&net, "relay://r3:1/b", true);
    let udp = Mem::new(&net, &addr(2).to_string());
    let (b, _) = member_over("b", 2, Config::local(), vec![relay.clone(), udp]);
    relay.report_link(false);
    relay.report_link(true);
    assert_eq!(b.metrics().stats.link_outages, 0);
    a.shutdown().await;
    b.shutdown().await;
}

// ----- A relay connection that fails over to another relay of the fleet moves the member -----------

/// Members that accuse anyone, as `"<id> by <by>"` lines (suspicions and failures).
fn accusations_of(cluster: &Cluster) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    let mut events = cluster.events();
    tokio::spawn(async move {
        while let Some(e) = events.next().await {
            match e {
                Event::Suspected { id, by, .. } | Event::Failed { id, by, .. } => {
                    lock(&sink).push(format!("{id} by {by}"))
                }
                _ => {}
            }
        }
    });
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transport_that_reports_a_new_address_moves_the_member_there_and_the_fleet_follows_without_a_failure() {
    let net = Net::default();
    // b announces relay r2 as a relay of the fleet (the tag a relay's own member carries).
    let b = member_built(&net, 2, Cluster::builder("b").unwrap().metadata("shoal-relay=r2:1"));
    let relay = Mem::new(&net, "relay://r1:1/a");
    let (a, _) = member_over("a", 1, Config::local(), vec![relay.clone()]);
    within("join", a.join(&[b.local_addr()])).await.unwrap();
    let at_b = |addr: &str| {
        b.members().iter().any(|m| m.id == a.name() && m.addr.as_str() == addr && m.state == MemberState::Alive)
    };
    assert!(eventually(|| at_b("relay://r1:1/a")).await);
    let accused = accusations_of(&b);
    let before = a.local_member().incarnation;

    relay.move_to("relay://r2:1/a");
    // Applied inside the transport's report: nothing the member sends from now on names r1.
    assert_eq!(a.local_addr().as_str(), "relay://r2:1/a");
    assert_eq!(a.local_member().addr.as_str(), "relay://r2:1/a");
    assert!(a.local_member().incarnation > before, "the move is a newer claim");
    assert_eq!(a.metrics().stats.moves, 1);
    assert!(eventually(|| at_b("relay://r2:1/a")).await, "b follows a to r2: {:?}", b.members());
    assert_eq!(b.metrics().stats.relay_moves, 1);
    assert_eq!(b.metrics().stats.address_conflicts, 0);
    // a and b keep talking at the new address.
    let pings = a.metrics().stats.pings_sent;
    assert!(eventually(|| a.metrics().stats.pings_sent >= pings + 3 && at_b("relay://r2:1/a")).await);
    assert_eq!(*lock(&accused), Vec::<String>::new(), "nobody accused a of anything");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_advertises_another_transports_address_stays_when_its_relay_connection_moves() {
    let net = Net::default();
    let udp = Mem::new(&net, &addr(1).to_string());
    let relay = Mem::new(&net, "relay://r1:1/a");
    let (a, _) = member_over("a", 1, Config::local(), vec![udp, relay.clone()]);
    let before = a.local_member();
    relay.move_to("relay://r2:1/a");
    assert_eq!(a.local_addr(), addr(1));
    assert_eq!(a.local_member().incarnation, before.incarnation);
    assert_eq!(a.metrics().stats.moves, 0);
    // Cluster::move_to, for a connection the plugins cannot see, moves it whatever it advertised.
    a.move_to(Addr::parse("relay://r3:1/a").unwrap()).unwrap();
    assert_eq!(a.local_addr().as_str(), "relay://r3:1/a");
    assert!(a.local_member().incarnation > before.incarnation);
    a.shutdown().await;
    assert!(matches!(a.move_to(addr(9)), Err(ClusterError::Shutdown)));
}

// ----- Metrics hygiene: counters only grow ---------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_dropped_for_a_lagging_subscriber_stay_counted_after_its_stream_is_dropped() {
    let net = Net::default();
    let mem = Mem::new(&net, &addr(1).to_string());
    let (a, driver) = Cluster::builder("a")
        .unwrap()
        .config(Config::local())
        .seed(1)
        .event_capacity(4)
        .build(vec![mem as Arc<dyn Transport>], Arc::new(TokioRuntime::new()))
        .unwrap();
    tokio::spawn(driver.run());
    let (b, _) = member(&net, "b", 2);
    let lagging = a.events(); // never read
    within("the join", b.join(&[addr(1)])).await.unwrap();
    for i in 0..20 {
        b.broadcast("t", format!("{i}").as_bytes()).unwrap();
    }
    assert!(eventually(|| a.metrics().dropped_events > 0).await, "the lagging stream dropped events");
    let before = a.metrics().dropped_events;
    drop(lagging);
    // More events, so the member notices the stream is gone.
    let _reader = a.events();
    for i in 0..5 {
        b.broadcast("u", format!("{i}").as_bytes()).unwrap();
    }
    assert!(eventually(|| a.metrics().stats.broadcasts_delivered >= 25).await, "a got every broadcast");
    assert!(a.metrics().dropped_events >= before, "the counter went down: {} < {before}", a.metrics().dropped_events);
    let text = a.metrics().to_prometheus();
    assert!(text.contains("# TYPE shoal_dropped_events_total counter"), "{text}");
    assert!(!text.contains("shoal_dropped_events "), "no gauge of that name any more");
}

#[test]
fn cluster_errors_chain_to_their_cause_through_source() {
    use std::error::Error as _;
    let e = Cluster::builder("").expect_err("an empty name is refused");
    assert!(matches!(e, ClusterError::InvalidName(_)));
    let cause = e.source().expect("the invalid name is the cause");
    assert_eq!(cause.to_string(), crate::NodeId::new("").unwrap_err().to_string());
    let boxed: Box<dyn std::error::Error> = crate::NodeId::new("").unwrap_err().into();
    assert!(!boxed.to_string().is_empty(), "`?` turns an invalid name into Box<dyn Error>");
}

// ----- Seeds given as DNS names ---------------------------------------------------------------------

/// The tokio runtime with a DNS of our own: names and the addresses they list, changed at will,
/// and how many lookups were made.
#[derive(Clone, Default)]
struct FakeDns {
    tokio: Arc<Mutex<Option<TokioRuntime>>>,
    records: Arc<Mutex<HashMap<String, Vec<std::net::SocketAddr>>>>,
    lookups: Arc<std::sync::atomic::AtomicUsize>,
}

impl FakeDns {
    fn new() -> Self {
        let dns = FakeDns::default();
        *lock(&dns.tokio) = Some(TokioRuntime::new());
        dns
    }

    fn set(&self, name: &str, hosts: &[u8]) {
        let list = hosts.iter().map(|&h| addr(h).socket_addr().unwrap()).collect();
        lock(&self.records).insert(name.to_string(), list);
    }

    fn tokio(&self) -> TokioRuntime {
        lock(&self.tokio).clone().unwrap()
    }
}

impl crate::Runtime for FakeDns {
    fn now(&self) -> shoal_core::Instant {
        self.tokio().now()
    }
    fn sleep(&self, d: Duration) -> crate::BoxFuture<'static, ()> {
        self.tokio().sleep(d)
    }
    fn spawn(&self, task: crate::BoxFuture<'static, ()>) {
        self.tokio().spawn(task)
    }
    fn random_seed(&self) -> u64 {
        7
    }
    fn resolve(&self, host: &str, port: u16) -> crate::BoxFuture<'static, std::io::Result<Vec<std::net::SocketAddr>>> {
        self.lookups.fetch_add(1, Ordering::Relaxed);
        let found = lock(&self.records).get(host).cloned();
        let found = found
            .map(|list| {
                list.into_iter()
                    .map(|mut s| {
                        s.set_port(port);
                        s
                    })
                    .collect()
            })
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, format!("no such name {host}")));
        Box::pin(async move { found })
    }
}

/// The state `of` is in, in `m`'s view.
fn state_of(m: &Cluster, of: &str) -> Option<MemberState> {
    m.members().into_iter().find(|x| x.id.as_str() == of).map(|x| x.state)
}

/// A member on `net` at host `host` that resolves names through `dns`.
fn member_with_dns(net: &Net, name: &str, host: u8, config: Config, dns: &FakeDns) -> Cluster {
    let mem = Mem::new(net, &addr(host).to_string());
    member_on_runtime(name, host, config, vec![mem], Arc::new(dns.clone())).0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_joins_through_a_dns_name_listing_every_member_it_names() {
    let net = Net::default();
    let (a, _) = member(&net, "a", 1);
    let (c, _) = member(&net, "c", 3);
    let dns = FakeDns::new();
    dns.set("seeds.test", &[1, 3]);
    let b = member_with_dns(&net, "b", 2, Config::local(), &dns);
    within("the join", b.join(["seeds.test:7946"])).await.unwrap();
    // a and c never met: b asked both, so both know b, and through it each other.
    let all = eventually(|| {
        [&a, &b, &c].iter().all(|m| m.members().iter().filter(|x| x.state == MemberState::Alive).count() == 2)
    })
    .await;
    assert!(all, "a {:?} b {:?} c {:?}", a.members(), b.members(), c.members());
    for m in [a, b, c] {
        m.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seed_name_is_resolved_again_every_reannounce_interval_so_a_changed_record_is_followed() {
    let net = Net::default();
    let (a, _) = member(&net, "a", 1);
    let (c, _) = member(&net, "c", 3);
    let dns = FakeDns::new();
    dns.set("seeds.test", &[1]);
    let mut config = Config::local();
    config.reannounce_interval = Duration::from_millis(300);
    let b = member_with_dns(&net, "b", 2, config, &dns);
    within("the join", b.join(["seeds.test:7946"])).await.unwrap();
    let after_join = dns.lookups.load(Ordering::Relaxed);
    assert_eq!(after_join, 1);
    assert!(eventually(|| state_of(&b, "a") == Some(MemberState::Alive)).await);
    // The name now lists c, which knows nobody: only a fresh lookup can lead b to it.
    dns.set("seeds.test", &[3]);
    assert!(
        eventually(|| state_of(&c, "b") == Some(MemberState::Alive)).await,
        "c never heard of b: {} lookups, c sees {:?}",
        dns.lookups.load(Ordering::Relaxed),
        c.members()
    );
    assert!(dns.lookups.load(Ordering::Relaxed) > after_join);
    for m in [a, b, c] {
        m.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_whose_every_seed_name_fails_to_resolve_says_which_and_why() {
    let net = Net::default();
    let dns = FakeDns::new();
    let b = member_with_dns(&net, "b", 2, Config::local(), &dns);
    let err = within("the join", b.join(["nowhere.test:7946"])).await.unwrap_err();
    match &err {
        ClusterError::Resolve { seed, source } => {
            assert_eq!(seed, "udp://nowhere.test:7946");
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected a resolve error, got {other:?}"),
    }
    assert!(std::error::Error::source(&err).is_some());
    // One address among the seeds: the join goes on through it (and fails only if nobody answers).
    let (a, _) = member(&net, "a", 1);
    within("the join", b.join(["nowhere.test:7946".to_string(), addr(1).to_string()])).await.unwrap();
    assert!(eventually(|| state_of(&b, "a") == Some(MemberState::Alive)).await);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_that_is_no_seed_is_refused_before_anything_is_sent() {
    let net = Net::default();
    let dns = FakeDns::new();
    let b = member_with_dns(&net, "b", 2, Config::local(), &dns);
    for bad in ["seeds.test", "seeds.test:99999", "udp://:1", ""] {
        let err = within("the join", b.join([bad])).await.unwrap_err();
        assert!(matches!(&err, ClusterError::InvalidSeed(t) if t == bad), "{bad:?}: {err:?}");
    }
    assert_eq!(dns.lookups.load(Ordering::Relaxed), 0);
    assert_eq!(b.metrics().stats.packets_sent, 0);
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_that_lists_hundreds_of_addresses_makes_the_join_ask_at_most_64() {
    let net = Net::default();
    let dns = FakeDns::new();
    let hosts: Vec<u8> = (10..=250).collect();
    dns.set("wide.test", &hosts);
    let b = member_with_dns(&net, "b", 2, Config::local(), &dns);
    let err = within("the join", b.join(["wide.test:7946"])).await.unwrap_err();
    match err {
        ClusterError::JoinFailed { seeds } => assert_eq!(seeds.len(), crate::seeds::MAX_ADDRS_PER_NAME),
        other => panic!("nobody is there to answer: {other:?}"),
    }
    assert_eq!(b.metrics().stats.push_pulls_sent, crate::seeds::MAX_ADDRS_PER_NAME as u64);
    b.shutdown().await;
}

// ----- Operations ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_member_forced_out_is_reported_left_by_every_member_and_a_live_one_is_refused() {
    let net = Net::default();
    let (a, _) = member(&net, "a", 1);
    let (b, _) = member(&net, "b", 2);
    let (c, c_mem) = member(&net, "c", 3);
    within("join", a.join(&[b.local_addr(), c.local_addr()])).await.unwrap();
    assert!(eventually(|| [&a, &b, &c].iter().all(|m| m.alive_members().len() == 2)).await);
    let mut b_events = b.events();

    let refused = a.force_leave(&c.name());
    assert!(
        matches!(refused, Err(ClusterError::Command(CommandError::NotFailed(ref id))) if *id == c.name()),
        "a live member is not forced out: {refused:?}"
    );
    c_mem.plug(false);
    assert!(eventually(|| [&a, &b].iter().all(|m| state_of(m, "c") == Some(MemberState::Dead))).await);
    a.force_leave(&c.name()).unwrap();
    assert!(eventually(|| [&a, &b].iter().all(|m| state_of(m, "c") == Some(MemberState::Left))).await);
    let left = within("b reports c left", async {
        while let Some(e) = b_events.next().await {
            if matches!(&e, Event::Left { id, .. } if id.as_str() == "c") {
                return true;
            }
        }
        false
    })
    .await;
    assert!(left, "b, which only heard of it, reports the departure");
    assert_eq!(a.metrics().stats.forced_leaves, 1);
    for m in [a, b, c] {
        m.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_are_selected_by_the_tags_they_set_and_a_tag_change_moves_a_member_between_selections() {
    let net = Net::default();
    let tagged = |name: &str, host: u8, pairs: &[(&str, &str)]| {
        let tags = crate::Tags::from_pairs(pairs.iter().copied()).unwrap();
        member_built(&net, host, Cluster::builder(name).unwrap().tags(&tags))
    };
    let watcher = tagged("watcher", 1, &[]);
    let web1 = tagged("web-1", 2, &[("role", "web"), ("dc", "eu-west")]);
    let web2 = tagged("web-2", 3, &[("role", "web"), ("dc", "us-east")]);
    let db = tagged("db-1", 4, &[("role", "db"), ("dc", "eu-west")]);
    within("join", watcher.join(&[web1.local_addr(), web2.local_addr(), db.local_addr()])).await.unwrap();
    assert!(eventually(|| watcher.alive_members().len() == 3).await);

    let names = |filter: &crate::MemberFilter| {
        let mut names: Vec<String> =
            watcher.members_matching(filter).iter().map(|m| m.id.as_str().to_string()).collect();
        names.sort();
        names
    };
    let web = crate::MemberFilter::new().tag("role", "web");
    let eu = crate::MemberFilter::new().tag("dc", "eu-*").states(&[MemberState::Alive]);
    assert_eq!(names(&web), ["web-1", "web-2"]);
    assert_eq!(names(&eu), ["db-1", "web-1"]);

    let mut tags = web2.tags();
    assert_eq!(tags.get("dc"), Some("us-east"));
    tags.insert("dc", "eu-north").unwrap();
    tags.remove("role");
    web2.set_tags(&tags).unwrap();
    assert!(eventually(|| names(&eu) == ["db-1", "web-1", "web-2"]).await, "the new tags reach the watcher");
    assert_eq!(names(&web), ["web-1"]);
    for m in [watcher, web1, web2, db] {
        m.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_member_is_retuned_in_place_and_a_setting_it_cannot_change_is_refused_by_name() {
    let net = Net::default();
    let (a, _) = member(&net, "a", 1);
    let mut slower = a.config();
    slower.probe_interval = Duration::from_millis(900);
    a.set_config(slower.clone()).unwrap();
    assert_eq!(a.config(), slower);
    let mut bigger = slower.clone();
    bigger.max_packet_size = 9_000;
    let refused = a.set_config(bigger);
    assert!(matches!(refused, Err(ClusterError::Config(ref e)) if e.field == "max_packet_size"), "{refused:?}");
    assert_eq!(a.config(), slower, "nothing changed");
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_refused_by_the_admission_policy_is_never_added_and_its_join_fails() {
    let net = Net::default();
    let in_cluster = |name: &str, host: u8, cluster: &str| {
        let builder = Cluster::builder(name)
            .unwrap()
            .tags(&crate::Tags::from_pairs([("cluster", cluster)]).unwrap())
            .admission(|m| {
                m.meta
                    .and_then(|meta| crate::Tags::from_metadata(meta).ok())
                    .is_some_and(|t| t.get("cluster") == Some("blue"))
            });
        member_built(&net, host, builder)
    };
    let a = in_cluster("a", 1, "blue");
    let b = in_cluster("b", 2, "blue");
    let red = in_cluster("red", 3, "red");
    within("join", b.join(&[a.local_addr()])).await.unwrap();
    let refused = within("join", red.join(&[a.local_addr(), b.local_addr()])).await;
    assert!(matches!(refused, Err(ClusterError::JoinFailed { .. })), "{refused:?}");
    assert!(eventually(|| a.alive_members().len() == 1 && b.alive_members().len() == 1).await);
    assert!(a.members().iter().all(|m| m.id.as_str() != "red"), "never added");
    assert!(red.members().is_empty(), "took nobody from the seeds");
    assert!(a.metrics().stats.members_refused > 0);
    for m in [a, b, red] {
        m.shutdown().await;
    }
}

// ----- Application state ---------------------------------------------------------------------------

/// The next application state `who` sends, with its join flag.
async fn state_from(events: &mut crate::EventStream, who: &str) -> Option<(Vec<u8>, bool)> {
    while let Some(e) = events.next().await {
        if let Event::RemoteState { from, join, state } = e {
            if from.as_str() == who {
                return Some((state, join));
            }
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joiner_and_its_seed_exchange_application_state_with_the_join_and_a_later_change_follows() {
    let net = Net::default();
    let (a, _) = member(&net, "a", 1);
    let (b, _) = member(&net, "b", 2);
    a.set_local_state(b"a: schema 7").unwrap();
    b.set_local_state(b"b: schema 7").unwrap();
    let (mut a_events, mut b_events) = (a.events(), b.events());
    within("join", b.join(&[a.local_addr()])).await.unwrap();
    let at_b = within("b gets a's state", state_from(&mut b_events, "a")).await;
    let at_a = within("a gets b's state", state_from(&mut a_events, "b")).await;
    assert_eq!(at_b, Some((b"a: schema 7".to_vec(), true)), "with the answer to b's join");
    assert_eq!(at_a, Some((b"b: schema 7".to_vec(), true)), "with b's join request");

    // A change goes out with the next push-pull between the two (every push_pull_interval).
    a.set_local_state(b"a: schema 8").unwrap();
    let next = within("the next push-pull", async {
        loop {
            match state_from(&mut b_events, "a").await {
                Some((state, _)) if state == b"a: schema 8" => return Some(state),
                Some(_) => continue,
                None => return None,
            }
        }
    })
    .await;
    assert!(next.is_some());
    assert!(b.metrics().stats.remote_states_received >= 2);
    let too_large = vec![0; a.config().max_reliable_size / 2 + 1];
    assert!(matches!(a.set_local_state(&too_large), Err(ClusterError::Command(CommandError::TooLarge { .. }))));
    for m in [a, b] {
        m.shutdown().await;
    }
}

// ----- Coordinates and the ack payload -----------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_with_coordinates_on_estimate_each_others_round_trip_and_see_each_others_ack_payload() {
    let net = Net::default();
    let (a, _) = member(&net, "a", 1);
    let (b, _) = member(&net, "b", 2);
    let (c, _) = member(&net, "c", 3);
    for m in [&a, &b, &c] {
        m.set_coordinates(true).unwrap();
    }
    c.set_ack_payload(b"load=0.25").unwrap();
    let mut a_events = a.events();
    within("join", a.join(&[b.local_addr(), c.local_addr()])).await.unwrap();
    let payload = within("a probes c", async {
        while let Some(e) = a_events.next().await {
            if let Event::PingComplete { id, payload, .. } = e {
                if id.as_str() == "c" {
                    return Some(payload);
                }
            }
        }
        None
    })
    .await;
    assert_eq!(payload.as_deref(), Some(&b"load=0.25"[..]));
    assert!(eventually(|| a.nearest(5).len() == 2).await, "a holds coordinates of both others");
    let names: Vec<String> = a.nearest(5).into_iter().map(|(n, _)| n.to_string()).collect();
    assert!(names.contains(&"b".to_string()) && names.contains(&"c".to_string()), "{names:?}");
    assert!(a.estimate_rtt(&c.name()).is_some() && a.coordinate().is_some_and(|c| c.is_valid()));
    a.set_coordinates(false).unwrap();
    assert!(a.estimate_rtt(&c.name()).is_none() && a.nearest(5).is_empty());
    for m in [a, b, c] {
        m.shutdown().await;
    }
}

// ----- Queries ---------------------------------------------------------------------------------------

/// Answers every query `cluster` is handed with `answer`, until the member shuts down.
fn answer_queries(cluster: &Cluster, answer: &'static [u8]) -> tokio::task::JoinHandle<()> {
    let (cluster, mut events) = (cluster.clone(), cluster.events());
    tokio::spawn(async move {
        while let Some(e) = events.next().await {
            if let Event::Query { inquiry, .. } = e {
                let _ = cluster.respond(&inquiry, answer);
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_collects_an_ack_and_a_response_from_every_member_its_filter_selects_and_ends_at_its_deadline() {
    let net = Net::default();
    let tagged = |name: &str, host: u8, role: &str| {
        let tags = crate::Tags::from_pairs([("role", role)]).unwrap();
        member_built(&net, host, Cluster::builder(name).unwrap().tags(&tags))
    };
    let a = tagged("a", 1, "web");
    let b = tagged("b", 2, "web");
    let c = tagged("c", 3, "db");
    let answering: Vec<_> =
        [(&a, &b"a here"[..]), (&b, b"b here"), (&c, b"c here")].iter().map(|(m, r)| answer_queries(m, r)).collect();
    within("join", a.join(&[b.local_addr(), c.local_addr()])).await.unwrap();
    assert!(eventually(|| [&a, &b, &c].iter().all(|m| m.alive_members().len() == 2)).await);

    let params =
        crate::QueryParams::new().filter(crate::MemberFilter::new().tag("role", "web")).timeout(Duration::from_secs(2));
    let started = std::time::Instant::now();
    let outcome = within("the deadline", a.query("who", b"", params).unwrap().collect()).await;
    let mut acks: Vec<String> = outcome.acks.iter().map(ToString::to_string).collect();
    acks.sort();
    let mut responses: Vec<(String, Vec<u8>)> =
        outcome.responses.iter().map(|(n, p)| (n.to_string(), p.clone())).collect();
    responses.sort();
    assert_eq!(acks, ["a", "b"], "the web members, the asker included");
    assert_eq!(responses, [("a".to_string(), b"a here".to_vec()), ("b".to_string(), b"b here".to_vec())]);
    assert!(started.elapsed() >= Duration::from_millis(1_900), "it ran to its deadline");
    assert_eq!(a.metrics().stats.queries_sent, 1);
    assert_eq!(c.metrics().stats.queries_received, 0, "c is not selected");
    for m in [a, b, c] {
        m.shutdown().await;
    }
    for t in answering {
        let _ = t.await;
    }
}
