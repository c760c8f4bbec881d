//! Whether text is a socket address (`ip:port`, `[ipv6%scope]:port`) exactly as the standard
//! library's `SocketAddr` parser reads it, without linking that parser: it is a few KB of the
//! wasm build, where the value is never needed (browsers never open a UDP or TCP socket), only the
//! verdict, which must match a native member's so that both refuse the same packets.
//!
//! The grammar, as std reads it (every rule all-or-nothing):
//! - IPv4: four decimal octets split by `.`, each 1-3 digits, at most 255, no leading zero;
//! - IPv6: hexadecimal groups (1-4 digits) split by `:`, eight of them, or fewer on each side of one
//!   `::`; an IPv4 address may stand for the last two groups of either side;
//! - a port (`:` then decimal digits, leading zeros allowed, at most 65535) after an IPv4 address,
//!   or after `[`, an IPv6 address, an optional `%` scope (decimal, at most `u32::MAX`), and `]`.
//!
//! The property test below checks the verdict against std's on many generated strings.

/// True when `s` parses as a `core::net::SocketAddr`.
pub(crate) fn is_socket_addr(s: &str) -> bool {
    let b = s.as_bytes();
    let v4 = ipv4(b, 0).and_then(|at| port(b, at));
    let v6 = || {
        let at = byte(b, 0, b'[')?;
        let at = ipv6(b, at)?;
        let at = byte(b, at, b'%').and_then(|at| number(b, at, 10, None, true, u32::MAX)).unwrap_or(at);
        port(b, byte(b, at, b']')?)
    };
    // Like std, an IPv4 start that parses is the answer, trailing text or not.
    v4.or_else(v6) == Some(b.len())
}

/// The position after `want` at `at`.
fn byte(b: &[u8], at: usize, want: u8) -> Option<usize> {
    (b.get(at) == Some(&want)).then_some(at + 1)
}

/// The position after a number at `at`: every digit of `radix` there (more than `max_digits` is no
/// number), a value no larger than `max`, and no leading zero unless `zero_prefix`.
fn number(b: &[u8], at: usize, radix: u32, max_digits: Option<usize>, zero_prefix: bool, max: u32) -> Option<usize> {
    let count = b.get(at..)?.iter().take_while(|&&c| char::from(c).is_digit(radix)).count();
    if count == 0 || max_digits.is_some_and(|m| count > m) || (!zero_prefix && b[at] == b'0' && count > 1) {
        return None;
    }
    let mut value: u64 = 0;
    for &c in &b[at..at + count] {
        value = value * u64::from(radix) + u64::from(char::from(c).to_digit(radix)?);
        if value > u64::from(max) {
            return None;
        }
    }
    Some(at + count)
}

fn port(b: &[u8], at: usize) -> Option<usize> {
    number(b, byte(b, at, b':')?, 10, None, true, u32::from(u16::MAX))
}

fn ipv4(b: &[u8], mut at: usize) -> Option<usize> {
    for k in 0..4 {
        if k > 0 {
            at = byte(b, at, b'.')?;
        }
        at = number(b, at, 10, Some(3), false, 255)?;
    }
    Some(at)
}

/// Reads up to `limit` IPv6 groups from `at`: where it stopped, how many groups it read (an IPv4
/// address counts two), and whether it ended on an IPv4 address.
fn groups(b: &[u8], mut at: usize, limit: usize) -> (usize, usize, bool) {
    for k in 0..limit {
        let start = if k > 0 { byte(b, at, b':') } else { Some(at) };
        if k + 1 < limit {
            if let Some(end) = start.and_then(|s| ipv4(b, s)) {
                return (end, k + 2, true);
            }
        }
        match start.and_then(|s| number(b, s, 16, Some(4), true, 0xffff)) {
            Some(end) => at = end,
            None => return (at, k, false),
        }
    }
    (at, limit, false)
}

fn ipv6(b: &[u8], at: usize) -> Option<usize> {
    let (at, head, ends_in_ipv4) = groups(b, at, 8);
    if head == 8 {
        return Some(at);
    }
    if ends_in_ipv4 {
        return None;
    }
    let at = byte(b, byte(b, at, b':')?, b':')?;
    Some(groups(b, at, 7 - head).0)
}

#[cfg(test)]
mod tests {
    use super::is_socket_addr;
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};
    use std::net::SocketAddr;
    use std::string::String;

    fn std_says(s: &str) -> bool {
        s.parse::<SocketAddr>().is_ok()
    }

    #[test]
    fn known_addresses_get_the_verdict_std_gives() {
        for s in [
            "127.0.0.1:7946",
            "0.0.0.0:0",
            "255.255.255.255:65535",
            "1.2.3.4:00080",
            "[::1]:80",
            "[::]:1",
            "[1:2:3:4:5:6:7:8]:9",
            "[1:2:3:4:5:6:7::]:9",
            "[::ffff:10.0.0.1]:9",
            "[1:2:3:4:5:6:1.2.3.4]:9",
            "[fe80::1%3]:9",
            "[FE80::AbCd]:9",
            "256.0.0.1:1",
            "01.2.3.4:5",
            "1.2.3:4",
            "1.2.3.4",
            "1.2.3.4:65536",
            "1.2.3.4:",
            "[::1]",
            "::1:80",
            "[1:2:3:4:5:6:7:8:9]:1",
            "[1:2:3:4:5:6:7:1.2.3.4]:1",
            "[1::2::3]:4",
            "[12345::]:1",
            "[::1%]:1",
            "[::1%4294967296]:1",
            "[1.2.3.4::]:1",
            "[::1.2.3.4:5]:1",
            "",
            "x",
        ] {
            assert_eq!(is_socket_addr(s), std_says(s), "{s:?}");
        }
    }

    #[test]
    fn generated_text_gets_the_verdict_std_gives() {
        // Strings over the grammar's own alphabet, shaped like addresses often enough that both
        // verdicts come up many times.
        let alphabet = b"0123456789abcdefABCDEF.:[]%x";
        let mut rng = SmallRng::seed_from_u64(7);
        let mut valid = 0;
        for _ in 0..400_000 {
            let mut s = String::new();
            let shape = rng.random_range(0..4);
            if shape == 1 {
                s.push('[');
            }
            for _ in 0..rng.random_range(0..24) {
                let c = match (shape, rng.random_range(0..10)) {
                    (0, 0..=6) | (2, 0..=7) => char::from(b'0' + rng.random_range(0..10)),
                    (0, _) | (2, _) => '.',
                    (1, 0..=5) => char::from(b"0123456789abcdef"[rng.random_range(0..16)]),
                    (1, _) => ':',
                    _ => char::from(alphabet[rng.random_range(0..alphabet.len())]),
                };
                s.push(c);
            }
            if shape == 1 {
                if rng.random_bool(0.2) {
                    s.push_str(&std::format!("%{}", rng.random_range(0..10u32)));
                }
                s.push(']');
            }
            if shape != 3 && rng.random_bool(0.8) {
                s.push_str(&std::format!(":{}", rng.random_range(0..70_000u32)));
            }
            let std = std_says(&s);
            valid += usize::from(std);
            assert_eq!(is_socket_addr(&s), std, "{s:?}");
        }
        assert!(valid > 1_000, "only {valid} valid addresses generated");
    }
}
