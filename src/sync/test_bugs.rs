//! Deliberately broken variants of the sync run, for the simulation's bug-finding tests
//! (tests/sim/): they show that the simulator catches a lost capture and a needless
//! quarantine. Compiled only with the `testkit` feature (never in the bridges'
//! builds); inert unless a test switches one on for its own thread (`set`).

use std::cell::Cell;

use super::client::Failure;
use crate::error::Result;
use crate::model::CaptureId;
use crate::store::Store;

/// A broken behaviour of the sync run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bug {
    /// Crypto-shreds a capture as its commit is sent, before any receipt is verified.
    ShredBeforeReceipt,
    /// Quarantines a capture on a transient failure (a drop, a 5xx, a 429).
    QuarantineTransient,
}

thread_local! {
    static ACTIVE: Cell<Option<Bug>> = const { Cell::new(None) };
}

/// Switches `bug` on (or every bug off) for sync runs on this thread.
pub fn set(bug: Option<Bug>) {
    ACTIVE.with(|a| a.set(bug));
}

fn active(bug: Bug) -> bool {
    ACTIVE.with(|a| a.get()) == Some(bug)
}

/// [`Bug::ShredBeforeReceipt`]: called just before a commit is sent.
pub(super) fn before_commit(store: &mut Store, id: &CaptureId) -> Result<()> {
    if active(Bug::ShredBeforeReceipt) {
        // `purge` shreds only a committed capture, so the broken run first marks the capture
        // committed with no receipt at all, as a run that skipped the check would.
        store.mark_committed_unverified(id)?;
        store.purge(id)?;
    }
    Ok(())
}

/// [`Bug::QuarantineTransient`]: whether this failure is (wrongly) taken as permanent.
pub(super) fn transient_is_permanent(failure: &Failure) -> bool {
    active(Bug::QuarantineTransient) && matches!(failure, Failure::Transient { .. })
}
