//! tus 1.0 at `/v1/uploads`: core, creation, checksum (sha256), termination, expiration.
//!
//! Each upload belongs to the device whose token created it; another device sees 404. A PATCH
//! body is read whole (bounded) and checked before a byte is written, so a body cut midway or
//! damaged in transit stores nothing; accepted bytes are fsync'd before the offset is committed.

use apoyo_sync::crypto::{self, ciphertext_len};
use apoyo_sync::protocol::{Reason, limits, tus};
use apoyo_sync::{CaptureId, PartKind, validate};
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::auth::{self, Device};
use crate::blobs::is_upload_id;
use crate::error::ApiError;
use crate::http::{header_str, http_date, random_hex, read_body, unix};
use crate::state::{AppState, Inner};

/// Largest PATCH body. Devices send [`limits::PATCH_BYTES`]; a little more room lets another
/// tus client use bigger chunks while bounding what one request makes the endpoint buffer.
pub(crate) const MAX_PATCH_BODY: usize = 1024 * 1024;
/// Uploads a device may hold at once (in progress or complete but not committed): 100 captures
/// of five parts. Bounds the disk one device key can occupy.
const MAX_UPLOADS_PER_DEVICE: i64 = 500;
/// An expired upload is kept (answering 410) this long before its row and bytes are swept.
const EXPIRED_GRACE_SECS: i64 = 60 * 60;
/// Expired uploads removed per sweep (a sweep runs on each creation).
const SWEEP_BATCH: i64 = 100;
/// Longest `Upload-Metadata` header accepted.
const MAX_METADATA_LEN: usize = 1024;

const TUS_VERSION: HeaderName = HeaderName::from_static("tus-version");
const TUS_EXTENSION: HeaderName = HeaderName::from_static("tus-extension");
const TUS_MAX_SIZE: HeaderName = HeaderName::from_static("tus-max-size");
const TUS_CHECKSUM_ALGORITHM: HeaderName = HeaderName::from_static("tus-checksum-algorithm");
const UPLOAD_OFFSET: HeaderName = HeaderName::from_static("upload-offset");
const UPLOAD_LENGTH: HeaderName = HeaderName::from_static("upload-length");
const UPLOAD_EXPIRES: HeaderName = HeaderName::from_static("upload-expires");

/// The largest ciphertext a part of `kind` can have.
fn max_part_len(kind: PartKind) -> u64 {
    let max = match kind {
        PartKind::Manifest => limits::MAX_MANIFEST_CT_BYTES,
        _ => ciphertext_len(validate::max_image_bytes(kind) as u64),
    };
    max.min(limits::MAX_PART_BYTES)
}

/// One upload's row.
struct Upload {
    device_id: String,
    length: u64,
    offset: u64,
    expires_at: i64,
}

fn load(conn: &Connection, id: &str) -> Result<Option<Upload>, ApiError> {
    Ok(conn
        .query_row(
            "SELECT device_id, length, upload_offset, expires_at FROM uploads WHERE id = ?1",
            [id],
            |r| {
                Ok(Upload {
                    device_id: r.get(0)?,
                    length: r.get::<_, i64>(1)?.max(0) as u64,
                    offset: r.get::<_, i64>(2)?.max(0) as u64,
                    expires_at: r.get(3)?,
                })
            },
        )
        .optional()?)
}

