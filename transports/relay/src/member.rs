//! One WebSocket member's connection: a reader task forwarding what the member sends, a writer
//! task draining its bounded [`Outbox`], and three timers that end connections which no longer
//! work.
//!
//! - **Ping and idle.** The writer pings the member every `ping_interval`; browsers and
//!   WebSocket libraries answer by themselves. The reader closes the connection (4003) when
//!   nothing at all, frame or pong, arrived for `idle_timeout`. This ends half-open connections
//!   (a member behind a dead link, whose TCP connection would otherwise linger for many minutes)
//!   and idle connections that only hold a file descriptor.
//! - **Stall.** Every step of the writer (handing one frame to the socket, flushing) must finish
//!   within `stall_timeout`. One that does not means the member's socket took nothing for that
//!   long while frames waited: the member stopped reading. It is closed as a slow consumer
//!   (4002). A member that reads, however much is sent to it, is never closed for that: its full
//!   queue only drops frames (see the switchboard).
//!
//! Every close the relay decides goes through [`Switchboard::close`](crate::Switchboard::close)
//! and carries a [`CloseReason`] that the writer sends in the close frame, waiting at most
//! [`CLOSE_FRAME_WAIT`] (a stalled member's socket may never take it).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use rand::TryRngCore;
use shoal_core::relay::FarewellSecret;
use tokio::sync::watch;
use tokio::time::{sleep_until, timeout, Instant};

use crate::close::CloseReason;
use crate::metrics::DropReason;
use crate::queue::Outbox;
use crate::server::App;
use crate::switchboard::Session;

/// How many frames a writer hands to the WebSocket before one flush.
const WRITE_BATCH: usize = 64;
/// How long a writer tries to send its close frame before dropping the socket anyway.
const CLOSE_FRAME_WAIT: Duration = Duration::from_millis(500);

/// The timers of every member connection (from the relay's config).
#[derive(Clone, Copy, Debug)]
pub(crate) struct MemberTimers {
    pub(crate) stall: Duration,
    pub(crate) ping: Duration,
    pub(crate) idle: Duration,
}

/// Counts a connection in `live` while it exists.
pub(crate) struct LiveGuard<'a>(&'a watch::Sender<usize>);

impl<'a> LiveGuard<'a> {
    pub(crate) fn new(live: &'a watch::Sender<usize>) -> Self {
        live.send_modify(|n| *n += 1);
        LiveGuard(live)
    }
}

impl Drop for LiveGuard<'_> {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// A fresh farewell secret from the OS's cryptographic RNG; `None` (logged) if the OS has none
/// to give, in which case the member is welcomed without a secret, exactly as by a relay that
/// predates farewells.
pub(crate) fn farewell_secret() -> Option<FarewellSecret> {
    let mut secret = FarewellSecret::default();
    match rand::rngs::OsRng.try_fill_bytes(&mut secret) {
        Ok(()) => Some(secret),
        Err(e) => {
            tracing::warn!(error = %e, "no randomness for a farewell secret; welcoming without one");
            None
        }
    }
}

