//! The wire format: compact, versioned, and safe on hostile input.
//!
//! **Decoding never panics on any input.** Every read is bounds-checked, every length is checked
//! against what the input actually holds before anything is allocated, and every failure is a typed
//! [`DecodeError`]. A packet either decodes whole or is rejected whole, so a malformed packet never
//! changes a node's state. The `wire_rejects_garbage` tests and the fuzz target back this up.
//!
//! Packets never exceed the configured size: the node measures every message before adding it and
//! piggybacks gossip only into the space that is left.
//!
//! Public here: the protocol versions, the topic limit and [`DecodeError`]. The codec itself
//! (`Writer`, `Reader`, the message structs, packet framing) is public only with feature
//! `wire-internals`, for fuzzing and for tools that craft packets.

mod codec;
mod message;
#[cfg(test)]
mod tests;

pub use codec::DecodeError;
pub use message::{
    MAX_ACK_PAYLOAD, MAX_MEMBER_DIGEST_BUCKETS, MAX_QUERY_TAGS, MAX_TOPIC_LEN, MAX_WANTED_RECORDS,
    MIN_PROTOCOL_VERSION, PROTOCOL_VERSION,
};

// The codec and the message structs are internals. Feature `wire-internals` exposes them to fuzz
// targets, the simulator's adversaries and benchmarks that craft packets; they are not a stable API.
#[cfg(feature = "wire-internals")]
pub use codec::{bytes_len, varint_len, Reader, Writer};
#[cfg(not(feature = "wire-internals"))]
pub(crate) use codec::{bytes_len, varint_len, Reader, Writer};
#[cfg(all(test, not(feature = "wire-internals")))]
pub(crate) use message::decode_packet;
pub(crate) use message::with_ttl;
#[cfg(all(feature = "wire-internals", any(feature = "queries", test)))]
pub use message::Query;
#[cfg(all(not(feature = "wire-internals"), any(feature = "queries", test)))]
pub(crate) use message::Query;
#[cfg(feature = "wire-internals")]
pub use message::{
    begin_packet, decode_message, decode_packet, decode_packet_skipping, is_update_tag, skips_repeats, Alive, Decoded,
    DigestEntry, MemberRecord, Message, MetaField, Ping, UserBroadcast, MAX_DIGEST_HOLES,
};
#[cfg(not(feature = "wire-internals"))]
pub(crate) use message::{
    begin_packet, decode_message, decode_packet_skipping, skips_repeats, Alive, Decoded, DigestEntry, MemberRecord,
    Message, MetaField, Ping, UserBroadcast, MAX_DIGEST_HOLES,
};
