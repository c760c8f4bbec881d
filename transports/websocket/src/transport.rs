//! [`WsTransport`]: the [`Transport`] implementation over a WebSocket to a relay, its options and
//! its connect errors. The connection itself (reader, writer, reconnection) is
//! [`crate::connection`]'s.

use std::fmt;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use shoal_transport::relay::{encode_ws_frame, split_relay_addr, RELAY_SCHEME};
use shoal_transport::{Addr, AddrListener, LinkListener, Received, Transport, TransportCounters, TransportError};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::backoff::Backoff;
use crate::connection::{add, handshake, Outgoing, Shared, Supervisor, CLOSE_WAIT};

/// Default [`WsOptions::max_frame`]: 64 KiB, the relay's default cap.
pub const DEFAULT_MAX_FRAME: usize = 64 << 10;

/// The URL a member with peer id `peer` connects to, from a relay's base URL: `ws://host:port`
/// (or `http://`, `https://`, `wss://`) gets the `/ws` endpoint unless it names a path, and
/// `peer=<peer>` joins whatever query it has (`?token=...`). `peer` is used as given: check it with
/// [`valid_peer_id`](shoal_transport::relay::valid_peer_id) first.
///
/// ```
/// use shoal_websocket::member_url;
/// assert_eq!(member_url("ws://10.0.0.9:8080", "edge-1"), "ws://10.0.0.9:8080/ws?peer=edge-1");
/// assert_eq!(member_url("http://r:80/?token=t", "a"), "ws://r:80/ws?token=t&peer=a");
/// ```
pub fn member_url(relay: &str, peer: &str) -> String {
    let relay = relay.trim();
    let (base, query) = relay.split_once('?').unwrap_or((relay, ""));
    let base = base.trim_end_matches('/');
    let (scheme, rest) = match base.split_once("://") {
        Some(("http", rest)) => ("ws", rest),
        Some(("https", rest)) => ("wss", rest),
        Some((scheme, rest)) => (scheme, rest),
        None => ("ws", base),
    };
    let path = if rest.contains('/') { "" } else { "/ws" };
    let query = query.trim_matches('&');
    let sep = if query.is_empty() { "" } else { "&" };
    format!("{scheme}://{rest}{path}?{query}{sep}peer={peer}")
}

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
    /// Whether and how fast to reconnect when the relay connection drops (default: on, with
    /// [`Backoff::default`]: 250 ms doubling up to 5 s, each wait drawn between half and all of
    /// that). While reconnecting the transport is disconnected, not closed: `recv` waits and sends
    /// fail with `NotConnected`. The backoff runs over the relays of the list in turn (see
    /// [`WsTransport::connect_any`]): attempt `n` waits the backoff's `n`-th wait, whichever relay
    /// it goes to.
    /// A relay that closes with [`CloseCode::Replaced`](shoal_transport::relay::CloseCode)
    /// closes the transport for good either way. `None`: the first drop closes the transport,
    /// and `recv` returns `Err(Closed)`.
    pub reconnect: Option<Backoff>,
}

impl Default for WsOptions {
    fn default() -> Self {
        WsOptions {
            max_frame: DEFAULT_MAX_FRAME,
            outbound_frames: 1_024,
            inbound_frames: 1_024,
            connect_timeout: Duration::from_secs(10),
            reliable_wait: Duration::from_secs(5),
            reconnect: Some(Backoff::default()),
        }
    }
}

/// Why [`WsTransport::connect`] failed (the first connection only: reconnections are retried, see
/// [`WsOptions::reconnect`]). Nothing is left running. With several relays
/// ([`WsTransport::connect_any`]), the error is the last relay's, each relay having been tried.
#[derive(Debug)]
#[non_exhaustive]
pub enum WsError {
    /// The relay answered the upgrade with an HTTP error: 401 (token missing), 403 (wrong token),
    /// 400 (invalid peer id). The caller's credentials are at fault.
    Refused {
        /// The HTTP status the relay answered with.
        status: u16,
    },
    /// The URL is invalid, the relay is unreachable, or the WebSocket handshake failed.
    Connect(tungstenite::Error),
    /// No welcome within [`WsOptions::connect_timeout`].
    Timeout,
    /// The first message was not a welcome (the server is not a Shoal relay, or a newer one).
    BadWelcome(&'static str),
    /// The options are out of range, or no relay URL was given.
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

/// A Shoal transport over a WebSocket to a `shoal-relay`, reconnected when it drops. See the
/// crate documentation.
pub struct WsTransport {
    options: WsOptions,
    /// How many relay URLs it was given.
    relays: usize,
    outbound: mpsc::Sender<Outgoing>,
    inbox: tokio::sync::Mutex<mpsc::Receiver<(Addr, Bytes)>>,
    shared: Arc<Shared>,
    supervisor: Mutex<Option<JoinHandle<()>>>,
}

impl fmt::Debug for WsTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsTransport")
            .field("local", &self.shared.local())
            .field("relay", &self.shared.relay())
            .field("connected", &self.is_connected())
            .field("closed", &self.shared.is_closed())
            .finish_non_exhaustive()
    }
}

