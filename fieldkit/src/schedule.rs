//! The fault schedule: what happens to the n-th connection of a link, and when a flapping link
//! is down. Both are pure functions of (seed, profile, link, n), never of timing, so the same
//! seed and profile give the same schedule and a failing run is replayed by re-running it.

use std::time::Duration;

use serde::Serialize;

use crate::profile::Profile;

/// SplitMix64: spreads one seed into independent streams (link, connection, purpose).
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A seed for one purpose of one connection of one link.
pub fn derive(seed: u64, link: u64, n: u64, purpose: u64) -> u64 {
    mix(mix(mix(seed) ^ link.wrapping_mul(0xA24B_AED4_963E_E407)) ^ n) ^ purpose
}

/// What the proxy does to one connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnPlan {
    /// Reset the connection at once.
    pub refuse: bool,
    /// Accept and never answer (blackhole).
    pub blackhole: bool,
    /// Reset after this many bytes device → endpoint.
    pub reset_up_after: Option<u64>,
    /// Reset after this many bytes endpoint → device.
    pub reset_down_after: Option<u64>,
    /// Stop forwarding (no reset) after this many bytes device → endpoint.
    pub stall_up_after: Option<u64>,
    /// Stop forwarding (no reset) after this many bytes endpoint → device.
    pub stall_down_after: Option<u64>,
    /// Plain-HTTP mode: answer this status (429 or 503) instead of forwarding.
    pub status: Option<u16>,
    /// Seed of the per-segment draws (jitter, loss, server delay).
    pub segment_seed: u64,
}

fn chance(rng: &mut fastrand::Rng, pct: f64) -> bool {
    pct > 0.0 && rng.f64() * 100.0 < pct
}

/// The plan of connection `n` (0-based, in accept order) of link `link`.
pub fn plan_for(seed: u64, profile: &Profile, http_mode: bool, link: u64, n: u64) -> ConnPlan {
    let mut rng = fastrand::Rng::with_seed(derive(seed, link, n, 1));
    // Draw every value in a fixed order, whatever the profile enables, so that overriding one
    // figure does not reshuffle the others.
    let refuse = chance(&mut rng, profile.refuse_pct);
    let cut = chance(&mut rng, profile.cut_pct);
    // Most of a device's bytes go up: three cuts in four are on the way up.
    let cut_up = rng.f64() < 0.75;
    let cut_at = rng.u64(1..=profile.cut_max_bytes.max(1));
    let stall = chance(&mut rng, profile.stall_pct);
    let stall_up = rng.bool();
    let stall_at = rng.u64(1..=profile.cut_max_bytes.max(1));
    let status = chance(&mut rng, profile.status_pct);
    let status_code = if rng.bool() { 429 } else { 503 };
    let pick = |fixed: Option<u64>, random: bool, at: u64| match (fixed, random) {
        (Some(f), _) => Some(f),
        (None, true) => Some(at),
        (None, false) => None,
    };
    ConnPlan {
        refuse,
        blackhole: profile.blackhole,
        reset_up_after: pick(profile.reset_up_after, cut && cut_up, cut_at),
        reset_down_after: pick(profile.reset_down_after, cut && !cut_up, cut_at),
        stall_up_after: pick(profile.stall_after, stall && stall_up, stall_at),
        stall_down_after: pick(profile.stall_after, stall && !stall_up, stall_at),
        status: (http_mode && status).then_some(status_code),
        segment_seed: derive(seed, link, n, 2),
    }
}

/// When a flapping link is down, counted from the proxy's start.
#[derive(Debug, Clone)]
pub struct FlapSchedule {
    /// Alternating up and down periods, starting with up.
    periods: Vec<Duration>,
}

impl FlapSchedule {
    /// The first `count` up/down period pairs of link `link`; `None` when the profile does not
    /// flap.
    pub fn new(seed: u64, profile: &Profile, link: u64, count: usize) -> Option<FlapSchedule> {
        if profile.flap_up_secs <= 0.0 || profile.flap_down_secs <= 0.0 {
            return None;
        }
        let mut rng = fastrand::Rng::with_seed(derive(seed, link, u64::MAX, 3));
        let mut periods = Vec::with_capacity(count * 2);
        for _ in 0..count {
            for mean in [profile.flap_up_secs, profile.flap_down_secs] {
                periods.push(Duration::from_secs_f64(mean * (0.5 + rng.f64())));
            }
        }
        Some(FlapSchedule { periods })
    }

    /// Each down period as (start, end) from the proxy's start.
    pub fn down_periods(&self) -> Vec<(Duration, Duration)> {
        let mut at = Duration::ZERO;
        let mut out = Vec::new();
        for (i, p) in self.periods.iter().enumerate() {
            if i % 2 == 1 {
                out.push((at, at + *p));
            }
            at += *p;
        }
        out
    }

    /// Whether the link is down `elapsed` after the start (up again after the last period).
    pub fn is_down(&self, elapsed: Duration) -> bool {
        self.down_periods()
            .iter()
            .any(|(a, b)| *a <= elapsed && elapsed < *b)
    }
}
