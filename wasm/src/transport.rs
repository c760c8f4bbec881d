//! [`WebSocketTransport`]: Shoal packets to and from a `shoal-relay` over the standard WebSocket API.
//!
//! The member connects to `ws(s)://relay/ws?peer=<id>&token=<t>`. The relay's first message is the
//! welcome frame (see [`shoal_core::driver::relay`]) naming our own `relay://host:port/<id>` address,
//! which becomes the transport's local address. Afterwards every binary message in either direction
//! is `[len][address][packet]`: destination on the way out, source (stamped by the relay) on the way
//! in. The relay reaches other relayed members, native UDP members through its UDP port, and TCP
//! members, so this one plugin claims `relay://`, `udp://` and `tcp://` for best-effort and reliable
//! traffic alike (a WebSocket is reliable and ordered; "best-effort" sends are dropped only when the
//! socket's send buffer is already full, as a UDP socket would).
//!
//! Incoming frames wait in a bounded queue (frames and bytes) that `recv` drains; when it is full
//! new frames are dropped and counted in `dropped_in`, as are oversized frames (checked before they
//! are copied into wasm memory), text frames and malformed frames.
//!
//! **Direct paths (WebRTC).** The JS layer (`wasm/js/rtc.js`) negotiates RTCDataChannels with other
//! members of the same relay through signalling frames on this socket ([`WebSocketTransport::signal`]
//! out, the handler set with [`WebSocketTransport::on_signal`] in). Once a peer's channels are open it
//! registers a sender for that peer's `relay://` address ([`WebSocketTransport::set_direct`]); from
//! then on packets to that address go to the sender, and to the relay only when the sender declines
//! (channel not open, send buffer full). What arrives on a channel enters the same queue as relayed
//! frames ([`WebSocketTransport::deliver_direct`]), accepted only from a peer with a registered path:
//! the address was stamped by the relay during signalling, so a channel cannot claim another source.
//! The path is a routing hint and nothing more: SWIM probes, whatever carries them, decide liveness.
//!
//! The WebSocket object comes from `globalThis.WebSocket` or from a constructor the caller passes
//! (Node 20's `ws` package). Only standard members are used (`binaryType`, `readyState`,
//! `bufferedAmount`, `send`, `close`, the `on*` handler properties), so any compatible implementation
//! works.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Duration;

use futures_util::future::{select, Either};
use js_sys::{Array, ArrayBuffer, Function, Reflect, Uint8Array};
use shoal_core::driver::relay::{
    decode_signal_frame, decode_ws_frame, encode_signal_frame, encode_ws_frame, CloseCode, SignalKind, RELAY_SCHEME,
    SIGNAL_TAG,
};
use shoal_core::driver::{Addr, Received, Transport, TransportCounters, TransportError};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{BinaryType, MessageEvent, WebSocket};

use crate::runtime::Timers;

/// `WebSocket.OPEN`.
const OPEN: u16 = 1;
/// Longest address in a frame header (one length byte).
const MAX_FRAME_ADDR: usize = 255;
/// shoal-relay's default frame limit, 64 KiB.
pub const DEFAULT_MAX_FRAME: usize = 64 << 10;
/// Source addresses remembered by the receive path.
const SOURCE_CACHE: usize = 32;

/// Tuning of a [`WebSocketTransport`].
#[derive(Clone, Debug)]
pub struct WsOptions {
    /// Largest frame, in bytes, in either direction: larger incoming frames are dropped unread,
    /// larger outgoing ones fail with `TooLarge` (a relay closes connections that send far more than
    /// its own limit). Match the relay's `max_frame`.
    pub max_frame: usize,
    /// Frames waiting for the driver before new ones are dropped.
    pub queue_frames: usize,
    /// Bytes waiting for the driver before new frames are dropped.
    pub queue_bytes: usize,
    /// Best-effort sends are dropped while the socket has more than this many bytes unsent.
    pub max_buffered: u32,
    /// How long to wait for the connection and the welcome frame.
    pub connect_timeout: Duration,
}

