//! Steps 3-5 of deciding a commit, on the content the digest covers: the sealed key opens with
//! the ring's seal key named by `seal_key_id` and the device's key, every part authenticates (else `undecryptable`), the manifest agrees
//! with the commit (else `manifest_mismatch`), and the process rules hold. On success, the
//! duplicate key of step 6: an HMAC of (process, clave de elector).

use std::io;

use apoyo_sync::wire::Manifest;
use apoyo_sync::wire::crypto::open_from_device;
use apoyo_sync::wire::crypto::{self, PartOpener};
use apoyo_sync::wire::{CommitRequest, Reason, limits};
use apoyo_sync::{PartKind, wire::validate};

use time::OffsetDateTime;

use super::parts::HeldPart;
use crate::auth::Device;
use crate::error::ApiError;
use crate::state::Inner;

/// Steps 3-5. The outer error is a local failure (not recorded); the inner one a rejection of
/// the content (recorded). On success, the duplicate key.
pub(super) fn check_content(
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
