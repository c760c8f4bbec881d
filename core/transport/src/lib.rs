//! The plugin interface for transports, and the router that lets one node use several at once.
//!
//! A plugin moves bytes: best-effort datagrams (`send`) of at most the configured packet size, and
//! reliable frames (`send_reliable`) for push-pull and reliable messages. It reports what arrives
//! through `recv`, with the sender's advertised address as `from` (the address replies go to).
//! The router hands each transmit to the first plugin that [`Transport::claims`] its address.
//!
//! Two optional reports go from a plugin to the member that runs it: a plugin that can tell when
//! it reaches nobody (one connection to a relay) reports its link going down and coming back
//! ([`Transport::watch_link`]), and one whose own address can change (that connection failing
//! over to another relay of a fleet) reports each change before it carries anything at the new
//! address ([`Transport::watch_local_addr`]), so the member announces the new address first.
//!
//! Futures are `Send` on native targets and not on `wasm32`, where browser APIs are single-threaded.
//!
//! This crate is the only thing a transport plugin depends on (besides `shoal-core`'s addresses
//! and relay envelope, re-exported here), so the `shoal` crate can offer the plugins as features
//! without a dependency cycle, as quinn-udp sits below quinn.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(missing_debug_implementations)]

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::stream::{FuturesUnordered, StreamExt};

mod counters;

pub use counters::TrafficCounters;
pub use shoal_core::addr::{Addr, AddrError, MAX_ADDR_LEN};
/// The relay envelope: how frames, signals and closes travel to and through a `shoal-relay`.
pub use shoal_core::relay;

/// A boxed future: `Send` natively, not on wasm32.
#[cfg(not(target_arch = "wasm32"))]
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
/// A boxed future: `Send` natively, not on wasm32.
#[cfg(target_arch = "wasm32")]
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// `Send + Sync` natively, nothing on wasm32.
#[cfg(not(target_arch = "wasm32"))]
pub trait MaybeSendSync: Send + Sync {}
#[cfg(not(target_arch = "wasm32"))]
impl<T: Send + Sync + ?Sized> MaybeSendSync for T {}
/// `Send + Sync` natively, nothing on wasm32.
#[cfg(target_arch = "wasm32")]
pub trait MaybeSendSync {}
#[cfg(target_arch = "wasm32")]
impl<T: ?Sized> MaybeSendSync for T {}

/// Where a received packet came from. Its bytes are in the buffer passed to [`Transport::recv`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    /// The sender's advertised address (where replies go).
    pub from: Addr,
    /// Arrived over the reliable path.
    pub reliable: bool,
}

/// What went wrong in a transport. Sends fail per packet; the protocol treats a failed send like a
/// lost packet, so drivers count and log these rather than stop.
#[derive(Debug)]
#[non_exhaustive]
pub enum TransportError {
    /// The operating system refused (socket error, connection refused or reset, timeout).
    Io(std::io::Error),
    /// No plugin claims the address, or the plugin cannot reach it.
    Unreachable(Addr),
    /// The frame exceeds the plugin's size limit (checked before anything is sent or allocated).
    TooLarge {
        /// The frame's size in bytes.
        size: usize,
        /// The largest frame the plugin takes, in bytes.
        max: usize,
    },
    /// A peer broke the framing protocol (bad length prefix, bad handshake).
    Protocol(&'static str),
    /// The transport was closed.
    Closed,
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransportError::Io(e) => write!(f, "i/o error: {e}"),
            TransportError::Unreachable(a) => write!(f, "no transport reaches {a}"),
            TransportError::TooLarge { size, max } => write!(f, "frame of {size} bytes exceeds {max}"),
            TransportError::Protocol(what) => write!(f, "framing violation: {what}"),
            TransportError::Closed => f.write_str("transport closed"),
        }
    }
}

impl std::error::Error for TransportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TransportError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<std::io::Error> for TransportError {
    fn from(e: std::io::Error) -> Self {
        TransportError::Io(e)
    }
}

/// Traffic counters a plugin keeps about itself, as [`Transport::counters`] reports them. Plugins
/// count with [`TrafficCounters`] and report its [`snapshot`](TrafficCounters::snapshot).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TransportCounters {
    /// Packets and frames received.
    pub packets_in: u64,
    /// Bytes of those packets and frames.
    pub bytes_in: u64,
    /// Packets and frames sent, or queued for sending.
    pub packets_out: u64,
    /// Bytes of those packets and frames.
    pub bytes_out: u64,
    /// Sends that failed.
    pub send_errors: u64,
    /// Incoming data dropped by the plugin itself (oversized frames, bad handshakes, full queues).
    pub dropped_in: u64,
}

