//! Starting a member on one UDP + TCP port: [`Cluster::bind`](crate::Cluster::bind) and
//! [`ClusterBuilder::bind`](crate::ClusterBuilder::bind) (features `udp` and `tcp`).
//!
//! UDP carries probes and gossip; TCP on the same port carries push-pull and reliable messages, as
//! in memberlist. UDP is bound first, then TCP on the port UDP got. With a fixed port either bind
//! fails as the OS says. With port 0 the TCP port can already be taken (by another listener, or as
//! the local port of an outgoing TCP connection: the OS hands out UDP and TCP ports
//! independently), so the pair is tried again on a fresh UDP port, up to [`PAIR_ATTEMPTS`] times.
//!
//! A member bound to an unspecified address (`0.0.0.0`, `::`) advertises the address of the
//! interface its host routes outbound traffic from (no packet is sent to find it), or loopback on
//! a host with no route. Set [`ClusterBuilder::advertise`](crate::ClusterBuilder::advertise) when
//! that is not the address other members reach it at (NAT, several interfaces).

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// How many UDP ports are tried with port 0 before giving up.
pub const PAIR_ATTEMPTS: usize = 32;

/// Binds UDP on `addr` with `bind_udp` (which returns the socket and the address it got), then TCP
/// on that address with `bind_tcp`; returns the two and the shared address. With port 0, a TCP bind
/// that fails with `AddrInUse` starts over on a fresh UDP port (the sockets of failed attempts are
/// held until the end, so that the OS cannot hand the same port out again). Error messages read
/// `bind udp ADDR: ...` or `bind tcp ADDR: ...`, and keep the OS error's kind.
pub(crate) async fn pair<U, T, FU, FT>(
    addr: SocketAddr,
    mut bind_udp: impl FnMut(SocketAddr) -> FU,
    mut bind_tcp: impl FnMut(SocketAddr) -> FT,
) -> io::Result<(U, T, SocketAddr)>
where
    FU: Future<Output = io::Result<(U, SocketAddr)>>,
    FT: Future<Output = io::Result<T>>,
{
    let context = |what: &str, at: SocketAddr, e: io::Error| io::Error::new(e.kind(), format!("bind {what} {at}: {e}"));
    let attempts = if addr.port() == 0 { PAIR_ATTEMPTS } else { 1 };
    let mut tried = Vec::new();
    let mut last = None;
    for _ in 0..attempts {
        let (udp, bound) = bind_udp(addr).await.map_err(|e| context("udp", addr, e))?;
        match bind_tcp(bound).await {
            Ok(tcp) => return Ok((udp, tcp, bound)),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && addr.port() == 0 => {
                tracing::debug!(%bound, "tcp port taken, trying another udp port");
                tried.push(udp);
                last = Some(context("tcp", bound, e));
            }
            Err(e) => return Err(context("tcp", bound, e)),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::AddrInUse, format!("bind tcp {addr}: no port free"))))
}

/// Binds a [`UdpTransport`](shoal_udp::UdpTransport) and a [`TcpTransport`](shoal_tcp::TcpTransport)
/// on one port of `addr` (port 0: any free port), the TCP side advertising `advertise` (default: the
/// UDP address it got, with an unspecified IP replaced as the [module](self) says). Call it to wire the pair into a member of your own, for example next to a
/// WebRTC plugin; [`ClusterBuilder::bind`](crate::ClusterBuilder::bind) does it for you.
#[cfg(all(feature = "udp", feature = "tcp"))]
pub async fn udp_and_tcp(
    addr: SocketAddr,
    advertise: Option<crate::Addr>,
) -> io::Result<(std::sync::Arc<shoal_udp::UdpTransport>, std::sync::Arc<shoal_tcp::TcpTransport>)> {
    use shoal_tcp::{TcpOptions, TcpTransport};
    let bind_udp = |at| async move {
        let udp = shoal_udp::UdpTransport::bind(at).await?;
        let bound = udp.local_socket_addr();
        Ok((udp, bound))
    };
    let bind_tcp = |bound| {
        let advertise = advertise.clone().unwrap_or_else(|| crate::Addr::udp(advertised(bound)));
        TcpTransport::bind(bound, TcpOptions { advertise: Some(advertise), ..TcpOptions::default() })
    };
    let (udp, tcp, _) = pair(addr, bind_udp, bind_tcp).await?;
    Ok((udp, tcp))
}

