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
//! - `GET /ws?peer=<id>&token=<t>`: a member's WebSocket. Binary messages only, in the envelope of
//!   [`shoal_core::driver::relay`]: the first message the relay sends is the welcome (the member's
//!   own `relay://<public addr>/<id>` address and an empty packet); after that each message is
//!   `[len][address][packet]`, where the member writes the destination and the relay the source.
//!   A missing token answers 401, a wrong one 403, an invalid peer id 400. Messages starting with a
//!   zero byte are WebRTC signalling (`[0][len][address][kind][body]`: offer, answer, ICE
//!   candidate, bye, invite), forwarded between two members of this relay with the source stamped
//!   the same way, so members can open direct data channels and stop needing the relay.
//! - the UDP port: native members send `[0xF0][len][peer id][packet]` to reach a WebSocket member;
//!   packets from WebSocket members to `udp://ip:port` leave from this port as
//!   `[0xF0][len][relay://<public addr>/<id>][packet]`, which `shoal-udp` accepts only from the
//!   socket the address names.
//! - `GET /health` (`ok`), `GET /metrics` (Prometheus text), and a static directory if configured.
//!
//! Routing lives in the I/O-free [`Switchboard`] (admission, peer table, per-connection bounded
//! queues, frame cap, routing decisions); the server ([`Relay`], [`BoundRelay`]) is the axum and tokio shell
//! around it. The [`Switchboard`] documentation explains the two policies that matter operationally: a second
//! connection with the same peer id **replaces** the first, and a member whose queue is full is a
//! **slow consumer and is disconnected** rather than buffered for.

mod accept;
mod cidr;
mod close;
mod config;
mod conn_caps;
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
pub use metrics::{ConnectionDrop, DropReason, Forwarded, RelayStats};
pub use queue::{Outbox, PushError};
pub use rate::{BudgetLimit, RateLimit};
pub use server::{BoundRelay, Relay, RelayHandle};
pub use switchboard::{ConnId, Refusal, Session, Switchboard, WsRoute};
