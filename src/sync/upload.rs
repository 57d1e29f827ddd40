//! The upload of a capture's parts over tus, all at once with at most two PATCHes in flight
//! (four small prompt ones, [`PATCHES_AT_ONCE`], ADR 0022), each resuming from the offset the
//! endpoint acknowledges: reuse the recorded upload (unless it expired) or create one, ask a
//! known one where it stands, then PATCH the rest in pieces read from the part file, sized by
//! [`super::patch_size`] (small after a cut or on a slow link, up to 1 MiB while it holds).
//! One upload never has two PATCHes in flight (tus offsets are sequential, ADR 0018); several
//! parts' uploads do. Every created upload and acknowledged offset is recorded as before, one
//! store write at a time, so a kill or a lost link resumes, not restarts. Called by the sync
//! run ([`super::pipeline`]) once per capture it delivers.

use std::cell::{Cell, RefCell, RefMut};
use std::io::{Read, Seek, SeekFrom};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use super::client::{Client, Failure, Outcome, PatchResult};
use super::control::{Hold, RunControl};
use super::engine::{Run, exchange_floor};
use super::patch_size::PatchSize;
use super::tail::Tail;
use crate::clock::SharedClock;
use crate::error::{Error, Result};
use crate::model::CaptureId;
use crate::protocol::CommitPart;
use crate::store::{PartRecord, Store};

/// The most PATCHes in flight at once ([`PatchSize::at_once`]: two, or four small ones while
/// they come back promptly; never more than 2 MiB of bodies held). A capture's five parts
/// upload at once, so their creations and offset checks share one round trip; their PATCHes
/// take turns. Two keep a slow link busy while the other waits for its answer; more on a 2G
/// link would split it so finely that a 30-second run could end before any PATCH is
/// acknowledged (ADR 0022).
pub const PATCHES_AT_ONCE: usize = super::patch_size::WIDE;

/// Uploads created for one part within one attempt before the attempt gives up (the endpoint
/// keeps losing them).
const MAX_CREATIONS: u32 = 2;

/// Where one pass over a part's remaining bytes ended.
enum Pass {
    /// The endpoint holds the whole part.
    Complete,
    /// The endpoint is at another offset: ask it again, same upload.
    Resync,
    /// The upload is gone (already reset locally): create a new one.
    Recreate,
    /// The attempt ends with this failure.
    Failed(Failure),
}

fn transient(what: &str) -> Failure {
    Failure::Transient {
        what: what.into(),
        retry_after: None,
    }
}

/// Whether a stored `Upload-Expires` (HTTP date) has passed, with a minute's margin.
fn upload_expired(expires: Option<&str>, now: time::OffsetDateTime) -> bool {
    let Some(at) = expires.and_then(|e| httpdate::parse_http_date(e).ok()) else {
        return false;
    };
    time::OffsetDateTime::from(at) <= now + time::Duration::minutes(1)
}

/// What the concurrent part uploads of one capture share. The store is borrowed only between
/// awaits (never across one), so its writes happen one at a time, in the order the answers
/// arrive, exactly as durably as when the parts went one after another.
pub(super) struct Lanes<'r, 'a> {
    store: &'r RefCell<&'a mut Store>,
    client: &'r Client<'a>,
    clock: SharedClock,
    deadline: Instant,
    control: Option<Arc<dyn RunControl>>,
    /// The run's PATCH size (ADR 0018), shared by the lanes.
    patch_size: &'r Cell<PatchSize>,
    /// Whether any part got bytes acknowledged in this attempt.
    progressed: Cell<bool>,
    /// The attempt's first failure: the other lanes stop at their next exchange.
    failure: RefCell<Option<Failure>>,
    /// A lane met a local error: the others stop too.
    broken: Cell<bool>,
    /// Turns for PATCHes ([`PATCHES_AT_ONCE`]), shared by every capture the run uploads.
    patch_turns: &'r tokio::sync::Semaphore,
    /// The previous capture's hand-over: this capture's PATCHes wait for it
    /// ([`super::tail`]).
    after: Option<Rc<Tail>>,
    /// This capture's hand-over to the next one.
    tail: Rc<Tail>,
    /// Lanes still running.
    running: Cell<usize>,
    /// A lane stopped because no PATCH could be answered before the run's end.
    out_of_time: Cell<bool>,
    /// The run's halt (another capture stopped it, or broke it).
    halted: &'r Cell<Option<super::engine::StopReason>>,
    run_broken: &'r Cell<bool>,
}

