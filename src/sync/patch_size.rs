//! How many bytes the next PATCH carries (ADR 0018): small on a slow or cut link, large while
//! the link holds. A run starts at [`START`] (64 KiB), or at [`MIN`] (16 KiB) when its round
//! trips before the first PATCH took longer than [`SLOW_ROUND_TRIP`] — on a 2G link (≈2.25 kB/s
//! up) a 16 KiB PATCH is acknowledged within seconds, so every run moves the offset. The size
//! doubles after [`GROW_AFTER`] full PATCHes in a row each acknowledged within [`TARGET`], up to
//! [`MAX`] (the most the reference endpoint takes in one PATCH, `MAX_PATCH_BODY`, and what a
//! device buffers); it halves after a PATCH slower than twice [`TARGET`]; after a failed PATCH
//! (a cut connection loses the whole PATCH: the endpoint keeps nothing of a body whose checksum
//! it could not check) it falls to a quarter and stays below half the failed size until
//! [`REGROW_AFTER`] PATCHes in a row succeed.

use std::time::Duration;

use crate::protocol::limits;

/// The smallest PATCH.
pub const MIN: usize = 16 * 1024;
/// The first PATCH of a run on a link that answers promptly.
pub const START: usize = limits::PATCH_BYTES;
/// The largest PATCH.
pub const MAX: usize = 1024 * 1024;
/// A PATCH acknowledged within this counts towards growing (one slower than twice this halves
/// the size). Long enough that a PATCH dwarfs the round trip even at 2 s of latency (Slow 3G),
/// short enough that a 30-second run acknowledges several.
pub const TARGET: Duration = Duration::from_secs(8);
/// An exchange before the run's first PATCH slower than this starts the run at [`MIN`].
pub const SLOW_ROUND_TRIP: Duration = Duration::from_millis(500);
/// Full PATCHes in a row within [`TARGET`] after which the size doubles.
pub const GROW_AFTER: u32 = 4;
/// Acknowledged PATCHes in a row after which the ceiling a failure set doubles.
pub const REGROW_AFTER: u32 = 16;

/// The PATCH size of one sync run.
#[derive(Debug, Clone, Copy)]
pub struct PatchSize {
    size: usize,
    /// The size never grows past this (half of a PATCH that failed, until it regrows).
    ceiling: usize,
    /// Full, prompt PATCHes in a row at the current size.
    quick: u32,
    /// Acknowledged PATCHes in a row.
    streak: u32,
    /// Whether a PATCH was acknowledged in this run yet.
    acked_any: bool,
}

impl Default for PatchSize {
    fn default() -> Self {
        PatchSize {
            size: START,
            ceiling: MAX,
            quick: 0,
            streak: 0,
            acked_any: false,
        }
    }
}

impl PatchSize {
    /// Bytes for the next PATCH.
    pub fn get(&self) -> usize {
        self.size
    }

    /// Another exchange (an upload's creation or offset check) took `took`: before the run's
    /// first acknowledged PATCH, a slow one means a slow link.
    pub fn round_trip(&mut self, took: Duration) {
        if !self.acked_any && took > SLOW_ROUND_TRIP {
            self.size = MIN;
        }
    }

    /// A PATCH of `sent` bytes was acknowledged after `took`.
    pub fn acknowledged(&mut self, sent: usize, took: Duration) {
        self.acked_any = true;
        self.streak += 1;
        if self.streak >= REGROW_AFTER {
            self.ceiling = (self.ceiling * 2).min(MAX);
            self.streak = 0;
        }
        if sent < self.size {
            return; // a part's short tail says nothing about the link
        }
        if took > 2 * TARGET {
            self.size = (self.size / 2).max(MIN);
            self.quick = 0;
        } else if took <= TARGET {
            self.quick += 1;
            if self.quick >= GROW_AFTER {
                self.size = (self.size * 2)
                    .min(self.ceiling)
                    .max(self.size.min(self.ceiling));
                self.quick = 0;
            }
        }
    }

    /// A PATCH failed (cut, timed out, refused).
    pub fn failed(&mut self) {
        self.ceiling = (self.size / 2).max(MIN);
        self.size = (self.size / 4).max(MIN);
        self.streak = 0;
        self.quick = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(p: &mut PatchSize, times: usize, took: Duration) {
        for _ in 0..times {
            let n = p.get();
            p.acknowledged(n, took);
        }
    }

    const FAST: Duration = Duration::from_millis(5);

    #[test]
    fn grows_while_the_link_holds_and_shrinks_on_a_slow_or_cut_one() {
        let mut p = PatchSize::default();
        assert_eq!(p.get(), START);
        ok(&mut p, GROW_AFTER as usize - 1, FAST);
        assert_eq!(p.get(), START, "grows only after a run of prompt PATCHes");
        ok(&mut p, 1, FAST);
        assert_eq!(p.get(), 2 * START);
        ok(&mut p, 40, FAST);
        assert_eq!(p.get(), MAX);
        // A cut: a quarter now, never above half the cut size until a streak of successes.
        p.failed();
        assert_eq!(p.get(), MAX / 4);
        ok(&mut p, 8, FAST);
        assert_eq!(p.get(), MAX / 2);
        ok(&mut p, REGROW_AFTER as usize, FAST);
        assert_eq!(p.get(), MAX);
        // Slow: halves; between TARGET and twice it: stays; a short tail changes nothing.
        let n = p.get();
        p.acknowledged(n, 2 * TARGET + Duration::from_secs(1));
        assert_eq!(p.get(), MAX / 2);
        ok(&mut p, 10, TARGET + Duration::from_millis(1));
        assert_eq!(p.get(), MAX / 2);
        p.acknowledged(10, Duration::from_millis(1));
        assert_eq!(p.get(), MAX / 2);
        for _ in 0..10 {
            p.failed();
        }
        assert_eq!(p.get(), MIN);
        ok(&mut p, 8, FAST);
        assert_eq!(p.get(), MIN, "the ceiling holds after repeated cuts");
    }

    #[test]
    fn a_slow_round_trip_before_the_first_patch_starts_small() {
        let mut p = PatchSize::default();
        p.round_trip(Duration::from_millis(100));
        assert_eq!(p.get(), START);
        p.round_trip(SLOW_ROUND_TRIP + Duration::from_millis(1));
        assert_eq!(p.get(), MIN);
        // Once PATCHes are acknowledged, their own times decide.
        let mut q = PatchSize::default();
        ok(&mut q, 1, FAST);
        q.round_trip(Duration::from_secs(3));
        assert_eq!(q.get(), START);
    }
}
