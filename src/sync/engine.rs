//! A sync run: refresh the catalog, then for each due capture upload its parts (resuming from
//! the offset the endpoint acknowledges), commit it, verify the signed receipt, record it and
//! crypto-shred the capture — until the queue is drained or the time budget is spent.

use std::io::{Read, Seek, SeekFrom};
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use super::client::{Client, Failure, PatchResult};
use super::retry::BackoffPolicy;
use super::transport::Transport;
use crate::error::{Error, Result};
use crate::model::CaptureId;
use crate::protocol::{self, Action, CommitPart, CommitRequest, Receipt, limits};
use crate::store::{Activation, PartRecord, Store};

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
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            budget: Duration::from_secs(9 * 60),
            backoff: BackoffPolicy::default(),
            seed: None,
            progress: None,
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
    #[serde(skip)]
    pub stopped: StopReason,
}

enum Item {
    Counted,
    Duplicate,
    Quarantined,
    Rescheduled,
    NeedsActivation,
    OutOfTime,
}

struct Run<'a> {
    store: &'a mut Store,
    client: Client<'a>,
    opts: SyncOptions,
    activation: Activation,
    deadline: Instant,
    rng: fastrand::Rng,
    report: SyncReport,
    /// Whether the current capture's attempt got bytes acknowledged.
    progressed: bool,
}

/// Whether a stored `Upload-Expires` (HTTP date) has passed, with a minute's margin.
fn upload_expired(expires: Option<&str>, now: time::OffsetDateTime) -> bool {
    let Some(at) = expires.and_then(|e| httpdate::parse_http_date(e).ok()) else {
        return false;
    };
    time::OffsetDateTime::from(at) <= now + time::Duration::minutes(1)
}

/// Below this much remaining budget no new exchange is started.
const MIN_EXCHANGE_TIME: Duration = Duration::from_millis(200);

