//! The I/O of links between relays (the protocol is `crate::link`'s, the routing the
//! [`Switchboard`](crate::Switchboard)'s): `GET /relay-link` on the listener's side, one dial
//! loop per configured peer relay on the dialer's side, and running a link once its handshake is
//! done (a reader handing frames to the switchboard, a writer draining the link's bounded queue,
//! pings, an idle timer and a stall timer, as for members).
//!
//! Both sides speak through [`Wire`]: the listener's socket is axum's, the dialer's is
//! tokio-tungstenite's, and each is adapted once so the rest is written once.
//!
//! A dial loop dials, runs the link until it ends, waits a jittered backoff (100 ms doubling to
//! 10 s, reset after a link that stayed up 10 s) and dials again, until the relay shuts down. A
//! link closed because another link between the two relays won ([`CloseReason::LinkSuperseded`])
//! is not redialed while that other link is up (checked every second).
//!
//! # Liveness
//!
//! A link can die without either side being told: the other relay's host vanishes, a NAT or a
//! firewall forgets the connection, the network between the relays drops every packet. TCP then
//! reports nothing for minutes, and what the relay writes into the link is lost without being
//! counted, so members of the two relays lose each other's probes and WebRTC signals. Each side
//! therefore checks the link itself, without counting on the other:
//!
//! - **Pings.** Each side pings every [`LINK_PING`] (1 s), whatever else it sends, and answers the
//!   other's pings, so a healthy link carries something each way at least twice a second.
//! - **Idle.** A link from which nothing at all (frame, ping or pong) arrived for [`LINK_IDLE`]
//!   (4 s) is closed ([`CloseReason::Idle`]), and its dialer dials again (the first wait after a
//!   link that stayed up [`LINK_STABLE`] is at most 100 ms). A half-open link is thus gone 3-4 s
//!   after the last thing that got through; from then on frames for the other relay's members are
//!   dropped and counted as `link_down` instead of vanishing, and the link is back as soon as a
//!   dial gets through (`tests/links.rs` measures it through a proxy that blackholes: closed 4.0 s
//!   after the cut, dialed again 0.6 s later, with 15 s before these values).
//! - **Stall.** Each step of the writer (handing one frame to the socket, flushing, pinging) must
//!   finish within [`LINK_STALL`] (as long as [`LINK_IDLE`]), or the link is closed
//!   ([`CloseReason::SlowConsumer`]): the other relay's socket took nothing for that long. This
//!   catches a peer that still talks but no longer reads (or a path that fails one way) on this
//!   side, without waiting for the other side's idle timer (a relay of an older version waits
//!   longer).
//!
//! Frames written into a link in the last seconds before it is found dead are still lost
//! uncounted: TCP does not say which bytes the other side received, and links have no
//! acknowledgements of their own. Nor do these timers keep members of the two relays from
//! suspecting each other: the browser preset's suspicions last 1-2 s, so any outage of a link is,
//! to the cluster, a partition between the two relays' members, shortened here, not hidden.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{self as axws, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use rand::TryRngCore;
use tokio::time::{sleep, sleep_until, timeout, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self as tws, Message as TMessage};

use crate::close::CloseReason;
use crate::link::{
    check_request, is_ready, ready, Backoff, Dialer, GateError, LinkRequest, Listener, Nonce, RelayKey, LINK_HEADER,
    LINK_PATH, MAX_LINK_OVERHEAD, NONCE_LEN,
};
use crate::member::LiveGuard;
use crate::metrics::{DropReason, LinkRefusal};
use crate::queue::Outbox;
use crate::server::{App, Shared};
use crate::switchboard::LinkSession;

