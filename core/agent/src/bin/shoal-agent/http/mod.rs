//! The agent's HTTP endpoint (`--http`): `/members` as JSON, `/metrics` as Prometheus text,
//! `/health`, and with `--faults` `GET|POST /faults?loss=F&block=A,B` (see [`crate::faults`]).
//!
//! A deliberately small HTTP/1.1 responder, one request per connection, built to stay up when
//! clients are hostile:
//!
//! - **The accept loop never ends** ([`accept`]): an accept error (out of descriptors, EMFILE) is
//!   logged, counted and retried after a short, growing pause; the oldest idle connection is shed
//!   to free a descriptor.
//! - **Connections are capped** ([`connections`]): 256 in all, 32 per source IP. A newcomer over a
//!   cap evicts the oldest idle connection in scope, so a flood of idle connections cannot lock
//!   out a health check; it is refused (503) only when every connection is busy answering.
//! - **Heads have a deadline** ([`request`]): the request head (at most 8 KiB) must arrive whole
//!   within [`HEAD_DEADLINE`] of the accept, whatever its pace (idle and slowloris clients are cut
//!   off, 408); the answer must be taken within [`ANSWER_DEADLINE`], and unread request bytes are
//!   drained for at most a second before closing.
//! - **Access is checked** ([`access`]): `Host` on every request against DNS rebinding (421);
//!   state-changing requests (`POST /faults`) must be same-origin, not form-encoded, and carry the
//!   `--http-token` as `Authorization: Bearer` (403, 415, 401; refused entirely without a token).
//! - **Everything is counted** ([`counters`]): drops and refusals by reason, with the member's and
//!   the UDP plugin's counters, on `/metrics`.

mod accept;
mod access;
mod api;
mod client;
mod connections;
mod counters;
mod request;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use shoal::Cluster;
use shoal_udp::{RelayDrops, UdpTransport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use crate::faults::Faults;
use accept::Backoff;
use access::{Access, Refusal};
use connections::{Cap, Connections, Slot};
use counters::{Dropped, HttpCounters};
use request::{HeadError, Request};

pub use access::validate_token;
pub use client::run as run_command;
pub use connections::Limits;

/// Time from accept to a complete request head.
pub const HEAD_DEADLINE: Duration = Duration::from_secs(3);
/// Time to write the answer.
pub const ANSWER_DEADLINE: Duration = Duration::from_secs(5);
/// After answering, how long unread request bytes are drained (closing on unread bytes would reset
/// the connection, and the client could lose the answer), and at most how many.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 64 * 1024;

/// Connections the kernel may hold for the endpoint before it accepts them (it caps the number at
/// `net.core.somaxconn`). A burst of connections beyond the queue has its handshakes dropped or
/// answered with SYN cookies, which delays an honest client by a second or more; so the queue is
/// long, and the accept loop empties it fast (admission never waits).
pub const LISTEN_BACKLOG: u32 = 4_096;

/// Binds the endpoint's listener on `addr` with a [`LISTEN_BACKLOG`] listen queue.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    // As std and tokio do on Unix: a restarted agent can bind at once despite TIME_WAIT sockets.
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// How the endpoint is configured.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The bearer token state-changing requests must carry; none refuses them all.
    pub token: Option<String>,
    /// Host names served besides the bound IP and `localhost`.
    pub allowed_hosts: Vec<String>,
    pub limits: Limits,
}

/// Everything a request may need, shared by the accept loop and the connections.
pub struct Endpoint {
    cluster: Cluster,
    faults: Option<Faults>,
    udp: Option<Arc<UdpTransport>>,
    access: Access,
    counters: HttpCounters,
    connections: Arc<Connections>,
    /// Notified by `POST /leave`: the agent leaves and exits.
    leave: Arc<tokio::sync::Notify>,
}

/// One answer.
struct Answer {
    status: &'static str,
    kind: &'static str,
    body: String,
    extra_headers: &'static str,
}

impl Answer {
    fn ok(kind: &'static str, body: String) -> Answer {
        Answer { status: "200 OK", kind, body, extra_headers: "" }
    }

