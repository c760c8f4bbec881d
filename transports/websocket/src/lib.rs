//! Shoal over a WebSocket to a `shoal-relay`: the transport of native members that cannot use UDP
//! (locked-down networks, processes that only get outbound HTTP) and join through a relay, as
//! browser tabs do.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use shoal::{Addr, Cluster, Transport};
//! use shoal_websocket::WsTransport;
//!
//! let ws = WsTransport::connect("ws://relay.example:8080/ws?peer=edge-1&token=s3cret").await?;
//! println!("reachable at {}", ws.local_addr()); // relay://relay.example:8080/edge-1
//! let transports: Vec<Arc<dyn Transport>> = vec![ws];
//! let cluster = Cluster::builder("edge-1")?.config(shoal_core::Config::browser()).spawn(transports)?;
//! cluster.join(&[Addr::parse("udp://10.0.0.5:7946")?]).await?;
//! # Ok(()) }
//! ```
//!
//! The model:
//!
//! - **Everything goes through the relay.** [`WsTransport`] claims `relay://` and `udp://`
//!   addresses for best-effort and reliable sends alike, and writes each packet as one binary
//!   message `[len][destination][packet]` ([`shoal_transport::relay`]). The relay forwards it to
//!   another WebSocket member or, as a relay datagram, to a native member's UDP port, and stamps
//!   the source on everything it delivers to us; that source is what `recv` reports.
//! - **Its own address comes from the relay.** `connect` waits for the welcome message (our
//!   `relay://<relay>/<peer>` address, empty packet) and reports it as [`Transport::local_addr`](shoal_transport::Transport::local_addr).
//!   A relay that refuses the connection (wrong token: 401/403, bad peer id: 400) makes `connect`
//!   fail with [`WsError::Refused`].
//! - **Bounded both ways.** Sends go into a bounded queue that one writer drains in batches
//!   (many messages, one flush); a best-effort send that finds it full is dropped and counted, a
//!   reliable one waits up to [`WsOptions::reliable_wait`] for room (the WebSocket itself is
//!   reliable and ordered). Received messages wait in a bounded inbox; when the protocol loop falls
//!   behind, newer ones are dropped and counted (`dropped_in`) rather than pushing back on the relay,
//!   which would disconnect us as a slow consumer. Messages over [`WsOptions::max_frame`] are
//!   dropped and counted too.
//! - **A dropped connection is reconnected, through another relay of the fleet if need be.**
//!   When the connection to the relay ends without a local
//!   [`Transport::close`](shoal_transport::Transport::close) (the relay restarted or died, a proxy
//!   timed out, the relay dropped us as a slow consumer), the transport becomes *disconnected*,
//!   not closed: `recv` keeps waiting, sends fail at once with `Io(NotConnected)` (counted in
//!   `send_errors`, best-effort ones in [`outbound_dropped`](WsTransport::outbound_dropped) too),
//!   and whatever was still queued from before the drop is discarded rather than sent late. One
//!   supervisor task per transport retries the handshake after a jittered, doubling wait
//!   ([`Backoff`], set by [`WsOptions::reconnect`]), each attempt bounded by
//!   [`WsOptions::connect_timeout`], until it succeeds or the transport is closed. A transport
//!   given one URL ([`WsTransport::connect`]) retries that relay. One given the relays of a fleet
//!   ([`WsTransport::connect_any`]: one URL per relay, all with the same peer id) tries the relay
//!   it had once, then the next ones of the list in turn, round and round, as the npm package's
//!   `relay: [url1, url2]` does. A relay that refuses the reconnection (401/403/400: it may be
//!   restarting with a new configuration) counts as a failed attempt, with a warning.
//! - **Welcomed elsewhere with the same peer id, the member moves.** A relay gives the peer id the
//!   address `relay://<its public addr>/<peer>`: the same relay, the same address, and the cluster
//!   sees the same member, briefly unreachable. Another relay of the fleet (or the same relay
//!   with a new public address) gives a new address with the same peer id: a **move**. The
//!   transport's [`local_addr`](shoal_transport::Transport::local_addr) becomes the new address
//!   and, while the link is still down, it tells the member
//!   ([`Transport::watch_local_addr`](shoal_transport::Transport::watch_local_addr)), whose driver
//!   moves its node there (`Node::move_to` in shoal-core: a higher incarnation, announced like a
//!   refutation); only then does the link come up, so nothing goes out through the new relay
//!   before the member names its new address. The other members take the move when a live
//!   member announces the new relay in its metadata (the `shoal-relay=<relay>` tag a relay's own
//!   member carries, `shoal_core::RELAY_TAG`); otherwise they see an address conflict until the
//!   old address is declared failed. [`WsTransport::moves`] counts moves and
//!   [`WsTransport::relay_index`] says which relay of the list the transport uses; moves are
//!   logged at info. A member that advertises another transport's address (a UDP socket beside
//!   this one) does not move.
//! - **While the connection is down, the member accuses nobody.** The transport reports its link
//!   ([`Transport::watch_link`](shoal_transport::Transport::watch_link)): down when the
//!   connection drops, up when a reconnection succeeds. A member whose only transport this is
//!   then knows that the silence of the others is its own outage, not theirs: it probes nobody,
//!   suspects nobody and declares nobody failed until it is back (see
//!   `Node::set_link_up` in shoal-core), and asks a member for a push-pull as
//!   soon as it is. A member with another transport beside it (a UDP socket) may still reach
//!   others, and carries on as before.
//! - **Three ways to close for good.** The relay closed with code 4001
//!   ([`CloseCode::Replaced`](shoal_transport::relay::CloseCode)): another connection now holds
//!   our peer id, and reconnecting would only take it back. A relay welcomed a reconnection with
//!   a different peer id (a URL of the list names another one): that is another member, not a
//!   move, so build a new member. Or [`WsOptions::reconnect`] is `None`, and any drop closes. Closed, `recv` returns `Err(Closed)`, so a cluster whose only transport this is
//!   stops. [`WsTransport::is_connected`], [`WsTransport::disconnects`] and
//!   [`WsTransport::reconnects`] tell what happened; drops and reconnections are logged at info.
//!   [`Transport::close`](shoal_transport::Transport::close) sends a WebSocket close and
//!   releases the socket, or abandons a reconnection in progress.
//! - `ws://` only: terminate TLS in front of the relay for `wss://`.

#![deny(missing_docs)]

mod backoff;
mod connection;
mod transport;

pub use backoff::Backoff;
pub use transport::{member_url, WsError, WsOptions, WsTransport, DEFAULT_MAX_FRAME};
