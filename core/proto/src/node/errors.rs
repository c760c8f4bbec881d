//! Why a command was refused or a packet dropped: error values that say whose fault it was and that
//! nothing changed.

use core::fmt;

use crate::identity::NodeId;
use crate::security::SecurityError;
use crate::wire::{DecodeError, MAX_TOPIC_LEN};

/// Why a command was refused. No state changed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CommandError {
    /// The caller named a member this node does not know (or that is dead or left).
    UnknownMember(NodeId),
    /// The payload does not fit: best-effort messages and broadcasts must fit in one packet.
    TooLarge {
        /// Bytes of what was refused: the encoded message with its topic and headers (for a
        /// reliable message the whole frame), or the metadata.
        size: usize,
        /// The most bytes allowed: for a broadcast or best-effort message `max_packet_size` less the
        /// encryption overhead and the packet's version byte, for a reliable message
        /// `max_reliable_size`, for metadata `max_meta_size`.
        max: usize,
    },
    /// Topics are at most 255 bytes.
    TopicTooLong,
    /// `join` needs at least one seed address other than our own.
    NoSeeds,
    /// The node has left the cluster and accepts no more commands of this kind.
    NotRunning,
    /// [`crate::Node::force_leave`] named a member that is not failed: alive or suspect members are
    /// not removed by decree (a live one would refute the departure at once).
    NotFailed(NodeId),
    /// A query's filter has more than `MAX_QUERY_TAGS` tag conditions, or a pattern longer than 255
    /// bytes.
    #[cfg(any(feature = "queries", test))]
    FilterTooLarge,
    /// `MAX_PENDING_QUERIES` of our queries are running: wait for one to end.
    #[cfg(any(feature = "queries", test))]
    TooManyQueries,
    /// [`crate::Node::respond`] named a query that is unknown here, past its timeout, or already
    /// answered.
    #[cfg(any(feature = "queries", test))]
    QueryClosed,
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::UnknownMember(id) => write!(f, "unknown or dead member {id}"),
            CommandError::TooLarge { size, max } => {
                write!(f, "payload of {size} bytes exceeds {max}")
            }
            CommandError::TopicTooLong => write!(f, "topic longer than {MAX_TOPIC_LEN} bytes"),
            CommandError::NoSeeds => f.write_str("no seed address to join"),
            CommandError::NotRunning => f.write_str("the node has left the cluster"),
            CommandError::NotFailed(id) => {
                write!(f, "member {id} is not failed; only failed members can be forced out")
            }
            #[cfg(any(feature = "queries", test))]
            CommandError::FilterTooLarge => f.write_str("query filter has too many tags or too long a pattern"),
            #[cfg(any(feature = "queries", test))]
            CommandError::TooManyQueries => f.write_str("too many queries running"),
            #[cfg(any(feature = "queries", test))]
            CommandError::QueryClosed => f.write_str("query unknown, over or already answered"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for CommandError {}

/// Why an incoming packet was dropped (already counted in [`crate::Stats`]; no state changed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PacketError {
    /// The packet is malformed or from an incompatible version: the sender's fault.
    Decode(DecodeError),
    /// Larger than `max_reliable_size`.
    Oversized(usize),
    /// Refused by the security layer (wrong key or label, tampered, replayed, or plaintext when
    /// encryption is required).
    Security(SecurityError),
}

impl fmt::Display for PacketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PacketError::Decode(e) => write!(f, "dropped undecodable packet: {e}"),
            PacketError::Oversized(n) => write!(f, "dropped oversized packet of {n} bytes"),
            PacketError::Security(e) => write!(f, "dropped packet: {e}"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for PacketError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PacketError::Decode(e) => Some(e),
            PacketError::Security(e) => Some(e),
            PacketError::Oversized(_) => None,
        }
    }
}
