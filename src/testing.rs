//! Helpers shared by the property tests (`proptest`), which live next to
//! their subjects: `zone/ring_tests.rs` and `zone/ring_threads_tests.rs`
//! (the event log), `lua/value_tests.rs` (the payload codec driven by Lua
//! values). Test-only; declared `#[cfg(test)]` from `lib.rs`.
//!
//! Case counts are tuned so the whole `cargo test` stays well under 30 s on
//! two cores. `PROPTEST_CASES=N` overrides every property's count (for a
//! longer soak); a failing case is shrunk and printed, and proptest saves
//! its seed under `proptest-regressions/` (commit those files).

use proptest::test_runner::Config;

/// A config running `cases` cases, unless `PROPTEST_CASES` is set.
pub(crate) fn config(cases: u32) -> Config {
    let base = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_some() {
        base
    } else {
        Config { cases, ..base }
    }
}

/// FNV-1a over a sequence of byte strings, each prefixed by its length (so
/// moving bytes between parts changes the sum).
pub(crate) fn checksum(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in (p.len() as u64).to_le_bytes().iter().chain(p.iter()) {
            h ^= *b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// `n` deterministic pseudo-random bytes from `seed` (xorshift64*).
pub(crate) fn noise(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}
