//! The `uploads` table and the upload files behind it: an upload's row (owned by one device,
//! expiring), creation within the per-device bound, the sweep of long-expired uploads, the
//! write of an accepted PATCH and termination.
//!
//! One durable step per PATCH (ADR 0021): the bytes are fdatasync'd (with the folder on an
//! upload's first PATCH), then the row's offset and running digest commit unflushed; the row
//! is the truth and the file may run ahead of it (a power loss can take back the row's last
//! unflushed commits, never the bytes under it). A creation commits unflushed too.

use std::io;

use apoyo_sync::wire::Reason;
use apoyo_sync::{CaptureId, PartKind};

use super::running::{self, Advance};
use crate::auth::Device;
use crate::error::ApiError;
use crate::http::{random_hex, unix};
use crate::state::Inner;
use crate::store::{Db, NewUpload};

/// Uploads a device may hold at once (in progress or complete but not committed): 100 captures
/// of five parts. Bounds the disk one device key can occupy.
const MAX_UPLOADS_PER_DEVICE: i64 = 500;
/// An expired upload is kept (answering 410) this long before its row and bytes are swept.
const EXPIRED_GRACE_SECS: i64 = 60 * 60;
/// Expired uploads removed per sweep (a sweep runs on each creation).
const SWEEP_BATCH: i64 = 100;

/// One upload's row.
pub(super) struct Upload {
    pub(super) device_id: String,
    pub(super) length: u64,
    pub(super) offset: u64,
    pub(super) expires_at: i64,
    /// The capture id and part kind its `Upload-Metadata` named (given back on HEAD).
    pub(super) capture_id: String,
    pub(super) kind: String,
    /// The running digest's serialized state at `offset` (`running`).
    pub(super) digest_state: Option<Vec<u8>>,
}

/// An upload's row, whoever owns it.
pub(super) fn load(conn: &dyn Db, id: &str) -> Result<Option<Upload>, ApiError> {
    Ok(conn.upload(id)?.map(|r| Upload {
        device_id: r.device_id,
        length: r.length.max(0) as u64,
        offset: r.offset.max(0) as u64,
        expires_at: r.expires_at,
        capture_id: r.capture_id,
        kind: r.kind,
        digest_state: r.digest_state,
    }))
}

/// The caller's upload `id`: 404 if unknown or another device's, 410 if expired.
pub(super) fn owned(
    conn: &dyn Db,
    inner: &Inner,
    device: &Device,
    id: &str,
) -> Result<Upload, ApiError> {
    let up = load(conn, id)?
        .filter(|u| u.device_id == device.id)
        .ok_or_else(ApiError::not_found)?;
    if unix(inner.now()) >= up.expires_at {
        return Err(ApiError::with_status(
            410,
            Reason::UploadMissing,
            "the upload expired",
        ));
    }
    Ok(up)
}

/// A new upload of `length` bytes for the device's capture part: its (empty) file first, then
/// its row, neither flushed on its own; refused (429) when the device already holds too many.
/// Its id and expiration.
pub(super) fn create_upload(
    conn: &dyn Db,
    inner: &Inner,
    device: &Device,
    capture_id: CaptureId,
    kind: PartKind,
    length: u64,
) -> Result<(String, i64), ApiError> {
    let now = unix(inner.now());
    sweep_expired(conn, inner, now)?;
    let held: i64 = conn.count_uploads(&device.id)?;
    if held >= MAX_UPLOADS_PER_DEVICE {
        return Err(ApiError::new(
            Reason::RateLimited,
            "this device holds too many uploads; commit or delete some",
        )
        .retry_after(60));
    }
    let ttl = i64::try_from(inner.cfg.upload_ttl.as_secs()).unwrap_or(i64::MAX / 4);
    let expires_at = now.saturating_add(ttl);
    let id = random_hex(16)?;
    // The file first, then its row: a crash in between leaves a file no row names, which the
    // next start removes. Neither is flushed here (ADR 0021): a creation lost at a power loss
    // is a 404 on the client's next request, and it creates the upload again; the first PATCH
    // makes the file's folder entry durable before any offset can commit.
    inner.blobs.create_upload(&id)?;
    let inserted = conn.begin_unflushed().and_then(|()| {
        conn.insert_upload(&NewUpload {
            id: &id,
            device_id: &device.id,
            capture_id: &capture_id.to_string(),
            kind: kind.name(),
            length: length as i64,
            now,
            expires_at,
        })?;
        conn.commit_unflushed()
    });
    if let Err(e) = inserted {
        let _ = inner.blobs.remove_upload(&id);
        return Err(e.into());
    }
    Ok((id, expires_at))
}

