//! Incarnation numbers and how two of them are ordered.
//!
//! An incarnation versions what a member says about itself: only the member raises its own, to
//! refute a suspicion or death, to publish new metadata, or to announce that it leaves. Claims about
//! a member carry the incarnation they are about, and the newer incarnation wins.
//!
//! # Serial-number order
//!
//! Incarnations are `u32` on the wire, and they are compared as serial numbers (the scheme RFC 1982
//! gives for DNS zone serials, and the way TCP orders sequence numbers), not as plain integers:
//!
//! - [`next`] adds one and wraps from `u32::MAX` to `0`;
//! - `a` is newer than `b` ([`is_newer`]) when `a != b` and `a - b`, computed modulo 2^32, is below
//!   2^31: `a` lies in the half of the circle just ahead of `b`;
//! - two incarnations exactly 2^31 apart are unordered: neither is newer.
//!
//! There is therefore no largest incarnation. Whatever claim a member hears about itself at
//! incarnation `c`, `next(c)` is newer than `c`, so a member that is alive can always refute. With
//! plain integer order a single claim at `u32::MAX` (14 bytes of plaintext, or one message from a
//! buggy or hostile key holder in an encrypted cluster) ended a name for good: the refutation
//! saturated at the same `u32::MAX`, lost to the claim at equal incarnation, and the member was
//! declared dead, reaped, and refused as "left" after every restart.
//!
//! A claim more than 2^31 ahead of what a member holds counts as older, so an absurd jump is ignored
//! like any stale claim instead of being accepted.
//!
//! "Newer" is not transitive on the circle: a record that was stale when first seen can be newer
//! later, once the incarnation held for its member has moved far enough. Whatever remembers claims
//! as "already seen" must allow for it; the node's filter of recent updates is started afresh once
//! the incarnations it holds have travelled a quarter of the circle.
//!
//! # Why serial arithmetic
//!
//! - It keeps the wire format: still one varint, no new field, old and new members decode each other.
//! - A restart generation (a second number, compared first) would also give fresh room, but it needs
//!   a new field on every message, and a forged claim at the largest generation would end the name
//!   just as before: a bigger ceiling is still a ceiling.
//! - A jump limit (refuse claims more than some `k` above what we hold) keeps a ceiling too: a patient
//!   sender can walk an incarnation up in steps of `k`, and an honest member that was away while
//!   others moved it on could be refused.
//!
//! # What a hostile sender can still do
//!
//! Anyone able to inject a claim (anyone in a plaintext cluster, a key holder in an encrypted one)
//! can make members suspect, or declare dead, a member that is alive: that is inherent to SWIM, where
//! any member may report a failure. It can no longer make that permanent. The accused member answers
//! every claim it hears with an incarnation newer than the claim (or, when the claim is older than
//! what it holds, with its current record, which every member holding the claim accepts as newer),
//! so each false accusation costs it one refutation and the cluster one round of gossip. Ordering is
//! only meaningful within half the circle; a sender that keeps pushing claims 2^31 - 1 ahead can make
//! members that missed one step disagree for a while about which record is newer, and they converge
//! again at the member's next refutation.

/// Whether incarnation `a` is newer than `b`: `a != b` and `a` lies less than 2^31 ahead of `b`
/// modulo 2^32. Call it wherever a claim's incarnation is weighed against the one already held.
/// Incarnations exactly 2^31 apart are unordered: neither is newer.
pub fn is_newer(a: u32, b: u32) -> bool {
    a != b && a.wrapping_sub(b) < 1 << 31
}

/// Whether `a` is `b` or newer than it: a claim at `a` is not stale for someone holding `b`.
pub fn is_at_least(a: u32, b: u32) -> bool {
    a == b || is_newer(a, b)
}

/// The incarnation that follows `a`, wrapping from `u32::MAX` to 0. Always newer than `a`. Call it
/// whenever a member raises its own incarnation.
pub fn next(a: u32) -> u32 {
    a.wrapping_add(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HALF: u32 = 1 << 31;

    #[test]
    fn a_larger_incarnation_within_half_the_circle_is_newer() {
        assert!(is_newer(1, 0));
        assert!(is_newer(1_000, 7));
        assert!(!is_newer(7, 1_000));
        assert!(!is_newer(5, 5), "an incarnation is not newer than itself");
        assert!(is_at_least(5, 5));
        assert!(is_at_least(6, 5));
        assert!(!is_at_least(4, 5));
    }

    #[test]
    fn the_successor_of_the_largest_value_wraps_and_is_newer() {
        assert_eq!(next(u32::MAX), 0);
        assert!(is_newer(0, u32::MAX));
        assert!(!is_newer(u32::MAX, 0));
        assert!(is_newer(3, u32::MAX - 3), "ordering continues across the wrap");
        for a in [0, 1, 41, HALF - 1, HALF, HALF + 1, u32::MAX - 1, u32::MAX] {
            assert!(is_newer(next(a), a), "next({a}) is newer than {a}");
            assert!(!is_newer(a, next(a)));
        }
    }

    #[test]
    fn incarnations_exactly_half_the_circle_apart_are_unordered() {
        for a in [0, 1, 12_345, HALF, u32::MAX] {
            let b = a.wrapping_add(HALF);
            assert!(!is_newer(a, b) && !is_newer(b, a), "{a} and {b}");
            assert!(!is_at_least(a, b) && !is_at_least(b, a));
            // One step either side of the boundary is ordered again.
            assert!(is_newer(b.wrapping_sub(1), a), "{} is just under half ahead of {a}", b.wrapping_sub(1));
            assert!(is_newer(a, b.wrapping_add(1)), "{} is just over half ahead of {a}: stale", b.wrapping_add(1));
        }
    }

    #[test]
    fn a_claim_more_than_half_the_circle_ahead_is_stale() {
        assert!(!is_newer(HALF + 1, 0), "an absurd jump does not win");
        assert!(is_newer(0, HALF + 1));
        assert!(is_newer(HALF - 1, 0));
    }
}
