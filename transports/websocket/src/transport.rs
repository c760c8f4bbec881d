//! [`WsTransport`]: the [`Transport`] implementation over one WebSocket to a relay.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use shoal_core::driver::relay::{decode_ws_frame, encode_ws_frame, split_relay_addr, RELAY_SCHEME};
use shoal_core::driver::{Addr, Received, Transport, TransportCounters, TransportError};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Default [`WsOptions::max_frame`]: 64 KiB, the relay's default cap.
pub const DEFAULT_MAX_FRAME: usize = 64 << 10;

/// Messages a writer hands to the WebSocket before one flush.
const WRITE_BATCH: usize = 64;
/// Sender addresses cached; past this the cache starts over.
const ADDR_CACHE_LIMIT: usize = 4_096;
/// How long `close` waits for the close handshake to be written.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Settings of a [`WsTransport`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WsOptions {
    /// Largest message sent or accepted, address header included, in bytes (default 64 KiB; match
    /// the relay's `max_frame`). Larger sends fail with `TooLarge`; larger received messages are
    /// dropped and counted. At least 256.
    pub max_frame: usize,
    /// Messages waiting to be written (default 1,024, at least 1).
    pub outbound_frames: usize,
    /// Received messages waiting for `recv` (default 1,024, at least 1).
    pub inbound_frames: usize,
    /// Limit for the TCP connect, the HTTP upgrade and the welcome together (default 10 s).
    pub connect_timeout: Duration,
    /// How long `send_reliable` waits for room in the outbound queue (default 5 s).
    pub reliable_wait: Duration,
}

impl Default for WsOptions {
    fn default() -> Self {
        WsOptions {
            max_frame: DEFAULT_MAX_FRAME,
            outbound_frames: 1_024,
            inbound_frames: 1_024,
            connect_timeout: Duration::from_secs(10),
            reliable_wait: Duration::from_secs(5),
        }
    }
}

/// Why [`WsTransport::connect`] failed. Nothing is left running.
#[derive(Debug)]
pub enum WsError {
    /// The relay answered the upgrade with an HTTP error: 401 (token missing), 403 (wrong token),
    /// 400 (invalid peer id). The caller's credentials are at fault.
    Refused { status: u16 },
    /// The URL is invalid, the relay is unreachable, or the WebSocket handshake failed.
    Connect(tungstenite::Error),
    /// No welcome within [`WsOptions::connect_timeout`].
    Timeout,
    /// The first message was not a welcome (the server is not a Shoal relay, or a newer one).
    BadWelcome(&'static str),
    /// The options are out of range.
    InvalidOptions(&'static str),
}

impl fmt::Display for WsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WsError::Refused { status } => write!(f, "the relay refused the connection (HTTP {status})"),
            WsError::Connect(e) => write!(f, "cannot connect to the relay: {e}"),
            WsError::Timeout => f.write_str("the relay did not welcome us in time"),
            WsError::BadWelcome(what) => write!(f, "bad welcome from the relay: {what}"),
            WsError::InvalidOptions(what) => write!(f, "invalid options: {what}"),
        }
    }
}

impl std::error::Error for WsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            WsError::Connect(e) => Some(e),
            _ => None,
        }
    }
}