/// Removes uploads that expired more than [`EXPIRED_GRACE_SECS`] ago (rows, then bytes).
fn sweep_expired(conn: &dyn Db, inner: &Inner, now: i64) -> Result<(), ApiError> {
    let ids: Vec<String> = conn.expired_uploads(now - EXPIRED_GRACE_SECS, SWEEP_BATCH)?;
    if ids.is_empty() {
        return Ok(());
    }
    conn.begin()?;
    for id in &ids {
        conn.delete_upload(id)?;
    }
    conn.commit()?;
    for id in &ids {
        if let Err(e) = inner.blobs.remove_upload(id) {
            tracing::warn!(error = %e, "could not remove an expired upload's bytes");
        }
    }
    Ok(())
}

/// 409: the upload is at another offset than the PATCH says.
pub(super) fn offset_mismatch() -> ApiError {
    ApiError::with_status(409, Reason::Other, "offset mismatch")
}

/// Writes an accepted PATCH body at `offset` and advances the upload's offset and running
/// digest (`advance`, computed from the row read before the body), checking again under the
/// upload's lock that the upload is still the caller's and still at `offset` (another PATCH of
/// the same upload, on this replica or another, may have won the race). The new offset and the
/// expiration.
///
/// The one durable step: the bytes (and, on the first PATCH, the folder entry) are made
/// durable before the row commits unflushed. The row stays the truth: bytes past its offset
/// (a PATCH whose row never committed, or was lost at a power loss) are cut off first.
pub(super) fn write_patch(
    conn: &dyn Db,
    inner: &Inner,
    device: &Device,
    id: &str,
    offset: u64,
    bytes: &[u8],
    advance: Advance,
) -> Result<(u64, i64), ApiError> {
    conn.begin_unflushed()?;
    conn.lock_upload(id)?;
    let up = owned(conn, inner, device, id)?;
    if up.offset != offset {
        return Err(offset_mismatch());
    }
    if bytes.is_empty() {
        conn.commit_unflushed()?;
        return Ok((offset, up.expires_at));
    }
    let new_offset = offset + bytes.len() as u64;
    // Computed from the state read before the body; recomputed if the row changed since.
    let advance = if advance.from == up.digest_state {
        advance
    } else {
        running::advance(offset, up.digest_state, bytes, new_offset == up.length)
    };
    match inner.blobs.write_upload(id, offset, bytes) {
        Ok(()) => {}
        Err(e)
            if e.kind() == io::ErrorKind::NotFound || e.kind() == io::ErrorKind::UnexpectedEof =>
        {
            // The bytes the row promises are not on disk: the client must start again.
            return Err(ApiError::with_status(
                410,
                Reason::UploadMissing,
                "the upload's bytes are gone",
            ));
        }
        Err(e) => return Err(e.into()),
    }
    conn.advance_upload(
        id,
        new_offset as i64,
        advance.state.as_deref(),
        advance.sha256.as_ref(),
    )?;
    conn.commit_unflushed()?;
    Ok((new_offset, up.expires_at))
}

/// Terminates the caller's upload `id` (404 if unknown or another device's): under the
/// upload's lock, as a PATCH writes, so no PATCH of it is midway; the row first, then the
/// bytes (a crash in between leaves a file no row names, removed at the next start).
pub(super) fn delete(
    conn: &dyn Db,
    inner: &Inner,
    device: &Device,
    id: &str,
) -> Result<(), ApiError> {
    conn.begin()?;
    conn.lock_upload(id)?;
    load(conn, id)?
        .filter(|u| u.device_id == device.id)
        .ok_or_else(ApiError::not_found)?;
    conn.delete_upload(id)?;
    conn.commit()?;
    inner.blobs.remove_upload(id)?;
    Ok(())
}
