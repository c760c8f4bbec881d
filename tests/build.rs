//! Turns every ```rust block of the repository's README into a function of the `docs` test, so
//! that a snippet that stops compiling fails the build (the blocks are written for a reader: no
//! `fn main`, `?` and `.await` at the top level, a few names left to the reader).
//!
//! Each block becomes `async fn snippet_N() -> Result<(), Box<dyn Error>>` with those names bound
//! first (`seed`, `now`, `big_payload`); compiling is the check, nothing runs (the snippets bind
//! example addresses and loop forever).

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    let readme_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    println!("cargo:rerun-if-changed={}", readme_path.display());
    let readme = std::fs::read_to_string(&readme_path).expect("README.md");
    let mut out = String::new();
    let mut count = 0;
    let mut lines = readme.lines().enumerate();
    while let Some((at, line)) = lines.next() {
        if line.trim() != "```rust" {
            continue;
        }
        count += 1;
        let body: Vec<&str> = lines.by_ref().map(|(_, l)| l).take_while(|l| l.trim() != "```").collect();
        writeln!(out, "/// README.md, the ```rust block at line {}.", at + 1).unwrap();
        writeln!(out, "#[allow(unused, unreachable_code, clippy::diverging_sub_expression, clippy::empty_loop)]")
            .unwrap();
        writeln!(out, "pub async fn snippet_{count}() -> Result<(), Box<dyn std::error::Error>> {{").unwrap();
        writeln!(out, "    let seed: u64 = 0;").unwrap();
        writeln!(out, "    let now = shoal_core::Instant::ZERO;").unwrap();
        writeln!(out, "    let big_payload: Vec<u8> = vec![0; 100_000];").unwrap();
        for l in body {
            writeln!(out, "    {l}").unwrap();
        }
        writeln!(out, "    Ok(())\n}}\n").unwrap();
    }
    writeln!(out, "/// How many ```rust blocks README.md has.\npub const SNIPPETS: usize = {count};").unwrap();
    let dest = Path::new(&std::env::var("OUT_DIR").unwrap()).join("readme_snippets.rs");
    std::fs::write(dest, out).unwrap();
}
