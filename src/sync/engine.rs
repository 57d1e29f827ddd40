//! A sync run: refresh the catalog, then for each due capture upload its parts (resuming from
//! the offset the endpoint acknowledges), commit it, verify the signed receipt, record it and
//! crypto-shred the capture — until the queue is drained or the time budget is spent. The
//! upload of one part (tus, resuming) is in [`super::upload`].

use std::time::Duration;

use serde::Serialize;
use std::time::Instant;

use super::client::{Client, Failure};
use super::control::{Hold, RunControl};
use super::retry::BackoffPolicy;
use super::transport::Transport;
use crate::error::{Error, Result};
use crate::model::CaptureId;
use crate::protocol::{self, Action, CommitPart, CommitRequest, Receipt, ReceiptRefusal};
use crate::queue::State;
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

enum Item {
    Counted,
    Duplicate,
    Quarantined,
    Rescheduled,
    NeedsActivation,
    OutOfTime,
    Held(Hold),
}

/// One sync run's state; its part uploads are in [`super::upload`].
pub(super) struct Run<'a> {
    pub(super) store: &'a mut Store,
    pub(super) client: Client<'a>,
    pub(super) opts: SyncOptions,
    deadline: Instant,
    rng: fastrand::Rng,
    report: SyncReport,
    /// Whether the current capture's attempt got bytes acknowledged.
    pub(super) progressed: bool,
    /// The size of the next PATCH (ADR 0018).
    pub(super) patch_size: super::patch_size::PatchSize,
}

/// Below this much remaining budget no new exchange is started.
pub(super) const MIN_EXCHANGE_TIME: Duration = Duration::from_millis(200);

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
    let client = Client::new(transport, clock).with_token(Some(activation.token.clone()));
    let rng = opts
        .seed
        .map_or_else(fastrand::Rng::new, fastrand::Rng::with_seed);
    // A kill between recording a receipt and purging leaves a committed capture: finish it.
    store.purge_committed()?;
    // The keyed duplicate hashes of closed processes are no longer needed on the phone.
    let now = store.clock().now();
    store.forget_closed_duplicates(now)?;
    let mut run = Run {
        store,
        client,
        // A budget beyond a year (an app passing Duration::MAX) means "no limit": a year, which
        // an Instant can always hold.
        deadline: start + opts.budget.min(Duration::from_secs(365 * 24 * 3600)),
        opts,
        rng,
        report,
        progressed: false,
        patch_size: Default::default(),
    };
    run.refresh_catalog().await?;
    run.drain().await?;
    run.report.bytes_sent = run.client.bytes_sent;
    if let Some(offset) = run.client.clock_offset {
        run.store.set_clock_offset(offset)?;
    }
    run.report.pending = run.store.pending_count()?;
    Ok(run.report)
}

