//! Shoal over UDP: the best-effort path of a native member.
//!
//! [`UdpTransport`] is one tokio UDP socket implementing [`shoal_transport::Transport`]. It
//! carries best-effort datagrams (probes, acks, gossip) to `udp://ip:port` addresses, and
//! everything for relayed members (`relay://ip:port/peer`: browser tabs and edge runtimes behind a
//! `shoal-relay`) through the relay's UDP port. Reliable frames (push-pull, reliable messages) go to a `shoal-tcp` transport bound to the
//! same port, which also claims `udp://` addresses for reliable sends. A typical member is
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use shoal::{Addr, Cluster, Transport};
//! use shoal_tcp::{TcpOptions, TcpTransport};
//! use shoal_udp::UdpTransport;
//!
//! let udp = UdpTransport::bind("0.0.0.0:7946".parse()?).await?;
//! let sa = udp.local_socket_addr();
//! // Frames from this member are reported with its member address, so replies find it.
//! let tcp = TcpTransport::bind(sa, TcpOptions { advertise: Some(Addr::udp(sa)), ..TcpOptions::default() }).await?;
//! let transports: Vec<Arc<dyn Transport>> = vec![udp, tcp];
//! let cluster = Cluster::builder("web-1")?.spawn(transports)?;
//! # let _ = cluster; Ok(()) }
//! ```
//!
//! The model:
//!
//! - **One socket, shared.** Sends (awaited inline by the driver's protocol loop) and the receive
//!   loop use the same non-blocking socket concurrently. `send` waits for nothing but room in the
//!   kernel's send buffer, and a failed send is a lost packet to the protocol, never a stop.
//! - **Large kernel buffers.** The socket asks for 4 MiB receive and send buffers so bursts of
//!   gossip survive a busy driver; the operating system may grant less (see
//!   [`UdpTransport::buffer_sizes`]; on Linux raise `net.core.rmem_max`).
//! - **No allocation per packet.** `recv` reads into the caller's reused buffer, and the sender's
//!   [`Addr`](shoal_transport::Addr) (a formatted string) is cached per socket address.
//! - **ICMP noise is not an error.** Sending to a closed port can make a later `recv_from` (or
//!   `send_to`) fail with "connection refused/reset": Windows reports these on any UDP socket, Linux
//!   only on connected sockets or with `IP_RECVERR`. Either way the error is about an earlier
//!   datagram, so the transport counts it ([`UdpTransport::icmp_errors`]) and carries on.
//! - **Relayed members through the relay's UDP port.** A packet for `relay://ip:port/peer` is sent
//!   to `ip:port` as `[0xF0][len][peer][packet]`; a datagram starting with `0xF0` is a relay
//!   datagram, reported as coming from the `relay://` source the relay stamped in it, and accepted
//!   only from the relay that source names (no spoofing a relayed member from elsewhere). Reliable
//!   frames to relayed members travel as single relay datagrams too (no stream reaches them).
//! - **Every drop is counted.** A refused relay datagram counts in `dropped_in` (exported by the
//!   driver as `shoal_transport_dropped_in_total`) and under its reason, malformed or spoofed, in
//!   [`UdpTransport::relay_drops`] (exported by `shoal-agent` as
//!   `shoal_udp_relay_dropped_total{reason=...}`).
//! - **Hostile input never panics.** Any datagram is handed to the protocol as bytes; decoding is the
//!   core's job and never panics either.

#![deny(missing_docs)]

mod transport;

pub use transport::{BufferSizes, RelayDrops, UdpTransport, MAX_DATAGRAM, WANTED_BUFFER};
