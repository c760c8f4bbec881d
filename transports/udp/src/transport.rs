//! [`UdpTransport`]: the [`Transport`] implementation over one tokio UDP socket.
//!
//! The driver awaits [`Transport::send`] inline in its protocol loop and calls
//! [`Transport::recv`] in a loop with one reused buffer, so both are written for that hot path:
//! `send` is a single `send_to`, `recv` a single `recv_from` into the buffer's spare capacity plus a
//! lookup of the sender's cached [`Addr`]. Neither allocates once the buffer and the cache are warm.
//!
//! The socket is non-blocking, bound to exactly the address given (IPv4 or IPv6; an IPv6 socket
//! keeps the operating system's dual-stack default), and asks for [`WANTED_BUFFER`] bytes of kernel
//! buffer each way.
//!
//! [`Transport::close`] wakes a pending `recv` (which returns `Err(Closed)`), refuses every later
//! call, and drops the transport's handle on the socket so the port is released as soon as the
//! in-flight calls finish.
//!
//! Relayed members (`relay://ip:port/peer`, browser tabs behind a `shoal-relay`) are reached
//! through the relay's UDP port with the envelope of [`shoal_transport::relay`]: a send wraps
//! the packet as `[0xF0][len][peer][packet]` and sends it to the relay's socket; a received
//! datagram starting with [`RELAY_DATAGRAM_MARKER`] is unwrapped in place and reported as coming
//! from the `relay://` source the relay stamped, provided it came from the socket that source
//! names. Anything else is dropped and counted twice: in `dropped_in` (so the driver's
//! `shoal_transport_dropped_in_total` sees it) and under its reason in [`RelayDrops`]:
//! `malformed` (truncated, or the source is not an address) or `spoofed` (a valid address the
//! datagram cannot have come from: a member of another relay, or not a relayed member at all). Reliable frames to relayed
//! members (push-pull, reliable messages) travel the same way: no stream reaches a browser tab
//! but the relay's WebSocket, whose UDP leg is as reliable as UDP is, so they must fit in one
//! datagram and a lost one is repaired by the protocol like a lost packet.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use shoal_transport::relay::{
    accept_relay_datagram, decode_datagram, encode_datagram, relay_socket, split_relay_addr, RELAY_DATAGRAM_MARKER,
    RELAY_SCHEME,
};
use shoal_transport::{Addr, Received, TrafficCounters, Transport, TransportCounters, TransportError};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::sync::Notify;

/// The kernel buffer size asked for, each way: 4 MiB.
pub const WANTED_BUFFER: usize = 4 << 20;

/// Kernel buffer sizes the operating system granted, in bytes, as it reports them (Linux reports
/// twice the usable size, since it counts its own bookkeeping).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BufferSizes {
    /// `SO_RCVBUF`: how much can queue up while the driver is busy before datagrams are dropped.
    pub recv: usize,
    /// `SO_SNDBUF`: how much a burst of sends can queue before `send` has to wait for the network.
    pub send: usize,
}

/// Binds a non-blocking UDP socket with large buffers and registers it with tokio (socket2 for the
/// options tokio does not expose). Buffer requests the OS refuses or caps are not errors: the
/// member works with a smaller buffer, it only drops more packets under bursts.
fn bind_socket(addr: SocketAddr) -> io::Result<(UdpSocket, BufferSizes)> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // Both are best effort: an unprivileged process gets at most the system maximum, and some
    // systems refuse sizes above it outright. Ask for less until something is accepted.
    let mut size = WANTED_BUFFER;
    while size >= 64 << 10 && socket.set_recv_buffer_size(size).is_err() {
        size /= 2;
    }
    let mut size = WANTED_BUFFER;
    while size >= 64 << 10 && socket.set_send_buffer_size(size).is_err() {
        size /= 2;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    let sizes = BufferSizes { recv: socket.recv_buffer_size()?, send: socket.send_buffer_size()? };
    let socket = UdpSocket::from_std(std::net::UdpSocket::from(socket))?;
    Ok((socket, sizes))
}

/// Largest datagram [`Transport::send`] accepts: the IPv4 UDP payload limit (65,535 - 8 - 20).
pub const MAX_DATAGRAM: usize = 65_507;

