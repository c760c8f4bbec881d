//! [`Cidr`]: an IP network (`10.0.0.0/8`, `fd00::/8`, or one address), for `--udp-allow`; and
//! which addresses the relay never sends datagrams to unless told to ([`is_special_target`]).
//!
//! IPv4 addresses seen as IPv4-mapped IPv6 (`::ffff:10.0.0.5`, what a dual-stack socket reports)
//! are compared as the IPv4 address they carry, so one list works for both kinds of socket.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An IP network: an address and a prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

/// The IPv4 address inside an IPv4-mapped IPv6 address, or `ip` itself.
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl Cidr {
    /// The network of `addr` with `prefix` leading bits (at most 32 for IPv4, 128 for IPv6).
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Cidr> {
        let addr = canonical(addr);
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Cidr { addr, prefix })
    }

    /// The loopback networks, `127.0.0.0/8` and `::1/128`.
    pub fn loopback() -> [Cidr; 2] {
        [
            Cidr { addr: IpAddr::from([127, 0, 0, 0]), prefix: 8 },
            Cidr { addr: IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]), prefix: 128 },
        ]
    }

    /// Whether `ip` is inside this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => same_prefix(&net.octets(), &ip.octets(), self.prefix),
            (IpAddr::V6(net), IpAddr::V6(ip)) => same_prefix(&net.octets(), &ip.octets(), self.prefix),
            _ => false,
        }
    }
}

fn same_prefix(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let (whole, rest) = ((prefix / 8) as usize, prefix % 8);
    if a[..whole] != b[..whole] {
        return false;
    }
    rest == 0 || (a[whole] ^ b[whole]) >> (8 - rest) == 0
}

/// Not an `ip/prefix` or an IP address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CidrError(String);

impl fmt::Display for CidrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} is not an IP network (ip/prefix, e.g. 10.0.0.0/8) nor an IP address", self.0)
    }
}

impl std::error::Error for CidrError {}

impl FromStr for Cidr {
    type Err = CidrError;

    /// `ip/prefix`, or a bare IP (the network of that one address).
    fn from_str(s: &str) -> Result<Cidr, CidrError> {
        let err = || CidrError(s.to_string());
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, prefix)) => (ip, Some(prefix.parse::<u8>().map_err(|_| err())?)),
            None => (s, None),
        };
        let ip: IpAddr = ip.parse().map_err(|_| err())?;
        let prefix = prefix.unwrap_or(if canonical(ip).is_ipv4() { 32 } else { 128 });
        Cidr::new(ip, prefix).ok_or_else(err)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Whether any of `list` contains `ip`.
pub(crate) fn any_contains(list: &[Cidr], ip: IpAddr) -> bool {
    list.iter().any(|c| c.contains(ip))
}

/// Addresses no datagram is sent to unless `--udp-allow` names them (or, for loopback, the relay
/// itself is on loopback): loopback (the relay's own host), unspecified, multicast and the IPv4
/// broadcast address. A native member is never at one of these, so a request to send there is
/// someone using the relay to reach what it should not.
pub(crate) fn is_special_target(ip: IpAddr) -> bool {
    let ip = canonical(ip);
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.is_unspecified() || v6.is_multicast(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_network_contains_the_addresses_under_its_prefix_only() {
        let net: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(net.contains(ip("10.1.200.3")));
        assert!(!net.contains(ip("10.2.0.1")));
        let odd: Cidr = "192.168.4.0/22".parse().unwrap();
        assert!(odd.contains(ip("192.168.7.255")));
        assert!(!odd.contains(ip("192.168.8.0")));
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains(ip("fd12::1")) && !v6.contains(ip("fe80::1")));
        assert!("0.0.0.0/0".parse::<Cidr>().unwrap().contains(ip("203.0.113.9")));
    }

    #[test]
    fn a_bare_address_is_a_network_of_one_and_mapped_ipv4_matches_ipv4() {
        let one: Cidr = "203.0.113.7".parse().unwrap();
        assert_eq!(one.to_string(), "203.0.113.7/32");
        assert!(one.contains(ip("::ffff:203.0.113.7")));
        assert!(!one.contains(ip("203.0.113.8")));
        assert!(!"::/0".parse::<Cidr>().unwrap().contains(ip("10.0.0.1")), "families do not mix");
    }

    #[test]
    fn malformed_networks_are_refused() {
        for bad in ["10.0.0.0/33", "::/129", "10.0.0/8", "host/8", "10.0.0.0/", ""] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn loopback_unspecified_multicast_and_broadcast_are_special_targets_and_private_ranges_are_not() {
        for special in ["127.0.0.1", "127.9.9.9", "::1", "0.0.0.0", "::", "224.0.0.1", "ff02::1", "255.255.255.255"] {
            assert!(is_special_target(ip(special)), "{special}");
        }
        assert!(is_special_target(ip("::ffff:127.0.0.1")));
        for normal in ["10.0.0.5", "192.168.1.2", "203.0.113.7", "fd00::5"] {
            assert!(!is_special_target(ip(normal)), "{normal}");
        }
    }
}
