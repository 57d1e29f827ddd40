//! A sync run: refresh the catalog, then for each due capture upload its parts (resuming from
//! the offset the endpoint acknowledges), commit it, verify the signed receipt, record it and
//! crypto-shred the capture — until the queue is drained or the time budget is spent. The
//! upload of one part (tus, resuming) is in [`super::upload`].

use std::cell::{Cell, RefCell, RefMut};
use std::time::Duration;

use serde::Serialize;
use std::time::Instant;

use super::client::{Client, Failure};
use super::control::{Hold, RunControl};
use super::retry::BackoffPolicy;
use super::transport::Transport;
use crate::clock::SharedClock;
use crate::error::Result;
use crate::model::CaptureId;
use crate::protocol::{self, Action, CommitRequest, Receipt, ReceiptRefusal};
use crate::store::Store;

/// A progress callback.
pub type ProgressFn = std::sync::Arc<dyn Fn(&Progress) + Send + Sync>;

/// Options of a sync run.
#[derive(Clone)]
pub struct SyncOptions {
    /// Stop cleanly after this long (Android's WorkManager gives a worker 10 minutes; iOS
    /// background tasks less). Every capture is left resumable.
    pub budget: Duration,
    pub backoff: BackoffPolicy,
    /// Seed of the jitter generator (`None`: random).
    pub seed: Option<u64>,
    /// Called after each capture reaches a terminal state or is rescheduled.
    pub progress: Option<ProgressFn>,
    /// Consulted before each exchange (cancel, network policy) and told of each capture's
    /// state change; `None`: the run only stops at its budget.
    pub control: Option<std::sync::Arc<dyn RunControl>>,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            budget: Duration::from_secs(9 * 60),
            backoff: BackoffPolicy::default(),
            seed: None,
            progress: None,
            control: None,
        }
    }
}

/// A progress snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Progress {
    pub done: u64,
    pub pending: u64,
    pub bytes_sent: u64,
}

/// Why a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// Nothing is left to send.
    Drained,
    /// The time budget ran out; the rest waits for the next run.
    Budget,
    /// The activation is missing or expired: the user must activate again.
    NeedsActivation,
    /// The run control stopped it (cancel, network policy, another call waiting).
    Held(Hold),
}

/// What a run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SyncReport {
    /// Captures the endpoint counted in this run.
    pub committed: u64,
    /// Captures the endpoint recorded as duplicates (the citizen was already counted).
    pub duplicates: u64,
    /// Captures quarantined in this run.
    pub quarantined: u64,
    /// Captures still waiting at the end of the run.
    pub pending: u64,
    /// Request body bytes the endpoint answered.
    pub bytes_sent: u64,
    /// Transient failures met (each rescheduled or retried).
    pub retries: u64,
    /// v1.1: receipts not accepted (not chained to the INE root, or not matching the commit).
    /// None deleted anything: each capture stayed queued or was quarantined `receipt_invalid`.
    #[serde(skip_serializing_if = "is_zero")]
    pub untrusted_receipts: u64,
    /// Why the last receipt was not accepted (no personal data).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipt_problem: Option<&'static str>,
    pub stopped: StopReason,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

pub(super) enum Item {
    Counted,
    Duplicate,
    Quarantined,
    Rescheduled,
    NeedsActivation,
    OutOfTime,
    Held(Hold),
}

/// One sync run's state; its part uploads are in [`super::upload`]. A commit and the next
/// capture's uploads run at once ([`super::pipeline`]), so the state is shared through cells:
/// the store is borrowed only between awaits (never across one), so its writes happen one at
/// a time, in the order the answers arrive.
pub(super) struct Run<'a> {
    pub(super) store: RefCell<&'a mut Store>,
    pub(super) clock: SharedClock,
    pub(super) client: Client<'a>,
    pub(super) opts: SyncOptions,
    pub(super) deadline: Instant,
    rng: RefCell<fastrand::Rng>,
    pub(super) report: RefCell<SyncReport>,
    /// The size of the next PATCH (ADR 0018).
    pub(super) patch_size: Cell<super::patch_size::PatchSize>,
    /// Turns for PATCHes, shared by the captures uploading at once (ADR 0022).
    pub(super) patch_turns: tokio::sync::Semaphore,
    /// A capture's settlement stopped the run (re-activation, a hold, the budget): the other
    /// capture under way stops at its next exchange, not counted as an attempt.
    pub(super) halted: Cell<Option<StopReason>>,
    /// A capture met a local error (the store): the other one stops too.
    pub(super) broken: Cell<bool>,
}

/// Below this much remaining budget no new exchange is started (nor below the quickest
/// round trip of the run: [`exchange_floor`]).
pub(super) const MIN_EXCHANGE_TIME: Duration = Duration::from_millis(200);

