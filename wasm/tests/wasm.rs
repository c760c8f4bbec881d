//! wasm-bindgen tests, run in Node.js: `cargo test -p shoal-wasm --target wasm32-unknown-unknown`
//! (the runner is configured in the workspace's .cargo/config.toml), and the same tests in headless
//! Chromium: `CHROMEDRIVER=/usr/bin/chromedriver WASM_BINDGEN_USE_BROWSER=1 cargo test -p shoal-wasm
//! --target wasm32-unknown-unknown` (`runs_where_the_runner_was_asked_to_run` fails if they did not).
#![cfg(target_arch = "wasm32")]
// The driver API takes `Arc`s; on wasm32 transports and runtimes are single-threaded (`!Send`).
#![allow(clippy::arc_with_non_send_sync)]

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::Duration;

use js_sys::{Array, Function, Uint8Array};
use shoal_core::driver::relay::encode_ws_frame;
use shoal_core::driver::{Addr, Cluster, Received, Runtime, Transport, TransportError};
use shoal_core::{Config, Event, Node, NodeId};
use shoal_wasm::{BrowserRuntime, WebSocketTransport, WsOptions};
use wasm_bindgen::prelude::*;
use wasm_bindgen_test::wasm_bindgen_test;

fn runtime() -> BrowserRuntime {
    BrowserRuntime::new().expect("a JS environment with setTimeout")
}

fn global_has(name: &str) -> bool {
    js_sys::Reflect::has(&js_sys::global(), &name.into()).unwrap_or(false)
}

/// A property path of the global object as a string (`""` when missing).
fn global_str(path: &[&str]) -> String {
    let mut v: JsValue = js_sys::global().into();
    for key in path {
        v = js_sys::Reflect::get(&v, &(*key).into()).unwrap_or(JsValue::UNDEFINED);
    }
    v.as_string().unwrap_or_default()
}

/// Whether the runner was asked for a browser: `WASM_BINDGEN_USE_BROWSER` is read when this crate
/// is compiled (rustc records it, so cargo rebuilds the tests when it changes).
const IN_BROWSER: bool = option_env!("WASM_BINDGEN_USE_BROWSER").is_some();

#[wasm_bindgen_test]
fn runs_where_the_runner_was_asked_to_run() {
    if IN_BROWSER {
        assert!(
            global_has("document") && global_has("navigator"),
            "WASM_BINDGEN_USE_BROWSER is set, but this is no page"
        );
        let agent = global_str(&["navigator", "userAgent"]);
        assert!(agent.contains("Chrome"), "expected (headless) Chromium, found {agent:?}");
    } else {
        let node = global_str(&["process", "versions", "node"]);
        assert!(!node.is_empty() && !global_has("document"), "expected Node.js");
    }
}

#[wasm_bindgen_test]
async fn in_a_browser_a_real_websocket_that_cannot_connect_fails_the_connect() {
    if !IN_BROWSER {
        return; // Node 20 has no global WebSocket (the test below covers that case)
    }
    assert!(global_has("WebSocket"));
    // Nothing listens on the discard port of loopback: the browser's WebSocket reports an error
    // and a close (1006) before any welcome frame.
    let err = WebSocketTransport::connect("ws://127.0.0.1:9/ws?peer=tab-1", None, WsOptions::default(), None)
        .await
        .err()
        .expect("nothing listens on 127.0.0.1:9");
    assert!(!err.is_empty());
}

#[wasm_bindgen_test]
async fn the_clock_advances_and_sleep_sleeps() {
    let rt = runtime();
    assert!(rt.uses_performance_clock(), "Node has performance.now()");
    let t0 = rt.now();
    let wall0 = js_sys::Date::now();
    rt.sleep(Duration::from_millis(60)).await;
    let elapsed = rt.now().as_millis() - t0.as_millis();
    let wall = js_sys::Date::now() - wall0;
    assert!(elapsed >= 55, "the runtime clock advanced only {elapsed} ms over a 60 ms sleep");
    assert!(wall >= 55.0, "the sleep returned after {wall} ms");
    assert!(elapsed < 2_000 && wall < 2_000.0);
}

