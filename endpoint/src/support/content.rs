//! The content phase of deciding a commit, on a blocking thread and outside the database
//! (ADR 0020): steps 2-5 on the parts' bytes. First, before any byte is read, a part whose
//! row contradicts the commit — another length, or another SHA-256 than the one the endpoint
//! kept while the upload was written (ADR 0021) — is `part_mismatch`. Then each part is read
//! in kind order (`reading`): when its row kept the declared digest, its bytes are only
//! decrypted — under ChaCha20-Poly1305/STREAM bytes that decrypt are the ones the device
//! sealed — and hashed only if that fails, to tell bytes changed on disk from bytes that do not
//! decrypt; without a kept digest, one pass hashes them while decrypting them (ADR 0021,
//! amendment). A part whose digest is not the declared one is `part_mismatch` and one whose
//! bytes are gone `upload_missing` (neither recorded; both counted against the device's
//! budget), whatever its decryption gave, since a verdict on bytes other than the declared
//! ones must never be recorded. Then the verdict on the content: the sealed key opens with the
//! ring's seal key named by `seal_key_id` and the device's key, every part authenticates (else
//! `undecryptable`), the manifest agrees with the commit (else `manifest_mismatch`), and the
//! process rules hold; on success, the duplicate key of step 6: an HMAC of (process, clave de
//! elector).

use apoyo_sync::wire::Manifest;
use apoyo_sync::wire::crypto::open_from_device;
use apoyo_sync::wire::crypto::{self, PartOpener};
use apoyo_sync::wire::{CommitRequest, Reason, limits};
use apoyo_sync::{PartKind, wire::validate};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use super::Job;
use super::parts::{Available, HeldPart};
use super::reading::{PartBytes, read_part};
use crate::error::ApiError;
use crate::state::Inner;

/// What the content phase found.
pub(super) enum Outcome {
    /// Every part is the declared bytes. `verdict`: the duplicate key, or the rejection of
    /// steps 3-5 (recorded). `skew`: the device clock's skew applied (seconds).
    Held {
        held: Vec<HeldPart>,
        verdict: Result<[u8; 32], ApiError>,
        skew: Option<i64>,
    },
    /// `part_mismatch`, or `upload_missing` found reading: not recorded, counted.
    Refused(ApiError),
}

/// Steps 2-5 on the bytes of the available uploads. The error is a local failure.
pub(super) fn check(
    inner: &Inner,
    job: &Job,
    available: &[Available],
) -> Result<Outcome, ApiError> {
    if let Some(a) = contradicted(available) {
        return Ok(Outcome::Refused(mismatch(a.kind)));
    }
    let req = job.req();
    let (judged_at, skew) =
        crate::skew::judged_capture_time(req.captured_at, req.sent_at, inner.now());
    let id = req.capture_id.as_bytes();
    let (data_key, mut failure) = match inner.cfg.keys.seal_key(&req.seal_key_id) {
        None => (
            None,
            Some("seal_key_id names no seal key of this endpoint".to_string()),
        ),
        Some(seal) => match open_from_device(&seal.secret, &job.device.public, id, &req.sealed_key)
        {
            Ok(dk) => (Some(dk), None),
            Err(_) => (
                None,
                Some("the sealed key does not open for this device".into()),
            ),
        },
    };
    let mut manifest = Zeroizing::new(Vec::new());
    let mut held = Vec::with_capacity(available.len());
    for (i, a) in available.iter().enumerate() {
        if a.kind == PartKind::Manifest && a.length > limits::MAX_MANIFEST_CT_BYTES {
            failure.get_or_insert_with(|| "the manifest part is over its size limit".into());
        }
        let opener = match (&data_key, &failure) {
            (Some(dk), None) => Some(PartOpener::new(dk, id, a.kind)?),
            _ => None,
        };
        let (sha256, authentic) = match read_part(inner.blobs.as_ref(), a, opener, &mut manifest)? {
            PartBytes::Held { sha256, authentic } => (sha256, authentic),
            PartBytes::Differ => return Ok(Outcome::Refused(mismatch(a.kind))),
            PartBytes::Gone => return Ok(Outcome::Refused(gone(a.kind))),
        };
        if !authentic {
            failure.get_or_insert_with(|| format!("the {} part does not decrypt", a.kind.name()));
        }
        held.push(HeldPart {
            kind: a.kind,
            upload: a.upload.clone(),
            length: a.length,
            sha256,
        });
        if let (0, Some(hook)) = (i, &inner.cfg.chaos) {
            hook.commit_reading(&job.device.id);
        }
    }
    let verdict = match failure {
        Some(detail) => Err(ApiError::new(Reason::Undecryptable, detail)),
        None => check_manifest(inner, req, &manifest, judged_at),
    };
    Ok(Outcome::Held {
        held,
        verdict,
        skew,
    })
}

/// The first part whose row already contradicts the commit (length, or the kept digest): no
/// byte needs reading to refuse it. A kept digest that agrees lets `reading` only decrypt.
fn contradicted(available: &[Available]) -> Option<&Available> {
    available.iter().find(|a| {
        a.length != a.declared_length
            || a.stored_sha256
                .is_some_and(|kept| kept != a.declared_sha256)
    })
}

fn mismatch(kind: PartKind) -> ApiError {
    ApiError::new(
        Reason::PartMismatch,
        format!("the {} part differs from the commit", kind.name()),
    )
}

fn gone(kind: PartKind) -> ApiError {
    ApiError::new(
        Reason::UploadMissing,
        format!("the {} part's bytes are gone", kind.name()),
    )
}

/// Steps 4-5 on the decrypted manifest; on success the duplicate key.
/// `judged_at`: the capture time corrected for the device's clock skew (`crate::skew`).
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
