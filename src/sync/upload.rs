//! The upload of one part of a capture over tus, resuming from the offset the endpoint
//! acknowledges: reuse the recorded upload (unless it expired) or create one, ask a known one
//! where it stands, then PATCH the rest in pieces read from the part file, sized by
//! [`super::patch_size`] (small after a cut or on a slow link, up to 1 MiB while it holds). The acknowledged offset is recorded, so a kill or a lost link resumes, not restarts.
//! Called by the sync run ([`super::engine`]) once per part of the capture it delivers.

use std::io::{Read, Seek, SeekFrom};

use super::client::{Failure, PatchResult};
use super::engine::{MIN_EXCHANGE_TIME, Run};
use crate::error::Result;
use crate::model::CaptureId;
use crate::store::PartRecord;

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

impl Run<'_> {
    /// Uploads one part (resuming), returning its upload URL once the endpoint holds it all.
    pub(super) async fn upload(
        &mut self,
        id: &CaptureId,
        part: &PartRecord,
    ) -> Result<Result<String, Failure>> {
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
            // offset is the truth, not ours).
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
    fn known_upload(&mut self, id: &CaptureId, part: &PartRecord) -> Result<Option<String>> {
        let url = part.upload_url.clone();
        if url.is_some() && upload_expired(part.upload_expires.as_deref(), self.store.clock().now())
        {
            self.store.reset_upload(id, part.kind)?;
            return Ok(None);
        }
        Ok(url)
    }

    /// Creates an upload for the part and records its URL and expiration.
    async fn create_upload(
        &mut self,
        id: &CaptureId,
        part: &PartRecord,
    ) -> Result<Result<String, Failure>> {
        let t = self.remaining();
        let asked_at = self.store.clock().instant();
        let created = self
            .client
            .create_upload(id, part.kind, part.ct_len, t)
            .await;
        self.note_round_trip(asked_at);
        match created {
            Ok((u, exp)) => {
                self.store.set_upload(id, part.kind, &u, exp.as_deref())?;
                Ok(Ok(u))
            }
            Err(f) => Ok(Err(f)),
        }
    }

    /// Asks the endpoint where a known upload stands. `None` when it no longer knows the
    /// upload or holds more than the part (not our bytes): the upload was reset, and a new one
    /// is to be created.
    async fn endpoint_offset(
        &mut self,
        id: &CaptureId,
        part: &PartRecord,
        url: &str,
    ) -> Result<Result<Option<u64>, Failure>> {
        let t = self.remaining();
        let asked_at = self.store.clock().instant();
        let offset = self.client.upload_offset(url, t).await;
        self.note_round_trip(asked_at);
        match offset {
            Ok(Some(o)) if o <= part.ct_len => Ok(Ok(Some(o))),
            Ok(_) => {
                self.store.reset_upload(id, part.kind)?;
                Ok(Ok(None))
            }
            Err(f) => Ok(Err(f)),
        }
    }

    /// Tells the PATCH sizing how long an exchange begun at `at` took.
    fn note_round_trip(&mut self, at: std::time::Instant) {
        let took = self.store.clock().instant().saturating_duration_since(at);
        self.patch_size.round_trip(took);
    }

    /// Sends the part's bytes from `offset` to its end, one PATCH per piece, recording the
    /// acknowledged offset when the pass ends (complete, or cut by a failure).
    async fn send_from(
        &mut self,
        id: &CaptureId,
        part: &PartRecord,
        url: &str,
        mut offset: u64,
    ) -> Result<Pass> {
        let mut reader = self.store.part_reader(id, part)?;
        while offset < part.ct_len {
            let n = ((part.ct_len - offset) as usize).min(self.patch_size.get());
            // The body is read straight into the buffer the request sends (no second copy).
            let mut body = vec![0u8; n];
            reader.seek(SeekFrom::Start(offset))?;
            reader.read_exact(&mut body)?;
            let t = self.remaining();
            if t < MIN_EXCHANGE_TIME {
                self.store.set_uploaded(id, part.kind, offset)?;
                return Ok(Pass::Failed(transient("budget spent")));
            }
            if let Some(h) = self.held() {
                self.store.set_uploaded(id, part.kind, offset)?;
                return Ok(Pass::Failed(transient(h.describe())));
            }
            let sent_at = self.store.clock().instant();
            let result = self.client.patch(url, offset, body, t).await;
            match &result {
                Ok(PatchResult::Accepted(_)) => {
                    let took = self
                        .store
                        .clock()
                        .instant()
                        .saturating_duration_since(sent_at);
                    self.patch_size.acknowledged(n, took);
                }
                _ => self.patch_size.failed(),
            }
            match result {
                Ok(PatchResult::Accepted(o)) if o > offset && o <= part.ct_len => {
                    offset = o;
                    self.progressed = true;
                }
                Ok(PatchResult::Accepted(_)) | Ok(PatchResult::OffsetMismatch) => {
                    return Ok(Pass::Resync);
                }
                Ok(PatchResult::ChecksumMismatch) => {
                    return Ok(Pass::Failed(transient("checksum mismatch in transit")));
                }
                Ok(PatchResult::Gone) => {
                    self.store.reset_upload(id, part.kind)?;
                    return Ok(Pass::Recreate);
                }
                Err(f) => {
                    self.store.set_uploaded(id, part.kind, offset)?;
                    return Ok(Pass::Failed(f));
                }
            }
        }
        self.store.set_uploaded(id, part.kind, offset)?;
        Ok(Pass::Complete)
    }
}