#[wasm_bindgen_test]
async fn the_clock_never_goes_backwards() {
    let rt = runtime();
    let mut last = rt.now();
    for _ in 0..1_000 {
        let now = rt.now();
        assert!(now >= last);
        last = now;
    }
}

#[wasm_bindgen_test]
async fn a_dropped_sleep_never_completes_and_others_still_do() {
    let rt = runtime();
    drop(rt.sleep(Duration::from_millis(5)));
    let spawned = Rc::new(Cell::new(false));
    let flag = spawned.clone();
    rt.spawn(Box::pin(async move { flag.set(true) }));
    rt.sleep(Duration::from_millis(20)).await;
    assert!(spawned.get(), "a spawned task ran");
}

#[wasm_bindgen_test]
fn random_seeds_come_from_crypto_get_random_values() {
    let rt = runtime();
    let seeds: Vec<u64> = (0..4).map(|_| rt.random_seed()).collect();
    assert!(seeds.windows(2).all(|w| w[0] != w[1]), "{seeds:?}");
}

#[wasm_bindgen_test]
fn a_node_can_be_created_and_produces_a_transmit() {
    let rt = runtime();
    let me = Addr::parse("relay://relay.test:8080/tab-1").unwrap();
    let seed = Addr::parse("udp://10.0.0.1:7946").unwrap();
    let mut node = Node::new(Config::browser(), NodeId::new("tab-1").unwrap(), me, rt.random_seed(), rt.now()).unwrap();
    node.join(std::slice::from_ref(&seed), rt.now()).unwrap();
    let t = node.poll_transmit().expect("joining sends to the seed");
    assert_eq!(t.to, seed);
    assert!(!t.bytes.is_empty() && t.bytes.len() <= Config::browser().max_reliable_size);
}

// ----- WebSocketTransport against a scripted WebSocket ------------------------------------------

#[wasm_bindgen(inline_js = r#"
export class FakeWebSocket {
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.bufferedAmount = 0;
    this.binaryType = "blob";
    this.sent = [];
    this.closedWith = null;
    FakeWebSocket.last = this;
    const u = new URL(url);
    const welcome = FakeWebSocket.welcome ?? `relay://${u.host}/${u.searchParams.get("peer")}`;
    setTimeout(() => {
      this.readyState = 1;
      this.onopen?.({});
      if (welcome === "close") {
        this.readyState = 3;
        this.onclose?.({ code: 1008, reason: "bad token" });
      } else {
        this.deliver(FakeWebSocket.frame(welcome, new Uint8Array(0)));
      }
    }, 0);
  }
  static frame(addr, packet) {
    const a = new TextEncoder().encode(addr);
    const f = new Uint8Array(1 + a.length + packet.length);
    f[0] = a.length;
    f.set(a, 1);
    f.set(packet, 1 + a.length);
    return f;
  }
  send(data) {
    if (this.binaryType !== "arraybuffer") throw new Error("binaryType was not set");
    this.sent.push(new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength)));
  }
  close(code, reason) {
    this.readyState = 3;
    this.closedWith = [code, reason];
    setTimeout(() => this.onclose?.({ code, reason }), 0);
  }
  deliver(bytes) {
    this.onmessage?.({ data: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) });
  }
  /** The relay ends the connection. */
  drop(code, reason) {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }
}
export function fake_ctor(welcome) { FakeWebSocket.welcome = welcome; return FakeWebSocket; }
export function fake_last() { return FakeWebSocket.last; }
export function fake_deliver(ws, bytes) { ws.deliver(bytes); }
export function fake_deliver_text(ws, text) { ws.onmessage?.({ data: text }); }
export function fake_sent(ws) { return ws.sent; }
export function fake_closed_with(ws) { return ws.closedWith; }
export function fake_drop(ws, code, reason) { ws.drop(code, reason); }
export function fake_set_welcome(welcome) { FakeWebSocket.welcome = welcome; }
export function reasons_collector() {
  const reasons = [];
  const f = (reason) => reasons.push(reason);
  f.reasons = reasons;
  return f;
}
export function collected(f) { return f.reasons.slice(); }
"#)]
extern "C" {
    fn fake_ctor(welcome: Option<String>) -> Function;
    fn fake_last() -> JsValue;
    fn fake_deliver(ws: &JsValue, bytes: &[u8]);
    fn fake_deliver_text(ws: &JsValue, text: &str);
    fn fake_sent(ws: &JsValue) -> Array;
    fn fake_closed_with(ws: &JsValue) -> JsValue;
    fn fake_drop(ws: &JsValue, code: u16, reason: &str);
    fn fake_set_welcome(welcome: Option<String>);
    fn reasons_collector() -> Function;
    fn collected(f: &Function) -> Vec<String>;
}

