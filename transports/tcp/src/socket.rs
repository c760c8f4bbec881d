//! Socket options the transport sets beyond what tokio offers.

use std::time::Duration;

use socket2::SockRef;
use tokio::net::TcpStream;

/// Refuses an accepted connection at once: closes it with a reset (no FIN handshake, no
/// `TIME_WAIT` left on our side), so a flood of refused connections costs us nothing afterwards.
pub(crate) fn refuse(stream: TcpStream) {
    let _ = SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    drop(stream);
}
