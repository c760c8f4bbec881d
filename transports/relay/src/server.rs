//! The I/O shell around the [`Switchboard`]: sockets, the axum router and its handlers, and the
//! UDP receive loop. Accepting TCP connections (caps, header timeout) is `crate::accept`'s;
//! running one WebSocket member (reader, writer, ping, idle and stall timers) is
//! `crate::member`'s. `POST /farewell` hands a page's farewell (its member's leave, sent by the
//! browser after the page is gone) to [`Switchboard::farewell`], with the body capped at
//! [`MAX_FAREWELL_BODY`] bytes before it is read.
//!
//! Every frame takes the switchboard's lock once, for a table lookup, a few budget updates and a
//! queue push; nothing awaits under it. On shutdown, `serve` waits up to [`SHUTDOWN_WAIT`] for the
//! WebSocket connections to finish saying goodbye before it returns.

use std::future::Future;
use std::io;
use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use shoal_core::addr::Addr;
use shoal_core::relay::{relay_addr, MAX_FAREWELL_BODY};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::sync::watch;

use crate::accept::{accept_loop, HttpTimers};
use crate::config::{resolve_public_addr, valid_public_addr, RelayConfig};
use crate::conn_caps::ConnectionCaps;
use crate::fleet_member::{FleetMember, FleetMemberConfig, FleetMemberError};
use crate::link::LINK_PATH;
use crate::link_conn::{dial_loop, link_handler, LinkSetup};
use crate::member::{member_connection, MemberTimers};
use crate::metrics::{links_to_prometheus, ConnectionDrop, DropReason, FarewellRefusal, LinkStats, RelayStats};
use crate::switchboard::{Refusal, Switchboard, WsRoute};

/// Kernel buffer asked for on the relay's UDP socket, each way.
const UDP_BUFFER: usize = 4 << 20;
/// WebSocket read buffer per connection. Small: tungstenite zero-fills the whole buffer, so its
/// size is resident memory per connection (frames larger than it are still read whole).
const WS_READ_BUFFER: usize = 4 << 10;
/// Bytes of frames a writer gathers before writing to the socket.
const WS_WRITE_BUFFER: usize = 8 << 10;
/// Pending TCP connections the listener queues.
const LISTEN_BACKLOG: i32 = 4_096;
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

pub(crate) struct Shared {
    board: Mutex<Switchboard>,
    caps: Mutex<ConnectionCaps>,
    pub(crate) shutdown: watch::Sender<bool>,
    /// WebSocket connections whose tasks are still running (the switchboard forgets a connection
    /// as soon as its queue closes; this counts until its close frame is written).
    pub(crate) live: watch::Sender<usize>,
    pub(crate) public: String,
    pub(crate) max_frame: usize,
    /// The relay key and the relays to dial; `None` without a key (no links at all).
    pub(crate) link: Option<LinkSetup>,
    pub(crate) member_timers: MemberTimers,
    pub(crate) http_timers: HttpTimers,
    /// The relay's own cluster member, once started (see `crate::fleet_member`).
    fleet: OnceLock<FleetMember>,
}

impl Shared {
    fn stats(&self) -> RelayStats {
        let tcp = self.caps().open() as u64;
        RelayStats { tcp_connections: tcp, ..self.board().stats() }
    }