/// Relay datagrams dropped so far, by reason (see [`UdpTransport::relay_drops`]). Every one is also
/// in [`TransportCounters::dropped_in`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RelayDrops {
    /// Unreadable: shorter than its header says, or the source it names is not an address.
    pub malformed: u64,
    /// Readable, but naming a source it cannot have come from: a member of a relay other than the
    /// socket that sent it, or an address that is not a relayed member's (an impersonation attempt).
    pub spoofed: u64,
}

impl RelayDrops {
    /// Both reasons together.
    pub fn total(&self) -> u64 {
        self.malformed + self.spoofed
    }
}

/// Receive buffer capacity: room for any datagram, so nothing is ever truncated.
const RECV_CAPACITY: usize = 65_536;

/// Senders whose [`Addr`] is cached; past this the cache starts over (a spoofing flood cannot grow it).
const ADDR_CACHE_LIMIT: usize = 4_096;

/// A Shoal transport over one UDP socket. Best-effort datagrams only; pair it with `shoal-tcp` on
/// the same port for the reliable path.
pub struct UdpTransport {
    /// `None` once closed. Calls clone the handle, so closing never pulls a socket from under them.
    socket: RwLock<Option<Arc<UdpSocket>>>,
    local: SocketAddr,
    local_addr: Addr,
    buffers: BufferSizes,
    closed: AtomicBool,
    close_notify: Notify,
    senders: Mutex<HashMap<SocketAddr, Addr>>,
    counters: Counters,
}

impl std::fmt::Debug for UdpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpTransport")
            .field("local", &self.local)
            .field("buffers", &self.buffers)
            .field("closed", &self.closed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// The shared traffic counters plus the UDP plugin's own.
#[derive(Debug, Default)]
struct Counters {
    traffic: TrafficCounters,
    icmp_errors: AtomicU64,
    relay_malformed: AtomicU64,
    relay_spoofed: AtomicU64,
}

fn add(counter: &AtomicU64, n: usize) {
    counter.fetch_add(n as u64, Ordering::Relaxed);
}

/// Whether a relay datagram the envelope check refused was at least readable, with a valid source
/// address: then it was refused for naming a source it cannot have come from (spoofed), not for
/// being malformed. Only called for refused datagrams, off the hot path.
fn names_a_valid_source(datagram: &[u8]) -> bool {
    decode_datagram(datagram).is_ok_and(|(source, _)| Addr::parse(source).is_ok())
}

/// Errors the OS reports on a UDP socket because an earlier datagram hit a closed port (an ICMP
/// "port unreachable"). They say nothing about the current call.
fn is_icmp_error(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset)
}

impl UdpTransport {
    /// Binds `addr` (port 0 picks a free port; read it back with
    /// [`local_socket_addr`](Self::local_socket_addr)). Call from inside a tokio runtime, before
    /// building the cluster. Fails with the OS error if the address is unavailable.
    pub async fn bind(addr: SocketAddr) -> io::Result<Arc<UdpTransport>> {
        let (socket, buffers) = bind_socket(addr)?;
        let local = socket.local_addr()?;
        tracing::debug!(%local, recv_buffer = buffers.recv, send_buffer = buffers.send, "udp transport bound");
        Ok(Arc::new(UdpTransport {
            socket: RwLock::new(Some(Arc::new(socket))),
            local,
            local_addr: Addr::udp(local),
            buffers,
            closed: AtomicBool::new(false),
            close_notify: Notify::new(),
            senders: Mutex::new(HashMap::new()),
            counters: Counters::default(),
        }))
    }

    /// The socket address actually bound (with the port the OS picked for port 0).
    pub fn local_socket_addr(&self) -> SocketAddr {
        self.local
    }

    /// The kernel buffer sizes granted at bind time. Check them at startup: a small receive
    /// buffer means bursts of gossip get dropped while the driver is busy.
    pub fn buffer_sizes(&self) -> BufferSizes {
        self.buffers
    }

    /// "Connection refused" reports skipped so far (each one an earlier datagram sent to a port
    /// nobody listens on, typically a member that just stopped).
    pub fn icmp_errors(&self) -> u64 {
        self.counters.icmp_errors.load(Ordering::Relaxed)
    }

    fn socket(&self) -> Result<Arc<UdpSocket>, TransportError> {
        let guard = self.socket.read().unwrap_or_else(PoisonError::into_inner);
        guard.clone().ok_or(TransportError::Closed)
    }

