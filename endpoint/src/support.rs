//! Deciding a commit (`PUT /v1/supports/{capture_id}`), all inside one SQLite transaction taken
//! under the database mutex, so that concurrent deliveries of the same capture serialize:
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
//!    corrected for the device's clock skew (`skew`), `card_invalid`, `model_not_accepted`,
//!    `credential_expired`, `out_of_scope`);
//! 6. the duplicate rule (LGIPE art. 385): one counted support per (process, clave de elector),
//!    keyed by the ring's duplicate secret; a duplicate receipt names the counted capture only
//!    to its own device or collector;
//! 7. the parts' ciphertext moves from upload storage into the support's folder, and the
//!    decision is recorded with its exact answer;
//! 8. the answer is a signed receipt (counted 201, duplicate 200).
//!
//! Refusals of steps 1-2 depend on the upload state, not on the content, so they are not
//! recorded (the device re-uploads and commits again). Rejections of steps 3-5 depend only on
//! the content the digest covers, so they are recorded and every replay gets the same answer.

use std::io;

use apoyo_sync::crypto::wrap::open_from_device;
use apoyo_sync::crypto::{self, PartOpener};
use apoyo_sync::protocol::{CommitRequest, Reason, ReceiptResult, limits};
use apoyo_sync::{CaptureId, Collector, Manifest, PartKind, validate};
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use time::OffsetDateTime;

use crate::auth::Device;
use crate::blobs::{is_upload_id, support_dir_name};
use crate::digest::commit_digest;
use crate::error::ApiError;
use crate::http::{rfc3339, unix};
use crate::receipts::{self, Outcome};
use crate::routes::commit::Received;
use crate::state::Inner;

/// An answer to a commit: status and exact body.
pub(crate) struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

/// A part held in upload storage, checked against the commit.
struct HeldPart {
    kind: PartKind,
    upload: String,
    length: u64,
    sha256: [u8; 32],
}

