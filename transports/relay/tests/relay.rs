//! The relay server on real loopback sockets: WebSocket members, a native UDP socket, admission,
//! slow consumers, oversized frames, HTTP endpoints, close codes, and members reconnecting.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::{bounded, close_code, eventually, http_get, next_binary, raw_client, start, ws_url};
use futures_util::SinkExt;
use shoal::relay::{accept_relay_datagram, decode_ws_frame, encode_datagram, encode_ws_frame, CloseCode};
use shoal::{Addr, Transport, TransportError};
use shoal_relay::{BudgetLimit, CloseReason, ConnectionDrop, DropReason, Limits, RateLimit, RelayConfig};
use shoal_websocket::{Backoff, WsError, WsOptions, WsTransport};
use tokio::net::UdpSocket;
use tokio_tungstenite::tungstenite::Message;

const LIMIT: Duration = Duration::from_secs(10);

async fn recv(t: &WsTransport) -> (Addr, Vec<u8>) {
    let mut buf = Vec::new();
    let got = tokio::time::timeout(Duration::from_secs(5), t.recv(&mut buf)).await.expect("in time").expect("recv");
    (got.from, buf)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_websocket_members_exchange_packets_through_the_relay() {
    bounded(LIMIT, async {
        let (relay, handle) = start(RelayConfig::default()).await;
        let a = WsTransport::connect(&ws_url(relay, "tab-a", None)).await.unwrap();
        let b = WsTransport::connect(&ws_url(relay, "tab-b", None)).await.unwrap();
        assert_eq!(a.local_addr().as_str(), format!("relay://{relay}/tab-a"));
        assert_eq!(b.local_addr(), handle.member_addr("tab-b").unwrap());
        assert!(a.claims(&b.local_addr(), false) && a.claims(&b.local_addr(), true));
        a.send(&b.local_addr(), b"\x01ping").await.unwrap();
        assert_eq!(recv(&b).await, (a.local_addr(), b"\x01ping".to_vec()));
        b.send_reliable(&a.local_addr(), b"\x01push-pull").await.unwrap();
        assert_eq!(recv(&a).await, (b.local_addr(), b"\x01push-pull".to_vec()));
        // Many in a row arrive in order (one WebSocket each way).
        for i in 0..200u8 {
            a.send(&b.local_addr(), &[1, i]).await.unwrap();
        }
        for i in 0..200u8 {
            assert_eq!(recv(&b).await.1, [1, i]);
        }
        let stats = handle.stats();
        assert_eq!(stats.ws_to_ws.frames, 202);
        assert_eq!(stats.connections, 2);
        assert_eq!(a.counters().packets_out, 201);
        a.close().await;
        b.close().await;
        assert!(eventually(Duration::from_secs(2), || handle.stats().connections == 0).await);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_native_udp_socket_and_a_websocket_member_exchange_packets_through_the_relay_port() {
    bounded(LIMIT, async {
        let (relay, handle) = start(RelayConfig::default()).await;
        let tab = WsTransport::connect(&ws_url(relay, "tab-7", None)).await.unwrap();
        let native = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let native_addr = Addr::udp(native.local_addr().unwrap());
        // Native -> tab: a relay datagram to the relay's UDP port (same port as HTTP).
        native.send_to(&encode_datagram("tab-7", b"\x01probe").unwrap(), relay).await.unwrap();
        assert_eq!(recv(&tab).await, (native_addr.clone(), b"\x01probe".to_vec()));
        // Tab -> native: leaves the relay's UDP port, stamped with the tab's relay:// address.
        tab.send(&native_addr, b"\x01ack").await.unwrap();
        let mut buf = vec![0u8; 2_048];
        let (n, from) =
            tokio::time::timeout(Duration::from_secs(5), native.recv_from(&mut buf)).await.unwrap().unwrap();
        assert_eq!(from, relay);
        let (source, packet) = accept_relay_datagram(from, &buf[..n]).expect("a genuine relay datagram");
        assert_eq!(source, tab.local_addr());
        assert_eq!(packet, b"\x01ack");
        let stats = handle.stats();
        assert_eq!((stats.udp_to_ws.frames, stats.ws_to_udp.frames), (1, 1));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_wrong_token_is_refused_before_the_upgrade_and_counted() {
    bounded(LIMIT, async {
        let (relay, handle) = start(RelayConfig { token: Some("s3cret".into()), ..RelayConfig::default() }).await;
        let missing = WsTransport::connect(&ws_url(relay, "tab", None)).await.unwrap_err();
        assert!(matches!(missing, WsError::Refused { status: 401 }), "{missing:?}");
        let wrong = WsTransport::connect(&ws_url(relay, "tab", Some("guess"))).await.unwrap_err();
        assert!(matches!(wrong, WsError::Refused { status: 403 }), "{wrong:?}");
        let bad_id = WsTransport::connect(&ws_url(relay, "no%2Fslash", Some("s3cret"))).await.unwrap_err();
        assert!(matches!(bad_id, WsError::Refused { status: 400 }), "{bad_id:?}");
        let stats = handle.stats();
        assert_eq!((stats.rejected_token, stats.rejected_peer_id, stats.accepted), (2, 1, 0));
        let (_, metrics) = http_get(relay, "/metrics").await;
        assert!(metrics.contains("shoal_relay_rejected_total{reason=\"token\"} 2"), "{metrics}");
        let ok = WsTransport::connect(&ws_url(relay, "tab", Some("s3cret"))).await.unwrap();
        assert_eq!(ok.local_addr().as_str(), format!("relay://{relay}/tab"));
        assert_eq!(handle.stats().accepted, 1);
    })
    .await;
}

/// Limits far above what the tests send, so only queues and timers are exercised.
fn unlimited() -> Limits {
    let plenty = BudgetLimit { frames: RateLimit::new(1 << 20, 1 << 20), bytes: RateLimit::new(1 << 40, 1 << 40) };
    Limits { source: plenty, destination: plenty, ..Limits::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_stops_reading_is_disconnected_after_the_stall_timeout_instead_of_growing_memory() {
    bounded(Duration::from_secs(20), async {
        let config = RelayConfig {
            queue_frames: 64,
            queue_bytes: 64 << 10,
            stall_timeout: Duration::from_secs(1),
            limits: unlimited(),
            ..RelayConfig::default()
        };
        let (relay, handle) = start(config).await;
        let mut victim = raw_client(relay, "victim").await;
        let mut sender = raw_client(relay, "sender").await;
        let frame = Bytes::from(encode_ws_frame(&format!("relay://{relay}/victim"), &[1u8; 16 << 10]).unwrap());
        // Kernel socket buffers absorb a few MiB first; 4,000 frames is 64 MiB, far more than that.
        let mut sent = 0;
        while handle.stats().slow_consumers == 0 && sent < 4_000 {
            sender.send(Message::Binary(frame.clone())).await.unwrap();
            sent += 1;
            assert!(handle.stats().queued_bytes <= (64 << 10) + (16 << 10), "the queue stays bounded");
        }
        assert!(
            eventually(Duration::from_secs(5), || handle.stats().slow_consumers == 1).await,
            "sent {sent} frames: {:?}",
            handle.stats()
        );
        eprintln!("slow consumer detected after {sent} frames of 16 KiB");
        let stats = handle.stats();
        assert!(stats.dropped(DropReason::QueueFull) >= 1, "the full queue dropped frames first: {stats:?}");
        assert_eq!(stats.connections, 1, "only the sender is left");
        // The relay closed the victim's connection: it reads what the kernel held, then the end.
        let mut read = 0;
        while next_binary(&mut victim).await.is_some() {
            read += 1;
            assert!(read <= sent, "more frames than were sent");
        }
        eprintln!("the victim read {read} frames before the end of its connection");
        // Frames for it now are unknown-destination drops; the sender stays connected.
        sender.send(Message::Binary(frame.clone())).await.unwrap();
        assert!(
            eventually(Duration::from_secs(2), || handle.stats().dropped(DropReason::UnknownDestination) >= 1).await
        );
        assert_eq!(handle.stats().connections, 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_sends_nothing_is_pinged_and_one_that_answers_nothing_is_closed_with_code_4003() {
    bounded(LIMIT, async {
        let config = RelayConfig {
            ping_interval: Duration::from_millis(200),
            idle_timeout: Duration::from_millis(1_500),
            ..RelayConfig::default()
        };
        let (relay, handle) = start(config).await;
        // A client that reads (tungstenite answers pings while reading) stays, though it sends nothing.
        let mut reader = raw_client(relay, "reader").await;
        let reading = tokio::spawn(async move {
            let got = next_binary(&mut reader).await;
            (got, reader)
        });
        // A client that never reads never answers a ping.
        let mut silent = raw_client(relay, "silent").await;
        assert!(eventually(Duration::from_secs(5), || handle.stats().connections == 1).await, "{:?}", handle.stats());
        assert_eq!(handle.stats().connection_drops(ConnectionDrop::Idle), 1);
        let (code, reason) = close_code(&mut silent).await.expect("a close frame");
        assert_eq!(code, CloseReason::Idle.code());
        assert_eq!(reason, CloseReason::Idle.text());
        assert!(CloseCode::should_reconnect(code));
        reading.abort();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frames_and_datagrams_are_dropped_and_counted() {
    bounded(LIMIT, async {
        let (relay, handle) = start(RelayConfig { max_frame: 1_024, ..RelayConfig::default() }).await;
        let mut client = raw_client(relay, "me").await;
        let me = format!("relay://{relay}/me");
        let oversized = encode_ws_frame(&me, &[1u8; 1_100]).unwrap();
        client.send(Message::Binary(oversized.into())).await.unwrap();
        let fine = encode_ws_frame(&me, b"\x01small").unwrap();
        client.send(Message::Binary(fine.into())).await.unwrap();
        // Only the small one comes back (to ourselves), and the connection is still open.
        let echoed = next_binary(&mut client).await.expect("the small frame");
        assert_eq!(decode_ws_frame(&echoed).unwrap(), (me.as_str(), &b"\x01small"[..]));
        assert_eq!(handle.stats().dropped(DropReason::Oversized), 1);
        // Datagrams are capped the same way.
        let native = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        native.send_to(&encode_datagram("me", &[1u8; 1_100]).unwrap(), relay).await.unwrap();
        assert!(eventually(Duration::from_secs(2), || handle.stats().dropped(DropReason::Oversized) == 2).await);
        // A WebSocket sender also refuses to send what the relay would drop.
        let ws = WsTransport::connect(&ws_url(relay, "ws", None)).await.unwrap();
        let r = ws.send(&Addr::parse(&me).unwrap(), &[1u8; 70_000]).await;
        assert!(matches!(r, Err(TransportError::TooLarge { .. })), "{r:?}");
        // Far beyond the cap (over 4x), the WebSocket layer refuses to buffer it and the relay
        // closes the connection.
        let huge = encode_ws_frame(&me, &[1u8; 5_000]).unwrap();
        client.send(Message::Binary(huge.into())).await.unwrap();
        assert!(next_binary(&mut client).await.is_none(), "closed");
        assert!(eventually(Duration::from_secs(2), || handle.stats().connections == 1).await);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics_answer_over_http() {
    bounded(LIMIT, async {
        let (relay, _handle) = start(RelayConfig::default()).await;
        let a = WsTransport::connect(&ws_url(relay, "a", None)).await.unwrap();
        a.send(&a.local_addr(), b"\x01self").await.unwrap();
        recv(&a).await;
        assert_eq!(http_get(relay, "/health").await, (200, "ok".to_string()));
        let (status, metrics) = http_get(relay, "/metrics").await;
        assert_eq!(status, 200);
        for line in [
            "shoal_relay_connections 1",
            "shoal_relay_connections_accepted_total 1",
            "shoal_relay_forwarded_frames_total{path=\"ws_ws\"} 1",
            "shoal_relay_forwarded_frames_total{path=\"ws_udp\"} 0",
            "shoal_relay_forwarded_frames_total{path=\"udp_ws\"} 0",
            "shoal_relay_forwarded_bytes_total{path=\"ws_ws\"}",
            "shoal_relay_dropped_frames_total{reason=\"oversized\"} 0",
            "shoal_relay_slow_consumers_disconnected_total 0",
            "shoal_relay_rejected_total{reason=\"token\"} 0",
        ] {
            assert!(metrics.contains(line), "missing {line:?} in\n{metrics}");
        }
        assert_eq!(http_get(relay, "/nothing-here").await.0, 404);
        // Not a WebSocket upgrade: refused by the upgrade extractor, not routed; and a query
        // string that does not parse. Both 400s are counted.
        assert!(http_get(relay, "/ws?peer=x").await.0 >= 400);
        assert_eq!(http_get(relay, "/ws?peer=a&peer=b").await.0, 400);
        let (_, metrics) = http_get(relay, "/metrics").await;
        assert!(metrics.contains("shoal_relay_rejected_total{reason=\"request\"} 2"), "{metrics}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_directory_is_served_with_index_html_at_the_root() {
    bounded(LIMIT, async {
        let dir = std::env::temp_dir().join(format!("shoal-relay-static-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("index.html"), "<h1>shoal</h1>").unwrap();
        std::fs::write(dir.join("app.js"), "console.log(1)").unwrap();
        let (relay, _handle) = start(RelayConfig { static_dir: Some(dir.clone()), ..RelayConfig::default() }).await;
        assert_eq!(http_get(relay, "/").await, (200, "<h1>shoal</h1>".to_string()));
        assert_eq!(http_get(relay, "/app.js").await, (200, "console.log(1)".to_string()));
        assert_eq!(http_get(relay, "/health").await, (200, "ok".to_string()), "routes win over files");
        let _ = std::fs::remove_dir_all(dir);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_connection_with_the_same_peer_id_replaces_the_first() {
    bounded(LIMIT, async {
        let (relay, handle) = start(RelayConfig::default()).await;
        // Both reconnect quickly if they think they should: neither may take the peer id back.
        let options = WsOptions { reconnect: Some(quick_backoff()), ..WsOptions::default() };
        let old = WsTransport::connect_with(&ws_url(relay, "tab", None), options.clone()).await.unwrap();
        let new = WsTransport::connect_with(&ws_url(relay, "tab", None), options).await.unwrap();
        assert_eq!(old.local_addr(), new.local_addr());
        let r = tokio::time::timeout(Duration::from_secs(5), old.recv(&mut Vec::new())).await.unwrap();
        assert!(matches!(r, Err(TransportError::Closed)), "the old connection was closed for good (4001): {r:?}");
        assert!(old.is_closed());
        assert_eq!(old.disconnects(), 0, "a replaced member does not try to reconnect");
        let other = WsTransport::connect(&ws_url(relay, "other", None)).await.unwrap();
        other.send(&new.local_addr(), b"\x01to the new one").await.unwrap();
        assert_eq!(recv(&new).await.1, b"\x01to the new one");
        // Many backoff periods later, still no tug of war.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(new.is_connected());
        let stats = handle.stats();
        assert_eq!((stats.replaced, stats.connections, stats.accepted), (1, 2, 3));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutting_the_relay_down_disconnects_every_member() {
    bounded(LIMIT, async {
        let bound = shoal_relay::Relay::bind("127.0.0.1:0".parse().unwrap(), RelayConfig::default()).unwrap();
        let relay: SocketAddr = bound.local_addr();
        let handle = bound.handle();
        let served = tokio::spawn(bound.serve());
        // One member that reconnects (the default) and one that does not.
        let a = WsTransport::connect(&ws_url(relay, "a", None)).await.unwrap();
        let once = WsOptions { reconnect: None, ..WsOptions::default() };
        let b = WsTransport::connect_with(&ws_url(relay, "b", None), once).await.unwrap();
        handle.shutdown();
        tokio::time::timeout(Duration::from_secs(5), served).await.expect("serve returns").unwrap().unwrap();
        assert_eq!(handle.stats().connections, 0);
        let r = tokio::time::timeout(Duration::from_secs(5), b.recv(&mut Vec::new())).await.unwrap();
        assert!(matches!(r, Err(TransportError::Closed)), "{r:?}");
        // The relay said it was going away (1001): a is disconnected and trying again, not closed.
        assert!(eventually(Duration::from_secs(5), || !a.is_connected()).await);
        assert!(!a.is_closed());
        assert_eq!(a.disconnects(), 1);
        let r = tokio::time::timeout(Duration::from_millis(200), a.recv(&mut Vec::new())).await;
        assert!(r.is_err(), "recv keeps waiting: {r:?}");
        a.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_connection_is_closed_with_code_4001_and_the_new_one_stays() {
    bounded(LIMIT, async {
        let (relay, handle) = start(RelayConfig::default()).await;
        let mut old = raw_client(relay, "tab").await;
        let mut new = raw_client(relay, "tab").await;
        let (code, reason) = close_code(&mut old).await.expect("a close frame");
        assert_eq!(code, CloseCode::Replaced as u16);
        assert_eq!(reason, CloseCode::Replaced.reason());
        assert!(!CloseCode::should_reconnect(code));
        // The newer connection still works: it can send to itself.
        let to_self = encode_ws_frame(&format!("relay://{relay}/tab"), b"\x01still here").unwrap();
        new.send(Message::Binary(to_self.into())).await.unwrap();
        let got = next_binary(&mut new).await.expect("a frame");
        assert_eq!(decode_ws_frame(&got).unwrap().1, b"\x01still here");
        assert_eq!(handle.stats().connections, 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutting_down_closes_every_member_with_code_1001_before_serve_returns() {
    bounded(LIMIT, async {
        let bound = shoal_relay::Relay::bind("127.0.0.1:0".parse().unwrap(), RelayConfig::default()).unwrap();
        let relay = bound.local_addr();
        let handle = bound.handle();
        let served = tokio::spawn(bound.serve());
        let mut a = raw_client(relay, "a").await;
        let mut b = raw_client(relay, "b").await;
        handle.shutdown();
        tokio::time::timeout(Duration::from_secs(5), served).await.expect("serve returns").unwrap().unwrap();
        for ws in [&mut a, &mut b] {
            let (code, reason) = close_code(ws).await.expect("a close frame");
            assert_eq!(code, CloseCode::ShuttingDown as u16);
            assert_eq!(reason, CloseCode::ShuttingDown.reason());
            assert!(CloseCode::should_reconnect(code));
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_closes_its_own_connection_gets_no_reason_back() {
    bounded(LIMIT, async {
        let (relay, handle) = start(RelayConfig::default()).await;
        let mut ws = raw_client(relay, "leaver").await;
        ws.close(None).await.unwrap();
        // tungstenite answers our close with the relay's reply: an echo of ours, with no code.
        assert_eq!(close_code(&mut ws).await, None);
        assert!(eventually(Duration::from_secs(2), || handle.stats().connections == 0).await);
    })
    .await;
}

/// Reconnection within tens of milliseconds, so the tests are quick.
fn quick_backoff() -> Backoff {
    Backoff { initial: Duration::from_millis(20), max: Duration::from_millis(100) }
}

/// Binds a relay to exactly `addr` (the port a previous relay had), retrying while the old
/// sockets are still being released.
async fn rebind(addr: SocketAddr) -> shoal_relay::BoundRelay {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match shoal_relay::Relay::bind(addr, RelayConfig::default()) {
            Ok(bound) => return bound,
            Err(e) if tokio::time::Instant::now() < deadline => {
                eprintln!("rebinding {addr}: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("cannot rebind {addr}: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_reconnect_to_a_relay_restarted_on_the_same_port_and_talk_again() {
    bounded(Duration::from_secs(20), async {
        let bound = shoal_relay::Relay::bind("127.0.0.1:0".parse().unwrap(), RelayConfig::default()).unwrap();
        let relay = bound.local_addr();
        let handle = bound.handle();
        let served = tokio::spawn(bound.serve());
        let options = WsOptions { reconnect: Some(quick_backoff()), ..WsOptions::default() };
        let a = WsTransport::connect_with(&ws_url(relay, "a", None), options.clone()).await.unwrap();
        let b = WsTransport::connect_with(&ws_url(relay, "b", None), options).await.unwrap();
        let (a_addr, b_addr) = (a.local_addr(), b.local_addr());
        a.send(&b_addr, b"\x01before").await.unwrap();
        assert_eq!(recv(&b).await, (a_addr.clone(), b"\x01before".to_vec()));
        // A receive pending across the restart must see the next packet, never Closed.
        let pending = {
            let b = b.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                b.recv(&mut buf).await.map(|got| (got.from, buf))
            })
        };

        handle.shutdown();
        tokio::time::timeout(Duration::from_secs(5), served).await.expect("serve returns").unwrap().unwrap();
        assert!(eventually(Duration::from_secs(5), || !a.is_connected() && !b.is_connected()).await);
        let r = a.send(&b_addr, b"\x01into the void").await;
        assert!(matches!(r, Err(TransportError::Io(ref e)) if e.kind() == std::io::ErrorKind::NotConnected), "{r:?}");

        let restarted = rebind(relay).await;
        let handle = restarted.handle();
        tokio::spawn(restarted.serve());
        assert!(
            eventually(Duration::from_secs(10), || a.is_connected() && b.is_connected()).await,
            "both reconnect: a {a:?}, b {b:?}"
        );
        assert_eq!((a.disconnects(), a.reconnects(), b.disconnects(), b.reconnects()), (1, 1, 1, 1));
        assert_eq!((a.local_addr(), b.local_addr()), (a_addr.clone(), b_addr.clone()), "same addresses");
        assert_eq!(handle.stats().connections, 2);
        a.send(&b_addr, b"\x01after").await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), pending).await.unwrap().unwrap().expect("not Closed");
        assert_eq!(got, (a_addr, b"\x01after".to_vec()));
        b.send_reliable(&a.local_addr(), b"\x01and back").await.unwrap();
        assert_eq!(recv(&a).await, (b_addr, b"\x01and back".to_vec()));
        a.close().await;
        b.close().await;
        handle.shutdown();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binding_port_zero_gives_tcp_and_udp_the_same_port() {
    let bound = shoal_relay::Relay::bind("127.0.0.1:0".parse().unwrap(), RelayConfig::default()).unwrap();
    let addr = bound.local_addr();
    assert_ne!(addr.port(), 0);
    assert_eq!(bound.public_addr(), addr.to_string());
    // Both are taken now.
    assert!(std::net::TcpListener::bind(addr).is_err());
    assert!(std::net::UdpSocket::bind(addr).is_err());
    let bad = shoal_relay::Relay::bind(addr, RelayConfig::default()).unwrap_err();
    assert_eq!(bad.kind(), std::io::ErrorKind::AddrInUse);
    let invalid = RelayConfig { max_frame: 1, ..RelayConfig::default() };
    let e = shoal_relay::Relay::bind("127.0.0.1:0".parse().unwrap(), invalid).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
}

/// Issue 13, defect 6: a public address whose host name does not resolve would make `relay://`
/// addresses no native member can use; the relay refuses to start and says why.
#[test]
fn a_public_host_name_that_does_not_resolve_is_refused_at_startup_with_a_clear_error() {
    // `.invalid` never resolves (RFC 6761).
    let config = RelayConfig { public_addr: "no-such-relay.invalid:8080".into(), ..RelayConfig::default() };
    let e = shoal_relay::Relay::bind("127.0.0.1:0".parse().unwrap(), config).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{e}");
    let text = e.to_string();
    assert!(text.contains("public_addr no-such-relay.invalid:8080 does not resolve"), "{text}");

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shoal-relay"))
        .args(["--bind", "127.0.0.1:0", "--public-addr", "no-such-relay.invalid:8080"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run shoal-relay");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "shoal-relay started with an unresolvable public address: {stderr}");
    assert!(stderr.contains("public_addr no-such-relay.invalid:8080 does not resolve"), "{stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("listening on"), "nothing was bound");
}

#[test]
fn a_udp_allow_entry_that_is_not_a_network_is_refused_at_startup_with_a_clear_error() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shoal-relay"))
        .args(["--bind", "127.0.0.1:0", "--udp-allow", "10.0.0.0/8,10.0.0.0/33"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run shoal-relay");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "shoal-relay started with a bad --udp-allow: {stderr}");
    assert!(stderr.contains("--udp-allow: \"10.0.0.0/33\" is not an IP network"), "{stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("listening on"), "nothing was bound");
}
