//! Relays linked to each other on loopback: frames and WebRTC signals of members of different
//! relays cross the link with their sender stamped by its own relay; the link endpoint is closed
//! to relays without the key; a link comes back after a relay restarts, and after the path
//! between the relays blackholed for a while (a TCP proxy of the test's own in between).

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{bounded, eventually, http_get, next_binary, raw_client, RawClient};
use futures_util::SinkExt;
use shoal::relay::{decode_signal_frame, decode_ws_frame, encode_signal_frame, encode_ws_frame, SignalKind};
use shoal_relay::{BoundRelay, DropReason, LinkRefusal, Relay, RelayConfig, RelayHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

const LIMIT: Duration = Duration::from_secs(20);
/// How long a link may take to come up (first dial, or redial after a restart).
const LINK_WAIT: Duration = Duration::from_secs(10);
const KEY: &str = "the fleet's relay key, 32 bytes";
const OTHER_KEY: &str = "another fleet's key, 30 bytes.";

fn fleet(key: &str, peers: &[SocketAddr]) -> RelayConfig {
    RelayConfig {
        relay_key: Some(key.into()),
        peer_relays: peers.iter().map(|p| format!("ws://{p}")).collect(),
        ..RelayConfig::default()
    }
}

/// A relay serving on the current runtime: its address, handle, and the task serving it.
struct Running {
    addr: SocketAddr,
    handle: RelayHandle,
    task: JoinHandle<std::io::Result<()>>,
}

fn serve(bound: BoundRelay) -> Running {
    let (addr, handle) = (bound.local_addr(), bound.handle());
    Running { addr, handle, task: tokio::spawn(bound.serve()) }
}

async fn start(config: RelayConfig) -> Running {
    serve(Relay::bind("127.0.0.1:0".parse().unwrap(), config).expect("bind relay"))
}

/// Binds `config` at `addr`, retrying while the port is still held (a relay that just stopped),
/// for a bounded time.
async fn bind_again(addr: SocketAddr, config: RelayConfig) -> BoundRelay {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match Relay::bind(addr, config.clone()) {
            Ok(bound) => return bound,
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("bind {addr} again: {e}"),
        }
    }
}

/// A loopback port free for both TCP and UDP right now.
fn free_port() -> SocketAddr {
    Relay::bind("127.0.0.1:0".parse().unwrap(), RelayConfig::default()).expect("bind").local_addr()
}

async fn linked(a: &RelayHandle, b: &RelayHandle) -> bool {
    let a_to_b =
        |h: &RelayHandle, other: &RelayHandle| h.links().iter().any(|l| l.relay == other.public_addr() && l.up);
    eventually(LINK_WAIT, || a_to_b(a, b) && a_to_b(b, a)).await
}

async fn send(ws: &mut RawClient, frame: Vec<u8>) {
    ws.send(Message::Binary(Bytes::from(frame))).await.expect("send");
}

fn packet_to(relay: SocketAddr, peer: &str, packet: &[u8]) -> Vec<u8> {
    encode_ws_frame(&format!("relay://{relay}/{peer}"), packet).unwrap()
}

/// The next frame's source and packet.
async fn receive(ws: &mut RawClient) -> (String, Vec<u8>) {
    let frame = next_binary(ws).await.expect("a frame");
    let (source, packet) = decode_ws_frame(&frame).unwrap();
    (source.to_string(), packet.to_vec())
}

