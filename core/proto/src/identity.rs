//! Who a member is: a [`NodeId`] (its name, unique in the cluster) and an address of the driver's
//! choosing (the [`Address`] trait).
//!
//! Names are what users see and what every protocol message is keyed by; addresses are where packets
//! go. The same name may move to a new address after a restart, but never while the old holder is
//! believed alive: a conflicting claim is reported as an event instead of silently accepted.
//!
//! `NodeId` keeps names of up to [`NodeId::INLINE_CAPACITY`] bytes inline (no allocation, cheap to
//! clone and compare), which matters when the simulator holds ten thousand nodes that each know ten
//! thousand others. Longer names (up to [`NodeId::MAX_LEN`]) share one heap allocation.

use alloc::string::String;
use alloc::sync::Arc;
use core::fmt;
use core::hash::{Hash, Hasher};

use crate::wire::{DecodeError, Reader, Writer};

/// The unique name of a cluster member (1 to 255 bytes of UTF-8).
#[derive(Clone)]
pub struct NodeId(Repr);

#[derive(Clone)]
enum Repr {
    Inline { len: u8, bytes: [u8; NodeId::INLINE_CAPACITY] },
    Shared(Arc<String>),
}

/// Why a string cannot be a [`NodeId`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvalidNodeId {
    /// The name is empty.
    Empty,
    /// The name is longer than [`NodeId::MAX_LEN`] bytes.
    TooLong,
}

impl fmt::Display for InvalidNodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvalidNodeId::Empty => f.write_str("a node name must not be empty"),
            InvalidNodeId::TooLong => {
                write!(f, "a node name must be at most {} bytes", NodeId::MAX_LEN)
            }
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for InvalidNodeId {}

impl NodeId {
    /// Names up to this many bytes are stored without allocating.
    pub const INLINE_CAPACITY: usize = 14;
    /// The longest name accepted, in bytes.
    pub const MAX_LEN: usize = 255;

    /// Validates and stores a name. Call once per name; clones are cheap afterwards.
    pub fn new(name: &str) -> Result<Self, InvalidNodeId> {
        if name.is_empty() {
            return Err(InvalidNodeId::Empty);
        }
        if name.len() > Self::MAX_LEN {
            return Err(InvalidNodeId::TooLong);
        }
        if name.len() <= Self::INLINE_CAPACITY {
            let mut bytes = [0u8; Self::INLINE_CAPACITY];
            bytes[..name.len()].copy_from_slice(name.as_bytes());
            Ok(NodeId(Repr::Inline { len: name.len() as u8, bytes }))
        } else {
            Ok(NodeId(Repr::Shared(Arc::new(String::from(name)))))
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            // Inline bytes were copied from a `&str`, so they are valid UTF-8 by construction;
            // the checked conversion keeps this free of `unsafe` and never fails.
            Repr::Inline { len, bytes } => core::str::from_utf8(&bytes[..*len as usize]).unwrap_or(""),
            Repr::Shared(s) => s.as_str(),
        }
    }

    /// The name's UTF-8 bytes. Comparisons and hashing use these (no UTF-8 re-validation on the hot path).
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline { len, bytes } => &bytes[..*len as usize],
            Repr::Shared(s) => s.as_bytes(),
        }
    }

    pub(crate) fn encode(&self, w: &mut Writer) {
        w.bytes(self.as_bytes());
    }

    pub(crate) fn encoded_len(&self) -> usize {
        crate::wire::bytes_len(self.as_bytes().len())
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let s = r.str()?;
        NodeId::new(s).map_err(|_| DecodeError::InvalidName)
    }
}

impl PartialEq for NodeId {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}
impl Eq for NodeId {}

