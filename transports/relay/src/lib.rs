//! `shoal-relay`: the server that lets members without UDP (browser tabs, edge runtimes) join a
//! Shoal cluster over WebSocket, and lets native UDP members reach them.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use shoal_relay::{Relay, RelayConfig};
//!
//! let config = RelayConfig { token: Some("s3cret".into()), ..RelayConfig::default() };
//! let bound = Relay::bind("127.0.0.1:0".parse().unwrap(), config)?;
//! println!("members connect to ws://{}/ws?peer=<id>&token=s3cret", bound.local_addr());
//! let handle = bound.handle();
//! tokio::spawn(bound.serve());
//! // ... later
//! handle.shutdown();
//! # Ok(()) }
//! ```
//!
//! The relay binds one port for both TCP and UDP:
//!
//! - `GET /ws?peer=<id>&token=<t>[&farewell=1]`: a member's WebSocket. Binary messages only, in the
//!   envelope of [`shoal_core::relay`]: the first message the relay sends is the welcome (the
//!   member's own `relay://<public addr>/<id>` address and an empty packet, or with `farewell=1`
//!   the connection's 16-byte farewell secret as the packet); after that each message is
//!   `[len][address][packet]`, where the member writes the destination and the relay the source.
//!   A missing token answers 401, a wrong one 403, an invalid peer id 400. Messages starting with a
//!   zero byte are WebRTC signalling (`[0][len][address][kind][body]`: offer, answer, ICE
//!   candidate, bye, invite), forwarded between two members of this relay (or of linked relays,
//!   below) with the source stamped the same way, so members can open direct data channels and
//!   stop needing the relay.
//! - `POST /farewell`: a page's last words for its member's connection, sent with
//!   `navigator.sendBeacon` as the tab closes (a member in a Web Worker is killed before it can
//!   send its leave). The body ([`shoal_core::relay::encode_farewell`]) names the peer id, the
//!   secret from its welcome and up to 16 frames (16 KiB in all) written as the member would
//!   write them on its WebSocket; the relay routes them as if that connection had sent them.
//!   Accepted once per connection, only while the connection holds the peer id: `204`; else
//!   `400` malformed, `403` (unknown peer, no secret, wrong or used secret: one status for all),
//!   `413` too large, `503` shutting down. Any content type; no CORS headers (a beacon is a
//!   no-cors request whose answer is never read).
//! - the UDP port: native members send `[0xF0][len][peer id][packet]` to reach a WebSocket member;
//!   packets from WebSocket members to `udp://ip:port` leave from this port as
//!   `[0xF0][len][relay://<public addr>/<id>][packet]`, which `shoal-udp` accepts only from the
//!   socket the address names.
//! - `GET /relay-link`: another relay of the same fleet (see *Relay fleets* below). `404` on a
//!   relay without a [`relay_key`](RelayConfig::relay_key).
//! - `GET /health` (`ok`), `GET /metrics` (Prometheus text), and a static directory if configured.
//!
//! Optionally, the relay also runs a member of the cluster it serves, on a port of its own, which
//! announces the relay to the cluster (see *Relay fleet: discovery* below).
//!
//! # Relay fleets
//!
//! Several relays can serve one cluster: give them the same [`relay_key`](RelayConfig::relay_key)
//! and let each keep a link to the others ([`peer_relays`](RelayConfig::peer_relays), `ws://` URLs;
//! one side of each pair is enough). A member of relay A then reaches a member Q of relay B at
//! `relay://<B's public addr>/Q` exactly as it reaches its own relay's members: A forwards the
//! frame (or WebRTC signal, or farewell frame) over its link to B with the source stamped
//! `relay://<A's public addr>/P`, and B delivers it to Q with that source. Members need nothing
//! new: they already write whole `relay://` addresses, and the cluster learns every member's
//! address by gossip.
//!
//! A link is one WebSocket per pair of relays, `GET /relay-link`, authenticated both ways by an
//! HMAC-SHA256 challenge-response over fresh nonces from both sides, keyed by the relay key; the
//! handshake binds each relay's public address, which is how each relay learns which relay is
//! reached over which link. The dialer redials a dropped link with a jittered backoff (100 ms
//! doubling to 10 s). Each side pings a link every second and closes it after 4 s without
//! anything from the other side (or when its socket took nothing for 4 s), so a link that died
//! silently (the other host vanished, a NAT forgot the connection, the path drops everything) is
//! closed and redialed within about 5 s, and frames for the other relay's members are counted
//! (`link_down`) instead of vanishing into it. When both relays dial each other, both keep the
//! link the lower address dialed. A frame goes one hop only: nothing that arrives over a link is
//! sent on to a third relay or to a UDP socket, so the fleet needs a link between every pair of
//! relays whose members talk (a full mesh, for a fleet where anyone may talk to anyone). Rate
//! limits apply per sender at the sender's relay and per receiver at the receiver's, as for local
//! frames; each link's queue is bounded (16 times a member's) and a full one drops frames instead
//! of slowing anyone down. The [`Switchboard`] documents the routing, the link protocol is in the
//! crate's `link` module.
//!
//! Links are counted on `/metrics`: `shoal_relay_links` (up now),
//! `shoal_relay_links_established_total`, `shoal_relay_link_refused_total{reason}`, `shoal_relay_link_dial_failures_total`, the
//! `link_out` and `link_in` paths of `shoal_relay_forwarded_frames_total`, and per relay
//! `shoal_relay_link_up{relay}`, `shoal_relay_link_frames_total{relay,direction}`,
//! `shoal_relay_link_bytes_total{relay,direction}` and `shoal_relay_link_queued_bytes{relay}`.
//!
//! Routing lives in the I/O-free [`Switchboard`] (admission, peer table, per-connection bounded
//! queues, frame cap, rate limits, the UDP policy, routing decisions); the server ([`Relay`],
//! [`BoundRelay`]) is the axum, hyper and tokio shell around it. The [`Switchboard`] documentation
//! explains the policies that matter operationally: a second connection with the same peer id
//! **replaces** the first; a frame that finds its destination's queue full is **dropped**, and
//! only a member that **stops reading** (nothing taken from its queue for `stall_timeout`) is
//! disconnected as a slow consumer.
//!
//! Every frame, datagram and connection the relay drops or refuses is counted by reason in
//! [`RelayStats`] and on `/metrics` (`shoal_relay_dropped_frames_total{reason}`,
//! `shoal_relay_connections_dropped_total{reason}`, `shoal_relay_rejected_total{reason}`,
//! `shoal_relay_farewells_refused_total{reason}`, beside `shoal_relay_farewells_accepted_total`),
//! next to gauges of what it holds (queued bytes, TCP connections, addresses tracked).
//!
//! # Relay fleet: discovery
//!
//! Links carry frames between relays; the **cluster** learns which relays make up the fleet from
//! each relay's own cluster member ([`BoundRelay::start_member`], `shoal-relay --join`). That member
//! is an ordinary Shoal member on a UDP + TCP port of its own ([`FleetMemberConfig::bind`]), with
//! the cluster's preset, keys and label, and its metadata is the discovery contract, as tags:
//!
//! - `role=relay`;
//! - `shoal-relay=<public addr>` ([`RELAY_TAG`]): the `host:port` in the relay's `relay://`
//!   addresses (a configured host name appears resolved, as there);
//! - `shoal-relay-url=<url>` ([`RELAY_URL_TAG`]): where pages open their WebSocket, `ws://` or
//!   `wss://` (default `ws://<public addr>`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use shoal::{MemberFilter, MemberState};
//! use shoal_relay::{FleetMemberConfig, Relay, RelayConfig, RELAY_TAG, RELAY_URL_TAG};
//!
//! let config = RelayConfig { public_addr: "203.0.113.7:8080".into(), ..RelayConfig::default() };
//! let bound = Relay::bind("0.0.0.0:8080".parse()?, config)?;
//! let mut member = FleetMemberConfig::new("0.0.0.0:7946".parse()?).preset("browser")?;
//! member.join = vec!["10.0.0.5:7946".into()];
//! let cluster = bound.start_member(member).await?; // named relay-203.0.113.7-8080
//! tokio::spawn(bound.serve());
//! // Any member of the cluster, this one included, lists the fleet:
//! let relays = MemberFilter::new().states(&[MemberState::Alive]).tag(RELAY_TAG, "*");
//! for relay in cluster.members_matching(&relays) {
//!     println!("{} at {:?}", relay.id, relay.tags().get(RELAY_URL_TAG));
//! }
//! # Ok(()) }
//! ```
//!
//! Any member lists the fleet by filtering the members it knows with the tag
//! (`MemberFilter::new().states(&[MemberState::Alive]).tag(RELAY_TAG, "*")`), and the protocol
//! itself relies on it: a member at `relay://R1/P` that reconnects through R2 with the same peer id
//! moves to `relay://R2/P` (instead of being an address conflict until declared failed) only
//! while a live member announces `shoal-relay=R2`. So give every relay of a fleet a member. It
//! joins in the background and re-announces to seeds that do not answer; when the relay stops
//! ([`RelayHandle::shutdown`], SIGTERM or ctrl-c) it **leaves** the cluster (seen `left`), and a
//! relay that dies is declared failed like any member: either way it stops counting as part of
//! the fleet. While it exists, `/metrics` shows `shoal_relay_cluster_member_up` and
//! `shoal_relay_cluster_members{state}` (`alive`, `suspect`, `failed`, `left`); `/health` stays
//! `ok` whatever the member's state.
//!
//! # Threat model
//!
//! The relay faces the Internet. Peer ids are public (they are in every member's address), the
//! UDP port takes datagrams from anyone, and without a token anyone can open a WebSocket. What
//! the relay guarantees, against whom:
//!
//! - **Strangers on the UDP port cannot disconnect or silence a member.** A datagram reaches a
//!   relayed member M at full rate only from a *known source*: a socket M itself sent a datagram
//!   to through the relay within `known_ttl` (5 minutes), or one inside `udp_allow`. Anything else
//!   passes at 1 datagram a second per source IP and 20 a second in all: enough for a new native
//!   member's first probe, and SWIM's indirect probes through members M already knows carry the
//!   rest until M answers it, which makes it known. A flood from a stranger costs M nothing but
//!   those few datagrams. Known is per member: an attacker must get M itself to talk to it, which
//!   on a cluster whose members authenticate (the keyring) means being a member.
//! - **Nobody can kick a member by filling its queue.** A full queue drops frames (counted); the
//!   member stays. Every sender (WebSocket member or UDP socket) is limited to 1,000 frames and
//!   1 MiB a second (bursts twice that), every receiver to 2,000 frames and 2 MiB a second from
//!   everyone together, so one flooder cannot use up a member's share. Only a member that stops
//!   reading is closed (4002), after `stall_timeout` (10 s) without progress.
//! - **The relay is not an open UDP forwarder.** A WebSocket member may have the relay send
//!   datagrams at full rate only to *verified targets*: sockets that sent the relay a datagram
//!   within `known_ttl` (or inside `udp_allow`). Others get 2 a second per target and 50 a second
//!   in all: enough to join through a seed or probe a new member (which answers and is verified),
//!   useless for flooding a third party. Loopback, unspecified, multicast and broadcast targets
//!   are refused outright, unless the relay's own public address is loopback (tests, the local
//!   demo: everything is on one host anyway) or `udp_allow` names them. Private ranges are not
//!   refused: native members usually live there; they are rate limited like any other target.
//!   `udp_allow_only` restricts the UDP port to `udp_allow` both ways.
//! - **Idle, slow and half-open connections end.** A client has `header_timeout` (10 s) to send
//!   its request head; a WebSocket member is pinged every 15 s and closed (4003) after 45 s
//!   without anything from it, a link to another relay every second and after 4 s. Connections
//!   are capped per IP (256) and in total (the open-file limit less 64), checked at accept before
//!   anything is read: one address cannot lock members out, and the relay refuses connections
//!   cleanly (`503`) instead of running out of sockets.
//!
//! - **Nobody but the page that holds a connection can say farewell for it.** `POST /farewell`
//!   needs no token, but it needs the connection's secret: 16 random bytes from the OS, sent only
//!   in that connection's welcome, compared in constant time, valid once, and only while that
//!   connection holds the peer id or for 10 s after it ended by itself (a closing tab's socket
//!   closes before its beacon arrives); a newer connection with the peer id voids it. A wrong
//!   guess is answered exactly like an unknown peer (`403`). What an accepted farewell carries
//!   is routed with the connection's own rate limits and source stamp: it can do nothing the
//!   member could not do over its WebSocket.
//!
//! - **Links are closed to anyone without the relay key.** Without a key the endpoint does not
//!   exist (`404`) and nothing is dialed. A request whose gate was not made with the key is
//!   refused before the upgrade (`403`, counted); the gate alone can be replayed, but the
//!   challenge that follows is answered only with the key and the listener's fresh nonce, so a
//!   recorded handshake does not open a link. Each side's answer carries its role, so neither
//!   can be reflected as the other's.
//! - **A linked relay speaks only for its own members.** A frame arriving over a link is delivered
//!   only if its source is `relay://<the address that link authenticated>/<peer id>`; anything
//!   else is dropped (`bad_stamp`). A link can never claim the receiving relay's own address, so
//!   a relay's members are never impersonated to each other through a link. Link frames name a
//!   peer id of the receiver as their destination and are never forwarded further (no loops, no
//!   UDP).
//!
//! - **A relay's member is a member like any other.** Its tags are what the cluster trusts to
//!   take moves to that relay, and announcing a relay takes being a member (in an encrypted
//!   cluster, the cluster key). A member that announces a relay of its own can claim any relayed
//!   member's peer id through it, which the real member refutes, as it refutes any gossip a key
//!   holder forges (see `shoal_core`'s `node::relay_move`). The relay's member holds the cluster
//!   key the relay was given (`--cluster-key`): the relay host is then as trusted as any member's
//!   host. It listens on a port of its own, which does not speak the relay envelope.
//!
//! What a holder of the **relay key** can do: everything a relay of the fleet can. It can link to
//! any relay that accepts links, claim any public address but the receiving relay's own (also
//! another relay's, whose link it then competes with under the one-link rule: it can intercept
//! what the fleet sends to that relay's members, and speak for them), and send frames to every
//! member of the relays it links to, bounded only by the receivers' rate limits (links have no
//! sender budget of their own; at most [`MAX_LINKED_RELAYS`] relay addresses are kept). Give the
//! key to relays only, keep the link port on a network members do not need, and treat the key
//! like the admission token's big sibling. Links are plain `ws://`: after the handshake, frames
//! are not authenticated per frame, so someone on the path between two relays can read and
//! inject link frames, as on a member's own `ws://` connection; the cluster's keyring (AES-GCM
//! on every packet) is what protects the packets end to end. Put links on a private network (or
//! a tunnel) when the path is not trusted.
//!
//! What it does not guarantee: a token holder (anyone, on an open relay) can take over a peer id
//! (replacement, see [`Switchboard`]) and can send to members at the per-sender rate; the token is
//! the gate, the limits only bound the harm. UDP source addresses can be spoofed on networks
//! without source address validation: a spoofed datagram can make a socket *verified* (the
//! relay then sends to it at the per-target rate, 2 MiB/s at most) or pose as a member's known
//! source (limited per source and per destination). Many attackers from many addresses share
//! the strangers' total rate and can use it up, delaying a new native member's first contact (not
//! existing members). Members behind one NAT share its per-IP connection cap. Volumetric attacks
//! on the link are out of scope.

