//! The connection lifecycle of a [`WsTransport`](crate::WsTransport): one supervisor task per
//! transport owns it.
//!
//! ```text
//!  connect_with: handshake ──► run: reader + writer ──► ended ──► locally closed ────────► stop
//!                                   ▲                     │ ─────► replaced (4001), or
//!                                   │                     │        reconnect off ───────► closed
//!                                   │                     ▼
//!                                   ├─ same address ◄── backoff, handshake with the ──► another
//!                                   │                   current relay, then the next     peer id ─► closed
//!                                   │                   ones in turn (retry)
//!                                   │                     │
//!                                   └── moved: address ◄──┘ same peer id, another relay
//!                                       reported, then link up
//! ```
//!
//! While a connection runs, its reader and writer are two futures of the supervisor task, driven
//! together until either ends (the relay closed, a socket error) or the transport is closed
//! locally. The outbound queue's receiver and the inbox's sender belong to the supervisor and
//! outlive every connection, so the transport's handle never changes.
//!
//! **Which sends belong to which connection.** [`Shared`] holds a link number: `2n - 1` while the
//! `n`-th connection is up, `2n` once it went down. A send tags its message with the link number it
//! saw; a writer writes only messages of its own link and discards (and counts) the rest, so
//! nothing queued before a drop is written on the next connection. While the link number is even,
//! sends fail at once with `NotConnected`.
//!
//! **Which relay.** The transport holds the list of relay URLs it was given and the index of the
//! one it is connected through (the *current* relay). Reconnection attempt `n` (from 0) goes to
//! relay `current + n` of the list, round and round: the current relay once, then the next ones in
//! turn, each attempt after the backoff's wait for `n`. A welcome at another address with the same
//! peer id is a **move**: [`Shared::moved`] sets the new address and tells the member (which moves
//! its node there) while the link is still down, and only then does the link come up, so nothing
//! goes out through the new relay before the member names its new address.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use shoal_transport::relay::{decode_ws_frame, split_relay_addr, CloseCode};
use shoal_transport::{Addr, AddrListener, LinkListener, TrafficCounters};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::backoff::{Backoff, Jitter};
use crate::transport::{WsError, WsOptions};

/// Messages a writer hands to the WebSocket before one flush.
const WRITE_BATCH: usize = 64;
/// Sender addresses cached; past this the cache starts over.
const ADDR_CACHE_LIMIT: usize = 4_096;
/// How long a local close waits for the close handshake to be written.
pub(crate) const CLOSE_WAIT: Duration = Duration::from_secs(1);
/// The close code reported for a close frame without one (RFC 6455 "no status received").
const NO_STATUS: u16 = 1005;

pub(crate) type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The shared traffic counters plus the WebSocket plugin's own.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) traffic: TrafficCounters,
    pub(crate) dropped_out: AtomicU64,
    pub(crate) disconnects: AtomicU64,
    pub(crate) reconnects: AtomicU64,
    pub(crate) moves: AtomicU64,
}

pub(crate) fn add(counter: &AtomicU64, n: usize) {
    counter.fetch_add(n as u64, Ordering::Relaxed);
}

/// State the transport shares with its supervisor.
pub(crate) struct Shared {
    closed: AtomicBool,
    close_notify: Notify,
    /// Odd while connected (see the module documentation). Only the supervisor changes it, under
    /// the `listener` lock.
    link: AtomicU64,
    /// Hears the link go down and come back (the member, which accuses nobody meanwhile).
    listener: Mutex<Option<LinkListener>>,
    /// Our address now: the latest welcome's. Only the supervisor changes it, under `mover`.
    local: Mutex<Addr>,
    /// The index, in the transport's list of relay URLs, of the relay we are (or were last)
    /// connected through.
    relay: AtomicUsize,
    /// Hears our address change (the member, which moves to the new one).
    mover: Mutex<Option<AddrListener>>,
    pub(crate) counters: Counters,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("closed", &self.is_closed())
            .field("link", &self.link.load(Ordering::Relaxed))
            .field("local", &self.local())
            .field("relay", &self.relay())
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// The state of a transport whose first connection is up, welcomed at `local` by relay
    /// `relay` of its list.
    pub(crate) fn connected(local: Addr, relay: usize) -> Shared {
        Shared {
            closed: AtomicBool::new(false),
            close_notify: Notify::new(),
            link: AtomicU64::new(1),
            listener: Mutex::new(None),
            local: Mutex::new(local),
            relay: AtomicUsize::new(relay),
            mover: Mutex::new(None),
            counters: Counters::default(),
        }
    }