const URL: &str = "ws://relay.test:9/ws?peer=tab-1";

async fn connect(options: WsOptions) -> (WebSocketTransport, JsValue) {
    let t = WebSocketTransport::connect(URL, Some(fake_ctor(None)), options, None).await.expect("welcome");
    (t, fake_last())
}

#[wasm_bindgen_test]
async fn the_welcome_frame_gives_the_transport_its_relay_address() {
    let (t, _) = connect(WsOptions::default()).await;
    assert_eq!(t.local_addr().as_str(), "relay://relay.test:9/tab-1");
    for to in ["relay://relay.test:9/x", "udp://10.0.0.1:7946", "tcp://10.0.0.1:7946"] {
        let to = Addr::parse(to).unwrap();
        assert!(t.claims(&to, false) && t.claims(&to, true), "{to}");
    }
    assert!(!t.claims(&Addr::parse("rtc://peer").unwrap(), false));
}

#[wasm_bindgen_test]
async fn sends_are_framed_with_the_destination_and_receives_carry_the_stamped_source() {
    let (t, ws) = connect(WsOptions::default()).await;
    let peer = Addr::parse("relay://relay.test:9/tab-2").unwrap();
    t.send(&peer, b"\x01ping").await.unwrap();
    t.send_reliable(&peer, b"\x01push-pull").await.unwrap();
    let sent: Vec<Vec<u8>> = fake_sent(&ws).iter().map(|v| Uint8Array::new(&v).to_vec()).collect();
    assert_eq!(
        sent,
        vec![
            encode_ws_frame(peer.as_str(), b"\x01ping").unwrap(),
            encode_ws_frame(peer.as_str(), b"\x01push-pull").unwrap()
        ]
    );

    fake_deliver(&ws, &encode_ws_frame(peer.as_str(), b"\x01ack").unwrap());
    let mut buf = Vec::new();
    let got = t.recv(&mut buf).await.unwrap();
    assert_eq!(got, Received { from: peer, reliable: false });
    assert_eq!(buf, b"\x01ack");
    let c = t.counters();
    assert_eq!((c.packets_out, c.packets_in, c.dropped_in), (2, 1, 0));
}

#[wasm_bindgen_test]
async fn frames_beyond_the_relay_limit_are_refused_before_sending() {
    let (t, ws) = connect(WsOptions { max_frame: 256, ..WsOptions::default() }).await;
    let peer = Addr::parse("relay://relay.test:9/tab-2").unwrap();
    let err = t.send_reliable(&peer, &[1; 300]).await.unwrap_err();
    assert!(matches!(err, TransportError::TooLarge { max: 256, .. }), "{err}");
    assert_eq!(fake_sent(&ws).length(), 0);
    assert_eq!(t.counters().send_errors, 1);
}

