//! Device clocks (protocol v1.1, §6.5 step 8, gap 12). A phone whose battery ran down often
//! shows a wrong time, and `captured_at` comes from that clock. The commit also carries
//! `sent_at` (the same clock, when the commit was built); the endpoint's own receive time minus
//! `sent_at` is the device's skew. Within [`TOLERANCE`] the device clock is taken as it is;
//! beyond it, the process window is judged on `captured_at + skew`, and both times are kept.
//! The correction assumes the clock did not jump between the capture and the send (a phone
//! whose clock was reset in between is judged on the corrected time, which is as good a guess
//! as any and never worse than the raw one).

use time::{Duration, OffsetDateTime};

/// Skew tolerated without correction.
pub const TOLERANCE: Duration = Duration::minutes(5);

/// The capture time to judge the process window on, and the skew applied (whole seconds)
/// when it was over the tolerance.
pub(crate) fn judged_capture_time(
    captured_at: OffsetDateTime,
    sent_at: OffsetDateTime,
    received_at: OffsetDateTime,
) -> (OffsetDateTime, Option<i64>) {
    let skew = received_at - sent_at;
    if skew.abs() <= TOLERANCE {
        return (captured_at, None);
    }
    match captured_at.checked_add(skew) {
        Some(t) => (t, Some(skew.whole_seconds())),
        None => (captured_at, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn small_skews_are_ignored_large_ones_corrected() {
        let now = datetime!(2021-11-20 17:00 UTC);
        let cap = datetime!(2021-11-20 16:00 UTC);
        assert_eq!(
            judged_capture_time(cap, now - Duration::minutes(4), now),
            (cap, None)
        );
        // A phone a year behind: captured "in 2020", sent "in 2020".
        let year = Duration::days(366);
        let (t, skew) = judged_capture_time(cap - year, now - year, now);
        assert_eq!((t, skew), (cap, Some(year.whole_seconds())));
        // An hour ahead.
        let hour = Duration::hours(1);
        assert_eq!(
            judged_capture_time(cap + hour, now + hour, now),
            (cap, Some(-3600))
        );
    }
}