    pub(crate) fn board(&self) -> MutexGuard<'_, Switchboard> {
        // Every switchboard method leaves it consistent, so a panic elsewhere cannot corrupt it.
        self.board.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn caps(&self) -> MutexGuard<'_, ConnectionCaps> {
        // Each method leaves the counts consistent.
        self.caps.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a connection refused or closed outside the routing.
    pub(crate) fn record(&self, reason: ConnectionDrop) {
        self.board().record_connection_drop(reason);
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
        let caps = ConnectionCaps::new(config.max_connections_per_ip, config.effective_max_connections());
        let shared = Arc::new(Shared {
            board: Mutex::new(board),
            caps: Mutex::new(caps),
            shutdown: watch::Sender::new(false),
            live: watch::Sender::new(0),
            link: config.link_key().map(|key| LinkSetup { key, peers: config.peer_relays.clone() }),
            public,
            max_frame: config.max_frame,
            member_timers: MemberTimers {
                stall: config.stall_timeout,
                ping: config.ping_interval,
                idle: config.idle_timeout,
            },
            http_timers: HttpTimers { header: config.header_timeout },
            fleet: OnceLock::new(),
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

    /// Starts the relay's own member of the cluster it serves, which announces the relay to the
    /// cluster (see [`FleetMemberConfig`] and the crate's *Relay fleet: discovery*): binds its
    /// UDP and TCP port, spawns it on the current tokio runtime, and starts joining `join`'s seeds
    /// in the background. Call it before [`serve`](Self::serve); when serving stops the member
    /// leaves the cluster. One member per relay. Returns its handle (for reading its view of the
    /// cluster; leaving or shutting it down through it makes the relay stop announcing itself).
    ///
    /// Fails, having started nothing, if a setting is invalid, a socket cannot be bound, the relay
    /// runs its member already or is stopping.
    pub async fn start_member(&self, member: FleetMemberConfig) -> Result<shoal::Cluster, FleetMemberError> {
        if self.shared.fleet.get().is_some() {
            return Err(FleetMemberError::AlreadyRunning);
        }
        if *self.shared.shutdown.borrow() {
            return Err(FleetMemberError::Stopping);
        }
        let started = FleetMember::start(&self.shared.public, member).await?;
        let cluster = started.cluster().clone();
        if let Err(second) = self.shared.fleet.set(started) {
            // Another call won the race while this one was binding: this one never existed.
            second.cluster().shutdown().await;
            return Err(FleetMemberError::AlreadyRunning);
        }
        Ok(cluster)
    }

    /// Serves HTTP, WebSocket and UDP until [`RelayHandle::shutdown`]. Run it on a tokio
    /// runtime (`tokio::spawn(bound.serve())`). On shutdown every member is disconnected with
    /// close code 1001 ([`CloseReason::ShuttingDown`](crate::CloseReason::ShuttingDown)), and the
    /// relay's cluster member, if it runs one ([`start_member`](Self::start_member)), leaves the
    /// cluster; the future completes once the members are all disconnected and the leave has
    /// been gossiped, or after 2 s and
    /// [`MEMBER_LEAVE_TIMEOUT`](crate::MEMBER_LEAVE_TIMEOUT) (3 s) at most, whichever is longer.
    pub fn serve(self) -> impl Future<Output = io::Result<()>> + Send + 'static {
        let BoundRelay { tcp, udp, static_dir, shared, .. } = self;
        async move {
            let listener = tokio::net::TcpListener::from_std(tcp)?;
            let udp = Arc::new(UdpSocket::from_std(udp)?);
            let router = router(App { shared: shared.clone(), udp: udp.clone() }, static_dir);
            tracing::info!(local = ?listener.local_addr().ok(), public = %shared.public, "relay serving");
            let udp_task = tokio::spawn(udp_loop(shared.clone(), udp));
            // They stop by themselves on shutdown, after saying goodbye on their links.
            for url in shared.link.iter().flat_map(|l| l.peers.iter()) {
                tokio::spawn(dial_loop(shared.clone(), url.clone()));
            }
            let signal = {
                let shared = shared.clone();
                let mut rx = shared.shutdown.subscribe();
                async move {
                    let _ = rx.wait_for(|stop| *stop).await;
                    shared.board().close_all();
                }
            };
            accept_loop(listener, router, shared.clone(), signal).await;
            shared.board().close_all();
            udp_task.abort();
            // Upgraded connections run on tasks of their own that axum does not wait for: give
            // them a bounded moment to write their close frames before the runtime may go away.
            // Meanwhile the relay's cluster member says goodbye (bounded too).
            let closing = async {
                let mut live = shared.live.subscribe();
                if tokio::time::timeout(SHUTDOWN_WAIT, live.wait_for(|n| *n == 0)).await.is_err() {
                    tracing::debug!(left = *live.borrow(), "connections still closing at shutdown");
                }
            };
            let leaving = async {
                if let Some(member) = shared.fleet.get() {
                    member.leave().await;
                }
            };
            tokio::join!(closing, leaving);
            tracing::info!("relay stopped");
            Ok(())
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
    /// Stops serving: the listener and the UDP loop stop, every member is disconnected, and the
    /// relay's cluster member leaves the cluster (all done by [`BoundRelay::serve`], which
    /// completes once they are).
    pub fn shutdown(&self) {
        self.shared.shutdown.send_replace(true);
    }

    /// Counters and gauges.
    pub fn stats(&self) -> RelayStats {
        self.shared.stats()
    }

    /// The `ip:port` written into `relay://` addresses (a configured host name, resolved).
    pub fn public_addr(&self) -> &str {
        &self.shared.public
    }

    /// The relays this relay is or was linked to, with their counters, by address.
    pub fn links(&self) -> Vec<LinkStats> {
        self.shared.board().links()
    }

    /// The relay's own cluster member, if [`BoundRelay::start_member`] started one (also after
    /// it left).
    pub fn cluster_member(&self) -> Option<shoal::Cluster> {
        self.shared.fleet.get().map(|m| m.cluster().clone())
    }

    /// `relay://<public addr>/<peer>`, the address of a member connected as `peer`.
    pub fn member_addr(&self, peer: &str) -> Option<Addr> {
        relay_addr(&self.shared.public, peer)
    }
}

/// `/ws`, `/farewell`, `/relay-link`, `/health`, `/metrics`, and the static directory as the
/// fallback.
fn router(app: App, static_dir: Option<PathBuf>) -> Router {
    let router = Router::new()
        .route("/ws", get(ws_handler))
        .route(LINK_PATH, get(link_handler))
        .route("/farewell", post(farewell_handler).layer(DefaultBodyLimit::max(MAX_FAREWELL_BODY)))
        .route("/health", get(|| async { "ok" }))
        .route("/metrics", get(metrics_handler))
        .with_state(app);
    match static_dir {
        Some(dir) => router.fallback_service(tower_http::services::ServeDir::new(dir)),
        None => router,
    }
}

#[derive(Clone)]
pub(crate) struct App {
    pub(crate) shared: Arc<Shared>,
    pub(crate) udp: Arc<UdpSocket>,
}

impl App {
    /// Performs what the switchboard decided for a member's frame: a datagram for a native
    /// member leaves from the relay's UDP socket (a failed send is counted); anything else was
    /// done (queued) or counted already.
    pub(crate) async fn send_route(&self, route: WsRoute) {
        if let WsRoute::Udp { to, datagram } = route {
            if let Err(e) = self.udp.send_to(&datagram, to).await {
                tracing::trace!(%to, error = %e, "udp send failed");
                self.shared.board().record_drop(DropReason::UdpSend);
            }
        }
    }
}

/// The query string of `/ws`: `peer=<id>&token=<t>[&farewell=1]`, percent-decoded.
#[derive(Debug, serde::Deserialize)]
struct WsParams {
    peer: Option<String>,
    token: Option<String>,
    /// `1`: the member asks for a farewell secret in its welcome. Anything else, or nothing: it
    /// does not (its welcome's packet stays empty).
    farewell: Option<String>,
}

async fn metrics_handler(State(app): State<App>) -> Response {
    let stats = app.shared.stats();
    let links = app.shared.board().links();
    let mut text = stats.to_prometheus();
    text.push_str(&links_to_prometheus(&links));
    if let Some(member) = app.shared.fleet.get() {
        text.push_str(&member.to_prometheus());
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

async fn ws_handler(
    State(app): State<App>,
    params: Result<Query<WsParams>, QueryRejection>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let Ok(Query(params)) = params else {
        app.shared.board().record_rejected_request();
        return (StatusCode::BAD_REQUEST, "BadQuery").into_response();
    };
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
        Err(rejection) => {
            app.shared.board().record_rejected_request();
            return rejection.into_response();
        }
    };
    let peer = params.peer.unwrap_or_default();
    let farewell = params.farewell.as_deref() == Some("1");
    // Messages up to max_frame are forwarded or dropped by the switchboard; the WebSocket layer
    // refuses (and closes the connection on) anything over four times that, before buffering it.
    let hard_limit = app.shared.max_frame.saturating_mul(4);
    upgrade
        .read_buffer_size(WS_READ_BUFFER)
        .write_buffer_size(WS_WRITE_BUFFER)
        .max_message_size(hard_limit)
        .max_frame_size(hard_limit)
        .on_upgrade(move |socket| member_connection(app, peer, farewell, socket))
}

/// `POST /farewell`: a page's farewell for its member's connection, usually sent with
/// `navigator.sendBeacon` as the page goes away (see [`Switchboard::farewell`]). Any content
/// type; the body is refused unread over [`MAX_FAREWELL_BODY`] bytes. Answers `204` when
/// accepted (the frames were routed; those the routing dropped are counted as drops), else the
/// [`FarewellRefusal`]'s status with no hint of the reason: `400`, `403`, `413` or `503`. Every
/// refusal is counted. No CORS headers: a beacon is a no-cors request whose answer nobody reads.
async fn farewell_handler(State(app): State<App>, body: Result<Bytes, BytesRejection>) -> Response {
    let routed = match body {
        Ok(body) => app.shared.board().farewell(&body),
        Err(rejection) => {
            let reason = if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                FarewellRefusal::TooLarge
            } else {
                FarewellRefusal::Malformed
            };
            app.shared.board().record_farewell_refusal(reason);
            Err(reason)
        }
    };
    match routed {
        Ok(routes) => {
            for route in routes {
                app.send_route(route).await;
            }
            StatusCode::NO_CONTENT.into_response()
        }
        Err(reason) => {
            tracing::debug!(?reason, "farewell refused");
            let status = StatusCode::from_u16(reason.status()).unwrap_or(StatusCode::BAD_REQUEST);
            (status, status.canonical_reason().unwrap_or_default()).into_response()
        }
    }
}

/// Receives datagrams from native members and hands them to the switchboard.
async fn udp_loop(shared: Arc<Shared>, udp: Arc<UdpSocket>) {
    let mut buf = vec![0u8; 65_536];
    loop {
        match udp.recv_from(&mut buf).await {
            Ok((n, from)) => {
                // Refusals are counted by the switchboard.
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
