//! # shoal-wasm
//!
//! Shoal cluster membership for browsers and edge runtimes (Node.js, Deno, workerd), compiled to
//! `wasm32-unknown-unknown` with wasm-bindgen:
//!
//! - [`BrowserRuntime`]: the driver's clock (`performance.now()`), timers (`setTimeout`), spawning
//!   (`spawn_local`) and seeding (`crypto.getRandomValues`), all found on `globalThis`;
//! - [`WebSocketTransport`]: packets to and from a `shoal-relay` over the standard WebSocket API;
//! - [`ShoalNode`]: the small façade exported to JavaScript. Ergonomics (string payloads, event
//!   listeners and async iteration, `pagehide`) live in the npm package's JS layer (`wasm/js/`).
//!
//! On other targets the crate is empty.
#![cfg(target_arch = "wasm32")]
#![allow(clippy::arc_with_non_send_sync)] // the driver's API takes Arcs; on wasm32 nothing is Send

mod node;
mod runtime;
mod transport;

pub use node::ShoalNode;
pub use runtime::BrowserRuntime;
pub use shoal_core;
pub use transport::{WebSocketTransport, WsOptions};

use wasm_bindgen::prelude::*;

/// Talc instead of the default dlmalloc: about half the code size on wasm32, and faster.
#[global_allocator]
// SAFETY: wasm32 without threads; the lock only guards against reentrancy.
static ALLOCATOR: talc::TalckWasm = unsafe { talc::TalckWasm::new_global() };

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = console, js_name = error)]
    fn console_error(s: &str);
}

/// Runs when the module is instantiated: panics are reported on the console instead of as a bare
/// `unreachable` trap.
#[wasm_bindgen(start)]
fn start() {
    std::panic::set_hook(Box::new(|info| console_error(&format!("shoal-wasm panicked: {info}"))));
}