#![deny(missing_docs)]

mod accept;
mod cidr;
mod close;
mod config;
mod conn_caps;
mod fleet_member;
mod link;
mod link_conn;
mod member;
mod metrics;
mod queue;
mod rate;
mod server;
mod switchboard;
mod udp_policy;

pub use cidr::{Cidr, CidrError};
pub use close::CloseReason;
pub use config::{
    ConfigError, Limits, RelayConfig, DEFAULT_HEADER_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS_PER_IP,
    DEFAULT_MAX_FRAME, DEFAULT_PING_INTERVAL, DEFAULT_QUEUE_BYTES, DEFAULT_QUEUE_FRAMES, DEFAULT_STALL_TIMEOUT,
};
pub use fleet_member::{
    FleetMemberConfig, FleetMemberError, DEFAULT_MEMBER_PORT, MAX_PUBLIC_URL_LEN, MEMBER_LEAVE_TIMEOUT, RELAY_TAG,
    RELAY_URL_TAG, ROLE_TAG,
};
pub use link::MIN_RELAY_KEY_LEN;
pub use metrics::{ConnectionDrop, DropReason, FarewellRefusal, Forwarded, LinkRefusal, LinkStats, RelayStats};
pub use queue::{Outbox, PushError};
pub use rate::{BudgetLimit, RateLimit};
pub use server::{BoundRelay, Relay, RelayHandle};
pub use switchboard::{
    ConnId, LinkId, LinkSession, Refusal, Session, Switchboard, WsRoute, FAREWELL_GRACE, LINK_QUEUE_FACTOR,
    MAX_DEPARTED, MAX_LINKED_RELAYS,
};