impl<'r, 'a> Lanes<'r, 'a> {
    /// The lanes of one capture in `run`, after the capture whose hand-over is `after`.
    pub(super) fn new(run: &'r Run<'a>, after: Option<Rc<Tail>>, tail: Rc<Tail>) -> Self {
        Lanes {
            store: &run.store,
            client: &run.client,
            clock: run.clock.clone(),
            deadline: run.deadline,
            control: run.opts.control.clone(),
            patch_size: &run.patch_size,
            progressed: Cell::new(false),
            failure: RefCell::new(None),
            broken: Cell::new(false),
            patch_turns: &run.patch_turns,
            after,
            tail,
            running: Cell::new(0),
            out_of_time: Cell::new(false),
            halted: &run.halted,
            run_broken: &run.broken,
        }
    }

    /// A lane ended: once the others can no longer use every PATCH turn, the next capture's
    /// PATCHes may go.
    fn lane_ended(&self) {
        let left = self.running.get().saturating_sub(1);
        self.running.set(left);
        if left < self.patch_size.get().at_once() {
            self.tail.open();
        }
    }

    /// Whether a lane stopped because the run's budget could not fit another PATCH.
    pub(super) fn out_of_time(&self) -> bool {
        self.out_of_time.get()
    }

    /// Whether bytes were acknowledged in this attempt.
    pub(super) fn progressed(&self) -> bool {
        self.progressed.get()
    }

    fn store(&self) -> RefMut<'r, &'a mut Store> {
        self.store.borrow_mut()
    }

    fn remaining(&self) -> Duration {
        self.deadline
            .saturating_duration_since(self.clock.instant())
    }

    fn held(&self) -> Option<Hold> {
        self.control.as_ref().and_then(|c| c.hold())
    }

    /// Whether the run's exchanges must go one at a time (a metered allowance).
    fn one_at_a_time(&self) -> bool {
        self.control.as_ref().is_some_and(|c| c.one_at_a_time())
    }

    fn sizing(&self, f: impl FnOnce(&mut PatchSize)) {
        let mut p = self.patch_size.get();
        f(&mut p);
        self.patch_size.set(p);
    }

    /// Why this lane must not start another exchange, if it must not.
    fn stop_reason(&self) -> Option<Failure> {
        if self.broken.get() || self.failure.borrow().is_some() {
            return Some(transient("another part's upload failed"));
        }
        if self.run_broken.get() || self.halted.get().is_some() {
            return Some(transient("the run is stopping"));
        }
        if self.remaining() < exchange_floor(self.client) {
            return Some(transient("budget spent"));
        }
        self.held().map(|h| transient(h.describe()))
    }

