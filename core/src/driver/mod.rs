//! The async driver (feature `driver`): runs a [`crate::Node`] over real transports.
//!
//! - [`Transport`]: the plugin interface (best-effort datagrams, reliable frames, receive), with a
//!   [`Router`] that holds several plugins and picks one per address scheme.
//! - [`Runtime`]: clock, timers, spawning and seeding, so the same driver runs on tokio natively
//!   (feature `tokio`) and on the browser's event loop in the wasm package.
//! - [`Cluster`]: the handle applications use (join, broadcast, send, events, members, leave), and
//!   [`Driver`], the future that runs the protocol loop.

use std::prelude::rust_2021::*;
mod cluster;
mod metrics;
mod outbox;
mod runtime;
mod signal;
#[cfg(all(test, feature = "tokio"))]
mod tests;
mod transport;

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

pub use crate::addr::{Addr, AddrError, MAX_ADDR_LEN};
/// The relay envelope (moved to [`crate::relay`], feature `relay`; kept here for existing paths).
pub use crate::relay;
pub use cluster::{Cluster, ClusterBuilder, ClusterEvent, ClusterMessage, Driver};
pub use metrics::Metrics;

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
pub use transport::{
    BoxFuture, LinkListener, MaybeSendSync, Packet, Received, Receiver, Router, Transport, TransportCounters,
    TransportError,
};

use crate::config::ConfigError;
use crate::identity::InvalidNodeId;
use crate::node::CommandError;
use signal::EventQueue;

/// Errors of the [`Cluster`] API. Each says what the caller can do about it.
#[derive(Debug)]
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
    JoinFailed { seeds: Vec<Addr> },
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
    Keyring(crate::security::KeyringError),
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