/// The decision on a commit whose parts are all held.
enum Decision {
    Counted { dup_key: [u8; 32] },
    /// `shown`: the first capture id as the receipt names it (only to its device or collector).
    Duplicate {
        dup_key: [u8; 32],
        first: CaptureId,
        shown: Option<CaptureId>,
    },
    Rejected(ApiError),
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
    conn: &mut Connection,
    inner: &Inner,
    device: &Device,
    received: &Received,
) -> Result<Answer, ApiError> {
    let req = &received.req;
    let digest = commit_digest(req, &device.id);
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let stored: Option<(Vec<u8>, i64, Vec<u8>)> = tx
        .query_row(
            "SELECT digest, status, body FROM supports WHERE device_id = ?1 AND capture_id = ?2",
            [device.id.clone(), req.capture_id.to_string()],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    if let Some((stored_digest, status, body)) = stored {
        if stored_digest == digest {
            tracing::info!(capture = %req.capture_id, status, "commit replayed; first answer repeated");
            return Ok(Answer {
                status: u16::try_from(status).map_err(ApiError::internal)?,
                body,
            });
        }
        return Err(ApiError::new(
            Reason::IdempotencyConflict,
            "this capture id was committed with different content",
        ));
    }
    let held = held_parts(&tx, inner, device, req)?;
    let now = inner.now();
    let (judged_at, skew) = crate::skew::judged_capture_time(req.captured_at, req.sent_at, now);
    let decision = match check_content(inner, device, req, &held, judged_at)? {
        Err(rejection) => Decision::Rejected(rejection),
        Ok(dup_key) => duplicate_rule(&tx, device, req, dup_key)?,
    };
    let outcome = |result, first_capture_id| Outcome {
        device_id: &device.id,
        result,
        first_capture_id,
        parts: held.iter().map(|h| (h.kind, h.sha256)).collect(),
        now,
    };
    let answer = match &decision {
        Decision::Counted { .. } => Answer {
            status: 201,
            body: receipts::sign(inner, req, outcome(ReceiptResult::Counted, None))?,
        },
        Decision::Duplicate { shown, .. } => Answer {
            status: 200,
            body: receipts::sign(inner, req, outcome(ReceiptResult::Duplicate, *shown))?,
        },
        Decision::Rejected(e) => Answer {
            status: e.status.as_u16(),
            body: e.body(),
        },
    };
    let links: Vec<(PartKind, String)> = held.iter().map(|h| (h.kind, h.upload.clone())).collect();
    let folder = support_dir_name(&req.capture_id, &device.id);
    inner.blobs.link_support(&folder, &links)?;
    let row = Row {
        device,
        received,
        held: &held,
        decision: &decision,
        digest: &digest,
        answer: &answer,
        now,
        skew,
        folder: &folder,
    };
    if let Err(e) = record(tx, &row) {
        inner.blobs.unlink_support(&folder);
        return Err(e);
    }
    for h in &held {
        if let Err(e) = inner.blobs.remove_upload(&h.upload) {
            tracing::warn!(error = %e, "could not remove a committed upload's file");
        }
    }
    let result = match &decision {
        Decision::Counted { .. } => "counted",
        Decision::Duplicate { .. } => "duplicate",
        Decision::Rejected(e) => e.reason.code(),
    };
    tracing::info!(capture = %req.capture_id, device = %device.id, process = %req.process_id, result, "commit decided");
    Ok(answer)
}

/// Step 6: counted, or a duplicate of the counted support. The duplicate receipt names the
/// counted capture only when it came from the same device or the same collector: to anyone
/// else the answer would be an oracle for "did this citizen support this aspirant?".
fn duplicate_rule(
    tx: &Connection,
    device: &Device,
    req: &CommitRequest,
    dup_key: [u8; 32],
) -> Result<Decision, ApiError> {
    let first: Option<(String, String, String, String)> = tx
        .query_row(
            "SELECT capture_id, device_id, collector_kind, collector_id FROM supports
             WHERE dup_key = ?1 AND result = 'counted'",
            [&dup_key[..]],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?;
    let Some((first, first_device, kind, id)) = first else {
        return Ok(Decision::Counted { dup_key });
    };
    let first: CaptureId = first.parse().map_err(ApiError::internal)?;
    let (my_kind, my_id) = collector_parts(&req.collector);
    let related = first_device == device.id || (kind == my_kind && id == my_id);
    Ok(Decision::Duplicate {
        dup_key,
        first,
        shown: related.then_some(first),
    })
}

fn collector_parts(c: &Collector) -> (&'static str, &str) {
    match c {
        Collector::MiApoyo(id) => ("mi_apoyo", id),
        Collector::Auxiliar(id) => ("auxiliar", id),
    }
}

/// The upload id named by a commit part (`/v1/uploads/{id}`, or a URL ending so).
fn upload_id_of(url: &str) -> Option<&str> {
    const PREFIX: &str = "/v1/uploads/";
    let id = &url[url.rfind(PREFIX)? + PREFIX.len()..];
    is_upload_id(id).then_some(id)
}

/// Step 2. Availability of every upload is checked before any length or digest, so that a
/// refusal the device can fix by uploading again (`upload_missing`) comes first.
fn held_parts(
    conn: &Connection,
    inner: &Inner,
    device: &Device,
    req: &CommitRequest,
) -> Result<Vec<HeldPart>, ApiError> {
    let now = unix(inner.now());
    let capture = req.capture_id.to_string();
    let mut found = Vec::with_capacity(PartKind::ALL.len());
    for kind in PartKind::ALL {
        let missing = |why: &str| {
            ApiError::new(
                Reason::UploadMissing,
                format!("the {} part's upload {why}", kind.name()),
            )
        };
        let part = req
            .parts
            .iter()
            .find(|p| p.kind == kind)
            .ok_or_else(|| missing("is not named"))?;
        let upload = upload_id_of(&part.upload)
            .ok_or_else(|| missing("is not an upload URL of this endpoint"))?;
        let row: Option<(String, String, String, i64, i64, i64)> = conn
            .query_row(
                "SELECT device_id, capture_id, kind, length, upload_offset, expires_at FROM uploads WHERE id = ?1",
                [upload],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)),
            )
            .optional()?;
        let Some((_, for_capture, for_kind, length, offset, expires_at)) =
            row.filter(|r| r.0 == device.id)
        else {
            return Err(missing("is unknown"));
        };
        if for_capture != capture || for_kind != kind.name() {
            return Err(missing("holds another part"));
        }
        if now >= expires_at {
            return Err(missing("expired"));
        }
        if offset != length {
            return Err(missing("is incomplete"));
        }
        found.push((part, upload.to_string(), length.max(0) as u64));
    }
    let mut held = Vec::with_capacity(found.len());
    for (part, upload, length) in found {
        let mismatch = || {
            ApiError::new(
                Reason::PartMismatch,
                format!("the {} part differs from the commit", part.kind.name()),
            )
        };
        if length != part.length {
            return Err(mismatch());
        }
        let sha256 = match inner.blobs.digest_upload(&upload, length) {
            Ok(Some(d)) => d,
            // The bytes the row promises are not on disk: the device must upload them again.
            Ok(None) => {
                return Err(ApiError::new(
                    Reason::UploadMissing,
                    format!("the {} part's bytes are gone", part.kind.name()),
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ApiError::new(
                    Reason::UploadMissing,
                    format!("the {} part's bytes are gone", part.kind.name()),
                ));
            }
            Err(e) => return Err(e.into()),
        };
        if sha256 != part.sha256 {
            return Err(mismatch());
        }
        held.push(HeldPart {
            kind: part.kind,
            upload,
            length,
            sha256,
        });
    }
    Ok(held)
}

/// Steps 3-5. The outer error is a local failure (not recorded); the inner one a rejection of
/// the content (recorded). On success, the duplicate key.
fn check_content(
    inner: &Inner,
    device: &Device,
    req: &CommitRequest,
    held: &[HeldPart],
    judged_at: OffsetDateTime,
) -> Result<Result<[u8; 32], ApiError>, ApiError> {
    let undecryptable = |d: String| Ok(Err(ApiError::new(Reason::Undecryptable, d)));
    let id = req.capture_id.as_bytes();
    let Some(seal) = inner.cfg.keys.seal_key(&req.seal_key_id) else {
        return undecryptable("seal_key_id names no seal key of this endpoint".into());
    };
    let Ok(dk) = open_from_device(&seal.secret, &device.public, id, &req.sealed_key) else {
        return undecryptable("the sealed key does not open for this device".into());
    };
    let mut manifest = zeroize::Zeroizing::new(Vec::new());
    for h in held {
        let mut opener = PartOpener::new(&dk, id, h.kind)?;
        let reader = inner.blobs.read_upload(&h.upload, h.length)?;
        let opened = if h.kind == PartKind::Manifest {
            if h.length > limits::MAX_MANIFEST_CT_BYTES {
                return undecryptable("the manifest part is over its size limit".into());
            }
            opener.open_to(h.length, reader, &mut *manifest)
        } else {
            // Images are only authenticated, streaming: the plaintext goes nowhere.
            opener.open_to(h.length, reader, &mut io::sink())
        };
        match opened {
            Ok(_) => {}
            Err(apoyo_sync::Error::Io(e)) => return Err(e.into()),
            Err(_) => return undecryptable(format!("the {} part does not decrypt", h.kind.name())),
        }
    }
    Ok(check_manifest(inner, req, &manifest, judged_at))
}

/// Steps 4-5 on the decrypted manifest; on success the duplicate key.
fn check_manifest(
    inner: &Inner,
    req: &CommitRequest,
    plain: &[u8],
    judged_at: OffsetDateTime,
) -> Result<[u8; 32], ApiError> {
    let m = Manifest::from_cbor(plain)
        .map_err(|_| ApiError::new(Reason::ManifestMismatch, "the manifest does not decode"))?;
    if m.capture_id != req.capture_id
        || m.process_id != req.process_id
        || m.captured_at != req.captured_at
        || m.collector != req.collector
    {
        return Err(ApiError::new(
            Reason::ManifestMismatch,
            "the manifest does not agree with the commit",
        ));
    }
    let process = inner
        .cfg
        .processes
        .iter()
        .find(|p| p.id == m.process_id)
        .ok_or_else(|| {
            ApiError::new(Reason::ProcessUnknown, "this endpoint has no such process")
        })?;
    if !process.is_open_at(judged_at) {
        return Err(ApiError::new(
            Reason::ProcessClosed,
            format!("process {} was not open at the capture time", process.id),
        ));
    }
    validate::validate_fields(&m.fields)
        .map_err(|e| ApiError::new(Reason::CardInvalid, e.to_string()))?;
    validate::check_against_process(&m.model, &m.fields, process).map_err(|e| {
        let reason = match e {
            apoyo_sync::Error::ModelNotAccepted { .. } => Reason::ModelNotAccepted,
            apoyo_sync::Error::CredentialExpired { .. } => Reason::CredentialExpired,
            apoyo_sync::Error::OutOfScope { .. } => Reason::OutOfScope,
            _ => Reason::CardInvalid,
        };
        ApiError::new(reason, e.to_string())
    })?;
    // Keyed, so that the database alone does not confirm whether a given clave supported.
    crypto::hmac_sha256(
        inner.dup_key.as_bytes(),
        &[
            process.id.as_bytes(),
            &[0],
            m.fields.clave_elector.as_bytes(),
        ],
    )
    .map_err(ApiError::internal)
}

/// Step 7: the support's row, its parts, and the uploads it consumed, in one commit.
/// Everything the support's row records.
struct Row<'a> {
    device: &'a Device,
    received: &'a Received,
    held: &'a [HeldPart],
    decision: &'a Decision,
    digest: &'a [u8; 32],
    answer: &'a Answer,
    now: OffsetDateTime,
    skew: Option<i64>,
    folder: &'a str,
}

