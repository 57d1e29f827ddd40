//! Step 2 of deciding a commit, on the upload rows: the five parts it names must be complete,
//! unexpired uploads of this device for this capture and kind (else `upload_missing`). The
//! read phase checks the rows before any byte is read, availability of every upload before any
//! length or digest, so that a refusal the device can fix by uploading again comes first; the
//! decision transaction checks them again ([`still_held`]), since an upload can be deleted or
//! expire while its bytes are read. (Lengths and digests are checked on the bytes: `content`.)

use apoyo_sync::PartKind;
use apoyo_sync::wire::{CommitRequest, Reason};

use super::{Job, upload_id_of};
use crate::error::ApiError;
use crate::store::{Db, UploadRow};

/// A part held in upload storage, checked against the commit.
pub(super) struct HeldPart {
    pub(super) kind: PartKind,
    pub(super) upload: String,
    pub(super) length: u64,
    pub(super) sha256: [u8; 32],
}

/// A complete, unexpired upload of this device for the part's capture and kind, with what the
/// commit declares of it, not yet checked against its bytes.
pub(super) struct Available {
    pub(super) kind: PartKind,
    pub(super) upload: String,
    /// The upload's length (its row's).
    pub(super) length: u64,
    pub(super) declared_length: u64,
    pub(super) declared_sha256: [u8; 32],
    /// The SHA-256 the endpoint kept while the upload was written (ADR 0021), if it kept one.
    pub(super) stored_sha256: Option<[u8; 32]>,
}

/// A part's upload as the commit names it, and its row if there is one.
pub(super) struct Named {
    kind: PartKind,
    upload: Option<String>,
    row: Option<UploadRow>,
}

/// The rows of the uploads the commit names, in [`PartKind::ALL`] order (reads only).
pub(super) fn read_rows(conn: &dyn Db, req: &CommitRequest) -> Result<Vec<Named>, ApiError> {
    PartKind::ALL
        .into_iter()
        .map(|kind| {
            let upload = req
                .parts
                .iter()
                .find(|p| p.kind == kind)
                .and_then(|p| upload_id_of(&p.upload));
            let row = match upload {
                Some(id) => conn.upload(id)?,
                None => None,
            };
            Ok(Named {
                kind,
                upload: upload.map(str::to_string),
                row,
            })
        })
        .collect()
}

/// The named uploads, each available (else `upload_missing` saying which), with what the
/// commit declares of them.
pub(super) fn available(
    job: &Job,
    named: Vec<Named>,
    now: i64,
) -> Result<Vec<Available>, ApiError> {
    named
        .into_iter()
        .map(|n| {
            let missing = |why: &str| missing(n.kind, why);
            let part = job
                .req()
                .parts
                .iter()
                .find(|p| p.kind == n.kind)
                .ok_or_else(|| missing("is not named"))?;
            let upload = n
                .upload
                .ok_or_else(|| missing("is not an upload URL of this endpoint"))?;
            let length = check_row(job, n.kind, n.row.as_ref(), now)?;
            Ok(Available {
                kind: n.kind,
                upload,
                length,
                declared_length: part.length,
                declared_sha256: part.sha256,
                stored_sha256: n.row.and_then(|r| r.sha256),
            })
        })
        .collect()
}

/// In the decision transaction: whether every held part is still the same complete,
/// unexpired upload the content phase read (the inner `Err`: `upload_missing`).
pub(super) fn still_held(
    conn: &dyn Db,
    job: &Job,
    held: &[HeldPart],
    now: i64,
) -> Result<Result<(), ApiError>, ApiError> {
    for h in held {
        let row = conn.upload(&h.upload)?;
        match check_row(job, h.kind, row.as_ref(), now) {
            Ok(length) if length == h.length => {}
            Ok(_) => return Ok(Err(missing(h.kind, "changed while it was read"))),
            Err(e) => return Ok(Err(e)),
        }
    }
    Ok(Ok(()))
}

fn missing(kind: PartKind, why: &str) -> ApiError {
    ApiError::new(
        Reason::UploadMissing,
        format!("the {} part's upload {why}", kind.name()),
    )
}

/// The upload's length if its row is this device's, for this capture and kind, unexpired and
/// complete; else `upload_missing` saying which.
fn check_row(
    job: &Job,
    kind: PartKind,
    row: Option<&UploadRow>,
    now: i64,
) -> Result<u64, ApiError> {
    let Some(row) = row.filter(|r| r.device_id == job.device.id) else {
        return Err(missing(kind, "is unknown"));
    };
    if row.capture_id != job.req().capture_id.to_string() || row.kind != kind.name() {
        return Err(missing(kind, "holds another part"));
    }
    if now >= row.expires_at {
        return Err(missing(kind, "expired"));
    }
    if row.offset != row.length {
        return Err(missing(kind, "is incomplete"));
    }
    Ok(row.length.max(0) as u64)
}
