//! The order of a sync run's exchanges (ADR 0022). The due captures are taken oldest first,
//! as before; a capture's five parts upload at once ([`super::upload::Lanes`]); its commit
//! then goes while the next capture's parts upload — two stages at once, so neither the
//! commit's round trip nor the endpoint's work on it leaves the link idle. A commit's answer
//! is settled (checked, recorded, the capture purged, or rescheduled or quarantined) the
//! moment it arrives, judged on the budget and holds of that moment, while the uploads go on;
//! each answer is recorded by this one task, one store write at a time and as durably as
//! before, and a commit is signed just before it leaves. Under a metered allowance
//! ([`super::control::RunControl::one_at_a_time`]) the stages take turns. A hold (cancel,
//! network policy) or the budget stops the run before its next exchange: a capture whose
//! parts are all uploaded but whose commit was not sent stays `uploading` and commits in the
//! next run.

use super::client::Failure;
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

impl<'a> Run<'a> {
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
                self.report.get_mut().stopped = stop;
                return Ok(());
            }
            let now = self.clock.now();
            let due = self.store().due_captures(now)?;
            if due.is_empty() {
                let Some(at) = self.store().next_due_at()? else {
                    self.report.get_mut().stopped = StopReason::Drained;
                    return Ok(());
                };
                let wait = (at - now).max(time::Duration::ZERO).unsigned_abs();
                if wait >= self.remaining() {
                    self.report.get_mut().stopped = StopReason::Budget;
                    return Ok(());
                }
                self.sleep_unless_changed(wait).await;
                continue;
            }
            if let Some(stop) = self.through(due).await? {
                self.report.get_mut().stopped = stop;
                return Ok(());
            }
        }
    }

    /// Delivers `due` in order, in two stages at once: the commit of the capture whose parts
    /// the endpoint holds, and the upload of the next one's parts. Each stage settles its own
    /// answers as they arrive; the next step starts when both are done.
    async fn through(&self, due: Vec<CaptureId>) -> Result<Option<StopReason>> {
        let mut ready: Option<Ready> = None;
        let mut due = due.into_iter();
        loop {
            if let Some(stop) = self.stop_now() {
                return Ok(Some(stop));
            }
            let next = if ready.is_some() && self.one_at_a_time() {
                None
            } else {
                due.next()
            };
            if next.is_none() && ready.is_none() {
                return Ok(None);
            }
            let (committed, uploaded) =
                futures_util::join!(self.commit(ready.take()), self.upload(next));
            let stop = committed?;
            let (upload_stop, now_ready) = uploaded?;
            if let Some(stop) = stop.or(upload_stop) {
                return Ok(Some(stop));
            }
            ready = now_ready;
        }
    }

    /// Whether the run's exchanges must go one at a time (a metered allowance).
    fn one_at_a_time(&self) -> bool {
        self.opts
            .control
            .as_ref()
            .is_some_and(|c| c.one_at_a_time())
    }

    /// Signs and sends `ready`'s commit, then settles its answer at once. Returns why the run
    /// stops, if it must.
    async fn commit(&self, ready: Option<Ready>) -> Result<Option<StopReason>> {
        let Some(r) = ready else {
            return Ok(None);
        };
        let (msg, signed) = match self.sign(&r) {
            Ok(s) => s,
            Err(e) => {
                let item = self.settle(&r.id, Err(e), r.progressed)?;
                return self.tally(item);
            }
        };
        let out = match self.client.commit(&r.id, &signed, self.remaining()).await {
            Ok(Ok((_status, receipt))) => self.accept(&r.id, &msg, &receipt),
            Ok(Err(f)) => Ok(Err(f)),
            Err(e) => Err(e),
        };
        let item = self.settle(&r.id, out, r.progressed)?;
        self.tally(item)
    }

    /// Uploads `next`'s parts (all at once) and settles a failure at once. Returns why the
    /// run stops, if it must, and the capture if the endpoint now holds all its parts.
    async fn upload(&self, next: Option<CaptureId>) -> Result<(Option<StopReason>, Option<Ready>)> {
        let Some(id) = next else {
            return Ok((None, None));
        };
        let parts = match self.begin(&id) {
            Ok(parts) => parts,
            Err(e) => {
                let item = self.settle(&id, Err(e), false)?;
                return Ok((self.tally(item)?, None));
            }
        };
        let lanes = Lanes::new(
            &self.store,
            &self.client,
            self.deadline,
            self.opts.control.clone(),
            &self.patch_size,
        );
        let out = lanes.upload_all(&id, &parts).await;
        let progressed = lanes.progressed();
        let out = match out {
            Ok(Ok(parts)) => {
                let ready = Ready {
                    id,
                    parts,
                    progressed,
                };
                return Ok((None, Some(ready)));
            }
            Ok(Err(f)) => Ok(Err(f)),
            Err(e) => Err(e),
        };
        let item = self.settle(&id, out, progressed)?;
        Ok((self.tally(item)?, None))
    }

    /// Starts a capture's attempt: says it is uploading, and reads its parts.
    fn begin(&self, id: &CaptureId) -> Result<Vec<PartRecord>> {
        let info = self.store().info(id)?;
        if info.state == State::Captured {
            self.changed(id, State::Uploading, None, None);
        }
        self.store().parts(id)
    }

    /// The capture's commit, signed now (its `sent_at` is when it leaves).
    fn sign(&self, r: &Ready) -> Result<(CommitRequest, SignedCommit)> {
        let id = &r.id;
        #[allow(unused_mut)]
        let mut store = self.store();
        let info = store.info(id)?;
        let msg = CommitRequest {
            v: protocol::VERSION,
            capture_id: *id,
            process_id: info.process_id.clone(),
            captured_at: info.captured_at,
            collector: store.capture_collector(id)?,
            sealed_key: store.endpoint_seal(id)?,
            parts: r.parts.clone(),
            sent_at: self.clock.now(),
            seal_key_id: store.capture_seal_key_id(id)?,
        };
        let signed = protocol::trust::sign_commit(&store.signing_key()?, &msg)?;
        #[cfg(feature = "testkit")]
        super::test_bugs::before_commit(&mut store, id)?;
        Ok((msg, signed))
    }

    /// A receipt answered: checked, recorded, and the capture crypto-shredded.
    fn accept(
        &self,
        id: &CaptureId,
        msg: &CommitRequest,
        signed: &SignedReceipt,
    ) -> Result<Result<Item, Failure>> {
        let receipt = match self.check_receipt(msg, signed)? {
            Ok(r) => r,
            Err(refusal) => return self.untrusted(id, refusal).map(Ok),
        };
        self.store().record_receipt_v11(&receipt, signed)?;
        let result = match receipt.result {
            protocol::ReceiptResult::Counted => "counted",
            protocol::ReceiptResult::Duplicate => "duplicate",
        };
        self.changed(id, State::Committed, Some(result), None);
        self.store().purge(id)?;
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
        &self,
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
    fn tally(&self, item: Item) -> Result<Option<StopReason>> {
        match item {
            Item::Counted => self.report.borrow_mut().committed += 1,
            Item::Duplicate => self.report.borrow_mut().duplicates += 1,
            Item::Quarantined => self.report.borrow_mut().quarantined += 1,
            Item::Rescheduled => {}
            Item::NeedsActivation => return Ok(Some(StopReason::NeedsActivation)),
            Item::OutOfTime => return Ok(Some(StopReason::Budget)),
            Item::Held(h) => return Ok(Some(StopReason::Held(h))),
        }
        self.progress()?;
        Ok(None)
    }
}