    fn text(status: &'static str, body: impl Into<String>) -> Answer {
        Answer { status, kind: "text/plain", body: body.into(), extra_headers: "" }
    }

    fn refusal(why: Refusal, path: &str, faults_enabled: bool) -> Answer {
        let extra_headers = match why {
            Refusal::TokenMissing | Refusal::TokenWrong => "www-authenticate: Bearer realm=\"shoal-agent\"\r\n",
            Refusal::Method => match path {
                "/keys" => "allow: GET, HEAD, POST\r\n",
                "/faults" if faults_enabled => "allow: GET, HEAD, POST\r\n",
                "/join" | "/leave" | "/force-leave" | "/tags" | "/event" | "/query" => "allow: POST\r\n",
                _ => "allow: GET, HEAD\r\n",
            },
            _ => "",
        };
        Answer { extra_headers, ..Answer::text(why.status(), why.message()) }
    }

    fn to_bytes(&self, with_body: bool) -> Vec<u8> {
        let mut text = format!(
            "HTTP/1.1 {}\r\ncontent-type: {}\r\ncontent-length: {}\r\ncache-control: no-store\r\n\
             x-content-type-options: nosniff\r\nconnection: close\r\n{}\r\n",
            self.status,
            self.kind,
            self.body.len(),
            self.extra_headers
        );
        if with_body {
            text.push_str(&self.body);
        }
        text.into_bytes()
    }
}

impl Endpoint {
    /// The endpoint of `cluster` on a listener bound to `bound`. `udp` is the member's UDP plugin,
    /// whose relay drop counters are exported (none with `--tcp-only`).
    pub fn new(
        cluster: Cluster,
        faults: Option<Faults>,
        udp: Option<Arc<UdpTransport>>,
        bound: IpAddr,
        options: &Options,
        leave: Arc<tokio::sync::Notify>,
    ) -> Arc<Endpoint> {
        if faults.is_some() && options.token.is_none() {
            tracing::warn!("--faults without --http-token: POST /faults is refused; set SHOAL_HTTP_TOKEN to use it");
        }
        Arc::new(Endpoint {
            cluster,
            faults,
            udp,
            access: Access::new(bound, options.token.clone(), &options.allowed_hosts),
            counters: HttpCounters::default(),
            connections: Connections::new(options.limits),
            leave,
        })
    }

    /// Takes a new connection in, or turns it away if it is over a cap with nothing to evict.
    fn admit(self: &Arc<Self>, stream: TcpStream, peer: SocketAddr) {
        self.counters.accepted();
        match self.connections.admit(peer.ip().to_canonical()) {
            Err(_) => {
                self.counters.dropped(Dropped::AtCapacity);
                // A fresh socket's send buffer is empty: this never waits, and may be lost.
                let _ = stream.try_write(&Answer::text("503 Service Unavailable", "busy\n").to_bytes(true));
            }
            Ok((slot, evicted)) => {
                match evicted {
                    Some(Cap::PerIp) => self.counters.dropped(Dropped::EvictedPerIp),
                    Some(Cap::Total) => self.counters.dropped(Dropped::EvictedTotal),
                    None => {}
                }
                let id = slot.id();
                let task = tokio::spawn(Arc::clone(self).converse(stream, slot));
                self.connections.attach(id, task.abort_handle());
            }
        }
    }

