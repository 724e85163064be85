//! Seeded randomness for the tests that kill at random moments, and the
//! chaos suites' plan (`SHM_CHAOS`, `SHM_CHAOS_ROUNDS`, `SHM_CHAOS_SEED`):
//! every seed is printed, so a failure can be replayed.

use std::time::{SystemTime, UNIX_EPOCH};

/// A small splitmix64 generator.
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// A generator seeded from `$var`, or from the clock, printing the seed
    /// as `var=SEED` so that a failure can be replayed.
    pub fn from_env(var: &str) -> Self {
        let seed = env_u64(var).unwrap_or_else(clock_seed);
        eprintln!("random seed: {var}={seed}");
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// A number in `0..n` (0 for `n == 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// `$name` parsed as an integer, if set.
pub fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn clock_seed() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(7)
}

/// How many rounds a chaos suite runs and from which seed: `quick` rounds
/// by default, `long` with `SHM_CHAOS` set, `SHM_CHAOS_ROUNDS` if given;
/// the seed from `SHM_CHAOS_SEED` or the clock. Prints both under `what`.
pub fn chaos_plan(what: &str, quick: u64, long: u64) -> (u64, u64) {
    let default = if std::env::var_os("SHM_CHAOS").is_some() {
        long
    } else {
        quick
    };
    let rounds = env_u64("SHM_CHAOS_ROUNDS").unwrap_or(default);
    let seed = env_u64("SHM_CHAOS_SEED").unwrap_or_else(clock_seed);
    eprintln!("{what}: {rounds} rounds from SHM_CHAOS_SEED={seed}");
    (rounds, seed)
}
