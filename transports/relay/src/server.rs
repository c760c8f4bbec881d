//! The I/O shell around the [`Switchboard`]: sockets, the axum router, one reader and one writer
//! task per WebSocket connection, and the UDP receive loop.
//!
//! Every frame takes the switchboard's lock once, for a table lookup and a queue push; nothing
//! awaits under it. Each connection's writer drains its bounded [`Outbox`] in batches (feed many,
//! flush once); its reader forwards what the member sends. A connection ends when the member
//! closes it, on any socket error, or when its queue is closed (slow consumer, replaced, relay
//! shutting down); both tasks then stop and the socket is released.
//!
//! When the queue was closed with a reason ([`Outbox::close_with`]) the writer first sends a
//! WebSocket close frame carrying it ([`CloseCode`]: 1001 shutting down, 4001 replaced, 4002 slow
//! consumer), waiting at most [`CLOSE_FRAME_WAIT`] (a slow consumer's socket may be full), so the
//! member knows whether to reconnect. On shutdown, `serve` waits up to [`SHUTDOWN_WAIT`] for the
//! connections to finish saying goodbye before it returns.

use std::future::Future;
use std::io;
use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt;
use axum::Router;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use shoal_core::driver::relay::{relay_addr, CloseCode};
use shoal_core::driver::Addr;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::sync::watch;

use crate::config::{resolve_public_addr, valid_public_addr, RelayConfig};
use crate::metrics::{DropReason, RelayStats};
use crate::queue::Outbox;
use crate::switchboard::{Refusal, Session, Switchboard, WsRoute};

/// Kernel buffer asked for on the relay's UDP socket, each way.
const UDP_BUFFER: usize = 4 << 20;
/// How many frames a writer hands to the WebSocket before one flush.
const WRITE_BATCH: usize = 64;
/// WebSocket read buffer per connection. Small: tungstenite zero-fills the whole buffer, so its
/// size is resident memory per connection (frames larger than it are still read whole).
const WS_READ_BUFFER: usize = 4 << 10;
/// Bytes of frames a writer gathers before writing to the socket.
const WS_WRITE_BUFFER: usize = 8 << 10;
/// Pending TCP connections the listener queues.
const LISTEN_BACKLOG: i32 = 4_096;
/// How long a writer tries to send its close frame before dropping the socket anyway.
const CLOSE_FRAME_WAIT: Duration = Duration::from_millis(500);
/// How long `serve` waits, once stopped, for connections to send their close frames and end.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(2);

/// Entry point: [`Relay::bind`].
#[derive(Debug)]
pub struct Relay;

impl Relay {
    /// Binds the relay's TCP listener (HTTP and WebSocket) and its UDP socket on the same port:
    /// TCP first, then UDP on the port TCP got. With port 0 a port free for both is searched
    /// (retrying when the UDP port is taken). Needs no runtime; [`BoundRelay::serve`] does.
    ///
    /// A host name in [`RelayConfig::public_addr`] is resolved here, once (blocking on the system
    /// resolver), and the `relay://` addresses carry the resulting `ip:port`.
    ///
    /// Fails with `InvalidInput` if `config` does not validate or its public host name does not
    /// resolve (to an address of the bound IP's family), or with the OS error.
    pub fn bind(addr: SocketAddr, mut config: RelayConfig) -> io::Result<BoundRelay> {
        config.validate().map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        if !config.public_addr.is_empty() {
            config.public_addr = resolve_public_addr(&config.public_addr, addr)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        }
        let attempts = if addr.port() == 0 { 32 } else { 1 };
        let mut last = None;
        for _ in 0..attempts {
            let tcp = bind_tcp(addr)?;
            let local = tcp.local_addr()?;
            match bind_udp(local) {
                Ok(udp) => return Ok(BoundRelay::new(tcp, udp, local, config)),
                Err(e) if e.kind() == io::ErrorKind::AddrInUse && addr.port() == 0 => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::AddrInUse, "no port free for both TCP and UDP")))
    }
}

