//! tus 1.0 at `/v1/uploads`: core (with `X-HTTP-Method-Override`, applied in `routes`),
//! creation (without creation-with-upload: a POST with a body is 400), checksum (sha1 and
//! sha256), termination, expiration.
//!
//! Each upload belongs to the device whose token created it; another device sees 404. A PATCH
//! body is read whole (bounded) and checked before a byte is written, so a body cut midway or
//! damaged in transit stores nothing; accepted bytes are fdatasync'd before the offset is
//! committed, in one durable step per PATCH (ADR 0021). The upload's running SHA-256 is
//! continued from the state its row holds and stored back with the offset, so any replica
//! continues it and the commit finds the final digest in the row.
//! A PATCH refused before its body is read has the body read and dropped first (up to the
//! PATCH cap), so the client gets the refusal on a live connection, not a reset.
//!
//! This file holds the handlers; `headers` parses and writes the tus headers, `rows` keeps the
//! `uploads` table and the upload files, `running` the running digest.

mod headers;
mod rows;
mod running;

use apoyo_sync::wire::crypto::ciphertext_len;
use apoyo_sync::wire::{Reason, limits, tus};
use apoyo_sync::{PartKind, wire::validate};
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::auth;
use crate::error::ApiError;
use crate::http::{ReadBody, drain, header_str, http_date, read_body};
use crate::state::AppState;
use headers::{
    Checksum, TUS_CHECKSUM_ALGORITHM, TUS_EXTENSION, TUS_MAX_SIZE, TUS_VERSION, UPLOAD_EXPIRES,
    UPLOAD_LENGTH, UPLOAD_METADATA, metadata_value, offset_headers, parse_checksum, parse_metadata,
    parse_u64_header, require_tus, upload_id,
};
use rows::{create_upload, offset_mismatch, owned, write_patch};

/// Largest PATCH body. Devices send [`limits::PATCH_BYTES`]; a little more room lets another
/// tus client use bigger chunks while bounding what one request makes the endpoint buffer.
pub(crate) const MAX_PATCH_BODY: usize = 1024 * 1024;

