//! Socket options and the one socket query the transport needs: what makes a dead peer show up
//! within seconds.
//!
//! A peer behind a partition, or one that crashed without a reset, acknowledges nothing, yet
//! writes to it still succeed: they only fill our kernel's send buffer. Left alone, the kernel
//! retransmits with a backoff that grows to two minutes and keeps the connection established for
//! a quarter of an hour; once the link heals, nothing crosses it until the next retransmission.
//! Three things bound that:
//!
//! - [`configure`] sets `TCP_USER_TIMEOUT` to `ack_timeout` (Linux, Android): the kernel fails a
//!   connection whose sent data, or keepalive probes, stay unacknowledged that long. The reader
//!   of the connection sees `ETIMEDOUT`, the pool forgets the connection, and the next frame to
//!   the peer opens a fresh one.
//! - It also turns on TCP keepalive after `keepalive` of quiet (by default longer than
//!   `idle_timeout`, so only a caller that asks for it pays for probes), so a quiet connection is
//!   probed and a dead peer is noticed even when we have nothing to send.
//! - [`SendQueue`] tells how much of what we wrote the peer has not acknowledged yet, so the idle
//!   timer counts acknowledged bytes as progress and ignores writes into the buffer
//!   ([`crate::shared::Activity`]).

use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};
use tokio::net::TcpStream;

use crate::TcpOptions;

/// Keepalive probes are scheduled in whole seconds.
const MIN_KEEPALIVE: Duration = Duration::from_secs(1);
/// Once a keepalive probe went out, the next ones follow this often (or every `keepalive`, if
/// shorter), so a dead peer is noticed within about `ack_timeout` of the first probe.
const PROBE_INTERVAL: Duration = Duration::from_secs(2);

/// Applies the transport's socket options to a connection. Call once per connection, outbound
/// right after connecting and inbound right after accepting. Failures are logged, not fatal: the
/// connection works, it only notices a dead peer later.
pub(crate) fn configure(stream: &TcpStream, options: &TcpOptions) {
    let _ = stream.set_nodelay(true);
    let sock = SockRef::from(stream);
    let quiet = options.keepalive.max(MIN_KEEPALIVE);
    let interval = PROBE_INTERVAL.min(quiet);
    let keepalive = TcpKeepalive::new().with_time(quiet);
    #[cfg(any(
        target_os = "android",
        target_os = "freebsd",
        target_os = "linux",
        target_os = "macos",
        target_os = "windows"
    ))]
    let keepalive = keepalive.with_interval(interval).with_retries(probes(options.ack_timeout, interval));
    if let Err(e) = sock.set_tcp_keepalive(&keepalive) {
        tracing::debug!(error = %e, "could not turn on tcp keepalive");
    }
    #[cfg(any(target_os = "android", target_os = "linux"))]
    if let Err(e) = sock.set_tcp_user_timeout(Some(options.ack_timeout.max(Duration::from_millis(1)))) {
        tracing::debug!(error = %e, "could not set TCP_USER_TIMEOUT");
    }
}

/// Keepalive probes that span about `ack_timeout` (where `TCP_USER_TIMEOUT` is unavailable the
/// probe count decides when a quiet connection dies; where it is available it takes precedence).
#[cfg(any(
    target_os = "android",
    target_os = "freebsd",
    target_os = "linux",
    target_os = "macos",
    target_os = "windows"
))]
fn probes(ack_timeout: Duration, interval: Duration) -> u32 {
    let n = ack_timeout.as_millis().div_ceil(interval.as_millis().max(1));
    n.clamp(1, 127) as u32
}

/// Refuses an accepted connection at once: closes it with a reset (no FIN handshake, no
/// `TIME_WAIT` left on our side), so a flood of refused connections costs us nothing afterwards.
/// Call it, instead of serving the connection, when a cap turns the connection away.
pub(crate) fn refuse(stream: TcpStream) {
    let _ = SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    drop(stream);
}

/// Reads how many of the bytes we wrote to a connection its peer has not acknowledged yet
/// (`SIOCOUTQ`: bytes in flight plus bytes not sent). Only on Linux and Android; elsewhere it
/// knows nothing and the idle timer falls back to counting writes.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct SendQueue {
    #[cfg(any(target_os = "android", target_os = "linux"))]
    fd: Option<std::os::fd::RawFd>,
}