impl From<tungstenite::Error> for WsError {
    fn from(e: tungstenite::Error) -> Self {
        match e {
            tungstenite::Error::Http(response) => WsError::Refused { status: response.status().as_u16() },
            e => WsError::Connect(e),
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    packets_in: AtomicU64,
    bytes_in: AtomicU64,
    packets_out: AtomicU64,
    bytes_out: AtomicU64,
    send_errors: AtomicU64,
    dropped_in: AtomicU64,
    dropped_out: AtomicU64,
}

fn add(counter: &AtomicU64, n: usize) {
    counter.fetch_add(n as u64, Ordering::Relaxed);
}

/// State the transport shares with its reader and writer tasks.
#[derive(Debug, Default)]
struct Shared {
    closed: AtomicBool,
    close_notify: Notify,
    counters: Counters,
}

impl Shared {
    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.close_notify.notify_waiters();
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Completes once closed (at once if it already is).
    async fn closed(&self) {
        loop {
            let notified = self.close_notify.notified();
            tokio::pin!(notified);
            // Register before checking, so a close in between cannot be missed.
            notified.as_mut().enable();
            if self.is_closed() {
                return;
            }
            notified.await;
        }
    }
}

/// A Shoal transport over one WebSocket to a `shoal-relay`. See the crate documentation.
pub struct WsTransport {
    local: Addr,
    options: WsOptions,
    outbound: mpsc::Sender<Message>,
    inbox: tokio::sync::Mutex<mpsc::Receiver<(Addr, Bytes)>>,
    shared: Arc<Shared>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl fmt::Debug for WsTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsTransport")
            .field("local", &self.local)
            .field("closed", &self.shared.is_closed())
            .finish_non_exhaustive()
    }
}

impl WsTransport {
    /// Connects to a relay (`ws://host:port/ws?peer=<id>&token=<t>`) with default options and
    /// waits for its welcome. Call from inside a tokio runtime.
    pub async fn connect(url: &str) -> Result<Arc<WsTransport>, WsError> {
        WsTransport::connect_with(url, WsOptions::default()).await
    }

    /// As [`connect`](Self::connect) with `options`.
    pub async fn connect_with(url: &str, options: WsOptions) -> Result<Arc<WsTransport>, WsError> {
        if options.max_frame < 256 {
            return Err(WsError::InvalidOptions("max_frame must be at least 256"));
        }
        if options.outbound_frames == 0 || options.inbound_frames == 0 {
            return Err(WsError::InvalidOptions("queues need room for at least one message"));
        }
        let (socket, local) = tokio::time::timeout(options.connect_timeout, handshake(url, &options))
            .await
            .map_err(|_| WsError::Timeout)??;
        let (sink, stream) = socket.split();
        let shared = Arc::new(Shared::default());
        let (out_tx, out_rx) = mpsc::channel(options.outbound_frames);
        let (in_tx, in_rx) = mpsc::channel(options.inbound_frames);
        let writer = tokio::spawn(write_loop(sink, out_rx, shared.clone()));
        let reader = tokio::spawn(read_loop(stream, in_tx, shared.clone(), options.max_frame));
        tracing::debug!(%local, "websocket transport connected");
        Ok(Arc::new(WsTransport {
            local,
            options,
            outbound: out_tx,
            inbox: tokio::sync::Mutex::new(in_rx),
            shared,
            tasks: Mutex::new(vec![writer, reader]),
        }))
    }

    /// The options this transport runs with.
    pub fn options(&self) -> &WsOptions {
        &self.options
    }

    /// Best-effort sends dropped because the outbound queue was full.
    pub fn outbound_dropped(&self) -> u64 {
        self.shared.counters.dropped_out.load(Ordering::Relaxed)
    }

    /// Whether the transport is closed (by [`Transport::close`] or because the relay went away).
    pub fn is_closed(&self) -> bool {
        self.shared.is_closed()
    }

    /// The message for `to`, after the checks every send makes.
    fn message(&self, to: &Addr, bytes: &[u8]) -> Result<Message, TransportError> {
        if self.shared.is_closed() {
            return Err(TransportError::Closed);
        }
        if !self.claims(to, false) {
            add(&self.shared.counters.send_errors, 1);
            return Err(TransportError::Unreachable(to.clone()));
        }
        let size = 1 + to.as_str().len() + bytes.len();
        if size > self.options.max_frame {
            add(&self.shared.counters.send_errors, 1);
            return Err(TransportError::TooLarge { size, max: self.options.max_frame });
        }
        let Some(frame) = encode_ws_frame(to.as_str(), bytes) else {
            add(&self.shared.counters.send_errors, 1);
            return Err(TransportError::Unreachable(to.clone()));
        };
        Ok(Message::Binary(Bytes::from(frame)))
    }