#[wasm_bindgen_test]
async fn oversized_text_and_malformed_frames_are_dropped_and_counted() {
    let (t, ws) = connect(WsOptions { max_frame: 64, ..WsOptions::default() }).await;
    fake_deliver(&ws, &encode_ws_frame("relay://relay.test:9/tab-2", &[1; 100]).unwrap());
    fake_deliver_text(&ws, "hello");
    fake_deliver(&ws, &[9, b'x']);
    fake_deliver(&ws, &encode_ws_frame("no scheme", b"\x01").unwrap());
    assert_eq!(t.counters().dropped_in, 4);
}

#[wasm_bindgen_test]
async fn a_full_receive_queue_drops_new_frames() {
    let (t, ws) = connect(WsOptions { queue_frames: 2, ..WsOptions::default() }).await;
    for i in 0..5u8 {
        fake_deliver(&ws, &encode_ws_frame("relay://relay.test:9/tab-2", &[1, i]).unwrap());
    }
    assert_eq!(t.counters().dropped_in, 3);
    let mut buf = Vec::new();
    t.recv(&mut buf).await.unwrap();
    assert_eq!(buf, [1, 0], "the oldest frames are kept");
}

#[wasm_bindgen_test]
async fn close_ends_receiving_and_sending() {
    let (t, ws) = connect(WsOptions::default()).await;
    t.close().await;
    let mut buf = Vec::new();
    assert!(matches!(t.recv(&mut buf).await, Err(TransportError::Closed)));
    let to = Addr::parse("relay://relay.test:9/tab-2").unwrap();
    assert!(matches!(t.send(&to, b"\x01").await, Err(TransportError::Closed)));
    assert!(!fake_closed_with(&ws).is_null(), "the socket was closed");
}

#[wasm_bindgen_test]
async fn a_relay_that_closes_or_sends_garbage_instead_of_a_welcome_fails_the_connect() {
    let err = WebSocketTransport::connect(URL, Some(fake_ctor(Some("close".into()))), WsOptions::default(), None)
        .await
        .err()
        .expect("no welcome");
    assert!(err.contains("1008") && err.contains("bad token"), "{err}");
    let err =
        WebSocketTransport::connect(URL, Some(fake_ctor(Some("udp://1.2.3.4:5".into()))), WsOptions::default(), None)
            .await
            .err()
            .expect("not a relay address");
    assert!(err.contains("invalid address"), "{err}");
}

/// A transport that reconnects: `on_disconnect` records the reasons it was called with.
async fn connect_reconnecting() -> (WebSocketTransport, JsValue, Function) {
    let on_disconnect = reasons_collector();
    let t = WebSocketTransport::connect(URL, Some(fake_ctor(None)), WsOptions::default(), Some(on_disconnect.clone()))
        .await
        .expect("welcome");
    (t, fake_last(), on_disconnect)
}

/// Whether `recv` has a result within a few event-loop turns.
async fn recv_now(t: &WebSocketTransport) -> Option<Result<Received, TransportError>> {
    let mut buf = Vec::new();
    let sleep = runtime().sleep(Duration::from_millis(20));
    let result = match futures_util::future::select(Box::pin(t.recv(&mut buf)), sleep).await {
        futures_util::future::Either::Left((r, _)) => Some(r),
        futures_util::future::Either::Right(_) => None,
    };
    result
}

