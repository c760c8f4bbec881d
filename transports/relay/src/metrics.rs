//! [`RelayStats`]: the relay's counters, and their Prometheus text rendering for `/metrics`.

use std::fmt::Write;

/// Why the relay dropped a frame or datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DropReason {
    /// Larger than `max_frame`.
    Oversized,
    /// Not a relay frame: truncated, bad address text, a datagram without the marker, an invalid
    /// destination peer id.
    Malformed,
    /// The destination is not a connected peer of this relay (or not a `relay://` address of this
    /// relay nor a `udp://ip:port` address).
    UnknownDestination,
    /// A WebSocket text message (the relay speaks binary messages only).
    NotBinary,
    /// Waiting for a member closed as a slow consumer: its backlog, discarded.
    SlowConsumer,
    /// The relay's UDP socket refused the datagram.
    UdpSend,
    /// The destination member's queue was full (it is not draining as fast as frames arrive). The
    /// member stays connected.
    QueueFull,
    /// The sender (a WebSocket member or a UDP source socket) is over its rate limit.
    SourceRate,
    /// The receiver (a WebSocket member or a UDP target) is over its rate limit.
    DestinationRate,
    /// A datagram from a source the destination member does not know, over the strangers' rate.
    UnknownSource,
    /// A datagram to a target that never sent the relay one, over the unverified targets' rate.
    UnverifiedTarget,
    /// A datagram to an address the relay never sends to: loopback, unspecified, multicast,
    /// broadcast, or outside `udp_allow` when `udp_allow_only` is set.
    ForbiddenTarget,
    /// A datagram from outside `udp_allow` when `udp_allow_only` is set.
    ForbiddenSource,
    /// Waiting for a member whose connection closed for another reason (replaced, idle, shutting
    /// down): its backlog, discarded.
    ConnectionClosed,
    /// For a member of another relay this relay was linked to, while no link to it is up.
    LinkDown,
    /// For a member of a linked relay, and the link's queue was full (the link is slower than
    /// the traffic for it). The link stays up.
    LinkQueueFull,
    /// Waiting in a link's queue when the link closed (dropped, replaced, stalled, shutting down):
    /// its backlog, discarded.
    LinkClosed,
    /// From a link, with a source not under the linked relay's authenticated address.
    BadStamp,
    /// From a link, not a link frame: truncated, an unknown tag, an invalid peer id, a text
    /// message.
    LinkMalformed,
}

/// How many [`DropReason`]s there are.
pub const DROP_REASONS: usize = 19;

impl DropReason {
    /// Every reason, in the order of [`RelayStats::dropped`].
    pub const ALL: [DropReason; DROP_REASONS] = [
        DropReason::Oversized,
        DropReason::Malformed,
        DropReason::UnknownDestination,
        DropReason::NotBinary,
        DropReason::SlowConsumer,
        DropReason::UdpSend,
        DropReason::QueueFull,
        DropReason::SourceRate,
        DropReason::DestinationRate,
        DropReason::UnknownSource,
        DropReason::UnverifiedTarget,
        DropReason::ForbiddenTarget,
        DropReason::ForbiddenSource,
        DropReason::ConnectionClosed,
        DropReason::LinkDown,
        DropReason::LinkQueueFull,
        DropReason::LinkClosed,
        DropReason::BadStamp,
        DropReason::LinkMalformed,
    ];

