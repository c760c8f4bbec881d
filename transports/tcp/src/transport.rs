//! [`TcpTransport`]: the [`Transport`] implementation tying the listener, the outbound pool and
//! the inbox together.
//!
//! The driver never awaits a send on its protocol loop (see `shoal_transport`'s outbox): it
//! polls a best-effort `send` once and hands it to the destination's sender task if it would wait,
//! and calls `send_reliable` from that task. `send_reliable` may wait for a connection; `send`
//! (TCP-only mode) never waits for a connect and returns within about [`crate::BEST_EFFORT_WAIT`].
//! `recv` takes the next frame from the inbox and swaps its bytes into the caller's buffer.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use shoal_transport::{Addr, Received, Transport, TransportCounters, TransportError};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::inbound::accept_loop;
use crate::outbound::Pool;
use crate::shared::{ConnectionStats, Inbound, Shared, INBOX_CAPACITY};
use crate::TcpOptions;

/// A Shoal transport over TCP: reliable frames to `tcp://` and `udp://` addresses, and in
/// TCP-only mode best-effort packets to `tcp://` addresses too.
pub struct TcpTransport {
    shared: Arc<Shared>,
    pool: Arc<Pool>,
    local: SocketAddr,
    inbox: tokio::sync::Mutex<mpsc::Receiver<Inbound>>,
    acceptor: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for TcpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpTransport")
            .field("local", &self.local)
            .field("advertise", &self.shared.advertise)
            .field("closed", &self.shared.closing.is_closed())
            .finish_non_exhaustive()
    }
}

impl TcpTransport {
    /// Binds a listener on `addr` (port 0 picks a free port) and starts accepting. Call from
    /// inside a tokio runtime, before building the cluster. Fails with the OS error if the address
    /// is unavailable, or `InvalidInput` if `options` is out of range.
    pub async fn bind(addr: SocketAddr, options: TcpOptions) -> std::io::Result<Arc<TcpTransport>> {
        options.validate()?;
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let advertise = options.advertise.clone().unwrap_or_else(|| Addr::tcp(local));
        let (tx, rx) = mpsc::channel(INBOX_CAPACITY);
        let shared = Arc::new(Shared::new(options, advertise, tx));
        let pool = Pool::new(shared.clone());
        let acceptor = tokio::spawn(accept_loop(shared.clone(), listener));
        tracing::debug!(%local, advertise = %shared.advertise, "tcp transport bound");
        Ok(Arc::new(TcpTransport {
            shared,
            pool,
            local,
            inbox: tokio::sync::Mutex::new(rx),
            acceptor: Mutex::new(Some(acceptor)),
        }))
    }

    /// The socket address the listener is bound to (with the port the OS picked for port 0).
    pub fn local_socket_addr(&self) -> SocketAddr {
        self.local
    }

    /// The options this transport runs with.
    pub fn options(&self) -> &TcpOptions {
        &self.shared.options
    }

    /// Connection counts: accepted and dialled since bind, open now.
    pub fn connection_stats(&self) -> ConnectionStats {
        self.shared.counters.connections()
    }

    fn check_frame(&self, bytes: &[u8]) -> Result<(), TransportError> {
        let max = self.shared.options.frame_limit();
        if bytes.len() > max {
            self.shared.counters.traffic.send_failed();
            return Err(TransportError::TooLarge { size: bytes.len(), max });
        }
        if self.shared.closing.is_closed() {
            return Err(TransportError::Closed);
        }
        Ok(())
    }

    fn unreachable(&self, to: &Addr) -> TransportError {
        self.shared.counters.traffic.send_failed();
        TransportError::Unreachable(to.clone())
    }
}

impl Drop for TcpTransport {
    /// Dropping without closing still stops the background tasks.
    fn drop(&mut self) {
        self.shared.closing.close();
    }
}

#[async_trait::async_trait]
impl Transport for TcpTransport {
    fn name(&self) -> &'static str {
        "tcp"
    }

    fn claims(&self, to: &Addr, reliable: bool) -> bool {
        match to.scheme() {
            "tcp" => reliable || self.shared.options.best_effort,
            "udp" => reliable,
            _ => false,
        }
    }

    async fn send(&self, to: &Addr, bytes: &[u8]) -> Result<(), TransportError> {
        let sa = match to.socket_addr() {
            Some(sa) if self.shared.options.best_effort && to.scheme() == "tcp" => sa,
            _ => return Err(self.unreachable(to)),
        };
        self.check_frame(bytes)?;
        tokio::select! {
            () = self.shared.closing.wait() => Err(TransportError::Closed),
            r = self.pool.send_best_effort(to, sa, bytes) => r,
        }
    }

    async fn send_reliable(&self, to: &Addr, bytes: &[u8]) -> Result<(), TransportError> {
        let Some(sa) = to.socket_addr() else {
            return Err(self.unreachable(to));
        };
        self.check_frame(bytes)?;
        tokio::select! {
            () = self.shared.closing.wait() => Err(TransportError::Closed),
            r = self.pool.send_reliable(to, sa, bytes) => r,
        }
    }

    async fn recv(&self, buf: &mut Vec<u8>) -> Result<Received, TransportError> {
        let next = async {
            let mut inbox = self.inbox.lock().await;
            inbox.recv().await
        };
        let item = tokio::select! {
            biased;
            () = self.shared.closing.wait() => None,
            item = next => item,
        };
        let Some(mut item) = item else {
            return Err(TransportError::Closed);
        };
        std::mem::swap(buf, &mut item.bytes);
        self.shared.counters.traffic.received(buf.len());
        Ok(Received { from: item.from, reliable: true })
    }

    fn local_addr(&self) -> Addr {
        self.shared.advertise.clone()
    }

    fn counters(&self) -> TransportCounters {
        self.shared.counters.traffic()
    }

    async fn close(&self) {
        self.shared.closing.close();
        let acceptor = self.acceptor.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(acceptor) = acceptor {
            // Returns promptly: the loop watches the close signal. Afterwards the port is free.
            let _ = acceptor.await;
        }
        self.pool.clear();
        tracing::debug!(local = %self.local, "tcp transport closed");
    }
}
