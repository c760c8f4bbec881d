//! The wire format: compact, versioned, and safe on hostile input.
//!
//! **Decoding never panics on any input.** Every read is bounds-checked, every length is checked
//! against what the input actually holds before anything is allocated, and every failure is a typed
//! [`DecodeError`]. A packet either decodes whole or is rejected whole, so a malformed packet never
//! changes a node's state. The `wire_rejects_garbage` tests and the fuzz target back this up.
//!
//! Packets never exceed the configured size: the node measures every message before adding it and
//! piggybacks gossip only into the space that is left.

mod codec;
mod message;
#[cfg(test)]
mod tests;

pub use codec::{bytes_len, varint_len, DecodeError, Reader, Writer};
pub use message::{
    begin_packet, decode_message, decode_packet, decode_packet_skipping, is_update_tag, skips_repeats, Alive, Decoded,
    DigestEntry, MemberRecord, Message, MetaField, Ping, UserBroadcast, MAX_DIGEST_HOLES, MAX_TOPIC_LEN,
    MIN_PROTOCOL_VERSION, PROTOCOL_VERSION,
};
