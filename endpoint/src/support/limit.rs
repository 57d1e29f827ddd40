//! The refused-commit budget (issue 17): a refusal that is not a recorded answer and that made
//! the endpoint read part bytes (`part_mismatch`, or `upload_missing` found while reading or
//! re-checking) is logged per device in the database (`commit_refusals`, so every replica
//! counts it); once a device has `commit_refusals` of them within `commit_refusal_window`, its
//! commits are answered `429 rate_limited` with a `Retry-After` in the read phase, before any
//! part is read. Never counted: receipts, recorded rejections and their replays (an honest
//! backlog is only these), refusals found on the upload rows alone (`upload_missing` of an
//! expired or unfinished upload: a returning phone uploads again), and everything refused
//! before the database (signature, shape), which costs less than the count would.
//!
//! The check is a read outside any transaction: concurrent commits of one device may each pass
//! it, so a device can exceed the budget by at most the number of its commits in flight.

use apoyo_sync::wire::Reason;

use super::again;
use crate::auth::Device;
use crate::error::ApiError;
use crate::http::unix;
use crate::state::Inner;
use crate::store::{Db, EventLog};

/// The window in seconds and the budget.
fn budget(inner: &Inner) -> (i64, i64) {
    let secs = i64::try_from(inner.cfg.commit_refusal_window.as_secs()).unwrap_or(86_400);
    (secs, i64::from(inner.cfg.commit_refusals))
}

/// `429 rate_limited` when the device has used its budget; `Retry-After` is the time until
/// its oldest counted refusal leaves the window.
pub(super) fn refuse_when_over(
    conn: &dyn Db,
    inner: &Inner,
    device: &Device,
) -> Result<(), ApiError> {
    let now = unix(inner.now());
    let (secs, max) = budget(inner);
    let (count, oldest) =
        conn.recent_events(EventLog::CommitRefusals, device.id.as_bytes(), now - secs)?;
    if count >= max {
        let wait = (oldest.unwrap_or(now) + secs - now).max(1);
        tracing::info!(device = %device.id, count, "commit refused: the device's refusal budget is used");
        return Err(ApiError::new(
            Reason::RateLimited,
            "too many refused commits from this device; retry later",
        )
        .retry_after(wait as u64));
    }
    Ok(())
}

/// In the decision transaction: counts `refusal` against the device (forgetting refusals that
/// left the window), commits, and gives the refusal back to be answered.
pub(super) fn count(
    tx: &dyn Db,
    inner: &Inner,
    device: &Device,
    refusal: &ApiError,
) -> Result<ApiError, ApiError> {
    let now = unix(inner.now());
    let (secs, _) = budget(inner);
    tx.forget_events(EventLog::CommitRefusals, now - secs)?;
    tx.add_event(EventLog::CommitRefusals, device.id.as_bytes(), now)?;
    tx.commit()?;
    tracing::info!(device = %device.id, reason = refusal.reason.code(), "commit refused; counted against the device");
    Ok(again(refusal))
}
