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
//! **Reconnecting.** Given an `on_disconnect` handler, a connection that drops after its welcome
//! does not close the transport: `recv` keeps waiting, sends fail with `NotConnected` (packets lost
//! as on a network outage; direct paths still carry theirs), and the handler hears the reason. The
//! JS layer then calls [`WebSocketTransport::reconnect`] with a backoff: the same URL, so the same
//! peer id and, from the relay's welcome, the same address (another address ends the transport, as
//! the protocol core cannot change its own). A close with [`CloseCode::Replaced`] ends it too: a
//! newer connection holds our peer id. Each socket is a [`Connection`] whose handlers are detached
//! before it is replaced.
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

mod connection;
mod shared;

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use js_sys::{Function, Reflect, Uint8Array};
#[cfg(doc)]
use shoal_core::driver::relay::CloseCode;
use shoal_core::driver::relay::{encode_signal_frame, encode_ws_frame, SignalKind};
use shoal_core::driver::{Addr, Received, Transport, TransportCounters, TransportError};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use connection::Connection;
use shared::{Inbox, Shared};

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
            on_link: RefCell::new(None),
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
                self.shared.link_changed(true);
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

    /// Sets the listener that hears when the link goes down (a drop the `on_disconnect` handler
    /// will reconnect from: `false`) and comes back (`true`). Call once, after building the
    /// member: it passes both to [`shoal_core::driver::Cluster::set_link_up`].
    pub fn on_link(&self, listener: impl Fn(bool) + 'static) {
        *self.shared.on_link.borrow_mut() = Some(Rc::new(listener));
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

#[wasm_bindgen]
extern "C" {
    /// JavaScript's `String(value)` (throws for a Symbol).
    #[wasm_bindgen(catch, js_name = String)]
    fn js_string(value: &JsValue) -> Result<String, JsValue>;
}

/// A JS exception as text: a string as it is, an `Error`'s `message`, anything else through
/// `String(value)` (wasm-bindgen's debug formatting of a `JsValue` costs a JS function of its own in
/// every bundle).
pub(crate) fn describe(e: &JsValue) -> String {
    if let Some(s) = e.as_string() {
        return s;
    }
    Reflect::get(e, &JsValue::from_str("message"))
        .ok()
        .and_then(|m| m.as_string())
        .or_else(|| js_string(e).ok())
        .unwrap_or_else(|| "a JavaScript value that cannot be shown".into())
}