/// Hears a plugin's link go down (`false`) and come back (`true`): see [`Transport::watch_link`].
#[cfg(not(target_arch = "wasm32"))]
pub type LinkListener = Box<dyn Fn(bool) + Send + Sync>;
/// Hears a plugin's link go down (`false`) and come back (`true`): see [`Transport::watch_link`].
#[cfg(target_arch = "wasm32")]
pub type LinkListener = Box<dyn Fn(bool)>;

/// Hears a plugin's own address change, as `(old, new)`: see [`Transport::watch_local_addr`].
#[cfg(not(target_arch = "wasm32"))]
pub type AddrListener = Box<dyn Fn(&Addr, &Addr) + Send + Sync>;
/// Hears a plugin's own address change, as `(old, new)`: see [`Transport::watch_local_addr`].
#[cfg(target_arch = "wasm32")]
pub type AddrListener = Box<dyn Fn(&Addr, &Addr)>;

/// A transport plugin. Implement it to carry Shoal over a new medium.
#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
pub trait Transport: MaybeSendSync {
    /// A short name for logs and metrics (`"udp"`).
    fn name(&self) -> &'static str;

    /// True when this plugin carries packets to `to` (reliable frames when `reliable`).
    fn claims(&self, to: &Addr, reliable: bool) -> bool;

    /// Sends one best-effort datagram. Call only for addresses the plugin claims. The driver polls
    /// it once on its protocol loop and, if it is not done, finishes it in the destination's sender
    /// task, with later datagrams to that destination queued behind it (boundedly): it may wait (a
    /// full socket, a connection being made) but should not wait long.
    async fn send(&self, to: &Addr, bytes: &[u8]) -> Result<(), TransportError>;

    /// Sends one reliable frame (delivered whole and in order per peer, or an error). The driver
    /// awaits it in the destination's sender task, never on its protocol loop.
    async fn send_reliable(&self, to: &Addr, bytes: &[u8]) -> Result<(), TransportError>;

    /// Waits for the next packet or frame and puts its bytes in `buf` (replacing its contents; reuse
    /// the buffer's allocation). Returns `Err(Closed)` once closed; other errors are per-packet and
    /// the driver keeps calling. Must be cancel-safe only in the sense that a dropped call loses at
    /// most the packet it was reading.
    async fn recv(&self, buf: &mut Vec<u8>) -> Result<Received, TransportError>;

    /// The address this plugin receives on.
    fn local_addr(&self) -> Addr;

    /// Traffic counters.
    fn counters(&self) -> TransportCounters {
        TransportCounters::default()
    }

    /// Stops receiving and releases sockets. Pending `recv` calls return `Err(Closed)`.
    async fn close(&self);

    /// For a plugin that knows when it reaches nobody at all (one connection to a relay, which
    /// can drop): from now on, tell `listener` each time that becomes true (`false`) and stops
    /// being true (`true`), starting with `false` at once if it is true now. The native driver
    /// calls this once per plugin when the member is built (the wasm package wires its relay
    /// connection itself) and, while every plugin of the member says it reaches nobody, the member accuses nobody (see [`shoal_core::Node::set_link_up`]): its own link,
    /// not the others' health, is at fault. Call the listener from any task, never while holding a
    /// lock the driver may wait for; it returns quickly.
    ///
    /// The default ignores the listener: a plugin that cannot tell (a UDP socket never knows
    /// whether anyone hears it) counts as always reaching someone.
    fn watch_link(&self, listener: LinkListener) {
        drop(listener);
    }

    /// For a plugin whose own address can change while it runs: a connection to a relay that
    /// fails over to another relay of the fleet and is welcomed there, with the same peer id, at
    /// `relay://<other relay>/<peer>`. From now on, tell `listener` each such change as
    /// `(old, new)`. By the time it is called, [`local_addr`](Self::local_addr) returns `new`.
    ///
    /// **Call it before the plugin carries anything at the new address**: before a send can go out
    /// through the new relay and before the link is reported up again (see
    /// [`watch_link`](Self::watch_link)). The native driver calls this once per plugin when the
    /// member is built and, when the member advertises `old`, moves it to `new` inside the call
    /// (see [`shoal_core::Node::move_to`]: a higher incarnation, announced like a refutation), so
    /// that everything the member sends from then on names the new address. A member that
    /// advertises another address (a UDP socket's, beside this plugin) stays where it is. The
    /// cluster takes the move only from `relay://R1/P` to `relay://R2/P` with R2 announced by a live
    /// member (the [`shoal-relay` tag](shoal_core::RELAY_TAG)); any other change of
    /// address is a conflict the others reject, so a plugin whose address changes otherwise should
    /// close instead. Call the listener from any task, never while holding a lock the driver may
    /// wait for; it returns quickly (it takes the member's lock for a moment).
    ///
    /// The default ignores the listener: a plugin bound to a socket keeps its address.
    fn watch_local_addr(&self, listener: AddrListener) {
        drop(listener);
    }
}

