//! The order of a sync run's exchanges (ADR 0022). The due captures are taken oldest first,
//! as before; a capture's five parts upload at once ([`super::upload::Lanes`]), then its
//! commit goes alone and is settled as soon as it is answered (overlapping it with the next
//! capture's uploads was tried and reverted after review: it settled the commit's answer only
//! once those uploads ended). Each answer is recorded when it arrives, by this one task, one
//! store write at a time and as durably as before; a commit is signed just before it leaves. A hold (cancel, network policy) or the budget stops
//! the run before its next exchange: a capture whose parts are all uploaded but whose commit
//! was not sent stays `uploading` and commits in the next run.

use super::client::{Failure, Outcome};
use super::engine::{Item, MIN_EXCHANGE_TIME, Run, StopReason};
use super::upload::Lanes;
use crate::error::{Error, Result};
use crate::model::CaptureId;
use crate::protocol::{self, CommitPart, CommitRequest, SignedCommit, SignedReceipt};
use crate::queue::State;
use crate::store::PartRecord;

/// A capture whose parts the endpoint holds: its commit goes next.
pub(super) struct Ready {
    id: CaptureId,
    parts: Vec<CommitPart>,
    /// Whether its upload attempt got bytes acknowledged.
    progressed: bool,
}

/// A commit sent, and how it went.
type Sent = (Ready, CommitRequest, Result<Outcome<(u16, SignedReceipt)>>);

