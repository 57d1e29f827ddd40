//! Step 2 of deciding a commit: the five parts it names must be held in upload storage.
//! Availability of every upload is checked before any length or digest, so that a refusal the
//! device can fix by uploading again (`upload_missing`) comes first; then each held part's
//! length and SHA-256 must be the declared ones (else `part_mismatch`).

use std::io;

use apoyo_sync::PartKind;
use apoyo_sync::wire::{CommitPart, CommitRequest, Reason};

use super::upload_id_of;
use crate::auth::Device;
use crate::error::ApiError;
use crate::http::unix;
use crate::state::Inner;
use crate::store::Db;

/// A part held in upload storage, checked against the commit.
pub(super) struct HeldPart {
    pub(super) kind: PartKind,
    pub(super) upload: String,
    pub(super) length: u64,
    pub(super) sha256: [u8; 32],
}

/// A complete, unexpired upload of this device for the part's capture and kind, not yet
/// checked against the commit's length and digest.
struct Available<'a> {
    part: &'a CommitPart,
    upload: String,
    length: u64,
}

/// The commit's parts, in [`PartKind::ALL`] order, each held and as declared.
pub(super) fn held_parts(
    conn: &dyn Db,
    inner: &Inner,
    device: &Device,
    req: &CommitRequest,
) -> Result<Vec<HeldPart>, ApiError> {
    let now = unix(inner.now());
    let available = PartKind::ALL
        .into_iter()
        .map(|kind| available_upload(conn, device, req, kind, now))
        .collect::<Result<Vec<_>, _>>()?;
    available
        .into_iter()
        .map(|a| check_held(inner, a))
        .collect()
}

/// The upload the commit names for `kind`, if it is this device's, for this capture and kind,
/// unexpired and complete; else `upload_missing` saying which.
fn available_upload<'a>(
    conn: &dyn Db,
    device: &Device,
    req: &'a CommitRequest,
    kind: PartKind,
    now: i64,
) -> Result<Available<'a>, ApiError> {
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
    let row: Option<(String, String, String, i64, i64, i64)> = conn.upload(upload)?.map(|r| {
        (
            r.device_id,
            r.capture_id,
            r.kind,
            r.length,
            r.offset,
            r.expires_at,
        )
    });
    let Some((_, for_capture, for_kind, length, offset, expires_at)) =
        row.filter(|r| r.0 == device.id)
    else {
        return Err(missing("is unknown"));
    };
    if for_capture != req.capture_id.to_string() || for_kind != kind.name() {
        return Err(missing("holds another part"));
    }
    if now >= expires_at {
        return Err(missing("expired"));
    }
    if offset != length {
        return Err(missing("is incomplete"));
    }
    Ok(Available {
        part,
        upload: upload.to_string(),
        length: length.max(0) as u64,
    })
}

/// An available upload whose length and SHA-256 are the commit's (else `part_mismatch`), and
/// whose bytes are on disk (else `upload_missing`).
fn check_held(inner: &Inner, a: Available<'_>) -> Result<HeldPart, ApiError> {
    let Available {
        part,
        upload,
        length,
    } = a;
    let mismatch = || {
        ApiError::new(
            Reason::PartMismatch,
            format!("the {} part differs from the commit", part.kind.name()),
        )
    };
    if length != part.length {
        return Err(mismatch());
    }
    let gone = || {
        ApiError::new(
            Reason::UploadMissing,
            format!("the {} part's bytes are gone", part.kind.name()),
        )
    };
    let sha256 = match inner.blobs.digest_upload(&upload, length) {
        Ok(Some(d)) => d,
        // The bytes the row promises are not on disk: the device must upload them again.
        Ok(None) => return Err(gone()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(gone()),
        Err(e) => return Err(e.into()),
    };
    if sha256 != part.sha256 {
        return Err(mismatch());
    }
    Ok(HeldPart {
        kind: part.kind,
        upload,
        length,
        sha256,
    })
}
