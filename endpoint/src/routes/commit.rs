//! `PUT /v1/supports/{capture_id}` with `Idempotency-Key: {capture_id}`.

use apoyo_sync::CaptureId;
use apoyo_sync::protocol::{CommitRequest, limits};
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;

use crate::auth;
use crate::error::ApiError;
use crate::http::{cbor, check_version, header_str, read_message};
use crate::state::AppState;
use crate::support;

pub(crate) async fn commit(
    State(st): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let device = auth::require(&st, &headers).await?;
    let id: CaptureId = match path {
        Ok(Path(raw)) => raw
            .parse()
            .map_err(|_| ApiError::malformed("the path does not end in a capture id"))?,
        Err(_) => return Err(ApiError::malformed("the path does not end in a capture id")),
    };
    let key = header_str(&headers, "idempotency-key")
        .ok_or_else(|| ApiError::malformed("Idempotency-Key is required"))?;
    if key.trim().parse::<CaptureId>().ok() != Some(id) {
        return Err(ApiError::malformed(
            "Idempotency-Key must be the capture id of the path",
        ));
    }
    let req: CommitRequest =
        read_message(&st, &headers, body, limits::MAX_COMMIT_BYTES, "commit").await?;
    check_version(req.v)?;
    if req.capture_id != id {
        return Err(ApiError::malformed(
            "the body's capture id is not the path's",
        ));
    }
    support::check_shape(&req)?;
    let answer = st
        .db(move |conn, inner| support::decide(conn, inner, &device, &req))
        .await?;
    Ok(cbor(answer.status, answer.body))
}
