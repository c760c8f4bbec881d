//! Shoal over TCP: the reliable path of a native member, and optionally its only path.
//!
//! [`TcpTransport`] implements [`shoal_transport::Transport`] with length-prefixed frames over
//! TCP connections. It has two jobs:
//!
//! - **Reliable frames** (push-pull state exchange, reliable messages) to `tcp://` and `udp://`
//!   addresses. A UDP member's TCP listener is on the same host and port, so a member runs
//!   `shoal-udp` and this transport bound to the same port, and the router sends best-effort
//!   packets over UDP and reliable frames here.
//! - **TCP-only mode** ([`TcpOptions::best_effort`]): also carries best-effort packets (probes,
//!   gossip) to `tcp://` addresses, for networks that drop UDP. Every member of such a cluster
//!   advertises a `tcp://` address.
//!
//! The model:
//!
//! - Frames are a 4-byte big-endian length and the bytes; a connection opens with one handshake
//!   frame, [`HANDSHAKE_MAGIC`] followed by the sender's advertised address as text. The
//!   length is checked against [`TcpOptions::max_frame`] before anything is allocated; a peer that
//!   violates it is disconnected and counted in `dropped_in`. Hostile input never panics.
//! - The accepting side reports every frame of a connection as coming from the address in its
//!   handshake: a reply goes to the peer's listener, not to the connection's ephemeral port.
//! - One outbound connection per peer, opened lazily by the first send and reused until it fails
//!   or the peer makes no progress on it for [`TcpOptions::idle_timeout`] (see below). Inbound connections are read by one task each,
//!   which pushes frames into a bounded inbox that [`Transport::recv`](shoal_transport::Transport::recv)
//!   drains. Replies go out on our own outbound connection to the peer's advertised address.
//! - Nothing blocks forever: connects, frame writes and frame reads each have a timeout, a full
//!   inbox or memory budget makes a reader wait `io_timeout` and then drop the frame, and
//!   best-effort packets never wait for a connect.
//! - A dead peer is noticed within seconds, even one that vanished without a reset (a partition,
//!   a crash, a black-holed link). Writes into such a connection still succeed, since they only
//!   fill our kernel's send buffer, so a write is never taken as a sign of life. What counts is
//!   progress: a non-empty frame read, or bytes we wrote that the peer acknowledged. Every
//!   connection, outbound and inbound, carries `TCP_USER_TIMEOUT` = [`TcpOptions::ack_timeout`]
//!   (Linux, Android), and TCP keepalive after [`TcpOptions::keepalive`] of quiet (by default
//!   longer than a connection is kept quiet, so it never probes): the kernel fails a
//!   connection whose data or keepalive probes go unacknowledged that long, its reader sees the
//!   error, and the next frame to the peer opens a fresh connection. Without this, the kernel
//!   keeps retransmitting with a backoff that grows to two minutes, and frames queued behind
//!   cross a healed link only at its next retry.
//! - Inbound connections are capped, in total ([`TcpOptions::max_inbound`]) and per source
//!   address ([`TcpOptions::max_inbound_per_ip`]); one past a cap is refused at once with a reset
//!   and counted. A connection whose peer delivers no non-empty frame for `idle_timeout` is
//!   closed: zero-length keep-alive frames do not hold it open.
//! - [`Transport::close`](shoal_transport::Transport::close) (or dropping the transport) stops
//!   the listener and every connection task.

#![deny(missing_docs)]

mod frame;
mod inbound;
mod outbound;
mod shared;
mod socket;
mod transport;

use std::time::Duration;

use shoal_transport::Addr;

pub use outbound::BEST_EFFORT_WAIT;
pub use shared::ConnectionStats;
pub use transport::TcpTransport;

/// Handshake prefix of protocol version 1 (followed by the advertised address).
pub const HANDSHAKE_MAGIC: &[u8] = frame::MAGIC;