/// The least budget a new exchange needs: [`MIN_EXCHANGE_TIME`], or the quickest exchange
/// answered in this run when longer — on a 2 s round-trip link (Slow 3G) an exchange started
/// with 1.3 s left can only time out, its bytes sent for nothing.
pub(super) fn exchange_floor(client: &Client<'_>) -> Duration {
    client
        .quickest_exchange()
        .map_or(MIN_EXCHANGE_TIME, |q| q.max(MIN_EXCHANGE_TIME))
}

/// Runs one sync. Transport failures are never errors here (they are rescheduled); an `Err` is
/// a local problem (the store) or a missing registration.
pub async fn run(
    store: &mut Store,
    transport: &dyn Transport,
    opts: SyncOptions,
) -> Result<SyncReport> {
    // Budget time comes from the store's clock: monotonic in production, virtual in a
    // simulation.
    let start = store.clock().instant();
    let mut report = SyncReport {
        committed: 0,
        duplicates: 0,
        quarantined: 0,
        pending: 0,
        bytes_sent: 0,
        retries: 0,
        untrusted_receipts: 0,
        receipt_problem: None,
        stopped: StopReason::Drained,
    };
    let activation = match store.activation()? {
        Some(a) if a.expires_at > store.clock().now() => a,
        _ => {
            report.pending = store.pending_count()?;
            report.stopped = StopReason::NeedsActivation;
            return Ok(report);
        }
    };
    let clock = store.clock().clone();
    let client = Client::new(transport, clock.clone()).with_token(Some(activation.token.clone()));
    let rng = opts
        .seed
        .map_or_else(fastrand::Rng::new, fastrand::Rng::with_seed);
    // A kill between recording a receipt and purging leaves a committed capture: finish it.
    store.purge_committed()?;
    // The keyed duplicate hashes of closed processes are no longer needed on the phone.
    let now = store.clock().now();
    store.forget_closed_duplicates(now)?;
    // What the last run learned about the link, if recent (ADR 0023).
    let patch_size = super::link_memory::starting_patch_size(store)?;
    let mut run = Run {
        store: RefCell::new(store),
        clock,
        client,
        // A budget beyond a year (an app passing Duration::MAX) means "no limit": a year, which
        // an Instant can always hold.
        deadline: start + opts.budget.min(Duration::from_secs(365 * 24 * 3600)),
        opts,
        rng: RefCell::new(rng),
        report: RefCell::new(report),
        patch_size: Cell::new(patch_size),
        patch_turns: tokio::sync::Semaphore::new(super::upload::PATCHES_AT_ONCE),
        halted: Cell::new(None),
        broken: Cell::new(false),
    };
    run.refresh_catalog().await?;
    run.drain().await?;
    let mut report = *run.report.get_mut();
    report.bytes_sent = run.client.bytes_sent();
    let offset = run.client.clock_offset();
    let patch_size = run.patch_size.get();
    let store = run.store.get_mut();
    super::link_memory::end_of_run(store, &patch_size, offset)?;
    report.pending = store.pending_count()?;
    Ok(report)
}

impl<'a> Run<'a> {
    /// The store, between two awaits (a borrow held across one would collide with the other
    /// exchange's).
    pub(super) fn store(&self) -> RefMut<'_, &'a mut Store> {
        self.store.borrow_mut()
    }

    pub(super) fn remaining(&self) -> Duration {
        self.deadline
            .saturating_duration_since(self.clock.instant())
    }

    async fn refresh_catalog(&mut self) -> Result<()> {
        let t = self.remaining();
        if t < MIN_EXCHANGE_TIME || self.held().is_some() {
            return Ok(());
        }
        // Refreshed from this endpoint a moment ago: the run's first exchange is an upload.
        if super::link_memory::catalog_is_fresh(&self.store())? {
            return Ok(());
        }
        // A failure here is not fatal: the cached catalog serves until the next run.
        if let Ok(list) = self.client.processes(t).await? {
            super::link_memory::put_catalog(&mut self.store(), &list.processes)?;
        }
        Ok(())
    }

    pub(super) fn progress(&self) -> Result<()> {
        if let Some(cb) = &self.opts.progress {
            let done = {
                let r = self.report.borrow();
                r.committed + r.duplicates + r.quarantined
            };
            let pending = self.store().pending_count()?;
            cb(&super::Progress {
                done,
                pending,
                bytes_sent: self.client.bytes_sent(),
            });
        }
        Ok(())
    }