/// How long a handshake may take, from the TCP connect to the last handshake message.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often each side pings a link (see *Liveness* above). Pings and pongs cost a few bytes a
/// second per link; once a second keeps [`LINK_IDLE`] short while tolerating several in a row
/// that are late or lost.
const LINK_PING: Duration = Duration::from_secs(1);
/// A link from which nothing (no frame, no ping, no pong) arrived for this long is closed. Four
/// pings' worth: on a healthy link the other side's pings (and its pongs to ours) arrive every
/// second or more often, so closing takes three pings in a row lost or late, plus a second for the
/// round trip and scheduling (a loaded machine, a few TCP retransmissions: a lost segment is resent
/// after 200 ms, then 400 ms, 800 ms). Idle and busy loopback links did not close once in 100 s
/// beside `stress-ng --cpu 2` on two cores (three runs). Shorter would close links that a busy
/// relay or a lossy path only delayed; longer leaves frames disappearing into a dead link for
/// longer (it was 15 s, with pings every 5 s).
const LINK_IDLE: Duration = Duration::from_secs(4);
/// Longest a step of a link's writer may take before the link is closed as stalled. A relay reads
/// its links without ever waiting (its reader hands each frame to a queue that drops rather than
/// blocks), so a link socket that takes nothing for as long as a link may stay silent means the
/// same as the silence: the other relay or the path is gone. It is the links' own, not members'
/// `stall_timeout` (10 s by default, sized for slow browsers). At 4 s, a step writing out a full
/// 128 KiB WebSocket write buffer needs only about 260 kbit/s.
const LINK_STALL: Duration = LINK_IDLE;
/// The dialer's first wait after a failure or a dropped link.
const DIAL_MIN: Duration = Duration::from_millis(100);
/// The dialer's longest wait.
const DIAL_MAX: Duration = Duration::from_secs(10);
/// A link that stayed up this long resets the dialer's backoff.
const LINK_STABLE: Duration = Duration::from_secs(10);
/// How often a dialer whose link was superseded checks whether the winning link is still up.
const SUPERSEDED_RECHECK: Duration = Duration::from_secs(1);
/// How many frames a link's writer hands to the socket before one flush.
const WRITE_BATCH: usize = 64;
/// How long a link's writer tries to send its close frame.
const CLOSE_FRAME_WAIT: Duration = Duration::from_millis(500);

/// The links part of a relay's setup: its key, and the relays it dials.
#[derive(Debug)]
pub(crate) struct LinkSetup {
    pub(crate) key: RelayKey,
    pub(crate) peers: Vec<String>,
}

/// A WebSocket message, whichever library carried it.
#[derive(Debug)]
enum Wire {
    Binary(Bytes),
    Ping,
    Pong,
    /// A close frame, with its code if it had one (incoming) or the reason to send (outgoing).
    Close(Option<u16>, Option<CloseReason>),
    /// A text message (never valid on a link).
    Other,
}

type WireSink = Pin<Box<dyn Sink<Wire, Error = ()> + Send>>;
type WireStream = Pin<Box<dyn Stream<Item = Result<Wire, ()>> + Send>>;

fn from_axum(m: axws::Message) -> Wire {
    match m {
        axws::Message::Binary(b) => Wire::Binary(b),
        axws::Message::Ping(_) => Wire::Ping,
        axws::Message::Pong(_) => Wire::Pong,
        axws::Message::Close(frame) => Wire::Close(frame.map(|f| f.code), None),
        axws::Message::Text(_) => Wire::Other,
    }
}

fn to_axum(w: Wire) -> axws::Message {
    match w {
        Wire::Binary(b) => axws::Message::Binary(b),
        Wire::Ping => axws::Message::Ping(Bytes::new()),
        Wire::Pong => axws::Message::Pong(Bytes::new()),
        Wire::Close(_, reason) => axws::Message::Close(
            reason.map(|r| axws::CloseFrame { code: r.code(), reason: axws::Utf8Bytes::from_static(r.text()) }),
        ),
        Wire::Other => axws::Message::Text(axws::Utf8Bytes::from_static("")),
    }
}

fn from_tungstenite(m: TMessage) -> Wire {
    match m {
        TMessage::Binary(b) => Wire::Binary(b),
        TMessage::Ping(_) => Wire::Ping,
        TMessage::Pong(_) => Wire::Pong,
        TMessage::Close(frame) => Wire::Close(frame.map(|f| f.code.into()), None),
        TMessage::Text(_) | TMessage::Frame(_) => Wire::Other,
    }
}

