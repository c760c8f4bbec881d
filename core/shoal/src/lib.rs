//! # shoal
//!
//! Cluster membership and failure detection for Rust services: SWIM with the Lifeguard
//! extensions, infection-style gossip, custom broadcasts and direct messages, over UDP and TCP,
//! WebSocket relays (browsers) and WebRTC.
//!
//! This crate is the async layer. It runs the sans-IO protocol of [`shoal_core`] (re-exported as
//! [`proto`]) over real transports:
//!
//! - [`Cluster`]: the handle applications use (join, broadcast, send, events, members, leave), and
//!   [`Driver`], the future that runs the protocol loop. [`Cluster::bind`] starts a member on one
//!   UDP + TCP port in one line; [`Cluster::builder`] configures everything else.
//! - [`Transport`]: the plugin interface (best-effort datagrams, reliable frames, receive), with a
//!   [`Router`] that holds several plugins and picks one per address scheme. The plugins are
//!   their own crates, pulled in by this crate's features: `udp` and `tcp` (default),
//!   `websocket` (a member that joins through a `shoal-relay`) and `webrtc`, re-exported as
//!   [`udp`], [`tcp`], [`websocket`] and [`webrtc`].
//! - What plugins report, the driver follows. A plugin whose link can drop (a relay connection)
//!   reports it ([`Transport::watch_link`]), and the member accuses nobody while every plugin it
//!   has is cut off. A plugin whose own address changes (a relay connection that failed over to
//!   another relay of the fleet, welcomed there with the same peer id) reports the change
//!   ([`Transport::watch_local_addr`]) before it carries anything at the new address; if the
//!   member advertised the old one, the driver moves it there at once (`Node::move_to`: a higher
//!   incarnation, announced like a refutation), logs the move at info and counts it
//!   ([`Metrics`]: `moves_total`). [`Cluster::local_addr`] and [`Cluster::local_member`] give the
//!   address the member advertises now. Members that know the new relay as part of the fleet take
//!   the move; see [`proto::RELAY_TAG`].
//! - [`Runtime`]: clock, timers, spawning and seeding, so the same driver runs on tokio natively
//!   (feature `tokio`, default) and on any other executor.
//! - [`Metrics`]: what the member counted, with a Prometheus text rendering.
//!
//! The crates below it: `shoal-core` (the protocol, `no_std`, no I/O), `shoal-transport` (the
//! plugin interface the transports depend on) and `shoal-sim` (the deterministic simulator).

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(missing_debug_implementations)]

#[cfg(all(feature = "udp", feature = "tcp"))]
pub mod bind;
mod cluster;
mod metrics;
mod outbox;
mod query;
mod runtime;
mod seeds;
mod signal;
#[cfg(all(test, feature = "tokio"))]
mod tests;

/// The sans-IO protocol crate, for drivers of their own and for tools.
pub use shoal_core as proto;
pub use shoal_core::{
    BroadcastId, CommandError, Config, ConfigError, InvalidNodeId, Key, Keyring, KeyringError, Lifeguard, Member,
    MemberFilter, MemberState, MessageKind, Metadata, NodeId, SecurityMode, Stats, TagError, Tags,
};
#[cfg(feature = "tcp")]
pub use shoal_tcp as tcp;
#[cfg(feature = "udp")]
pub use shoal_udp as udp;
#[cfg(feature = "webrtc")]
pub use shoal_webrtc as webrtc;
#[cfg(feature = "websocket")]
pub use shoal_websocket as websocket;

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

pub use cluster::{Cluster, ClusterBuilder, ClusterEvent, ClusterMessage, Driver};
pub use metrics::Metrics;
pub use query::{QueryAnswer, QueryOutcome, QueryParams, QueryResponses};
pub use seeds::{IntoSeed, Seed};
pub use shoal_core::{Inquiry, QueryId};
pub use shoal_transport::{relay, Addr, AddrError, MAX_ADDR_LEN};

/// Longest the driver lets a transport take over one best-effort send (on the destination's sender
/// task) before it gives the send up and counts it in [`Metrics::sends_abandoned`]. Transports
/// bound their own sends far below this; it guards against one that never completes.
pub const BEST_EFFORT_SEND_DEADLINE: core::time::Duration = core::time::Duration::from_secs(5);

/// Longest the driver lets a transport take over one reliable send (connect, handshake and write
/// included) before it gives the send up, as [`BEST_EFFORT_SEND_DEADLINE`] for best-effort ones.
pub const RELIABLE_SEND_DEADLINE: core::time::Duration = core::time::Duration::from_secs(30);
pub use runtime::Runtime;
#[cfg(feature = "tokio")]
pub use runtime::TokioRuntime;
pub use shoal_transport::{
    AddrListener, BoxFuture, LinkListener, MaybeSendSync, Packet, Received, Receiver, Router, Transport,
    TransportCounters, TransportError,
};

use signal::EventQueue;

