//! Scheme-qualified addresses: what drivers put in the core's address slot.
//!
//! `udp://127.0.0.1:7946`, `tcp://10.0.0.5:7946`, `relay://relay.example:8080/peer-id`, `rtc://peer-id`.
//! The scheme says which transport plugin carries packets there; the router asks every plugin
//! whether it claims an address. A member advertises one address; plugins that need another
//! (TCP reaching a `udp://` member for reliable frames) derive it from the same host and port.

use alloc::boxed::Box;
use alloc::format;
use alloc::sync::Arc;
use core::fmt;
use core::net::SocketAddr;
use core::str::FromStr;

use crate::identity::Address;
use crate::wire::{DecodeError, Reader, Writer};

/// Longest address accepted, in bytes.
pub const MAX_ADDR_LEN: usize = 512;

/// A scheme-qualified address (`scheme://rest`), cheap to clone. Parsed once: the scheme and, for
/// `udp`/`tcp`, the socket address are kept, so sending to it parses nothing.
#[derive(Clone)]
pub struct Addr(Arc<Parsed>);

struct Parsed {
    text: Box<str>,
    scheme_len: usize,
    socket: Option<SocketAddr>,
}

impl PartialEq for Addr {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.text == other.0.text
    }
}
impl Eq for Addr {}
impl PartialOrd for Addr {
    fn partial_cmp(&self, other: &Self) -> Option<core::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Addr {
    fn cmp(&self, other: &Self) -> core::cmp::Ordering {
        self.0.text.cmp(&other.0.text)
    }
}
impl core::hash::Hash for Addr {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.0.text.hash(state)
    }
}

/// Why a string is not an [`Addr`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AddrError {
    /// No `scheme://` prefix, or an empty scheme or rest.
    MissingScheme,
    /// Longer than [`MAX_ADDR_LEN`].
    TooLong,
    /// The scheme needs `host:port` and the rest is not one.
    BadSocketAddr,
}