fn to_tungstenite(w: Wire) -> TMessage {
    match w {
        Wire::Binary(b) => TMessage::Binary(b),
        Wire::Ping => TMessage::Ping(Bytes::new()),
        Wire::Pong => TMessage::Pong(Bytes::new()),
        Wire::Close(_, reason) => TMessage::Close(
            reason.map(|r| CloseFrame { code: r.code().into(), reason: tws::Utf8Bytes::from_static(r.text()) }),
        ),
        Wire::Other => TMessage::Text(tws::Utf8Bytes::from_static("")),
    }
}

fn axum_halves(socket: WebSocket) -> (WireSink, WireStream) {
    let (sink, stream) = socket.split();
    let sink = sink.sink_map_err(|_| ()).with(|w: Wire| futures_util::future::ready(Ok::<_, ()>(to_axum(w))));
    let stream = stream.map(|m| m.map(from_axum).map_err(|_| ()));
    (Box::pin(sink), Box::pin(stream))
}

fn tungstenite_halves<S>(socket: tokio_tungstenite::WebSocketStream<S>) -> (WireSink, WireStream)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sink, stream) = socket.split();
    let sink = sink.sink_map_err(|_| ()).with(|w: Wire| futures_util::future::ready(Ok::<_, ()>(to_tungstenite(w))));
    let stream = stream.map(|m| m.map(from_tungstenite).map_err(|_| ()));
    (Box::pin(sink), Box::pin(stream))
}

/// 16 fresh bytes from the OS's cryptographic RNG; `None` (logged) if it has none to give.
fn fresh_nonce() -> Option<Nonce> {
    let mut nonce = [0u8; NONCE_LEN];
    match rand::rngs::OsRng.try_fill_bytes(&mut nonce) {
        Ok(()) => Some(nonce),
        Err(e) => {
            tracing::warn!(error = %e, "no randomness for a link nonce");
            None
        }
    }
}

/// The next binary message within the handshake's time, `Err` with the close code if the other
/// side closed instead (`None` when the connection just ended or something else came).
async fn next_binary(stream: &mut WireStream) -> Result<Bytes, Option<u16>> {
    loop {
        match stream.next().await {
            Some(Ok(Wire::Binary(b))) => return Ok(b),
            Some(Ok(Wire::Ping | Wire::Pong)) => continue,
            Some(Ok(Wire::Close(code, _))) => return Err(code),
            Some(Ok(Wire::Other) | Err(())) | None => return Err(None),
        }
    }
}

/// Largest link message routed (larger ones are dropped and counted as oversized); the WebSocket
/// layer refuses four times that.
fn link_message_limit(max_frame: usize) -> usize {
    max_frame.saturating_add(MAX_LINK_OVERHEAD).saturating_mul(4)
}

