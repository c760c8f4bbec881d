//! # shoal-webrtc
//!
//! Direct WebRTC data channels between a native Shoal member and the browser members of a
//! `shoal-relay`, so their traffic skips the relay's forwarding.
//!
//! The model:
//!
//! - The native member keeps a second, signalling-only WebSocket connection to the relay
//!   ([`signal`]), under the peer id `<name>.rtc`. Browsers reach the member itself at its usual
//!   address (`udp://...`, through the relay's UDP port); the signalling address only carries
//!   offers, answers, ICE candidates and byes (the envelope is in
//!   [`shoal_transport::relay`]).
//! - The native side never offers. When the member has traffic for a browser of that relay
//!   (`relay://<relay>/<peer>`) with no channel yet, it sends the browser an *invite* naming its
//!   member address; the browser offers (two pre-negotiated channels: id 0 unordered with no
//!   retransmits for best-effort packets, id 1 reliable and ordered for reliable frames), the
//!   member answers with its one host candidate, and ICE, DTLS and SCTP run over one UDP socket.
//!   There is no glare: only one side offers.
//! - [`WebRtcTransport`] is a [`Transport`](shoal_transport::Transport) plugin placed *first* in
//!   the member's router: it claims a browser's address only while both channels to it are open,
//!   so every other packet (and every packet once a channel closes) takes the next plugin, the
//!   relay path. The channel state is a routing hint; SWIM probes decide liveness.
//! - The WebRTC stack is [str0m](https://docs.rs/str0m), sans-IO: one task owns every
//!   connection, feeds it socket input, signals and timeouts, and drains its output until the
//!   next timeout after every change (str0m's run-loop contract).
//!
//! No STUN is needed on one host or a LAN (host candidates). The host candidate's IP is the
//! configured one, or the address of the interface holding the default route.

#![deny(missing_docs)]

pub mod signal;
mod task;
mod transport;

pub use transport::{WebRtcOptions, WebRtcTransport};