impl Run<'_> {
    /// Why the run must stop before its next exchange, if it must.
    fn stop_now(&self) -> Option<StopReason> {
        if self.remaining() < MIN_EXCHANGE_TIME {
            return Some(StopReason::Budget);
        }
        self.held().map(StopReason::Held)
    }

    /// Works through the due captures until none is due, the budget is spent or a hold stops
    /// the run.
    pub(super) async fn drain(&mut self) -> Result<()> {
        loop {
            if let Some(stop) = self.stop_now() {
                self.report.stopped = stop;
                return Ok(());
            }
            let now = self.store.clock().now();
            let due = self.store.due_captures(now)?;
            if due.is_empty() {
                let Some(at) = self.store.next_due_at()? else {
                    self.report.stopped = StopReason::Drained;
                    return Ok(());
                };
                let wait = (at - now).max(time::Duration::ZERO).unsigned_abs();
                if wait >= self.remaining() {
                    self.report.stopped = StopReason::Budget;
                    return Ok(());
                }
                self.sleep_unless_changed(wait).await;
                continue;
            }
            if let Some(stop) = self.through(due).await? {
                self.report.stopped = stop;
                return Ok(());
            }
        }
    }

    /// Delivers `due` in order: a capture's parts (at once), then its commit, settled as soon
    /// as it is answered. A commit never overlaps the next capture's uploads (review of ADR
    /// 0022): its answer — a receipt to record and purge, or a refusal to quarantine on — is
    /// settled at once, judged on the budget and holds of that moment.
    async fn through(&mut self, due: Vec<CaptureId>) -> Result<Option<StopReason>> {
        let mut ready: Option<Ready> = None;
        let mut due = due.into_iter();
        loop {
            let next = if ready.is_some() { None } else { due.next() };
            if next.is_none() && ready.is_none() {
                return Ok(None);
            }
            if let Some(stop) = self.stop_now() {
                return Ok(Some(stop));
            }
            let (stop, now_ready) = self.step(ready.take(), next).await?;
            if stop.is_some() {
                return Ok(stop);
            }
            ready = now_ready;
        }
    }

    /// Sends `ready`'s commit, or uploads `next`'s parts (`through` passes one of them), then
    /// settles the answer. Returns why the run stops, if it must, and `next` if its parts are
    /// all uploaded.
    async fn step(
        &mut self,
        ready: Option<Ready>,
        next: Option<CaptureId>,
    ) -> Result<(Option<StopReason>, Option<Ready>)> {
        let mut stop = None;
        let signed = match ready {
            Some(r) => match self.sign(&r) {
                Ok((msg, sc)) => Some((r, msg, sc)),
                Err(e) => {
                    let item = self.settle(&r.id, Err(e), r.progressed)?;
                    stop = stop.or(self.tally(item)?);
                    None
                }
            },
            None => None,
        };
        let next = match next {
            Some(id) => match self.begin(&id) {
                Ok(parts) => Some((id, parts)),
                Err(e) => {
                    let item = self.settle(&id, Err(e), false)?;
                    stop = stop.or(self.tally(item)?);
                    None
                }
            },
            None => None,
        };
        let (sent, uploaded) = self.overlap(signed, next).await;
        if let Some((r, msg, out)) = sent {
            let out = match out {
                Ok(Ok((_status, receipt))) => self.accept(&r.id, &msg, &receipt),
                Ok(Err(f)) => Ok(Err(f)),
                Err(e) => Err(e),
            };
            let item = self.settle(&r.id, out, r.progressed)?;
            stop = stop.or(self.tally(item)?);
        }
        let mut now_ready = None;
        if let Some((id, out, progressed)) = uploaded {
            match out {
                Ok(Ok(parts)) => {
                    now_ready = Some(Ready {
                        id,
                        parts,
                        progressed,
                    })
                }
                Ok(Err(f)) => {
                    let item = self.settle(&id, Ok(Err(f)), progressed)?;
                    stop = stop.or(self.tally(item)?);
                }
                Err(e) => {
                    let item = self.settle(&id, Err(e), progressed)?;
                    stop = stop.or(self.tally(item)?);
                }
            }
        }
        Ok((stop, now_ready))
    }

    /// The exchanges of one step, at once: the commit (one request) and the uploads (one
    /// request per lane). Nothing here decides; the answers are settled by [`Self::step`].
    #[allow(clippy::type_complexity)]
    async fn overlap(
        &mut self,
        signed: Option<(Ready, CommitRequest, SignedCommit)>,
        next: Option<(CaptureId, Vec<PartRecord>)>,
    ) -> (
        Option<Sent>,
        Option<(CaptureId, Result<Outcome<Vec<CommitPart>>>, bool)>,
    ) {
        let t = self.remaining();
        let lanes = Lanes::new(
            &mut *self.store,
            &self.client,
            self.deadline,
            self.opts.control.clone(),
            self.patch_size,
        );
        let client = &self.client;
        let commit = async move {
            let (r, msg, sc) = signed?;
            let out = client.commit(&r.id, &sc, t).await;
            Some((r, msg, out))
        };
        let lanes_ref = &lanes;
        let uploads = async move {
            let (id, parts) = next?;
            let out = lanes_ref.upload_all(&id, &parts).await;
            Some((id, out))
        };
        let (sent, uploaded) = futures_util::join!(commit, uploads);
        let (patch_size, progressed) = lanes.finish();
        self.patch_size = patch_size;
        (sent, uploaded.map(|(id, out)| (id, out, progressed)))
    }

    /// Starts a capture's attempt: says it is uploading, and reads its parts.
    fn begin(&mut self, id: &CaptureId) -> Result<Vec<PartRecord>> {
        let info = self.store.info(id)?;
        if info.state == State::Captured {
            self.changed(id, State::Uploading, None, None);
        }
        self.store.parts(id)
    }

    /// The capture's commit, signed now (its `sent_at` is when it leaves).
    fn sign(&mut self, r: &Ready) -> Result<(CommitRequest, SignedCommit)> {
        let id = &r.id;
        let info = self.store.info(id)?;
        let msg = CommitRequest {
            v: protocol::VERSION,
            capture_id: *id,
            process_id: info.process_id.clone(),
            captured_at: info.captured_at,
            collector: self.store.capture_collector(id)?,
            sealed_key: self.store.endpoint_seal(id)?,
            parts: r.parts.clone(),
            sent_at: self.store.clock().now(),
            seal_key_id: self.store.capture_seal_key_id(id)?,
        };
        let signed = protocol::trust::sign_commit(&self.store.signing_key()?, &msg)?;
        #[cfg(feature = "testkit")]
        super::test_bugs::before_commit(self.store, id)?;
        Ok((msg, signed))
    }

    /// A receipt answered: checked, recorded, and the capture crypto-shredded.
    fn accept(
        &mut self,
        id: &CaptureId,
        msg: &CommitRequest,
        signed: &SignedReceipt,
    ) -> Result<Result<Item, Failure>> {
        let receipt = match self.check_receipt(msg, signed)? {
            Ok(r) => r,
            Err(refusal) => return self.untrusted(id, refusal).map(Ok),
        };
        self.store.record_receipt_v11(&receipt, signed)?;
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

    /// What an attempt's outcome means for the capture: a failure is rescheduled or
    /// quarantined; a local integrity failure or an oversized message quarantines it (kept
    /// for inspection, never deleted); any other local error ends the run.
    fn settle(
        &mut self,
        id: &CaptureId,
        out: Result<Result<Item, Failure>>,
        progressed: bool,
    ) -> Result<Item> {
        match out {
            Ok(Ok(item)) => Ok(item),
            Ok(Err(failure)) => self.on_failure(id, failure, progressed),
            Err(e @ (Error::Integrity { .. } | Error::CiphertextVersion(_))) => {
                tracing::warn!(capture = %id, error = %e, "local integrity failure; quarantined");
                self.quarantine(id, "local_integrity")?;
                Ok(Item::Quarantined)
            }
            Err(Error::TooLarge { .. }) => {
                self.quarantine(id, "too_large")?;
                Ok(Item::Quarantined)
            }
            Err(e) => Err(e),
        }
    }

    /// Counts a settled capture; returns why the run stops, if it must.
    fn tally(&mut self, item: Item) -> Result<Option<StopReason>> {
        match item {
            Item::Counted => self.report.committed += 1,
            Item::Duplicate => self.report.duplicates += 1,
            Item::Quarantined => self.report.quarantined += 1,
            Item::Rescheduled => {}
            Item::NeedsActivation => return Ok(Some(StopReason::NeedsActivation)),
            Item::OutOfTime => return Ok(Some(StopReason::Budget)),
            Item::Held(h) => return Ok(Some(StopReason::Held(h))),
        }
        self.progress()?;
        Ok(None)
    }
}