/// Runs one sync. Transport failures are never errors here (they are rescheduled); an `Err` is
/// a local problem (the store) or a missing registration.
pub async fn run(
    store: &mut Store,
    transport: &dyn Transport,
    opts: SyncOptions,
) -> Result<SyncReport> {
    let start = Instant::now();
    let mut report = SyncReport {
        committed: 0,
        duplicates: 0,
        quarantined: 0,
        pending: 0,
        bytes_sent: 0,
        retries: 0,
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
    let mut run = Run {
        store,
        client,
        // A budget beyond a year (an app passing Duration::MAX) means "no limit": a year, which
        // an Instant can always hold.
        deadline: start + opts.budget.min(Duration::from_secs(365 * 24 * 3600)),
        opts,
        activation,
        rng,
        report,
        progressed: false,
    };
    run.refresh_catalog().await?;
    run.drain().await?;
    run.report.bytes_sent = run.client.bytes_sent;
    run.report.pending = run.store.pending_count()?;
    Ok(run.report)
}

impl Run<'_> {
    fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    async fn refresh_catalog(&mut self) -> Result<()> {
        let t = self.remaining();
        if t < MIN_EXCHANGE_TIME {
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
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                }
            }
            for id in due {
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
                self.store.quarantine(id, "local_integrity")?;
                Ok(Item::Quarantined)
            }
            // A message this capture would need is over a protocol limit: it can never be
            // sent as it is. Kept, quarantined, and the rest of the queue goes on.
            Err(Error::TooLarge { .. }) => {
                self.store.quarantine(id, "too_large")?;
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
        match failure.action() {
            Action::Quarantine => {
                self.store.quarantine(id, &failure.describe())?;
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
                self.store.record_transient(id, next, &failure.describe())?;
                Ok(Item::Rescheduled)
            }
        }
    }

    async fn deliver(&mut self, id: &CaptureId) -> Result<Result<Item, Failure>> {
        let info = self.store.info(id)?;
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
        };
        let t = self.remaining();
        let (_status, signed) = match self.client.commit(&msg, t).await? {
            Ok(r) => r,
            Err(f) => return Ok(Err(f)),
        };
        let receipt = match self.check_receipt(&msg, &signed) {
            Ok(r) => r,
            Err(_) => {
                // Never purge on a receipt we cannot trust; keep the capture for inspection.
                self.store.quarantine(id, "receipt_invalid")?;
                return Ok(Ok(Item::Quarantined));
            }
        };
        self.store
            .record_receipt(&receipt, &signed.receipt, &signed.signature)?;
        self.store.purge(id)?;
        Ok(Ok(match receipt.result {
            protocol::ReceiptResult::Counted => Item::Counted,
            protocol::ReceiptResult::Duplicate => Item::Duplicate,
        }))
    }

    fn check_receipt(
        &self,
        sent: &CommitRequest,
        signed: &protocol::SignedReceipt,
    ) -> Result<Receipt> {
        crate::crypto::receipt::verify(
            &self.activation.receipt_public,
            &protocol::receipt_signing_input(&signed.receipt),
            &signed.signature,
        )?;
        let r: Receipt = protocol::decode(&signed.receipt, limits::MAX_RESPONSE_BYTES, "receipt")?;
        let parts_match = r.parts.len() == sent.parts.len()
            && sent.parts.iter().all(|p| {
                r.parts
                    .iter()
                    .any(|q| q.kind == p.kind && q.sha256 == p.sha256)
            });
        // A receipt for exactly this capture, from this device: a receipt naming another
        // device proves nothing about ours (the client_adversarial fuzz target checks this).
        if r.capture_id != sent.capture_id
            || r.device_id != self.store.device_id()
            || r.process_id != sent.process_id
            || !parts_match
            || r.endpoint_key_id != self.activation.receipt_key_id
        {
            return Err(Error::BadReceipt);
        }
        Ok(r)
    }

    /// Uploads one part (resuming), returning its upload URL once the endpoint holds it all.
    async fn upload(
        &mut self,
        id: &CaptureId,
        part: &PartRecord,
    ) -> Result<Result<String, Failure>> {
        let mut url = part.upload_url.clone();
        if url.is_some() && upload_expired(part.upload_expires.as_deref(), self.store.clock().now())
        {
            // tus expiration: the server may already have dropped it; start a new one.
            self.store.reset_upload(id, part.kind)?;
            url = None;
        }
        if let Some(u) = &url
            && part.uploaded_bytes == part.ct_len
        {
            // Already complete when last seen. If the endpoint has since expired it, the
            // commit answers upload_missing and the parts are uploaded again.
            return Ok(Ok(u.clone()));
        }
        let mut fresh = false;
        let mut creations = 0;
        loop {
            let t = self.remaining();
            let current = match &url {
                None => {
                    creations += 1;
                    if creations > 2 {
                        return Ok(Err(Failure::Transient {
                            what: "upload keeps disappearing".into(),
                            retry_after: None,
                        }));
                    }
                    match self
                        .client
                        .create_upload(id, part.kind, part.ct_len, t)
                        .await
                    {
                        Ok((u, exp)) => {
                            self.store.set_upload(id, part.kind, &u, exp.as_deref())?;
                            url = Some(u.clone());
                            fresh = true;
                            u
                        }
                        Err(f) => return Ok(Err(f)),
                    }
                }
                Some(u) => u.clone(),
            };
            // A fresh upload is at 0; a known one is asked where it stands (the server's
            // offset is the truth, not ours).
            let mut offset = if fresh {
                0
            } else {
                match self.client.upload_offset(&current, t).await {
                    Ok(Some(o)) => o,
                    Ok(None) => {
                        self.store.reset_upload(id, part.kind)?;
                        url = None;
                        continue;
                    }
                    Err(f) => return Ok(Err(f)),
                }
            };
            fresh = false;
            if offset > part.ct_len {
                // Not our bytes: start over.
                self.store.reset_upload(id, part.kind)?;
                url = None;
                continue;
            }
            let mut reader = self.store.part_reader(id, part)?;
            let mut buf = vec![0u8; limits::PATCH_BYTES];
            let mut restart = false;
            while offset < part.ct_len {
                let n = ((part.ct_len - offset) as usize).min(limits::PATCH_BYTES);
                reader.seek(SeekFrom::Start(offset))?;
                reader.read_exact(&mut buf[..n])?;
                let t = self.remaining();
                if t < MIN_EXCHANGE_TIME {
                    return Ok(Err(Failure::Transient {
                        what: "budget spent".into(),
                        retry_after: None,
                    }));
                }
                match self
                    .client
                    .patch(&current, offset, buf[..n].to_vec(), t)
                    .await
                {
                    Ok(PatchResult::Accepted(o)) if o > offset && o <= part.ct_len => {
                        offset = o;
                        self.progressed = true;
                    }
                    Ok(PatchResult::Accepted(_)) | Ok(PatchResult::OffsetMismatch) => {
                        restart = true;
                        break;
                    }
                    Ok(PatchResult::ChecksumMismatch) => {
                        return Ok(Err(Failure::Transient {
                            what: "checksum mismatch in transit".into(),
                            retry_after: None,
                        }));
                    }
                    Ok(PatchResult::Gone) => {
                        self.store.reset_upload(id, part.kind)?;
                        url = None;
                        restart = true;
                        break;
                    }
                    Err(f) => {
                        self.store.set_uploaded(id, part.kind, offset)?;
                        return Ok(Err(f));
                    }
                }
            }
            if restart {
                continue;
            }
            self.store.set_uploaded(id, part.kind, offset)?;
            return Ok(Ok(current));
        }
    }
}