/// Runs one member's connection until it ends. Call once the WebSocket upgrade is done, with
/// `farewell` set if the member asked for a farewell secret (`farewell=1`).
pub(crate) async fn member_connection(app: App, peer: String, farewell: bool, socket: WebSocket) {
    let _live = LiveGuard::new(&app.shared.live);
    // Drawn before taking the lock.
    let secret = if farewell { farewell_secret() } else { None };
    let admitted = app.shared.board().admit(&peer, secret);
    let Ok((session, outbox)) = admitted else { return };
    tracing::debug!(peer, conn = session.conn(), "member connected");
    let (sink, mut stream) = socket.split();
    let writer = tokio::spawn(write_loop(app.clone(), session.clone(), sink, outbox.clone()));
    match read_loop(&app, &session, &mut stream, &outbox).await {
        Some(reason) => app.shared.board().close(&session, &outbox, reason),
        None => {
            app.shared.board().disconnect(&session);
            outbox.close();
        }
    }
    let _ = writer.await;
    if outbox.close_reason().is_some() {
        // The closing handshake: wait (briefly) for the member's own close frame before dropping
        // the socket, so that what it still sends (a pong) does not reset the connection and
        // destroy our close frame in its receive buffer.
        let _ = timeout(CLOSE_FRAME_WAIT, async {
            while let Some(Ok(m)) = stream.next().await {
                if matches!(m, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }
    tracing::debug!(peer, conn = session.conn(), reason = ?outbox.close_reason(), "member disconnected");
}

/// Forwards the member's frames until the connection ends. Returns the reason to close with when
/// the relay ends it (idle, a message too big, a protocol error), `None` when it ended otherwise.
async fn read_loop(
    app: &App,
    session: &Session,
    stream: &mut SplitStream<WebSocket>,
    outbox: &Outbox,
) -> Option<CloseReason> {
    let idle = app.shared.member_timers.idle;
    let closed = outbox.closed();
    tokio::pin!(closed);
    let mut deadline = Instant::now() + idle;
    loop {
        let message = tokio::select! {
            biased;
            () = &mut closed => return None,
            // Before the deadline: what already arrived counts (a relay stopped for a while and
            // resumed must not close members whose frames wait in its socket buffers).
            m = stream.next() => m,
            () = sleep_until(deadline) => return Some(CloseReason::Idle),
        };
        deadline = Instant::now() + idle;
        let bytes = match message {
            Some(Ok(Message::Binary(bytes))) => bytes,
            Some(Ok(Message::Text(_))) => {
                app.shared.board().record_drop(DropReason::NotBinary);
                continue;
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(Message::Close(_))) | None => return None,
            Some(Err(e)) => return read_error_reason(e),
        };
        let route = app.shared.board().route_ws(session, &bytes);
        app.send_route(route).await;
    }
}

/// What to tell a member whose messages could not be read: nothing if its socket failed (nobody
/// would hear it).
fn read_error_reason(e: axum::Error) -> Option<CloseReason> {
    let inner = e.into_inner();
    use tungstenite::error::ProtocolError;
    match inner.downcast_ref::<tungstenite::Error>() {
        Some(tungstenite::Error::Capacity(_)) => Some(CloseReason::MessageTooBig),
        // The member went away without a close frame: its socket is gone, like any reset.
        Some(tungstenite::Error::Protocol(ProtocolError::ResetWithoutClosingHandshake)) => None,
        Some(tungstenite::Error::Protocol(_) | tungstenite::Error::Utf8(_)) => Some(CloseReason::ProtocolError),
        _ => None,
    }
}

/// What the writer does next.
enum Work {
    Frames(Bytes),
    Ping,
}

/// Why the writer stopped writing.
enum Stop {
    /// The socket failed or the queue closed.
    Ended,
    /// A step took longer than the stall timeout.
    Stalled,
}

/// Runs one write step, bounded by the stall timeout.
async fn step<E>(stall: Duration, f: impl std::future::Future<Output = Result<(), E>>) -> Result<(), Stop> {
    match timeout(stall, f).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(Stop::Ended),
        Err(_) => Err(Stop::Stalled),
    }
}

async fn write_batch(
    sink: &mut SplitSink<WebSocket, Message>,
    outbox: &Outbox,
    first: Bytes,
    stall: Duration,
) -> Result<(), Stop> {
    step(stall, sink.feed(Message::Binary(first))).await?;
    for _ in 1..WRITE_BATCH {
        let Some(frame) = outbox.try_pop() else { break };
        step(stall, sink.feed(Message::Binary(frame))).await?;
    }
    step(stall, sink.flush()).await
}

async fn write_loop(app: App, session: Session, mut sink: SplitSink<WebSocket, Message>, outbox: Arc<Outbox>) {
    let timers = app.shared.member_timers;
    let closed = outbox.closed();
    tokio::pin!(closed);
    let mut ping = tokio::time::interval_at(Instant::now() + timers.ping, timers.ping);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let work = tokio::select! {
            biased;
            () = &mut closed => break,
            // Before frames, so a busy queue cannot starve the pings (one tick per interval).
            _ = ping.tick() => Work::Ping,
            frame = outbox.pop() => match frame {
                Some(frame) => Work::Frames(frame),
                None => break,
            },
        };
        let written = async {
            match work {
                Work::Frames(first) => write_batch(&mut sink, &outbox, first, timers.stall).await,
                Work::Ping => step(timers.stall, sink.send(Message::Ping(Bytes::new()))).await,
            }
        };
        let result = tokio::select! {
            biased;
            () = &mut closed => break,
            r = written => r,
        };
        match result {
            Ok(()) => {}
            Err(Stop::Ended) => break,
            Err(Stop::Stalled) => {
                tracing::debug!(peer = session.peer(), "slow consumer: its socket took nothing for the stall timeout");
                app.shared.board().close(&session, &outbox, CloseReason::SlowConsumer);
                break;
            }
        }
    }
    // Tells the reader to stop too (idempotent when the queue was closed already).
    outbox.close();
    if let Some(reason) = outbox.close_reason() {
        // Frames cut off mid-batch may still sit in the sink's buffer; they go out first, which is
        // fine: the member just gets them before the close.
        match timeout(CLOSE_FRAME_WAIT, sink.send(close_message(reason))).await {
            Ok(Ok(())) => tracing::trace!(?reason, "close frame sent"),
            Ok(Err(e)) => tracing::trace!(?reason, error = %e, "close frame not sent"),
            Err(_) => tracing::trace!(?reason, "close frame not sent in time"),
        }
    }
}

/// The WebSocket close frame telling a member why the relay closed its connection.
fn close_message(reason: CloseReason) -> Message {
    Message::Close(Some(CloseFrame { code: reason.code(), reason: Utf8Bytes::from_static(reason.text()) }))
}
