//! How many bytes the next PATCH carries (ADR 0018): small on a slow or cut link, large while
//! the link holds. A run starts at [`START`] (64 KiB), or at [`MIN`] (16 KiB) when its round
//! trips before the first PATCH took longer than [`SLOW_ROUND_TRIP`] — on a 2G link (≈2.25 kB/s
//! up) a 16 KiB PATCH is acknowledged within seconds, so every run moves the offset. From the
//! first acknowledged PATCH on, the size is at least what that PATCH's pace (its bytes over the
//! time to its answer) moves in [`TARGET`], up to [`START`], while no failure of the run caps
//! it: a slow start costs one round of small PATCHes on a link with a long round trip but
//! room to spare (Slow 3G), while on 2G the pace keeps it at [`MIN`]. The size
//! doubles after [`GROW_AFTER`] full PATCHes in a row each acknowledged within [`TARGET`], up to
//! [`MAX`] (the most the reference endpoint takes in one PATCH, `MAX_PATCH_BODY`, and what a
//! device buffers); it halves after a PATCH slower than twice [`TARGET`]; after a failed PATCH
//! (a cut connection loses the whole PATCH: the endpoint keeps nothing of a body whose checksum
//! it could not check) it falls to a quarter and stays below half the failed size until
//! [`REGROW_AFTER`] PATCHes in a row succeed. It also says how many PATCHes (of different
//! parts) may be in flight at once ([`PatchSize::at_once`], ADR 0022), and shrinks the PATCHes
//! sent near the end of a run's budget to what the last one's pace acknowledges in time
//! ([`PatchSize::fit`]). What a run learned (size, ceiling, pace, whether the round trips are
//! long) is handed to the next run through the store ([`PatchSize::learned`],
//! [`PatchSize::resume`], ADR 0023): a run resumed from a link with long round trips keeps its
//! size through a slow round trip; every other rule applies as to a fresh run.

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
/// PATCHes in flight at once (on uploads of different parts, ADR 0022): two, or four while
/// the last one was acknowledged within [`PROMPT`] and the size is at most [`WIDE_MAX`].
pub const NARROW: usize = 2;
pub const WIDE: usize = 4;
/// A PATCH acknowledged within this (shared link included) lets [`WIDE`] PATCHes fly: a link
/// with a long round trip but room to spare (Slow 3G) is kept busy; a 2G link, whose 16 KiB
/// PATCHes take longer, keeps two, so a 30-second run still gets one acknowledged.
pub const PROMPT: Duration = Duration::from_secs(4);
/// Above this size, two PATCHes in flight fill the link (and hold at most 2 MiB).
pub const WIDE_MAX: usize = 256 * 1024;
/// Near the end of a run's budget a PATCH carries only what the last one's pace moves in this
/// share of the time left, so it is acknowledged before the run stops instead of being cut.
pub const FIT_SHARE: f64 = 0.8;
/// The smallest PATCH sized to fit the time left.
pub const FIT_MIN: usize = 1024;

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
    /// How long the last PATCH took to be acknowledged (`None` after a failure).
    last_took: Option<Duration>,
    /// Bytes per second of the last acknowledged PATCH, its round trip and any PATCH sharing
    /// the link included.
    last_pace: Option<f64>,
    /// An exchange took longer than [`SLOW_ROUND_TRIP`] (in this run, or in the run it resumed).
    slow_link: bool,
    /// A PATCH was answered (acknowledged or failed) in this run: there is something to hand on.
    answered: bool,
}

/// What a run learned about the link, handed to the next run (ADR 0023).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Learned {
    /// The size of the next PATCH.
    pub size: usize,
    /// The ceiling a failure set ([`MAX`]: none).
    pub ceiling: usize,
    /// Bytes per second of the last acknowledged PATCH.
    pub pace: Option<f64>,
    /// Whether an exchange took longer than [`SLOW_ROUND_TRIP`].
    pub slow_link: bool,
}

impl Default for PatchSize {
    fn default() -> Self {
        PatchSize {
            size: START,
            ceiling: MAX,
            quick: 0,
            streak: 0,
            acked_any: false,
            last_took: None,
            last_pace: None,
            slow_link: false,
            answered: false,
        }
    }
}