/// `GET /relay-link`: another relay's link. `404` without a relay key, `400` without a
/// well-formed link header (or not an upgrade), `403` for a wrong key or this relay's own
/// address, `503` while shutting down; otherwise the upgrade, then the handshake
/// (`crate::link`). Every refusal is counted.
pub(crate) async fn link_handler(
    State(app): State<App>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let Some(setup) = &app.shared.link else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let header = headers.get(LINK_HEADER).map(|v| v.as_bytes());
    let request = match check_request(&setup.key, &app.shared.public, header) {
        Ok(r) => r,
        Err(e) => {
            let (reason, status) = match e {
                GateError::Malformed => (LinkRefusal::BadRequest, StatusCode::BAD_REQUEST),
                GateError::WrongKey => (LinkRefusal::WrongKey, StatusCode::FORBIDDEN),
                GateError::OwnAddress => (LinkRefusal::OwnAddress, StatusCode::FORBIDDEN),
            };
            app.shared.board().record_link_refusal(reason);
            tracing::debug!(?reason, "link request refused");
            return (status, format!("{reason:?}")).into_response();
        }
    };
    if *app.shared.shutdown.borrow() {
        app.shared.board().record_link_refusal(LinkRefusal::ShuttingDown);
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let upgrade = match upgrade {
        Ok(u) => u,
        Err(rejection) => {
            app.shared.board().record_link_refusal(LinkRefusal::BadRequest);
            return rejection.into_response();
        }
    };
    let limit = link_message_limit(app.shared.max_frame);
    upgrade
        .max_message_size(limit)
        .max_frame_size(limit)
        .on_upgrade(move |socket| accept_link(app.shared, request, socket))
}

/// The listener's side of a link, after the upgrade.
async fn accept_link(shared: Arc<Shared>, request: LinkRequest, socket: WebSocket) {
    let _live = LiveGuard::new(&shared.live);
    let (mut sink, mut stream) = axum_halves(socket);
    let (Some(setup), Some(nonce)) = (&shared.link, fresh_nonce()) else { return };
    let claimed = request.dialer().to_string();
    let (listener, challenge) = Listener::new(setup.key.clone(), &shared.public, request, nonce);
    let exchange = async {
        sink.send(Wire::Binary(challenge.into())).await.map_err(|()| None)?;
        next_binary(&mut stream).await
    };
    let proof = match timeout(HANDSHAKE_TIMEOUT, exchange).await {
        Ok(Ok(proof)) => listener.on_proof(&proof).ok(),
        _ => None,
    };
    let Some(dialer) = proof else {
        tracing::debug!(claimed, "link handshake failed");
        shared.board().record_link_refusal(LinkRefusal::Handshake);
        let _ = timeout(CLOSE_FRAME_WAIT, sink.send(Wire::Close(None, Some(CloseReason::ProtocolError)))).await;
        return;
    };
    let registered = shared.board().link_up(&dialer, false);
    let (session, outbox) = match registered {
        Ok(r) => r,
        Err(refusal) => {
            tracing::debug!(relay = dialer, ?refusal, "link refused");
            let reason = refusal_close(refusal);
            let _ = timeout(CLOSE_FRAME_WAIT, sink.send(Wire::Close(None, Some(reason)))).await;
            return;
        }
    };
    if timeout(HANDSHAKE_TIMEOUT, sink.send(Wire::Binary(ready().into()))).await.is_err() {
        shared.board().close_link(&session, &outbox, CloseReason::SlowConsumer);
        return;
    }
    tracing::info!(relay = dialer, "link up (accepted)");
    run_link(&shared, session, outbox, sink, stream).await;
}

/// What to say in the close frame of a link the switchboard refused.
fn refusal_close(refusal: LinkRefusal) -> CloseReason {
    match refusal {
        LinkRefusal::Duplicate => CloseReason::LinkSuperseded,
        LinkRefusal::ShuttingDown => CloseReason::ShuttingDown,
        _ => CloseReason::ProtocolError,
    }
}

/// Dials `url` (`ws://host:port`) until the relay shuts down, keeping one link to it up.
pub(crate) async fn dial_loop(shared: Arc<Shared>, url: String) {
    let mut stop = shared.shutdown.subscribe();
    let mut backoff = Backoff::new(DIAL_MIN, DIAL_MAX);
    loop {
        if *stop.borrow() {
            return;
        }
        let dialed = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            d = dial(&shared, &url) => d,
        };
        match dialed {
            Dialed::Up { session, outbox, sink, stream } => {
                let relay = session.relay().to_string();
                let since = Instant::now();
                tracing::info!(%url, relay, "link up (dialed)");
                let superseded = run_link(&shared, session, outbox, sink, stream).await;
                tracing::info!(%url, relay, superseded, "link down");
                if since.elapsed() >= LINK_STABLE {
                    backoff.reset();
                }
                if superseded {
                    wait_while_linked(&shared, &relay, &mut stop).await;
                }
            }
            Dialed::Superseded { relay } => {
                shared.board().record_link_dial_failure();
                wait_while_linked(&shared, &relay, &mut stop).await;
            }
            Dialed::Failed => shared.board().record_link_dial_failure(),
        }
        let wait = backoff.next_wait(rand::rngs::OsRng.try_next_u64().unwrap_or(0));
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            () = sleep(wait) => {}
        }
    }
}

/// Waits while a link to `relay` is up (another link between the two relays won), or until the
/// relay shuts down.
async fn wait_while_linked(shared: &Shared, relay: &str, stop: &mut tokio::sync::watch::Receiver<bool>) {
    while shared.board().has_link(relay) {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            () = sleep(SUPERSEDED_RECHECK) => {}
        }
    }
}

