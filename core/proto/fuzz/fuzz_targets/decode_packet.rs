//! Arbitrary bytes into the packet decoder, for each address type the crate implements.
//!
//! Checks that decoding never panics and, whenever a packet decodes, that re-encoding its messages
//! (`begin_packet` + `Message::encode`) yields a packet that decodes to the very same messages, that
//! the re-encoding is canonical (encoding the re-decoded messages gives identical bytes), and that
//! `Message::to_bytes` is exactly what `encode` appends.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_core::wire::{begin_packet, decode_packet, decode_packet_skipping, Message, Writer};
use shoal_core::Address;

fn encode_packet<A: Address>(version: u8, messages: &[Message<A>]) -> Vec<u8> {
    let mut w = Writer::default();
    begin_packet(&mut w, version);
    for m in messages {
        let before = w.len();
        m.encode(&mut w);
        assert_eq!(w.len() - before, m.to_bytes().len(), "to_bytes disagrees with encode for {m:?}");
    }
    w.into_vec()
}

fn check<A: Address>(data: &[u8]) {
    let mut out: Vec<Message<A>> = Vec::new();
    let decoded = decode_packet::<A>(data, &mut out);

    // The skipping decoder must agree with the plain one on whether the packet is well-formed when it
    // skips nothing, and must not panic when it skips every message.
    let mut other: Vec<Message<A>> = Vec::new();
    let skipping = decode_packet_skipping::<A>(data, &mut other, |_, _| false);
    assert_eq!(decoded, skipping);
    assert_eq!(out, other);
    let _ = decode_packet_skipping::<A>(data, &mut other, |_, _| true);

    let Ok(_skipped) = decoded else {
        assert!(out.is_empty(), "a failed decode must leave no messages behind");
        return;
    };
    if out.is_empty() {
        // Only messages of unknown type: re-encoding them yields a bare header, which is `Empty`.
        return;
    }
    let bytes = encode_packet(data[0], &out);
    let mut again: Vec<Message<A>> = Vec::new();
    let skipped = decode_packet::<A>(&bytes, &mut again)
        .unwrap_or_else(|e| panic!("re-encoded packet fails to decode: {e:?}\nmessages: {out:?}"));
    assert_eq!(skipped, 0, "re-encoded packet holds only known messages");
    assert_eq!(again, out, "re-encoded packet decodes to different messages");
    assert_eq!(encode_packet(data[0], &again), bytes, "encoding is not canonical");
}

fuzz_target!(|data: &[u8]| {
    check::<u32>(data);
    check::<String>(data);
    check::<std::net::SocketAddr>(data);
});