fn record(tx: Transaction<'_>, row: &Row<'_>) -> Result<(), ApiError> {
    let req = &row.received.req;
    let (result, reason, first, dup_key) = match row.decision {
        Decision::Counted { dup_key } => ("counted", None, None, Some(dup_key)),
        Decision::Duplicate { dup_key, first, .. } => {
            ("duplicate", None, Some(first.to_string()), Some(dup_key))
        }
        Decision::Rejected(e) => ("rejected", Some(e.reason.code()), None, None),
    };
    let (collector_kind, collector_id) = collector_parts(&req.collector);
    let capture = req.capture_id.to_string();
    tx.execute(
        "INSERT INTO supports (device_id, capture_id, process_id, result, reason, first_capture_id, dup_key,
                               collector_kind, collector_id, captured_time, counted_time, digest, status, body,
                               blob_dir, signed_commit, device_signature, sent_time, skew_seconds)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)",
        params![
            row.device.id,
            capture,
            req.process_id,
            result,
            reason,
            first,
            dup_key.map(|k| &k[..]),
            collector_kind,
            collector_id,
            rfc3339(req.captured_at)?,
            rfc3339(row.now)?,
            &row.digest[..],
            row.answer.status,
            row.answer.body,
            row.folder,
            row.received.signed.commit,
            row.received.signed.device_signature,
            rfc3339(req.sent_at)?,
            row.skew,
        ],
    )?;
    for h in row.held {
        tx.execute(
            "INSERT INTO support_parts (device_id, capture_id, kind, length, sha256) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![row.device.id, capture, h.kind.name(), h.length as i64, &h.sha256[..]],
        )?;
        tx.execute("DELETE FROM uploads WHERE id = ?1", [&h.upload])?;
    }
    tx.commit()?;
    Ok(())
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
