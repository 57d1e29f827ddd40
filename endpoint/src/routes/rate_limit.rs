//! The rate-limit window check shared by registrations (codes mailed per address and per
//! device key) and activations (failures per device key): count a subject's recent events and
//! refuse with `429 rate_limited` and a `Retry-After` when the window is full.

use crate::error::ApiError;
use crate::store::{Db, EventLog};
use apoyo_sync::wire::Reason;

/// A rate limit: at most `max` events in the last `secs` seconds before `now`.
pub(super) struct Window {
    pub(super) now: i64,
    pub(super) secs: i64,
    pub(super) max: i64,
}

/// Refuses with `429 rate_limited` when the subject's events in `log` within the window reach
/// the window's `max`; `Retry-After` is the time until the oldest event leaves the window.
pub(super) fn refuse_when_over(
    tx: &dyn Db,
    log: EventLog,
    subject: &[u8],
    w: Window,
    detail: &'static str,
) -> Result<(), ApiError> {
    let (count, oldest): (i64, Option<i64>) = tx.recent_events(log, subject, w.now - w.secs)?;
    if count >= w.max {
        let wait = (oldest.unwrap_or(w.now) + w.secs - w.now).max(1);
        return Err(ApiError::new(Reason::RateLimited, detail).retry_after(wait as u64));
    }
    Ok(())
}
