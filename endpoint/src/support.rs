//! Deciding a commit (`PUT /v1/supports/{capture_id}`), all inside one database transaction in
//! which concurrent deliveries of the same capture serialize (SQLite: the database mutex and
//! `BEGIN IMMEDIATE`; PostgreSQL: a transaction lock on the device's capture id, taken first,
//! so a delivery through another replica waits and then finds the first one's answer; two
//! captures of one citizen racing on two replicas meet at the unique key of counted supports,
//! and the loser is decided again, as a duplicate — ADR 0019):
//!
//! 1. idempotency, per (device, capture id): a stored answer of this device for this capture id
//!    with the same content digest is answered again byte for byte; a different digest is
//!    `idempotency_conflict`. Another device's support with the same id is no concern of this
//!    one (v1.1): nobody can block a capture by learning its id;
//! 2. the five parts: each names a complete, unexpired upload of this device for this capture
//!    and kind (else `upload_missing`), whose length and SHA-256 are the declared ones (else
//!    `part_mismatch`);
//! 3. the sealed key opens with the ring's seal key named by `seal_key_id` and the device's key,
//!    and every part authenticates (else `undecryptable`);
//! 4. the manifest agrees with the commit (else `manifest_mismatch`);
//! 5. the process rules (`process_unknown`, `process_closed` judged on the capture time
//!    corrected for the device's clock skew (`crate::skew`), `card_invalid`,
//!    `model_not_accepted`, `credential_expired`, `out_of_scope`);
//! 6. the duplicate rule (LGIPE art. 385): one counted support per (process, clave de elector),
//!    keyed by the ring's duplicate secret; a duplicate receipt names the counted capture only
//!    to its own device or collector;
//! 7. the parts' ciphertext moves from upload storage into the support's folder, and the
//!    decision is recorded with its exact answer;
//! 8. the answer is a signed receipt (counted 201, duplicate 200) with the certificate of the
//!    key that signed it.
//!
//! Refusals of steps 1-2 depend on the upload state, not on the content, so they are not
//! recorded (the device re-uploads and commits again). Rejections of steps 3-5 depend only on
//! the content the digest covers, so they are recorded and every replay gets the same answer.
//!
//! This file runs the steps in order; each lives in its own module: `parts` (step 2),
//! `content` (steps 3-5), `receipt` (step 8, the answer), `record` (step 7).

mod content;
mod parts;
mod receipt;
mod record;

use apoyo_sync::wire::{CommitRequest, Reason};
use apoyo_sync::{CaptureId, PartKind};
use time::OffsetDateTime;

use crate::auth::Device;
use crate::blobs::{is_upload_id, support_dir_name};
use crate::digest::commit_digest;
use crate::error::ApiError;
use crate::routes::commit::Received;
use crate::state::Inner;
use crate::store::Db;
use parts::HeldPart;

/// An answer to a commit: status and exact body.
pub(crate) struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

/// The decision on a commit whose parts are all held.
enum Decision {
    Counted {
        dup_key: [u8; 32],
    },
    /// `shown`: the first capture id as the receipt names it (only to its device or collector).
    Duplicate {
        dup_key: [u8; 32],
        first: CaptureId,
        shown: Option<CaptureId>,
    },
    Rejected(ApiError),
}

/// A commit once decided: what is answered (step 8) and recorded (step 7).
struct Decided<'a> {
    device: &'a Device,
    req: &'a CommitRequest,
    /// The exact signed commit, kept with the support.
    received: &'a Received,
    held: &'a [HeldPart],
    decision: &'a Decision,
    now: OffsetDateTime,
    /// The device clock's skew applied to the capture time (seconds), when over tolerance.
    skew: Option<i64>,
    /// The support's folder under `supports/`.
    folder: String,
}

/// Checks the shape of a commit: exactly the five part kinds, once each.
pub(crate) fn check_shape(req: &CommitRequest) -> Result<(), ApiError> {
    let once = PartKind::ALL
        .iter()
        .all(|k| req.parts.iter().filter(|p| p.kind == *k).count() == 1);
    if req.parts.len() != PartKind::ALL.len() || !once {
        return Err(ApiError::malformed(
            "a commit names exactly the five parts: front, back, selfie, signature, manifest",
        ));
    }
    Ok(())
}