/// How one dial ended.
enum Dialed {
    /// Handshake done, link registered: run it.
    Up { session: LinkSession, outbox: Arc<Outbox>, sink: WireSink, stream: WireStream },
    /// Another link between the two relays won.
    Superseded { relay: String },
    /// Unreachable, refused, or the handshake failed (logged).
    Failed,
}

/// One attempt: connect, handshake, register.
async fn dial(shared: &Arc<Shared>, url: &str) -> Dialed {
    let Some(setup) = &shared.link else { return Dialed::Failed };
    let Some(nonce) = fresh_nonce() else { return Dialed::Failed };
    let dialer = Dialer::new(setup.key.clone(), &shared.public, nonce);
    let Ok(mut request) = format!("{}{LINK_PATH}", url.trim_end_matches('/')).into_client_request() else {
        return Dialed::Failed;
    };
    let Ok(header) = HeaderValue::from_str(&dialer.request_header()) else { return Dialed::Failed };
    request.headers_mut().insert(LINK_HEADER, header);
    let limit = link_message_limit(shared.max_frame);
    let config = WebSocketConfig::default().max_message_size(Some(limit)).max_frame_size(Some(limit));
    let handshake = async {
        let (socket, _) = match tokio_tungstenite::connect_async_with_config(request, Some(config), true).await {
            Ok(s) => s,
            Err(tws::Error::Http(response)) => {
                let status = response.status();
                tracing::warn!(url, %status, "peer relay refused the link (a different relay key?)");
                return Err(());
            }
            Err(e) => {
                tracing::debug!(url, error = %e, "peer relay unreachable");
                return Err(());
            }
        };
        let (mut sink, mut stream) = tungstenite_halves(socket);
        let challenge = next_binary(&mut stream).await.map_err(|_| ())?;
        let (listener, proof) = match dialer.on_challenge(&challenge) {
            Ok(answer) => answer,
            Err(e) => {
                tracing::warn!(url, error = ?e, "peer relay failed the link handshake (a different relay key?)");
                shared.board().record_link_refusal(LinkRefusal::Handshake);
                let _ = sink.send(Wire::Close(None, Some(CloseReason::ProtocolError))).await;
                return Err(());
            }
        };
        sink.send(Wire::Binary(proof.into())).await?;
        Ok((listener, next_binary(&mut stream).await, sink, stream))
    };
    let (listener, answer, mut sink, stream) = match timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Ok(done)) => done,
        Ok(Err(())) => return Dialed::Failed,
        Err(_) => {
            tracing::debug!(url, "link handshake timed out");
            return Dialed::Failed;
        }
    };
    match answer {
        Ok(message) if is_ready(&message) => {}
        Err(Some(code)) if code == CloseReason::LinkSuperseded.code() => {
            return Dialed::Superseded { relay: listener };
        }
        other => {
            tracing::debug!(url, answer = ?other.map(|m| m.len()), "peer relay did not take the link");
            return Dialed::Failed;
        }
    }
    let registered = shared.board().link_up(&listener, true);
    match registered {
        Ok((session, outbox)) => Dialed::Up { session, outbox, sink, stream },
        Err(refusal) => {
            let _ = timeout(CLOSE_FRAME_WAIT, sink.send(Wire::Close(None, Some(refusal_close(refusal))))).await;
            match refusal {
                LinkRefusal::Duplicate => Dialed::Superseded { relay: listener },
                _ => Dialed::Failed,
            }
        }
    }
}

/// Runs a registered link until it ends, and takes it out of the routing table. Returns whether
/// it ended because another link between the two relays won (either side said so).
async fn run_link(
    shared: &Arc<Shared>,
    session: LinkSession,
    outbox: Arc<Outbox>,
    sink: WireSink,
    mut stream: WireStream,
) -> bool {
    let _live = LiveGuard::new(&shared.live);
    let writer = tokio::spawn(write_loop(shared.clone(), session.clone(), sink, outbox.clone()));
    let ended = read_loop(shared, &session, &mut stream, &outbox).await;
    match ended {
        Ended::Relay(reason) => shared.board().close_link(&session, &outbox, reason),
        Ended::Remote(_) | Ended::Local => {
            shared.board().link_down(&session);
        }
    }
    let _ = writer.await;
    if outbox.close_reason().is_some() {
        // As for members: wait briefly for the other side's close frame, so our own is not lost
        // to a reset.
        let _ = timeout(CLOSE_FRAME_WAIT, async {
            while let Some(Ok(m)) = stream.next().await {
                if matches!(m, Wire::Close(..)) {
                    break;
                }
            }
        })
        .await;
    }
    let superseded = CloseReason::LinkSuperseded;
    matches!(ended, Ended::Remote(Some(code)) if code == superseded.code()) || outbox.close_reason() == Some(superseded)
}

