//! The tus 1.0 headers of `/v1/uploads`: the `Tus-Resumable` requirement, the upload id in
//! the path, `Upload-Length`/`Upload-Offset` numbers, `Upload-Metadata` (capture id and part
//! kind), `Upload-Checksum` (sha1 or sha256), and the offset headers of an answer.

use apoyo_sync::wire::{Reason, tus};
use apoyo_sync::{CaptureId, PartKind};
use axum::extract::Path;
use axum::extract::rejection::PathRejection;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::blobs::is_upload_id;
use crate::error::ApiError;
use crate::http::{header_str, http_date};

/// Longest `Upload-Metadata` header accepted.
const MAX_METADATA_LEN: usize = 1024;

pub(super) const TUS_VERSION: HeaderName = HeaderName::from_static("tus-version");
pub(super) const TUS_EXTENSION: HeaderName = HeaderName::from_static("tus-extension");
pub(super) const TUS_MAX_SIZE: HeaderName = HeaderName::from_static("tus-max-size");
pub(super) const TUS_CHECKSUM_ALGORITHM: HeaderName =
    HeaderName::from_static("tus-checksum-algorithm");
const UPLOAD_OFFSET: HeaderName = HeaderName::from_static("upload-offset");
pub(super) const UPLOAD_LENGTH: HeaderName = HeaderName::from_static("upload-length");
pub(super) const UPLOAD_EXPIRES: HeaderName = HeaderName::from_static("upload-expires");
pub(super) const UPLOAD_METADATA: HeaderName = HeaderName::from_static("upload-metadata");

/// Requests other than OPTIONS must say `Tus-Resumable: 1.0.0`.
pub(super) fn require_tus(headers: &HeaderMap) -> Result<(), ApiError> {
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

/// The upload id in the path; 404 when it is not one of ours.
pub(super) fn upload_id(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    match path {
        Ok(Path(id)) if is_upload_id(&id) => Ok(id),
        _ => Err(ApiError::not_found()),
    }
}

/// A header holding a number, if present; 400 when it is not one.
pub(super) fn parse_u64_header(headers: &HeaderMap, name: &str) -> Result<Option<u64>, ApiError> {
    match header_str(headers, name) {
        None => Ok(None),
        Some(v) => v
            .trim()
            .parse::<u64>()
            .map(Some)
            .map_err(|_| ApiError::malformed(format!("{name} is not a number"))),
    }
}

/// `Upload-Metadata: capture_id <base64>,kind <base64>` (other keys are ignored).
pub(super) fn parse_metadata(headers: &HeaderMap) -> Result<(CaptureId, PartKind), ApiError> {
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

/// A PATCH's `Upload-Checksum`: tus requires `sha1` of a server with the checksum extension;
/// devices send `sha256`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Checksum {
    Sha1([u8; 20]),
    Sha256([u8; 32]),
}

impl Checksum {
    /// Whether `bytes` have this digest.
    pub(super) fn matches(&self, bytes: &[u8]) -> bool {
        match self {
            Checksum::Sha1(d) => {
                use sha1::Digest as _;
                sha1::Sha1::digest(bytes).as_slice() == d
            }
            Checksum::Sha256(d) => apoyo_sync::wire::crypto::sha256(bytes) == *d,
        }
    }
}

/// `Upload-Checksum: sha1|sha256 <base64>`; another algorithm is 400 (tus checksum extension).
pub(super) fn parse_checksum(headers: &HeaderMap) -> Result<Option<Checksum>, ApiError> {
    let Some(v) = header_str(headers, "upload-checksum") else {
        return Ok(None);
    };
    let (alg, value) = v
        .trim()
        .split_once(' ')
        .ok_or_else(|| ApiError::malformed("Upload-Checksum is not '<algorithm> <base64>'"))?;
    let bytes = B64.decode(value.trim()).ok();
    let checksum = if alg.eq_ignore_ascii_case("sha256") {
        bytes
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .map(Checksum::Sha256)
            .ok_or_else(|| ApiError::malformed("Upload-Checksum: not a base64 SHA-256"))?
    } else if alg.eq_ignore_ascii_case("sha1") {
        bytes
            .and_then(|b| <[u8; 20]>::try_from(b).ok())
            .map(Checksum::Sha1)
            .ok_or_else(|| ApiError::malformed("Upload-Checksum: not a base64 SHA-1"))?
    } else {
        return Err(ApiError::malformed(
            "the checksum algorithms are sha1 and sha256",
        ));
    };
    Ok(Some(checksum))
}

/// The `Upload-Metadata` of an upload, as HEAD gives it back (tus creation: the keys this
/// endpoint keeps, `capture_id` and `kind`).
pub(super) fn metadata_value(capture_id: &str, kind: &str) -> Result<HeaderValue, ApiError> {
    HeaderValue::try_from(format!(
        "capture_id {},kind {}",
        B64.encode(capture_id),
        B64.encode(kind)
    ))
    .map_err(ApiError::internal)
}

/// `Upload-Offset` and `Upload-Expires` on an answer.
pub(super) fn offset_headers(
    resp: &mut Response,
    offset: u64,
    expires_at: i64,
) -> Result<(), ApiError> {
    let h = resp.headers_mut();
    h.insert(UPLOAD_OFFSET, HeaderValue::from(offset));
    h.insert(
        UPLOAD_EXPIRES,
        HeaderValue::try_from(http_date(expires_at)).map_err(ApiError::internal)?,
    );
    Ok(())
}