    /// What a failure met while the run is halting counts as: the halt's own outcome, never
    /// an attempt.
    fn halting_item(&self) -> Option<Item> {
        if self.broken.get() {
            return Some(Item::OutOfTime);
        }
        Some(match self.halted.get()? {
            StopReason::NeedsActivation => Item::NeedsActivation,
            StopReason::Held(h) => Item::Held(h),
            StopReason::Budget | StopReason::Drained => Item::OutOfTime,
        })
    }

    /// The backoff before attempt `attempts` (jitter from the run's generator).
    fn delay(&self, attempts: u32, retry_after: Option<Duration>) -> Duration {
        self.opts
            .backoff
            .delay(attempts, retry_after, &mut self.rng.borrow_mut())
    }

    /// A failed attempt: quarantined, re-activation asked, or rescheduled with backoff
    /// (`progressed`: the attempt got bytes acknowledged, so the backoff starts over).
    pub(super) fn on_failure(
        &self,
        id: &CaptureId,
        failure: Failure,
        progressed: bool,
    ) -> Result<Item> {
        // An answered refusal is acted on whenever it comes; a failure without one (a cut,
        // a timeout, a 5xx) may be the run's own end.
        if !matches!(failure, Failure::Refused { .. }) {
            if let Some(item) = self.halting_item() {
                // The other capture stopped the run (or broke it): this one stopped with it.
                return Ok(item);
            }
            if self.remaining() < exchange_floor(&self.client) {
                // The budget cut the exchange short, or left no time for another (less than
                // a round trip): not the endpoint's fault, no attempt counted.
                return Ok(Item::OutOfTime);
            }
        }
        if let Some(h) = self.held() {
            // Held back (cancel, network policy): not the endpoint's fault, no attempt counted.
            return Ok(Item::Held(h));
        }
        #[cfg(feature = "testkit")]
        if super::test_bugs::transient_is_permanent(&failure) {
            self.quarantine(id, &failure.describe())?;
            return Ok(Item::Quarantined);
        }
        match failure.action() {
            Action::Quarantine => {
                self.quarantine(id, &failure.describe())?;
                Ok(Item::Quarantined)
            }
            Action::Reactivate => Ok(Item::NeedsActivation),
            Action::Reupload | Action::Retry => {
                if failure.action() == Action::Reupload {
                    for kind in crate::model::PartKind::ALL {
                        self.store().reset_upload(id, kind)?;
                    }
                }
                self.report.borrow_mut().retries += 1;
                // A slow link that keeps making progress is not a failing one: start the
                // backoff over rather than letting it climb to minutes.
                if progressed {
                    self.store().reset_attempts(id)?;
                }
                let attempts = self.store().attempts(id)? + 1;
                let delay = self.delay(attempts, failure.retry_after());
                let next = self.clock.now() + delay;
                let why = failure.describe();
                self.store().record_transient(id, next, &why)?;
                let state = self.store().info(id)?.state;
                self.changed(id, state, Some(&why), Some(next));
                Ok(Item::Rescheduled)
            }
        }
    }

    /// The receipt check (`protocol::trust::verify_receipt`): against the provisioned INE
    /// root, never a key learned from the network, and against what this device committed.
    pub(super) fn check_receipt(
        &self,
        sent: &CommitRequest,
        signed: &protocol::SignedReceipt,
    ) -> Result<std::result::Result<Receipt, ReceiptRefusal>> {
        let store = self.store();
        let Some(root) = store.ine_root()? else {
            return Ok(Err(ReceiptRefusal::NoAnchoredKey));
        };
        Ok(protocol::trust::verify_receipt(
            &root,
            signed,
            sent,
            store.device_id(),
        ))
    }

    /// A receipt that is no grounds for deleting anything: the capture keeps every byte and
    /// stays queued (an endpoint without an anchored key, e.g. v1) or is quarantined
    /// `receipt_invalid`; the run reports why.
    pub(super) fn untrusted(&self, id: &CaptureId, refusal: ReceiptRefusal) -> Result<Item> {
        tracing::warn!(capture = %id, problem = %refusal.describe(), "receipt not accepted; nothing deleted");
        {
            let mut report = self.report.borrow_mut();
            report.untrusted_receipts += 1;
            report.receipt_problem = Some(refusal.label());
        }
        if refusal.keeps_queued() {
            let attempts = self.store().attempts(id)? + 1;
            let delay = self.delay(attempts, None);
            let next = self.clock.now() + delay;
            let why = refusal.describe();
            self.store().record_transient(id, next, &why)?;
            let state = self.store().info(id)?.state;
            self.changed(id, state, Some(&why), Some(next));
            return Ok(Item::Rescheduled);
        }
        self.quarantine(id, "receipt_invalid")?;
        Ok(Item::Quarantined)
    }
}
