//! The documentation says what the code computes: checks that read the repository's README and
//! hold its formulas against the functions that implement them, so the two cannot drift apart.

use shoal_core::Config;

const README: &str = include_str!("../README.md");

/// How the README writes the number of times each update is sent, `λ = retransmit_mult`.
const RETRANSMIT_FORMULA: &str = "λ·max(2, ceil(log10(n+1)))";

/// [`RETRANSMIT_FORMULA`] in exact integer arithmetic: `ceil(log10(n + 1))` is the smallest `k`
/// with `10^k >= n + 1`.
fn retransmit_formula(lambda: u32, n: u64) -> u32 {
    let (mut k, mut power) = (0u32, 1u64);
    while power < n + 1 {
        power *= 10;
        k += 1;
    }
    lambda * k.max(2)
}

/// The first backticked span after `marker` in `text`, with line breaks and indentation collapsed.
fn code_after(text: &str, marker: &str) -> Option<String> {
    let rest = &text[text.find(marker)? + marker.len()..];
    let start = rest.find('`')? + 1;
    let len = rest[start..].find('`')?;
    Some(rest[start..start + len].split_whitespace().collect::<Vec<_>>().join(" "))
}

#[test]
fn the_readme_states_the_retransmit_count_the_code_computes() {
    let stated = code_after(README, "each sent").expect("the README says how many times an update is sent");
    assert_eq!(stated, RETRANSMIT_FORMULA, "README.md states another retransmit count than the code computes");
    let spelled = README.matches("log10(n+1)").count() + README.matches("log10(n + 1)").count();
    assert_eq!(spelled, README.matches(RETRANSMIT_FORMULA).count(), "README.md spells the count another way too");
    for lambda in 1..=16 {
        let config = Config { retransmit_mult: lambda, ..Config::lan() };
        for n in (0..=2_000).chain([9_999, 10_000, 99_999, 100_000, 1_000_000]) {
            let expected = retransmit_formula(lambda, n as u64);
            assert_eq!(config.retransmit_limit(n), expected, "λ = {lambda}, n = {n}");
        }
    }
}