impl PatchSize {
    /// A run's sizing that starts from what an earlier run `learned` (ADR 0023): its size
    /// (within its ceiling), its ceiling and its pace; the streaks start over. A slow round
    /// trip before the first PATCH drops the size to [`MIN`] as in a fresh run, unless the
    /// earlier run's round trips were slow too (the same kind of link).
    pub fn resume(learned: Learned) -> Self {
        let ceiling = learned.ceiling.clamp(MIN, MAX);
        PatchSize {
            size: learned.size.clamp(MIN, ceiling),
            ceiling,
            last_pace: learned.pace.filter(|p| p.is_finite() && *p > 0.0),
            slow_link: learned.slow_link,
            ..PatchSize::default()
        }
    }

    /// What this run learned, once a PATCH was answered (`None` before: nothing to hand on).
    pub fn learned(&self) -> Option<Learned> {
        self.answered.then_some(self.now_learned())
    }

    fn now_learned(&self) -> Learned {
        Learned {
            size: self.size,
            ceiling: self.ceiling,
            pace: self.last_pace,
            slow_link: self.slow_link,
        }
    }

    /// Bytes for the next PATCH.
    pub fn get(&self) -> usize {
        self.size
    }

    /// How many PATCHes may be in flight at once ([`NARROW`] or [`WIDE`]).
    pub fn at_once(&self) -> usize {
        match self.last_took {
            Some(t) if t <= PROMPT && self.size <= WIDE_MAX => WIDE,
            _ => NARROW,
        }
    }

    /// The bytes of a PATCH that is to be acknowledged within `left`: `want`, or less when the
    /// last PATCH's pace says it would not be, never below [`FIT_MIN`] (a slow pace must not
    /// stop a link from ever moving again). With a known `round_trip` (the run's quickest
    /// exchange) a PATCH costs that round trip plus its bytes at the rate the last PATCH moved
    /// them once the round trip is taken out, and `0` means the round trip alone would not be
    /// answered within the share of `left`: send nothing.
    pub fn fit(&self, want: usize, left: Duration, round_trip: Option<Duration>) -> usize {
        let Some(pace) = self.last_pace else {
            return want;
        };
        let share = left.as_secs_f64() * FIT_SHARE;
        let Some(rtt) = round_trip.map(|r| r.as_secs_f64()) else {
            return want.min(((pace * share) as usize).max(FIT_MIN));
        };
        // The last PATCH's bytes over its time less the round trip (its pace when unknown).
        let rate = match self.last_took.map(|t| t.as_secs_f64()) {
            Some(took) if took > rtt => pace * took / (took - rtt),
            _ => pace,
        };
        if share <= rtt {
            return 0;
        }
        want.min(((rate * (share - rtt)) as usize).max(FIT_MIN))
    }

    /// Another exchange (an upload's creation or offset check) took `took`: before the run's
    /// first acknowledged PATCH, a slow one means a slow link — unless the run resumed from a
    /// link already known to be slow, whose size and pace still hold. A pace learned on a
    /// prompt link says nothing of a slow one: it is dropped.
    pub fn round_trip(&mut self, took: Duration) {
        if took <= SLOW_ROUND_TRIP {
            return;
        }
        if !self.acked_any && !self.slow_link {
            self.size = MIN;
            self.last_pace = None;
        }
        self.slow_link = true;
    }

    /// A PATCH of `sent` bytes was acknowledged after `took`.
    pub fn acknowledged(&mut self, sent: usize, took: Duration) {
        self.acked_any = true;
        self.answered = true;
        self.last_took = Some(took);
        let pace = sent as f64 / took.as_secs_f64().max(1e-3);
        self.last_pace = Some(pace);
        self.follow_pace(pace);
        self.streak += 1;
        if self.streak >= REGROW_AFTER {
            self.ceiling = (self.ceiling * 2).min(MAX);
            self.streak = 0;
        }
        self.grow_or_shrink(sent, took);
    }