/// The caller's upload `id`: 404 if unknown or another device's, 410 if expired.
fn owned(conn: &Connection, inner: &Inner, device: &Device, id: &str) -> Result<Upload, ApiError> {
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

/// Requests other than OPTIONS must say `Tus-Resumable: 1.0.0`.
fn require_tus(headers: &HeaderMap) -> Result<(), ApiError> {
    if header_str(headers, "tus-resumable").map(str::trim) == Some(tus::RESUMABLE) {
        Ok(())
    } else {
        Err(ApiError::with_status(
            412,
            Reason::Other,
            "Tus-Resumable: 1.0.0 is required",
        ))
    }
}

fn upload_id(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    match path {
        Ok(Path(id)) if is_upload_id(&id) => Ok(id),
        _ => Err(ApiError::not_found()),
    }
}

fn parse_u64_header(headers: &HeaderMap, name: &str) -> Result<Option<u64>, ApiError> {
    match header_str(headers, name) {
        None => Ok(None),
        Some(v) => v
            .trim()
            .parse::<u64>()
            .map(Some)
            .map_err(|_| ApiError::malformed(format!("{name} is not a number"))),
    }
}

pub(crate) async fn options() -> Response {
    let mut resp = StatusCode::NO_CONTENT.into_response();
    let h = resp.headers_mut();
    h.insert(TUS_VERSION, HeaderValue::from_static(tus::RESUMABLE));
    h.insert(TUS_EXTENSION, HeaderValue::from_static(tus::EXTENSIONS));
    h.insert(TUS_MAX_SIZE, HeaderValue::from(limits::MAX_PART_BYTES));
    h.insert(
        TUS_CHECKSUM_ALGORITHM,
        HeaderValue::from_static(tus::CHECKSUM_ALGORITHMS),
    );
    resp
}

/// `Upload-Metadata: capture_id <base64>,kind <base64>` (other keys are ignored).
fn parse_metadata(headers: &HeaderMap) -> Result<(CaptureId, PartKind), ApiError> {
    let raw = header_str(headers, "upload-metadata")
        .ok_or_else(|| ApiError::malformed("Upload-Metadata is required"))?;
    if raw.len() > MAX_METADATA_LEN {
        return Err(ApiError::malformed("Upload-Metadata is too long"));
    }
    let (mut capture, mut kind) = (None, None);
    for pair in raw.split(',') {
        let mut it = pair.trim().splitn(2, ' ');
        let key = it.next().unwrap_or_default();
        let value = it.next().map(str::trim).unwrap_or_default();
        let decode = || {
            B64.decode(value)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| {
                    ApiError::malformed(format!("Upload-Metadata: {key} is not base64 text"))
                })
        };
        match key {
            "capture_id" => {
                capture = Some(decode()?.parse::<CaptureId>().map_err(|_| {
                    ApiError::malformed("Upload-Metadata: capture_id is not a UUID")
                })?)
            }
            "kind" => {
                kind = Some(
                    PartKind::from_name(&decode()?)
                        .ok_or_else(|| ApiError::malformed("Upload-Metadata: unknown kind"))?,
                )
            }
            _ => {}
        }
    }
    match (capture, kind) {
        (Some(c), Some(k)) => Ok((c, k)),
        _ => Err(ApiError::malformed(
            "Upload-Metadata must carry capture_id and kind",
        )),
    }
}

pub(crate) async fn create(
    State(st): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    require_tus(&headers)?;
    let device = auth::require(&st, &headers).await?;
    if headers.contains_key("upload-defer-length") {
        return Err(ApiError::malformed("Upload-Defer-Length is not supported"));
    }
    let length = parse_u64_header(&headers, "upload-length")?
        .ok_or_else(|| ApiError::malformed("Upload-Length is required"))?;
    let (capture_id, kind) = parse_metadata(&headers)?;
    if length > max_part_len(kind) {
        return Err(ApiError::too_large(format!(
            "a {} part is at most {} bytes",
            kind.name(),
            max_part_len(kind)
        )));
    }
    if length == 0 {
        return Err(ApiError::malformed("Upload-Length must be at least 1"));
    }
    let (id, expires_at) = st
        .db(move |conn, inner| create_upload(conn, inner, &device, capture_id, kind, length))
        .await?;
    let mut resp = StatusCode::CREATED.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::LOCATION,
        HeaderValue::try_from(format!("/v1/uploads/{id}")).map_err(ApiError::internal)?,
    );
    h.insert(
        UPLOAD_EXPIRES,
        HeaderValue::try_from(http_date(expires_at)).map_err(ApiError::internal)?,
    );
    Ok(resp)
}

fn create_upload(
    conn: &mut Connection,
    inner: &Inner,
    device: &Device,
    capture_id: CaptureId,
    kind: PartKind,
    length: u64,
) -> Result<(String, i64), ApiError> {
    let now = unix(inner.now());
    sweep_expired(conn, inner, now)?;
    let held: i64 = conn.query_row(
        "SELECT count(*) FROM uploads WHERE device_id = ?1",
        [&device.id],
        |r| r.get(0),
    )?;
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
    let inserted = conn.execute(
        "INSERT INTO uploads (id, device_id, capture_id, kind, length, upload_offset, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6, ?7)",
        params![id, device.id, capture_id.to_string(), kind.name(), length as i64, now, expires_at],
    );
    if let Err(e) = inserted {
        let _ = inner.blobs.remove_upload(&id);
        return Err(e.into());
    }
    Ok((id, expires_at))
}

