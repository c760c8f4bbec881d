//! The TCP transport on real loopback sockets, including peers that break the protocol.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use shoal::{Addr, Received, Transport, TransportError};
use shoal_tcp::{TcpOptions, TcpTransport, HANDSHAKE_MAGIC};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

/// Every test finishes within this, or fails.
async fn bounded<T>(f: impl Future<Output = T>) -> T {
    timeout(Duration::from_secs(10), f).await.expect("test timed out")
}

async fn bind(options: TcpOptions) -> Arc<TcpTransport> {
    TcpTransport::bind("127.0.0.1:0".parse().unwrap(), options).await.expect("bind loopback")
}

async fn recv(t: &TcpTransport) -> (Received, Vec<u8>) {
    let mut buf = Vec::new();
    let got = timeout(Duration::from_secs(5), t.recv(&mut buf)).await.expect("a frame in time").expect("recv");
    (got, buf)
}

async fn nothing_arrives(t: &TcpTransport) {
    assert!(timeout(Duration::from_millis(100), t.recv(&mut Vec::new())).await.is_err(), "no frame expected");
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

fn handshake(addr: &str) -> Vec<u8> {
    frame(&[HANDSHAKE_MAGIC, addr.as_bytes()].concat())
}

/// True once the peer closed the connection (EOF or reset) within a second.
async fn disconnected(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    matches!(timeout(Duration::from_secs(1), stream.read(&mut buf)).await, Ok(Ok(0) | Err(_)))
}

async fn eventually(check: impl FnMut() -> bool) -> bool {
    shoal_testkit::eventually(Duration::from_secs(2), check).await
}

fn tcp(sa: SocketAddr) -> Addr {
    Addr::tcp(sa)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_arrives_whole_with_the_advertised_address_as_sender() {
    bounded(async {
        let advertised = Addr::parse("tcp://127.0.0.1:7000").unwrap();
        let a = bind(TcpOptions { advertise: Some(advertised.clone()), ..TcpOptions::default() }).await;
        let b = bind(TcpOptions::default()).await;
        assert_eq!(a.local_addr(), advertised);
        assert_eq!(b.local_addr(), tcp(b.local_socket_addr()));
        a.send_reliable(&b.local_addr(), b"push-pull state").await.unwrap();
        let (got, bytes) = recv(&b).await;
        assert_eq!(got, Received { from: advertised, reliable: true });
        assert_eq!(bytes, b"push-pull state");
        assert_eq!((a.counters().packets_out, a.counters().bytes_out), (1, 15));
        assert_eq!((b.counters().packets_in, b.counters().bytes_in), (1, 15));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_sent_to_the_advertised_address_arrives_back() {
    bounded(async {
        let a = bind(TcpOptions::default()).await;
        let b = bind(TcpOptions::default()).await;
        a.send_reliable(&b.local_addr(), b"request").await.unwrap();
        let (got, _) = recv(&b).await;
        b.send_reliable(&got.from, b"reply").await.unwrap();
        let (back, bytes) = recv(&a).await;
        assert_eq!((back.from, bytes.as_slice()), (b.local_addr(), &b"reply"[..]));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reliable_frames_reach_udp_addresses_on_the_same_port() {
    bounded(async {
        let a = bind(TcpOptions::default()).await;
        let b = bind(TcpOptions::default()).await;
        let member = Addr::udp(b.local_socket_addr());
        a.send_reliable(&member, b"to a udp member").await.unwrap();
        assert_eq!(recv(&b).await.1, b"to a udp member");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_longer_than_max_frame_disconnects_the_peer_and_is_counted() {
    bounded(async {
        let b = bind(TcpOptions { max_frame: 1_000, ..TcpOptions::default() }).await;
        for announced in [1_001u32, u32::MAX] {
            let mut raw = TcpStream::connect(b.local_socket_addr()).await.unwrap();
            raw.write_all(&handshake("tcp://127.0.0.1:9")).await.unwrap();
            // Only the length: a reader that trusted it would allocate up to 4 GiB.
            raw.write_all(&announced.to_be_bytes()).await.unwrap();
            assert!(disconnected(&mut raw).await, "peer announcing {announced} bytes was not disconnected");
        }
        assert!(eventually(|| b.counters().dropped_in == 2).await, "{:?}", b.counters());
        nothing_arrives(&b).await;
        // Others are unaffected.
        let a = bind(TcpOptions::default()).await;
        a.send_reliable(&b.local_addr(), &[1u8; 1_000]).await.unwrap();
        assert_eq!(recv(&b).await.1.len(), 1_000);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbage_handshake_is_rejected_and_counted() {
    bounded(async {
        let b = bind(TcpOptions::default()).await;
        let attempts: Vec<Vec<u8>> = vec![
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            frame(b"SHOAL-TCP/9 tcp://127.0.0.1:9"),
            handshake("tcp://not-an-address"),
            handshake(&format!("rtc://{}", "x".repeat(600))),
        ];
        for bytes in &attempts {
            let mut raw = TcpStream::connect(b.local_socket_addr()).await.unwrap();
            raw.write_all(bytes).await.unwrap();
            // A well-formed frame after a bad handshake must not be delivered either.
            let _ = raw.write_all(&frame(b"smuggled")).await;
            assert!(disconnected(&mut raw).await);
        }
        let n = attempts.len() as u64;
        assert!(eventually(|| b.counters().dropped_in == n).await, "{:?}", b.counters());
        nothing_arrives(&b).await;
        assert_eq!(b.connection_stats().accepted, n);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_sends_its_handshake_is_dropped_after_the_io_timeout() {
    bounded(async {
        let b = bind(TcpOptions { io_timeout: Duration::from_millis(200), ..TcpOptions::default() }).await;
        let mut raw = TcpStream::connect(b.local_socket_addr()).await.unwrap();
        raw.write_all(&[0, 0]).await.unwrap(); // half a header, then silence
        assert!(disconnected(&mut raw).await);
        assert!(eventually(|| b.counters().dropped_in == 1 && b.connection_stats().inbound_open == 0).await);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_to_one_peer_share_one_connection() {
    bounded(async {
        let a = bind(TcpOptions::default()).await;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let to = tcp(listener.local_addr().unwrap());
        let sender = tokio::spawn({
            let (a, to) = (a.clone(), to.clone());
            async move {
                for i in 0..100u32 {
                    a.send_reliable(&to, &i.to_be_bytes()).await.unwrap();
                }
            }
        });
        let (mut conn, _) = listener.accept().await.unwrap();
        let mut expected = handshake(a.local_addr().as_str());
        for i in 0..100u32 {
            expected.extend_from_slice(&frame(&i.to_be_bytes()));
        }
        let mut wire = vec![0u8; expected.len()];
        conn.read_exact(&mut wire).await.unwrap();
        assert_eq!(wire, expected, "handshake then 100 frames, in order");
        sender.await.unwrap();
        assert!(timeout(Duration::from_millis(200), listener.accept()).await.is_err(), "a second connection");
        assert_eq!(a.connection_stats().dialled, 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_senders_to_one_peer_open_one_connection_and_never_interleave_frames() {
    bounded(async {
        let a = bind(TcpOptions::default()).await;
        let b = bind(TcpOptions::default()).await;
        let mut tasks = Vec::new();
        for t in 0..10u8 {
            let (a, to) = (a.clone(), b.local_addr());
            tasks.push(tokio::spawn(async move {
                for i in 0..50u8 {
                    a.send_reliable(&to, &[t; 3_000][..2_000 + usize::from(i)]).await.unwrap();
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        for _ in 0..500 {
            let (_, bytes) = recv(&b).await;
            assert!(bytes.len() >= 2_000 && bytes.iter().all(|&x| x == bytes[0]), "a mixed-up frame");
        }
        assert_eq!(a.connection_stats().dialled, 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_mebibyte_frame_round_trips() {
    bounded(async {
        let a = bind(TcpOptions::default()).await;
        let b = bind(TcpOptions::default()).await;
        let big: Vec<u8> = (0..2u32 << 20).map(|i| (i % 251) as u8).collect();
        a.send_reliable(&b.local_addr(), &big).await.unwrap();
        let (got, bytes) = recv(&b).await;
        assert!(bytes == big, "forward frame differs");
        b.send_reliable(&got.from, &bytes).await.unwrap();
        let (_, back) = recv(&a).await;
        assert!(back == big, "returned frame differs");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_sends_are_refused_before_connecting() {
    bounded(async {
        let a = bind(TcpOptions { max_frame: 1_000, ..TcpOptions::default() }).await;
        let b = bind(TcpOptions::default()).await;
        let r = a.send_reliable(&b.local_addr(), &[0u8; 1_001]).await;
        assert!(matches!(r, Err(TransportError::TooLarge { size: 1_001, max: 1_000 })), "{r:?}");
        assert_eq!(a.connection_stats().dialled, 0);
        assert_eq!(a.counters().send_errors, 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_a_peer_sends_back_on_our_connection_are_received() {
    bounded(async {
        let a = bind(TcpOptions::default()).await;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dialled = Addr::udp(listener.local_addr().unwrap());
        a.send_reliable(&dialled, b"hi").await.unwrap();
        let (mut conn, _) = listener.accept().await.unwrap();
        conn.write_all(&frame(b"answer on your connection")).await.unwrap();
        let (got, bytes) = recv(&a).await;
        assert_eq!((got.from, bytes.as_slice()), (dialled, &b"answer on your connection"[..]));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_is_closed_and_the_next_send_reconnects() {
    bounded(async {
        let idle = TcpOptions { idle_timeout: Duration::from_millis(200), ..TcpOptions::default() };
        let a = bind(idle.clone()).await;
        let b = bind(idle).await;
        a.send_reliable(&b.local_addr(), b"one").await.unwrap();
        recv(&b).await;
        assert_eq!(a.connection_stats().outbound_open, 1);
        let closed = eventually(|| a.connection_stats().outbound_open == 0 && b.connection_stats().inbound_open == 0);
        assert!(closed.await, "{:?} {:?}", a.connection_stats(), b.connection_stats());
        a.send_reliable(&b.local_addr(), b"two").await.unwrap();
        assert_eq!(recv(&b).await.1, b"two");
        assert_eq!(a.connection_stats().dialled, 2);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_after_the_peer_restarted_reaches_the_new_listener() {
    bounded(async {
        let a = bind(TcpOptions::default()).await;
        let b = bind(TcpOptions::default()).await;
        let port = b.local_socket_addr();
        a.send_reliable(&b.local_addr(), b"before").await.unwrap();
        recv(&b).await;
        b.close().await;
        drop(b);
        let b2 = TcpTransport::bind(port, TcpOptions::default()).await.expect("port free after close");
        // The first write may land on the dead connection before its reader notices; the
        // transport then reconnects and retries once.
        let mut delivered = false;
        for _ in 0..3 {
            if a.send_reliable(&tcp(port), b"after").await.is_ok() {
                if let Ok(Ok(_)) = timeout(Duration::from_millis(500), b2.recv(&mut Vec::new())).await {
                    delivered = true;
                    break;
                }
            }
        }
        assert!(delivered);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_stops_the_listener_the_connections_and_pending_receives() {
    bounded(async {
        let a = bind(TcpOptions::default()).await;
        let b = bind(TcpOptions::default()).await;
        a.send_reliable(&b.local_addr(), b"x").await.unwrap();
        recv(&b).await;
        let mut raw = TcpStream::connect(b.local_socket_addr()).await.unwrap();
        raw.write_all(&handshake("tcp://127.0.0.1:9")).await.unwrap();
        let pending = tokio::spawn({
            let b = b.clone();
            async move { b.recv(&mut Vec::new()).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        b.close().await;
        assert!(matches!(pending.await.unwrap(), Err(TransportError::Closed)));
        assert!(matches!(b.recv(&mut Vec::new()).await, Err(TransportError::Closed)));
        assert!(matches!(b.send_reliable(&a.local_addr(), b"x").await, Err(TransportError::Closed)));
        assert!(disconnected(&mut raw).await, "inbound connections are closed");
        assert!(TcpStream::connect(b.local_socket_addr()).await.is_err(), "listener stopped");
        assert!(eventually(|| a.connection_stats().outbound_open == 0).await, "the peer saw its connection end");
        assert!(eventually(|| b.connection_stats().inbound_open == 0).await);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_follow_the_scheme_and_the_mode() {
    bounded(async {
        let plain = bind(TcpOptions::default()).await;
        let tcp_only = bind(TcpOptions { best_effort: true, ..TcpOptions::default() }).await;
        let (t, u) = (Addr::parse("tcp://127.0.0.1:9").unwrap(), Addr::parse("udp://127.0.0.1:9").unwrap());
        let relay = Addr::parse("relay://relay.example/p").unwrap();
        assert!(plain.claims(&t, true) && plain.claims(&u, true) && !plain.claims(&relay, true));
        assert!(!plain.claims(&t, false) && !plain.claims(&u, false));
        assert!(tcp_only.claims(&t, false) && !tcp_only.claims(&u, false));
        assert!(matches!(plain.send(&t, b"x").await, Err(TransportError::Unreachable(_))));
        assert!(matches!(tcp_only.send(&u, b"x").await, Err(TransportError::Unreachable(_))));
        assert!(matches!(plain.send_reliable(&relay, b"x").await, Err(TransportError::Unreachable(_))));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn best_effort_packets_in_tcp_only_mode_arrive_as_frames() {
    bounded(async {
        let options = TcpOptions { best_effort: true, ..TcpOptions::default() };
        let a = bind(options.clone()).await;
        let b = bind(options).await;
        // The first packet goes out once a background connect completes.
        a.send(&b.local_addr(), b"first").await.unwrap();
        let (got, bytes) = recv(&b).await;
        assert_eq!((got.from, bytes.as_slice()), (a.local_addr(), &b"first"[..]));
        for i in 0..20u8 {
            a.send(&b.local_addr(), &[i]).await.expect("written on the open connection");
        }
        for i in 0..20u8 {
            assert_eq!(recv(&b).await.1, [i]);
        }
        assert_eq!(a.counters().packets_out, 21);
        assert_eq!(a.connection_stats().dialled, 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn best_effort_sends_to_a_dead_peer_never_hold_up_the_caller() {
    bounded(async {
        let a = bind(TcpOptions { best_effort: true, ..TcpOptions::default() }).await;
        let gone = tcp(std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap());
        let started = tokio::time::Instant::now();
        for _ in 0..50 {
            let _ = a.send(&gone, b"probe").await;
        }
        assert!(started.elapsed() < Duration::from_millis(500), "took {:?}", started.elapsed());
        assert!(eventually(|| a.counters().send_errors >= 49).await, "{:?}", a.counters());
        assert_eq!(a.counters().packets_out, 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_options_are_refused_at_bind() {
    bounded(async {
        let at = "127.0.0.1:0".parse().unwrap();
        let zero = TcpOptions { io_timeout: Duration::ZERO, ..TcpOptions::default() };
        assert_eq!(TcpTransport::bind(at, zero).await.unwrap_err().kind(), std::io::ErrorKind::InvalidInput);
        let empty = TcpOptions { max_frame: 0, ..TcpOptions::default() };
        assert_eq!(TcpTransport::bind(at, empty).await.unwrap_err().kind(), std::io::ErrorKind::InvalidInput);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_loopback_works_when_the_host_has_it() {
    bounded(async {
        let Ok(a) = TcpTransport::bind("[::1]:0".parse().unwrap(), TcpOptions::default()).await else { return };
        let b = TcpTransport::bind("[::1]:0".parse().unwrap(), TcpOptions::default()).await.unwrap();
        assert!(a.local_addr().as_str().starts_with("tcp://[::1]:"));
        a.send_reliable(&b.local_addr(), b"v6").await.unwrap();
        let (got, bytes) = recv(&b).await;
        assert_eq!((got.from, bytes.as_slice()), (a.local_addr(), &b"v6"[..]));
    })
    .await;
}

/// True once the peer closed the connection (EOF or reset) within `limit`; reads and discards
/// whatever arrives before that.
async fn disconnected_within(stream: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 64];
    let closed = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    timeout(limit, closed).await.is_ok()
}

/// A raw connection from `source` (any address on loopback) to `to`, handshake sent.
async fn try_raw_peer_from(source: &str, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(format!("{source}:0").parse().unwrap())?;
    let mut stream = socket.connect(to).await?;
    stream.write_all(&handshake(&format!("tcp://{source}:9"))).await?;
    Ok(stream)
}

async fn raw_peer_from(source: &str, to: SocketAddr) -> TcpStream {
    try_raw_peer_from(source, to).await.expect("connect from a loopback source address")
}

/// True when a connection from `source` is closed at once: reset before the connect completes
/// or the handshake is written, or closed within a few seconds after.
async fn refused(source: &str, to: SocketAddr) -> bool {
    match try_raw_peer_from(source, to).await {
        Ok(mut stream) => disconnected_within(&mut stream, Duration::from_secs(5)).await,
        Err(e) => matches!(e.kind(), std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_past_the_per_source_cap_is_refused_at_once_and_counted() {
    bounded(async {
        let b = bind(TcpOptions { max_inbound_per_ip: 3, ..TcpOptions::default() }).await;
        let mut admitted = Vec::new();
        for _ in 0..3 {
            admitted.push(raw_peer_from("127.0.0.1", b.local_socket_addr()).await);
        }
        assert!(eventually(|| b.connection_stats().inbound_open == 3).await, "{:?}", b.connection_stats());
        assert!(refused("127.0.0.1", b.local_socket_addr()).await, "the fourth connection stayed open");
        assert!(eventually(|| b.connection_stats().refused == 1).await, "{:?}", b.connection_stats());
        assert_eq!(b.counters().dropped_in, 1, "a refused connection is a drop");
        assert_eq!((b.connection_stats().accepted, b.connection_stats().inbound_open), (3, 3));
        // The admitted ones still work...
        for (i, conn) in admitted.iter_mut().enumerate() {
            conn.write_all(&frame(&[i as u8; 10])).await.unwrap();
        }
        let mut got: Vec<u8> = Vec::new();
        for _ in 0..3 {
            got.push(recv(&b).await.1[0]);
        }
        got.sort_unstable();
        assert_eq!(got, [0, 1, 2]);
        // ...and a slot given back admits the next one.
        drop(admitted.pop());
        assert!(eventually(|| b.connection_stats().inbound_open == 2).await, "{:?}", b.connection_stats());
        let mut next = raw_peer_from("127.0.0.1", b.local_socket_addr()).await;
        next.write_all(&frame(b"admitted again")).await.unwrap();
        assert_eq!(recv(&b).await.1, b"admitted again");
        assert_eq!(b.connection_stats().refused, 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_total_cap_are_refused_whatever_their_source() {
    bounded(async {
        let b = bind(TcpOptions { max_inbound: 2, ..TcpOptions::default() }).await;
        let _first = raw_peer_from("127.0.0.2", b.local_socket_addr()).await;
        let _second = raw_peer_from("127.0.0.3", b.local_socket_addr()).await;
        assert!(eventually(|| b.connection_stats().inbound_open == 2).await, "{:?}", b.connection_stats());
        assert!(refused("127.0.0.4", b.local_socket_addr()).await, "a third connection stayed open");
        assert!(eventually(|| b.connection_stats().refused == 1).await, "{:?}", b.connection_stats());
        // A transport's own sends are outbound and unaffected by its inbound cap.
        let c = bind(TcpOptions::default()).await;
        b.send_reliable(&c.local_addr(), b"out").await.unwrap();
        assert_eq!(recv(&c).await.1, b"out");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_sending_only_zero_length_frames_is_disconnected_after_the_idle_timeout() {
    bounded(async {
        let idle = Duration::from_millis(300);
        let b = bind(TcpOptions { idle_timeout: idle, ..TcpOptions::default() }).await;
        let raw = raw_peer_from("127.0.0.1", b.local_socket_addr()).await;
        let started = tokio::time::Instant::now();
        let (mut rd, mut wr) = raw.into_split();
        // Keep-alives ten times per idle timeout, until the connection is gone.
        let keep_alive = tokio::spawn(async move {
            while wr.write_all(&0u32.to_be_bytes()).await.is_ok() {
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        });
        let mut buf = [0u8; 16];
        let closed = timeout(Duration::from_secs(5), rd.read(&mut buf)).await;
        assert!(matches!(closed, Ok(Ok(0) | Err(_))), "still connected after 5 s of keep-alives: {closed:?}");
        assert!(started.elapsed() >= idle, "closed after {:?}, before the idle timeout", started.elapsed());
        let stats = || b.connection_stats();
        assert!(eventually(|| stats().idle_closed == 1 && stats().inbound_open == 0).await, "{:?}", stats());
        timeout(Duration::from_secs(5), keep_alive).await.expect("the keep-alive writer stops").unwrap();
        nothing_arrives(&b).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_whose_frames_the_peer_acknowledges_stays_open_past_the_idle_timeout() {
    bounded(async {
        let idle = Duration::from_millis(300);
        let a = bind(TcpOptions { idle_timeout: idle, ..TcpOptions::default() }).await;
        let b = bind(TcpOptions::default()).await;
        // The peer never answers on our connection: only its acknowledgements show progress.
        let until = tokio::time::Instant::now() + idle * 4;
        let mut sent = 0;
        while tokio::time::Instant::now() < until {
            a.send_reliable(&b.local_addr(), b"busy").await.unwrap();
            sent += 1;
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
        for _ in 0..sent {
            recv(&b).await;
        }
        assert_eq!(a.connection_stats().dialled, 1, "{:?}", a.connection_stats());
        assert_eq!(a.connection_stats().idle_closed, 0);
        // Unused, it does close.
        assert!(eventually(|| a.connection_stats().outbound_open == 0).await, "{:?}", a.connection_stats());
        assert_eq!(a.connection_stats().idle_closed, 1);
    })
    .await;
}
