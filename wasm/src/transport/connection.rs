//! [`Connection`]: one WebSocket to the relay, opened with the caller's constructor, and the
//! closures that feed its events into [`Shared`]. A transport holds one at a time and replaces it
//! when it reconnects; a replaced or failed connection has its handlers detached first, so a late
//! event of an old socket never reaches the transport.

use std::future::poll_fn;
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use futures_util::future::{select, Either};
use js_sys::{Array, Function, Reflect};
use shoal_core::driver::Addr;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{BinaryType, MessageEvent, WebSocket};

use super::describe;
use super::shared::Shared;
use crate::runtime::Timers;

/// The JS handler closures, kept alive as long as the socket may call them.
pub(super) struct Handlers {
    pub(super) _message: Closure<dyn FnMut(MessageEvent)>,
    pub(super) _close: Closure<dyn FnMut(JsValue)>,
    pub(super) _error: Closure<dyn FnMut(JsValue)>,
}

/// One WebSocket to the relay and the handlers feeding its events into [`Shared`].
pub(super) struct Connection {
    pub(super) ws: WebSocket,
    pub(super) handlers: Option<Handlers>,
}

impl Connection {
    /// Opens `url` with `constructor`, its events going to `shared`.
    pub(super) fn open(url: &str, constructor: &Function, shared: &Rc<Shared>) -> Result<Connection, String> {
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
    pub(super) async fn welcome(shared: &Shared, timeout: Duration, url: &str) -> Result<Addr, String> {
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
    pub(super) fn close(&mut self, reason: &str) {
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
