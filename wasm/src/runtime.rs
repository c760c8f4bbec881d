//! [`BrowserRuntime`]: the driver's clock, timers, spawning and seeding on a JavaScript event loop.
//!
//! Everything is looked up on `globalThis` (not `window`), so the same code runs in a Window, a Web
//! Worker, Node.js, Deno and Cloudflare's workerd:
//! - the clock is `performance.now()`, or `Date.now()` where `performance` is missing (some edge
//!   runtimes), made monotonic here either way;
//! - timers are `setTimeout` wrapped in a Promise, cancelled with `clearTimeout` when the sleep is
//!   dropped (a pending Node.js timer would otherwise keep the process alive after shutdown);
//! - tasks run on `wasm_bindgen_futures::spawn_local` (the microtask queue);
//! - seeds come from `crypto.getRandomValues` through getrandom's `wasm_js` backend.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use js_sys::{Function, Promise, Reflect};
use shoal_core::driver::{BoxFuture, Runtime};
use shoal_core::Instant;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

/// Longest single `setTimeout` delay (browsers fire at once beyond 2^31-1 ms).
const MAX_TIMEOUT_MS: f64 = 2_147_483_647.0;

enum Clock {
    /// `performance` and its `now` function.
    Performance(JsValue, Function),
    /// `Date.now()`, which may jump; [`BrowserRuntime::now`] never goes backwards anyway.
    Date,
}

/// The runtime for browsers and edge runtimes. Create it once per member.
pub struct BrowserRuntime {
    clock: Clock,
    origin: f64,
    last: Cell<u64>,
    timers: Timers,
}

/// `setTimeout` / `clearTimeout` of the global object.
#[derive(Clone)]
pub(crate) struct Timers {
    global: JsValue,
    set: Function,
    clear: Function,
}

impl Timers {
    pub(crate) fn new() -> Result<Self, JsValue> {
        let global: JsValue = js_sys::global().into();
        let get = |name: &str| -> Result<Function, JsValue> {
            Reflect::get(&global, &JsValue::from_str(name))?
                .dyn_into::<Function>()
                .map_err(|_| JsValue::from_str(&format!("this JavaScript environment has no global {name}")))
        };
        Ok(Timers { set: get("setTimeout")?, clear: get("clearTimeout")?, global })
    }

    /// A future completing after `d`; dropping it early clears the timer.
    pub(crate) fn sleep(&self, d: Duration) -> Sleep {
        let ms = (d.as_secs_f64() * 1_000.0).ceil().min(MAX_TIMEOUT_MS);
        let mut id = JsValue::UNDEFINED;
        let (set, global) = (&self.set, &self.global);
        let promise = Promise::new(&mut |resolve, _reject| {
            // setTimeout cannot fail for a function and a number; if a polyfill throws, the sleep
            // just never completes, which the driver tolerates (packets and commands still wake it).
            id = set.call2(global, &resolve, &JsValue::from_f64(ms)).unwrap_or(JsValue::UNDEFINED);
        });
        Sleep { future: JsFuture::from(promise), id, timers: self.clone(), done: false }
    }
}

/// A pending `setTimeout`, cleared on drop.
pub(crate) struct Sleep {
    future: JsFuture,
    id: JsValue,
    timers: Timers,
    done: bool,
}

impl Future for Sleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match Pin::new(&mut self.future).poll(cx) {
            Poll::Ready(_) => {
                self.done = true;
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if !self.done && !self.id.is_undefined() {
            let _ = self.timers.clear.call1(&self.timers.global, &self.id);
        }
    }
}

impl BrowserRuntime {
    /// Finds the clock and timer functions on `globalThis`. Fails only where there is no
    /// `setTimeout` at all.
    pub fn new() -> Result<Self, JsValue> {
        let global: JsValue = js_sys::global().into();
        let performance = Reflect::get(&global, &JsValue::from_str("performance")).ok().filter(|p| p.is_object());
        let clock = performance
            .and_then(|p| {
                let now = Reflect::get(&p, &JsValue::from_str("now")).ok()?.dyn_into::<Function>().ok()?;
                now.call0(&p).ok()?.as_f64()?;
                Some(Clock::Performance(p, now))
            })
            .unwrap_or(Clock::Date);
        let mut rt = BrowserRuntime { clock, origin: 0.0, last: Cell::new(0), timers: Timers::new()? };
        rt.origin = rt.raw_now();
        Ok(rt)
    }

    /// True when the clock is `performance.now()` (false: the `Date.now()` fallback).
    pub fn uses_performance_clock(&self) -> bool {
        matches!(self.clock, Clock::Performance(..))
    }

    fn raw_now(&self) -> f64 {
        match &self.clock {
            Clock::Performance(p, now) => now.call0(p).ok().and_then(|v| v.as_f64()).unwrap_or_else(js_sys::Date::now),
            Clock::Date => js_sys::Date::now(),
        }
    }
}

impl Runtime for BrowserRuntime {
    fn now(&self) -> Instant {
        let elapsed = (self.raw_now() - self.origin).max(0.0) as u64;
        let ms = elapsed.max(self.last.get());
        self.last.set(ms);
        Instant::from_millis(ms)
    }

    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()> {
        Box::pin(self.timers.sleep(d))
    }

    fn spawn(&self, task: BoxFuture<'static, ()>) {
        wasm_bindgen_futures::spawn_local(task);
    }

    fn random_seed(&self) -> u64 {
        let mut buf = [0u8; 8];
        if getrandom::fill(&mut buf).is_ok() {
            return u64::from_le_bytes(buf);
        }
        // No crypto.getRandomValues: the seed only has to differ between members, not be secret
        // (the AES-GCM nonces are also seeded from here, so encrypted clusters need real crypto,
        // which every runtime we target has).
        let a = (js_sys::Math::random() * 4_294_967_296.0) as u64;
        let b = (js_sys::Math::random() * 4_294_967_296.0) as u64;
        (a << 32) ^ b ^ js_sys::Date::now() as u64
    }
}
