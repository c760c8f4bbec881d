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
// The npm build (`wasm/build.sh`) turns on `lean-panic`: no std, and a panic handler that never
// formats (see `panic` below). Without it, std and its panic hook are linked, as the wasm tests need.
#![cfg_attr(feature = "lean-panic", no_std)]

extern crate alloc;

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

/// A panic (a bug: hostile input never panics) names where it happened on the console, then traps,
/// and the JS driver sees a `RuntimeError`. The message is left out: formatting it is what keeps
/// `core::fmt`'s machinery in the binary, about 1.4 KB gzipped, and the location says which check
/// failed.
#[cfg(feature = "lean-panic")]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let mut text = alloc::string::String::from("shoal-wasm panicked");
    if let Some(at) = info.location() {
        text.push_str(" at ");
        text.push_str(at.file());
        text.push(':');
        push_decimal(&mut text, at.line());
    }
    console_error(&text);
    core::arch::wasm32::unreachable()
}

/// Appends `n` in decimal, without `core::fmt`.
#[cfg(feature = "lean-panic")]
fn push_decimal(text: &mut alloc::string::String, n: u32) {
    if n >= 10 {
        push_decimal(text, n / 10);
    }
    text.push(char::from(b'0' + (n % 10) as u8));
}

/// Without `lean-panic`: std's panic hook reports the whole message on the console.
#[cfg(not(feature = "lean-panic"))]
#[wasm_bindgen(start)]
fn start() {
    extern crate std;
    std::panic::set_hook(alloc::boxed::Box::new(|info| console_error(&alloc::format!("shoal-wasm panicked: {info}"))));
}