/// Decides a commit (see the module documentation).
pub(crate) fn decide(
    conn: &dyn Db,
    inner: &Inner,
    device: &Device,
    received: &Received,
) -> Result<Answer, ApiError> {
    let req = &received.req;
    let digest = commit_digest(req, &device.id);
    conn.begin()?;
    let tx = conn;
    tx.lock_capture(&device.id, &req.capture_id.to_string())?;
    if let Some(answer) = replayed(tx, device, req, &digest)? {
        return Ok(answer);
    }
    let held = parts::held_parts(tx, inner, device, req)?;
    let now = inner.now();
    let (judged_at, skew) = crate::skew::judged_capture_time(req.captured_at, req.sent_at, now);
    let decision = decide_content(tx, inner, device, req, &held, judged_at)?;
    let decided = Decided {
        device,
        req,
        received,
        held: &held,
        decision: &decision,
        now,
        skew,
        folder: support_dir_name(&req.capture_id, &device.id),
    };
    let answer = receipt::answer(inner, &decided)?;
    record::keep(tx, inner, &decided, &digest, &answer)?;
    let result = match &decision {
        Decision::Counted { .. } => "counted",
        Decision::Duplicate { .. } => "duplicate",
        Decision::Rejected(e) => e.reason.code(),
    };
    tracing::info!(capture = %req.capture_id, device = %device.id, process = %req.process_id, result, "commit decided");
    inner
        .commits_decided
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Ok(answer)
}

/// Step 1: the stored answer when this device already had this capture id decided with the
/// same content (repeated byte for byte); `idempotency_conflict` when with other content.
/// Scoped to the device: another device's support under the same id never answers here.
fn replayed(
    conn: &dyn Db,
    device: &Device,
    req: &CommitRequest,
    digest: &[u8; 32],
) -> Result<Option<Answer>, ApiError> {
    let stored: Option<(Vec<u8>, i64, Vec<u8>)> = conn
        .stored_answer(&device.id, &req.capture_id.to_string())?
        .map(|s| (s.digest, s.status, s.body));
    let Some((stored_digest, status, body)) = stored else {
        return Ok(None);
    };
    if stored_digest != digest {
        return Err(ApiError::new(
            Reason::IdempotencyConflict,
            "this capture id was committed with different content",
        ));
    }
    tracing::info!(capture = %req.capture_id, status, "commit replayed; first answer repeated");
    Ok(Some(Answer {
        status: u16::try_from(status).map_err(ApiError::internal)?,
        body,
    }))
}

/// Steps 3-6: the content's checks, then the duplicate rule on the duplicate key. The
/// duplicate receipt names the counted capture only when it came from the same device or the
/// same collector: to anyone else it would be an oracle for "did this citizen support this
/// aspirant?".
fn decide_content(
    conn: &dyn Db,
    inner: &Inner,
    device: &Device,
    req: &CommitRequest,
    held: &[HeldPart],
    judged_at: OffsetDateTime,
) -> Result<Decision, ApiError> {
    let dup_key = match content::check_content(inner, device, req, held, judged_at)? {
        Err(rejection) => return Ok(Decision::Rejected(rejection)),
        Ok(dup_key) => dup_key,
    };
    let first: Option<(String, String, String, String)> = conn.counted_by_dup_key(&dup_key[..])?;
    let Some((first, first_device, kind, id)) = first else {
        return Ok(Decision::Counted { dup_key });
    };
    let first: CaptureId = first.parse().map_err(ApiError::internal)?;
    let (my_kind, my_id) = record::collector_parts(&req.collector);
    let related = first_device == device.id || (kind == my_kind && id == my_id);
    Ok(Decision::Duplicate {
        dup_key,
        first,
        shown: related.then_some(first),
    })
}

/// The upload id named by a commit part (`/v1/uploads/{id}`, or a URL ending so).
fn upload_id_of(url: &str) -> Option<&str> {
    const PREFIX: &str = "/v1/uploads/";
    let id = &url[url.rfind(PREFIX)? + PREFIX.len()..];
    is_upload_id(id).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_urls_are_recognised_strictly() {
        let id = "0123456789abcdef0123456789abcdef";
        assert_eq!(upload_id_of(&format!("/v1/uploads/{id}")), Some(id));
        assert_eq!(
            upload_id_of(&format!("https://ine.example/v1/uploads/{id}")),
            Some(id)
        );
        assert_eq!(upload_id_of("/v1/uploads/../../etc/passwd"), None);
        assert_eq!(upload_id_of(id), None);
    }
}