impl Default for WsOptions {
    fn default() -> Self {
        WsOptions {
            max_frame: DEFAULT_MAX_FRAME,
            queue_frames: 1_024,
            queue_bytes: 8 << 20,
            max_buffered: 1 << 20,
            connect_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Default)]
struct Inbox {
    frames: VecDeque<(Addr, Vec<u8>, usize)>,
    bytes: usize,
    waker: Option<Waker>,
    /// The welcome frame's address once it arrived, or why the connection failed before it.
    welcome: Option<Result<Addr, String>>,
    welcome_waker: Option<Waker>,
    closed: Option<String>,
    /// Recently seen source addresses, most recent first, so a steady stream from a few peers
    /// parses (and allocates) nothing.
    sources: Vec<Addr>,
}

struct Shared {
    inbox: RefCell<Inbox>,
    counters: Cell<TransportCounters>,
    /// The share of `counters` that went over direct paths.
    direct_counters: Cell<TransportCounters>,
    options: WsOptions,
    /// Receives signalling frames: `(source address, kind, body text)`.
    on_signal: RefCell<Option<Function>>,
    /// Hears that the connection dropped, `(reason) => void` (see [`WebSocketTransport::connect`]).
    on_disconnect: RefCell<Option<Function>>,
    /// Peers with an open direct path, and the JS function that sends on it:
    /// `(bytes: Uint8Array, reliable: boolean) => boolean` (false: use the relay).
    direct: RefCell<Vec<(Addr, Function)>>,
}

impl Shared {
    fn count(&self, f: impl FnOnce(&mut TransportCounters)) {
        let mut c = self.counters.get();
        f(&mut c);
        self.counters.set(c);
    }

    fn on_message(&self, data: JsValue) {
        let Some(buffer) = data.dyn_ref::<ArrayBuffer>() else {
            // Text frames are not part of the protocol (a Blob would mean binaryType was ignored).
            self.count(|c| c.dropped_in += 1);
            return;
        };
        let len = buffer.byte_length() as usize;
        if len > self.options.max_frame {
            self.count(|c| c.dropped_in += 1);
            return;
        }
        let frame = Uint8Array::new(buffer).to_vec();
        if frame.first() == Some(&SIGNAL_TAG) {
            self.on_signal_frame(&frame);
            return;
        }
        let mut inbox = self.inbox.borrow_mut();
        if inbox.welcome.is_none() {
            let welcome = match decode_ws_frame(&frame) {
                Ok((addr, [])) => match Addr::parse(addr) {
                    Ok(a) if a.scheme() == RELAY_SCHEME => Ok(a),
                    _ => Err(format!("the relay's welcome names an invalid address: \"{addr}\"")),
                },
                _ => Err("the relay's first message is not a welcome frame".to_owned()),
            };
            inbox.welcome = Some(welcome);
            if let Some(w) = inbox.welcome_waker.take() {
                w.wake();
            }
            return;
        }
        let Ok((source, packet)) = decode_ws_frame(&frame) else {
            self.count(|c| c.dropped_in += 1);
            return;
        };
        if inbox.frames.len() >= self.options.queue_frames || inbox.bytes + packet.len() > self.options.queue_bytes {
            self.count(|c| c.dropped_in += 1);
            return;
        }
        let from = match inbox.sources.iter().position(|a| a.as_str() == source) {
            Some(i) => {
                let a = inbox.sources.remove(i);
                inbox.sources.insert(0, a.clone());
                a
            }
            None => {
                let Ok(a) = Addr::parse(source) else {
                    self.count(|c| c.dropped_in += 1);
                    return;
                };
                inbox.sources.truncate(SOURCE_CACHE - 1);
                inbox.sources.insert(0, a.clone());
                a
            }
        };
        let offset = 1 + source.len();
        inbox.bytes += frame.len() - offset;
        inbox.frames.push_back((from, frame, offset));
        if let Some(w) = inbox.waker.take() {
            w.wake();
        }
    }

    fn on_signal_frame(&self, frame: &[u8]) {
        let handler = self.on_signal.borrow().clone();
        let parsed = decode_signal_frame(frame).ok().and_then(|(a, k, b)| Some((a, k, std::str::from_utf8(b).ok()?)));
        match (handler, parsed) {
            (Some(f), Some((from, kind, body))) => {
                let args = Array::of3(&from.into(), &(kind as u8).into(), &body.into());
                if let Err(e) = f.apply(&JsValue::UNDEFINED, &args) {
                    crate::console_error(&describe(&e));
                }
            }
            _ => self.count(|c| c.dropped_in += 1),
        }
    }

