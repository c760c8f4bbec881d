//! What the driver needs from an async runtime: a clock, timers, task spawning and a random seed.
//! [`TokioRuntime`] (feature `tokio`) serves native programs; the wasm package brings its own
//! built on `performance.now()` and `setTimeout`.

use std::time::Duration;

use shoal_core::time::Instant;
use shoal_transport::{BoxFuture, MaybeSendSync};

/// The runtime services the driver uses. Object safe: the driver holds an `Arc<dyn Runtime>`.
pub trait Runtime: MaybeSendSync + 'static {
    /// Milliseconds since a fixed start, never going backwards.
    fn now(&self) -> Instant;
    /// Completes after `d`.
    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()>;
    /// Runs a future in the background (the sender tasks of destinations whose sends may wait).
    fn spawn(&self, task: BoxFuture<'static, ()>);
    /// A seed from the operating system's CSPRNG for the node's protocol randomness.
    fn random_seed(&self) -> u64;
    /// Every address a DNS name lists (A and AAAA records), each with `port`. Called for seeds
    /// given as names: at each join, and every `reannounce_interval` after. The default resolves
    /// nothing (an `Unsupported` error): with such a runtime, seeds must be addresses.
    fn resolve(&self, host: &str, port: u16) -> BoxFuture<'static, std::io::Result<Vec<std::net::SocketAddr>>> {
        let _ = port;
        let e =
            std::io::Error::new(std::io::ErrorKind::Unsupported, format!("this runtime resolves no names ({host})"));
        std::boxed::Box::pin(async move { Err(e) })
    }
}

/// The tokio runtime. Create it inside a tokio runtime (it spawns with `tokio::spawn`).
#[cfg(feature = "tokio")]
#[derive(Clone, Debug)]
pub struct TokioRuntime {
    start: std::time::Instant,
}

#[cfg(feature = "tokio")]
impl TokioRuntime {
    /// A runtime whose clock starts now. Call it inside a tokio runtime, before building members.
    pub fn new() -> Self {
        TokioRuntime { start: std::time::Instant::now() }
    }
}

#[cfg(feature = "tokio")]
impl Default for TokioRuntime {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(feature = "tokio")]
impl Runtime for TokioRuntime {
    fn now(&self) -> Instant {
        Instant::from_millis(self.start.elapsed().as_millis() as u64)
    }

    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()> {
        std::boxed::Box::pin(tokio::time::sleep(d))
    }

    fn spawn(&self, task: BoxFuture<'static, ()>) {
        tokio::spawn(task);
    }

    fn random_seed(&self) -> u64 {
        let mut buf = [0u8; 8];
        // The OS CSPRNG failing is not recoverable in any useful way; fall back to the clock so the
        // node still starts (its randomness only needs to differ between nodes, not be secret).
        if getrandom::fill(&mut buf).is_err() {
            let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            return t.as_nanos() as u64 ^ u64::from(std::process::id());
        }
        u64::from_le_bytes(buf)
    }

    fn resolve(&self, host: &str, port: u16) -> BoxFuture<'static, std::io::Result<Vec<std::net::SocketAddr>>> {
        let host = host.to_string();
        std::boxed::Box::pin(async move { Ok(tokio::net::lookup_host((host.as_str(), port)).await?.collect()) })
    }
}