    fn sent(&self, size: usize) {
        add(&self.shared.counters.packets_out, 1);
        add(&self.shared.counters.bytes_out, size);
    }
}

impl Drop for WsTransport {
    /// Dropping without closing still stops the tasks and releases the socket.
    fn drop(&mut self) {
        self.shared.close();
    }
}

/// Connects, upgrades, and reads the welcome: our own `relay://` address.
async fn handshake(url: &str, options: &WsOptions) -> Result<(Socket, Addr), WsError> {
    // The relay never sends more than its cap; anything far beyond ours is refused unbuffered.
    let hard_limit = options.max_frame.saturating_mul(4);
    let config = WebSocketConfig::default()
        .read_buffer_size(16 << 10)
        .write_buffer_size(16 << 10)
        .max_message_size(Some(hard_limit))
        .max_frame_size(Some(hard_limit));
    let (mut socket, _response) = tokio_tungstenite::connect_async_with_config(url, Some(config), true).await?;
    let welcome = loop {
        match socket.next().await {
            Some(Ok(Message::Binary(bytes))) => break bytes,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(_)) => return Err(WsError::BadWelcome("the first message is not binary")),
            Some(Err(e)) => return Err(e.into()),
            None => return Err(WsError::BadWelcome("the relay closed the connection before its welcome")),
        }
    };
    let (addr, packet) = decode_ws_frame(&welcome).map_err(|_| WsError::BadWelcome("not a relay frame"))?;
    if !packet.is_empty() {
        return Err(WsError::BadWelcome("the welcome carries a packet"));
    }
    let local = Addr::parse(addr).map_err(|_| WsError::BadWelcome("the welcome address does not parse"))?;
    if split_relay_addr(&local).is_none() {
        return Err(WsError::BadWelcome("the welcome address is not relay://host:port/peer"));
    }
    Ok((socket, local))
}

async fn write_loop(mut sink: SplitSink<Socket, Message>, mut queue: mpsc::Receiver<Message>, shared: Arc<Shared>) {
    let closed = shared.closed();
    tokio::pin!(closed);
    loop {
        let first = tokio::select! {
            biased;
            () = &mut closed => break,
            m = queue.recv() => match m {
                Some(m) => m,
                None => break,
            },
        };
        let batch = async {
            sink.feed(first).await?;
            for _ in 1..WRITE_BATCH {
                let Ok(m) = queue.try_recv() else { break };
                sink.feed(m).await?;
            }
            sink.flush().await
        };
        let result = tokio::select! {
            biased;
            () = &mut closed => break,
            r = batch => r,
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "websocket write failed; closing");
            break;
        }
    }
    shared.close();
    // A close handshake if the socket still takes it; never waits long.
    let _ = tokio::time::timeout(CLOSE_WAIT, sink.close()).await;
}

