//! Where a sender's nonces come from: two independent nonce spaces, one for datagrams and one for
//! reliable frames.
//!
//! A nonce is `prefix (8 bytes) || counter (4 bytes, big-endian)`. Each space has its own prefix,
//! drawn from an AES-256 counter-mode generator the host seeds, and its own counter, which counts the packets
//! sealed in that space. When a counter is spent, the space draws a fresh prefix and starts over.
//! Every prefix drawn differs from the other space's current prefix and from the one it replaces,
//! so no nonce repeats within a life and the two spaces never share a prefix.
//!
//! Why two: receivers keep one replay window per prefix (see `replay`), and a window only reaches
//! 1,024 counters below the newest one it saw. Datagrams go out at once, but a reliable frame may
//! wait behind a TCP connect or a large frame; with one shared counter it could arrive after
//! datagrams sealed more than 1,024 packets later and be refused as a replay. In a space of their
//! own, reliable frames only compete with each other, and the transport delivers those in order
//! per destination.

use aes_gcm::aes::cipher::{BlockEncrypt, KeyInit};
use aes_gcm::aes::Aes256;

/// Length of a nonce in bytes.
const NONCE_LEN: usize = 12;

/// One prefix and the counter running under it.
#[derive(Clone, Copy, Debug)]
struct Space {
    prefix: u64,
    counter: u32,
}

impl Space {
    fn nonce(&self) -> [u8; NONCE_LEN] {
        let mut nonce = [0u8; NONCE_LEN];
        nonce[..8].copy_from_slice(&self.prefix.to_be_bytes());
        nonce[8..].copy_from_slice(&self.counter.to_be_bytes());
        nonce
    }
}

/// A sender's two nonce spaces and the generator their prefixes come from.
pub(crate) struct NonceSource {
    rng: PrefixRng,
    datagrams: Space,
    reliable: Space,
}

impl NonceSource {
    /// Starts both spaces under fresh, distinct prefixes. Call once per keyring installation, with
    /// 32 bytes of host entropy (the core never asks the OS for randomness).
    pub fn new(entropy: [u8; 32]) -> Self {
        let mut rng = PrefixRng::new(entropy);
        let datagrams = Space { prefix: rng.next_u64(), counter: 0 };
        let reliable = Space { prefix: draw_prefix(&mut rng, &[datagrams.prefix]), counter: 0 };
        NonceSource { rng, datagrams, reliable }
    }

    /// The nonce for the next packet to seal: from the reliable space when the packet travels as a
    /// reliable frame, from the datagram space otherwise. Call exactly once per sealed packet.
    pub fn next(&mut self, reliable: bool) -> [u8; NONCE_LEN] {
        let (space, other) = if reliable {
            (&mut self.reliable, self.datagrams.prefix)
        } else {
            (&mut self.datagrams, self.reliable.prefix)
        };
        if space.counter == u32::MAX {
            space.prefix = draw_prefix(&mut self.rng, &[space.prefix, other]);
            space.counter = 0;
        }
        space.counter += 1;
        space.nonce()
    }
}

/// Where prefixes come from: AES-256 in counter mode, keyed with the host's 32 bytes of entropy, a
/// CSPRNG made of the cipher the node already carries (a separate stream cipher would add 8 KB to
/// the WebAssembly build). Prefixes are drawn rarely: two per life, and one per 2^32 packets.
pub(crate) struct PrefixRng {
    cipher: Aes256,
    counter: u128,
}

impl PrefixRng {
    pub fn new(entropy: [u8; 32]) -> Self {
        PrefixRng { cipher: Aes256::new(&entropy.into()), counter: 0 }
    }

    /// The next 64 pseudo-random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut block = self.counter.to_le_bytes().into();
        self.counter += 1;
        self.cipher.encrypt_block(&mut block);
        let mut first = [0u8; 8];
        first.copy_from_slice(&block[..8]);
        u64::from_le_bytes(first)
    }
}

/// A random prefix different from each of `avoid`.
fn draw_prefix(rng: &mut PrefixRng, avoid: &[u64]) -> u64 {
    loop {
        let prefix = rng.next_u64();
        if !avoid.contains(&prefix) {
            return prefix;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(nonce: &[u8; NONCE_LEN]) -> &[u8] {
        &nonce[..8]
    }

    #[test]
    fn datagrams_and_reliable_frames_count_under_different_prefixes() {
        let mut source = NonceSource::new([3; 32]);
        let d1 = source.next(false);
        let r1 = source.next(true);
        let d2 = source.next(false);
        assert_ne!(prefix(&d1), prefix(&r1));
        assert_eq!(prefix(&d1), prefix(&d2));
        assert_eq!(d1[8..], 1u32.to_be_bytes());
        assert_eq!(d2[8..], 2u32.to_be_bytes());
        assert_eq!(r1[8..], 1u32.to_be_bytes(), "reliable frames do not advance the datagram counter");
    }

    #[test]
    fn a_spent_counter_moves_its_space_to_a_fresh_prefix_and_leaves_the_other_alone() {
        let mut source = NonceSource::new([4; 32]);
        let before = source.next(false);
        let reliable = source.next(true);
        source.datagrams.counter = u32::MAX - 1;
        let last = source.next(false);
        assert_eq!(prefix(&last), prefix(&before));
        assert_eq!(last[8..], u32::MAX.to_be_bytes());
        let wrapped = source.next(false);
        assert_ne!(prefix(&wrapped), prefix(&before));
        assert_ne!(prefix(&wrapped), prefix(&reliable));
        assert_eq!(wrapped[8..], 1u32.to_be_bytes());
        assert_eq!(prefix(&source.next(true)), prefix(&reliable));
    }

    #[test]
    fn the_prefix_generator_is_a_keyed_stream_that_does_not_repeat() {
        let mut a = PrefixRng::new([7; 32]);
        let mut b = PrefixRng::new([7; 32]);
        let mut c = PrefixRng::new([8; 32]);
        let drawn: alloc::vec::Vec<u64> = (0..1_000).map(|_| a.next_u64()).collect();
        assert_eq!(drawn, (0..1_000).map(|_| b.next_u64()).collect::<alloc::vec::Vec<_>>(), "same key, same stream");
        assert_ne!(drawn[0], c.next_u64(), "another key, another stream");
        let mut unique = drawn.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), drawn.len());
    }

    #[test]
    fn a_drawn_prefix_is_never_one_it_must_avoid() {
        let mut probe = PrefixRng::new([5; 32]);
        let first = probe.next_u64();
        let mut rng = PrefixRng::new([5; 32]);
        assert_ne!(draw_prefix(&mut rng, &[first]), first);
    }
}