    /// One connection: read a head, answer it, linger. Idle (evictable) but while answering.
    async fn converse(self: Arc<Self>, mut stream: TcpStream, slot: Slot) {
        let answer = match request::read_head(&mut stream, Instant::now() + HEAD_DEADLINE).await {
            Err(HeadError::Closed) => return,
            Err(HeadError::TimedOut) => {
                // Most likely an attacker holding the connection: a short answer, no lingering.
                self.counters.dropped(Dropped::HeadTimeout);
                let _ = stream.try_write(&Answer::text("408 Request Timeout", "").to_bytes(true));
                return;
            }
            Err(HeadError::TooLarge) => {
                self.counters.dropped(Dropped::HeadTooLarge);
                (Answer::text("431 Request Header Fields Too Large", "request head over 8 KiB\n"), true)
            }
            Ok(head) => match request::parse(&head) {
                Err(problem) => {
                    self.counters.dropped(Dropped::BadRequest);
                    (Answer::text("400 Bad Request", format!("{problem}\n")), true)
                }
                Ok(request) if request.path() == "/monitor" && request.method == "GET" => {
                    let local = stream.local_addr().map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip());
                    match self
                        .access
                        .check_host(&request, local)
                        .and_then(|()| self.access.check_state_change(&request))
                    {
                        Ok(()) => {
                            self.counters.served();
                            // Evictable while it streams: monitors never lock out other clients.
                            self.monitor(stream).await;
                            return;
                        }
                        Err(why) => {
                            self.counters.refused(why);
                            (Answer::refusal(why, request.path(), self.faults.is_some()), true)
                        }
                    }
                }
                Ok(request) => {
                    slot.set_idle(false);
                    let local = stream.local_addr().map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip());
                    (self.answer(&request, local).await, request.method != "HEAD")
                }
            },
        };
        let (answer, with_body) = answer;
        let write = async {
            stream.write_all(&answer.to_bytes(with_body)).await?;
            stream.shutdown().await
        };
        let _ = tokio::time::timeout(ANSWER_DEADLINE, write).await;
        slot.set_idle(true);
        linger(&mut stream).await;
    }

    /// The answer to a parsed request: access checks, then the route.
    async fn answer(&self, request: &Request, local: IpAddr) -> Answer {
        let faults_enabled = self.faults.is_some();
        let refuse = |why: Refusal| {
            self.counters.refused(why);
            Answer::refusal(why, request.path(), faults_enabled)
        };
        if let Err(why) = self.access.check_host(request, local) {
            return refuse(why);
        }
        let read = matches!(request.method.as_str(), "GET" | "HEAD");
        let post = request.method == "POST";
        let path = request.path();
        // The operator's commands (`api`), and the key list, which names secrets.
        let needs_token = (post
            && matches!(path, "/join" | "/leave" | "/force-leave" | "/tags" | "/event" | "/keys" | "/query"))
            || (read && path == "/keys");
        if needs_token {
            if let Err(why) = self.access.check_state_change(request) {
                return refuse(why);
            }
        }
        let (cluster, query) = (&self.cluster, request.query());
        let answer = match (path, &self.faults) {
            ("/members", _) if read => api::members(cluster, query),
            ("/info", _) if read => api::info(cluster),
            ("/rtt", _) if read => api::rtt(cluster, query),
            ("/keys", _) if read => api::keys(cluster, query, false).await,
            ("/metrics", _) if read => Answer::ok("text/plain; version=0.0.4", self.metrics()),
            ("/health", _) if read => Answer::ok("text/plain", "ok\n".to_string()),
            ("/join", _) if post => api::join(cluster, query).await,
            ("/leave", _) if post => {
                tracing::info!("leave requested through http");
                self.leave.notify_one();
                Answer::ok("application/json", "{\"leaving\":true}".to_string())
            }
            ("/force-leave", _) if post => api::force_leave(cluster, query),
            ("/tags", _) if post => api::tags(cluster, query),
            ("/event", _) if post => api::event(cluster, query),
            ("/keys", _) if post => api::keys(cluster, query, true).await,
            ("/query", _) if post => api::query(cluster, query).await,
            ("/faults", Some(faults)) if read => Answer::ok("application/json", faults.to_json()),
            ("/faults", Some(faults)) if post => {
                if let Err(why) = self.access.check_state_change(request) {
                    return refuse(why);
                }
                match faults.apply_query(request.query()) {
                    Ok(state) => {
                        tracing::info!(loss = state.loss, block = ?state.block, "faults changed through http");
                        Answer::ok("application/json", faults.to_json())
                    }
                    Err(e) => Answer::text("400 Bad Request", format!("{e}\n")),
                }
            }
            ("/members" | "/metrics" | "/health" | "/info" | "/rtt" | "/keys" | "/monitor", _)
            | ("/join" | "/leave" | "/force-leave" | "/tags" | "/event" | "/query", _)
            | ("/faults", Some(_)) => return refuse(Refusal::Method),
            _ => Answer::text("404 Not Found", "not found\n"),
        };
        self.counters.served();
        answer
    }

    /// `GET /monitor` (Serf's `monitor`): the member's events as JSON lines, as `--json` prints
    /// them, for as long as the client stays, the member runs and the client keeps up (a line not
    /// taken within [`ANSWER_DEADLINE`] ends the stream).
    async fn monitor(&self, mut stream: TcpStream) {
        let head = "HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\ncache-control: no-store\r\n\
                    x-content-type-options: nosniff\r\nconnection: close\r\n\r\n";
        let mut events = self.cluster.events();
        let (mut reader, mut writer) = stream.split();
        if tokio::time::timeout(ANSWER_DEADLINE, writer.write_all(head.as_bytes())).await.map_or(true, |r| r.is_err()) {
            return;
        }
        let mut sink = [0u8; 512];
        loop {
            let event = tokio::select! {
                e = events.next() => e,
                // The client closed (or sent something): the stream is over.
                _ = reader.read(&mut sink) => return,
            };
            let Some(event) = event else { return };
            let Some(mut line) = crate::output::json_line(&event) else { continue };
            line.push('\n');
            let written = tokio::time::timeout(ANSWER_DEADLINE, writer.write_all(line.as_bytes())).await;
            if !matches!(written, Ok(Ok(()))) {
                return;
            }
        }
    }

    /// The member's metrics, then the endpoint's, the UDP plugin's relay drops, the faults' and the
    /// live heap's.
    fn metrics(&self) -> String {
        let mut text = self.cluster.metrics().to_prometheus();
        text.push_str(&self.counters.to_prometheus(self.connections.open()));
        if let Some(udp) = &self.udp {
            text.push_str(&relay_drops_prometheus(udp.relay_drops()));
        }
        if let Some(faults) = &self.faults {
            text.push_str(&faults.to_prometheus());
        }
        text.push_str(&crate::queries::to_prometheus());
        text.push_str(&crate::heap::to_prometheus());
        text
    }
}