fn bind_tcp(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    #[cfg(unix)]
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

fn bind_udp(addr: SocketAddr) -> io::Result<StdUdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // Best effort, as in shoal-udp: the OS may grant less.
    let _ = socket.set_recv_buffer_size(UDP_BUFFER);
    let _ = socket.set_send_buffer_size(UDP_BUFFER);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

struct Shared {
    board: Mutex<Switchboard>,
    shutdown: watch::Sender<bool>,
    /// WebSocket connections whose tasks are still running (the switchboard forgets a connection
    /// as soon as its queue closes; this counts until its close frame is written).
    live: watch::Sender<usize>,
    public: String,
    max_frame: usize,
}

impl Shared {
    fn board(&self) -> MutexGuard<'_, Switchboard> {
        // Every switchboard method leaves it consistent, so a panic elsewhere cannot corrupt it.
        self.board.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A relay bound to its sockets, not yet serving. Tests bind port 0 and read
/// [`local_addr`](Self::local_addr) before serving.
pub struct BoundRelay {
    tcp: std::net::TcpListener,
    udp: StdUdpSocket,
    local: SocketAddr,
    static_dir: Option<PathBuf>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for BoundRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundRelay").field("local", &self.local).field("public", &self.shared.public).finish()
    }
}

impl BoundRelay {
    fn new(tcp: std::net::TcpListener, udp: StdUdpSocket, local: SocketAddr, config: RelayConfig) -> BoundRelay {
        let public = if config.public_addr.is_empty() { local.to_string() } else { config.public_addr.clone() };
        debug_assert!(valid_public_addr(&public));
        let board = Switchboard::new(&public, &config);
        let shared = Arc::new(Shared {
            board: Mutex::new(board),
            shutdown: watch::Sender::new(false),
            live: watch::Sender::new(0),
            public,
            max_frame: config.max_frame,
        });
        BoundRelay { tcp, udp, local, static_dir: config.static_dir, shared }
    }

    /// The address bound (TCP and UDP share it), with the port the OS picked for port 0.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The `ip:port` written into `relay://` addresses (a configured host name, resolved).
    pub fn public_addr(&self) -> &str {
        &self.shared.public
    }

    /// A handle for stopping the relay and reading its counters; valid before and after serving.
    pub fn handle(&self) -> RelayHandle {
        RelayHandle { shared: self.shared.clone() }
    }

    /// Serves HTTP, WebSocket and UDP until [`RelayHandle::shutdown`]. Run it on a tokio
    /// runtime (`tokio::spawn(bound.serve())`). On shutdown every member is disconnected with
    /// close code 1001 ([`CloseCode::ShuttingDown`]); the future completes once they all are, or
    /// after 2 s at most.
    pub fn serve(self) -> impl Future<Output = io::Result<()>> + Send + 'static {
        let BoundRelay { tcp, udp, static_dir, shared, .. } = self;
        async move {
            let listener = tokio::net::TcpListener::from_std(tcp)?;
            let udp = Arc::new(UdpSocket::from_std(udp)?);
            let router = router(App { shared: shared.clone(), udp: udp.clone() }, static_dir);
            tracing::info!(local = ?listener.local_addr().ok(), public = %shared.public, "relay serving");
            let udp_task = tokio::spawn(udp_loop(shared.clone(), udp));
            let signal = {
                let shared = shared.clone();
                let mut rx = shared.shutdown.subscribe();
                async move {
                    let _ = rx.wait_for(|stop| *stop).await;
                    shared.board().close_all();
                }
            };
            let listener = listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            let result = axum::serve(listener, router).with_graceful_shutdown(signal).await;
            shared.board().close_all();
            udp_task.abort();
            // Upgraded connections run on tasks of their own that axum does not wait for: give
            // them a bounded moment to write their close frames before the runtime may go away.
            let mut live = shared.live.subscribe();
            if tokio::time::timeout(SHUTDOWN_WAIT, live.wait_for(|n| *n == 0)).await.is_err() {
                tracing::debug!(left = *live.borrow(), "connections still closing at shutdown");
            }
            tracing::info!("relay stopped");
            result
        }
    }
}

/// Stops a relay and reads its counters. Cheap to clone.
#[derive(Clone)]
pub struct RelayHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RelayHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayHandle").field("public", &self.shared.public).finish()
    }
}

impl RelayHandle {
    /// Stops serving: the listener and the UDP loop stop and every member is disconnected.
    pub fn shutdown(&self) {
        self.shared.shutdown.send_replace(true);
    }

    /// Counters and the connection gauge.
    pub fn stats(&self) -> RelayStats {
        self.shared.board().stats()
    }

    /// The `ip:port` written into `relay://` addresses (a configured host name, resolved).
    pub fn public_addr(&self) -> &str {
        &self.shared.public
    }

    /// `relay://<public addr>/<peer>`, the address of a member connected as `peer`.
    pub fn member_addr(&self, peer: &str) -> Option<Addr> {
        relay_addr(&self.shared.public, peer)
    }
}

/// `/ws`, `/health`, `/metrics`, and the static directory as the fallback.
fn router(app: App, static_dir: Option<PathBuf>) -> Router {
    let router = Router::new()
        .route("/ws", get(ws_handler))
        .route("/health", get(|| async { "ok" }))
        .route("/metrics", get(metrics_handler))
        .with_state(app);
    match static_dir {
        Some(dir) => router.fallback_service(tower_http::services::ServeDir::new(dir)),
        None => router,
    }
}

#[derive(Clone)]
struct App {
    shared: Arc<Shared>,
    udp: Arc<UdpSocket>,
}

/// The query string of `/ws`: `peer=<id>&token=<t>`, percent-decoded.
#[derive(Debug, serde::Deserialize)]
struct WsParams {
    peer: Option<String>,
    token: Option<String>,
}

