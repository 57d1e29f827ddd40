//! Deciding a commit (`PUT /v1/supports/{capture_id}`), all inside one SQLite transaction taken
//! under the database mutex, so that concurrent deliveries of the same capture serialize:
//!
//! 1. idempotency: a stored answer for this capture id with the same content digest is answered
//!    again byte for byte; a different digest is `idempotency_conflict`;
//! 2. the five parts: each names a complete, unexpired upload of this device for this capture
//!    and kind (else `upload_missing`), whose length and SHA-256 are the declared ones (else
//!    `part_mismatch`);
//! 3. the sealed key opens with the device's key and every part authenticates (else
//!    `undecryptable`);
//! 4. the manifest agrees with the commit (else `manifest_mismatch`);
//! 5. the process rules (`process_unknown`, `process_closed`, `card_invalid`,
//!    `model_not_accepted`, `credential_expired`, `out_of_scope`);
//! 6. the duplicate rule (LGIPE art. 385): one counted support per (process, clave de elector);
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
use apoyo_sync::protocol::{
    self, CommitRequest, Reason, Receipt, ReceiptPart, ReceiptResult, SignedReceipt, limits,
};
use apoyo_sync::{CaptureId, Collector, Manifest, PartKind, validate};
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use time::OffsetDateTime;

use crate::auth::Device;
use crate::blobs::is_upload_id;
use crate::digest::commit_digest;
use crate::error::ApiError;
use crate::http::{rfc3339, unix};
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
    Duplicate { dup_key: [u8; 32], first: CaptureId },
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
    req: &CommitRequest,
) -> Result<Answer, ApiError> {
    let digest = commit_digest(req, &device.id);
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let stored: Option<(Vec<u8>, i64, Vec<u8>)> = tx
        .query_row(
            "SELECT digest, status, body FROM supports WHERE capture_id = ?1",
            [req.capture_id.to_string()],
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
    let decision = match check_content(inner, device, req, &held)? {
        Err(rejection) => Decision::Rejected(rejection),
        Ok(dup_key) => {
            let first: Option<String> = tx
                .query_row(
                    "SELECT capture_id FROM supports WHERE dup_key = ?1 AND result = 'counted'",
                    [&dup_key[..]],
                    |r| r.get(0),
                )
                .optional()?;
            match first {
                None => Decision::Counted { dup_key },
                Some(f) => Decision::Duplicate {
                    dup_key,
                    first: f.parse().map_err(ApiError::internal)?,
                },
            }
        }
    };
    let now = inner.now();
    let answer = match &decision {
        Decision::Counted { .. } => Answer {
            status: 201,
            body: signed_receipt(inner, device, req, &held, ReceiptResult::Counted, None, now)?,
        },
        Decision::Duplicate { first, .. } => Answer {
            status: 200,
            body: signed_receipt(
                inner,
                device,
                req,
                &held,
                ReceiptResult::Duplicate,
                Some(*first),
                now,
            )?,
        },
        Decision::Rejected(e) => Answer {
            status: e.status.as_u16(),
            body: e.body(),
        },
    };
    let links: Vec<(PartKind, String)> = held.iter().map(|h| (h.kind, h.upload.clone())).collect();
    inner.blobs.link_support(&req.capture_id, &links)?;
    if let Err(e) = record(tx, device, req, &held, &decision, &digest, &answer, now) {
        inner.blobs.unlink_support(&req.capture_id);
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
) -> Result<Result<[u8; 32], ApiError>, ApiError> {
    let undecryptable = |d: String| Ok(Err(ApiError::new(Reason::Undecryptable, d)));
    let id = req.capture_id.as_bytes();
    let Ok(dk) = open_from_device(&inner.cfg.key, &device.public, id, &req.sealed_key) else {
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
    Ok(check_manifest(inner, req, &manifest))
}

/// Steps 4-5 on the decrypted manifest; on success the duplicate key.
fn check_manifest(inner: &Inner, req: &CommitRequest, plain: &[u8]) -> Result<[u8; 32], ApiError> {
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
    if !process.is_open_at(m.captured_at) {
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

fn signed_receipt(
    inner: &Inner,
    device: &Device,
    req: &CommitRequest,
    held: &[HeldPart],
    result: ReceiptResult,
    first_capture_id: Option<CaptureId>,
    now: OffsetDateTime,
) -> Result<Vec<u8>, ApiError> {
    let receipt = Receipt {
        v: protocol::VERSION,
        capture_id: req.capture_id,
        process_id: req.process_id.clone(),
        device_id: device.id.clone(),
        result,
        first_capture_id,
        parts: held
            .iter()
            .map(|h| ReceiptPart {
                kind: h.kind,
                sha256: h.sha256,
            })
            .collect(),
        counted_at: now,
        endpoint_key_id: inner.receipt_key_id.clone(),
    };
    let receipt = protocol::encode(&receipt)?;
    let signature = inner
        .cfg
        .signer
        .sign(&protocol::receipt_signing_input(&receipt))
        .to_vec();
    Ok(protocol::encode(&SignedReceipt { receipt, signature })?)
}

/// Step 7: the support's row, its parts, and the uploads it consumed, in one commit.
#[allow(clippy::too_many_arguments)]
fn record(
    tx: Transaction<'_>,
    device: &Device,
    req: &CommitRequest,
    held: &[HeldPart],
    decision: &Decision,
    digest: &[u8; 32],
    answer: &Answer,
    now: OffsetDateTime,
) -> Result<(), ApiError> {
    let (result, reason, first, dup_key) = match decision {
        Decision::Counted { dup_key } => ("counted", None, None, Some(dup_key)),
        Decision::Duplicate { dup_key, first } => {
            ("duplicate", None, Some(first.to_string()), Some(dup_key))
        }
        Decision::Rejected(e) => ("rejected", Some(e.reason.code()), None, None),
    };
    let (collector_kind, collector_id) = match &req.collector {
        Collector::MiApoyo(id) => ("mi_apoyo", id),
        Collector::Auxiliar(id) => ("auxiliar", id),
    };
    let capture = req.capture_id.to_string();
    tx.execute(
        "INSERT INTO supports (capture_id, device_id, process_id, result, reason, first_capture_id, dup_key, collector_kind,
                               collector_id, captured_time, counted_time, digest, status, body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        params![
            capture,
            device.id,
            req.process_id,
            result,
            reason,
            first,
            dup_key.map(|k| &k[..]),
            collector_kind,
            collector_id,
            rfc3339(req.captured_at)?,
            rfc3339(now)?,
            &digest[..],
            answer.status,
            answer.body
        ],
    )?;
    for h in held {
        tx.execute(
            "INSERT INTO support_parts (capture_id, kind, length, sha256) VALUES (?1, ?2, ?3, ?4)",
            params![capture, h.kind.name(), h.length as i64, &h.sha256[..]],
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
