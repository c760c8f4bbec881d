//! A fixed 64-bit hash for values members compare with each other: the keyed values a digest
//! summarises. Both sides must compute the same number for the same values, so it takes no seed,
//! reads every integer as little-endian bytes of a fixed width (never `usize`, which is 4 bytes on
//! wasm32), and never changes between versions. FNV-1a over the bytes, then a final mix so that every
//! input bit reaches the low bits too. Not for hash tables fed by others (it is easy to collide on
//! purpose); a collision here only means two members skip one exchange of keyed values.

/// FNV-1a's 64-bit offset basis and prime.
const BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const PRIME: u64 = 0x0000_0100_0000_01b3;

/// A hash being built. Feed the fields in a fixed order, then [`Fingerprint::finish`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Fingerprint(u64);

impl Fingerprint {
    pub fn new() -> Self {
        Fingerprint(BASIS)
    }

    fn bytes(mut self, bytes: &[u8]) -> Self {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(PRIME);
        }
        self
    }

    /// Adds a variable-length field, its length first (so `("ab", "c")` and `("a", "bc")` differ).
    pub fn field(self, bytes: &[u8]) -> Self {
        self.u64(bytes.len() as u64).bytes(bytes)
    }

    pub fn u64(self, v: u64) -> Self {
        self.bytes(&v.to_le_bytes())
    }

    pub fn finish(self) -> u64 {
        let mut x = self.0;
        x ^= x >> 32;
        x = x.wrapping_mul(PRIME);
        x ^ (x >> 29)
    }

    /// The hash of a member's name alone: what the ledger's forgotten origins and the reliable
    /// module's forgotten senders are remembered by (64 bits; a collision, which would take a
    /// deliberate search, only mixes what the two names' forgotten records say).
    pub fn of_name(id: &crate::identity::NodeId) -> u64 {
        Fingerprint::new().field(id.as_str().as_bytes()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_byte_hash_is_fnv_1a() {
        // Published FNV-1a 64 test vectors.
        assert_eq!(Fingerprint::new().bytes(b"").0, 0xcbf2_9ce4_8422_2325);
        assert_eq!(Fingerprint::new().bytes(b"a").0, 0xaf63_dc4c_8601_ec8c);
        assert_eq!(Fingerprint::new().bytes(b"foobar").0, 0x8594_4171_f739_67e8);
    }

    #[test]
    fn fields_are_delimited_and_the_value_never_changes() {
        let of = |a: &[u8], b: &[u8]| Fingerprint::new().field(a).field(b).u64(7).finish();
        assert_ne!(of(b"ab", b"c"), of(b"a", b"bc"));
        // Members of every version and platform must agree: this number is part of the protocol.
        assert_eq!(of(b"topic", b"key"), of(b"topic", b"key"));
        assert_eq!(of(b"topic", b"key"), PINNED);
    }

    /// `of(b"topic", b"key")` above, as computed when the digest format was fixed.
    const PINNED: u64 = 0xa0f8_6897_3566_e18f;
}