impl PartialOrd for NodeId {
    fn partial_cmp(&self, other: &Self) -> Option<core::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for NodeId {
    fn cmp(&self, other: &Self) -> core::cmp::Ordering {
        // Byte order of UTF-8 is code point order, the same as `str`'s.
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl Hash for NodeId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write(self.as_bytes());
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<&str> for NodeId {
    type Error = InvalidNodeId;
    fn try_from(value: &str) -> Result<Self, Self::Error> {
        NodeId::new(value)
    }
}

/// An address the driver can send packets to, and that members announce to each other.
///
/// The core only compares, hashes, stores and serializes addresses; what they mean is the driver's
/// business. Implementations exist for `u32`/`u64` (the simulator), [`core::net::SocketAddr`] and
/// `String` (for scheme-qualified addresses such as `relay://host:port/peer`).
///
/// `decode` must never panic and must consume exactly what `encode` wrote.
pub trait Address: Clone + Eq + Ord + core::hash::Hash + fmt::Debug {
    /// Appends the wire form of the address.
    fn encode(&self, w: &mut Writer);
    /// The number of bytes `encode` appends.
    fn encoded_len(&self) -> usize;
    /// Reads an address written by `encode`.
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError>;

    /// The largest reliable frame the path to this address carries, if smaller than the node's
    /// `max_reliable_size` (a relay forwards frames of a few tens of KiB). Push-pull state sent there
    /// is cut to fit, live members first.
    fn reliable_limit(&self) -> Option<usize> {
        None
    }

    /// For an address through a relay: the relay (`host:port`, as this address names it) and the
    /// member's peer id there. A member that reconnects through another relay of the fleet keeps
    /// its peer id, and the cluster takes its new address as a move (see [`crate::Node::move_to`]).
    fn relay_route(&self) -> Option<(&str, &str)> {
        None
    }
}

impl Address for u32 {
    fn encode(&self, w: &mut Writer) {
        w.varint(u64::from(*self));
    }
    fn encoded_len(&self) -> usize {
        crate::wire::varint_len(u64::from(*self))
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        u32::try_from(r.varint()?).map_err(|_| DecodeError::InvalidAddress)
    }
}

impl Address for u64 {
    fn encode(&self, w: &mut Writer) {
        w.varint(*self);
    }
    fn encoded_len(&self) -> usize {
        crate::wire::varint_len(*self)
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.varint()
    }
}

impl Address for String {
    fn encode(&self, w: &mut Writer) {
        w.str(self);
    }
    fn encoded_len(&self) -> usize {
        crate::wire::bytes_len(self.len())
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let s = r.str()?;
        if s.len() > 1024 {
            return Err(DecodeError::InvalidAddress);
        }
        Ok(String::from(s))
    }
}

impl Address for core::net::SocketAddr {
    fn encode(&self, w: &mut Writer) {
        match self {
            core::net::SocketAddr::V4(v4) => {
                w.u8(4);
                w.raw(&v4.ip().octets());
            }
            core::net::SocketAddr::V6(v6) => {
                w.u8(6);
                w.raw(&v6.ip().octets());
            }
        }
        w.raw(&self.port().to_be_bytes());
    }
    fn encoded_len(&self) -> usize {
        match self {
            core::net::SocketAddr::V4(_) => 1 + 4 + 2,
            core::net::SocketAddr::V6(_) => 1 + 16 + 2,
        }
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
        let ip = match r.u8()? {
            4 => IpAddr::V4(Ipv4Addr::from(r.array::<4>()?)),
            6 => IpAddr::V6(Ipv6Addr::from(r.array::<16>()?)),
            _ => return Err(DecodeError::InvalidAddress),
        };
        let port = u16::from_be_bytes(r.array::<2>()?);
        Ok(SocketAddr::new(ip, port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_names_compare_by_their_text() {
        let short = NodeId::new("web-1").unwrap();
        let long = NodeId::new("a-rather-long-node-name.example").unwrap();
        assert_eq!(short.as_str(), "web-1");
        assert_eq!(long.as_str(), "a-rather-long-node-name.example");
        assert!(short > long);
        assert_eq!(short, NodeId::new("web-1").unwrap());
    }

    #[test]
    fn empty_and_oversized_names_are_rejected() {
        assert_eq!(NodeId::new(""), Err(InvalidNodeId::Empty));
        let huge = "x".repeat(NodeId::MAX_LEN + 1);
        assert_eq!(NodeId::new(&huge), Err(InvalidNodeId::TooLong));
        assert!(NodeId::new(&huge[..NodeId::MAX_LEN]).is_ok());
    }

    #[test]
    fn socket_addresses_round_trip_through_the_wire_form() {
        for text in ["127.0.0.1:7946", "[::1]:9", "10.1.2.3:65535"] {
            let addr: core::net::SocketAddr = text.parse().unwrap();
            let mut w = Writer::with_capacity(32);
            addr.encode(&mut w);
            assert_eq!(w.len(), addr.encoded_len());
            let bytes = w.into_vec();
            let mut r = Reader::new(&bytes);
            assert_eq!(core::net::SocketAddr::decode(&mut r).unwrap(), addr);
            assert!(r.is_empty());
        }
    }
}