/// Serves the endpoint on `listener` for as long as the agent runs: accept errors pause the loop,
/// never end it (see [`accept`]).
pub async fn serve(listener: TcpListener, endpoint: Arc<Endpoint>) {
    let mut backoff = Backoff::default();
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let streak = backoff.succeeded();
                if streak > 0 {
                    tracing::warn!(errors = streak, "http: accepting connections again");
                }
                endpoint.admit(stream, peer);
            }
            Err(error) => {
                endpoint.counters.accept_error();
                let shed = endpoint.connections.shed_oldest_idle();
                if shed {
                    endpoint.counters.dropped(Dropped::EvictedAcceptError);
                }
                let (pause, log) = backoff.failed(Instant::now());
                if log {
                    tracing::warn!(
                        %error,
                        accept_errors = endpoint.counters.accept_errors(),
                        retry_in_ms = pause.as_millis() as u64,
                        shed_idle_connection = shed,
                        "http: accept failed; retrying"
                    );
                }
                tokio::time::sleep(pause).await;
            }
        }
    }
}

/// Drains what the client still sends, briefly, so closing does not reset the connection under
/// an answer it has not read yet.
async fn linger(stream: &mut TcpStream) {
    let drain = async {
        let mut sink = [0u8; 4096];
        let mut left = LINGER_BYTES;
        while left > 0 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

/// `shoal_udp_relay_dropped_total{reason=...}`.
fn relay_drops_prometheus(drops: RelayDrops) -> String {
    let name = "shoal_udp_relay_dropped_total";
    format!(
        "# HELP {name} Relay datagrams the UDP plugin dropped, by reason (also in shoal_transport_dropped_in_total)\n\
         # TYPE {name} counter\n{name}{{reason=\"malformed\"}} {}\n{name}{{reason=\"spoofed\"}} {}\n",
        drops.malformed, drops.spoofed
    )
}