    /// Completes once [`Transport::close`] has been called (at once if it already was).
    async fn closed(&self) {
        loop {
            let notified = self.close_notify.notified();
            tokio::pin!(notified);
            // Register before checking the flag, so a close in between cannot be missed.
            notified.as_mut().enable();
            if self.closed.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }

    /// The sender's address, formatted once per socket address.
    fn sender_addr(&self, from: SocketAddr) -> Addr {
        let mut cache = self.senders.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(addr) = cache.get(&from) {
            return addr.clone();
        }
        if cache.len() >= ADDR_CACHE_LIMIT {
            cache.clear();
        }
        let addr = Addr::udp(from);
        cache.insert(from, addr.clone());
        addr
    }

    /// Relay datagrams dropped so far: malformed, or not from the relay their source names (a
    /// spoofing attempt). Also in [`Transport::counters`] as `dropped_in`.
    pub fn relay_dropped(&self) -> u64 {
        self.counters.traffic.snapshot().dropped_in
    }

    /// Relay datagrams dropped so far, by reason (their sum is [`relay_dropped`](Self::relay_dropped)).
    pub fn relay_drops(&self) -> RelayDrops {
        RelayDrops {
            malformed: self.counters.relay_malformed.load(Ordering::Relaxed),
            spoofed: self.counters.relay_spoofed.load(Ordering::Relaxed),
        }
    }

    /// Sends `bytes` to a relayed member: one relay datagram to the relay's UDP socket.
    async fn send_relayed(&self, to: &Addr, bytes: &[u8]) -> Result<(), TransportError> {
        let (Some(relay), Some((_, peer))) = (relay_socket(to), split_relay_addr(to)) else {
            self.counters.traffic.send_failed();
            return Err(TransportError::Unreachable(to.clone()));
        };
        let max = MAX_DATAGRAM - 2 - peer.len();
        if bytes.len() > max {
            self.counters.traffic.send_failed();
            return Err(TransportError::TooLarge { size: bytes.len(), max });
        }
        let Some(datagram) = encode_datagram(peer, bytes) else {
            self.counters.traffic.send_failed();
            return Err(TransportError::Unreachable(to.clone()));
        };
        self.send_datagram(&datagram, relay).await
    }

    /// One datagram to `target`, counted.
    async fn send_datagram(&self, datagram: &[u8], target: SocketAddr) -> Result<(), TransportError> {
        let socket = self.socket()?;
        match self.send_to(&socket, datagram, target).await {
            Ok(n) => {
                self.counters.traffic.sent(n);
                Ok(())
            }
            Err(e) => {
                self.counters.traffic.send_failed();
                Err(TransportError::Io(e))
            }
        }
    }

    /// Unwraps a relay datagram in `buf` in place (the packet moves to the front): its true source,
    /// or `None` (counted) if it is malformed or did not come from the relay it names.
    fn unwrap_relayed(&self, from: SocketAddr, buf: &mut Vec<u8>) -> Option<Addr> {
        let (source, packet_len) = match accept_relay_datagram(from, buf) {
            Ok((source, packet)) => (source, packet.len()),
            Err(e) => {
                self.counters.traffic.dropped_in();
                let spoofed = names_a_valid_source(buf);
                add(if spoofed { &self.counters.relay_spoofed } else { &self.counters.relay_malformed }, 1);
                tracing::trace!(%from, error = %e, spoofed, "dropped a relay datagram");
                return None;
            }
        };
        // The packet is the datagram's tail.
        let start = buf.len() - packet_len;
        buf.copy_within(start.., 0);
        buf.truncate(packet_len);
        Some(source)
    }

    /// One `send_to`, retried once if it only reported an earlier datagram's ICMP error.
    async fn send_to(&self, socket: &UdpSocket, bytes: &[u8], to: SocketAddr) -> io::Result<usize> {
        match socket.send_to(bytes, to).await {
            Err(e) if is_icmp_error(&e) => {
                add(&self.counters.icmp_errors, 1);
                socket.send_to(bytes, to).await
            }
            other => other,
        }
    }
}

#[async_trait::async_trait]
impl Transport for UdpTransport {
    fn name(&self) -> &'static str {
        "udp"
    }

    /// `udp://ip:port` best-effort, and `relay://ip:port/peer` both ways (see the module docs).
    fn claims(&self, to: &Addr, reliable: bool) -> bool {
        match to.scheme() {
            "udp" => !reliable,
            RELAY_SCHEME => relay_socket(to).is_some(),
            _ => false,
        }
    }