impl SendQueue {
    /// True where [`SendQueue::unacknowledged`] can answer.
    pub const SUPPORTED: bool = cfg!(any(target_os = "android", target_os = "linux"));

    /// A queue that knows nothing: for connections we never write to (inbound ones).
    pub fn none() -> SendQueue {
        SendQueue::default()
    }

    /// The send queue of `stream`. Use it only while the stream (or one of its halves) is alive:
    /// it keeps the descriptor, not the socket.
    pub fn of(stream: &TcpStream) -> SendQueue {
        #[cfg(any(target_os = "android", target_os = "linux"))]
        {
            use std::os::fd::AsRawFd;
            SendQueue { fd: Some(stream.as_raw_fd()) }
        }
        #[cfg(not(any(target_os = "android", target_os = "linux")))]
        {
            let _ = stream;
            SendQueue {}
        }
    }

    /// Bytes written and not yet acknowledged by the peer, or `None` when unknown. One system
    /// call: the connection's reader calls it when an idle deadline comes, not per frame.
    pub fn unacknowledged(&self) -> Option<u64> {
        #[cfg(any(target_os = "android", target_os = "linux"))]
        {
            let fd = self.fd?;
            let mut queued: libc::c_int = 0;
            // SAFETY: TIOCOUTQ (SIOCOUTQ on a TCP socket) stores one `c_int` through the pointer,
            // which points to a live local of that type. The descriptor belongs to a connection
            // whose reader holds it open while it calls this; even a stale descriptor would only
            // make the call fail or answer for another file, never touch memory.
            let r = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut queued as *mut libc::c_int) };
            if r != 0 {
                return None;
            }
            u64::try_from(queued).ok()
        }
        #[cfg(not(any(target_os = "android", target_os = "linux")))]
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(any(target_os = "android", target_os = "linux"))]
    #[test]
    fn keepalive_probes_span_the_ack_timeout() {
        let s = Duration::from_secs;
        assert_eq!(probes(s(5), s(2)), 3);
        assert_eq!(probes(s(4), s(2)), 2);
        assert_eq!(probes(Duration::from_millis(10), s(1)), 1);
        assert_eq!(probes(s(86_400), s(1)), 127);
    }

    #[cfg(any(target_os = "android", target_os = "linux"))]
    #[tokio::test]
    async fn with_the_default_options_a_quiet_connection_is_closed_before_any_keepalive_probe() {
        // Found measuring 50 LAN agents on loopback: with keepalive probes after 2 s of quiet, the
        // connections that joins and push-pulls leave open (kept until `idle_timeout`) sent 5.1
        // TCP segments per member per second, two and a half times the protocol's own packets.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let out = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (inbound, _) = listener.accept().await.unwrap();
        let options = TcpOptions::default();
        for stream in [&out, &inbound] {
            configure(stream, &options);
            let sock = SockRef::from(stream);
            let quiet = sock.tcp_keepalive_time().unwrap();
            assert!(
                quiet > options.idle_timeout,
                "first probe after {quiet:?}, closed after {:?}",
                options.idle_timeout
            );
            assert!(
                sock.tcp_keepalive_interval().unwrap() <= PROBE_INTERVAL,
                "once probing, a dead peer is found fast"
            );
            assert_eq!(sock.tcp_user_timeout().unwrap(), Some(options.ack_timeout));
        }
    }

    #[cfg(any(target_os = "android", target_os = "linux"))]
    #[tokio::test]
    async fn the_send_queue_empties_once_the_peer_acknowledges() {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut out = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (_peer, _) = listener.accept().await.unwrap();
        let queue = SendQueue::of(&out);
        assert_eq!(queue.unacknowledged(), Some(0));
        out.write_all(&[7u8; 1_000]).await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while queue.unacknowledged() != Some(0) {
            assert!(tokio::time::Instant::now() < deadline, "still {:?} bytes unacknowledged", queue.unacknowledged());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(SendQueue::none().unacknowledged(), None);
    }
}
