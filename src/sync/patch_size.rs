//! How many bytes the next PATCH carries (ADR 0018): small on a slow or cut link, large while
//! the link holds. The size starts at [`MIN`] — on a 2G link (≈2.25 kB/s up) a 16 KiB PATCH is
//! acknowledged within seconds, so every run moves the offset — doubles after each PATCH
//! acknowledged within [`TARGET`], halves after one slower than twice that, and falls back to
//! a quarter after a PATCH that failed, with a ceiling of half the failed size until
//! [`REGROW_AFTER`] PATCHes in a row succeed (a cut connection loses the whole PATCH: the
//! endpoint keeps nothing of a body whose checksum it could not check). It never exceeds
//! [`MAX`], the most the reference endpoint takes in one PATCH (`MAX_PATCH_BODY`) and what a
//! device buffers.

use std::time::Duration;

/// The smallest PATCH (and the first of each sync run).
pub const MIN: usize = 16 * 1024;
/// The largest PATCH.
pub const MAX: usize = 1024 * 1024;
/// A PATCH acknowledged faster than this lets the next one double.
pub const TARGET: Duration = Duration::from_secs(2);

/// The PATCH size of one sync run.
#[derive(Debug, Clone, Copy)]
pub struct PatchSize {
    size: usize,
    /// The size never grows past this: half of a PATCH that failed, doubled again after
    /// [`REGROW_AFTER`] acknowledged PATCHes in a row (a link that cuts every N bytes keeps
    /// PATCHes well under N, so a cut loses little).
    ceiling: usize,
    streak: u32,
}

/// Acknowledged PATCHes in a row after which the ceiling doubles.
pub const REGROW_AFTER: u32 = 16;

impl Default for PatchSize {
    fn default() -> Self {
        PatchSize {
            size: MIN,
            ceiling: MAX,
            streak: 0,
        }
    }
}

impl PatchSize {
    /// Bytes for the next PATCH.
    pub fn get(&self) -> usize {
        self.size
    }

    /// A PATCH of `sent` bytes was acknowledged after `took`.
    pub fn acknowledged(&mut self, sent: usize, took: Duration) {
        self.streak += 1;
        if self.streak >= REGROW_AFTER {
            self.ceiling = (self.ceiling * 2).min(MAX);
            self.streak = 0;
        }
        if sent < self.size {
            return; // a part's short tail says nothing about the link
        }
        if took <= TARGET {
            self.size = (self.size * 2).min(self.ceiling);
        } else if took > 2 * TARGET {
            self.size = (self.size / 2).max(MIN);
        }
    }

    /// A PATCH failed (cut, timed out, refused).
    pub fn failed(&mut self) {
        self.ceiling = (self.size / 2).max(MIN);
        self.size = (self.size / 4).max(MIN);
        self.streak = 0;
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

    #[test]
    fn grows_on_a_fast_link_shrinks_on_a_slow_or_cut_one() {
        let mut p = PatchSize::default();
        assert_eq!(p.get(), MIN);
        ok(&mut p, 10, Duration::from_millis(5));
        assert_eq!(p.get(), MAX);
        // A cut: a quarter now, never above half the cut size until a streak of successes.
        p.failed();
        assert_eq!(p.get(), MAX / 4);
        ok(&mut p, 3, Duration::from_millis(5));
        assert_eq!(p.get(), MAX / 2);
        ok(&mut p, REGROW_AFTER as usize, Duration::from_millis(5));
        assert_eq!(p.get(), MAX);
        // Slow: halves; between TARGET and twice it: stays; a short tail changes nothing.
        let n = p.get();
        p.acknowledged(n, Duration::from_secs(9));
        assert_eq!(p.get(), MAX / 2);
        let n = p.get();
        p.acknowledged(n, TARGET + Duration::from_millis(1));
        assert_eq!(p.get(), MAX / 2);
        p.acknowledged(10, Duration::from_millis(1));
        assert_eq!(p.get(), MAX / 2);
        for _ in 0..10 {
            p.failed();
        }
        assert_eq!(p.get(), MIN);
        ok(&mut p, 3, Duration::from_millis(5));
        assert_eq!(p.get(), MIN, "the ceiling holds after repeated cuts");
    }
}