    /// The `reason` label in metrics.
    pub fn label(self) -> &'static str {
        match self {
            DropReason::Oversized => "oversized",
            DropReason::Malformed => "malformed",
            DropReason::UnknownDestination => "unknown_destination",
            DropReason::NotBinary => "not_binary",
            DropReason::SlowConsumer => "slow_consumer",
            DropReason::UdpSend => "udp_send",
            DropReason::QueueFull => "queue_full",
            DropReason::SourceRate => "source_rate",
            DropReason::DestinationRate => "destination_rate",
            DropReason::UnknownSource => "unknown_source",
            DropReason::UnverifiedTarget => "unverified_target",
            DropReason::ForbiddenTarget => "forbidden_target",
            DropReason::ForbiddenSource => "forbidden_source",
            DropReason::ConnectionClosed => "connection_closed",
            DropReason::LinkDown => "link_down",
            DropReason::LinkQueueFull => "link_queue_full",
            DropReason::LinkClosed => "link_closed",
            DropReason::BadStamp => "bad_stamp",
            DropReason::LinkMalformed => "link_malformed",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Why the relay refused or closed a connection before or outside the WebSocket protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConnectionDrop {
    /// Refused at accept: the client's IP already has `max_connections_per_ip` connections.
    PerIpCap,
    /// Refused at accept: the relay already has `max_connections` connections.
    TotalCap,
    /// Closed: no complete HTTP request head within `header_timeout`.
    HeaderTimeout,
    /// Closed: the HTTP connection failed otherwise (malformed request, reset).
    HttpError,
    /// The OS refused to accept a connection (out of file descriptors, ...).
    AcceptError,
    /// A WebSocket closed for sending nothing, not even a pong, for `idle_timeout`.
    Idle,
    /// A WebSocket closed for a message over four times `max_frame`.
    MessageTooBig,
    /// A WebSocket closed for breaking the protocol.
    ProtocolError,
}

/// How many [`ConnectionDrop`]s there are.
pub const CONNECTION_DROPS: usize = 8;

impl ConnectionDrop {
    /// Every reason, in the order of [`RelayStats::connection_drops`].
    pub const ALL: [ConnectionDrop; CONNECTION_DROPS] = [
        ConnectionDrop::PerIpCap,
        ConnectionDrop::TotalCap,
        ConnectionDrop::HeaderTimeout,
        ConnectionDrop::HttpError,
        ConnectionDrop::AcceptError,
        ConnectionDrop::Idle,
        ConnectionDrop::MessageTooBig,
        ConnectionDrop::ProtocolError,
    ];

    /// The `reason` label in metrics.
    pub fn label(self) -> &'static str {
        match self {
            ConnectionDrop::PerIpCap => "per_ip_cap",
            ConnectionDrop::TotalCap => "total_cap",
            ConnectionDrop::HeaderTimeout => "header_timeout",
            ConnectionDrop::HttpError => "http_error",
            ConnectionDrop::AcceptError => "accept_error",
            ConnectionDrop::Idle => "idle",
            ConnectionDrop::MessageTooBig => "message_too_big",
            ConnectionDrop::ProtocolError => "protocol_error",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Why the relay refused a `POST /farewell` (see [`shoal_core::relay`]). Nothing was forwarded
/// and the connection's secret, if any, is unchanged. The answer tells the client only the HTTP
/// status ([`status`](Self::status)): every refusal about the secret is the same `403`, so
/// nobody learns from it whether a peer is connected or asked for a secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FarewellRefusal {
    /// The body does not decode: truncated, an invalid peer id, an empty, signalling or malformed
    /// frame (`400`).
    Malformed,
    /// Over `MAX_FAREWELL_BODY` bytes or `MAX_FAREWELL_FRAMES` frames (`413`).
    TooLarge,
    /// No connection holds the peer id now (`403`).
    UnknownPeer,
    /// The peer's connection did not ask for a secret (`farewell=1`) (`403`).
    NoSecret,
    /// The secret is not the one of the peer's current connection (`403`).
    WrongSecret,
    /// The connection's secret was used already: a farewell is accepted once (`403`).
    AlreadyUsed,
    /// The relay is shutting down (`503`).
    ShuttingDown,
}

/// How many [`FarewellRefusal`]s there are.
pub const FAREWELL_REFUSALS: usize = 7;

impl FarewellRefusal {
    /// Every reason, in the order of [`RelayStats::farewells_refused`].
    pub const ALL: [FarewellRefusal; FAREWELL_REFUSALS] = [
        FarewellRefusal::Malformed,
        FarewellRefusal::TooLarge,
        FarewellRefusal::UnknownPeer,
        FarewellRefusal::NoSecret,
        FarewellRefusal::WrongSecret,
        FarewellRefusal::AlreadyUsed,
        FarewellRefusal::ShuttingDown,
    ];

    /// The `reason` label in metrics.
    pub fn label(self) -> &'static str {
        match self {
            FarewellRefusal::Malformed => "malformed",
            FarewellRefusal::TooLarge => "too_large",
            FarewellRefusal::UnknownPeer => "unknown_peer",
            FarewellRefusal::NoSecret => "no_secret",
            FarewellRefusal::WrongSecret => "wrong_secret",
            FarewellRefusal::AlreadyUsed => "already_used",
            FarewellRefusal::ShuttingDown => "shutting_down",
        }
    }

    /// The HTTP status the relay answers with: 400, 413, 403 (every reason about the peer or
    /// its secret) or 503.
    pub fn status(self) -> u16 {
        match self {
            FarewellRefusal::Malformed => 400,
            FarewellRefusal::TooLarge => 413,
            FarewellRefusal::UnknownPeer
            | FarewellRefusal::NoSecret
            | FarewellRefusal::WrongSecret
            | FarewellRefusal::AlreadyUsed => 403,
            FarewellRefusal::ShuttingDown => 503,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Why the relay refused a link with another relay, or ended one after its handshake. Counted on
/// the side that refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LinkRefusal {
    /// `GET /relay-link` without a well-formed link header, or not a WebSocket upgrade (`400`).
    BadRequest,
    /// The request's gate does not match this relay's key (`403`).
    WrongKey,
    /// The other side claims this relay's own public address (`403`, or the dialer gives up).
    OwnAddress,
    /// The handshake failed after the upgrade: a wrong answer to this relay's nonce (no key, or a
    /// replay), a malformed or missing message, or no answer in time.
    Handshake,
    /// A link between the two relays is up already and wins (see the switchboard).
    Duplicate,
    /// This relay has links to, or has counters for, as many relay addresses as it keeps.
    TooMany,
    /// This relay is shutting down (`503`).
    ShuttingDown,
}

/// How many [`LinkRefusal`]s there are.
pub const LINK_REFUSALS: usize = 7;

impl LinkRefusal {
    /// Every reason, in the order of [`RelayStats::link_refused`].
    pub const ALL: [LinkRefusal; LINK_REFUSALS] = [
        LinkRefusal::BadRequest,
        LinkRefusal::WrongKey,
        LinkRefusal::OwnAddress,
        LinkRefusal::Handshake,
        LinkRefusal::Duplicate,
        LinkRefusal::TooMany,
        LinkRefusal::ShuttingDown,
    ];

    /// The `reason` label in metrics.
    pub fn label(self) -> &'static str {
        match self {
            LinkRefusal::BadRequest => "bad_request",
            LinkRefusal::WrongKey => "wrong_key",
            LinkRefusal::OwnAddress => "own_address",
            LinkRefusal::Handshake => "handshake",
            LinkRefusal::Duplicate => "duplicate",
            LinkRefusal::TooMany => "too_many",
            LinkRefusal::ShuttingDown => "shutting_down",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One relay this relay is, or was, linked to: [`RelayHandle::links`](crate::RelayHandle::links).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LinkStats {
    /// The other relay's public `host:port`, authenticated by the handshake.
    pub relay: String,
    /// Whether a link to it is up now.
    pub up: bool,
    /// Whether this relay dialed the link that is up (false when none is).
    pub dialed: bool,
    /// Frames queued for it, since this relay first linked to it (counted when queued).
    pub sent: Forwarded,
    /// Frames from it delivered to this relay's members.
    pub received: Forwarded,
    /// Frames waiting in the link's queue now.
    pub queued_frames: u64,
    /// Bytes waiting in the link's queue now.
    pub queued_bytes: u64,
}

/// Frames and bytes forwarded along one path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Forwarded {
    /// Frames (or datagrams) forwarded.
    pub frames: u64,
    /// Bytes as sent on (WebSocket frame or UDP datagram, relay header included).
    pub bytes: u64,
}

impl Forwarded {
    pub(crate) fn add(&mut self, bytes: usize) {
        self.frames += 1;
        self.bytes += bytes as u64;
    }
}

/// Counters of a relay since it was bound, and the connection gauge.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RelayStats {
    /// WebSocket members connected now.
    pub connections: u64,
    /// WebSocket members admitted since start.
    pub accepted: u64,
    /// Connections closed because a newer connection took over their peer id.
    pub replaced: u64,
    /// Admissions refused for a missing or wrong token.
    pub rejected_token: u64,
    /// Admissions refused for a missing or invalid peer id.
    pub rejected_peer_id: u64,
    /// `/ws` requests answered 400 before admission: not a WebSocket upgrade, or a query string
    /// that does not parse.
    pub rejected_request: u64,
    /// TCP connections (HTTP and WebSocket) open now.
    pub tcp_connections: u64,
    /// Frames waiting in members' queues now, all members together.
    pub queued_frames: u64,
    /// Bytes waiting in members' queues now, all members together.
    pub queued_bytes: u64,
    /// Addresses the UDP policy tracks now (budgets, verified targets, known sources): its memory.
    pub udp_tracked: u64,
    /// WebSocket member to WebSocket member.
    pub ws_to_ws: Forwarded,
    /// WebSocket member to a native member's UDP socket (handed to the relay's socket).
    pub ws_to_udp: Forwarded,
    /// Native member's UDP datagram to a WebSocket member.
    pub udp_to_ws: Forwarded,
    /// WebRTC signalling frames between two WebSocket members.
    pub signals: Forwarded,
    /// Frames dropped, indexed like [`DropReason::ALL`].
    pub dropped: [u64; DROP_REASONS],
    /// Members disconnected because they stopped reading (nothing taken from a queue with frames
    /// waiting for `stall_timeout`).
    pub slow_consumers: u64,
    /// Connections refused or closed outside the routing, indexed like [`ConnectionDrop::ALL`].
    pub connection_drops: [u64; CONNECTION_DROPS],
    /// `POST /farewell` bodies accepted (their frames were then routed, and counted, like a
    /// member's frames).
    pub farewells_accepted: u64,
    /// `POST /farewell` bodies refused, indexed like [`FarewellRefusal::ALL`].
    pub farewells_refused: [u64; FAREWELL_REFUSALS],
    /// Links to other relays up now.
    pub links: u64,
    /// Links that completed their handshake and were taken into the routing table.
    pub links_established: u64,
    /// Frames and signals from this relay's members queued for a linked relay.
    pub link_out: Forwarded,
    /// Frames and signals from linked relays delivered to this relay's members.
    pub link_in: Forwarded,
    /// Links refused or ended by this relay, indexed like [`LinkRefusal::ALL`].
    pub link_refused: [u64; LINK_REFUSALS],
    /// Attempts of this relay to dial a peer relay that did not end in a link (unreachable,
    /// refused, a failed handshake).
    pub link_dial_failures: u64,
}

impl RelayStats {
    /// Frames dropped for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped[reason.index()]
    }

    pub(crate) fn drop(&mut self, reason: DropReason) {
        self.drop_many(reason, 1);
    }

    pub(crate) fn drop_many(&mut self, reason: DropReason, n: u64) {
        self.dropped[reason.index()] += n;
    }

    /// Connections refused or closed for `reason`.
    pub fn connection_drops(&self, reason: ConnectionDrop) -> u64 {
        self.connection_drops[reason.index()]
    }

    pub(crate) fn connection_drop(&mut self, reason: ConnectionDrop) {
        self.connection_drops[reason.index()] += 1;
    }

    /// Farewells refused for `reason`.
    pub fn farewells_refused(&self, reason: FarewellRefusal) -> u64 {
        self.farewells_refused[reason.index()]
    }

    pub(crate) fn farewell_refused(&mut self, reason: FarewellRefusal) {
        self.farewells_refused[reason.index()] += 1;
    }

    /// Links refused or ended for `reason`.
    pub fn link_refused(&self, reason: LinkRefusal) -> u64 {
        self.link_refused[reason.index()]
    }

    pub(crate) fn link_refusal(&mut self, reason: LinkRefusal) {
        self.link_refused[reason.index()] += 1;
    }

    /// Frames and datagrams dropped, every reason together.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().sum()
    }

    /// Frames forwarded on every path.
    pub fn forwarded_frames(&self) -> u64 {
        self.ws_to_ws.frames
            + self.ws_to_udp.frames
            + self.udp_to_ws.frames
            + self.signals.frames
            + self.link_out.frames
            + self.link_in.frames
    }

    /// The Prometheus text exposition format (version 0.0.4).
    pub fn to_prometheus(&self) -> String {
        let mut out = String::with_capacity(2_048);
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        metric("shoal_relay_connections", "gauge", "WebSocket members connected now.", &[("", self.connections)]);
        metric(
            "shoal_relay_connections_accepted_total",
            "counter",
            "WebSocket members admitted.",
            &[("", self.accepted)],
        );
        metric(
            "shoal_relay_connections_replaced_total",
            "counter",
            "Connections closed because a newer connection took over their peer id.",
            &[("", self.replaced)],
        );
        metric(
            "shoal_relay_rejected_total",
            "counter",
            "Admissions refused, by reason.",
            &[
                ("{reason=\"token\"}", self.rejected_token),
                ("{reason=\"peer_id\"}", self.rejected_peer_id),
                ("{reason=\"request\"}", self.rejected_request),
            ],
        );
        metric(
            "shoal_relay_tcp_connections",
            "gauge",
            "TCP connections (HTTP and WebSocket) open now.",
            &[("", self.tcp_connections)],
        );
        metric(
            "shoal_relay_queued_frames",
            "gauge",
            "Frames waiting in members' queues now.",
            &[("", self.queued_frames)],
        );
        metric(
            "shoal_relay_queued_bytes",
            "gauge",
            "Bytes waiting in members' queues now.",
            &[("", self.queued_bytes)],
        );
        metric(
            "shoal_relay_udp_tracked_addresses",
            "gauge",
            "Addresses the UDP policy tracks now (budgets, verified targets, known sources).",
            &[("", self.udp_tracked)],
        );
        let paths = [
            ("ws_ws", self.ws_to_ws),
            ("ws_udp", self.ws_to_udp),
            ("udp_ws", self.udp_to_ws),
            ("signal", self.signals),
            ("link_out", self.link_out),
            ("link_in", self.link_in),
        ];
        let frames: Vec<(String, u64)> = paths.iter().map(|(p, f)| (format!("{{path=\"{p}\"}}"), f.frames)).collect();
        let bytes: Vec<(String, u64)> = paths.iter().map(|(p, f)| (format!("{{path=\"{p}\"}}"), f.bytes)).collect();
        let frames: Vec<(&str, u64)> = frames.iter().map(|(l, v)| (l.as_str(), *v)).collect();
        let bytes: Vec<(&str, u64)> = bytes.iter().map(|(l, v)| (l.as_str(), *v)).collect();
        metric("shoal_relay_forwarded_frames_total", "counter", "Frames forwarded, by path.", &frames);
        metric("shoal_relay_forwarded_bytes_total", "counter", "Bytes forwarded, by path.", &bytes);
        let dropped: Vec<(String, u64)> =
            DropReason::ALL.iter().map(|r| (format!("{{reason=\"{}\"}}", r.label()), self.dropped(*r))).collect();
        let dropped: Vec<(&str, u64)> = dropped.iter().map(|(l, v)| (l.as_str(), *v)).collect();
        metric("shoal_relay_dropped_frames_total", "counter", "Frames dropped, by reason.", &dropped);
        metric(
            "shoal_relay_slow_consumers_disconnected_total",
            "counter",
            "Members disconnected because they stopped reading.",
            &[("", self.slow_consumers)],
        );
        let conn: Vec<(String, u64)> = ConnectionDrop::ALL
            .iter()
            .map(|r| (format!("{{reason=\"{}\"}}", r.label()), self.connection_drops(*r)))
            .collect();
        let conn: Vec<(&str, u64)> = conn.iter().map(|(l, v)| (l.as_str(), *v)).collect();
        metric(
            "shoal_relay_connections_dropped_total",
            "counter",
            "Connections refused at accept or closed for misbehaving, by reason.",
            &conn,
        );
        metric(
            "shoal_relay_farewells_accepted_total",
            "counter",
            "Farewells (POST /farewell) accepted and their frames routed.",
            &[("", self.farewells_accepted)],
        );
        let refused: Vec<(String, u64)> = FarewellRefusal::ALL
            .iter()
            .map(|r| (format!("{{reason=\"{}\"}}", r.label()), self.farewells_refused(*r)))
            .collect();
        let refused: Vec<(&str, u64)> = refused.iter().map(|(l, v)| (l.as_str(), *v)).collect();
        metric("shoal_relay_farewells_refused_total", "counter", "Farewells refused, by reason.", &refused);
        metric("shoal_relay_links", "gauge", "Links to other relays up now.", &[("", self.links)]);
        metric(
            "shoal_relay_links_established_total",
            "counter",
            "Links to other relays that completed their handshake.",
            &[("", self.links_established)],
        );
        let refused: Vec<(String, u64)> =
            LinkRefusal::ALL.iter().map(|r| (format!("{{reason=\"{}\"}}", r.label()), self.link_refused(*r))).collect();
        let refused: Vec<(&str, u64)> = refused.iter().map(|(l, v)| (l.as_str(), *v)).collect();
        metric(
            "shoal_relay_link_refused_total",
            "counter",
            "Links refused or ended by this relay, by reason.",
            &refused,
        );
        metric(
            "shoal_relay_link_dial_failures_total",
            "counter",
            "Attempts to dial a peer relay that did not end in a link.",
            &[("", self.link_dial_failures)],
        );
        out
    }
}

/// Per linked relay, the Prometheus text of `links` (one sample per relay in each family, labelled
/// `relay="host:port"`), to append to [`RelayStats::to_prometheus`]. Nothing when `links` is empty.
pub fn links_to_prometheus(links: &[LinkStats]) -> String {
    let mut out = String::new();
    if links.is_empty() {
        return out;
    }
    /// A family's samples for one link: extra labels and value.
    type Samples = fn(&LinkStats) -> Vec<(&'static str, u64)>;
    let families: [(&str, &str, &str, Samples); 4] = [
        ("shoal_relay_link_up", "gauge", "Whether the link to a relay is up (1) or down (0).", |l| {
            vec![("", u64::from(l.up))]
        }),
        (
            "shoal_relay_link_frames_total",
            "counter",
            "Frames queued for (out) and delivered from (in) a linked relay.",
            |l| vec![(",direction=\"out\"", l.sent.frames), (",direction=\"in\"", l.received.frames)],
        ),
        (
            "shoal_relay_link_bytes_total",
            "counter",
            "Bytes of link frames queued for (out) and delivered from (in) a linked relay.",
            |l| vec![(",direction=\"out\"", l.sent.bytes), (",direction=\"in\"", l.received.bytes)],
        ),
        ("shoal_relay_link_queued_bytes", "gauge", "Bytes waiting in a link's queue now.", |l| {
            vec![("", l.queued_bytes)]
        }),
    ];
    for (name, kind, help, samples) in families {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for link in links {
            for (extra, value) in samples(link) {
                let _ = writeln!(out, "{name}{{relay=\"{}\"{extra}}} {value}", escape_label(&link.relay));
            }
        }
    }
    out
}

/// A Prometheus label value: backslash, double quote and newline escaped.
fn escape_label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_reasons_are_indexed_in_declaration_order() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
        for (i, r) in ConnectionDrop::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
        for (i, r) in FarewellRefusal::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
        for (i, r) in LinkRefusal::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }

    #[test]
    fn every_farewell_refusal_about_the_peer_or_its_secret_answers_the_same_status() {
        use FarewellRefusal::*;
        let statuses: Vec<u16> = [UnknownPeer, NoSecret, WrongSecret, AlreadyUsed].map(|r| r.status()).to_vec();
        assert_eq!(statuses, [403; 4]);
        assert_eq!((Malformed.status(), TooLarge.status(), ShuttingDown.status()), (400, 413, 503));
    }

    #[test]
    fn stats_render_every_family_with_type_lines() {
        let mut s = RelayStats { connections: 3, slow_consumers: 1, ..Default::default() };
        s.ws_to_udp.add(100);
        s.drop(DropReason::Oversized);
        s.drop_many(DropReason::UnknownSource, 3);
        s.connection_drop(ConnectionDrop::HeaderTimeout);
        s.farewells_accepted = 2;
        s.farewell_refused(FarewellRefusal::WrongSecret);
        let text = s.to_prometheus();
        assert!(text
            .contains("# TYPE shoal_relay_farewells_accepted_total counter\nshoal_relay_farewells_accepted_total 2\n"));
        assert!(text.contains("shoal_relay_farewells_refused_total{reason=\"wrong_secret\"} 1\n"));
        assert!(text.contains("shoal_relay_farewells_refused_total{reason=\"already_used\"} 0\n"));
        assert!(text.contains("shoal_relay_dropped_frames_total{reason=\"unknown_source\"} 3\n"));
        assert!(text.contains("shoal_relay_connections_dropped_total{reason=\"header_timeout\"} 1\n"));
        assert!(text.contains("shoal_relay_rejected_total{reason=\"request\"} 0\n"));
        assert_eq!(s.dropped_total(), 4);
        assert!(text.contains("# TYPE shoal_relay_connections gauge\nshoal_relay_connections 3\n"));
        assert!(text.contains("shoal_relay_forwarded_frames_total{path=\"ws_udp\"} 1\n"));
        assert!(text.contains("shoal_relay_forwarded_bytes_total{path=\"ws_udp\"} 100\n"));
        assert!(text.contains("shoal_relay_dropped_frames_total{reason=\"oversized\"} 1\n"));
        assert!(text.contains("shoal_relay_slow_consumers_disconnected_total 1\n"));
        assert!(text.contains("shoal_relay_rejected_total{reason=\"token\"} 0\n"));
        assert_eq!(text.matches("# TYPE").count(), 19);
    }

    #[test]
    fn link_counters_render_in_total_and_per_relay() {
        let mut s = RelayStats { links: 2, links_established: 3, ..Default::default() };
        s.link_out.add(40);
        s.link_in.add(30);
        s.drop(DropReason::BadStamp);
        s.link_refusal(LinkRefusal::WrongKey);
        let text = s.to_prometheus();
        assert!(text.contains("# TYPE shoal_relay_links gauge\nshoal_relay_links 2\n"), "{text}");
        assert!(text.contains("shoal_relay_links_established_total 3\n"));
        assert!(text.contains("shoal_relay_forwarded_frames_total{path=\"link_out\"} 1\n"));
        assert!(text.contains("shoal_relay_forwarded_bytes_total{path=\"link_in\"} 30\n"));
        assert!(text.contains("shoal_relay_dropped_frames_total{reason=\"bad_stamp\"} 1\n"));
        assert!(text.contains("shoal_relay_link_refused_total{reason=\"wrong_key\"} 1\n"));
        assert!(text.contains("shoal_relay_link_dial_failures_total 0\n"));
        assert_eq!(s.forwarded_frames(), 2);
        assert_eq!(links_to_prometheus(&[]), "");
        let mut up = LinkStats { relay: "10.0.0.2:8080".into(), up: true, queued_bytes: 9, ..Default::default() };
        up.sent.add(100);
        let down = LinkStats { relay: "odd\"name:1".into(), ..Default::default() };
        let text = links_to_prometheus(&[up, down]);
        assert!(text.contains("# TYPE shoal_relay_link_up gauge\nshoal_relay_link_up{relay=\"10.0.0.2:8080\"} 1\n"));
        assert!(text.contains("shoal_relay_link_up{relay=\"odd\\\"name:1\"} 0\n"), "{text}");
        assert!(text.contains("shoal_relay_link_frames_total{relay=\"10.0.0.2:8080\",direction=\"out\"} 1\n"));
        assert!(text.contains("shoal_relay_link_bytes_total{relay=\"10.0.0.2:8080\",direction=\"out\"} 100\n"));
        assert!(text.contains("shoal_relay_link_queued_bytes{relay=\"10.0.0.2:8080\"} 9\n"));
        assert_eq!(text.matches("# TYPE").count(), 4);
    }
}