async fn metrics_handler(State(app): State<App>) -> Response {
    let stats = app.shared.board().stats();
    let text = stats.to_prometheus();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

async fn ws_handler(
    State(app): State<App>,
    Query(params): Query<WsParams>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let checked = app.shared.board().check_admission(params.peer.as_deref(), params.token.as_deref());
    if let Err(refusal) = checked {
        let status = match refusal {
            Refusal::MissingToken => StatusCode::UNAUTHORIZED,
            Refusal::WrongToken => StatusCode::FORBIDDEN,
            Refusal::BadPeerId => StatusCode::BAD_REQUEST,
            Refusal::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        };
        tracing::debug!(?refusal, peer = ?params.peer, "admission refused");
        return (status, format!("{refusal:?}")).into_response();
    }
    let upgrade = match upgrade {
        Ok(u) => u,
        Err(rejection) => return rejection.into_response(),
    };
    let peer = params.peer.unwrap_or_default();
    // Messages up to max_frame are forwarded or dropped by the switchboard; the WebSocket layer
    // refuses (and closes the connection on) anything over four times that, before buffering it.
    let hard_limit = app.shared.max_frame.saturating_mul(4);
    upgrade
        .read_buffer_size(WS_READ_BUFFER)
        .write_buffer_size(WS_WRITE_BUFFER)
        .max_message_size(hard_limit)
        .max_frame_size(hard_limit)
        .on_upgrade(move |socket| connection(app, peer, socket))
}

/// Counts a connection in [`Shared::live`] while it exists.
struct LiveGuard<'a>(&'a watch::Sender<usize>);

impl<'a> LiveGuard<'a> {
    fn new(live: &'a watch::Sender<usize>) -> Self {
        live.send_modify(|n| *n += 1);
        LiveGuard(live)
    }
}

impl Drop for LiveGuard<'_> {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// Runs one member's connection until it ends.
async fn connection(app: App, peer: String, socket: WebSocket) {
    let _live = LiveGuard::new(&app.shared.live);
    let admitted = app.shared.board().admit(&peer);
    let Ok((session, outbox)) = admitted else { return };
    tracing::debug!(peer, conn = session.conn(), "member connected");
    let (sink, stream) = socket.split();
    let writer = tokio::spawn(write_loop(sink, outbox.clone()));
    read_loop(&app, &session, stream, &outbox).await;
    app.shared.board().disconnect(&session);
    outbox.close();
    let _ = writer.await;
    tracing::debug!(peer, conn = session.conn(), "member disconnected");
}

async fn read_loop(app: &App, session: &Session, mut stream: SplitStream<WebSocket>, outbox: &Outbox) {
    let closed = outbox.closed();
    tokio::pin!(closed);
    loop {
        let message = tokio::select! {
            biased;
            () = &mut closed => return,
            m = stream.next() => m,
        };
        let bytes = match message {
            Some(Ok(Message::Binary(bytes))) => bytes,
            Some(Ok(Message::Text(_))) => {
                app.shared.board().record_drop(DropReason::NotBinary);
                continue;
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
        };
        let route = app.shared.board().route_ws(session, &bytes);
        if let WsRoute::Udp { to, datagram } = route {
            if let Err(e) = app.udp.send_to(&datagram, to).await {
                tracing::trace!(%to, error = %e, "udp send failed");
                app.shared.board().record_drop(DropReason::UdpSend);
            }
        }
    }
}

async fn write_loop(mut sink: SplitSink<WebSocket, Message>, outbox: Arc<Outbox>) {
    let closed = outbox.closed();
    tokio::pin!(closed);
    while let Some(first) = outbox.pop().await {
        let batch = async {
            sink.feed(Message::Binary(first)).await?;
            for _ in 1..WRITE_BATCH {
                let Some(frame) = outbox.try_pop() else { break };
                sink.feed(Message::Binary(frame)).await?;
            }
            sink.flush().await
        };
        let result = tokio::select! {
            biased;
            () = &mut closed => break,
            r = batch => r,
        };
        if result.is_err() {
            break;
        }
    }
    // Tells the reader to stop too (idempotent when the queue was closed already).
    outbox.close();
    if let Some(code) = outbox.close_reason() {
        // Frames cut off mid-batch may still sit in the sink's buffer; they go out first, which is
        // fine: the member just gets them before the close.
        match tokio::time::timeout(CLOSE_FRAME_WAIT, sink.send(close_message(code))).await {
            Ok(Ok(())) => tracing::trace!(?code, "close frame sent"),
            Ok(Err(e)) => tracing::trace!(?code, error = %e, "close frame not sent"),
            Err(_) => tracing::trace!(?code, "close frame not sent in time"),
        }
    }
}

/// The WebSocket close frame telling a member why the relay closed its connection.
fn close_message(code: CloseCode) -> Message {
    Message::Close(Some(CloseFrame { code: code as u16, reason: Utf8Bytes::from_static(code.reason()) }))
}

/// Receives datagrams from native members and hands them to the switchboard.
async fn udp_loop(shared: Arc<Shared>, udp: Arc<UdpSocket>) {
    let mut buf = vec![0u8; 65_536];
    loop {
        match udp.recv_from(&mut buf).await {
            Ok((n, from)) => {
                let _ = shared.board().route_udp(from, &buf[..n]);
            }
            // ICMP "port unreachable" about an earlier datagram: nothing to do with this call.
            Err(e) if matches!(e.kind(), io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset) => {}
            Err(e) => {
                tracing::warn!(error = %e, "relay udp receive failed");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}
