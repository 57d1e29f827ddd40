//! The `uploads` table and the upload files behind it: an upload's row (owned by one device,
//! expiring), creation within the per-device bound, the sweep of long-expired uploads, and the
//! write of an accepted PATCH (bytes fsync'd before the offset is committed).

use apoyo_sync::wire::Reason;
use apoyo_sync::{CaptureId, PartKind};

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

/// A new upload of `length` bytes for the device's capture part: its file first (durably),
/// then its row; refused (429) when the device already holds too many. Its id and expiration.
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
    // The file first (durably), then its row: a crash in between leaves a file no row names,
    // which the next start removes.
    inner.blobs.create_upload(&id)?;
    let inserted = conn.insert_upload(&NewUpload {
        id: &id,
        device_id: &device.id,
        capture_id: &capture_id.to_string(),
        kind: kind.name(),
        length: length as i64,
        now,
        expires_at,
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

/// Writes an accepted PATCH body at `offset` and advances the upload's offset, checking again
/// under the database lock that the upload is still the caller's and still at `offset`
/// (another PATCH of the same upload, on this replica or another, may have won the race). The
/// new offset and the expiration.
pub(super) fn write_patch(
    conn: &dyn Db,
    inner: &Inner,
    device: &Device,
    id: &str,
    offset: u64,
    bytes: &[u8],
) -> Result<(u64, i64), ApiError> {
    conn.begin()?;
    conn.lock_upload(id)?;
    let up = owned(conn, inner, device, id)?;
    if up.offset != offset {
        return Err(offset_mismatch());
    }
    if bytes.is_empty() {
        return Ok((offset, up.expires_at));
    }
    inner.blobs.write_upload(id, offset, bytes)?;
    let new_offset = offset + bytes.len() as u64;
    conn.set_upload_offset(id, new_offset as i64)?;
    conn.commit()?;
    Ok((new_offset, up.expires_at))
}
