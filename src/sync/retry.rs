//! Retry timing: exponential backoff (the `backon` crate computes the ceiling for attempt
//! *n*) with full jitter (a uniform draw in `[0, ceiling]`), never sooner than the endpoint's
//! `Retry-After`. The attempt count lives in SQLite, so the schedule survives a kill.

use std::time::Duration;

use backon::BackoffBuilder;

/// The backoff policy of a sync run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// Ceiling of the first retry's delay.
    pub min_delay: Duration,
    /// Largest ceiling: a capture is retried at least this often while a run lasts.
    pub max_delay: Duration,
}

impl Default for BackoffPolicy {
    /// 2 s doubling to 5 min: quick recovery from a blip, no hammering of a struggling
    /// endpoint by thousands of phones.
    fn default() -> Self {
        BackoffPolicy {
            min_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(300),
        }
    }
}

/// Longest `Retry-After` honoured; a larger one is clamped (a misconfigured endpoint must not
/// park captures for days).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

impl BackoffPolicy {
    /// The delay ceiling for the `attempts`-th consecutive failure (1-based).
    pub fn ceiling(&self, attempts: u32) -> Duration {
        let mut it = backon::ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_factor(2.0)
            .without_max_times()
            .build();
        it.nth(attempts.saturating_sub(1).min(64) as usize)
            .unwrap_or(self.max_delay)
    }

    /// Full jitter: uniform in `[0, ceiling]`, then at least `retry_after`.
    pub fn delay(
        &self,
        attempts: u32,
        retry_after: Option<Duration>,
        rng: &mut fastrand::Rng,
    ) -> Duration {
        let ceiling = self.ceiling(attempts);
        let jittered = ceiling.mul_f64(rng.f64());
        jittered.max(retry_after.unwrap_or_default().min(MAX_RETRY_AFTER))
    }
}

/// Parses a `Retry-After` header: delta-seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: time::OffsetDateTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    let at = time::OffsetDateTime::from(at);
    let d = at - now;
    Some(if d.is_positive() {
        d.unsigned_abs().min(MAX_RETRY_AFTER)
    } else {
        Duration::ZERO
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_double_and_cap() {
        let p = BackoffPolicy {
            min_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(10),
        };
        let c: Vec<u64> = (1..=6).map(|n| p.ceiling(n).as_secs()).collect();
        assert_eq!(c, [1, 2, 4, 8, 10, 10]);
        assert_eq!(p.ceiling(1000).as_secs(), 10);
    }

    #[test]
    fn full_jitter_stays_in_range_and_honours_retry_after() {
        let p = BackoffPolicy {
            min_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
        };
        let mut rng = fastrand::Rng::with_seed(7);
        let mut below_half = 0;
        for _ in 0..1000 {
            let d = p.delay(4, None, &mut rng);
            assert!(d <= Duration::from_secs(8));
            if d < Duration::from_secs(4) {
                below_half += 1;
            }
        }
        // Full jitter (not "equal jitter"): about half the draws fall below half the ceiling.
        assert!((350..650).contains(&below_half), "{below_half}");
        assert!(p.delay(1, Some(Duration::from_secs(30)), &mut rng) >= Duration::from_secs(30));
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(99_999)), &mut rng),
            MAX_RETRY_AFTER
        );
    }

    #[test]
    fn parses_retry_after_forms() {
        let now = time::OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(std::time::SystemTime::from(
            now + time::Duration::seconds(20),
        ));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(20))
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