impl Run<'_> {
    pub(super) fn remaining(&self) -> Duration {
        self.deadline
            .saturating_duration_since(self.store.clock().instant())
    }

    async fn refresh_catalog(&mut self) -> Result<()> {
        let t = self.remaining();
        if t < MIN_EXCHANGE_TIME || self.held().is_some() {
            return Ok(());
        }
        // A failure here is not fatal: the cached catalog serves until the next run.
        if let Ok(list) = self.client.processes(t).await? {
            self.store.put_processes(&list.processes)?;
        }
        Ok(())
    }

    async fn drain(&mut self) -> Result<()> {
        loop {
            if self.remaining() < MIN_EXCHANGE_TIME {
                self.report.stopped = StopReason::Budget;
                return Ok(());
            }
            if let Some(h) = self.held() {
                self.report.stopped = StopReason::Held(h);
                return Ok(());
            }
            let now = self.store.clock().now();
            let due = self.store.due_captures(now)?;
            if due.is_empty() {
                match self.store.next_due_at()? {
                    None => {
                        self.report.stopped = StopReason::Drained;
                        return Ok(());
                    }
                    Some(at) => {
                        let wait = (at - now).max(time::Duration::ZERO).unsigned_abs();
                        if wait >= self.remaining() {
                            self.report.stopped = StopReason::Budget;
                            return Ok(());
                        }
                        self.sleep_unless_changed(wait).await;
                        continue;
                    }
                }
            }
            for id in due {
                if let Some(h) = self.held() {
                    self.report.stopped = StopReason::Held(h);
                    return Ok(());
                }
                match self.one(&id).await? {
                    Item::Counted => self.report.committed += 1,
                    Item::Duplicate => self.report.duplicates += 1,
                    Item::Quarantined => self.report.quarantined += 1,
                    Item::Rescheduled => {}
                    Item::NeedsActivation => {
                        self.report.stopped = StopReason::NeedsActivation;
                        return Ok(());
                    }
                    Item::OutOfTime => {
                        self.report.stopped = StopReason::Budget;
                        return Ok(());
                    }
                    Item::Held(h) => {
                        self.report.stopped = StopReason::Held(h);
                        return Ok(());
                    }
                }
                self.progress()?;
            }
        }
    }

    fn progress(&self) -> Result<()> {
        if let Some(cb) = &self.opts.progress {
            let done = self.report.committed + self.report.duplicates + self.report.quarantined;
            cb(&super::Progress {
                done,
                pending: self.store.pending_count()?,
                bytes_sent: self.client.bytes_sent,
            });
        }
        Ok(())
    }

    /// Handles one capture until it is committed, quarantined or rescheduled.
    async fn one(&mut self, id: &CaptureId) -> Result<Item> {
        self.progressed = false;
        match self.deliver(id).await {
            Ok(Ok(item)) => Ok(item),
            Ok(Err(failure)) => self.on_failure(id, failure),
            // A local integrity failure (a damaged part file): this capture cannot be sent as
            // it is, but it is kept for inspection and never deleted.
            Err(e @ (Error::Integrity { .. } | Error::CiphertextVersion(_))) => {
                tracing::warn!(capture = %id, error = %e, "local integrity failure; quarantined");
                self.quarantine(id, "local_integrity")?;
                Ok(Item::Quarantined)
            }
            // A message this capture would need is over a protocol limit: it can never be
            // sent as it is. Kept, quarantined, and the rest of the queue goes on.
            Err(Error::TooLarge { .. }) => {
                self.quarantine(id, "too_large")?;
                Ok(Item::Quarantined)
            }
            Err(e) => Err(e),
        }
    }

    fn on_failure(&mut self, id: &CaptureId, failure: Failure) -> Result<Item> {
        if self.remaining() < MIN_EXCHANGE_TIME {
            // The budget cut the exchange short: not the endpoint's fault, no attempt counted.
            return Ok(Item::OutOfTime);
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
                        self.store.reset_upload(id, kind)?;
                    }
                }
                self.report.retries += 1;
                // A slow link that keeps making progress is not a failing one: start the
                // backoff over rather than letting it climb to minutes.
                if self.progressed {
                    self.store.reset_attempts(id)?;
                }
                let attempts = self.store.attempts(id)? + 1;
                let delay = self
                    .opts
                    .backoff
                    .delay(attempts, failure.retry_after(), &mut self.rng);
                let next = self.store.clock().now() + delay;
                let why = failure.describe();
                self.store.record_transient(id, next, &why)?;
                let state = self.store.info(id)?.state;
                self.changed(id, state, Some(&why), Some(next));
                Ok(Item::Rescheduled)
            }
        }
    }

    async fn deliver(&mut self, id: &CaptureId) -> Result<Result<Item, Failure>> {
        let info = self.store.info(id)?;
        if info.state == State::Captured {
            self.changed(id, State::Uploading, None, None);
        }
        let parts = self.store.parts(id)?;
        let mut commit_parts = Vec::with_capacity(parts.len());
        for part in &parts {
            match self.upload(id, part).await? {
                Ok(url) => commit_parts.push(CommitPart {
                    kind: part.kind,
                    upload: url,
                    sha256: part.sha256,
                    length: part.ct_len,
                }),
                Err(f) => return Ok(Err(f)),
            }
        }
        let msg = CommitRequest {
            v: protocol::VERSION,
            capture_id: *id,
            process_id: info.process_id.clone(),
            captured_at: info.captured_at,
            collector: self.store.capture_collector(id)?,
            sealed_key: self.store.endpoint_seal(id)?,
            parts: commit_parts,
            sent_at: self.store.clock().now(),
            seal_key_id: self.store.capture_seal_key_id(id)?,
        };
        let signed_commit = protocol::trust::sign_commit(&self.store.signing_key()?, &msg)?;
        #[cfg(feature = "testkit")]
        super::test_bugs::before_commit(self.store, id)?;
        let t = self.remaining();
        let (_status, signed) = match self.client.commit(id, &signed_commit, t).await? {
            Ok(r) => r,
            Err(f) => return Ok(Err(f)),
        };
        let receipt = match self.check_receipt(&msg, &signed)? {
            Ok(r) => r,
            Err(refusal) => return self.untrusted(id, refusal).map(Ok),
        };
        self.store.record_receipt_v11(&receipt, &signed)?;
        let result = match receipt.result {
            protocol::ReceiptResult::Counted => "counted",
            protocol::ReceiptResult::Duplicate => "duplicate",
        };
        self.changed(id, State::Committed, Some(result), None);
        self.store.purge(id)?;
        self.changed(id, State::Purged, Some(result), None);
        Ok(Ok(match receipt.result {
            protocol::ReceiptResult::Counted => Item::Counted,
            protocol::ReceiptResult::Duplicate => Item::Duplicate,
        }))
    }

    /// The receipt check (`protocol::trust::verify_receipt`): against the provisioned INE
    /// root, never a key learned from the network, and against what this device committed.
    fn check_receipt(
        &self,
        sent: &CommitRequest,
        signed: &protocol::SignedReceipt,
    ) -> Result<std::result::Result<Receipt, ReceiptRefusal>> {
        let Some(root) = self.store.ine_root()? else {
            return Ok(Err(ReceiptRefusal::NoAnchoredKey));
        };
        Ok(protocol::trust::verify_receipt(
            &root,
            signed,
            sent,
            self.store.device_id(),
        ))
    }

    /// A receipt that is no grounds for deleting anything: the capture keeps every byte and
    /// stays queued (an endpoint without an anchored key, e.g. v1) or is quarantined
    /// `receipt_invalid`; the run reports why.
    fn untrusted(&mut self, id: &CaptureId, refusal: ReceiptRefusal) -> Result<Item> {
        tracing::warn!(capture = %id, problem = %refusal.describe(), "receipt not accepted; nothing deleted");
        self.report.untrusted_receipts += 1;
        self.report.receipt_problem = Some(refusal.label());
        if refusal.keeps_queued() {
            let attempts = self.store.attempts(id)? + 1;
            let delay = self.opts.backoff.delay(attempts, None, &mut self.rng);
            let next = self.store.clock().now() + delay;
            let why = refusal.describe();
            self.store.record_transient(id, next, &why)?;
            let state = self.store.info(id)?.state;
            self.changed(id, state, Some(&why), Some(next));
            return Ok(Item::Rescheduled);
        }
        self.quarantine(id, "receipt_invalid")?;
        Ok(Item::Quarantined)
    }
}
