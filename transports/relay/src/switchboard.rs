//! [`Switchboard`]: the relay's routing logic, with no I/O.
//!
//! It owns the peer table (peer id -> connection id and bounded [`Outbox`]), decides admissions,
//! and turns every incoming WebSocket frame or UDP datagram into a routing decision, stamping the
//! true source on the way (the envelope is defined in [`shoal_core::relay`]):
//!
//! | input | destination | result |
//! |---|---|---|
//! | WS frame `[len][relay://<this relay>/Q][packet]` from peer P | Q connected | `[len][relay://<this relay>/P][packet]` queued for Q |
//! | WS frame `[len][udp://ip:port][packet]` from peer P | | datagram `[0xF0][len][relay://<this relay>/P][packet]` for `ip:port` |
//! | UDP datagram `[0xF0][len][Q][packet]` from socket S | Q connected | `[len][udp://S][packet]` queued for Q |
//! | WS signal `[0][len][relay://<this relay>/Q][kind][body]` from peer P | Q connected | `[0][len][relay://<this relay>/P][kind][body]` queued for Q |
//! | WS frame `[len][relay://R/Q][packet]` from peer P, R another relay | link to R up | link frame `[0x10][relay://<this relay>/P][Q][packet]` queued on the link to R |
//! | WS signal `[0][len][relay://R/Q][kind][body]` from peer P, R another relay | link to R up | link frame `[0x11][relay://<this relay>/P][Q][kind][body]` queued on the link to R |
//! | link frame `[0x10][S][Q][packet]` over the link to R | S = `relay://R/<peer id>`, Q connected | `[len][S][packet]` queued for Q |
//! | link frame `[0x11][S][Q][kind][body]` over the link to R | S = `relay://R/<peer id>`, Q connected | `[0][len][S][kind][body]` queued for Q |
//! | farewell (HTTP body) naming peer P with P's connection's secret, carrying WS frames | P connected | each frame routed as a WS frame from P (rows 1, 2 and 5) |
//!
//! Signalling frames (WebRTC offer, answer, ICE candidate, bye) travel between two members of the
//! same relay or of two linked relays: the relay checks the kind, stamps the source and forwards
//! the body untouched.
//! Glare needs no help from the relay: both ends apply the same rule
//! ([`shoal_core::relay::offer_wins`]).
//!
//! **Links to other relays** ([`link_up`](Switchboard::link_up)) carry the frames of rows 5-8.
//! The server registers a link once its handshake authenticated the other relay's public address
//! R; from then on the link may only deliver frames stamped `relay://R/<peer id>` (anything else
//! is [`DropReason::BadStamp`]), and frames for `relay://R/Q` go into the link's bounded queue
//! ([`LINK_QUEUE_FACTOR`] times a member's; full: [`DropReason::LinkQueueFull`], the link stays).
//! The source's budget is spent here, the destination's at R; what arrives over a link goes to a
//! member of this relay or nowhere: never to a third relay, never to a UDP socket. A frame for a
//! relay linked to before whose link is down is [`DropReason::LinkDown`]; for a relay never linked
//! to, [`DropReason::UnknownDestination`] as before; an undecodable link frame
//! [`DropReason::LinkMalformed`]; a link's backlog when it closes [`DropReason::LinkClosed`].
//! **One link per pair of relays**: when a second link to R authenticates, the newer one wins if
//! the same relay dialed both (the old one is stale), else the one the lower address dialed, so
//! two relays dialing each other keep the same link whatever the timing; the loser is refused
//! or closed with [`CloseReason::LinkSuperseded`] and counted ([`LinkRefusal::Duplicate`]).
//!
//! Anything else is dropped and counted by [`DropReason`]. The server (`crate::server`) does the
//! I/O around it: it calls in under one short lock per frame and performs what comes out.
//!
//! **Duplicate peer ids: the newer connection replaces the older one.** A browser tab that
//! reloads, or a member whose network changed, reconnects with the same peer id while the old TCP
//! connection may take minutes to time out; refusing the newcomer would lock the member out for
//! that long. The replaced connection's queue is closed with [`CloseReason::Replaced`] (so the server
//! closes it, saying why, and the member does not reconnect to take the id back) and counted in
//! [`RelayStats::replaced`]. Since the token already gates who may connect, a token holder can
//! take over any peer id, exactly as it could spoof one by reconnecting.
//!
//! **A full queue drops frames; only a member that stops reading is disconnected.** Each member's
//! queue is bounded in frames and bytes. A frame that finds its destination's queue full is
//! dropped and counted ([`DropReason::QueueFull`]); the member stays connected. Frames arriving
//! faster than a member's link drains them (a burst of push-pull replies, or someone flooding the
//! member) say nothing about the member, and disconnecting it for them would hand anyone who can
//! reach the relay a way to kick members out of the cluster. A member that stops reading is told
//! apart by its connection's writer, from time: nothing taken from its queue for
//! `stall_timeout` while frames wait. The server then calls [`Switchboard::close`] with
//! [`CloseReason::SlowConsumer`]. Memory per member stays bounded by the queue limits whatever
//! the traffic.
//!
//! **Rates are limited per sender and per receiver**, in frames and bytes ([`Limits`]): a frame
//! over its sender's budget is dropped as [`DropReason::SourceRate`], one over its receiver's as
//! [`DropReason::DestinationRate`]. Senders are WebSocket members and UDP source sockets;
//! receivers are WebSocket members and UDP target sockets. The UDP port's own rules (who may
//! send to relayed members, where relayed members may send) are the [`UdpPolicy`]'s; the
//! switchboard keeps, per member, the sockets it sent to (its *known sources*).
//!
//! **Every close the relay decides carries its reason** ([`CloseReason`], recorded in the queue
//! with [`Outbox::close_with`]; the server writes it into the WebSocket close frame): replaced,
//! shutting down ([`Switchboard::close_all`]), or what the server saw ([`Switchboard::close`]:
//! slow consumer, idle, a message too big, a protocol error). A connection that ended by itself
//! ([`Switchboard::disconnect`]) gets a plain close: there is nobody left to tell. Frames still
//! queued for a closed connection are counted as dropped.
//!
//! **Farewells are accepted once, from the connection's own page.** A member that asks for it at
//! admission gets a random secret in its welcome ([`admit`](Switchboard::admit) takes it from the
//! caller, so that this module stays deterministic; the server draws it from the OS). A farewell
//! ([`Switchboard::farewell`], the body of `POST /farewell`, format in [`shoal_core::relay`])
//! names a peer id and a secret; it is accepted only if that peer id is connected now (or departed
//! lately, below) and its connection holds that secret, unused. The secret is then spent, and each frame is routed
//! exactly as if the connection had sent it ([`route_ws_at`](Switchboard::route_ws_at): same
//! source stamp, same budgets, drops counted the same way). A secret belongs to one connection:
//! when another connection takes the peer id it is void. **A connection that ended by itself keeps
//! its unspent secret for [`FAREWELL_GRACE`]**: a closing tab's worker is killed at once, and its
//! WebSocket's close reaches the relay before the page's farewell, which needs a new HTTP
//! connection. Such departed connections are kept with their source budget in a table bounded by
//! [`MAX_DEPARTED`] (the oldest is forgotten first); a new connection with the peer id, or the
//! relay shutting down, forgets the entry.
//! Refusals are counted by [`FarewellRefusal`]; the client only learns the HTTP status, which is
//! the same `403` for every reason about the peer or its secret.
//!
//! Functions taking `now` are the ones that spend budgets; their twins without it read the clock.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use shoal_core::relay::{
    decode_datagram, decode_farewell, decode_signal_frame, decode_ws_frame, encode_datagram, encode_signal_frame,
    encode_ws_frame, valid_peer_id, Farewell, FarewellError, FarewellSecret, SIGNAL_TAG,
};