/// Several plugins behind one interface: sends go to the first plugin claiming the address,
/// receives come from all of them.
#[derive(Clone)]
pub struct Router {
    plugins: Vec<Arc<dyn Transport>>,
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.plugins.iter().map(|p| p.name())).finish()
    }
}

impl Router {
    /// Routes over `plugins`, asked in order.
    pub fn new(plugins: Vec<Arc<dyn Transport>>) -> Self {
        Router { plugins }
    }

    /// The plugins, in the order they are asked. Call to read one plugin's counters or name.
    pub fn plugins(&self) -> &[Arc<dyn Transport>] {
        &self.plugins
    }

    /// The plugin that carries to `to`.
    pub fn route(&self, to: &Addr, reliable: bool) -> Option<&Arc<dyn Transport>> {
        self.plugins.iter().find(|p| p.claims(to, reliable))
    }

    /// Sends through the claiming plugin.
    pub async fn send(&self, to: &Addr, bytes: &[u8], reliable: bool) -> Result<(), TransportError> {
        let plugin = self.route(to, reliable).ok_or_else(|| TransportError::Unreachable(to.clone()))?;
        if reliable {
            plugin.send_reliable(to, bytes).await
        } else {
            plugin.send(to, bytes).await
        }
    }

    /// Sum of every plugin's counters.
    pub fn counters(&self) -> TransportCounters {
        self.plugins.iter().map(|p| p.counters()).fold(TransportCounters::default(), |a, c| TransportCounters {
            packets_in: a.packets_in + c.packets_in,
            bytes_in: a.bytes_in + c.bytes_in,
            packets_out: a.packets_out + c.packets_out,
            bytes_out: a.bytes_out + c.bytes_out,
            send_errors: a.send_errors + c.send_errors,
            dropped_in: a.dropped_in + c.dropped_in,
        })
    }

    /// Closes every plugin.
    pub async fn close(&self) {
        for p in &self.plugins {
            p.close().await;
        }
    }

    /// A merged receive stream over every plugin, each with its own reusable buffer.
    pub fn receiver(&self) -> Receiver {
        let pending = FuturesUnordered::new();
        for (i, p) in self.plugins.iter().enumerate() {
            pending.push(recv_one(i, p.clone(), Vec::with_capacity(2_048)));
        }
        Receiver { plugins: self.plugins.clone(), pending }
    }
}

type RecvResult = (usize, Vec<u8>, Result<Received, TransportError>);

fn recv_one(i: usize, plugin: Arc<dyn Transport>, mut buf: Vec<u8>) -> BoxFuture<'static, RecvResult> {
    Box::pin(async move {
        let r = plugin.recv(&mut buf).await;
        (i, buf, r)
    })
}

/// One packet from a [`Receiver`]: hand `buf` back with [`Receiver::rearm`] once handled.
#[derive(Debug)]
pub struct Packet {
    plugin: usize,
    /// The packet's bytes (when `result` is `Ok`); hand it back with [`Receiver::rearm`].
    pub buf: Vec<u8>,
    /// Where the packet came from, or the plugin's receive error.
    pub result: Result<Received, TransportError>,
}

/// Receives from every plugin of a [`Router`].
pub struct Receiver {
    plugins: Vec<Arc<dyn Transport>>,
    pending: FuturesUnordered<BoxFuture<'static, RecvResult>>,
}

impl fmt::Debug for Receiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver").field("pending", &self.pending.len()).finish()
    }
}

impl Receiver {
    /// The next packet from any plugin, or `None` once every plugin is closed. The plugin it came
    /// from is not read again until the packet is handed back with [`Receiver::rearm`].
    pub async fn next(&mut self) -> Option<Packet> {
        loop {
            let (plugin, buf, result) = self.pending.next().await?;
            if matches!(result, Err(TransportError::Closed)) {
                continue;
            }
            return Some(Packet { plugin, buf, result });
        }
    }

    /// Returns a packet's buffer and starts reading that plugin again.
    pub fn rearm(&mut self, packet: Packet) {
        let p = self.plugins[packet.plugin].clone();
        self.pending.push(recv_one(packet.plugin, p, packet.buf));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_io_transport_error_chains_to_the_os_error_through_source() {
        let err = TransportError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        let source = std::error::Error::source(&err).expect("the io error");
        assert_eq!(source.to_string(), std::io::Error::from(std::io::ErrorKind::ConnectionRefused).to_string());
        assert!(std::error::Error::source(&TransportError::Closed).is_none());
    }
}