    /// Queues a packet that arrived over `from`'s direct path.
    fn deliver_direct(&self, from: &str, packet: Vec<u8>) -> bool {
        let Some(from) = self.direct.borrow().iter().find(|(a, _)| a.as_str() == from).map(|(a, _)| a.clone()) else {
            return false;
        };
        let mut inbox = self.inbox.borrow_mut();
        if inbox.frames.len() >= self.options.queue_frames || inbox.bytes + packet.len() > self.options.queue_bytes {
            self.count(|c| c.dropped_in += 1);
            return false;
        }
        let len = packet.len() as u64;
        self.direct_counters.set(add(self.direct_counters.get(), len, true));
        inbox.bytes += packet.len();
        inbox.frames.push_back((from, packet, 0));
        if let Some(w) = inbox.waker.take() {
            w.wake();
        }
        true
    }

    /// Offers `bytes` to `to`'s direct path; true if it took them.
    fn send_direct(&self, to: &Addr, bytes: &[u8], reliable: bool) -> bool {
        let Some(send) = self.direct.borrow().iter().find(|(a, _)| a == to).map(|(_, f)| f.clone()) else {
            return false;
        };
        let taken = send
            .call2(&JsValue::UNDEFINED, &Uint8Array::from(bytes), &JsValue::from_bool(reliable))
            .is_ok_and(|v| v.is_truthy());
        if taken {
            let len = bytes.len() as u64;
            self.direct_counters.set(add(self.direct_counters.get(), len, false));
            self.counters.set(add(self.counters.get(), len, false));
        }
        taken
    }

    /// The transport is closed for good: `recv` returns `Closed` from now on.
    fn on_closed(&self, reason: String) {
        let mut inbox = self.inbox.borrow_mut();
        if inbox.closed.is_none() {
            inbox.closed = Some(reason.clone());
        }
        if inbox.welcome.is_none() {
            inbox.welcome = Some(Err(reason));
        }
        for w in [inbox.waker.take(), inbox.welcome_waker.take()].into_iter().flatten() {
            w.wake();
        }
    }

    /// The socket's close event. Before the welcome it is why a (re)connect failed; afterwards the
    /// connection dropped: the `on_disconnect` handler hears of it and may reconnect, unless there
    /// is none or the relay said another connection took our peer id.
    fn on_socket_closed(&self, code: u16, reason: String) {
        {
            let mut inbox = self.inbox.borrow_mut();
            if inbox.welcome.is_none() {
                inbox.welcome = Some(Err(reason));
                if let Some(w) = inbox.welcome_waker.take() {
                    w.wake();
                }
                return;
            }
        }
        let handler = self.on_disconnect.borrow().clone().filter(|_| CloseCode::should_reconnect(code));
        match handler {
            Some(f) => {
                if let Err(e) = f.call1(&JsValue::UNDEFINED, &reason.into()) {
                    crate::console_error(&describe(&e));
                }
            }
            None => self.on_closed(reason),
        }
    }
}

/// The JS handler closures, kept alive as long as the socket may call them.
struct Handlers {
    _message: Closure<dyn FnMut(MessageEvent)>,
    _close: Closure<dyn FnMut(JsValue)>,
    _error: Closure<dyn FnMut(JsValue)>,
}

/// One WebSocket to the relay and the handlers feeding its events into [`Shared`].
struct Connection {
    ws: WebSocket,
    handlers: Option<Handlers>,
}

impl Connection {
    /// Opens `url` with `constructor`, its events going to `shared`.
    fn open(url: &str, constructor: &Function, shared: &Rc<Shared>) -> Result<Connection, String> {
        let ws: WebSocket = Reflect::construct(constructor, &Array::of1(&JsValue::from_str(url)))
            .map_err(|e| format!("cannot open {url}: {}", describe(&e)))?
            .unchecked_into();
        ws.set_binary_type(BinaryType::Arraybuffer);
        let s = shared.clone();
        let message = Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| s.on_message(e.data()));
        let s = shared.clone();
        let close = Closure::<dyn FnMut(JsValue)>::new(move |e: JsValue| {
            let code = Reflect::get(&e, &JsValue::from_str("code")).ok().and_then(|c| c.as_f64()).unwrap_or(0.0) as u16;
            let reason = Reflect::get(&e, &JsValue::from_str("reason")).ok().and_then(|r| r.as_string());
            s.on_socket_closed(
                code,
                match reason {
                    Some(r) if !r.is_empty() => format!("relay connection closed ({code}: {r})"),
                    _ => format!("relay connection closed ({code})"),
                },
            );
        });
        let s = shared.clone();
        let error = Closure::<dyn FnMut(JsValue)>::new(move |e: JsValue| {
            // An error is always followed by a close event; before the welcome it is the reason the
            // connection failed.
            let message = Reflect::get(&e, &JsValue::from_str("message")).ok().and_then(|m| m.as_string());
            let mut inbox = s.inbox.borrow_mut();
            if inbox.welcome.is_none() {
                inbox.welcome = Some(Err(match message {
                    Some(m) if !m.is_empty() => format!("cannot connect to the relay: {m}"),
                    _ => "cannot connect to the relay".to_owned(),
                }));
                if let Some(w) = inbox.welcome_waker.take() {
                    w.wake();
                }
            }
        });
        ws.set_onmessage(Some(message.as_ref().unchecked_ref()));
        ws.set_onclose(Some(close.as_ref().unchecked_ref()));
        ws.set_onerror(Some(error.as_ref().unchecked_ref()));
        Ok(Connection { ws, handlers: Some(Handlers { _message: message, _close: close, _error: error }) })
    }