use crate::close::CloseReason;
use crate::config::{Limits, RelayConfig};
use crate::link::{self, LinkFrame, MAX_LINK_OVERHEAD};
use crate::metrics::{ConnectionDrop, DropReason, FarewellRefusal, Forwarded, LinkRefusal, LinkStats, RelayStats};
use crate::queue::{Outbox, PushError};
use crate::rate::{Budget, Recent};
use crate::udp_policy::UdpPolicy;

/// Most sockets remembered as one member's known sources.
const KNOWN_SOURCES_PER_MEMBER: usize = 1_024;

/// Identifies one admitted connection (peer ids are reused across reconnects, these are not).
pub type ConnId = u64;

/// Identifies one link to another relay (relay addresses are reused across reconnects, these
/// are not).
pub type LinkId = u64;

/// Most other relays a switchboard keeps links to or counters for (a link from a further address
/// is refused as [`LinkRefusal::TooMany`]).
pub const MAX_LINKED_RELAYS: usize = 256;

/// A link's queue holds this many times a member's (`queue_frames`, `queue_bytes`): it carries
/// the traffic of many members.
pub const LINK_QUEUE_FACTOR: usize = 16;

/// Why an admission was refused. The client's fault; the peer table is unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// The relay requires a token and none was given (HTTP 401).
    MissingToken,
    /// The token does not match (HTTP 403).
    WrongToken,
    /// No peer id, or not 1-64 bytes of `[A-Za-z0-9._-]` (HTTP 400).
    BadPeerId,
    /// The relay is shutting down (HTTP 503). Nobody's fault; try another relay.
    ShuttingDown,
}

/// An admitted connection, as the server holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    peer: Box<str>,
    conn: ConnId,
    addr: Box<str>,
}

impl Session {
    /// The peer id.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// This connection's id.
    pub fn conn(&self) -> ConnId {
        self.conn
    }

    /// The member's address, `relay://<this relay>/<peer>`.
    pub fn addr(&self) -> &str {
        &self.addr
    }
}

/// A link to another relay taken into the routing table, as the server holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkSession {
    id: LinkId,
    relay: Box<str>,
    dialed: bool,
}

impl LinkSession {
    /// This link's id.
    pub fn id(&self) -> LinkId {
        self.id
    }

    /// The other relay's public `host:port`, authenticated by the handshake: the only relay the
    /// link's frames may be stamped under.
    pub fn relay(&self) -> &str {
        &self.relay
    }

    /// Whether this relay dialed the link.
    pub fn dialed(&self) -> bool {
        self.dialed
    }
}

/// What to do with a frame a WebSocket member sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WsRoute {
    /// Queued for another WebSocket member.
    Delivered,
    /// Send `datagram` from the relay's UDP socket to `to`.
    Udp {
        /// The native member's UDP socket.
        to: SocketAddr,
        /// The relay datagram to send, source already stamped.
        datagram: Vec<u8>,
    },
    /// Dropped (already counted).
    Dropped(DropReason),
}

struct Peer {
    conn: ConnId,
    outbox: Arc<Outbox>,
    /// What this member may send.
    source: Budget,
    /// What may be sent to this member.
    destination: Budget,
    /// Sockets this member sent datagrams to: their datagrams to it pass at full rate.
    known: Recent<SocketAddr>,
    /// This connection's farewell secret.
    farewell: FarewellKey,
}