    /// Our address now.
    pub(crate) fn local(&self) -> Addr {
        self.local.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The index of the relay we are (or were last) connected through.
    pub(crate) fn relay(&self) -> usize {
        self.relay.load(Ordering::Acquire)
    }

    /// The mover slot. Every holder leaves it consistent, so a panic elsewhere cannot poison it.
    fn mover(&self) -> std::sync::MutexGuard<'_, Option<AddrListener>> {
        self.mover.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sets the listener that hears each change of our address (the transport's
    /// `watch_local_addr`).
    pub(crate) fn watch_moves(&self, listener: AddrListener) {
        *self.mover() = Some(listener);
    }

    /// We were welcomed at `new`, our peer id at another relay: sets the address, counts the
    /// move and tells the listener `(old, new)`. Call while the link is down, before
    /// [`link_up`](Self::link_up): the member moves before anything goes out through the new relay.
    fn moved(&self, new: Addr) {
        let mover = self.mover();
        let old = std::mem::replace(&mut *self.local.lock().unwrap_or_else(PoisonError::into_inner), new.clone());
        add(&self.counters.moves, 1);
        if let Some(tell) = mover.as_ref() {
            tell(&old, &new);
        }
    }

    /// The listener slot. Every holder leaves it consistent, so a panic elsewhere cannot poison it.
    fn listener(&self) -> std::sync::MutexGuard<'_, Option<LinkListener>> {
        self.listener.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sets the listener that hears each change of the link (the transport's `watch_link`),
    /// telling it at once if the link is down now.
    pub(crate) fn watch(&self, listener: LinkListener) {
        let mut slot = self.listener();
        if self.link.load(Ordering::Acquire) % 2 == 0 {
            listener(false);
        }
        *slot = Some(listener);
    }

    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.close_notify.notify_waiters();
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Completes once closed (at once if it already is).
    pub(crate) async fn closed(&self) {
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

    /// The current link number if a connection is up and the transport open: what a send tags
    /// its message with.
    pub(crate) fn current_link(&self) -> Option<u64> {
        let link = self.link.load(Ordering::Acquire);
        (link % 2 == 1 && !self.is_closed()).then_some(link)
    }

    /// Marks the connection down (link number even), and tells the listener if it was up.
    fn link_down(&self) {
        let listener = self.listener();
        let link = self.link.load(Ordering::Acquire);
        if link % 2 == 1 {
            self.link.store(link + 1, Ordering::Release);
            if let Some(tell) = listener.as_ref() {
                tell(false);
            }
        }
    }

    /// Marks a new connection up and returns its link number; tells the listener if it was down.
    /// Sends tagged from now on go out on the new connection.
    fn link_up(&self) -> u64 {
        let listener = self.listener();
        let link = self.link.load(Ordering::Acquire);
        let up = if link % 2 == 1 { link + 2 } else { link + 1 };
        self.link.store(up, Ordering::Release);
        if link % 2 == 0 {
            if let Some(tell) = listener.as_ref() {
                tell(true);
            }
        }
        up
    }
}

/// A message waiting in the outbound queue, tagged with the link it was sent on.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub(crate) link: u64,
    pub(crate) message: Message,
}

/// Connects, upgrades, and reads the welcome: our own `relay://` address. Not bounded in time by
/// itself: callers wrap it in [`WsOptions::connect_timeout`].
pub(crate) async fn handshake(url: &str, options: &WsOptions) -> Result<(Socket, Addr), WsError> {
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

/// How a connection ended.
#[derive(Debug)]
enum Ended {
    /// The transport was closed (or dropped) here.
    Locally,
    /// The relay sent a close frame ([`NO_STATUS`] if it had no code).
    ByRelay { code: u16, reason: String },
    /// The connection failed or ended without a close frame.
    Lost(String),
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ended::Locally => f.write_str("closed locally"),
            Ended::ByRelay { code, reason } if reason.is_empty() => write!(f, "relay closed it with code {code}"),
            // The reason is the relay's text: quoted and escaped, it cannot forge log lines.
            Ended::ByRelay { code, reason } => write!(f, "relay closed it with code {code}: {reason:?}"),
            Ended::Lost(why) => f.write_str(why),
        }
    }
}

/// Everything the supervisor owns across connections.
pub(crate) struct Supervisor {
    /// The relays' URLs, in the order they are tried (at least one).
    pub(crate) urls: Vec<String>,
    pub(crate) options: WsOptions,
    pub(crate) outbound: mpsc::Receiver<Outgoing>,
    pub(crate) inbox: mpsc::Sender<(Addr, Bytes)>,
    pub(crate) shared: std::sync::Arc<Shared>,
}

impl Supervisor {
    /// Runs connections until the transport closes: `first` (already welcomed, link 1), then
    /// reconnections as [`WsOptions::reconnect`] allows. Spawn it once per transport.
    pub(crate) async fn run(mut self, first: Socket) {
        let mut senders = HashMap::new();
        let mut jitter = Jitter::new(self.shared.local().as_str());
        let mut socket = first;
        let mut link = 1;
        loop {
            let ended = self.connection(socket, link, &mut senders).await;
            let next = match self.after(ended) {
                Some(backoff) => self.reconnect(backoff, &mut jitter).await,
                None => None,
            };
            let Some((next, welcome, relay)) = next else { break };
            if welcome != self.shared.local() {
                // Before the link comes up: the member moves before anything goes out through
                // the new relay.
                self.shared.moved(welcome);
            }
            self.shared.relay.store(relay, Ordering::Release);
            socket = next;
            link = self.shared.link_up();
        }
        self.shared.link_down();
        self.shared.close();
    }

    /// Runs one connection's reader and writer until either ends or the transport is closed.
    async fn connection(&mut self, socket: Socket, link: u64, senders: &mut HashMap<Box<str>, Addr>) -> Ended {
        let (mut sink, mut stream) = socket.split();
        let ended = {
            let shared = &*self.shared;
            let reader = read_loop(&mut stream, &self.inbox, shared, self.options.max_frame, senders);
            let writer = write_loop(&mut sink, &mut self.outbound, shared, link);
            tokio::select! {
                biased;
                () = shared.closed() => Ended::Locally,
                ended = reader => ended,
                ended = writer => ended,
            }
        };
        if let Ended::Locally = ended {
            // A close handshake if the socket still takes it; never waits long.
            let _ = tokio::time::timeout(CLOSE_WAIT, sink.close()).await;
        }
        ended
    }

    /// Decides what follows a connection's end: the backoff to reconnect with, or `None` to stop.
    /// When reconnecting, the transport is marked disconnected and its stale sends discarded.
    fn after(&mut self, ended: Ended) -> Option<Backoff> {
        let local = &self.shared.local();
        match (&ended, self.options.reconnect) {
            (Ended::Locally, _) => None,
            (Ended::ByRelay { code, .. }, _) if !CloseCode::should_reconnect(*code) => {
                tracing::warn!(%local, reason = %ended, "websocket transport closed for good: another connection took our peer id");
                None
            }
            (_, None) => {
                tracing::debug!(%local, reason = %ended, "websocket transport closed: the connection ended");
                None
            }
            (_, Some(backoff)) => {
                self.shared.link_down();
                add(&self.shared.counters.disconnects, 1);
                let mut stale = 0;
                while self.outbound.try_recv().is_ok() {
                    stale += 1;
                }
                add(&self.shared.counters.dropped_out, stale);
                tracing::info!(%local, reason = %ended, discarded = stale, "websocket transport disconnected; reconnecting");
                Some(backoff)
            }
        }
    }

    /// Retries the handshake with `backoff` until it succeeds or the transport is closed locally
    /// or must close (a relay gave us another peer id): `None`. Attempt `n` (from 0) goes to relay
    /// `current + n` of the list, so the current relay first, then the next ones in turn. Returns
    /// the new socket, the address it was welcomed at (ours, or our peer id at another relay: a
    /// move) and the index of the relay that welcomed it.
    async fn reconnect(&self, backoff: Backoff, jitter: &mut Jitter) -> Option<(Socket, Addr, usize)> {
        let started = Instant::now();
        let local = &self.shared.local();
        let relays = self.urls.len();
        let mut next = self.shared.relay() % relays;
        let mut attempt: u32 = 0;
        loop {
            let relay = next;
            next = (next + 1) % relays;
            // Numbered from 1 in logs; the URL itself may hold the token, so it is not logged.
            let number = relay + 1;
            let delay = backoff.delay(attempt, jitter);
            attempt = attempt.saturating_add(1);
            let try_once = async {
                tokio::time::sleep(delay).await;
                tokio::time::timeout(self.options.connect_timeout, handshake(&self.urls[relay], &self.options)).await
            };
            let result = tokio::select! {
                biased;
                () = self.shared.closed() => return None,
                r = try_once => r,
            };
            let ms = started.elapsed().as_millis() as u64;
            match result {
                Ok(Ok((socket, addr))) if addr == *local => {
                    add(&self.shared.counters.reconnects, 1);
                    tracing::info!(%local, relay = number, relays, attempts = attempt, ms, "websocket transport reconnected after {attempt} attempts, {ms} ms");
                    return Some((socket, addr, relay));
                }
                Ok(Ok((socket, addr))) if same_peer(&addr, local) => {
                    add(&self.shared.counters.reconnects, 1);
                    tracing::info!(from = %local, to = %addr, relay = number, relays, attempts = attempt, ms, "websocket transport moved to another relay of the fleet after {attempt} attempts, {ms} ms");
                    return Some((socket, addr, relay));
                }
                Ok(Ok((mut socket, addr))) => {
                    tracing::warn!(%local, welcome = %addr, relay = number, "websocket transport closed for good: a relay gives us another peer id, which the cluster cannot follow");
                    let _ = tokio::time::timeout(CLOSE_WAIT, socket.close(None)).await;
                    return None;
                }
                Ok(Err(WsError::Refused { status })) => {
                    tracing::warn!(%local, relay = number, relays, status, attempt, "a relay refused our reconnection; retrying");
                }
                Ok(Err(e)) => {
                    tracing::debug!(%local, relay = number, relays, attempt, error = %e, "reconnection failed")
                }
                Err(_) => tracing::debug!(%local, relay = number, relays, attempt, "reconnection timed out"),
            }
        }
    }
}

/// Whether two `relay://` addresses name the same peer id (at the same relay or another one).
fn same_peer(a: &Addr, b: &Addr) -> bool {
    match (split_relay_addr(a), split_relay_addr(b)) {
        (Some((_, a)), Some((_, b))) => a == b,
        _ => false,
    }
}

/// Writes the messages of `link` from `queue` in batches until a write fails. Messages of other
/// links (queued before a drop) are discarded and counted. Cancel it to stop it.
async fn write_loop(
    sink: &mut SplitSink<Socket, Message>,
    queue: &mut mpsc::Receiver<Outgoing>,
    shared: &Shared,
    link: u64,
) -> Ended {
    loop {
        // The transport holds the queue's sender until it is dropped, which closes it too.
        let Some(first) = queue.recv().await else { return Ended::Locally };
        let mut stale = 0;
        let batch = async {
            let mut next = Some(first);
            for _ in 0..WRITE_BATCH {
                let Some(m) = next.take().or_else(|| queue.try_recv().ok()) else { break };
                if m.link == link {
                    sink.feed(m.message).await?;
                } else {
                    stale += 1;
                }
            }
            sink.flush().await
        };
        let result = batch.await;
        add(&shared.counters.dropped_out, stale);
        if let Err(e) = result {
            return Ended::Lost(format!("websocket write failed: {e}"));
        }
    }
}

/// Hands what the relay sends to the inbox until the connection ends. Cancel it to stop it.
async fn read_loop(
    stream: &mut SplitStream<Socket>,
    inbox: &mpsc::Sender<(Addr, Bytes)>,
    shared: &Shared,
    max_frame: usize,
    senders: &mut HashMap<Box<str>, Addr>,
) -> Ended {
    let counters = &shared.counters;
    loop {
        let frame = match stream.next().await {
            Some(Ok(Message::Binary(frame))) => frame,
            Some(Ok(Message::Text(_))) => {
                counters.traffic.dropped_in();
                continue;
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
            Some(Ok(Message::Close(frame))) => {
                let (code, reason) =
                    frame.map_or((NO_STATUS, String::new()), |f| (f.code.into(), f.reason.to_string()));
                return Ended::ByRelay { code, reason };
            }
            None => return Ended::Lost("the connection ended without a close frame".into()),
            Some(Err(e)) => return Ended::Lost(format!("websocket read failed: {e}")),
        };
        counters.traffic.received(frame.len());
        if frame.len() > max_frame {
            counters.traffic.dropped_in();
            continue;
        }
        let Ok((source, packet)) = decode_ws_frame(&frame) else {
            counters.traffic.dropped_in();
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
                    counters.traffic.dropped_in();
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
            Err(mpsc::error::TrySendError::Full(_)) => counters.traffic.dropped_in(),
            // The transport is gone.
            Err(mpsc::error::TrySendError::Closed(_)) => return Ended::Locally,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_link_number_is_odd_exactly_while_connected() {
        let s = Shared::connected(Addr::parse("relay://h:1/me").unwrap(), 0);
        assert_eq!(s.current_link(), Some(1));
        s.link_down();
        assert_eq!(s.current_link(), None);
        s.link_down();
        assert_eq!(s.current_link(), None, "going down twice is going down once");
        assert_eq!(s.link_up(), 3);
        assert_eq!(s.current_link(), Some(3));
        s.close();
        assert_eq!(s.current_link(), None, "a closed transport is never connected");
    }

    #[test]
    fn only_two_relay_addresses_with_the_same_valid_peer_id_name_the_same_peer() {
        let a = |s: &str| Addr::parse(s).unwrap();
        assert!(same_peer(&a("relay://10.0.0.1:80/me"), &a("relay://10.0.0.2:443/me")));
        assert!(same_peer(&a("relay://10.0.0.1:80/me"), &a("relay://10.0.0.1:80/me")));
        assert!(!same_peer(&a("relay://10.0.0.1:80/me"), &a("relay://10.0.0.2:80/you")));
        assert!(!same_peer(&a("relay://10.0.0.1:80/me"), &a("udp://10.0.0.2:80")));
        assert!(!same_peer(&a("relay://h:1/bad:id"), &a("relay://h:2/bad:id")), "not a valid peer id");
    }

    #[test]
    fn a_move_sets_the_address_before_telling_the_listener_and_is_counted() {
        let s = std::sync::Arc::new(Shared::connected(Addr::parse("relay://h:1/me").unwrap(), 0));
        let heard = std::sync::Arc::new(Mutex::new(Vec::new()));
        let (sink, shared) = (heard.clone(), std::sync::Arc::downgrade(&s));
        s.watch_moves(Box::new(move |old, new| {
            let now = shared.upgrade().map(|s| s.local());
            sink.lock().unwrap().push((old.to_string(), new.to_string(), now.map(|a| a.to_string())));
        }));
        s.link_down();
        s.moved(Addr::parse("relay://h:2/me").unwrap());
        let expected = ("relay://h:1/me".to_string(), "relay://h:2/me".to_string(), Some("relay://h:2/me".to_string()));
        assert_eq!(*heard.lock().unwrap(), [expected]);
        assert_eq!(s.counters.moves.load(Ordering::Relaxed), 1);
        assert_eq!(s.current_link(), None, "still down: the supervisor brings the link up after");
    }

    #[test]
    fn every_connection_gets_a_new_link_number() {
        let s = Shared::connected(Addr::parse("relay://h:1/me").unwrap(), 0);
        let mut seen = vec![1];
        for _ in 0..3 {
            s.link_down();
            seen.push(s.link_up());
        }
        assert_eq!(seen, [1, 3, 5, 7]);
    }
}