/// Errors of the [`Cluster`] API. Each says what the caller can do about it.
#[derive(Debug)]
#[non_exhaustive]
pub enum ClusterError {
    /// The node name is invalid (empty or longer than 255 bytes).
    InvalidName(InvalidNodeId),
    /// The configuration failed validation.
    Config(ConfigError),
    /// `build` was given no transport.
    NoTransport,
    /// The node refused the command (unknown member, payload too large, no seeds...).
    Command(CommandError),
    /// No seed answered within `join_timeout`. The member keeps re-announcing to them.
    JoinFailed {
        /// The seeds that were tried.
        seeds: Vec<Addr>,
    },
    /// The leave announcement was not fully gossiped before the timeout; the member shut down anyway.
    LeaveTimeout,
    /// The member was stopped on purpose ([`Cluster::shutdown`] or [`Cluster::leave`]); nothing
    /// changed. Build a new member to rejoin.
    Shutdown,
    /// The member stopped without being asked to: the reason says why (its driver panicked, was
    /// dropped, or lost every transport). Nothing changed; the member is gone
    /// and [`Cluster::closed`] has resolved with the same reason. Build a new member to rejoin.
    Closed(CloseReason),
    /// A key operation needs a keyring, and the member was built without one.
    NoKeyring,
    /// The keyring refused the operation (unknown key, or removing the primary).
    Keyring(shoal_core::security::KeyringError),
    /// [`Cluster::bind`] could not bind its sockets, or could not resolve the address. The message
    /// names the socket and the address.
    Bind(std::io::Error),
    /// A seed is neither an address nor a DNS name with a port (see [`Seed::parse`]).
    InvalidSeed(String),
    /// No seed of a join could be used: this one, a DNS name, did not resolve (the first such
    /// error; every name failed, and no seed was an address).
    Resolve {
        /// The seed, as given.
        seed: String,
        /// What the resolver said.
        source: std::io::Error,
    },
}

impl fmt::Display for ClusterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClusterError::InvalidName(e) => write!(f, "invalid node name: {e}"),
            ClusterError::Config(e) => write!(f, "{e}"),
            ClusterError::NoTransport => f.write_str("a cluster member needs at least one transport"),
            ClusterError::Command(e) => write!(f, "{e}"),
            ClusterError::JoinFailed { seeds } => write!(f, "no seed answered: {seeds:?}"),
            ClusterError::LeaveTimeout => f.write_str("leave was not fully disseminated before the timeout"),
            ClusterError::Shutdown => f.write_str("the cluster member has shut down"),
            ClusterError::Closed(reason) => write!(f, "the cluster member has stopped: {reason}"),
            ClusterError::NoKeyring => f.write_str("the member was built without a keyring"),
            ClusterError::Keyring(e) => write!(f, "{e}"),
            ClusterError::Bind(e) => write!(f, "{e}"),
            ClusterError::InvalidSeed(seed) => {
                write!(f, "invalid seed {seed:?}: expected an address (udp://10.0.0.5:7946) or a name with a port")
            }
            ClusterError::Resolve { seed, source } => write!(f, "seed {seed} did not resolve: {source}"),
        }
    }
}

impl std::error::Error for ClusterError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClusterError::InvalidName(e) => Some(e),
            ClusterError::Config(e) => Some(e),
            ClusterError::Command(e) => Some(e),
            ClusterError::Keyring(e) => Some(e),
            ClusterError::Bind(e) => Some(e),
            ClusterError::Resolve { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Why a member stopped, from [`Cluster::closed`]. Once a member has stopped, every command on its
/// handle fails, `leave` and `shutdown` return at once and every event stream ends.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// [`Cluster::shutdown`] stopped it.
    Shutdown,
    /// [`Cluster::leave`] stopped it after announcing the departure.
    Left,
    /// Every transport closed, so nothing could arrive any more.
    TransportsClosed,
    /// The driver panicked: in the protocol loop or in a transport's receive future. Holds the
    /// panic's message. (A panicking `on_message` callback does not stop the member: the panic is
    /// logged and counted in [`Metrics::callback_panics`].)
    Panicked(String),
    /// The driver was dropped before it finished: never run, its task cancelled, or the executor
    /// running it shut down.
    DriverDropped,
}

impl CloseReason {
    /// The error commands return once the member has stopped for this reason.
    fn error(&self) -> ClusterError {
        match self {
            CloseReason::Shutdown | CloseReason::Left => ClusterError::Shutdown,
            other => ClusterError::Closed(other.clone()),
        }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::Shutdown => f.write_str("shut down"),
            CloseReason::Left => f.write_str("left the cluster"),
            CloseReason::TransportsClosed => f.write_str("every transport closed"),
            CloseReason::Panicked(message) => write!(f, "the driver panicked: {message}"),
            CloseReason::DriverDropped => f.write_str("the driver was dropped before it finished"),
        }
    }
}

/// Events of one subscriber, from [`Cluster::events`]. Use [`EventStream::next`] or, as a
/// `futures::Stream`, any stream combinator.
#[derive(Debug)]
pub struct EventStream {
    queue: Arc<EventQueue<ClusterEvent>>,
}

impl EventStream {
    fn new(queue: Arc<EventQueue<ClusterEvent>>) -> Self {
        EventStream { queue }
    }

    /// The next event, or `None` once the member has shut down.
    pub async fn next(&mut self) -> Option<ClusterEvent> {
        std::future::poll_fn(|cx| self.queue.poll_next(cx)).await
    }

    /// Events this subscriber lost by falling more than `event_capacity` behind.
    pub fn dropped(&self) -> u64 {
        self.queue.dropped()
    }
}

impl futures_util::Stream for EventStream {
    type Item = ClusterEvent;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<ClusterEvent>> {
        self.queue.poll_next(cx)
    }
}