/// A TCP proxy on loopback to `target` that can stop forwarding, both ways and on every
/// connection (open or new), while it keeps every socket open: a path between two hosts that
/// starts dropping every packet, with no FIN or RST reaching either end. Dropped, it stops
/// everything it runs.
struct Proxy {
    addr: SocketAddr,
    forwarding: Arc<watch::Sender<bool>>,
    accepted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Proxy {
    async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let addr = listener.local_addr().unwrap();
        let forwarding = Arc::new(watch::channel(true).0);
        let accepted = Arc::new(AtomicUsize::new(0));
        let (on, count) = (forwarding.clone(), accepted.clone());
        let task = tokio::spawn(async move {
            // Dropped with this task when the proxy is: every pump stops, every socket closes.
            let mut pumps = JoinSet::new();
            while let Ok((inbound, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let Ok(outbound) = TcpStream::connect(target).await else { continue };
                let ((in_read, in_write), (out_read, out_write)) = (inbound.into_split(), outbound.into_split());
                pumps.spawn(pump(in_read, out_write, on.subscribe()));
                pumps.spawn(pump(out_read, in_write, on.subscribe()));
            }
        });
        Proxy { addr, forwarding, accepted, task }
    }

    /// Stops forwarding: what arrives stays in the sockets' buffers (or in a pump's hands).
    fn blackhole(&self) {
        self.forwarding.send_replace(false);
    }

    /// Forwards again, what was held first.
    fn forward(&self) {
        self.forwarding.send_replace(true);
    }

    /// TCP connections accepted so far (a relay's dials).
    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies `from` to `to` while forwarding is on; holds what it read (and an end of stream) while
/// it is off.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut forwarding: watch::Receiver<bool>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if forwarding.wait_for(|on| *on).await.is_err() {
            return;
        }
        let read = from.read(&mut buf).await;
        if forwarding.wait_for(|on| *on).await.is_err() {
            return;
        }
        match read {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
    let _ = to.shutdown().await;
}

/// `GET /relay-link` as an upgrade, with `header` as the link header: the status.
async fn link_request(relay: SocketAddr, header: Option<&str>) -> u16 {
    let mut tcp = TcpStream::connect(relay).await.expect("connect");
    let header = header.map(|h| format!("x-shoal-relay-link: {h}\r\n")).unwrap_or_default();
    let request = format!(
        "GET /relay-link HTTP/1.1\r\nHost: {relay}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{header}\r\n"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut head = vec![0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut head)).await.expect("an answer").unwrap();
    let text = String::from_utf8_lossy(&head[..n]).into_owned();
    text.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status line")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_for_a_member_of_a_linked_relay_arrives_with_the_sender_stamped_under_the_first_relay() {
    bounded(LIMIT, async {
        let b = start(fleet(KEY, &[])).await;
        let a = start(fleet(KEY, &[b.addr])).await;
        assert!(linked(&a.handle, &b.handle).await, "a: {:?}, b: {:?}", a.handle.links(), b.handle.links());
        let mut alice = raw_client(a.addr, "alice").await;
        let mut bob = raw_client(b.addr, "bob").await;
        send(&mut alice, packet_to(b.addr, "bob", b"\x01ping")).await;
        assert_eq!(receive(&mut bob).await, (format!("relay://{}/alice", a.addr), b"\x01ping".to_vec()));
        // Back over the same link, which B did not dial.
        send(&mut bob, packet_to(a.addr, "alice", b"\x01ack")).await;
        assert_eq!(receive(&mut alice).await, (format!("relay://{}/bob", b.addr), b"\x01ack".to_vec()));
        let (sa, sb) = (a.handle.stats(), b.handle.stats());
        assert_eq!((sa.link_out.frames, sa.link_in.frames), (1, 1));
        assert_eq!((sb.link_out.frames, sb.link_in.frames), (1, 1));
        assert_eq!(sa.dropped_total() + sb.dropped_total(), 0);
        let (_, metrics) = http_get(a.addr, "/metrics").await;
        assert!(metrics.contains("\nshoal_relay_links 1\n"), "{metrics}");
        assert!(metrics.contains(&format!("shoal_relay_link_up{{relay=\"{}\"}} 1\n", b.addr)), "{metrics}");
        let out = format!("shoal_relay_link_frames_total{{relay=\"{}\",direction=\"out\"}} 1\n", b.addr);
        assert!(metrics.contains(&out), "{metrics}");
        assert!(metrics.contains("shoal_relay_forwarded_frames_total{path=\"link_in\"} 1\n"), "{metrics}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webrtc_signal_crosses_the_link_to_a_member_of_the_other_relay() {
    bounded(LIMIT, async {
        let b = start(fleet(KEY, &[])).await;
        let a = start(fleet(KEY, &[b.addr])).await;
        assert!(linked(&a.handle, &b.handle).await);
        let mut alice = raw_client(a.addr, "alice").await;
        let mut bob = raw_client(b.addr, "bob").await;
        let offer = encode_signal_frame(&format!("relay://{}/bob", b.addr), SignalKind::Offer, b"{sdp}").unwrap();
        send(&mut alice, offer).await;
        let got = next_binary(&mut bob).await.expect("the offer");
        let alice_addr = format!("relay://{}/alice", a.addr);
        assert_eq!(decode_signal_frame(&got).unwrap(), (alice_addr.as_str(), SignalKind::Offer, &b"{sdp}"[..]));
        let answer = encode_signal_frame(&alice_addr, SignalKind::Answer, b"{sdp'}").unwrap();
        send(&mut bob, answer).await;
        let got = next_binary(&mut alice).await.expect("the answer");
        let bob_addr = format!("relay://{}/bob", b.addr);
        assert_eq!(decode_signal_frame(&got).unwrap(), (bob_addr.as_str(), SignalKind::Answer, &b"{sdp'}"[..]));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_link_endpoint_answers_404_without_a_relay_key_and_refuses_a_wrong_key_with_403() {
    bounded(LIMIT, async {
        let open = start(RelayConfig::default()).await;
        assert_eq!(http_get(open.addr, "/relay-link").await.0, 404);
        assert_eq!(link_request(open.addr, None).await, 404);
        let keyed = start(fleet(KEY, &[])).await;
        assert_eq!(link_request(keyed.addr, None).await, 400, "no link header");
        let forged = format!("1 127.0.0.1:1 {} {}", "00".repeat(16), "00".repeat(32));
        assert_eq!(link_request(keyed.addr, Some(&forged)).await, 403, "a gate made without the key");
        // A relay with another key dials it: refused, counted on both sides, never linked.
        let stranger = start(fleet(OTHER_KEY, &[keyed.addr])).await;
        let refused = || {
            keyed.handle.stats().link_refused(LinkRefusal::WrongKey) >= 2
                && stranger.handle.stats().link_dial_failures >= 1
        };
        assert!(eventually(LINK_WAIT, refused).await, "{:?} {:?}", keyed.handle.stats(), stranger.handle.stats());
        assert_eq!(keyed.handle.stats().link_refused(LinkRefusal::BadRequest), 1);
        assert_eq!((keyed.handle.stats().links, stranger.handle.stats().links), (0, 0));
        assert!(keyed.handle.links().is_empty());
        let (_, metrics) = http_get(keyed.addr, "/metrics").await;
        assert!(metrics.contains("shoal_relay_link_refused_total{reason=\"wrong_key\"}"), "{metrics}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_relay_restarts_on_the_same_port_the_link_comes_back_and_frames_flow_again() {
    bounded(Duration::from_secs(40), async {
        let b = start(fleet(KEY, &[])).await;
        let a = start(fleet(KEY, &[b.addr])).await;
        assert!(linked(&a.handle, &b.handle).await);
        let mut alice = raw_client(a.addr, "alice").await;
        let mut bob = raw_client(b.addr, "bob").await;
        send(&mut alice, packet_to(b.addr, "bob", b"\x01before")).await;
        assert_eq!(receive(&mut bob).await.1, b"\x01before");

        b.handle.shutdown();
        b.task.await.expect("b stopped").expect("b served");
        assert!(eventually(LINK_WAIT, || a.handle.stats().links == 0).await, "A sees the link drop");
        send(&mut alice, packet_to(b.addr, "bob", b"\x01while-down")).await;
        assert!(eventually(LINK_WAIT, || a.handle.stats().dropped(DropReason::LinkDown) == 1).await);

        let b = serve(bind_again(b.addr, fleet(KEY, &[])).await);
        assert!(linked(&a.handle, &b.handle).await, "the link comes back: {:?}", a.handle.stats());
        let mut bob = raw_client(b.addr, "bob").await;
        send(&mut alice, packet_to(b.addr, "bob", b"\x01after")).await;
        assert_eq!(receive(&mut bob).await, (format!("relay://{}/alice", a.addr), b"\x01after".to_vec()));
        assert_eq!(a.handle.stats().links_established, 2);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_that_dial_each_other_keep_one_link_and_frames_cross_both_ways() {
    bounded(LIMIT, async {
        let (pa, pb) = (free_port(), free_port());
        let a = serve(bind_again(pa, fleet(KEY, &[pb])).await);
        let b = serve(bind_again(pb, fleet(KEY, &[pa])).await);
        assert!(linked(&a.handle, &b.handle).await);
        let mut alice = raw_client(a.addr, "alice").await;
        let mut bob = raw_client(b.addr, "bob").await;
        for i in 0..20u8 {
            send(&mut alice, packet_to(b.addr, "bob", &[1, i])).await;
            send(&mut bob, packet_to(a.addr, "alice", &[2, i])).await;
        }
        for i in 0..20u8 {
            assert_eq!(receive(&mut bob).await.1, [1, i]);
            assert_eq!(receive(&mut alice).await.1, [2, i]);
        }
        let (sa, sb) = (a.handle.stats(), b.handle.stats());
        assert_eq!((sa.links, sb.links), (1, 1));
        assert_eq!(sa.dropped_total() + sb.dropped_total(), 0, "{sa:?} {sb:?}");
        let established = sa.links_established + sb.links_established;
        assert!(established <= 4, "each side registers its own link and the other's at most: {sa:?} {sb:?}");
        // The lower address's link stands on both sides: the same one.
        let a_dialed = a.addr.to_string() < b.addr.to_string();
        assert_eq!((a.handle.links()[0].dialed, b.handle.links()[0].dialed), (a_dialed, !a_dialed));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_linked_to_two_others_reaches_both_and_nothing_is_forwarded_a_second_hop() {
    bounded(LIMIT, async {
        let b = start(fleet(KEY, &[])).await;
        let c = start(fleet(KEY, &[])).await;
        let a = start(fleet(KEY, &[b.addr, c.addr])).await;
        assert!(linked(&a.handle, &b.handle).await && linked(&a.handle, &c.handle).await);
        let mut alice = raw_client(a.addr, "alice").await;
        let mut bob = raw_client(b.addr, "bob").await;
        let mut carol = raw_client(c.addr, "carol").await;
        send(&mut alice, packet_to(b.addr, "bob", b"\x01to-b")).await;
        send(&mut alice, packet_to(c.addr, "carol", b"\x01to-c")).await;
        assert_eq!(receive(&mut bob).await, (format!("relay://{}/alice", a.addr), b"\x01to-b".to_vec()));
        assert_eq!(receive(&mut carol).await, (format!("relay://{}/alice", a.addr), b"\x01to-c".to_vec()));
        // B has no link to C: A does not carry B's frames on.
        send(&mut bob, packet_to(c.addr, "carol", b"\x01via-a?")).await;
        let dropped = || b.handle.stats().dropped(DropReason::UnknownDestination) == 1;
        assert!(eventually(Duration::from_secs(5), dropped).await);
        send(&mut alice, packet_to(c.addr, "carol", b"\x01next")).await;
        assert_eq!(receive(&mut carol).await.1, b"\x01next", "nothing from B arrived before it");
        assert_eq!(a.handle.stats().links, 2);
    })
    .await;
}

/// How long a relay may take, from the moment its link stops carrying anything, to close the link
/// and dial again: nothing received for the link's idle timeout (4 s, so 3-4 s after the last
/// ping or pong got through), the closing (at most 0.5 s waiting for the peer's close frame), the
/// first backoff (at most 100 ms), and slack for a loaded machine.
const HALF_OPEN_NOTICED: Duration = Duration::from_secs(6);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_whose_peer_stops_answering_is_closed_and_redialled_within_6_seconds() {
    bounded(Duration::from_secs(40), async {
        let b = start(fleet(KEY, &[])).await;
        let proxy = Proxy::start(b.addr).await;
        let a = start(fleet(KEY, &[proxy.addr])).await;
        assert!(linked(&a.handle, &b.handle).await, "a: {:?}, b: {:?}", a.handle.links(), b.handle.links());
        let mut alice = raw_client(a.addr, "alice").await;
        let mut bob = raw_client(b.addr, "bob").await;
        send(&mut alice, packet_to(b.addr, "bob", b"\x01before")).await;
        assert_eq!(receive(&mut bob).await, (format!("relay://{}/alice", a.addr), b"\x01before".to_vec()));
        send(&mut bob, packet_to(a.addr, "alice", b"\x01ack")).await;
        assert_eq!(receive(&mut alice).await, (format!("relay://{}/bob", b.addr), b"\x01ack".to_vec()));
        assert_eq!(proxy.accepted(), 1);

        // The path goes silent both ways; every socket stays open.
        proxy.blackhole();
        let cut = Instant::now();
        let up =
            |h: &RelayHandle, other: &RelayHandle| h.links().iter().any(|l| l.relay == other.public_addr() && l.up);
        // When each side first saw it: A closed its link, A dialed again, B closed its link.
        let mut seen: [Option<Duration>; 3] = [None; 3];
        let all_seen = eventually(HALF_OPEN_NOTICED, || {
            let now = [!up(&a.handle, &b.handle), proxy.accepted() >= 2, !up(&b.handle, &a.handle)];
            for (when, now) in seen.iter_mut().zip(now) {
                if now && when.is_none() {
                    *when = Some(cut.elapsed());
                }
            }
            seen.iter().all(Option::is_some)
        })
        .await;
        eprintln!(
            "half-open link, after the cut: A closed it {:?}, dialed again {:?}; B closed it {:?}",
            seen[0], seen[1], seen[2]
        );
        assert!(
            all_seen,
            "within {HALF_OPEN_NOTICED:?}: {seen:?}; A: {:?}; B: {:?}",
            a.handle.links(),
            b.handle.links()
        );

        // A frame for B's member now is dropped and counted, not written into a dead socket.
        send(&mut alice, packet_to(b.addr, "bob", b"\x01into-the-void")).await;
        let counted = || a.handle.stats().dropped(DropReason::LinkDown) == 1;
        assert!(eventually(Duration::from_secs(5), counted).await, "{:?}", a.handle.stats());
        assert!(!up(&a.handle, &b.handle), "the new dial cannot get through the blackhole");
        assert_eq!(a.handle.stats().dropped_total(), 1, "nothing else was lost: {:?}", a.handle.stats());
        assert_eq!(b.handle.stats().dropped_total(), 0, "{:?}", b.handle.stats());

        // The path heals: the link comes back through it and frames cross again, both ways.
        proxy.forward();
        assert!(
            linked(&a.handle, &b.handle).await,
            "the link comes back: {:?} {:?}",
            a.handle.stats(),
            b.handle.stats()
        );
        send(&mut alice, packet_to(b.addr, "bob", b"\x01after")).await;
        assert_eq!(receive(&mut bob).await, (format!("relay://{}/alice", a.addr), b"\x01after".to_vec()));
        send(&mut bob, packet_to(a.addr, "alice", b"\x01ack-after")).await;
        assert_eq!(receive(&mut alice).await, (format!("relay://{}/bob", b.addr), b"\x01ack-after".to_vec()));
        assert_eq!(a.handle.stats().links_established, 2, "{:?}", a.handle.stats());
        assert_eq!(a.handle.stats().dropped_total(), 1, "{:?}", a.handle.stats());
        a.handle.shutdown();
        b.handle.shutdown();
        a.task.await.expect("a stopped").expect("a served");
        b.task.await.expect("b stopped").expect("b served");
    })
    .await;
}