    /// Uploads every part of a capture at once; returns the commit's part list
    /// once the endpoint holds them all, or the attempt's first failure.
    pub(super) async fn upload_all(
        &self,
        id: &CaptureId,
        parts: &[PartRecord],
    ) -> Result<Outcome<Vec<CommitPart>>> {
        let lanes = parts.iter().enumerate().map(|(i, part)| async move {
            let r = self.upload(id, part).await;
            match &r {
                Ok(Err(f)) => {
                    self.failure.borrow_mut().get_or_insert_with(|| f.clone());
                }
                Err(_) => self.broken.set(true),
                Ok(Ok(_)) => {}
            }
            self.lane_ended();
            (i, r)
        });
        let width = if self.one_at_a_time() {
            1
        } else {
            parts.len().max(1)
        };
        self.running.set(parts.len());
        let mut done: Vec<(usize, Result<Outcome<String>>)> = futures_util::stream::iter(lanes)
            .buffer_unordered(width)
            .collect()
            .await;
        self.tail.open();
        done.sort_by_key(|(i, _)| *i);
        let mut list = Vec::with_capacity(parts.len());
        for ((_, r), part) in done.into_iter().zip(parts) {
            if let Ok(url) = r? {
                list.push(CommitPart {
                    kind: part.kind,
                    upload: url,
                    sha256: part.sha256,
                    length: part.ct_len,
                });
            }
        }
        if let Some(f) = self.failure.borrow_mut().take() {
            return Ok(Err(f));
        }
        if list.len() != parts.len() {
            return Err(Error::Internal(
                "a part's upload ended without an outcome".into(),
            ));
        }
        Ok(Ok(list))
    }

    /// Uploads one part (resuming), returning its upload URL once the endpoint holds it all.
    async fn upload(&self, id: &CaptureId, part: &PartRecord) -> Result<Outcome<String>> {
        let mut url = self.known_upload(id, part)?;
        if let Some(u) = &url
            && part.uploaded_bytes == part.ct_len
        {
            // Already complete when last seen. If the endpoint has since expired it, the
            // commit answers upload_missing and the parts are uploaded again.
            return Ok(Ok(u.clone()));
        }
        let mut creations = 0;
        loop {
            if let Some(f) = self.stop_reason() {
                return Ok(Err(f));
            }
            let (current, fresh) = match url.take() {
                Some(u) => (u, false),
                None => {
                    creations += 1;
                    if creations > MAX_CREATIONS {
                        return Ok(Err(transient("upload keeps disappearing")));
                    }
                    match self.create_upload(id, part).await? {
                        Ok(u) => (u, true),
                        Err(f) => return Ok(Err(f)),
                    }
                }
            };
            // A fresh upload is at 0; a known one is asked where it stands (the server's
            // offset is the truth, not ours — also when it is lower than what we recorded).
            let offset = if fresh {
                0
            } else {
                match self.endpoint_offset(id, part, &current).await? {
                    Ok(Some(o)) => o,
                    Ok(None) => continue,
                    Err(f) => return Ok(Err(f)),
                }
            };
            match self.send_from(id, part, &current, offset).await? {
                Pass::Complete => return Ok(Ok(current)),
                Pass::Resync => url = Some(current),
                Pass::Recreate => {}
                Pass::Failed(f) => return Ok(Err(f)),
            }
        }
    }

    /// The part's recorded upload URL, unless its tus expiration has passed: then the server
    /// may already have dropped it, so it is reset and a new one will be created.
    fn known_upload(&self, id: &CaptureId, part: &PartRecord) -> Result<Option<String>> {
        let url = part.upload_url.clone();
        if url.is_some() && upload_expired(part.upload_expires.as_deref(), self.clock.now()) {
            self.store().reset_upload(id, part.kind)?;
            return Ok(None);
        }
        Ok(url)
    }

    /// Creates an upload for the part and records its URL and expiration.
    async fn create_upload(&self, id: &CaptureId, part: &PartRecord) -> Result<Outcome<String>> {
        let t = self.remaining();
        let asked_at = self.clock.instant();
        let created = self
            .client
            .create_upload(id, part.kind, part.ct_len, t)
            .await;
        self.note_round_trip(asked_at);
        match created {
            Ok((u, exp)) => {
                self.store().set_upload(id, part.kind, &u, exp.as_deref())?;
                Ok(Ok(u))
            }
            Err(f) => Ok(Err(f)),
        }
    }