/// A link that is up.
struct Link {
    id: LinkId,
    /// Whether this relay dialed it.
    dialed: bool,
    outbox: Arc<Outbox>,
}

/// Another relay this relay linked to: its link, if up, and counters kept across its links.
#[derive(Default)]
struct Remote {
    link: Option<Link>,
    sent: Forwarded,
    received: Forwarded,
}

/// Where a `relay://` destination lies.
enum RelayDest<'a> {
    /// A peer of this relay.
    Local(&'a str),
    /// A peer of another relay.
    Remote { relay: &'a str, peer: &'a str },
}

/// How long a connection that ended by itself can still send its farewell.
pub const FAREWELL_GRACE: Duration = Duration::from_secs(10);
/// Departed connections kept for their farewell at most (about 100 bytes each).
pub const MAX_DEPARTED: usize = 16_384;

/// A connection that ended by itself with its farewell secret unspent.
struct Departed {
    conn: ConnId,
    secret: FarewellSecret,
    source: Budget,
    until: Instant,
}

/// Where a connection stands with its farewell.
enum FarewellKey {
    /// It did not ask for a secret (or the server could not draw one): its welcome was empty.
    NotAsked,
    /// Its secret, handed out in the welcome and not used yet.
    Armed(FarewellSecret),
    /// Its farewell was accepted; the secret is forgotten.
    Spent,
}

/// The routing state of one relay. See the module documentation.
pub struct Switchboard {
    relay: Box<str>,
    token: Option<Box<[u8]>>,
    max_frame: usize,
    queue_frames: usize,
    queue_bytes: usize,
    limits: Limits,
    udp: UdpPolicy,
    peers: HashMap<Box<str>, Peer>,
    /// Connections that ended by themselves with an unspent farewell secret, for [`FAREWELL_GRACE`].
    departed: HashMap<Box<str>, Departed>,
    /// The departed peer ids, oldest first (with the connection, to skip stale entries).
    departed_order: VecDeque<(Box<str>, ConnId)>,
    next_conn: ConnId,
    /// Other relays linked to now or before, by public address.
    relays: HashMap<Box<str>, Remote>,
    next_link: LinkId,
    stats: RelayStats,
    closing: bool,
}