async fn read_loop(
    mut stream: SplitStream<Socket>,
    inbox: mpsc::Sender<(Addr, Bytes)>,
    shared: Arc<Shared>,
    max_frame: usize,
) {
    let closed = shared.closed();
    tokio::pin!(closed);
    let counters = &shared.counters;
    let mut senders: HashMap<Box<str>, Addr> = HashMap::new();
    loop {
        let message = tokio::select! {
            biased;
            () = &mut closed => return,
            m = stream.next() => m,
        };
        let frame = match message {
            Some(Ok(Message::Binary(frame))) => frame,
            Some(Ok(Message::Text(_))) => {
                add(&counters.dropped_in, 1);
                continue;
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
            Some(Ok(Message::Close(_))) | None => break,
            Some(Err(e)) => {
                tracing::debug!(error = %e, "websocket read failed");
                break;
            }
        };
        add(&counters.packets_in, 1);
        add(&counters.bytes_in, frame.len());
        if frame.len() > max_frame {
            add(&counters.dropped_in, 1);
            continue;
        }
        let Ok((source, packet)) = decode_ws_frame(&frame) else {
            add(&counters.dropped_in, 1);
            continue;
        };
        if packet.is_empty() {
            // Another welcome, or an empty packet: nothing for the protocol.
            continue;
        }
        let from = match senders.get(source) {
            Some(a) => a.clone(),
            None => {
                let Ok(a) = Addr::parse(source) else {
                    add(&counters.dropped_in, 1);
                    continue;
                };
                if senders.len() >= ADDR_CACHE_LIMIT {
                    senders.clear();
                }
                senders.insert(source.into(), a.clone());
                a
            }
        };
        let packet = frame.slice(frame.len() - packet.len()..);
        match inbox.try_send((from, packet)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => add(&counters.dropped_in, 1),
            Err(mpsc::error::TrySendError::Closed(_)) => break,
        }
    }
    tracing::debug!("the relay closed the connection");
    shared.close();
}

#[async_trait::async_trait]
impl Transport for WsTransport {
    fn name(&self) -> &'static str {
        "websocket"
    }

    /// `relay://host:port/peer` and `udp://ip:port`, best-effort and reliable alike.
    fn claims(&self, to: &Addr, _reliable: bool) -> bool {
        match to.scheme() {
            RELAY_SCHEME => split_relay_addr(to).is_some(),
            "udp" => to.socket_addr().is_some(),
            _ => false,
        }
    }

    async fn send(&self, to: &Addr, bytes: &[u8]) -> Result<(), TransportError> {
        let message = self.message(to, bytes)?;
        let size = message.len();
        match self.outbound.try_send(message) {
            Ok(()) => {
                self.sent(size);
                Ok(())
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                add(&self.shared.counters.dropped_out, 1);
                add(&self.shared.counters.send_errors, 1);
                Err(TransportError::Io(std::io::Error::new(
                    std::io::ErrorKind::WouldBlock,
                    "websocket outbound queue full",
                )))
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(TransportError::Closed),
        }
    }

    async fn send_reliable(&self, to: &Addr, bytes: &[u8]) -> Result<(), TransportError> {
        let message = self.message(to, bytes)?;
        let size = message.len();
        match tokio::time::timeout(self.options.reliable_wait, self.outbound.send(message)).await {
            Ok(Ok(())) => {
                self.sent(size);
                Ok(())
            }
            Ok(Err(_)) => Err(TransportError::Closed),
            Err(_) => {
                add(&self.shared.counters.send_errors, 1);
                Err(TransportError::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "websocket outbound queue stayed full",
                )))
            }
        }
    }

    async fn recv(&self, buf: &mut Vec<u8>) -> Result<Received, TransportError> {
        if self.shared.is_closed() {
            return Err(TransportError::Closed);
        }
        let mut inbox = self.inbox.lock().await;
        let next = tokio::select! {
            biased;
            () = self.shared.closed() => return Err(TransportError::Closed),
            m = inbox.recv() => m,
        };
        let Some((from, packet)) = next else { return Err(TransportError::Closed) };
        buf.clear();
        buf.extend_from_slice(&packet);
        Ok(Received { from, reliable: false })
    }

    fn local_addr(&self) -> Addr {
        self.local.clone()
    }

    fn counters(&self) -> TransportCounters {
        let c = &self.shared.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        TransportCounters {
            packets_in: load(&c.packets_in),
            bytes_in: load(&c.bytes_in),
            packets_out: load(&c.packets_out),
            bytes_out: load(&c.bytes_out),
            send_errors: load(&c.send_errors),
            dropped_in: load(&c.dropped_in),
        }
    }

    async fn close(&self) {
        self.shared.close();
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(PoisonError::into_inner));
        for task in tasks {
            // The writer sends the close handshake within CLOSE_WAIT; the reader stops at once.
            let _ = tokio::time::timeout(CLOSE_WAIT * 2, task).await;
        }
        tracing::debug!(local = %self.local, "websocket transport closed");
    }
}
