//! Link memory across sync runs (ADR 0023). Each `apoyo sync` (or WorkManager / BGTask job) is
//! a new run, often a new process, so what a run learned would die with it. A run ends by
//! storing its PATCH sizing ([`PatchSize::learned`]) with the time, in the transaction that
//! already records the endpoint clock's offset; the next run starts from it when it is younger
//! than [`PATCH_MEMORY`] and was learned with the same endpoint, else as ADR 0018 says. The
//! catalog refresh at a run's start is skipped when the stored catalog came from the same
//! endpoint less than [`CATALOG_FRESH`] ago.

use std::time::Duration;

use time::OffsetDateTime;

use super::patch_size::{Learned, PatchSize};
use crate::error::Result;
use crate::process::Process;
use crate::store::{LinkRow, Store};

/// How long what a run learned about the link is trusted. Back-to-back runs (the field kit's
/// 30-second runs, a retry after a short backoff, an app syncing after each capture) reuse it;
/// a phone moving between cells meets another link within minutes, and WorkManager's periodic
/// work (every 15 minutes at least) starts afresh. A wrong memory costs at most the first
/// PATCHes: a slow round trip on a link remembered as prompt restarts at 16 KiB, and failures
/// shrink the size as in any run.
pub const PATCH_MEMORY: Duration = Duration::from_secs(10 * 60);

/// How long a catalog refreshed from the endpoint is used without asking again. Processes
/// open and close on a scale of days, and the endpoint judges every commit against its own
/// catalog (an out-of-scope one is refused whatever the device believed); on Slow 3G the
/// refresh costs a 2-second round trip per run. Periodic work (15 minutes or more apart) still
/// refreshes every time; only runs in quick succession skip it.
pub const CATALOG_FRESH: Duration = Duration::from_secs(15 * 60);

/// Whether `at` lies within `window` before `now` (a clock set back makes nothing recent).
fn recent(at: OffsetDateTime, now: OffsetDateTime, window: Duration) -> bool {
    at <= now && (now - at).unsigned_abs() < window
}

/// The PATCH sizing a run starts with: the last run's, when it is recent and was learned with
/// this endpoint; otherwise a fresh one.
pub(super) fn starting_patch_size(store: &Store) -> Result<PatchSize> {
    let (Some(row), Some(url)) = (store.link_memory()?, store.endpoint_url()?) else {
        return Ok(PatchSize::default());
    };
    let now = store.clock().now();
    if row.endpoint_url != url || !recent(row.learned_at, now, PATCH_MEMORY) {
        return Ok(PatchSize::default());
    }
    Ok(PatchSize::resume(Learned {
        size: usize::try_from(row.patch_size).unwrap_or(usize::MAX),
        ceiling: usize::try_from(row.patch_ceiling).unwrap_or(usize::MAX),
        pace: row.pace,
        slow_link: row.slow_link,
    }))
}

/// Whether the stored catalog came from this endpoint recently enough to skip the refresh.
pub(super) fn catalog_is_fresh(store: &Store) -> Result<bool> {
    let (Some((from, at)), Some(url)) = (store.catalog_refreshed()?, store.endpoint_url()?) else {
        return Ok(false);
    };
    Ok(from == url && recent(at, store.clock().now(), CATALOG_FRESH))
}

/// Stores the catalog the endpoint answered with, and when.
pub(super) fn put_catalog(store: &mut Store, list: &[Process]) -> Result<()> {
    let Some(url) = store.endpoint_url()? else {
        return store.put_processes(list);
    };
    store.put_endpoint_catalog(&url, list)
}

/// A run's end: the endpoint clock's offset seen at its last answer and what the run learned
/// about the link (if a PATCH was answered), in one transaction. A PATCH cut by the run's own
/// end taught the sizing nothing (`upload::send_from` does not count it as a failure), so
/// what the run knew at its end is what the link showed.
pub(super) fn end_of_run(
    store: &mut Store,
    patch_size: &PatchSize,
    clock_offset: Option<time::Duration>,
) -> Result<()> {
    let link = match (patch_size.learned(), store.endpoint_url()?) {
        (Some(l), Some(url)) => Some(LinkRow {
            endpoint_url: url,
            patch_size: l.size as u64,
            patch_ceiling: l.ceiling as u64,
            pace: l.pace,
            slow_link: l.slow_link,
            learned_at: store.clock().now(),
        }),
        _ => None,
    };
    store.record_run_end(clock_offset, link.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_means_within_the_window_and_never_in_the_future() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let w = Duration::from_secs(600);
        assert!(recent(now, now, w));
        assert!(recent(now - time::Duration::seconds(599), now, w));
        assert!(!recent(now - time::Duration::seconds(600), now, w));
        assert!(
            !recent(now + time::Duration::seconds(1), now, w),
            "a clock set back"
        );
    }

    use super::super::patch_size::START;

    #[test]
    fn a_run_hands_on_its_failures_too() {
        let mut p = PatchSize::default();
        assert_eq!(p.learned(), None, "no PATCH answered");
        for _ in 0..4 {
            p.acknowledged(p.get(), Duration::from_millis(50));
        }
        let before = p.get();
        p.failed();
        p.failed();
        let failed = p.learned().expect("answered PATCHes");
        assert!(
            failed.size < before && failed.ceiling < before,
            "{failed:?}"
        );
        // Nothing acknowledged, only cut by the link: the cut is handed on.
        let mut q = PatchSize::default();
        q.failed();
        assert!(q.learned().is_some_and(|l| l.size < START));
    }
}