impl std::fmt::Debug for Switchboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Switchboard")
            .field("relay", &self.relay)
            .field("peers", &self.peers.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// Compares without an early exit, so the time taken does not reveal how much of a guess matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Switchboard {
    /// A switchboard for the relay reached at `relay` (`host:port`, as written into `relay://`
    /// addresses), with the token and limits of `config`.
    pub fn new(relay: &str, config: &RelayConfig) -> Switchboard {
        Switchboard {
            relay: relay.into(),
            token: config.token.as_ref().map(|t| t.as_bytes().into()),
            max_frame: config.max_frame,
            queue_frames: config.queue_frames,
            queue_bytes: config.queue_bytes,
            limits: config.limits,
            udp: UdpPolicy::new(relay, config, Instant::now()),
            peers: HashMap::new(),
            departed: HashMap::new(),
            departed_order: VecDeque::new(),
            next_conn: 1,
            relays: HashMap::new(),
            next_link: 1,
            stats: RelayStats::default(),
            closing: false,
        }
    }

    /// The relay's `host:port` in `relay://` addresses.
    pub fn relay(&self) -> &str {
        &self.relay
    }

    /// Counters so far, and the gauges now (connections, queued frames and bytes, addresses
    /// tracked).
    pub fn stats(&self) -> RelayStats {
        let (mut frames, mut bytes, mut known) = (0, 0, 0);
        for p in self.peers.values() {
            frames += p.outbox.len() as u64;
            bytes += p.outbox.bytes() as u64;
            known += p.known.len() as u64;
        }
        RelayStats {
            links: self.relays.values().filter(|r| r.link.is_some()).count() as u64,
            connections: self.peers.len() as u64,
            queued_frames: frames,
            queued_bytes: bytes,
            udp_tracked: self.udp.tracked() as u64 + known,
            ..self.stats
        }
    }

    /// Counts a `/ws` request refused before admission (not an upgrade, a query that does not parse).
    pub fn record_rejected_request(&mut self) {
        self.stats.rejected_request += 1;
    }

    /// Whether `addr` sent the relay a datagram that passed its policy within `known_ttl`.
    pub fn is_verified(&self, addr: SocketAddr) -> bool {
        self.udp.is_verified(addr, Instant::now())
    }

    /// Whether the member `peer` sent a datagram to `addr` within `known_ttl`.
    pub fn knows(&self, peer: &str, addr: SocketAddr) -> bool {
        self.peers.get(peer).is_some_and(|p| p.known.contains(&addr, Instant::now()))
    }

    /// Members connected now.
    pub fn connections(&self) -> usize {
        self.peers.len()
    }

    /// Whether `peer` is connected.
    pub fn is_connected(&self, peer: &str) -> bool {
        self.peers.contains_key(peer)
    }

    /// Checks a connection request before the WebSocket upgrade: the token (if the relay has
    /// one), then the peer id. Refusals are counted.
    pub fn check_admission(&mut self, peer: Option<&str>, token: Option<&str>) -> Result<(), Refusal> {
        if self.closing {
            return Err(Refusal::ShuttingDown);
        }
        if let Some(expected) = &self.token {
            let refusal = match token {
                None => Some(Refusal::MissingToken),
                Some(t) if !constant_time_eq(t.as_bytes(), expected) => Some(Refusal::WrongToken),
                Some(_) => None,
            };
            if let Some(r) = refusal {
                self.stats.rejected_token += 1;
                return Err(r);
            }
        }
        if !peer.is_some_and(valid_peer_id) {
            self.stats.rejected_peer_id += 1;
            return Err(Refusal::BadPeerId);
        }
        Ok(())
    }

    /// Registers a connection for `peer` (after [`check_admission`](Self::check_admission) and
    /// the upgrade). Its queue starts with the welcome frame: the member's own address and, as
    /// the packet, `farewell` (the connection's farewell secret, for a member that asked for one
    /// with `farewell=1`; the caller draws it from a cryptographic RNG) or nothing. A connection
    /// already holding `peer` is replaced: its queue is closed with [`CloseReason::Replaced`], and
    /// its farewell secret is void.
    pub fn admit(&mut self, peer: &str, farewell: Option<FarewellSecret>) -> Result<(Session, Arc<Outbox>), Refusal> {
        if self.closing {
            return Err(Refusal::ShuttingDown);
        }
        if !valid_peer_id(peer) {
            self.stats.rejected_peer_id += 1;
            return Err(Refusal::BadPeerId);
        }
        let addr = format!("relay://{}/{peer}", self.relay);
        let welcome =
            encode_ws_frame(&addr, farewell.as_ref().map_or(&[][..], |s| &s[..])).ok_or(Refusal::BadPeerId)?;
        let outbox = Arc::new(Outbox::new(self.queue_frames, self.queue_bytes));
        outbox.try_push(Bytes::from(welcome)).expect("a new queue takes one frame");
        let conn = self.next_conn;
        self.next_conn += 1;
        let now = Instant::now();
        let entry = Peer {
            conn,
            outbox: outbox.clone(),
            source: Budget::full(self.limits.source, now),
            destination: Budget::full(self.limits.destination, now),
            known: Recent::new(self.limits.known_ttl, KNOWN_SOURCES_PER_MEMBER),
            farewell: farewell.map_or(FarewellKey::NotAsked, FarewellKey::Armed),
        };
        // The peer id is back: a departed connection's farewell could only contradict it now.
        self.departed.remove(peer);
        if let Some(old) = self.peers.insert(peer.into(), entry) {
            let discarded = old.outbox.close_with(CloseReason::Replaced);
            self.stats.drop_many(DropReason::ConnectionClosed, discarded as u64);
            self.stats.replaced += 1;
        }
        self.stats.accepted += 1;
        Ok((Session { peer: peer.into(), conn, addr: addr.into() }, outbox))
    }

    /// Removes a connection that ended. Returns false (and changes nothing) if the peer id now
    /// belongs to a newer connection or was already removed (slow consumer).
    pub fn disconnect(&mut self, session: &Session) -> bool {
        match self.peers.get(session.peer()) {
            Some(p) if p.conn == session.conn => {
                if let Some(p) = self.peers.remove(session.peer()) {
                    p.outbox.close();
                    self.keep_for_farewell(session.peer(), p, Instant::now());
                }
                true
            }
            _ => false,
        }
    }

    /// Keeps a connection that ended by itself for its farewell, if it holds an unspent secret.
    fn keep_for_farewell(&mut self, peer: &str, p: Peer, now: Instant) {
        let FarewellKey::Armed(secret) = p.farewell else { return };
        while self.departed.len() >= MAX_DEPARTED {
            let Some((oldest, conn)) = self.departed_order.pop_front() else { break };
            if self.departed.get(&oldest).is_some_and(|d| d.conn == conn) {
                self.departed.remove(&oldest);
            }
        }
        self.departed
            .insert(peer.into(), Departed { conn: p.conn, secret, source: p.source, until: now + FAREWELL_GRACE });
        self.departed_order.push_back((peer.into(), p.conn));
        // Stale order entries (a peer id that came back or departed again) are skipped above and
        // trimmed here, so the queue stays within a few times the table.
        if self.departed_order.len() > 2 * MAX_DEPARTED {
            let departed = &self.departed;
            self.departed_order.retain(|(id, conn)| departed.get(id).is_some_and(|d| d.conn == *conn));
        }
    }

    /// Forgets departed connections whose grace ran out.
    fn expire_departed(&mut self, now: Instant) {
        while let Some((id, conn)) = self.departed_order.front() {
            match self.departed.get(id) {
                Some(d) if d.conn == *conn && d.until > now => break,
                Some(d) if d.conn == *conn => {
                    self.departed.remove(id);
                }
                _ => {}
            }
            self.departed_order.pop_front();
        }
    }

    /// Departed connections kept for their farewell now.
    pub fn departed(&self) -> usize {
        self.departed.len()
    }

    /// Closes every connection's and link's queue with [`CloseReason::ShuttingDown`], empties the
    /// tables, and refuses admissions and links from now on. Call it when the relay shuts down.
    pub fn close_all(&mut self) {
        self.closing = true;
        self.departed.clear();
        self.departed_order.clear();
        for (_, p) in self.peers.drain() {
            let discarded = p.outbox.close_with(CloseReason::ShuttingDown);
            self.stats.drop_many(DropReason::ConnectionClosed, discarded as u64);
        }
        for remote in self.relays.values_mut() {
            if let Some(link) = remote.link.take() {
                let discarded = link.outbox.close_with(CloseReason::ShuttingDown);
                self.stats.drop_many(DropReason::LinkClosed, discarded as u64);
            }
        }
    }

    /// Ends `session` for `reason`, which the server saw (a member that stopped reading, sent
    /// nothing for too long, or broke the protocol): closes its queue with the reason, counts the
    /// close and the discarded backlog, and forgets the member if the peer id is still this
    /// connection's. Call it instead of [`disconnect`](Self::disconnect) when the relay ends the
    /// connection.
    pub fn close(&mut self, session: &Session, outbox: &Outbox, reason: CloseReason) {
        let discarded = outbox.close_with(reason) as u64;
        match reason {
            CloseReason::SlowConsumer => {
                self.stats.slow_consumers += 1;
                self.stats.drop_many(DropReason::SlowConsumer, discarded);
            }
            other => {
                let counted = match other {
                    CloseReason::Idle => Some(ConnectionDrop::Idle),
                    CloseReason::MessageTooBig => Some(ConnectionDrop::MessageTooBig),
                    CloseReason::ProtocolError => Some(ConnectionDrop::ProtocolError),
                    _ => None,
                };
                if let Some(c) = counted {
                    self.stats.connection_drop(c);
                }
                self.stats.drop_many(DropReason::ConnectionClosed, discarded);
            }
        }
        if self.peers.get(session.peer()).is_some_and(|p| p.conn == session.conn) {
            self.peers.remove(session.peer());
        }
    }

    /// Counts a drop the server noticed itself (a text message, a failed UDP send).
    pub fn record_drop(&mut self, reason: DropReason) {
        self.stats.drop(reason);
    }

    /// Counts `n` drops the server noticed itself (a link's backlog when its socket failed).
    pub fn record_drops(&mut self, reason: DropReason, n: u64) {
        self.stats.drop_many(reason, n);
    }

    /// Counts a connection the server refused or closed outside the routing (caps, timeouts).
    pub fn record_connection_drop(&mut self, reason: ConnectionDrop) {
        self.stats.connection_drop(reason);
    }

    fn dropped(&mut self, reason: DropReason) -> DropReason {
        self.stats.drop(reason);
        reason
    }

    /// Queues `frame` for `peer` if its destination budget allows and its queue has room;
    /// otherwise drops it (counted). Never disconnects anyone.
    fn deliver(&mut self, peer: &str, frame: Vec<u8>, now: Instant) -> Result<(), DropReason> {
        let limit = self.limits.destination;
        let Some(p) = self.peers.get_mut(peer) else {
            return Err(self.dropped(DropReason::UnknownDestination));
        };
        if !p.destination.take(limit, frame.len(), now) {
            return Err(self.dropped(DropReason::DestinationRate));
        }
        match p.outbox.try_push(Bytes::from(frame)) {
            Ok(()) => Ok(()),
            Err(PushError::Full) => Err(self.dropped(DropReason::QueueFull)),
            Err(PushError::Closed) => {
                self.peers.remove(peer);
                Err(self.dropped(DropReason::UnknownDestination))
            }
        }
    }

    /// Spends one frame of `len` bytes from `from`'s source budget.
    fn charge_source(&mut self, from: &Session, len: usize, now: Instant) -> Result<(), DropReason> {
        let limit = self.limits.source;
        match self.peers.get_mut(from.peer()) {
            Some(p) if p.conn == from.conn => {
                if p.source.take(limit, len, now) {
                    Ok(())
                } else {
                    Err(self.dropped(DropReason::SourceRate))
                }
            }
            // A departed connection's farewell: its own budget, kept with it.
            None if self.departed.get(from.peer()).is_some_and(|d| d.conn == from.conn) => {
                let d = self.departed.get_mut(from.peer()).expect("checked above");
                if d.source.take(limit, len, now) {
                    Ok(())
                } else {
                    Err(self.dropped(DropReason::SourceRate))
                }
            }
            // Replaced or closed: its reader is about to stop.
            _ => Err(self.dropped(DropReason::ConnectionClosed)),
        }
    }

    /// Routes a binary WebSocket message from `from`: `[len][destination][packet]`.
    pub fn route_ws(&mut self, from: &Session, frame: &[u8]) -> WsRoute {
        self.route_ws_at(from, frame, Instant::now())
    }

    /// [`route_ws`](Self::route_ws) at `now`.
    pub fn route_ws_at(&mut self, from: &Session, frame: &[u8], now: Instant) -> WsRoute {
        if frame.len() > self.max_frame {
            return WsRoute::Dropped(self.dropped(DropReason::Oversized));
        }
        if let Err(reason) = self.charge_source(from, frame.len(), now) {
            return WsRoute::Dropped(reason);
        }
        if frame.first() == Some(&SIGNAL_TAG) {
            return self.route_signal(from, frame, now);
        }
        let Ok((dest, packet)) = decode_ws_frame(frame) else {
            return WsRoute::Dropped(self.dropped(DropReason::Malformed));
        };
        if let Some(rest) = dest.strip_prefix("relay://") {
            let peer = match self.relay_dest(rest) {
                Ok(RelayDest::Local(peer)) => peer,
                Ok(RelayDest::Remote { relay, peer }) => {
                    return self.forward(relay, || link::encode_packet(from.addr(), peer, packet));
                }
                Err(reason) => return WsRoute::Dropped(self.dropped(reason)),
            };
            let Some(out) = encode_ws_frame(from.addr(), packet) else {
                return WsRoute::Dropped(self.dropped(DropReason::Malformed));
            };
            let len = out.len();
            return match self.deliver(peer, out, now) {
                Ok(()) => {
                    self.stats.ws_to_ws.add(len);
                    WsRoute::Delivered
                }
                Err(reason) => WsRoute::Dropped(reason),
            };
        }
        if let Some(rest) = dest.strip_prefix("udp://") {
            let Ok(to) = rest.parse::<SocketAddr>() else {
                return WsRoute::Dropped(self.dropped(DropReason::Malformed));
            };
            let Some(datagram) = encode_datagram(from.addr(), packet) else {
                return WsRoute::Dropped(self.dropped(DropReason::Malformed));
            };
            let allowed = self.udp.permitted_target(to).and_then(|()| self.udp.outbound(to, datagram.len(), now));
            if let Err(reason) = allowed {
                return WsRoute::Dropped(self.dropped(reason));
            }
            if let Some(p) = self.peers.get_mut(from.peer()) {
                // Its answers are welcome now. A full table only costs them the full rate.
                p.known.note(to, now);
            }
            self.stats.ws_to_udp.add(datagram.len());
            return WsRoute::Udp { to, datagram };
        }
        WsRoute::Dropped(self.dropped(DropReason::UnknownDestination))
    }

    /// Where `<relay>/<peer>` (a `relay://` address without its scheme) lies.
    fn relay_dest<'a>(&self, rest: &'a str) -> Result<RelayDest<'a>, DropReason> {
        let (relay, peer) = rest.rsplit_once('/').ok_or(DropReason::Malformed)?;
        if !valid_peer_id(peer) {
            return Err(DropReason::UnknownDestination);
        }
        if relay == &*self.relay {
            Ok(RelayDest::Local(peer))
        } else {
            Ok(RelayDest::Remote { relay, peer })
        }
    }

    /// Queues a link frame (made by `encode`, only once a link is found) for the link to `relay`.
    /// Never waits: a full link queue drops the frame (counted) and the link stays.
    fn forward(&mut self, relay: &str, encode: impl FnOnce() -> Option<Vec<u8>>) -> WsRoute {
        let Some(remote) = self.relays.get_mut(relay) else {
            return WsRoute::Dropped(self.dropped(DropReason::UnknownDestination));
        };
        let Some(link) = &remote.link else {
            return WsRoute::Dropped(self.dropped(DropReason::LinkDown));
        };
        let Some(frame) = encode() else {
            return WsRoute::Dropped(self.dropped(DropReason::Malformed));
        };
        let len = frame.len();
        match link.outbox.try_push(Bytes::from(frame)) {
            Ok(()) => {
                remote.sent.add(len);
                self.stats.link_out.add(len);
                WsRoute::Delivered
            }
            Err(PushError::Full) => WsRoute::Dropped(self.dropped(DropReason::LinkQueueFull)),
            Err(PushError::Closed) => {
                // Its reader is about to report it down.
                remote.link = None;
                WsRoute::Dropped(self.dropped(DropReason::LinkDown))
            }
        }
    }

    /// Routes a signalling frame from `from`: `[0][len][relay://<this relay>/Q][kind][body]`.
    fn route_signal(&mut self, from: &Session, frame: &[u8], now: Instant) -> WsRoute {
        let Ok((dest, kind, body)) = decode_signal_frame(frame) else {
            return WsRoute::Dropped(self.dropped(DropReason::Malformed));
        };
        let dest = dest.strip_prefix("relay://").ok_or(DropReason::UnknownDestination);
        let peer = match dest.and_then(|rest| self.relay_dest(rest)) {
            Ok(RelayDest::Local(peer)) => peer,
            Ok(RelayDest::Remote { relay, peer }) => {
                return self.forward(relay, || link::encode_signal(from.addr(), peer, kind, body));
            }
            Err(reason) => return WsRoute::Dropped(self.dropped(reason)),
        };
        let Some(out) = encode_signal_frame(from.addr(), kind, body) else {
            return WsRoute::Dropped(self.dropped(DropReason::Malformed));
        };
        let len = out.len();
        match self.deliver(peer, out, now) {
            Ok(()) => {
                self.stats.signals.add(len);
                WsRoute::Delivered
            }
            Err(reason) => WsRoute::Dropped(reason),
        }
    }

    /// Forwards a farewell, the body of `POST /farewell`: `[peer_len][peer][secret]` then
    /// `[frame_len: u16][frame]`s (see [`shoal_core::relay`]). Call it once per request, with the
    /// whole body. It is accepted only if it decodes, the relay is not shutting down, the peer is
    /// connected now (or its connection ended by itself within [`FAREWELL_GRACE`]) and its
    /// connection holds this secret, unused; the secret is then spent and
    /// each frame is routed as [`route_ws_at`](Self::route_ws_at) routes a frame from that
    /// connection. Returns the frames' routes, in order: send each [`WsRoute::Udp`] from the
    /// relay's UDP socket, as for a member's frames. Frames the routing drops are counted as
    /// drops, not as a refusal. A refusal changes nothing but its counter.
    pub fn farewell(&mut self, body: &[u8]) -> Result<Vec<WsRoute>, FarewellRefusal> {
        self.farewell_at(body, Instant::now())
    }

    /// [`farewell`](Self::farewell) at `now`.
    pub fn farewell_at(&mut self, body: &[u8], now: Instant) -> Result<Vec<WsRoute>, FarewellRefusal> {
        let (session, farewell, departed) = match self.accept_farewell(body, now) {
            Ok(accepted) => accepted,
            Err(reason) => {
                self.stats.farewell_refused(reason);
                return Err(reason);
            }
        };
        self.stats.farewells_accepted += 1;
        let routes = farewell.frames().map(|frame| self.route_ws_at(&session, frame, now)).collect();
        if departed {
            // Spent; its order entry is skipped as stale.
            self.departed.remove(session.peer());
        }
        Ok(routes)
    }

    /// Counts a farewell the server refused before it reached [`farewell`](Self::farewell) (a
    /// body over the size limit, a body that could not be read).
    pub fn record_farewell_refusal(&mut self, reason: FarewellRefusal) {
        self.stats.farewell_refused(reason);
    }

    /// Checks a farewell and spends its secret: the session of the connection it speaks for, and
    /// whether that connection had departed (its kept entry is dropped once the frames are routed).
    fn accept_farewell<'b>(
        &mut self,
        body: &'b [u8],
        now: Instant,
    ) -> Result<(Session, Farewell<'b>, bool), FarewellRefusal> {
        if self.closing {
            return Err(FarewellRefusal::ShuttingDown);
        }
        let farewell = decode_farewell(body).map_err(|e| match e {
            FarewellError::TooLarge | FarewellError::TooManyFrames => FarewellRefusal::TooLarge,
            _ => FarewellRefusal::Malformed,
        })?;
        self.expire_departed(now);
        let (conn, departed) = if let Some(d) = self.departed.get(farewell.peer()) {
            if !constant_time_eq(&d.secret, farewell.secret()) {
                return Err(FarewellRefusal::WrongSecret);
            }
            (d.conn, true)
        } else {
            let peer = self.peers.get_mut(farewell.peer()).ok_or(FarewellRefusal::UnknownPeer)?;
            match &peer.farewell {
                FarewellKey::NotAsked => return Err(FarewellRefusal::NoSecret),
                FarewellKey::Spent => return Err(FarewellRefusal::AlreadyUsed),
                FarewellKey::Armed(secret) if !constant_time_eq(secret, farewell.secret()) => {
                    return Err(FarewellRefusal::WrongSecret)
                }
                FarewellKey::Armed(_) => peer.farewell = FarewellKey::Spent,
            }
            (peer.conn, false)
        };
        let session = Session {
            peer: farewell.peer().into(),
            conn,
            addr: format!("relay://{}/{}", self.relay, farewell.peer()).into(),
        };
        Ok((session, farewell, departed))
    }

    /// Takes an authenticated link to the relay whose public address is `relay` into the routing
    /// table; `dialed` says whether this relay dialed it. From now on frames for `relay://<relay>/Q`
    /// go into the returned queue (the server writes it to the link), and the link's frames may be
    /// stamped under `relay` only.
    ///
    /// **One link per pair of relays.** If a link to `relay` is up already, the newer link wins
    /// when both were dialed by the same relay (the old one is stale: that relay redialed), and
    /// otherwise the link dialed by the relay with the lower address (byte order) wins. Both relays
    /// apply the same rule, so when each dials the other they keep the same link whatever the
    /// timing. The losing link is refused ([`LinkRefusal::Duplicate`]) or, if it was the one up,
    /// closed with [`CloseReason::LinkSuperseded`] (its backlog counted as
    /// [`DropReason::LinkClosed`]). Every refusal is counted.
    pub fn link_up(&mut self, relay: &str, dialed: bool) -> Result<(LinkSession, Arc<Outbox>), LinkRefusal> {
        let refused = match () {
            () if self.closing => Some(LinkRefusal::ShuttingDown),
            () if relay == &*self.relay => Some(LinkRefusal::OwnAddress),
            () if !self.relays.contains_key(relay) && self.relays.len() >= MAX_LINKED_RELAYS => {
                Some(LinkRefusal::TooMany)
            }
            () => match self.relays.get(relay).and_then(|r| r.link.as_ref()) {
                Some(old) if !self.new_link_wins(relay, dialed, old.dialed) => Some(LinkRefusal::Duplicate),
                _ => None,
            },
        };
        if let Some(reason) = refused {
            self.stats.link_refusal(reason);
            return Err(reason);
        }
        let outbox = Arc::new(Outbox::new(
            self.queue_frames.saturating_mul(LINK_QUEUE_FACTOR),
            self.queue_bytes.saturating_mul(LINK_QUEUE_FACTOR),
        ));
        let id = self.next_link;
        self.next_link += 1;
        let remote = self.relays.entry(relay.into()).or_default();
        if let Some(old) = remote.link.replace(Link { id, dialed, outbox: outbox.clone() }) {
            let discarded = old.outbox.close_with(CloseReason::LinkSuperseded);
            self.stats.drop_many(DropReason::LinkClosed, discarded as u64);
            self.stats.link_refusal(LinkRefusal::Duplicate);
        }
        self.stats.links_established += 1;
        Ok((LinkSession { id, relay: relay.into(), dialed }, outbox))
    }

    /// Whether a new link to `relay` wins over the one up (see [`link_up`](Self::link_up)).
    fn new_link_wins(&self, relay: &str, new_dialed: bool, old_dialed: bool) -> bool {
        let dialer = |dialed: bool| if dialed { &*self.relay } else { relay };
        dialer(new_dialed) == dialer(old_dialed) || dialer(new_dialed) == (&*self.relay).min(relay)
    }

    /// Whether a link to the relay whose public address is `relay` is up.
    pub fn has_link(&self, relay: &str) -> bool {
        self.relays.get(relay).is_some_and(|r| r.link.is_some())
    }

    /// Removes a link that ended (by itself, or closed by [`close_link`](Self::close_link)):
    /// closes its queue (the backlog is counted as [`DropReason::LinkClosed`]). From now on frames
    /// for the relay are dropped as [`DropReason::LinkDown`]. Returns false (and changes nothing
    /// but the queue) if the link was no longer the relay's (replaced, or removed already).
    pub fn link_down(&mut self, link: &LinkSession) -> bool {
        let Some(remote) = self.relays.get_mut(link.relay()) else { return false };
        match remote.link.take_if(|l| l.id == link.id) {
            Some(l) => {
                let discarded = l.outbox.close();
                self.stats.drop_many(DropReason::LinkClosed, discarded as u64);
                true
            }
            None => false,
        }
    }

    /// Ends `link` for `reason`, which the server saw (the other relay stopped reading, sent
    /// nothing for too long, broke the protocol): closes its queue with the reason, counts the
    /// backlog, and removes it if it is still the relay's link.
    pub fn close_link(&mut self, link: &LinkSession, outbox: &Outbox, reason: CloseReason) {
        let discarded = outbox.close_with(reason);
        self.stats.drop_many(DropReason::LinkClosed, discarded as u64);
        self.link_down(link);
    }

    /// The relays linked to now or before, with their counters, by address.
    pub fn links(&self) -> Vec<LinkStats> {
        let mut links: Vec<LinkStats> = self
            .relays
            .iter()
            .map(|(relay, r)| LinkStats {
                relay: relay.to_string(),
                up: r.link.is_some(),
                dialed: r.link.as_ref().is_some_and(|l| l.dialed),
                sent: r.sent,
                received: r.received,
                queued_frames: r.link.as_ref().map_or(0, |l| l.outbox.len() as u64),
                queued_bytes: r.link.as_ref().map_or(0, |l| l.outbox.bytes() as u64),
            })
            .collect();
        links.sort_by(|a, b| a.relay.cmp(&b.relay));
        links
    }

    /// Counts a link the server refused outside the routing table (the request's gate, the
    /// handshake).
    pub fn record_link_refusal(&mut self, reason: LinkRefusal) {
        self.stats.link_refusal(reason);
    }

    /// Counts an attempt to dial a peer relay that did not end in a link.
    pub fn record_link_dial_failure(&mut self) {
        self.stats.link_dial_failures += 1;
    }

    /// Routes a binary message that arrived over `from`: a packet or signal for a member of this
    /// relay, stamped by the other relay. Delivered with the source as stamped if the stamp is
    /// `relay://<the link's relay>/<peer id>`, the destination is connected, and the destination's
    /// budget and queue allow; otherwise dropped and counted ([`DropReason::Oversized`],
    /// [`LinkMalformed`](DropReason::LinkMalformed), [`BadStamp`](DropReason::BadStamp),
    /// [`UnknownDestination`](DropReason::UnknownDestination),
    /// [`DestinationRate`](DropReason::DestinationRate), [`QueueFull`](DropReason::QueueFull)).
    /// Nothing from a link is sent on to a third relay or to a UDP socket.
    pub fn route_link(&mut self, from: &LinkSession, frame: &[u8]) -> Result<(), DropReason> {
        self.route_link_at(from, frame, Instant::now())
    }

    /// [`route_link`](Self::route_link) at `now`.
    pub fn route_link_at(&mut self, from: &LinkSession, frame: &[u8], now: Instant) -> Result<(), DropReason> {
        if frame.len() > self.max_frame.saturating_add(MAX_LINK_OVERHEAD) {
            return Err(self.dropped(DropReason::Oversized));
        }
        let Ok(decoded) = link::decode_frame(frame) else {
            return Err(self.dropped(DropReason::LinkMalformed));
        };
        let (source, peer, out) = match decoded {
            LinkFrame::Packet { source, peer, packet } => (source, peer, encode_ws_frame(source, packet)),
            LinkFrame::Signal { source, peer, kind, body } => (source, peer, encode_signal_frame(source, kind, body)),
        };
        let stamped_by_link = source
            .strip_prefix("relay://")
            .and_then(|rest| rest.rsplit_once('/'))
            .is_some_and(|(relay, p)| relay == from.relay() && valid_peer_id(p));
        if !stamped_by_link {
            return Err(self.dropped(DropReason::BadStamp));
        }
        let Some(out) = out else {
            return Err(self.dropped(DropReason::LinkMalformed));
        };
        let len = out.len();
        self.deliver(peer, out, now)?;
        self.stats.link_in.add(len);
        if let Some(remote) = self.relays.get_mut(from.relay()) {
            remote.received.add(len);
        }
        Ok(())
    }

    /// Routes a datagram that arrived on the relay's UDP port from `from`:
    /// `[0xF0][len][destination peer id][packet]`.
    pub fn route_udp(&mut self, from: SocketAddr, datagram: &[u8]) -> Result<(), DropReason> {
        self.route_udp_at(from, datagram, Instant::now())
    }

    /// [`route_udp`](Self::route_udp) at `now`.
    pub fn route_udp_at(&mut self, from: SocketAddr, datagram: &[u8], now: Instant) -> Result<(), DropReason> {
        if datagram.len() > self.max_frame {
            return Err(self.dropped(DropReason::Oversized));
        }
        let Ok((peer, packet)) = decode_datagram(datagram) else {
            return Err(self.dropped(DropReason::Malformed));
        };
        if !valid_peer_id(peer) {
            return Err(self.dropped(DropReason::Malformed));
        }
        let Some(known) = self.peers.get(peer).map(|p| p.known.contains(&from, now)) else {
            return Err(self.dropped(DropReason::UnknownDestination));
        };
        if let Err(reason) = self.udp.inbound(from, known, datagram.len(), now) {
            return Err(self.dropped(reason));
        }
        let source = format!("udp://{from}");
        let Some(out) = encode_ws_frame(&source, packet) else {
            return Err(self.dropped(DropReason::Malformed));
        };
        let len = out.len();
        self.deliver(peer, out, now)?;
        self.stats.udp_to_ws.add(len);
        Ok(())
    }
}

#[cfg(test)]
#[path = "switchboard_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "switchboard_link_tests.rs"]
mod link_tests;