#[wasm_bindgen_test]
async fn a_dropped_connection_is_reported_and_a_reconnect_resumes_at_the_same_address() {
    let (t, first, on_disconnect) = connect_reconnecting().await;
    fake_drop(&first, 1001, "relay shutting down");
    assert_eq!(collected(&on_disconnect), vec!["relay connection closed (1001: relay shutting down)".to_owned()]);
    assert!(recv_now(&t).await.is_none(), "receiving waits for the next connection instead of ending");
    let peer = Addr::parse("relay://relay.test:9/tab-2").unwrap();
    let err = t.send(&peer, b"\x01lost").await.unwrap_err();
    assert!(matches!(err, TransportError::Io(ref e) if e.kind() == std::io::ErrorKind::NotConnected), "{err}");
    assert_eq!(t.close_reason(), None);

    assert_eq!(t.reconnect().await, Ok(None));
    let second = fake_last();
    assert!(!second.loose_eq(&first), "a new socket");
    assert_eq!(t.local_addr().as_str(), "relay://relay.test:9/tab-1");
    t.send(&peer, b"\x01again").await.unwrap();
    assert_eq!(fake_sent(&second).length(), 1);
    fake_deliver(&second, &encode_ws_frame(peer.as_str(), b"\x01ack").unwrap());
    let got = recv_now(&t).await.expect("a packet").unwrap();
    assert_eq!(got.from, peer);
    // The old socket's events no longer reach the transport.
    fake_deliver(&first, &encode_ws_frame(peer.as_str(), b"\x01stale").unwrap());
    assert!(recv_now(&t).await.is_none());
}

#[wasm_bindgen_test]
async fn a_failed_reconnect_attempt_reports_why_and_a_later_one_can_succeed() {
    let (t, first, _) = connect_reconnecting().await;
    fake_drop(&first, 1006, "");
    fake_set_welcome(Some("close".into()));
    let failed = t.reconnect().await.expect("not fatal");
    assert!(failed.is_some_and(|r| r.contains("1008")), "the attempt's own reason");
    assert_eq!(t.close_reason(), None, "still waiting for a connection");
    fake_set_welcome(None);
    assert_eq!(t.reconnect().await, Ok(None));
}

#[wasm_bindgen_test]
async fn a_connection_replaced_by_another_with_our_peer_id_closes_for_good() {
    let (t, first, on_disconnect) = connect_reconnecting().await;
    fake_drop(&first, 4001, "replaced by a newer connection with the same peer id");
    assert!(collected(&on_disconnect).is_empty(), "no reconnect: it would take the peer id back");
    assert!(matches!(recv_now(&t).await, Some(Err(TransportError::Closed))));
    assert!(t.close_reason().is_some_and(|r| r.contains("4001")));
    assert!(t.reconnect().await.is_err());
}

#[wasm_bindgen_test]
async fn a_relay_that_now_gives_another_address_ends_the_transport() {
    let (t, first, _) = connect_reconnecting().await;
    fake_drop(&first, 1006, "");
    fake_set_welcome(Some("relay://elsewhere:9/tab-1".into()));
    let err = t.reconnect().await.expect_err("a member cannot change its address");
    fake_set_welcome(None);
    assert!(err.contains("relay://elsewhere:9/tab-1"), "{err}");
    assert!(matches!(recv_now(&t).await, Some(Err(TransportError::Closed))));
}

#[wasm_bindgen_test]
async fn without_a_disconnect_handler_a_dropped_connection_closes_the_transport() {
    let (t, ws) = connect(WsOptions::default()).await;
    fake_drop(&ws, 1001, "relay shutting down");
    assert!(matches!(recv_now(&t).await, Some(Err(TransportError::Closed))));
    assert!(t.close_reason().is_some_and(|r| r.contains("1001")));
}

#[wasm_bindgen_test]
async fn without_a_websocket_constructor_connect_explains_what_to_pass() {
    // Node 20 has no global WebSocket (browsers and newer Node versions have one).
    if global_has("WebSocket") {
        return;
    }
    let err = WebSocketTransport::connect(URL, None, WsOptions::default(), None).await.err().unwrap();
    assert!(err.contains("no global WebSocket"), "{err}");
}

// ----- The driver on the browser runtime, over an in-memory network ----------------------------

#[derive(Default)]
struct Mailbox {
    queue: RefCell<VecDeque<(Addr, Vec<u8>)>>,
    waker: RefCell<Option<Waker>>,
    closed: Cell<bool>,
}

