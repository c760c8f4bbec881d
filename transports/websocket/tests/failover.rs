//! A transport given the relays of a fleet: it joins through the first relay that welcomes it,
//! fails over in the order of its list, and a welcome at another relay with its peer id moves it,
//! and the member that runs it. First against fake relays (plain tokio-tungstenite servers on
//! loopback, one listener each: a connection the test has not accepted yet waits in the listen
//! backlog, so the test decides which relay answers when), then against two real linked
//! `shoal-relay`s with a native UDP member watching.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::SinkExt;
use shoal::relay::{decode_ws_frame, encode_ws_frame};
use shoal::{Addr, Cluster, Transport};
use shoal_core::{Config, Event};
use shoal_relay::{Relay, RelayConfig, RelayHandle};
use shoal_websocket::{Backoff, WsError, WsOptions, WsTransport};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

type Server = WebSocketStream<TcpStream>;

async fn bounded<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), f).await.expect("test timed out")
}

/// Polls `check` for up to 10 s.
async fn eventually(check: impl FnMut() -> bool) -> bool {
    shoal_testkit::eventually(Duration::from_secs(10), check).await
}

/// Reconnection within tens of milliseconds, so the tests are quick.
fn fast() -> WsOptions {
    let backoff = Backoff { initial: Duration::from_millis(10), max: Duration::from_millis(40) };
    WsOptions { reconnect: Some(backoff), connect_timeout: Duration::from_secs(3), ..WsOptions::default() }
}

fn url(relay: SocketAddr) -> String {
    format!("ws://{relay}/ws?peer=me")
}

fn welcome(relay: SocketAddr, peer: &str) -> Message {
    Message::Binary(encode_ws_frame(&format!("relay://{relay}/{peer}"), &[]).unwrap().into())
}

async fn listen() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

/// A loopback address nothing listens on.
fn nobody() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// Accepts the next connection on `listener` (within 5 s: the transport must come to this relay
/// next), checks that it asks for peer id `me`, and sends `first`.
async fn accept(listener: &TcpListener, first: Message) -> Server {
    let (tcp, _) =
        tokio::time::timeout(Duration::from_secs(5), listener.accept()).await.expect("a connection here").unwrap();
    #[allow(clippy::result_large_err)]
    let check = |request: &Request, response: Response| -> Result<Response, ErrorResponse> {
        assert_eq!(request.uri().query(), Some("peer=me"));
        Ok(response)
    };
    let mut ws = tokio_tungstenite::accept_hdr_async(tcp, check).await.unwrap();
    ws.send(first).await.unwrap();
    ws
}

/// Accepts the next connection on `listener` (within 5 s) and refuses its upgrade with 403.
async fn refuse(listener: &TcpListener) {
    let (tcp, _) =
        tokio::time::timeout(Duration::from_secs(5), listener.accept()).await.expect("a connection here").unwrap();
    #[allow(clippy::result_large_err)]
    let refuse = |_: &Request, _: Response| -> Result<Response, ErrorResponse> {
        let mut e = ErrorResponse::new(Some("not now".into()));
        *e.status_mut() = StatusCode::FORBIDDEN;
        Err(e)
    };
    let _ = tokio_tungstenite::accept_hdr_async(tcp, refuse).await;
}

/// What a transport reported, in order: link changes and moves.
#[derive(Clone, Default)]
struct Reports(Arc<Mutex<Vec<String>>>);

impl Reports {
    fn watch(&self, t: &Arc<WsTransport>) {
        let sink = self.0.clone();
        t.watch_link(Box::new(move |up| {
            sink.lock().unwrap_or_else(PoisonError::into_inner).push(format!("link {}", if up { "up" } else { "down" }))
        }));
        let (sink, transport) = (self.0.clone(), Arc::downgrade(t));
        t.watch_local_addr(Box::new(move |old, new| {
            let t = transport.upgrade().expect("the transport reports while it lives");
            let line = format!("moved {old} -> {new}; local_addr {}, connected {}", t.local_addr(), t.is_connected());
            sink.lock().unwrap_or_else(PoisonError::into_inner).push(line);
        }));
    }

    fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transport_given_two_relays_whose_first_is_down_joins_through_the_second() {
    bounded(async {
        let (l2, r2) = listen().await;
        let urls = [url(nobody()), url(r2)];
        let (t, _server) = tokio::join!(WsTransport::connect_any_with(&urls, fast()), accept(&l2, welcome(r2, "me")));
        let t = t.expect("connected through the second relay");
        assert_eq!(t.local_addr().as_str(), format!("relay://{r2}/me"));
        assert_eq!((t.relay_index(), t.relays()), (1, 2));
        assert!(t.is_connected());
        assert_eq!((t.moves(), t.reconnects(), t.disconnects()), (0, 0, 0));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_no_relay_welcomes_us_connecting_fails_with_the_last_relays_error() {
    bounded(async {
        let (l1, r1) = listen().await;
        let urls = [url(r1), url(nobody())];
        let (r, ()) = tokio::join!(WsTransport::connect_any_with(&urls, fast()), refuse(&l1));
        assert!(matches!(r, Err(WsError::Connect(_))), "{r:?}");
        let urls = [url(nobody()), url(r1)];
        let (r, ()) = tokio::join!(WsTransport::connect_any_with(&urls, fast()), refuse(&l1));
        assert!(matches!(r, Err(WsError::Refused { status: 403 })), "{r:?}");
        let r = WsTransport::connect_any::<&str>(&[]).await;
        assert!(matches!(r, Err(WsError::InvalidOptions(_))), "{r:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transport_whose_relay_dies_moves_to_the_second_relay_and_reports_its_new_address_before_its_link_is_up() {
    bounded(async {
        let (l1, r1) = listen().await;
        let (l2, r2) = listen().await;
        let urls = [url(r1), url(r2)];
        let (t, first) = tokio::join!(WsTransport::connect_any_with(&urls, fast()), accept(&l1, welcome(r1, "me")));
        let t = t.unwrap();
        let reports = Reports::default();
        reports.watch(&t);
        // Relay 1 dies: its connection and its port.
        drop(first);
        drop(l1);
        let mut second = accept(&l2, welcome(r2, "me")).await;
        assert!(eventually(|| t.is_connected()).await, "reconnected through relay 2");
        let (old, new) = (format!("relay://{r1}/me"), format!("relay://{r2}/me"));
        assert_eq!(
            reports.lines(),
            [
                "link down".to_string(),
                format!("moved {old} -> {new}; local_addr {new}, connected false"),
                "link up".into()
            ]
        );
        assert_eq!(t.local_addr().as_str(), new);
        assert_eq!((t.relay_index(), t.moves(), t.reconnects(), t.disconnects()), (1, 1, 1, 1));
        let dest = Addr::parse("udp://10.0.0.5:7946").unwrap();
        t.send(&dest, b"\x01from relay 2").await.unwrap();
        let got = loop {
            match tokio::time::timeout(Duration::from_secs(5), futures_util::StreamExt::next(&mut second)).await {
                Ok(Some(Ok(Message::Binary(b)))) => break b,
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
                other => panic!("expected a binary message, got {other:?}"),
            }
        };
        assert_eq!(decode_ws_frame(&got).unwrap(), ("udp://10.0.0.5:7946", &b"\x01from relay 2"[..]));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_drop_the_transport_tries_its_relay_once_then_the_next_ones_in_turn_round_the_list() {
    bounded(async {
        let (l1, r1) = listen().await;
        let (l2, r2) = listen().await;
        let (l3, _) = listen().await;
        let urls = [url(r1), url(r2), url(l3.local_addr().unwrap())];
        // Relay 1 refuses at first: the transport starts on relay 2.
        let (t, (), second) = tokio::join!(WsTransport::connect_any_with(&urls, fast()), refuse(&l1), async {
            accept(&l2, welcome(r2, "me")).await
        });
        let t = t.unwrap();
        assert_eq!((t.relay_index(), t.local_addr().as_str()), (1, format!("relay://{r2}/me").as_str()));
        drop(second);
        // Relay 2 once, then 3, then round to 1: each accept waits for its relay to be asked.
        refuse(&l2).await;
        refuse(&l3).await;
        let _first = accept(&l1, welcome(r1, "me")).await;
        assert!(eventually(|| t.is_connected()).await);
        assert_eq!((t.relay_index(), t.local_addr().as_str()), (0, format!("relay://{r1}/me").as_str()));
        assert_eq!((t.moves(), t.reconnects(), t.disconnects()), (1, 1, 1));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_reaches_the_member_which_advertises_the_new_address_at_a_higher_incarnation() {
    bounded(async {
        let (l1, r1) = listen().await;
        let (l2, r2) = listen().await;
        let urls = [url(r1), url(r2)];
        let (t, first) = tokio::join!(WsTransport::connect_any_with(&urls, fast()), accept(&l1, welcome(r1, "me")));
        let t = t.unwrap();
        let transports: Vec<Arc<dyn Transport>> = vec![t.clone()];
        let cluster = Cluster::builder("me").unwrap().config(Config::local()).spawn(transports).unwrap();
        let before = cluster.local_member();
        assert_eq!(before.addr.as_str(), format!("relay://{r1}/me"));
        drop(first);
        drop(l1);
        let _second = accept(&l2, welcome(r2, "me")).await;
        let new = format!("relay://{r2}/me");
        assert!(eventually(|| t.is_connected()).await);
        // Moved inside the transport's report, before its link came up.
        assert_eq!(cluster.local_addr().as_str(), new);
        let now = cluster.local_member();
        assert_eq!(now.addr.as_str(), new);
        assert!(now.incarnation > before.incarnation, "{} after {}", now.incarnation, before.incarnation);
        assert_eq!(cluster.metrics().stats.moves, 1);
        cluster.shutdown().await;
    })
    .await;
}

// Two real relays of one fleet.

const RELAY_KEY: &str = "a fleet key for the failover tests";

fn fleet(peers: &[SocketAddr]) -> RelayConfig {
    RelayConfig {
        relay_key: Some(RELAY_KEY.into()),
        peer_relays: peers.iter().map(|p| format!("ws://{p}")).collect(),
        ..RelayConfig::default()
    }
}

async fn serve(config: RelayConfig) -> (SocketAddr, RelayHandle, tokio::task::JoinHandle<std::io::Result<()>>) {
    let bound = Relay::bind("127.0.0.1:0".parse().unwrap(), config).expect("bind relay");
    let (addr, handle) = (bound.local_addr(), bound.handle());
    (addr, handle, tokio::spawn(bound.serve()))
}

/// A member on UDP + TCP on one loopback port, with `meta`.
async fn udp_member(name: &str, seed: u64, meta: &str) -> Cluster {
    let (udp, tcp) = shoal_testkit::udp_and_tcp().await;
    let transports: Vec<Arc<dyn Transport>> = vec![udp, tcp];
    let builder = Cluster::builder(name).unwrap().config(Config::browser()).seed(seed).metadata(meta);
    builder.spawn(transports).expect("start member")
}

/// Every suspicion and failure `cluster` reports, as `"<id> by <by>"` lines.
fn accusations(cluster: &Cluster) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let (sink, mut events) = (lines.clone(), cluster.events());
    tokio::spawn(async move {
        while let Some(e) = events.next().await {
            let line = match e {
                Event::Suspected { id, by, .. } => format!("suspect {id} by {by}"),
                Event::Failed { id, by, .. } => format!("fail {id} by {by}"),
                _ => continue,
            };
            sink.lock().unwrap_or_else(PoisonError::into_inner).push(line);
        }
    });
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_whose_relay_dies_moves_to_a_linked_relay_and_a_udp_member_holds_it_alive_there_without_a_failure() {
    bounded(async {
        let (r2, h2, _s2) = serve(fleet(&[])).await;
        let (r1, h1, s1) = serve(fleet(&[r2])).await;
        let linked = |a: &RelayHandle, b: &RelayHandle| a.links().iter().any(|l| l.relay == b.public_addr() && l.up);
        assert!(eventually(|| linked(&h1, &h2) && linked(&h2, &h1)).await, "the relays linked");
        // A native member, and one announcing relay 2 as a relay of the fleet (as a relay's own
        // member does).
        let native = udp_member("native", 1, "").await;
        let tagger = udp_member("tagger", 2, &format!("shoal-relay={r2}")).await;
        tagger.join(&[native.local_addr()]).await.expect("the tagger joins");
        let urls = [r1, r2].map(|r| shoal_websocket::member_url(&format!("ws://{r}"), "edge"));
        let ws = WsTransport::connect_any(&urls).await.expect("connect through relay 1");
        let transports: Vec<Arc<dyn Transport>> = vec![ws.clone()];
        let edge = Cluster::builder("edge").unwrap().config(Config::browser()).seed(3).spawn(transports).unwrap();
        edge.join(&[native.local_addr()]).await.expect("the edge member joins");
        let seen_at = |addr: &str| {
            let held =
                |m: &Cluster| m.alive_members().iter().any(|x| x.id.as_str() == "edge" && x.addr.as_str() == addr);
            held(&native) && held(&tagger)
        };
        let (old, new) = (format!("relay://{r1}/edge"), format!("relay://{r2}/edge"));
        assert!(eventually(|| seen_at(&old) && edge.alive_members().len() == 2).await, "formed");
        let accused = accusations(&native);
        let before = edge.local_member().incarnation;

        h1.shutdown();
        s1.await.expect("relay 1's task").expect("relay 1 served");
        assert!(eventually(|| ws.moves() == 1 && ws.is_connected()).await, "moved to relay 2");
        assert_eq!(edge.local_addr().as_str(), new);
        assert!(edge.local_member().incarnation > before);
        assert!(eventually(|| seen_at(&new)).await, "native: {:?}", native.members());
        assert_eq!(native.metrics().stats.relay_moves, 1);
        // The edge member and the native one keep probing each other at the new address.
        let pings = (native.metrics().stats.pings_sent, edge.metrics().stats.pings_sent);
        let probed =
            || native.metrics().stats.pings_sent >= pings.0 + 4 && edge.metrics().stats.pings_sent >= pings.1 + 4;
        assert!(eventually(probed).await);
        assert!(seen_at(&new) && edge.alive_members().len() == 2, "edge: {:?}", edge.members());
        let accused = accused.lock().unwrap_or_else(PoisonError::into_inner).clone();
        eprintln!("accusations raised by the native member: {accused:?}");
        assert!(!accused.iter().any(|l| l.starts_with("fail ")), "nobody declared failed: {accused:?}");
        for m in [edge, native, tagger] {
            m.shutdown().await;
        }
        h2.shutdown();
    })
    .await;
}
