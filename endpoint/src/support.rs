//! Deciding a commit (`PUT /v1/supports/{capture_id}`) in three phases, so that reading,
//! hashing and decrypting up to ≈7.5 MiB never holds the database (ADR 0020):
//!
//! - **read** (`prepare`, a few short reads, no write transaction): the collector, the rows of
//!   the uploads the commit names, the stored answer (step 1: a replay is answered here), the
//!   device's refused-commit budget (`limit`: past it, `429 rate_limited` before any part is
//!   read), then the rows' availability (step 2's `upload_missing`);
//! - **content** (`content`, on a blocking thread without the database): each part's bytes are
//!   decrypted, and hashed in the same pass when the upload kept no digest, or in a second,
//!   classifying pass when the bytes of a kept digest do not decrypt (`reading`; steps 2-5);
//! - **decision** (`decision`, one short transaction): steps 1 and 6-8 below, after checking
//!   again that the uploads read are still the same complete uploads.
//!
//! In the decision transaction concurrent deliveries of one capture serialize (SQLite: the
//! database mutex and `BEGIN IMMEDIATE`; PostgreSQL: a transaction lock on the device's capture
//! id, taken first, so a delivery through another replica waits and then finds the first one's
//! answer; two captures of one citizen racing on two replicas meet at the unique key of counted
//! supports, and the loser's transaction — only it, never the content phase — runs again and
//! decides a duplicate: ADR 0019). The steps:
//!
//! 1. idempotency, per (device, capture id): a stored answer of this device for this capture id
//!    with the same content digest is answered again byte for byte; a different digest is
//!    `idempotency_conflict`. Another device's support with the same id is no concern of this
//!    one (v1.1): nobody can block a capture by learning its id. Checked in the read phase and
//!    again, under the lock, in the decision;
//! 2. the five parts: each names a complete, unexpired upload of this device for this capture
//!    and kind (else `upload_missing`), whose length and SHA-256 are the declared ones (else
//!    `part_mismatch`); the decision checks the rows again (deleted or expired meanwhile:
//!    `upload_missing`);
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
//! recorded (the device re-uploads and commits again); those that made the endpoint read part
//! bytes are counted against the device's budget instead (`limit`). Rejections of steps 3-5
//! depend only on the content the digest covers, so they are recorded and every replay gets
//! the same answer.
//!
//! Each phase and step lives in its own module: `prepare` (the read phase), `parts` (step 2 on
//! the rows), `content` (steps 2-5 on the bytes; `reading` reads one part), `decision` (the
//! transaction, steps 1 and 6), `record` (step 7), `receipt` (step 8), `limit` (the budget).

mod content;
mod decision;
mod gate;
mod limit;
mod parts;
mod prepare;
mod reading;
mod receipt;
mod record;

use std::sync::Arc;

use apoyo_sync::PartKind;
use apoyo_sync::wire::{CommitRequest, Reason};
use time::OffsetDateTime;

use crate::auth::Device;
use crate::blobs::is_upload_id;
use crate::digest::commit_digest;
use crate::error::ApiError;
use crate::routes::commit::Received;
use crate::state::AppState;
use crate::store::Db;
pub(crate) use gate::CommitGate;
use parts::HeldPart;

/// An answer to a commit: status and exact body.
pub(crate) struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

/// A commit being decided, shared by its phases.
struct Job {
    device: Device,
    received: Received,
    /// The content digest (step 1).
    digest: [u8; 32],
}

impl Job {
    fn req(&self) -> &CommitRequest {
        &self.received.req
    }
}

/// The decision on a commit whose parts are all held.
enum Decision {
    Counted {
        dup_key: [u8; 32],
    },
    /// `shown`: the first capture id as the receipt names it (only to its device or collector).
    Duplicate {
        dup_key: [u8; 32],
        first: apoyo_sync::CaptureId,
        shown: Option<apoyo_sync::CaptureId>,
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

/// Decides a commit (see the module documentation): the read phase, the content phase without
/// the database, then the decision transaction (the only part a lost race runs again).
pub(crate) async fn decide(
    st: &AppState,
    device: Device,
    received: Received,
) -> Result<Answer, ApiError> {
    let digest = commit_digest(&received.req, &device.id);
    let job = Arc::new(Job {
        device,
        received,
        digest,
    });
    // Copies of this delivery wait here and then replay the first one's answer.
    let _turn =
        st.0.commit_gate
            .enter(&job.device.id, &job.req().capture_id.to_string())
            .await;
    let j = job.clone();
    let available = match st
        .db(move |conn, inner| prepare::read(conn, inner, &j))
        .await?
    {
        prepare::Prepared::Replay(answer) => return Ok(answer),
        prepare::Prepared::Available(available) => available,
    };
    let j = job.clone();
    let outcome = Arc::new(
        st.blocking(move |inner| content::check(inner, &j, &available))
            .await?,
    );
    st.db(move |conn, inner| decision::decide(conn, inner, &job, &outcome))
        .await
}

/// Step 1: the stored answer when this device already had this capture id decided with the
/// same content (repeated byte for byte); `idempotency_conflict` when with other content.
/// Scoped to the device: another device's support under the same id never answers here.
fn replayed(conn: &dyn Db, job: &Job) -> Result<Option<Answer>, ApiError> {
    let req = job.req();
    let stored: Option<(Vec<u8>, i64, Vec<u8>)> = conn
        .stored_answer(&job.device.id, &req.capture_id.to_string())?
        .map(|s| (s.digest, s.status, s.body));
    let Some((stored_digest, status, body)) = stored else {
        return Ok(None);
    };
    if stored_digest != job.digest {
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

/// The same refusal again (a decision transaction may run more than once).
fn again(e: &ApiError) -> ApiError {
    let mut copy = ApiError::with_status(e.status.as_u16(), e.reason, e.detail.clone());
    copy.retry_after = e.retry_after;
    copy
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