type Net = Rc<RefCell<HashMap<Addr, Rc<Mailbox>>>>;

struct MemTransport {
    net: Net,
    me: Addr,
    mailbox: Rc<Mailbox>,
}

impl MemTransport {
    fn new(net: &Net, addr: &str) -> Arc<Self> {
        let me = Addr::parse(addr).unwrap();
        let mailbox = Rc::new(Mailbox::default());
        net.borrow_mut().insert(me.clone(), mailbox.clone());
        Arc::new(MemTransport { net: net.clone(), me, mailbox })
    }
}

#[async_trait::async_trait(?Send)]
impl Transport for MemTransport {
    fn name(&self) -> &'static str {
        "memory"
    }
    fn claims(&self, to: &Addr, _reliable: bool) -> bool {
        to.scheme() == "relay"
    }
    async fn send(&self, to: &Addr, bytes: &[u8]) -> Result<(), TransportError> {
        let dest = self.net.borrow().get(to).cloned().ok_or_else(|| TransportError::Unreachable(to.clone()))?;
        dest.queue.borrow_mut().push_back((self.me.clone(), bytes.to_vec()));
        if let Some(w) = dest.waker.borrow_mut().take() {
            w.wake();
        }
        Ok(())
    }
    async fn send_reliable(&self, to: &Addr, bytes: &[u8]) -> Result<(), TransportError> {
        self.send(to, bytes).await
    }
    async fn recv(&self, buf: &mut Vec<u8>) -> Result<Received, TransportError> {
        poll_fn(|cx| {
            if let Some((from, bytes)) = self.mailbox.queue.borrow_mut().pop_front() {
                *buf = bytes;
                return Poll::Ready(Ok(Received { from, reliable: false }));
            }
            if self.mailbox.closed.get() {
                return Poll::Ready(Err(TransportError::Closed));
            }
            *self.mailbox.waker.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }
    fn local_addr(&self) -> Addr {
        self.me.clone()
    }
    async fn close(&self) {
        self.net.borrow_mut().remove(&self.me);
        self.mailbox.closed.set(true);
        if let Some(w) = self.mailbox.waker.borrow_mut().take() {
            w.wake();
        }
    }
}

fn start(net: &Net, name: &str) -> Cluster {
    let transport: Arc<dyn Transport> = MemTransport::new(net, &format!("relay://mem:1/{name}"));
    let (cluster, driver) =
        Cluster::builder(name).unwrap().config(Config::local()).build(vec![transport], Arc::new(runtime())).unwrap();
    wasm_bindgen_futures::spawn_local(driver.run());
    cluster
}

#[wasm_bindgen_test]
async fn the_driver_runs_a_cluster_on_the_browser_runtime() {
    let net: Net = Rc::default();
    let a = start(&net, "a");
    let b = start(&net, "b");
    let mut events = a.events();
    b.join(&[a.local_addr()]).await.expect("a answers");
    loop {
        match events.next().await {
            Some(Event::Joined(m)) if m.id.as_str() == "b" => break,
            Some(_) => {}
            None => panic!("a stopped"),
        }
    }
    b.broadcast("chat", b"hi").unwrap();
    loop {
        match events.next().await {
            Some(Event::Message { from, payload, .. }) => {
                assert_eq!((from.as_str(), &payload[..]), ("b", &b"hi"[..]));
                break;
            }
            Some(_) => {}
            None => panic!("a stopped"),
        }
    }
    b.leave(Duration::from_secs(2)).await.expect("leave gossiped");
    loop {
        match events.next().await {
            Some(Event::Left { id, .. }) if id.as_str() == "b" => break,
            Some(_) => {}
            None => panic!("a stopped"),
        }
    }
    a.shutdown().await;
    assert!(events.next().await.is_none(), "the stream ends at shutdown");
}
