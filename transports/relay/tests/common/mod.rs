//! Helpers for the relay's integration tests: a relay on loopback port 0, raw HTTP and WebSocket
//! clients, bounded waits.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use shoal::{Cluster, Transport};
use shoal_core::Config;
use shoal_relay::{Relay, RelayConfig, RelayHandle};
#[allow(unused_imports)] // not every test binary that includes this module uses them all
pub use shoal_testkit::{eventually, member as native_member, state_of};
use shoal_websocket::WsTransport;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type RawClient = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Every test finishes within this, or fails.
pub async fn bounded<T>(limit: Duration, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, f).await.expect("test timed out")
}

/// A relay on 127.0.0.1, port 0, served on the current runtime.
pub async fn start(config: RelayConfig) -> (SocketAddr, RelayHandle) {
    let bound = Relay::bind("127.0.0.1:0".parse().unwrap(), config).expect("bind relay");
    let addr = bound.local_addr();
    let handle = bound.handle();
    tokio::spawn(bound.serve());
    (addr, handle)
}

pub fn ws_url(relay: SocketAddr, peer: &str, token: Option<&str>) -> String {
    match token {
        Some(t) => format!("ws://{relay}/ws?peer={peer}&token={t}"),
        None => format!("ws://{relay}/ws?peer={peer}"),
    }
}

/// A plain WebSocket client (no Shoal transport), with its welcome already read.
pub async fn raw_client(relay: SocketAddr, peer: &str) -> RawClient {
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url(relay, peer, None)).await.expect("connect");
    let welcome = next_binary(&mut ws).await.expect("welcome");
    let (addr, packet) = shoal::relay::decode_ws_frame(&welcome).unwrap();
    assert_eq!(addr, format!("relay://{relay}/{peer}"));
    assert!(packet.is_empty());
    ws
}

/// The next binary message within 5 s, `None` if the connection ended (with or without a close
/// frame).
pub async fn next_binary(ws: &mut RawClient) -> Option<Vec<u8>> {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await.expect("a message in time") {
            Some(Ok(Message::Binary(b))) => return Some(b.to_vec()),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(Message::Close(_))) => return None,
            Some(Ok(other)) => panic!("unexpected message {other:?}"),
            Some(Err(_)) | None => return None,
        }
    }
}

/// Reads (and discards) until the connection ends, within 5 s: the close frame's code and
/// reason, or `None` if it ended without one.
pub async fn close_code(ws: &mut RawClient) -> Option<(u16, String)> {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await.expect("the end in time") {
            Some(Ok(Message::Close(Some(frame)))) => return Some((frame.code.into(), frame.reason.to_string())),
            Some(Ok(Message::Close(None))) | Some(Err(_)) | None => return None,
            Some(Ok(_)) => continue,
        }
    }
}

/// `GET path` over a fresh connection: status code and body.
pub async fn http_get(relay: SocketAddr, path: &str) -> (u16, String) {
    let mut tcp = TcpStream::connect(relay).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {relay}\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut response)).await.expect("response").unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status line");
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// `POST path` with `body` over a fresh connection, with a `Content-Type` header only if one is
/// given (a beacon's `ArrayBuffer` body has none): status code and body.
pub async fn http_post(relay: SocketAddr, path: &str, content_type: Option<&str>, body: &[u8]) -> (u16, String) {
    let mut tcp = TcpStream::connect(relay).await.expect("connect");
    let content_type = content_type.map(|t| format!("Content-Type: {t}\r\n")).unwrap_or_default();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {relay}\r\n{content_type}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    // The server may answer (413) and close before taking the whole body: what it said still counts.
    let _ = tcp.write_all(body).await;
    let mut response = Vec::new();
    // A reset after the answer (a body left unread) still leaves the answer in `response`.
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut response)).await.expect("response");
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status line");
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// A relay on 127.0.0.1 that writes `host:PORT` into `relay://` addresses, where PORT is its own
/// (a port found free first, retried if something takes it in between).
pub async fn start_named(host: &str) -> (SocketAddr, RelayHandle) {
    for _ in 0..20 {
        let free =
            Relay::bind("127.0.0.1:0".parse().unwrap(), RelayConfig::default()).expect("bind relay").local_addr();
        let config = RelayConfig { public_addr: format!("{host}:{}", free.port()), ..RelayConfig::default() };
        match Relay::bind(free, config) {
            Ok(bound) => {
                let handle = bound.handle();
                tokio::spawn(bound.serve());
                return (free, handle);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => continue,
            Err(e) => panic!("bind a relay named {host}: {e}"),
        }
    }
    panic!("no loopback port stayed free for the relay");
}

/// A member whose only transport is a WebSocket to the relay, and that transport (for its
/// counters).
pub async fn ws_member(relay: SocketAddr, name: &str, token: Option<&str>, seed: u64) -> (Cluster, Arc<WsTransport>) {
    let ws = WsTransport::connect(&ws_url(relay, name, token)).await.expect("connect to the relay");
    let transports: Vec<Arc<dyn Transport>> = vec![ws.clone()];
    (Cluster::builder(name).unwrap().config(Config::local()).seed(seed).spawn(transports).unwrap(), ws)
}