/// Removes uploads that expired more than [`EXPIRED_GRACE_SECS`] ago (rows, then bytes).
fn sweep_expired(conn: &mut Connection, inner: &Inner, now: i64) -> Result<(), ApiError> {
    let ids: Vec<String> = {
        let mut st = conn.prepare("SELECT id FROM uploads WHERE expires_at <= ?1 LIMIT ?2")?;
        let rows = st.query_map(params![now - EXPIRED_GRACE_SECS, SWEEP_BATCH], |r| r.get(0))?;
        rows.collect::<Result<_, _>>()?
    };
    if ids.is_empty() {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    for id in &ids {
        tx.execute("DELETE FROM uploads WHERE id = ?1", [id])?;
    }
    tx.commit()?;
    for id in &ids {
        if let Err(e) = inner.blobs.remove_upload(id) {
            tracing::warn!(error = %e, "could not remove an expired upload's bytes");
        }
    }
    Ok(())
}

fn offset_headers(resp: &mut Response, offset: u64, expires_at: i64) -> Result<(), ApiError> {
    let h = resp.headers_mut();
    h.insert(UPLOAD_OFFSET, HeaderValue::from(offset));
    h.insert(
        UPLOAD_EXPIRES,
        HeaderValue::try_from(http_date(expires_at)).map_err(ApiError::internal)?,
    );
    Ok(())
}

pub(crate) async fn head(
    State(st): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    require_tus(&headers)?;
    let device = auth::require(&st, &headers).await?;
    let id = upload_id(path)?;
    let up = st
        .db(move |conn, inner| owned(conn, inner, &device, &id))
        .await?;
    let mut resp = StatusCode::OK.into_response();
    offset_headers(&mut resp, up.offset, up.expires_at)?;
    let h = resp.headers_mut();
    h.insert(UPLOAD_LENGTH, HeaderValue::from(up.length));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

fn offset_mismatch() -> ApiError {
    ApiError::with_status(409, Reason::Other, "offset mismatch")
}

pub(crate) async fn patch(
    State(st): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    require_tus(&headers)?;
    let device = auth::require(&st, &headers).await?;
    let id = upload_id(path)?;
    let content_type = header_str(&headers, header::CONTENT_TYPE.as_str())
        .map(|v| v.split(';').next().unwrap_or_default().trim());
    if !content_type.is_some_and(|v| v.eq_ignore_ascii_case(tus::OFFSET_STREAM)) {
        return Err(ApiError::with_status(
            415,
            Reason::Other,
            format!("Content-Type must be {}", tus::OFFSET_STREAM),
        ));
    }
    let offset = parse_u64_header(&headers, "upload-offset")?
        .ok_or_else(|| ApiError::malformed("Upload-Offset is required"))?;
    let checksum = parse_checksum(&headers)?;
    // Refuse early what cannot succeed, before reading the body.
    let (dev, id2) = (device.clone(), id.clone());
    let up = st
        .db(move |conn, inner| owned(conn, inner, &dev, &id2))
        .await?;
    if offset != up.offset {
        return Err(offset_mismatch());
    }
    let bytes = read_body(
        &headers,
        body,
        MAX_PATCH_BODY,
        st.inner().cfg.body_idle_timeout,
        "PATCH body",
    )
    .await?;
    if offset + bytes.len() as u64 > up.length {
        return Err(ApiError::too_large("the body goes past Upload-Length"));
    }
    if let Some(expected) = checksum
        && crypto::sha256(&bytes) != expected
    {
        return Err(ApiError::with_status(
            tus::CHECKSUM_MISMATCH,
            Reason::Other,
            "checksum mismatch",
        ));
    }
    let (new_offset, expires_at) = st
        .db(move |conn, inner| {
            // Again under the lock: another PATCH of the same upload may have won the race.
            let up = owned(conn, inner, &device, &id)?;
            if up.offset != offset {
                return Err(offset_mismatch());
            }
            if bytes.is_empty() {
                return Ok((offset, up.expires_at));
            }
            inner.blobs.write_upload(&id, offset, &bytes)?;
            let new_offset = offset + bytes.len() as u64;
            conn.execute(
                "UPDATE uploads SET upload_offset = ?2 WHERE id = ?1",
                params![id, new_offset as i64],
            )?;
            Ok((new_offset, up.expires_at))
        })
        .await?;
    let mut resp = StatusCode::NO_CONTENT.into_response();
    offset_headers(&mut resp, new_offset, expires_at)?;
    Ok(resp)
}

/// `Upload-Checksum: sha256 <base64>`; another algorithm is 400 (tus checksum extension).
fn parse_checksum(headers: &HeaderMap) -> Result<Option<[u8; 32]>, ApiError> {
    let Some(v) = header_str(headers, "upload-checksum") else {
        return Ok(None);
    };
    let (alg, value) = v
        .trim()
        .split_once(' ')
        .ok_or_else(|| ApiError::malformed("Upload-Checksum is not '<algorithm> <base64>'"))?;
    if !alg.eq_ignore_ascii_case("sha256") {
        return Err(ApiError::malformed("the only checksum algorithm is sha256"));
    }
    let digest = B64
        .decode(value.trim())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| ApiError::malformed("Upload-Checksum: not a base64 SHA-256"))?;
    Ok(Some(digest))
}

pub(crate) async fn delete(
    State(st): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    require_tus(&headers)?;
    let device = auth::require(&st, &headers).await?;
    let id = upload_id(path)?;
    st.db(move |conn, inner| {
        load(conn, &id)?
            .filter(|u| u.device_id == device.id)
            .ok_or_else(ApiError::not_found)?;
        conn.execute("DELETE FROM uploads WHERE id = ?1", [&id])?;
        inner.blobs.remove_upload(&id)?;
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