fn not_connected() -> TransportError {
    TransportError::Io(io::Error::new(io::ErrorKind::NotConnected, "websocket to the relay is reconnecting"))
}

impl WsTransport {
    /// Connects to a relay (`ws://host:port/ws?peer=<id>&token=<t>`) with default options and
    /// waits for its welcome. Call from inside a tokio runtime.
    pub async fn connect(url: &str) -> Result<Arc<WsTransport>, WsError> {
        WsTransport::connect_with(url, WsOptions::default()).await
    }

    /// As [`connect`](Self::connect) with `options`.
    pub async fn connect_with(url: &str, options: WsOptions) -> Result<Arc<WsTransport>, WsError> {
        WsTransport::connect_any_with(&[url], options).await
    }

    /// Connects through the first of several relays of one fleet that welcomes us, with default
    /// options: each URL names a relay's `/ws` endpoint with the **same peer id** (see
    /// [`member_url`]), tried in order, each attempt bounded by [`WsOptions::connect_timeout`].
    /// Fails with the last relay's error if none welcomes us. After a drop, the transport
    /// reconnects to the relay it had, then to the next ones in turn (see the crate
    /// documentation); a welcome at another relay is a move, reported to the member through
    /// [`Transport::watch_local_addr`].
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), shoal_websocket::WsError> {
    /// use shoal_websocket::{member_url, WsTransport};
    /// let urls = ["ws://relay-a.example:8080", "ws://relay-b.example:8080"].map(|r| member_url(r, "edge-1"));
    /// let ws = WsTransport::connect_any(&urls).await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect_any<S: AsRef<str>>(urls: &[S]) -> Result<Arc<WsTransport>, WsError> {
        WsTransport::connect_any_with(urls, WsOptions::default()).await
    }

    /// As [`connect_any`](Self::connect_any) with `options`.
    pub async fn connect_any_with<S: AsRef<str>>(urls: &[S], options: WsOptions) -> Result<Arc<WsTransport>, WsError> {
        if urls.is_empty() {
            return Err(WsError::InvalidOptions("at least one relay URL is needed"));
        }
        if options.max_frame < 256 {
            return Err(WsError::InvalidOptions("max_frame must be at least 256"));
        }
        if options.outbound_frames == 0 || options.inbound_frames == 0 {
            return Err(WsError::InvalidOptions("queues need room for at least one message"));
        }
        if let Some(backoff) = &options.reconnect {
            backoff.check().map_err(WsError::InvalidOptions)?;
        }
        let urls: Vec<String> = urls.iter().map(|u| u.as_ref().to_string()).collect();
        let mut welcomed = None;
        let mut failure = WsError::InvalidOptions("at least one relay URL is needed");
        for (relay, url) in urls.iter().enumerate() {
            let attempt = tokio::time::timeout(options.connect_timeout, handshake(url, &options)).await;
            match attempt.map_err(|_| WsError::Timeout).and_then(|r| r) {
                Ok(ok) => {
                    welcomed = Some((relay, ok));
                    break;
                }
                Err(e) => {
                    // The URL may hold the token: the relay is named by its place in the list.
                    if urls.len() > 1 {
                        tracing::debug!(relay = relay + 1, relays = urls.len(), error = %e, "a relay did not welcome us");
                    }
                    failure = e;
                }
            }
        }
        let Some((relay, (socket, local))) = welcomed else { return Err(failure) };
        let shared = Arc::new(Shared::connected(local.clone(), relay));
        let (out_tx, out_rx) = mpsc::channel(options.outbound_frames);
        let (in_tx, in_rx) = mpsc::channel(options.inbound_frames);
        let relays = urls.len();
        let supervisor =
            Supervisor { urls, options: options.clone(), outbound: out_rx, inbox: in_tx, shared: shared.clone() };
        let supervisor = tokio::spawn(supervisor.run(socket));
        tracing::debug!(%local, relay = relay + 1, relays, "websocket transport connected");
        Ok(Arc::new(WsTransport {
            options,
            relays,
            outbound: out_tx,
            inbox: tokio::sync::Mutex::new(in_rx),
            shared,
            supervisor: Mutex::new(Some(supervisor)),
        }))
    }

    /// The options this transport runs with.
    pub fn options(&self) -> &WsOptions {
        &self.options
    }

    /// Messages that did not reach the socket: best-effort sends refused because the outbound
    /// queue was full or the transport was disconnected, and messages still queued when the
    /// connection dropped (discarded rather than sent late on the next connection).
    pub fn outbound_dropped(&self) -> u64 {
        self.shared.counters.dropped_out.load(Ordering::Relaxed)
    }

    /// Whether the transport is closed for good: by [`Transport::close`], or because the relay
    /// went away and it does not reconnect (see [`WsOptions::reconnect`]).
    pub fn is_closed(&self) -> bool {
        self.shared.is_closed()
    }

    /// Whether a connection to the relay is up now: false while reconnecting and once closed.
    pub fn is_connected(&self) -> bool {
        self.shared.current_link().is_some()
    }

    /// Connections to the relay that dropped and were then retried (one per drop, however many
    /// attempts the reconnection took).
    pub fn disconnects(&self) -> u64 {
        self.shared.counters.disconnects.load(Ordering::Relaxed)
    }

    /// Successful reconnections (moves included).
    pub fn reconnects(&self) -> u64 {
        self.shared.counters.reconnects.load(Ordering::Relaxed)
    }

    /// Reconnections welcomed at another address with our peer id (another relay of the fleet):
    /// times [`local_addr`](Transport::local_addr) changed.
    pub fn moves(&self) -> u64 {
        self.shared.counters.moves.load(Ordering::Relaxed)
    }

    /// Which relay of the list given to [`connect_any`](Self::connect_any) the transport is
    /// connected through, or was last (0 for the first; always 0 after [`connect`](Self::connect)).
    pub fn relay_index(&self) -> usize {
        self.shared.relay()
    }

    /// How many relays the transport was given.
    pub fn relays(&self) -> usize {
        self.relays
    }

    /// The message for `to`, after the checks every send makes.
    fn message(&self, to: &Addr, bytes: &[u8]) -> Result<Message, TransportError> {
        if self.shared.is_closed() {
            return Err(TransportError::Closed);
        }
        if !self.claims(to, false) {
            self.shared.counters.traffic.send_failed();
            return Err(TransportError::Unreachable(to.clone()));
        }
        let size = 1 + to.as_str().len() + bytes.len();
        if size > self.options.max_frame {
            self.shared.counters.traffic.send_failed();
            return Err(TransportError::TooLarge { size, max: self.options.max_frame });
        }
        let Some(frame) = encode_ws_frame(to.as_str(), bytes) else {
            self.shared.counters.traffic.send_failed();
            return Err(TransportError::Unreachable(to.clone()));
        };
        Ok(Message::Binary(Bytes::from(frame)))
    }

    fn sent(&self, size: usize) {
        self.shared.counters.traffic.sent(size);
    }

    /// The connection a message sent now belongs to, or the `NotConnected` error (counted).
    fn link(&self, best_effort: bool) -> Result<u64, TransportError> {
        match self.shared.current_link() {
            Some(link) => Ok(link),
            None if self.shared.is_closed() => Err(TransportError::Closed),
            None => {
                self.shared.counters.traffic.send_failed();
                if best_effort {
                    add(&self.shared.counters.dropped_out, 1);
                }
                Err(not_connected())
            }
        }
    }
}