/// Why a link's reader stopped.
enum Ended {
    /// The other side closed (with this code) or the connection failed.
    Remote(Option<u16>),
    /// The link's queue was closed here (superseded, shutting down, stalled writer).
    Local,
    /// The relay ends it for this reason.
    Relay(CloseReason),
}

async fn read_loop(shared: &Shared, session: &LinkSession, stream: &mut WireStream, outbox: &Outbox) -> Ended {
    let closed = outbox.closed();
    tokio::pin!(closed);
    let mut deadline = Instant::now() + LINK_IDLE;
    loop {
        let message = tokio::select! {
            biased;
            () = &mut closed => return Ended::Local,
            m = stream.next() => m,
            () = sleep_until(deadline) => return Ended::Relay(CloseReason::Idle),
        };
        deadline = Instant::now() + LINK_IDLE;
        match message {
            Some(Ok(Wire::Binary(bytes))) => {
                // Drops are counted by the switchboard.
                let _ = shared.board().route_link(session, &bytes);
            }
            Some(Ok(Wire::Other)) => shared.board().record_drop(DropReason::LinkMalformed),
            Some(Ok(Wire::Ping | Wire::Pong)) => {}
            Some(Ok(Wire::Close(code, _))) => return Ended::Remote(code),
            Some(Err(())) | None => return Ended::Remote(None),
        }
    }
}

/// Runs one write step, bounded by the stall timeout: `Err(true)` if it stalled.
async fn step(stall: Duration, f: impl std::future::Future<Output = Result<(), ()>>) -> Result<(), bool> {
    match timeout(stall, f).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(())) => Err(false),
        Err(_) => Err(true),
    }
}

async fn write_loop(shared: Arc<Shared>, session: LinkSession, mut sink: WireSink, outbox: Arc<Outbox>) {
    let stall = LINK_STALL;
    let closed = outbox.closed();
    tokio::pin!(closed);
    let mut ping = tokio::time::interval_at(Instant::now() + LINK_PING, LINK_PING);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut lost = 0u64;
    loop {
        let first = tokio::select! {
            biased;
            () = &mut closed => break,
            _ = ping.tick() => None,
            frame = outbox.pop() => match frame {
                Some(frame) => Some(frame),
                None => break,
            },
        };
        // Frames handed to the socket since its last flush: lost if the socket fails.
        let mut unflushed = 0u64;
        let written = async {
            let Some(first) = first else {
                return step(stall, sink.send(Wire::Ping)).await;
            };
            unflushed += 1;
            step(stall, sink.feed(Wire::Binary(first))).await?;
            for _ in 1..WRITE_BATCH {
                let Some(frame) = outbox.try_pop() else { break };
                unflushed += 1;
                step(stall, sink.feed(Wire::Binary(frame))).await?;
            }
            step(stall, sink.flush()).await
        };
        let result = tokio::select! {
            biased;
            // What the socket holds goes out before the close frame.
            () = &mut closed => break,
            r = written => r,
        };
        match result {
            Ok(()) => {}
            Err(stalled) => {
                lost += unflushed;
                if stalled {
                    tracing::debug!(
                        relay = session.relay(),
                        "link stalled: its socket took nothing for the stall timeout"
                    );
                    shared.board().close_link(&session, &outbox, CloseReason::SlowConsumer);
                }
                break;
            }
        }
    }
    // Whatever the link still held will not be sent: counted, as every drop.
    lost += outbox.close() as u64;
    if lost > 0 {
        shared.board().record_drops(DropReason::LinkClosed, lost);
    }
    if let Some(reason) = outbox.close_reason() {
        let _ = timeout(CLOSE_FRAME_WAIT, sink.send(Wire::Close(None, Some(reason)))).await;
    }
}
