//! Binding the agent's UDP socket and its TCP listener on one port.
//!
//! UDP is bound first, then TCP on the port UDP got. With a fixed port either bind fails as the OS
//! says. With port 0 the TCP port can already be taken (by another listener, or as the local port
//! of an outgoing TCP connection: the OS hands out UDP and TCP ports independently), so the pair is
//! tried again on a fresh UDP port, up to [`ATTEMPTS`] times, as the relay does for its TCP+UDP
//! pair.

use std::future::Future;
use std::io;
use std::net::SocketAddr;

/// How many UDP ports are tried with port 0 before giving up.
pub const ATTEMPTS: usize = 32;

/// Binds UDP on `addr` with `bind_udp` (which returns the socket and the address it got), then TCP
/// on that address with `bind_tcp`; the two and the shared address. With port 0, a TCP bind that
/// fails with `AddrInUse` starts over on a fresh UDP port (the sockets of failed attempts are held
/// until the end, so that the OS cannot hand the same port out again). Errors read
/// `bind udp ADDR: ...` or `bind tcp ADDR: ...`.
pub async fn udp_and_tcp<U, T, FU, FT>(
    addr: SocketAddr,
    mut bind_udp: impl FnMut(SocketAddr) -> FU,
    mut bind_tcp: impl FnMut(SocketAddr) -> FT,
) -> Result<(U, T, SocketAddr), String>
where
    FU: Future<Output = io::Result<(U, SocketAddr)>>,
    FT: Future<Output = io::Result<T>>,
{
    let attempts = if addr.port() == 0 { ATTEMPTS } else { 1 };
    let mut tried = Vec::new();
    let mut last = None;
    for _ in 0..attempts {
        let (udp, bound) = bind_udp(addr).await.map_err(|e| format!("bind udp {addr}: {e}"))?;
        match bind_tcp(bound).await {
            Ok(tcp) => return Ok((udp, tcp, bound)),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && addr.port() == 0 => {
                tracing::debug!(%bound, "tcp port taken, trying another udp port");
                tried.push(udp);
                last = Some(format!("bind tcp {bound}: {e}"));
            }
            Err(e) => return Err(format!("bind tcp {bound}: {e}")),
        }
    }
    Err(last.unwrap_or_else(|| format!("bind tcp {addr}: no port free for both UDP and TCP")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// A UDP bind that hands out ports 40000, 40001, ... (or `addr`'s own port when fixed), and
    /// records them.
    fn udp(
        ports: &RefCell<Vec<u16>>,
    ) -> impl FnMut(SocketAddr) -> std::future::Ready<io::Result<(u16, SocketAddr)>> + '_ {
        move |addr| {
            let port = if addr.port() == 0 { 40_000 + ports.borrow().len() as u16 } else { addr.port() };
            ports.borrow_mut().push(port);
            std::future::ready(Ok((port, SocketAddr::new(addr.ip(), port))))
        }
    }

    /// A TCP bind that fails with `AddrInUse` for the first `taken` attempts.
    fn tcp(taken: usize, calls: &RefCell<usize>) -> impl FnMut(SocketAddr) -> std::future::Ready<io::Result<u16>> + '_ {
        move |addr| {
            *calls.borrow_mut() += 1;
            std::future::ready(if *calls.borrow() <= taken {
                Err(io::Error::from(io::ErrorKind::AddrInUse))
            } else {
                Ok(addr.port())
            })
        }
    }

    #[tokio::test]
    async fn a_pair_bind_on_port_0_retries_when_the_tcp_port_is_taken() {
        let (ports, calls) = (RefCell::new(Vec::new()), RefCell::new(0));
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let (udp_port, tcp_port, bound) = udp_and_tcp(any, udp(&ports), tcp(3, &calls)).await.unwrap();
        assert_eq!(*ports.borrow(), [40_000, 40_001, 40_002, 40_003], "a fresh UDP port each attempt");
        assert_eq!((udp_port, tcp_port), (40_003, 40_003), "both on the port of the last attempt");
        assert_eq!(bound, "127.0.0.1:40003".parse().unwrap());
    }

    #[tokio::test]
    async fn a_pair_bind_on_port_0_gives_up_after_32_taken_tcp_ports_with_the_last_error() {
        let (ports, calls) = (RefCell::new(Vec::new()), RefCell::new(0));
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let err = udp_and_tcp(any, udp(&ports), tcp(usize::MAX, &calls)).await.unwrap_err();
        assert_eq!(ports.borrow().len(), ATTEMPTS);
        assert!(err.starts_with("bind tcp 127.0.0.1:40031: "), "{err}");
    }

    #[tokio::test]
    async fn a_pair_bind_on_a_fixed_port_is_not_retried() {
        let (ports, calls) = (RefCell::new(Vec::new()), RefCell::new(0));
        let fixed: SocketAddr = "127.0.0.1:7946".parse().unwrap();
        let err = udp_and_tcp(fixed, udp(&ports), tcp(1, &calls)).await.unwrap_err();
        assert_eq!((ports.borrow().len(), *calls.borrow()), (1, 1));
        assert!(err.starts_with("bind tcp 127.0.0.1:7946: "), "{err}");
    }

    #[tokio::test]
    async fn a_pair_bind_on_port_0_fails_at_once_on_other_tcp_errors_and_on_udp_errors() {
        let (ports, calls) = (RefCell::new(Vec::new()), RefCell::new(0));
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let denied = |_| std::future::ready(Err::<u16, _>(io::Error::from(io::ErrorKind::PermissionDenied)));
        let err = udp_and_tcp(any, udp(&ports), denied).await.unwrap_err();
        assert_eq!(ports.borrow().len(), 1);
        assert!(err.starts_with("bind tcp 127.0.0.1:40000: "), "{err}");
        let no_udp = |_| std::future::ready(Err::<(u16, SocketAddr), _>(io::Error::from(io::ErrorKind::AddrInUse)));
        let err = udp_and_tcp(any, no_udp, tcp(0, &calls)).await.unwrap_err();
        assert!(err.starts_with("bind udp 127.0.0.1:0: "), "{err}");
        assert_eq!(*calls.borrow(), 0);
    }
}
