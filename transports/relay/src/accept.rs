//! Accepting TCP connections: the connection caps, the HTTP header timeout, and serving each
//! connection's HTTP (and WebSocket upgrade) with hyper under the axum router.
//!
//! This replaces `axum::serve` for two things it does not do: refusing connections over the caps
//! ([`ConnectionCaps`](crate::conn_caps::ConnectionCaps)) right at accept, before anything is read
//! or allocated for them, and closing connections that do not send a complete request head within
//! `header_timeout` (idle connections, slowloris), from accept or from the previous response on a
//! kept-alive connection.
//!
//! A refused connection is sent a fixed `503` response saying why (if the socket takes it at once)
//! and closed; nothing is read from it. Each accepted connection holds its place in the caps until
//! its socket is dropped, WebSocket included (the place travels inside the socket wrapper,
//! [`Counted`], which the upgrade hands on). Every refusal, timeout and HTTP error is counted.

use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use crate::metrics::ConnectionDrop;
use crate::server::Shared;

/// The HTTP side's timers (from the relay's config).
#[derive(Clone, Copy, Debug)]
pub(crate) struct HttpTimers {
    pub(crate) header: Duration,
}

/// How long the accept loop rests after the OS refused a connection (out of file descriptors):
/// retrying at once would spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// Accepts and serves connections until `stop` completes, then stops accepting and asks every
/// HTTP connection to finish its current request and close. WebSocket connections are ended by
/// the switchboard (`close_all`), not here.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    router: Router,
    shared: Arc<Shared>,
    stop: impl Future<Output = ()>,
) {
    tokio::pin!(stop);
    loop {
        let accepted = tokio::select! {
            () = &mut stop => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) if is_per_connection_error(&e) => continue,
            Err(e) => {
                shared.record(ConnectionDrop::AcceptError);
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        let opened = shared.caps().try_open(peer.ip());
        if let Err(reason) = opened {
            shared.record(reason);
            tracing::debug!(%peer, ?reason, "connection refused");
            refuse(&stream, reason);
            continue;
        }
        let _ = stream.set_nodelay(true);
        let io = Counted { stream, ip: peer.ip(), shared: shared.clone() };
        tokio::spawn(serve_connection(io, router.clone(), shared.clone()));
    }
}

/// Errors about one connection that was gone before it was accepted: nothing to count or wait for.
fn is_per_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}

/// Tells a refused client why, if its socket takes the answer at once, and closes.
fn refuse(stream: &TcpStream, reason: ConnectionDrop) {
    let body = match reason {
        ConnectionDrop::PerIpCap => "too many connections from your address\n",
        _ => "relay full: too many connections\n",
    };
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 5\r\nContent-Type: text/plain\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.try_write(response.as_bytes());
}

async fn serve_connection(io: Counted, router: Router, shared: Arc<Shared>) {
    let mut stop = shared.shutdown.subscribe();
    let service = TowerToHyperService::new(router);
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(shared.http_timers.header);
    let conn = builder.serve_connection(TokioIo::new(io), service).with_upgrades();
    tokio::pin!(conn);
    let stopping = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = stopping => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        if e.is_timeout() {
            shared.record(ConnectionDrop::HeaderTimeout);
        } else if e.is_parse() || e.is_parse_too_large() || e.is_parse_status() {
            // hyper answered 400 (or 431) itself.
            shared.record(ConnectionDrop::HttpError);
        }
        tracing::trace!(error = %e, "http connection ended");
    }
}

/// An accepted socket that holds its place in the connection caps until it is dropped.
struct Counted {
    stream: TcpStream,
    ip: IpAddr,
    shared: Arc<Shared>,
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.shared.caps().close(self.ip);
    }
}

impl AsyncRead for Counted {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