    async fn send(&self, to: &Addr, bytes: &[u8]) -> Result<(), TransportError> {
        if to.scheme() == RELAY_SCHEME {
            return self.send_relayed(to, bytes).await;
        }
        if bytes.len() > MAX_DATAGRAM {
            self.counters.traffic.send_failed();
            return Err(TransportError::TooLarge { size: bytes.len(), max: MAX_DATAGRAM });
        }
        let Some(target) = to.socket_addr().filter(|_| to.scheme() == "udp") else {
            self.counters.traffic.send_failed();
            return Err(TransportError::Unreachable(to.clone()));
        };
        self.send_datagram(bytes, target).await
    }

    /// Only to relayed members (one relay datagram); `udp://` members get reliable frames over
    /// `shoal-tcp`.
    async fn send_reliable(&self, to: &Addr, bytes: &[u8]) -> Result<(), TransportError> {
        if to.scheme() == RELAY_SCHEME {
            return self.send_relayed(to, bytes).await;
        }
        Err(TransportError::Unreachable(to.clone()))
    }

    async fn recv(&self, buf: &mut Vec<u8>) -> Result<Received, TransportError> {
        let socket = self.socket()?;
        let closed = self.closed();
        tokio::pin!(closed);
        loop {
            buf.clear();
            // Allocates only the first time (or if the caller swapped in a small buffer).
            buf.reserve(RECV_CAPACITY);
            let result = tokio::select! {
                biased;
                () = &mut closed => return Err(TransportError::Closed),
                // Reads into the spare capacity and sets the length: no zero-filling per packet.
                r = socket.recv_buf_from(buf) => r,
            };
            match result {
                Ok((n, from)) => {
                    if buf.first() == Some(&RELAY_DATAGRAM_MARKER) {
                        let Some(source) = self.unwrap_relayed(from, buf) else { continue };
                        self.counters.traffic.received(n);
                        return Ok(Received { from: source, reliable: false });
                    }
                    self.counters.traffic.received(n);
                    return Ok(Received { from: self.sender_addr(from), reliable: false });
                }
                Err(e) if is_icmp_error(&e) => {
                    add(&self.counters.icmp_errors, 1);
                    tracing::trace!(error = %e, "skipped an icmp error on the udp socket");
                }
                Err(e) => return Err(TransportError::Io(e)),
            }
        }
    }

    fn local_addr(&self) -> Addr {
        self.local_addr.clone()
    }

    fn counters(&self) -> TransportCounters {
        self.counters.traffic.snapshot()
    }

    async fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.socket.write().unwrap_or_else(PoisonError::into_inner).take();
        self.close_notify.notify_waiters();
        tracing::debug!(local = %self.local, "udp transport closed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_socket_binds_non_blocking_with_the_buffers_the_os_grants() {
        let (socket, sizes) = bind_socket("127.0.0.1:0".parse().unwrap()).unwrap();
        assert_ne!(socket.local_addr().unwrap().port(), 0);
        // Whatever the limits, the OS grants at least its default (usually >= 200 KiB).
        assert!(sizes.recv >= 64 << 10 && sizes.send >= 64 << 10, "{sizes:?}");
    }

    #[tokio::test]
    async fn binding_an_address_in_use_fails_with_the_os_error() {
        let (first, _) = bind_socket("127.0.0.1:0".parse().unwrap()).unwrap();
        let taken = first.local_addr().unwrap();
        assert_eq!(bind_socket(taken).unwrap_err().kind(), io::ErrorKind::AddrInUse);
    }

    #[tokio::test]
    async fn the_sender_address_cache_stays_bounded_under_a_flood_of_new_senders() {
        let t = UdpTransport::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        for port in 1..=10_000u16 {
            let sa = SocketAddr::from(([10, 0, 0, 1], port));
            assert_eq!(t.sender_addr(sa), Addr::udp(sa));
        }
        assert!(t.senders.lock().unwrap().len() <= ADDR_CACHE_LIMIT);
    }

    #[tokio::test]
    async fn a_cached_sender_address_is_shared_not_reformatted() {
        let t = UdpTransport::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let sa = SocketAddr::from(([127, 0, 0, 1], 7946));
        let first = t.sender_addr(sa);
        let second = t.sender_addr(sa);
        assert!(std::ptr::eq(first.as_str(), second.as_str()));
    }
}