/// The largest ciphertext a part of `kind` can have.
fn max_part_len(kind: PartKind) -> u64 {
    let max = match kind {
        PartKind::Manifest => limits::MAX_MANIFEST_CT_BYTES,
        _ => ciphertext_len(validate::max_image_bytes(kind) as u64),
    };
    max.min(limits::MAX_PART_BYTES)
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

pub(crate) async fn create(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    refuse_creation_with_upload(&st, &headers, body).await?;
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

/// The creation-with-upload extension is not offered: a POST carrying bytes is refused with
/// `400` (after its body is read and dropped, so the client sees the answer), never created
/// with the bytes silently dropped.
async fn refuse_creation_with_upload(
    st: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<(), ApiError> {
    let chunked = headers.contains_key(header::TRANSFER_ENCODING);
    let declared = declared_length(headers).unwrap_or(0);
    if declared == 0 && !chunked {
        return Ok(());
    }
    if declared <= MAX_PATCH_BODY as u64 {
        drain(body, MAX_PATCH_BODY as u64, crate::http::Pace::of(st).idle).await;
    }
    Err(ApiError::malformed(
        "creation-with-upload is not supported: create the upload, then PATCH its bytes",
    ))
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
    h.insert(UPLOAD_METADATA, metadata_value(&up.capture_id, &up.kind)?);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

pub(crate) async fn patch(
    State(st): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let pace = crate::http::Pace::of(&st);
    // Refuse early what cannot succeed, before reading the body; but read and drop the body
    // (up to the PATCH cap) before answering, so the client gets the refusal, not a reset.
    let target = match patch_target(&st, path, &headers).await {
        Ok(t) => t,
        Err(e) => {
            if declared_length(&headers).is_none_or(|n| n <= MAX_PATCH_BODY as u64) {
                drain(body, MAX_PATCH_BODY as u64, pace.idle).await;
            }
            return Err(e);
        }
    };
    // `_budget`: the body's share of the body budget, held until the PATCH is answered.
    let ReadBody {
        bytes,
        budget: _budget,
    } = read_body(&headers, body, MAX_PATCH_BODY, pace, "PATCH body").await?;
    let PatchTarget {
        device,
        id,
        offset,
        checksum,
        length,
        digest_state,
    } = target;
    // Both hashes of the body (its checksum, the upload's running digest) off the runtime
    // and outside the database's lock.
    let (bytes, advance) = st
        .blocking(move |_| {
            check_patch_body(&bytes, offset, length, checksum)?;
            let complete = offset + bytes.len() as u64 == length;
            let advance = running::advance(offset, digest_state, &bytes, complete);
            Ok((bytes, advance))
        })
        .await?;
    let (new_offset, expires_at) = st
        .db(move |conn, inner| {
            write_patch(conn, inner, &device, &id, offset, &bytes, advance.clone())
        })
        .await?;
    let mut resp = StatusCode::NO_CONTENT.into_response();
    offset_headers(&mut resp, new_offset, expires_at)?;
    Ok(resp)
}

/// What a PATCH appends to, once its headers and the upload passed the checks made before the
/// body is read.
struct PatchTarget {
    device: auth::Device,
    id: String,
    offset: u64,
    checksum: Option<Checksum>,
    /// The upload's `Upload-Length`.
    length: u64,
    /// The running digest's state at `offset`, as the row held it.
    digest_state: Option<Vec<u8>>,
}

/// The checks of a PATCH made before its body is read, in the order §6.4 gives: `Tus-Resumable`,
/// the token, the upload id's form, the headers, the upload itself, the offset.
async fn patch_target(
    st: &AppState,
    path: Result<Path<String>, PathRejection>,
    headers: &HeaderMap,
) -> Result<PatchTarget, ApiError> {
    require_tus(headers)?;
    let device = auth::require(st, headers).await?;
    let id = upload_id(path)?;
    let (offset, checksum) = patch_headers(headers)?;
    let (dev, id2) = (device.clone(), id.clone());
    let up = st
        .db(move |conn, inner| owned(conn, inner, &dev, &id2))
        .await?;
    if offset != up.offset {
        return Err(offset_mismatch());
    }
    Ok(PatchTarget {
        device,
        id,
        offset,
        checksum,
        length: up.length,
        digest_state: up.digest_state,
    })
}

/// A request's declared `Content-Length`, when it is a number.
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    header_str(headers, header::CONTENT_LENGTH.as_str()).and_then(|v| v.trim().parse().ok())
}

/// A PATCH's `Content-Type` (must be `application/offset+octet-stream`, else 415), its
/// `Upload-Offset` (required) and its `Upload-Checksum` (optional).
fn patch_headers(headers: &HeaderMap) -> Result<(u64, Option<Checksum>), ApiError> {
    let content_type = header_str(headers, header::CONTENT_TYPE.as_str())
        .map(|v| v.split(';').next().unwrap_or_default().trim());
    if !content_type.is_some_and(|v| v.eq_ignore_ascii_case(tus::OFFSET_STREAM)) {
        return Err(ApiError::with_status(
            415,
            Reason::Other,
            format!("Content-Type must be {}", tus::OFFSET_STREAM),
        ));
    }
    let offset = parse_u64_header(headers, "upload-offset")?
        .ok_or_else(|| ApiError::malformed("Upload-Offset is required"))?;
    Ok((offset, parse_checksum(headers)?))
}

/// A PATCH body must stay within the upload's length and match its checksum, if one was sent.
fn check_patch_body(
    bytes: &[u8],
    offset: u64,
    length: u64,
    checksum: Option<Checksum>,
) -> Result<(), ApiError> {
    if offset + bytes.len() as u64 > length {
        return Err(ApiError::too_large("the body goes past Upload-Length"));
    }
    if let Some(expected) = checksum
        && !expected.matches(bytes)
    {
        return Err(ApiError::with_status(
            tus::CHECKSUM_MISMATCH,
            Reason::Other,
            "checksum mismatch",
        ));
    }
    Ok(())
}

pub(crate) async fn delete(
    State(st): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    require_tus(&headers)?;
    let device = auth::require(&st, &headers).await?;
    let id = upload_id(path)?;
    st.db(move |conn, inner| rows::delete(conn, inner, &device, &id))
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
