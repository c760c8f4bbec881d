//! # shoal-wasm
//!
//! Shoal cluster membership for browsers and edge runtimes (Node.js, Deno, workerd), compiled to
//! `wasm32-unknown-unknown` with wasm-bindgen. The wasm holds the sans-IO protocol only
//! (`Protocol`); the npm package's JS (`wasm/js/member.js`) is its driver: the relay WebSocket,
//! timers, clock, randomness and WebRTC direct paths, and the ergonomics (string payloads, event
//! listeners and async iteration, the page lifecycle) on top.
//!
//! On other targets the crate is empty.
#![cfg(target_arch = "wasm32")]

mod protocol;

pub use protocol::{check_address, Protocol};
pub use shoal_core;

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