impl fmt::Display for AddrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddrError::MissingScheme => f.write_str("address must look like scheme://rest"),
            AddrError::TooLong => write!(f, "address longer than {MAX_ADDR_LEN} bytes"),
            AddrError::BadSocketAddr => f.write_str("udp:// and tcp:// addresses need ip:port"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for AddrError {}

impl Addr {
    /// Parses `scheme://rest`. `udp` and `tcp` addresses must carry an `ip:port`.
    pub fn parse(s: &str) -> Result<Addr, AddrError> {
        if s.len() > MAX_ADDR_LEN {
            return Err(AddrError::TooLong);
        }
        // The first `://`, found by bytes and cut with `get`: the same split as `split_once("://")`
        // (an ASCII byte is always a char boundary), without the substring searcher and the
        // slicing panic, whose message formatting is a few KB of the wasm build.
        let at = s.as_bytes().windows(3).position(|w| w == b"://").ok_or(AddrError::MissingScheme)?;
        let (Some(scheme), Some(rest)) = (s.get(..at), s.get(at + 3..)) else { return Err(AddrError::MissingScheme) };
        if scheme.is_empty() || rest.is_empty() || !scheme.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        {
            return Err(AddrError::MissingScheme);
        }
        #[cfg(not(target_arch = "wasm32"))]
        let socket = match scheme {
            "udp" | "tcp" => Some(rest.parse::<SocketAddr>().map_err(|_| AddrError::BadSocketAddr)?),
            _ => None,
        };
        // Browsers never open these sockets: the same verdict, without std's parser (see
        // `socket_syntax`), and no value.
        #[cfg(target_arch = "wasm32")]
        let socket = match scheme {
            "udp" | "tcp" if !crate::socket_syntax::is_socket_addr(rest) => return Err(AddrError::BadSocketAddr),
            _ => None,
        };
        Ok(Addr(Arc::new(Parsed { text: s.into(), scheme_len: scheme.len(), socket })))
    }

    /// `udp://ip:port`.
    pub fn udp(sa: SocketAddr) -> Addr {
        Addr(Arc::new(Parsed { text: format!("udp://{sa}").into(), scheme_len: 3, socket: Some(sa) }))
    }

    /// `tcp://ip:port`.
    pub fn tcp(sa: SocketAddr) -> Addr {
        Addr(Arc::new(Parsed { text: format!("tcp://{sa}").into(), scheme_len: 3, socket: Some(sa) }))
    }

    /// The scheme (`udp`, `tcp`, `relay`, `rtc`, ...).
    pub fn scheme(&self) -> &str {
        // `scheme_len` ends at the ASCII `://`, a char boundary: `get` never fails, and unlike
        // slicing it links no panic formatting into the wasm build.
        self.0.text.get(..self.0.scheme_len).unwrap_or_default()
    }

    /// Everything after `scheme://`.
    pub fn rest(&self) -> &str {
        self.0.text.get(self.0.scheme_len + 3..).unwrap_or_default()
    }

    /// The socket address of a `udp://` or `tcp://` address (always `None` in the wasm build,
    /// which checks such addresses but never opens their sockets).
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        self.0.socket
    }

    /// The whole address as text.
    pub fn as_str(&self) -> &str {
        &self.0.text
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Addr {
    type Err = AddrError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Addr::parse(s)
    }
}

impl Address for Addr {
    fn encode(&self, w: &mut Writer) {
        w.str(self.as_str());
    }
    fn encoded_len(&self) -> usize {
        crate::wire::bytes_len(self.0.text.len())
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Addr::parse(r.str()?).map_err(|_| DecodeError::InvalidAddress)
    }

    fn reliable_limit(&self) -> Option<usize> {
        (self.scheme() == crate::relay::RELAY_SCHEME).then_some(crate::relay::RELAYED_RELIABLE_LIMIT)
    }

    fn relay_route(&self) -> Option<(&str, &str)> {
        // No peer id check (`relay::split_relay_addr` adds it): the move rule compares peer ids,
        // whatever they hold. A byte search, not `rsplit_once`: `/` is ASCII, so its position is a
        // char boundary, and the wasm build links no string searcher.
        if self.scheme() != crate::relay::RELAY_SCHEME {
            return None;
        }
        let rest = self.rest();
        let slash = rest.bytes().rposition(|b| b == b'/')?;
        Some((rest.get(..slash)?, rest.get(slash + 1..)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_split_into_scheme_and_rest() {
        let a = Addr::parse("relay://relay.example:8080/peer-7").unwrap();
        assert_eq!(a.scheme(), "relay");
        assert_eq!(a.rest(), "relay.example:8080/peer-7");
        assert_eq!(a.socket_addr(), None);
        let u = Addr::parse("udp://127.0.0.1:7946").unwrap();
        assert_eq!(u.socket_addr(), Some("127.0.0.1:7946".parse().unwrap()));
        assert_eq!(u, Addr::udp("127.0.0.1:7946".parse().unwrap()));
    }

    #[test]
    fn malformed_addresses_are_rejected() {
        assert_eq!(Addr::parse("127.0.0.1:7946"), Err(AddrError::MissingScheme));
        assert_eq!(Addr::parse("udp://not-an-ip"), Err(AddrError::BadSocketAddr));
        assert_eq!(Addr::parse("UDP://1.2.3.4:5"), Err(AddrError::MissingScheme));
        assert_eq!(Addr::parse(&format!("rtc://{}", "x".repeat(MAX_ADDR_LEN))), Err(AddrError::TooLong));
    }

    #[test]
    fn addresses_round_trip_through_the_wire() {
        let a = Addr::parse("tcp://[::1]:9").unwrap();
        let mut w = Writer::default();
        a.encode(&mut w);
        assert_eq!(w.len(), a.encoded_len());
        assert_eq!(Addr::decode(&mut Reader::new(w.as_slice())).unwrap(), a);
    }
}
