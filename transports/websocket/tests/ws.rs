//! The WebSocket transport against a fake relay (a plain tokio-tungstenite server on loopback):
//! the handshake, framing, bounded queues, and reconnection.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use shoal::relay::{decode_ws_frame, encode_ws_frame};
use shoal::{Addr, Transport, TransportError};
use shoal_websocket::{Backoff, WsError, WsOptions, WsTransport};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

type Server = WebSocketStream<TcpStream>;

async fn bounded<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), f).await.expect("test timed out")
}

/// Accepts one WebSocket connection and sends `first` (the welcome, normally).
async fn fake_relay(first: Message) -> (SocketAddr, JoinHandle<Server>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        ws.send(first).await.unwrap();
        ws
    });
    (addr, server)
}

fn welcome(relay: SocketAddr, peer: &str) -> Message {
    Message::Binary(encode_ws_frame(&format!("relay://{relay}/{peer}"), &[]).unwrap().into())
}

/// A transport connected to a fake relay, and the relay's end of the socket.
async fn connected(options: WsOptions) -> (std::sync::Arc<WsTransport>, Server, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let relay = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        ws.send(welcome(relay, "me")).await.unwrap();
        ws
    });
    let t = WsTransport::connect_with(&format!("ws://{relay}/ws?peer=me"), options).await.unwrap();
    (t, server.await.unwrap(), relay)
}

async fn next_binary(server: &mut Server) -> Vec<u8> {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), server.next()).await.expect("in time") {
            Some(Ok(Message::Binary(b))) => return b.to_vec(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("expected a binary message, got {other:?}"),
        }
    }
}

