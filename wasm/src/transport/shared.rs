//! The event side of a [`WebSocketTransport`](super::WebSocketTransport): what the socket's
//! handlers feed (frames into a bounded inbox, signalling frames to JS, the close of a connection)
//! and the direct paths registered by the WebRTC layer, shared between the transport and the
//! handlers of whichever connection is current.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::task::Waker;

use js_sys::{Array, ArrayBuffer, Function, Uint8Array};
use shoal_core::driver::relay::{decode_signal_frame, decode_ws_frame, CloseCode, RELAY_SCHEME, SIGNAL_TAG};
use shoal_core::driver::{Addr, TransportCounters};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use super::{add, describe, WsOptions, SOURCE_CACHE};

#[derive(Default)]
pub(super) struct Inbox {
    pub(super) frames: VecDeque<(Addr, Vec<u8>, usize)>,
    pub(super) bytes: usize,
    pub(super) waker: Option<Waker>,
    /// The welcome frame's address once it arrived, or why the connection failed before it.
    pub(super) welcome: Option<Result<Addr, String>>,
    pub(super) welcome_waker: Option<Waker>,
    pub(super) closed: Option<String>,
    /// Recently seen source addresses, most recent first, so a steady stream from a few peers
    /// parses (and allocates) nothing.
    sources: Vec<Addr>,
}

/// Hears that the member's link went down (`false`) or came back (`true`).
pub(super) type LinkListener = Rc<dyn Fn(bool)>;

pub(super) struct Shared {
    pub(super) inbox: RefCell<Inbox>,
    pub(super) counters: Cell<TransportCounters>,
    /// The share of `counters` that went over direct paths.
    pub(super) direct_counters: Cell<TransportCounters>,
    pub(super) options: WsOptions,
    /// Receives signalling frames: `(source address, kind, body text)`.
    pub(super) on_signal: RefCell<Option<Function>>,
    /// Hears that the connection dropped, `(reason) => void` (see [`WebSocketTransport::connect`]).
    pub(super) on_disconnect: RefCell<Option<Function>>,
    /// Hears that the link went down (`false`: a reconnectable drop) or came back (`true`): the
    /// member accuses nobody meanwhile (see [`WebSocketTransport::on_link`]).
    pub(super) on_link: RefCell<Option<LinkListener>>,
    /// Peers with an open direct path, and the JS function that sends on it:
    /// `(bytes: Uint8Array, reliable: boolean) => boolean` (false: use the relay).
    pub(super) direct: RefCell<Vec<(Addr, Function)>>,
}

impl Shared {
    /// Tells the `on_link` listener, if any, that the link went down or came back.
    pub(super) fn link_changed(&self, up: bool) {
        let listener = self.on_link.borrow().clone();
        if let Some(f) = listener {
            f(up);
        }
    }

    pub(super) fn count(&self, f: impl FnOnce(&mut TransportCounters)) {
        let mut c = self.counters.get();
        f(&mut c);
        self.counters.set(c);
    }

    pub(super) fn on_message(&self, data: JsValue) {
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
    pub(super) fn deliver_direct(&self, from: &str, packet: Vec<u8>) -> bool {
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
    pub(super) fn send_direct(&self, to: &Addr, bytes: &[u8], reliable: bool) -> bool {
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
    pub(super) fn on_closed(&self, reason: String) {
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
    pub(super) fn on_socket_closed(&self, code: u16, reason: String) {
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
                self.link_changed(false);
                if let Err(e) = f.call1(&JsValue::UNDEFINED, &reason.into()) {
                    crate::console_error(&describe(&e));
                }
            }
            None => self.on_closed(reason),
        }
    }
}