impl Drop for WsTransport {
    /// Dropping without closing still stops the tasks and releases the socket.
    fn drop(&mut self) {
        self.shared.close();
    }
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

    /// Queues the packet for the writer; never waits. Fails with `Io(WouldBlock)` when the queue
    /// is full and `Io(NotConnected)` while reconnecting (both counted).
    async fn send(&self, to: &Addr, bytes: &[u8]) -> Result<(), TransportError> {
        let message = self.message(to, bytes)?;
        let size = message.len();
        let link = self.link(true)?;
        match self.outbound.try_send(Outgoing { link, message }) {
            Ok(()) => {
                self.sent(size);
                Ok(())
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                add(&self.shared.counters.dropped_out, 1);
                self.shared.counters.traffic.send_failed();
                Err(TransportError::Io(io::Error::new(io::ErrorKind::WouldBlock, "websocket outbound queue full")))
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(TransportError::Closed),
        }
    }

    /// Queues the packet, waiting up to [`WsOptions::reliable_wait`] for room (then
    /// `Io(TimedOut)`). Fails at once with `Io(NotConnected)` while reconnecting. A packet queued
    /// just before the connection drops is lost with it, as anything in flight would be.
    async fn send_reliable(&self, to: &Addr, bytes: &[u8]) -> Result<(), TransportError> {
        let message = self.message(to, bytes)?;
        let size = message.len();
        let link = self.link(false)?;
        let queued = self.outbound.send(Outgoing { link, message });
        match tokio::time::timeout(self.options.reliable_wait, queued).await {
            Ok(Ok(())) => {
                self.sent(size);
                Ok(())
            }
            Ok(Err(_)) => Err(TransportError::Closed),
            Err(_) => {
                self.shared.counters.traffic.send_failed();
                Err(TransportError::Io(io::Error::new(io::ErrorKind::TimedOut, "websocket outbound queue stayed full")))
            }
        }
    }

    /// The next packet. Keeps waiting while the transport reconnects; `Err(Closed)` once closed.
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

    /// Our address as the relay we are (or were last) connected through welcomed us. It changes
    /// when a reconnection is welcomed at another relay of the fleet with our peer id (see
    /// [`watch_local_addr`](Transport::watch_local_addr)).
    fn local_addr(&self) -> Addr {
        self.shared.local()
    }

    fn counters(&self) -> TransportCounters {
        self.shared.counters.traffic.snapshot()
    }

    /// Tells `listener` when the relay connection drops (`false`, whether a reconnection
    /// follows or the transport closes for good) and when a reconnection succeeds (`true`). The
    /// member's driver calls this when the member is built: a member whose only transport this
    /// is accuses nobody while its relay connection is down (its outage is not the others' fault)
    /// and catches up with a push-pull once it is back.
    fn watch_link(&self, listener: LinkListener) {
        self.shared.watch(listener);
    }

    /// Tells `listener` when a reconnection is welcomed at another address with our peer id (at
    /// another relay of the fleet), as `(old, new)`: after [`local_addr`](Transport::local_addr)
    /// changed and before the link is reported up again, so before anything is sent through the
    /// new relay. The member's driver calls this when the member is built and moves the member
    /// to the new address (`Node::move_to`) inside the call.
    fn watch_local_addr(&self, listener: AddrListener) {
        self.shared.watch_moves(listener);
    }

    /// Closes for good, whatever the state: a connection gets a WebSocket close (written within
    /// about a second), a reconnection in progress (backoff or handshake) is abandoned at once.
    async fn close(&self) {
        self.shared.close();
        let supervisor = self.supervisor.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(task) = supervisor {
            if tokio::time::timeout(CLOSE_WAIT * 2, task).await.is_err() {
                tracing::debug!(local = %self.shared.local(), "websocket supervisor did not stop in time");
            }
        }
        tracing::debug!(local = %self.shared.local(), "websocket transport closed");
    }
}

#[cfg(test)]
mod tests {
    use super::member_url;

    #[test]
    fn a_member_url_is_the_relays_ws_endpoint_with_the_peer_id_after_any_query() {
        assert_eq!(member_url("ws://127.0.0.1:8080", "n1"), "ws://127.0.0.1:8080/ws?peer=n1");
        assert_eq!(member_url("ws://127.0.0.1:8080/", "n1"), "ws://127.0.0.1:8080/ws?peer=n1");
        assert_eq!(member_url("127.0.0.1:8080", "n1"), "ws://127.0.0.1:8080/ws?peer=n1");
        assert_eq!(member_url("ws://h:1?token=s3cret", "n1"), "ws://h:1/ws?token=s3cret&peer=n1");
        assert_eq!(member_url("https://h/relay/ws?token=t", "n1"), "wss://h/relay/ws?token=t&peer=n1");
        assert_eq!(member_url(" http://h:1/ ", "n1"), "ws://h:1/ws?peer=n1");
    }
}