async fn recv(t: &WsTransport) -> (Addr, Vec<u8>) {
    let mut buf = Vec::new();
    let got = tokio::time::timeout(Duration::from_secs(5), t.recv(&mut buf)).await.expect("in time").expect("recv");
    (got.from, buf)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_learns_our_own_address_from_the_welcome() {
    bounded(async {
        let (t, _server, relay) = connected(WsOptions::default()).await;
        assert_eq!(t.local_addr().as_str(), format!("relay://{relay}/me"));
        assert_eq!(t.name(), "websocket");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_does_not_start_with_a_welcome_is_refused() {
    bounded(async {
        for (first, why) in [
            (Message::Text("hello".into()), "text"),
            (Message::Binary(encode_ws_frame("relay://h:1/me", b"\x01").unwrap().into()), "a packet"),
            (Message::Binary(encode_ws_frame("udp://127.0.0.1:1", &[]).unwrap().into()), "not relay://"),
            (Message::Binary(vec![9, 1].into()), "truncated"),
        ] {
            let (relay, _server) = fake_relay(first).await;
            let r = WsTransport::connect(&format!("ws://{relay}/ws?peer=me")).await;
            assert!(matches!(r, Err(WsError::BadWelcome(_))), "{why}: {r:?}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_refusal_reports_its_status() {
    bounded(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let relay = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            // The callback's signature is tungstenite's.
            #[allow(clippy::result_large_err)]
            let refuse = |_: &Request, _: Response| -> Result<Response, ErrorResponse> {
                let mut e = ErrorResponse::new(Some("wrong token".into()));
                *e.status_mut() = StatusCode::FORBIDDEN;
                Err(e)
            };
            let _ = tokio_tungstenite::accept_hdr_async(tcp, refuse).await;
        });
        let r = WsTransport::connect(&format!("ws://{relay}/ws?peer=me&token=x")).await;
        assert!(matches!(r, Err(WsError::Refused { status: 403 })), "{r:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_listening_or_no_welcome_in_time_fails_to_connect() {
    bounded(async {
        let unused = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let r = WsTransport::connect(&format!("ws://{unused}/ws?peer=me")).await;
        assert!(matches!(r, Err(WsError::Connect(_))), "{r:?}");
        // A server that upgrades but never welcomes.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let relay = listener.local_addr().unwrap();
        let _server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(ws);
        });
        let options = WsOptions { connect_timeout: Duration::from_millis(200), ..WsOptions::default() };
        let r = WsTransport::connect_with(&format!("ws://{relay}/ws?peer=me"), options).await;
        assert!(matches!(r, Err(WsError::Timeout)), "{r:?}");
        let r = WsTransport::connect_with("ws://x/ws", WsOptions { max_frame: 10, ..WsOptions::default() }).await;
        assert!(matches!(r, Err(WsError::InvalidOptions(_))), "{r:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_and_udp_addresses_are_claimed_for_both_kinds_of_send() {
    bounded(async {
        let (t, _server, _) = connected(WsOptions::default()).await;
        for a in ["relay://127.0.0.1:8080/tab", "relay://relay.example:443/tab", "udp://10.0.0.5:7946"] {
            let a = Addr::parse(a).unwrap();
            assert!(t.claims(&a, false) && t.claims(&a, true), "{a}");
        }
        for a in ["tcp://10.0.0.5:7946", "rtc://peer", "relay://h:1/bad:id"] {
            let a = Addr::parse(a).unwrap();
            assert!(!t.claims(&a, false) && !t.claims(&a, true), "{a}");
        }
        let r = t.send(&Addr::parse("tcp://10.0.0.5:7946").unwrap(), b"x").await;
        assert!(matches!(r, Err(TransportError::Unreachable(_))), "{r:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_is_one_binary_message_naming_the_destination() {
    bounded(async {
        let (t, mut server, _) = connected(WsOptions::default()).await;
        let dest = Addr::parse("udp://10.0.0.5:7946").unwrap();
        t.send(&dest, b"\x01probe").await.unwrap();
        t.send_reliable(&dest, b"\x01push-pull").await.unwrap();
        let first = next_binary(&mut server).await;
        assert_eq!(decode_ws_frame(&first).unwrap(), ("udp://10.0.0.5:7946", &b"\x01probe"[..]));
        let second = next_binary(&mut server).await;
        assert_eq!(decode_ws_frame(&second).unwrap().1, b"\x01push-pull");
        let c = t.counters();
        assert_eq!((c.packets_out, c.bytes_out), (2, (first.len() + second.len()) as u64));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_larger_than_the_frame_cap_is_refused_before_queueing() {
    bounded(async {
        let (t, _server, _) = connected(WsOptions { max_frame: 1_000, ..WsOptions::default() }).await;
        let dest = Addr::parse("udp://10.0.0.5:7946").unwrap();
        let fits = vec![1u8; 1_000 - 1 - dest.as_str().len()];
        t.send(&dest, &fits).await.unwrap();
        let r = t.send(&dest, &[fits.as_slice(), b"x"].concat()).await;
        assert!(matches!(r, Err(TransportError::TooLarge { size: 1_001, max: 1_000 })), "{r:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_received_frame_is_reported_from_its_stamped_source_with_only_the_packet() {
    bounded(async {
        let (t, mut server, relay) = connected(WsOptions::default()).await;
        let source = format!("relay://{relay}/tab-9");
        server.send(Message::Binary(encode_ws_frame(&source, b"\x01ping").unwrap().into())).await.unwrap();
        server.send(Message::Binary(encode_ws_frame("udp://10.0.0.5:7946", b"\x01ack").unwrap().into())).await.unwrap();
        assert_eq!(recv(&t).await, (Addr::parse(&source).unwrap(), b"\x01ping".to_vec()));
        assert_eq!(recv(&t).await, (Addr::parse("udp://10.0.0.5:7946").unwrap(), b"\x01ack".to_vec()));
        assert_eq!(t.counters().packets_in, 2);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_malformed_and_text_messages_are_dropped_and_counted() {
    bounded(async {
        let (t, mut server, _) = connected(WsOptions { max_frame: 1_000, ..WsOptions::default() }).await;
        let src = "udp://10.0.0.5:7946";
        server.send(Message::Binary(encode_ws_frame(src, &[1u8; 1_000]).unwrap().into())).await.unwrap();
        server.send(Message::Binary(vec![40, b'x'].into())).await.unwrap();
        server.send(Message::Binary(encode_ws_frame("no scheme", b"\x01").unwrap().into())).await.unwrap();
        server.send(Message::Text("hello".into())).await.unwrap();
        server.send(Message::Binary(encode_ws_frame(src, b"\x01fine").unwrap().into())).await.unwrap();
        assert_eq!(recv(&t).await.1, b"\x01fine");
        assert_eq!(t.counters().dropped_in, 4);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_protocol_falls_behind_new_frames_are_dropped_not_pushed_back() {
    bounded(async {
        let (t, mut server, _) = connected(WsOptions { inbound_frames: 4, ..WsOptions::default() }).await;
        for i in 0..10u8 {
            server
                .send(Message::Binary(encode_ws_frame("udp://10.0.0.5:7946", &[1, i]).unwrap().into()))
                .await
                .unwrap();
        }
        // Nobody called recv: four wait, six were dropped.
        let counted = async {
            while t.counters().packets_in < 10 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), counted).await.unwrap();
        assert_eq!(t.counters().dropped_in, 6);
        for i in 0..4u8 {
            assert_eq!(recv(&t).await.1, [1, i]);
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_outbound_queue_drops_best_effort_sends_and_counts_them() {
    bounded(async {
        // The fake relay never reads: the writer blocks once the kernel buffers are full.
        let (t, _server, _) = connected(WsOptions { outbound_frames: 4, ..WsOptions::default() }).await;
        let dest = Addr::parse("udp://10.0.0.5:7946").unwrap();
        let packet = vec![1u8; 60_000];
        let mut refused = None;
        for _ in 0..10_000 {
            if let Err(e) = t.send(&dest, &packet).await {
                refused = Some(e);
                break;
            }
        }
        assert!(matches!(refused, Some(TransportError::Io(ref e)) if e.kind() == std::io::ErrorKind::WouldBlock));
        assert_eq!(t.outbound_dropped(), 1);
        assert_eq!(t.counters().send_errors, 1);
        // A reliable send waits for room instead, up to its limit.
        let quick = WsOptions { reliable_wait: Duration::from_millis(100), ..WsOptions::default() };
        let (slow, _server2, _) = connected(WsOptions { outbound_frames: 1, ..quick }).await;
        let mut timed_out = false;
        for _ in 0..10_000 {
            if let Err(e) = slow.send_reliable(&dest, &packet).await {
                timed_out = matches!(e, TransportError::Io(ref e) if e.kind() == std::io::ErrorKind::TimedOut);
                break;
            }
        }
        assert!(timed_out);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_sends_a_close_frame_and_every_later_call_returns_closed() {
    bounded(async {
        let (t, mut server, _) = connected(WsOptions::default()).await;
        let mut buf = Vec::new();
        let pending = {
            let t = t.clone();
            tokio::spawn(async move { t.recv(&mut Vec::new()).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        t.close().await;
        assert!(t.is_closed());
        assert!(matches!(pending.await.unwrap(), Err(TransportError::Closed)));
        assert!(matches!(t.recv(&mut buf).await, Err(TransportError::Closed)));
        let dest = Addr::parse("udp://10.0.0.5:7946").unwrap();
        assert!(matches!(t.send(&dest, b"x").await, Err(TransportError::Closed)));
        let got = tokio::time::timeout(Duration::from_secs(5), server.next()).await.unwrap();
        assert!(matches!(got, Some(Ok(Message::Close(_)))), "{got:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_reconnect_the_transport_closes_when_the_relay_goes_away() {
    bounded(async {
        let (t, server, _) = connected(WsOptions { reconnect: None, ..WsOptions::default() }).await;
        drop(server);
        let r = tokio::time::timeout(Duration::from_secs(5), t.recv(&mut Vec::new())).await.unwrap();
        assert!(matches!(r, Err(TransportError::Closed)), "{r:?}");
        assert!(t.is_closed() && !t.is_connected());
        assert_eq!((t.disconnects(), t.reconnects()), (0, 0));
        let r = t.send(&Addr::parse("udp://10.0.0.5:7946").unwrap(), b"\x01").await;
        assert!(matches!(r, Err(TransportError::Closed)), "{r:?}");
    })
    .await;
}

// Reconnection. These tests own the fake relay's listener: a connection the test has not accepted
// yet waits in the listen backlog, so the transport stays disconnected exactly as long as the
// test wants.

/// Reconnection within tens of milliseconds, so the tests are quick.
fn fast() -> WsOptions {
    let backoff = Backoff { initial: Duration::from_millis(10), max: Duration::from_millis(40) };
    WsOptions { reconnect: Some(backoff), ..WsOptions::default() }
}

/// A transport connected as `me` through `listener`, and the relay's end of the socket.
async fn connected_on(listener: &TcpListener, options: WsOptions) -> (Arc<WsTransport>, Server) {
    let relay = listener.local_addr().unwrap();
    let url = format!("ws://{relay}/ws?peer=me");
    let connecting = WsTransport::connect_with(&url, options);
    let (t, server) = tokio::join!(connecting, accept(listener, welcome(relay, "me")));
    (t.unwrap(), server)
}

/// Accepts the next WebSocket connection on `listener`, checks that it asks for peer id `me`, and
/// sends `first`.
async fn accept(listener: &TcpListener, first: Message) -> Server {
    let (tcp, _) =
        tokio::time::timeout(Duration::from_secs(5), listener.accept()).await.expect("a connection").unwrap();
    #[allow(clippy::result_large_err)]
    let check = |request: &Request, response: Response| -> Result<Response, ErrorResponse> {
        assert_eq!(request.uri().query(), Some("peer=me"), "the same URL, so the same peer id");
        Ok(response)
    };
    let mut ws = tokio_tungstenite::accept_hdr_async(tcp, check).await.unwrap();
    ws.send(first).await.unwrap();
    ws
}

/// Polls `check` every 5 ms for up to 5 s.
async fn eventually(check: impl FnMut() -> bool) -> bool {
    shoal_testkit::eventually(Duration::from_secs(5), check).await
}

fn close_with(code: u16) -> Message {
    Message::Close(Some(CloseFrame { code: WsCloseCode::from(code), reason: "test".into() }))
}

fn is_not_connected(r: &Result<(), TransportError>) -> bool {
    matches!(r, Err(TransportError::Io(e)) if e.kind() == std::io::ErrorKind::NotConnected)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_relay_drops_the_connection_the_transport_reconnects_as_the_same_peer() {
    bounded(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let relay = listener.local_addr().unwrap();
        let (t, first) = connected_on(&listener, fast()).await;
        let local = t.local_addr();
        assert!(t.is_connected());
        // A recv pending across the whole outage: it must get the next packet, not Closed.
        let pending = {
            let t = t.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let got = t.recv(&mut buf).await;
                got.map(|r| (r.from, buf))
            })
        };
        drop(first);
        assert!(eventually(|| !t.is_connected()).await, "the drop is noticed");
        assert!(!t.is_closed(), "disconnected, not closed");
        assert_eq!(t.disconnects(), 1);
        let dest = Addr::parse("udp://10.0.0.5:7946").unwrap();
        let before = (t.counters().send_errors, t.outbound_dropped());
        assert!(is_not_connected(&t.send(&dest, b"\x01lost").await));
        assert!(is_not_connected(&t.send_reliable(&dest, b"\x01lost too").await));
        assert_eq!((t.counters().send_errors, t.outbound_dropped()), (before.0 + 2, before.1 + 1));
        assert!(!pending.is_finished(), "recv keeps waiting while disconnected");
        // The reconnection has been waiting in the backlog all along; let it in.
        let mut second = accept(&listener, welcome(relay, "me")).await;
        assert!(eventually(|| t.is_connected()).await, "reconnected");
        assert_eq!((t.reconnects(), t.disconnects()), (1, 1));
        assert_eq!(t.local_addr(), local);
        second
            .send(Message::Binary(encode_ws_frame("udp://10.0.0.5:7946", b"\x01hello again").unwrap().into()))
            .await
            .unwrap();
        let (from, packet) =
            tokio::time::timeout(Duration::from_secs(5), pending).await.unwrap().unwrap().expect("no Closed");
        assert_eq!((from, packet), (dest.clone(), b"\x01hello again".to_vec()));
        t.send(&dest, b"\x01back").await.unwrap();
        assert_eq!(decode_ws_frame(&next_binary(&mut second).await).unwrap().1, b"\x01back");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_with_any_code_but_replaced_is_followed_by_a_reconnection() {
    bounded(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let relay = listener.local_addr().unwrap();
        let (t, mut server) = connected_on(&listener, fast()).await;
        // Going away (relay restarting), slow consumer, a normal close, and a close without a code.
        let closes = [close_with(1001), close_with(4002), close_with(1000), Message::Close(None)];
        for (n, close) in closes.into_iter().enumerate() {
            server.send(close).await.unwrap();
            server = accept(&listener, welcome(relay, "me")).await;
            assert!(eventually(|| t.reconnects() == n as u64 + 1 && t.is_connected()).await, "after close {n}");
        }
        assert_eq!(t.disconnects(), 4);
        let dest = Addr::parse("udp://10.0.0.5:7946").unwrap();
        t.send(&dest, b"\x01still me").await.unwrap();
        assert_eq!(decode_ws_frame(&next_binary(&mut server).await).unwrap().1, b"\x01still me");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_with_code_4001_closes_the_transport_for_good() {
    bounded(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (t, mut server) = connected_on(&listener, fast()).await;
        server.send(close_with(4001)).await.unwrap();
        let r = tokio::time::timeout(Duration::from_secs(5), t.recv(&mut Vec::new())).await.unwrap();
        assert!(matches!(r, Err(TransportError::Closed)), "{r:?}");
        assert!(t.is_closed() && !t.is_connected());
        assert_eq!((t.disconnects(), t.reconnects()), (0, 0));
        // Nobody comes back to take the peer id from the newer connection.
        let again = tokio::time::timeout(Duration::from_millis(300), listener.accept()).await;
        assert!(again.is_err(), "no reconnection attempt");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_queued_before_a_drop_are_discarded_not_sent_on_the_next_connection() {
    bounded(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let relay = listener.local_addr().unwrap();
        // The fake relay does not read: the writer blocks once the kernel buffers are full and the
        // queue fills up behind it.
        let (t, first) = connected_on(&listener, WsOptions { outbound_frames: 4, ..fast() }).await;
        let dest = Addr::parse("udp://10.0.0.5:7946").unwrap();
        let stale = vec![2u8; 60_000];
        // Fill the queue until it stays full: then the writer is stuck on the socket, and four
        // messages wait behind it.
        let mut stuck = false;
        for _ in 0..10_000 {
            if t.send(&dest, &stale).await.is_err() {
                tokio::time::sleep(Duration::from_millis(50)).await;
                if t.send(&dest, &stale).await.is_err() {
                    stuck = true;
                    break;
                }
            }
        }
        assert!(stuck, "the queue filled up and stayed full");
        let dropped_before = t.outbound_dropped();
        drop(first);
        assert!(eventually(|| !t.is_connected()).await);
        let mut second = accept(&listener, welcome(relay, "me")).await;
        assert!(eventually(|| t.is_connected()).await);
        t.send(&dest, b"\x01fresh").await.unwrap();
        let got = next_binary(&mut second).await;
        assert_eq!(decode_ws_frame(&got).unwrap().1, b"\x01fresh", "the first message is the fresh one");
        let discarded = t.outbound_dropped() - dropped_before;
        assert!(discarded >= 4, "the queued ones were counted as dropped: {discarded}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_reconnection_is_retried_until_the_relay_accepts() {
    bounded(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let relay = listener.local_addr().unwrap();
        let (t, first) = connected_on(&listener, fast()).await;
        drop(first);
        for _ in 0..2 {
            let (tcp, _) = listener.accept().await.unwrap();
            #[allow(clippy::result_large_err)]
            let refuse = |_: &Request, _: Response| -> Result<Response, ErrorResponse> {
                let mut e = ErrorResponse::new(Some("restarting with a new token".into()));
                *e.status_mut() = StatusCode::FORBIDDEN;
                Err(e)
            };
            let _ = tokio_tungstenite::accept_hdr_async(tcp, refuse).await;
        }
        assert!(!t.is_closed() && !t.is_connected());
        let _server = accept(&listener, welcome(relay, "me")).await;
        assert!(eventually(|| t.is_connected()).await);
        assert_eq!((t.disconnects(), t.reconnects()), (1, 1));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_welcomes_a_reconnection_with_another_peer_id_closes_the_transport() {
    bounded(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let relay = listener.local_addr().unwrap();
        let (t, first) = connected_on(&listener, fast()).await;
        drop(first);
        // Another member's address, not ours at another relay: nothing the cluster can follow.
        let mut moved = accept(&listener, welcome(relay, "someone-else")).await;
        let r = tokio::time::timeout(Duration::from_secs(5), t.recv(&mut Vec::new())).await.unwrap();
        assert!(matches!(r, Err(TransportError::Closed)), "{r:?}");
        assert!(t.is_closed());
        assert_eq!((t.reconnects(), t.moves()), (0, 0));
        assert_eq!(t.local_addr().as_str(), format!("relay://{relay}/me"));
        // It says goodbye on that connection rather than keep it.
        let got = tokio::time::timeout(Duration::from_secs(5), moved.next()).await.unwrap();
        assert!(matches!(got, Some(Ok(Message::Close(_))) | None | Some(Err(_))), "{got:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_during_the_backoff_returns_promptly_and_later_calls_return_closed() {
    bounded(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let slow = Backoff { initial: Duration::from_secs(30), max: Duration::from_secs(60) };
        let (t, first) = connected_on(&listener, WsOptions { reconnect: Some(slow), ..WsOptions::default() }).await;
        let pending = {
            let t = t.clone();
            tokio::spawn(async move { t.recv(&mut Vec::new()).await })
        };
        drop(first);
        assert!(eventually(|| !t.is_connected()).await);
        assert!(!t.is_closed());
        let started = Instant::now();
        t.close().await;
        assert!(started.elapsed() < Duration::from_millis(500), "close took {:?}", started.elapsed());
        assert!(t.is_closed());
        let r = tokio::time::timeout(Duration::from_secs(1), pending).await.unwrap().unwrap();
        assert!(matches!(r, Err(TransportError::Closed)), "{r:?}");
        assert!(matches!(t.recv(&mut Vec::new()).await, Err(TransportError::Closed)));
        let dest = Addr::parse("udp://10.0.0.5:7946").unwrap();
        assert!(matches!(t.send(&dest, b"x").await, Err(TransportError::Closed)));
        assert!(matches!(t.send_reliable(&dest, b"x").await, Err(TransportError::Closed)));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_during_a_reconnection_handshake_returns_promptly() {
    bounded(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (t, first) = connected_on(&listener, fast()).await;
        drop(first);
        // Take the TCP connection of the next attempt and never answer its upgrade.
        let (_stalled, _) = tokio::time::timeout(Duration::from_secs(5), listener.accept()).await.unwrap().unwrap();
        let started = Instant::now();
        t.close().await;
        assert!(started.elapsed() < Duration::from_millis(500), "close took {:?}", started.elapsed());
        assert!(matches!(t.recv(&mut Vec::new()).await, Err(TransportError::Closed)));
        assert_eq!(t.reconnects(), 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_reconnect_settings_are_refused_before_connecting() {
    let zero = Backoff { initial: Duration::ZERO, max: Duration::from_secs(1) };
    let r =
        WsTransport::connect_with("ws://127.0.0.1:1/ws", WsOptions { reconnect: Some(zero), ..WsOptions::default() })
            .await;
    assert!(matches!(r, Err(WsError::InvalidOptions(_))), "{r:?}");
}