    /// Waits for the welcome frame (our address) or the reason there will be none.
    async fn welcome(shared: &Shared, timeout: Duration, url: &str) -> Result<Addr, String> {
        let welcome = poll_fn(|cx| {
            let mut inbox = shared.inbox.borrow_mut();
            match inbox.welcome.clone() {
                Some(w) => Poll::Ready(w),
                None => {
                    inbox.welcome_waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        });
        let sleep = Timers::new().map_err(|e| describe(&e))?.sleep(timeout);
        match select(Box::pin(welcome), sleep).await {
            Either::Left((w, _)) => w,
            Either::Right(_) => {
                Err(format!("the relay at {url} sent no welcome within {} ms", timeout.as_millis() as u64))
            }
        }
    }

    /// Detaches the handlers (a late event must not call freed code) and closes the socket.
    fn close(&mut self, reason: &str) {
        // The error handler becomes a no-op owned by JS rather than nothing: Node's `ws` emits
        // 'error' when a connecting socket is closed, and an EventEmitter 'error' without a listener
        // is an uncaught exception.
        let noop = Closure::<dyn FnMut(JsValue)>::new(|_: JsValue| {}).into_js_value();
        self.ws.set_onmessage(None);
        self.ws.set_onclose(None);
        self.ws.set_onerror(Some(noop.unchecked_ref()));
        let _ = self.ws.close_with_code_and_reason(1000, reason);
        self.handlers = None;
    }
}

/// A Shoal transport over a WebSocket to a relay. See the module docs.
pub struct WebSocketTransport {
    connection: RefCell<Connection>,
    shared: Rc<Shared>,
    local: Addr,
    url: String,
    constructor: Function,
}

impl WebSocketTransport {
    /// Opens `url` (the full relay URL, query included) with `constructor` (or
    /// `globalThis.WebSocket`) and waits for the welcome frame. With `on_disconnect`, a connection
    /// that drops later leaves the transport waiting instead of closed, and `on_disconnect(reason)`
    /// is called: call [`reconnect`](Self::reconnect) (with a backoff) to resume, or
    /// [`fail`](Self::fail) to give up.
    pub async fn connect(
        url: &str,
        constructor: Option<Function>,
        options: WsOptions,
        on_disconnect: Option<Function>,
    ) -> Result<Self, String> {
        let constructor = match constructor {
            Some(c) => c,
            None => Reflect::get(&js_sys::global(), &JsValue::from_str("WebSocket"))
                .ok()
                .and_then(|c| c.dyn_into::<Function>().ok())
                .ok_or_else(|| {
                    "this JavaScript environment has no global WebSocket: pass a constructor (for Node.js, \
                     the `ws` package's WebSocket) as the WebSocket option"
                        .to_owned()
                })?,
        };
        let timeout = options.connect_timeout;
        let shared = Rc::new(Shared {
            inbox: RefCell::new(Inbox::default()),
            counters: Cell::new(TransportCounters::default()),
            direct_counters: Cell::new(TransportCounters::default()),
            options,
            on_signal: RefCell::new(None),
            on_disconnect: RefCell::new(on_disconnect),
            direct: RefCell::new(Vec::new()),
        });
        let mut transport = WebSocketTransport {
            connection: RefCell::new(Connection::open(url, &constructor, &shared)?),
            shared: shared.clone(),
            local: Addr::parse("relay://unconnected/-").expect("a valid placeholder"),
            url: url.to_owned(),
            constructor,
        };
        match Connection::welcome(&shared, timeout, url).await {
            Ok(addr) => {
                transport.local = addr;
                Ok(transport)
            }
            Err(e) => {
                transport.shutdown("connect failed");
                Err(e)
            }
        }
    }

    /// Opens a new connection after the last one dropped (see [`connect`](Self::connect)).
    /// `Ok(None)`: connected again, at the same address. `Ok(Some(reason))`: this attempt failed;
    /// try again later. `Err(reason)`: the transport is closed for good (it was shut down, or the
    /// relay now gives us another address, which a running member cannot take).
    pub async fn reconnect(&self) -> Result<Option<String>, String> {
        if let Some(reason) = self.close_reason() {
            return Err(reason);
        }
        self.connection.borrow_mut().close("reconnecting");
        self.shared.inbox.borrow_mut().welcome = None;
        let mut next = match Connection::open(&self.url, &self.constructor, &self.shared) {
            Ok(c) => c,
            Err(e) => return Ok(Some(e)),
        };
        let welcome = Connection::welcome(&self.shared, self.shared.options.connect_timeout, &self.url).await;
        let closed = self.close_reason();
        let result = match (welcome, closed) {
            (_, Some(reason)) => Err(reason),
            (Ok(addr), None) if addr == self.local => {
                *self.connection.borrow_mut() = next;
                return Ok(None);
            }
            (Ok(addr), None) => {
                let reason = format!("the relay now gives this member the address {addr}, not {}", self.local);
                self.fail(&reason);
                Err(reason)
            }
            (Err(e), None) => Ok(Some(e)),
        };
        next.close("reconnect failed");
        result
    }

    /// Closes the transport for good with `reason` (what `close_reason` reports), e.g. after giving
    /// up reconnecting.
    pub fn fail(&self, reason: &str) {
        self.shared.on_closed(reason.to_owned());
        self.connection.borrow_mut().close(reason);
    }

    /// Why the connection closed, once it has.
    pub fn close_reason(&self) -> Option<String> {
        self.shared.inbox.borrow().closed.clone()
    }

    /// Sends a signalling message to another member of the relay; false if the socket refused it.
    pub fn signal(&self, to: &str, kind: SignalKind, body: &str) -> bool {
        let connection = self.connection.borrow();
        if self.shared.inbox.borrow().closed.is_some() || connection.ws.ready_state() != OPEN {
            return false;
        }
        let Some(frame) = encode_signal_frame(to, kind, body.as_bytes()) else { return false };
        connection.ws.send_with_array_buffer_view(&Uint8Array::from(&frame[..])).is_ok()
    }

    /// Sets the function that receives signalling messages, `(from, kind, body) => void`.
    pub fn on_signal(&self, handler: Option<Function>) {
        *self.shared.on_signal.borrow_mut() = handler;
    }

    /// Registers (or, with `None`, removes) the direct path to `peer`. See the module docs.
    pub fn set_direct(&self, peer: &str, sender: Option<Function>) {
        let mut direct = self.shared.direct.borrow_mut();
        direct.retain(|(a, _)| a.as_str() != peer);
        if let (Some(f), Ok(a)) = (sender, Addr::parse(peer)) {
            direct.push((a, f));
        }
    }

    /// Hands the driver a packet that arrived on `from`'s direct path. False (and nothing queued)
    /// when `from` has no registered path or the queue is full.
    pub fn deliver_direct(&self, from: &str, packet: Vec<u8>) -> bool {
        self.shared.deliver_direct(from, packet)
    }

    /// All traffic, and the part of it that went over direct paths.
    pub fn traffic(&self) -> (TransportCounters, TransportCounters) {
        (self.shared.counters.get(), self.shared.direct_counters.get())
    }

    fn shutdown(&self, reason: &str) {
        self.fail(&format!("closed locally ({reason})"));
    }

    fn send_frame(&self, to: &Addr, bytes: &[u8], best_effort: bool) -> Result<(), TransportError> {
        if self.shared.send_direct(to, bytes, !best_effort) {
            return Ok(());
        }
        let result = self.try_send(to, bytes, best_effort);
        match &result {
            Ok(n) => self.shared.count(|c| {
                c.packets_out += 1;
                c.bytes_out += *n as u64;
            }),
            Err(_) => self.shared.count(|c| c.send_errors += 1),
        }
        result.map(|_| ())
    }

    fn try_send(&self, to: &Addr, bytes: &[u8], best_effort: bool) -> Result<usize, TransportError> {
        let connection = self.connection.borrow();
        let ws = &connection.ws;
        if self.shared.inbox.borrow().closed.is_some() {
            return Err(TransportError::Closed);
        }
        if ws.ready_state() != OPEN {
            // Between connections (reconnecting): the packet is lost, as on a network outage.
            return Err(TransportError::Io(std::io::ErrorKind::NotConnected.into()));
        }
        if to.as_str().len() > MAX_FRAME_ADDR {
            return Err(TransportError::Unreachable(to.clone()));
        }
        if best_effort && ws.buffered_amount() > self.shared.options.max_buffered {
            // A bare error kind: a message would box a custom error and pull in its formatting code.
            return Err(TransportError::Io(std::io::ErrorKind::WouldBlock.into()));
        }
        let size = 1 + to.as_str().len() + bytes.len();
        if size > self.shared.options.max_frame {
            return Err(TransportError::TooLarge { size, max: self.shared.options.max_frame });
        }
        let frame = encode_ws_frame(to.as_str(), bytes).ok_or_else(|| TransportError::Unreachable(to.clone()))?;
        // A copy in JS memory: `send` may keep a reference (Node's `ws` while compressing), and a view
        // into wasm memory would change under it.
        let data = Uint8Array::from(&frame[..]);
        ws.send_with_array_buffer_view(&data).map_err(|_| TransportError::Io(std::io::ErrorKind::BrokenPipe.into()))?;
        Ok(frame.len())
    }
}

impl Drop for WebSocketTransport {
    fn drop(&mut self) {
        if self.close_reason().is_none() {
            self.shutdown("dropped");
        }
    }
}

#[async_trait::async_trait(?Send)]
impl Transport for WebSocketTransport {
    fn name(&self) -> &'static str {
        "websocket"
    }

    fn claims(&self, to: &Addr, _reliable: bool) -> bool {
        matches!(to.scheme(), "relay" | "udp" | "tcp")
    }

    async fn send(&self, to: &Addr, bytes: &[u8]) -> Result<(), TransportError> {
        self.send_frame(to, bytes, true)
    }

    async fn send_reliable(&self, to: &Addr, bytes: &[u8]) -> Result<(), TransportError> {
        self.send_frame(to, bytes, false)
    }

    async fn recv(&self, buf: &mut Vec<u8>) -> Result<Received, TransportError> {
        poll_fn(|cx| {
            let mut inbox = self.shared.inbox.borrow_mut();
            if let Some((from, frame, offset)) = inbox.frames.pop_front() {
                let packet = &frame[offset..];
                inbox.bytes -= packet.len();
                buf.clear();
                buf.extend_from_slice(packet);
                self.shared.count(|c| {
                    c.packets_in += 1;
                    c.bytes_in += frame.len() as u64;
                });
                return Poll::Ready(Ok(Received { from, reliable: false }));
            }
            if inbox.closed.is_some() {
                return Poll::Ready(Err(TransportError::Closed));
            }
            inbox.waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    fn local_addr(&self) -> Addr {
        self.local.clone()
    }

    fn counters(&self) -> TransportCounters {
        self.shared.counters.get()
    }

    async fn close(&self) {
        if self.shared.inbox.borrow().closed.is_none() {
            self.shutdown("member shut down");
        }
    }
}

/// `c` with one more packet of `len` bytes in (`inbound`) or out.
fn add(mut c: TransportCounters, len: u64, inbound: bool) -> TransportCounters {
    if inbound {
        c.packets_in += 1;
        c.bytes_in += len;
    } else {
        c.packets_out += 1;
        c.bytes_out += len;
    }
    c
}

/// A JS exception as text.
pub(crate) fn describe(e: &JsValue) -> String {
    if let Some(s) = e.as_string() {
        return s;
    }
    Reflect::get(e, &JsValue::from_str("message")).ok().and_then(|m| m.as_string()).unwrap_or_else(|| format!("{e:?}"))
}