    /// The size rules of an acknowledged full PATCH.
    fn grow_or_shrink(&mut self, sent: usize, took: Duration) {
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

    /// Raises the size to what `pace` moves in [`TARGET`], at most [`START`]. Any acknowledged
    /// PATCH counts, a short tail too: its round trip weighs more in its pace, so it can only
    /// understate the link. Above [`START`], and while a failure's ceiling holds, only prompt
    /// streaks grow the size, so a cut link keeps its PATCHes small.
    fn follow_pace(&mut self, pace: f64) {
        if self.ceiling < MAX {
            return;
        }
        let lift = ((pace * TARGET.as_secs_f64()) as usize).min(START);
        if lift > self.size {
            self.size = lift;
            self.quick = 0;
        }
    }

    /// A PATCH failed (cut, timed out, refused).
    pub fn failed(&mut self) {
        self.answered = true;
        self.last_took = None;
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
    fn four_patches_fly_only_while_small_ones_come_back_promptly() {
        let mut p = PatchSize::default();
        assert_eq!(p.at_once(), NARROW, "nothing acknowledged yet");
        p.acknowledged(p.get(), PROMPT);
        assert_eq!(p.at_once(), WIDE);
        p.acknowledged(p.get(), PROMPT + Duration::from_millis(1));
        assert_eq!(p.at_once(), NARROW, "a slow link (2G) keeps two");
        p.acknowledged(p.get(), FAST);
        assert_eq!(p.at_once(), WIDE);
        p.failed();
        assert_eq!(p.at_once(), NARROW, "a cut narrows it");
        ok(&mut p, 200, FAST);
        assert!(p.get() > WIDE_MAX);
        assert_eq!(
            p.at_once(),
            NARROW,
            "large PATCHes: two in flight, ≤ 2 MiB held"
        );
    }

    #[test]
    fn near_the_end_of_the_budget_a_patch_carries_what_fits() {
        let mut p = PatchSize::default();
        assert_eq!(
            p.fit(MIN, Duration::from_secs(1), None),
            MIN,
            "no pace known yet"
        );
        // 2G: 16 KiB acknowledged in 8 s, ≈2 kB/s.
        p.acknowledged(MIN, Duration::from_secs(8));
        assert_eq!(p.fit(MIN, Duration::from_secs(20), None), MIN);
        let fit = p.fit(MIN, Duration::from_secs(4), None);
        assert!(fit < MIN / 2 && fit > MIN / 4, "{fit}");
        assert_eq!(p.fit(MIN, Duration::from_millis(10), None), FIT_MIN);
        assert_eq!(p.fit(100, Duration::from_millis(10), None), 100);
    }

    #[test]
    fn with_a_known_round_trip_a_patch_that_cannot_be_answered_in_time_is_not_sent() {
        // Slow 3G: 2 s round trips, 64 KiB acknowledged in 3.2 s (≈53 kB/s once the round
        // trip is taken out; a pace of ≈20 kB/s with it).
        let mut p = PatchSize::default();
        p.acknowledged(START, Duration::from_millis(3200));
        let rtt = Some(Duration::from_secs(2));
        // 2.1 s left: the round trip alone takes 2 s of the 1.68 s share. Without the round
        // trip the pace rule would send ≈34 kB, answered after ≈2.6 s: cut by the budget.
        assert_eq!(p.fit(START, Duration::from_millis(2100), rtt), 0);
        assert!(p.fit(START, Duration::from_millis(2100), None) > 30_000);
        // 3.5 s left: 2.8 s of share, 0.8 s of it for bytes at ≈55 kB/s.
        let fit = p.fit(START, Duration::from_millis(3500), rtt);
        assert!((40_000..50_000).contains(&fit), "{fit}");
        // Plenty of time: the whole PATCH.
        assert_eq!(p.fit(START, Duration::from_secs(30), rtt), START);
        // A part's small tail that fits is sent whole.
        assert_eq!(p.fit(100, Duration::from_millis(2600), rtt), 100);
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

    #[test]
    fn a_long_round_trip_with_room_to_spare_grows_after_the_first_patch() {
        // Slow 3G: 2 s round trips, 50 kB/s up; two 16 KiB PATCHes share the link.
        let mut p = PatchSize::default();
        p.round_trip(Duration::from_secs(2));
        assert_eq!(p.get(), MIN);
        p.acknowledged(MIN, Duration::from_millis(2650));
        let next = p.get();
        assert!(next > 2 * MIN, "one PATCH's pace lifts the size: {next}");
        p.acknowledged(next, Duration::from_secs(4));
        assert_eq!(p.get(), START, "the pace lifts it no further than START");
        ok(&mut p, 1, Duration::from_secs(3));
        assert_eq!(p.get(), START, "above START only prompt streaks grow it");
        ok(&mut p, GROW_AFTER as usize - 1, Duration::from_secs(3));
        assert_eq!(p.get(), 2 * START);
    }

    #[test]
    fn on_2g_the_pace_keeps_patches_at_the_smallest_size() {
        // 2G rural: 2.25 kB/s up, 1.3 s round trips.
        let mut p = PatchSize::default();
        p.round_trip(Duration::from_millis(1400));
        assert_eq!(p.get(), MIN);
        // Alone on the link, two sharing it, and a short tail.
        p.acknowledged(MIN, Duration::from_millis(8600));
        p.acknowledged(MIN, Duration::from_millis(15_500));
        p.acknowledged(1024, Duration::from_millis(1750));
        assert_eq!(p.get(), MIN);
    }

    #[test]
    fn after_a_cut_the_pace_lifts_nothing() {
        let mut p = PatchSize::default();
        p.failed();
        assert_eq!(p.get(), MIN);
        ok(&mut p, GROW_AFTER as usize - 1, FAST);
        assert_eq!(p.get(), MIN, "a fast pace does not undo a cut");
        ok(&mut p, 1, FAST);
        assert_eq!(
            p.get(),
            2 * MIN,
            "a prompt streak still regrows it, to the ceiling"
        );
    }

    #[test]
    fn a_resumed_run_starts_where_the_last_one_left_off() {
        // Slow 3G, learned a moment ago: 256 KiB, no failure, 60 kB/s, 2 s round trips.
        let slow = Learned {
            size: 4 * START,
            ceiling: MAX,
            pace: Some(60_000.0),
            slow_link: true,
        };
        let mut p = PatchSize::resume(slow);
        assert_eq!(p.get(), 4 * START);
        assert!(p.learned().is_none(), "nothing learned in this run yet");
        p.round_trip(Duration::from_secs(2));
        assert_eq!(p.get(), 4 * START, "the same kind of link: the size holds");
        assert_eq!(
            p.fit(MAX, Duration::from_secs(1), None),
            48_000,
            "the pace sizes the last ones"
        );
        ok(&mut p, 1, Duration::from_secs(3));
        let l = p.learned().expect("a PATCH was answered");
        assert_eq!((l.size, l.ceiling, l.slow_link), (4 * START, MAX, true));
        // A run resumed from a prompt link that now answers slowly starts as a fresh one.
        let mut q = PatchSize::resume(Learned {
            slow_link: false,
            ..slow
        });
        q.round_trip(SLOW_ROUND_TRIP + Duration::from_millis(1));
        assert_eq!(q.get(), MIN);
        assert_eq!(
            q.fit(MAX, Duration::from_secs(1), None),
            MAX,
            "its pace is forgotten"
        );
        // A resumed run that begins with failures shrinks as a fresh one does.
        let mut r = PatchSize::resume(slow);
        r.failed();
        assert_eq!(r.get(), START);
        r.failed();
        assert_eq!(r.get(), MIN);
        let l = r.learned().expect("failures are learned too");
        assert_eq!((l.size, l.ceiling), (MIN, START / 2));
        // Out-of-range memories are brought back within the rules.
        let odd = PatchSize::resume(Learned {
            size: 10 * MAX,
            ceiling: 2 * START,
            pace: Some(f64::NAN),
            slow_link: false,
        });
        assert_eq!(odd.get(), 2 * START);
        assert_eq!(odd.fit(MAX, Duration::from_secs(1), None), MAX);
    }
}
