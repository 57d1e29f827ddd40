//! The order of a sync run's exchanges (ADR 0022 and its amendment). The due captures are
//! taken oldest first, two at a time ([`CAPTURES_AT_ONCE`]): a capture's five parts upload at
//! once ([`super::upload::Lanes`]), then its commit goes; the next capture's creations and
//! offset checks go at once, and its PATCHes as soon as the previous capture can no longer use
//! every PATCH turn ([`super::tail`]), so neither a commit's round trip nor the endpoint's work
//! on it, nor a capture's last PATCH, leaves the link idle. Each capture's answers are settled
//! (receipt checked and recorded, the capture purged; or rescheduled or quarantined) the
//! moment they arrive, judged on the budget and holds of that moment, while the other
//! capture's exchanges go on; each is recorded by this one task, one store write at a time and
//! as durably as before, and a commit is signed just before it leaves. Under a metered
//! allowance ([`super::control::RunControl::one_at_a_time`]) one capture goes at a time, its
//! exchanges one by one. A hold (cancel, network policy) or the budget starts no other
//! capture and stops the ones under way before their next exchange: a capture whose parts
//! are all uploaded but whose commit was not sent stays `uploading` and commits in the next
//! run.

use std::rc::Rc;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;

use super::client::Failure;
use super::engine::{Item, Run, StopReason, exchange_floor};
use super::tail::Tail;
use super::upload::Lanes;
use crate::error::{Error, Result};
use crate::model::CaptureId;
use crate::protocol::{self, CommitPart, CommitRequest, SignedCommit, SignedReceipt};
use crate::queue::State;
use crate::store::PartRecord;

/// Captures delivered at once: one's commit beside the next one's uploads.
const CAPTURES_AT_ONCE: usize = 2;

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
        if let Some(stop) = self.halted.get() {
            return Some(stop);
        }
        if self.broken.get() {
            return Some(StopReason::Budget);
        }
        if self.remaining() < exchange_floor(&self.client) {
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

    /// Delivers `due` in queue order, [`CAPTURES_AT_ONCE`] captures at a time: each one's
    /// parts upload, then its commit goes and is settled. The next capture's creations and
    /// offset checks go at once, its PATCHes once the previous capture can no longer use every
    /// turn ([`super::tail`]), so one capture's commit flies beside the next one's uploads.
    /// A stop decided by one capture starts no other; the ones under way end their exchange in
    /// flight (their lanes check budget and holds before each exchange).
    async fn through(&self, due: Vec<CaptureId>) -> Result<Option<StopReason>> {
        // Read before each capture starts: a metered allowance met mid-run (Wi-Fi lost)
        // applies to the next capture.
        let width = || {
            if self.one_at_a_time() {
                1
            } else {
                CAPTURES_AT_ONCE
            }
        };
        let mut due = due.into_iter();
        let mut flows = FuturesUnordered::new();
        let mut before: Option<Rc<Tail>> = None;
        let (mut stop, mut error) = (None, None);
        loop {
            while stop.is_none() && error.is_none() && flows.len() < width() {
                if let Some(s) = self.stop_now() {
                    stop = Some(s);
                    break;
                }
                let Some(id) = due.next() else { break };
                let tail = Rc::new(Tail::default());
                // Every capture hands over to the next, also one started one at a time.
                let previous = before.replace(tail.clone());
                let after = if width() > 1 { previous } else { None };
                flows.push(self.deliver(id, after, tail));
            }
            let Some(out) = flows.next().await else { break };
            match out {
                Ok(s) => stop = stop.or(s),
                Err(e) => {
                    self.broken.set(true);
                    error = error.or(Some(e));
                }
            }
        }
        match error {
            Some(e) => Err(e),
            None => Ok(stop),
        }
    }

    /// One capture: its parts (after `after`'s hand-over), then, unless the run must stop,
    /// its commit. Returns why the run stops, if it must.
    async fn deliver(
        &self,
        id: CaptureId,
        after: Option<Rc<Tail>>,
        tail: Rc<Tail>,
    ) -> Result<Option<StopReason>> {
        let uploaded = self.upload(id, after, tail.clone()).await;
        tail.open();
        let (stop, ready) = uploaded?;
        if stop.is_some() {
            return Ok(stop);
        }
        let Some(ready) = ready else {
            return Ok(None);
        };
        if let Some(stop) = self.stop_now() {
            // Uploaded but not committed: stays `uploading`, commits in the next run.
            return Ok(Some(stop));
        }
        self.commit(ready).await
    }

    /// Records why the run stops, so the other capture under way stops at its next
    /// exchange (the first reason wins).
    fn halt(&self, stop: StopReason) -> StopReason {
        if self.halted.get().is_none() {
            self.halted.set(Some(stop));
        }
        stop
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
    async fn commit(&self, r: Ready) -> Result<Option<StopReason>> {
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

    /// Uploads `id`'s parts (all at once) and settles a failure at once. Returns why the
    /// run stops, if it must, and the capture if the endpoint now holds all its parts.
    async fn upload(
        &self,
        id: CaptureId,
        after: Option<Rc<Tail>>,
        tail: Rc<Tail>,
    ) -> Result<(Option<StopReason>, Option<Ready>)> {
        let parts = match self.begin(&id) {
            Ok(parts) => parts,
            Err(e) => {
                let item = self.settle(&id, Err(e), false)?;
                return Ok((self.tally(item)?, None));
            }
        };
        let lanes = Lanes::new(self, after, tail);
        let out = lanes.upload_all(&id, &parts).await;
        let progressed = lanes.progressed();
        if lanes.out_of_time() && matches!(out, Ok(Err(_))) {
            // The run's end, not the endpoint: no attempt counted, offsets recorded.
            return Ok((Some(self.halt(StopReason::Budget)), None));
        }
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
            Item::NeedsActivation => return Ok(Some(self.halt(StopReason::NeedsActivation))),
            Item::OutOfTime => return Ok(Some(self.halt(StopReason::Budget))),
            Item::Held(h) => return Ok(Some(self.halt(StopReason::Held(h)))),
        }
        self.progress()?;
        Ok(None)
    }
}