    /// Asks the endpoint where a known upload stands. `None` when it no longer knows the
    /// upload or holds more than the part (not our bytes): the upload was reset, and a new one
    /// is to be created.
    async fn endpoint_offset(
        &self,
        id: &CaptureId,
        part: &PartRecord,
        url: &str,
    ) -> Result<Outcome<Option<u64>>> {
        let t = self.remaining();
        let asked_at = self.clock.instant();
        let offset = self.client.upload_offset(url, t).await;
        self.note_round_trip(asked_at);
        match offset {
            Ok(Some(o)) if o <= part.ct_len => Ok(Ok(Some(o))),
            Ok(_) => {
                self.store().reset_upload(id, part.kind)?;
                Ok(Ok(None))
            }
            Err(f) => Ok(Err(f)),
        }
    }

    /// Tells the PATCH sizing how long an exchange begun at `at` took.
    fn note_round_trip(&self, at: Instant) {
        let took = self.clock.instant().saturating_duration_since(at);
        self.sizing(|p| p.round_trip(took));
    }

    /// Sends the part's bytes from `offset` to its end, one PATCH per piece, recording the
    /// acknowledged offset when the pass ends (complete, or cut by a failure).
    async fn send_from(
        &self,
        id: &CaptureId,
        part: &PartRecord,
        url: &str,
        mut offset: u64,
    ) -> Result<Pass> {
        let mut reader = self.store().part_reader(id, part)?;
        if let Some(after) = &self.after
            && offset < part.ct_len
        {
            after.wait().await;
        }
        while offset < part.ct_len {
            // Wait for a turn first: the checks below then see the time it took. A PATCH
            // takes two of the four turns while only two may fly.
            let weight = (PATCHES_AT_ONCE / self.patch_size.get().at_once()).max(1) as u32;
            let _turn = self
                .patch_turns
                .acquire_many(weight)
                .await
                .map_err(|_| Error::Internal("PATCH turns closed".into()))?;
            if let Some(f) = self.stop_reason() {
                self.store().set_uploaded(id, part.kind, offset)?;
                return Ok(Pass::Failed(f));
            }
            let size = self.patch_size.get();
            let want = ((part.ct_len - offset) as usize).min(size.get());
            let n = size.fit(want, self.remaining(), self.client.quickest_exchange());
            if n == 0 {
                // Not even a small PATCH would be answered before the run ends.
                self.out_of_time.set(true);
                self.store().set_uploaded(id, part.kind, offset)?;
                return Ok(Pass::Failed(transient("budget spent")));
            }
            // The body is read straight into the buffer the request sends (no second copy).
            let mut body = vec![0u8; n];
            reader.seek(SeekFrom::Start(offset))?;
            reader.read_exact(&mut body)?;
            let sent_at = self.clock.instant();
            let result = self.client.patch(url, offset, body, self.remaining()).await;
            let took = self.clock.instant().saturating_duration_since(sent_at);
            match &result {
                Ok(PatchResult::Accepted(_)) => self.sizing(|p| p.acknowledged(n, took)),
                // A PATCH cut by the run's own end (less than a round trip left) says nothing
                // about the link (ADR 0023): not a failure of the sizing.
                _ if self.remaining() < exchange_floor(self.client) => {}
                _ => self.sizing(PatchSize::failed),
            }
            match result {
                Ok(PatchResult::Accepted(o)) if o > offset && o <= part.ct_len => {
                    offset = o;
                    self.progressed.set(true);
                }
                Ok(PatchResult::Accepted(_)) | Ok(PatchResult::OffsetMismatch) => {
                    return Ok(Pass::Resync);
                }
                Ok(PatchResult::ChecksumMismatch) => {
                    return Ok(Pass::Failed(transient("checksum mismatch in transit")));
                }
                Ok(PatchResult::Gone) => {
                    self.store().reset_upload(id, part.kind)?;
                    return Ok(Pass::Recreate);
                }
                Err(f) => {
                    self.store().set_uploaded(id, part.kind, offset)?;
                    return Ok(Pass::Failed(f));
                }
            }
        }
        self.store().set_uploaded(id, part.kind, offset)?;
        Ok(Pass::Complete)
    }
}