/// Settings of a [`TcpTransport`]. Every duration and every cap must be non-zero.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpOptions {
    /// Largest frame sent or accepted, in bytes (default 16 MiB + 1 KiB: the core's default
    /// `max_reliable_size` plus room). Sends above it fail with `TooLarge`; a peer announcing a
    /// larger frame is disconnected. At most `u32::MAX`; larger values act as `u32::MAX`.
    pub max_frame: usize,
    /// How long opening a connection may take, handshake excluded (default 2 s).
    pub connect_timeout: Duration,
    /// How long writing one frame, or reading one once its first byte arrived, may take (default
    /// 5 s). A 16 MiB frame therefore needs about 27 Mbit/s; raise it for slow links.
    pub io_timeout: Duration,
    /// Connections on which the peer made no progress for this long are closed (default 60 s):
    /// no non-empty frame arrived, and none of the bytes we wrote were acknowledged. Zero-length
    /// frames do not count, nor do writes the peer has not acknowledged. (Where the send queue
    /// cannot be read, on systems other than Linux and Android, a write counts as progress.) The
    /// next send reconnects.
    pub idle_timeout: Duration,
    /// How long data we wrote, or a keepalive probe, may stay unacknowledged by the peer before
    /// the connection is declared dead and closed (default 5 s, like `io_timeout`). Set as
    /// `TCP_USER_TIMEOUT` on every connection (Linux and Android; elsewhere the keepalive probe
    /// count approximates it for quiet connections). A peer that keeps its receive window shut
    /// this long (it stopped reading) counts as dead too. Raise it for links that can lose
    /// several retransmissions of the same segment in a row. Rounded to milliseconds.
    pub ack_timeout: Duration,
    /// A connection quiet for this long is probed with TCP keepalive, then again every 2 s (or
    /// `keepalive`, if shorter) until the peer answers or `ack_timeout` passes (whole seconds, at
    /// least 1 s). The default, 90 s, is longer than `idle_timeout`: a quiet connection is closed
    /// before it is ever probed, and costs no packets. A shorter value notices a dead peer on a
    /// quiet connection sooner (an inbound connection only reads) at two packets per probe and
    /// connection: with 2 s, ten LAN members that hold a few connections each sent six times more
    /// TCP keepalive segments than protocol packets. Data we write is covered either way, by
    /// `ack_timeout`.
    pub keepalive: Duration,
    /// Inbound connections open at once, handshakes in progress included (default 1,024). One
    /// more is refused at once (closed with a reset) and counted in
    /// [`ConnectionStats::refused`] and `dropped_in`. Raise it for TCP-only clusters of more
    /// than about a thousand members, where most members may hold a connection to us.
    pub max_inbound: usize,
    /// Inbound connections open at once from one source IP address (default 128), refused and
    /// counted like those past `max_inbound`. A host normally needs one per member it runs;
    /// raise it for many members behind one address (a NAT, or a test with every member on
    /// loopback). IPv6 sources are capped per address, not per prefix.
    pub max_inbound_per_ip: usize,
    /// TCP-only mode: also carry best-effort packets to `tcp://` addresses (default false). A
    /// best-effort packet never waits for a connection: the first one to a peer is sent by a
    /// background task, and one that would wait longer than [`BEST_EFFORT_WAIT`] is dropped.
    pub best_effort: bool,
    /// The address announced in our handshakes, which peers reply to (default `tcp://<bound
    /// addr>`). Set it when bound to `0.0.0.0` or behind NAT, and to the member's `udp://` address
    /// when running next to `shoal-udp` on the same port.
    pub advertise: Option<Addr>,
}

impl Default for TcpOptions {
    fn default() -> Self {
        TcpOptions {
            max_frame: (16 << 20) + 1_024,
            connect_timeout: Duration::from_secs(2),
            io_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
            ack_timeout: Duration::from_secs(5),
            keepalive: Duration::from_secs(90),
            max_inbound: 1_024,
            max_inbound_per_ip: 128,
            best_effort: false,
            advertise: None,
        }
    }
}

impl TcpOptions {
    /// Checks the ranges documented on each field.
    pub(crate) fn validate(&self) -> std::io::Result<()> {
        let invalid = |what: &str| Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, what.to_string()));
        if self.max_frame == 0 {
            return invalid("TcpOptions::max_frame must be at least 1");
        }
        let timeouts = [self.connect_timeout, self.io_timeout, self.idle_timeout, self.ack_timeout, self.keepalive];
        if timeouts.iter().any(Duration::is_zero) {
            return invalid("TcpOptions timeouts must be non-zero");
        }
        if self.max_inbound == 0 || self.max_inbound_per_ip == 0 {
            return invalid("TcpOptions::max_inbound and max_inbound_per_ip must be at least 1");
        }
        Ok(())
    }

    /// `max_frame` as it applies on the wire.
    pub(crate) fn frame_limit(&self) -> usize {
        self.max_frame.min(u32::MAX as usize)
    }
}
