//! The receiving side: the accept loop, one reader task per connection, and the frame loop those
//! readers (and the readers of our outbound connections) share.
//!
//! An accepted connection must open with a handshake ([`crate::frame`]) within `io_timeout`; its
//! frames are then reported as coming from the advertised address it announced, so replies go to
//! that address (the peer's listener), not to the connection's ephemeral port. Frames are pushed
//! into the transport's bounded inbox; `recv` takes them from there.
//!
//! Backpressure and limits, all without blocking a reader forever:
//! - an accepted connection past `max_inbound`, or past `max_inbound_per_ip` from its source
//!   address, is closed at once with a reset, before anything is read or spawned (counted in
//!   `refused` and `dropped_in`);
//! - a frame longer than `max_frame` disconnects the peer (counted in `dropped_in`), before any
//!   allocation;
//! - a body buffer grows as its bytes arrive, so memory follows what peers actually sent;
//! - frames waiting for `recv` are capped by a byte budget: a reader waits up to `io_timeout` for
//!   room, then drops the frame (counted);
//! - a full inbox makes a reader wait up to `io_timeout`, then drop the frame (counted);
//! - a connection whose peer makes no progress for `idle_timeout` is closed: zero-length frames
//!   are read and ignored, they do not count as progress ([`crate::shared::Activity`]);
//! - a peer that stops acknowledging (keepalive probes, inbound) fails the connection after
//!   `ack_timeout` ([`crate::socket`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use shoal_transport::Addr;
use tokio::io::{AsyncRead, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::error::SendTimeoutError;
use tokio::time::timeout;

use crate::frame::{self, ReadEnd};
use crate::shared::{add, Activity, Inbound, InboundSlot, Shared};
use crate::socket::{self, SendQueue};

/// Read buffer per connection: several small frames per system call.
pub(crate) const READ_BUFFER: usize = 16 << 10;

/// Pause after a failed `accept` (out of file descriptors, ...), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Accepts connections until the transport closes, spawning a reader for each. Drops the listener
/// (releasing the port) when it returns.
pub(crate) async fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    loop {
        let accepted = tokio::select! {
            () = shared.closing.wait() => return,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => match shared.admit(peer.ip()) {
                Ok(slot) => {
                    add(&shared.counters.accepted, 1);
                    tokio::spawn(serve(shared.clone(), stream, peer, slot));
                }
                Err(why) => {
                    socket::refuse(stream);
                    add(&shared.counters.refused, 1);
                    shared.counters.traffic.dropped_in();
                    tracing::debug!(%peer, why, "inbound tcp connection refused");
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "tcp accept failed");
                tokio::select! {
                    () = shared.closing.wait() => return,
                    () = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                }
            }
        }
    }
}

/// Runs one admitted inbound connection: handshake, then frames until it ends or the transport
/// closes. Holds `slot` (its place under the caps) until then.
async fn serve(shared: Arc<Shared>, stream: TcpStream, peer: SocketAddr, slot: InboundSlot) {
    let _slot = slot;
    socket::configure(&stream, &shared.options);
    let mut rd = BufReader::with_capacity(READ_BUFFER, stream);
    let end = tokio::select! {
        () = shared.closing.wait() => ReadEnd::Closed,
        end = handshake_then_frames(&shared, &mut rd) => end,
    };
    note_end(&shared, &end, "inbound", peer);
}

async fn handshake_then_frames<R: AsyncRead + Unpin>(shared: &Shared, rd: &mut R) -> ReadEnd {
    let from = match frame::read_handshake(rd, shared.options.io_timeout).await {
        Ok(from) => from,
        Err(end) => {
            shared.counters.traffic.dropped_in();
            return end;
        }
    };
    // We never write to an inbound connection: only frames read are progress.
    read_frames(shared, rd, &from, &Activity::new(), SendQueue::none()).await
}

/// Reads frames until the connection ends, reporting each as coming from `from`. Each non-empty
/// frame is progress on `activity`; the connection ends once the peer has made no progress for
/// `idle_timeout`. `queue` is the connection's send queue when we write to it too (outbound), so
/// that bytes the peer acknowledged count as progress.
pub(crate) async fn read_frames<R: AsyncRead + Unpin>(
    shared: &Shared,
    rd: &mut R,
    from: &Addr,
    activity: &Activity,
    queue: SendQueue,
) -> ReadEnd {
    let options = &shared.options;
    let idle_at = || activity.idle_at(options.idle_timeout, &queue);
    loop {
        let len = match frame::read_header(rd, options.io_timeout, idle_at).await {
            Ok(len) => len,
            Err(end) => return count_violation(shared, end),
        };
        if len == 0 {
            // A keep-alive: read and ignored, and not progress, or a peer could hold a
            // connection (and its place under the caps) forever by sending nothing else.
            continue;
        }
        if len as usize > options.max_frame {
            return count_violation(shared, ReadEnd::Protocol("frame longer than max_frame"));
        }
        let bytes = match frame::read_body(rd, len, options.io_timeout).await {
            Ok(bytes) => bytes,
            Err(end) => return count_violation(shared, end),
        };
        activity.frame_read();
        // Charged for bytes that actually arrived, so a peer announcing big frames and sending
        // little cannot starve the others of budget.
        let Ok(Ok(permit)) = timeout(options.io_timeout, shared.budget.clone().acquire_many_owned(len)).await else {
            shared.counters.traffic.dropped_in();
            tracing::debug!(%from, len, "frames waiting for recv exceed the memory budget; frame dropped");
            continue;
        };
        let item = Inbound { from: from.clone(), bytes, _permit: permit };
        match shared.inbox.send_timeout(item, options.io_timeout).await {
            Ok(()) => {}
            Err(SendTimeoutError::Timeout(_)) => {
                shared.counters.traffic.dropped_in();
                tracing::debug!(%from, len, "inbox full; frame dropped");
            }
            Err(SendTimeoutError::Closed(_)) => return ReadEnd::Closed,
        }
    }
}

/// Counts protocol violations in `dropped_in` and passes the reason on.
fn count_violation(shared: &Shared, end: ReadEnd) -> ReadEnd {
    if matches!(end, ReadEnd::Protocol(_)) {
        shared.counters.traffic.dropped_in();
    }
    end
}

/// Logs why a connection's reader stopped and counts idle and timed-out connections. Call once
/// per connection, when its reader returns.
pub(crate) fn note_end(shared: &Shared, end: &ReadEnd, direction: &'static str, peer: SocketAddr) {
    match end {
        ReadEnd::Idle => add(&shared.counters.idle_closed, 1),
        ReadEnd::Io(e) if e.kind() == std::io::ErrorKind::TimedOut => add(&shared.counters.timed_out, 1),
        _ => {}
    }
    match end {
        ReadEnd::Protocol(why) => {
            tracing::debug!(%peer, direction, why, "tcp peer disconnected for a protocol violation")
        }
        ReadEnd::Io(e) => tracing::debug!(%peer, direction, error = %e, "tcp connection failed"),
        ReadEnd::Eof | ReadEnd::Idle | ReadEnd::Closed => {
            tracing::trace!(%peer, direction, ?end, "tcp connection ended")
        }
    }
}
