//! A small deterministic pseudo-random sequence for randomized tests.
#![allow(dead_code)]

/// Xorshift, seeded from `$<VAR>` if set, else from the clock; the seed is printed so that a
/// failing run can be replayed with `VAR=<seed>`.
pub struct Rng(u64);

impl Rng {
    pub fn new(var: &str) -> Rng {
        let seed = std::env::var(var).ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1
        });
        eprintln!("{var}={seed}");
        Rng(seed)
    }

    /// The next number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}