/// The address to advertise for a socket bound to `bound`: `bound` itself, unless its IP is
/// unspecified, in which case the IP of the interface the host would send outbound traffic from
/// (found by connecting a UDP socket, which sends nothing), or loopback without a route.
pub(crate) fn advertised(bound: SocketAddr) -> SocketAddr {
    if !bound.ip().is_unspecified() {
        return bound;
    }
    let (any, probe, loopback): (IpAddr, IpAddr, IpAddr) = if bound.is_ipv4() {
        // TEST-NET-1 (RFC 5737): never a real destination, routed like any other.
        (Ipv4Addr::UNSPECIFIED.into(), Ipv4Addr::new(192, 0, 2, 1).into(), Ipv4Addr::LOCALHOST.into())
    } else {
        // The documentation prefix (RFC 3849).
        (
            Ipv6Addr::UNSPECIFIED.into(),
            Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1).into(),
            Ipv6Addr::LOCALHOST.into(),
        )
    };
    let routed = std::net::UdpSocket::bind(SocketAddr::new(any, 0))
        .and_then(|s| s.connect(SocketAddr::new(probe, 9)).and_then(|()| s.local_addr()))
        .map(|a| a.ip())
        .ok()
        .filter(|ip| !ip.is_unspecified());
    SocketAddr::new(routed.unwrap_or(loopback), bound.port())
}

/// This host's name, the default member name of [`Cluster::bind`](crate::Cluster::bind) (as in
/// memberlist): the kernel's host name on Linux, else `HOSTNAME` or `COMPUTERNAME`, else `shoal`.
/// Truncated to the 255 bytes a name may have.
pub(crate) fn host_name() -> String {
    let from_kernel = std::fs::read_to_string("/proc/sys/kernel/hostname").ok();
    let name = from_kernel
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "shoal".to_owned());
    let mut end = name.len().min(255);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].to_owned()
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

    fn any_port() -> SocketAddr {
        "127.0.0.1:0".parse().unwrap()
    }

    #[tokio::test]
    async fn a_pair_bind_on_port_0_retries_when_the_tcp_port_is_taken() {
        let (ports, calls) = (RefCell::new(Vec::new()), RefCell::new(0));
        let (udp_port, tcp_port, bound) = pair(any_port(), udp(&ports), tcp(3, &calls)).await.unwrap();
        assert_eq!((udp_port, tcp_port, bound.port()), (40_003, 40_003, 40_003));
        assert_eq!(*ports.borrow(), vec![40_000, 40_001, 40_002, 40_003]);
    }

    #[tokio::test]
    async fn a_pair_bind_on_port_0_gives_up_after_32_taken_tcp_ports_with_the_last_error() {
        let (ports, calls) = (RefCell::new(Vec::new()), RefCell::new(0));
        let err = pair(any_port(), udp(&ports), tcp(usize::MAX, &calls)).await.unwrap_err();
        assert_eq!(*calls.borrow(), PAIR_ATTEMPTS);
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        assert!(err.to_string().starts_with("bind tcp 127.0.0.1:40031: "), "{err}");
    }

    #[tokio::test]
    async fn a_pair_bind_on_a_fixed_port_is_not_retried() {
        let (ports, calls) = (RefCell::new(Vec::new()), RefCell::new(0));
        let err = pair("127.0.0.1:7946".parse().unwrap(), udp(&ports), tcp(1, &calls)).await.unwrap_err();
        assert_eq!((*calls.borrow(), ports.borrow().len()), (1, 1));
        assert!(err.to_string().starts_with("bind tcp 127.0.0.1:7946: "), "{err}");
    }

    #[tokio::test]
    async fn a_pair_bind_on_port_0_fails_at_once_on_other_tcp_errors_and_on_udp_errors() {
        let (ports, calls) = (RefCell::new(Vec::new()), RefCell::new(0));
        let denied = |_| std::future::ready(Err::<u16, _>(io::Error::from(io::ErrorKind::PermissionDenied)));
        let err = pair(any_port(), udp(&ports), denied).await.unwrap_err();
        assert_eq!((ports.borrow().len(), err.kind()), (1, io::ErrorKind::PermissionDenied));
        let no_udp =
            |_| std::future::ready(Err::<(u16, SocketAddr), _>(io::Error::from(io::ErrorKind::AddrNotAvailable)));
        let err = pair(any_port(), no_udp, tcp(0, &calls)).await.unwrap_err();
        assert_eq!((*calls.borrow(), err.kind()), (0, io::ErrorKind::AddrNotAvailable));
        assert!(err.to_string().starts_with("bind udp 127.0.0.1:0: "), "{err}");
    }

    #[test]
    fn a_member_bound_to_an_unspecified_address_advertises_a_specified_one_on_the_same_port() {
        for bound in ["0.0.0.0:7946", "[::]:7946"] {
            let advertised = advertised(bound.parse().unwrap());
            assert!(!advertised.ip().is_unspecified(), "{bound} advertised as {advertised}");
            assert_eq!(advertised.port(), 7946);
        }
        let fixed: SocketAddr = "10.1.2.3:7000".parse().unwrap();
        assert_eq!(advertised(fixed), fixed);
    }

    #[test]
    fn the_default_member_name_is_a_valid_node_name() {
        let name = host_name();
        assert!(shoal_core::NodeId::new(&name).is_ok(), "{name:?}");
    }
}
