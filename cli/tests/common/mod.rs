//! Shared by the process-killing tests (`crash.rs`, `kill_loops.rs`): a small seedable PRNG
//! whose seed is printed and can be replayed, and a child process that is SIGKILLed and reaped
//! when dropped, so a failing test leaves no process behind.

#![allow(dead_code)]

use std::process::Child;

/// xorshift64*: small, seedable, no dependency.
pub struct Rng(u64);

impl Rng {
    /// Seeded from the environment variable `var` when set (a u64), else from the clock and
    /// the process id. Returns the seed, for the test to print.
    pub fn from_env_or_clock(var: &str) -> (Self, u64) {
        let seed = match std::env::var(var) {
            Ok(s) => s
                .parse()
                .unwrap_or_else(|_| panic!("{var} must be a u64, not {s:?}")),
            Err(_) => {
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .expect("clock after 1970")
                    .as_nanos() as u64;
                nanos ^ (u64::from(std::process::id()) << 32)
            }
        };
        (Rng(seed.max(1)), seed)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-ish in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// A child process killed (SIGKILL) and reaped when dropped, even if the test panics.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
