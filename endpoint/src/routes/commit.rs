//! `PUT /v1/supports/{capture_id}` with `Idempotency-Key: {capture_id}`.
//!
//! v1.1: the body is a `SignedCommit`; its signature is checked against the signing key the
//! device registered at activation before anything else is looked at, then the collector and
//! the decision (`support`: a short read, the parts' bytes outside the database, a short
//! decision transaction — ADR 0020). A bare v1 `CommitRequest`, or a token issued
//! to a v1 device, gets `426 upgrade_required`.

use apoyo_sync::CaptureId;
use apoyo_sync::wire::trust::open_signed_commit;
use apoyo_sync::wire::{CommitRequest, Reason, SignedCommit, limits};
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;

use crate::auth::{self, Device};
use crate::error::ApiError;
use crate::http::{cbor, check_version, decode, header_str, read_body};
use crate::state::AppState;
use crate::support;

/// Just enough of a v1 commit to recognise one (every other key is ignored).
#[derive(Deserialize)]
struct V1Commit {
    #[allow(dead_code)]
    capture_id: CaptureId,
}

fn upgrade_required() -> ApiError {
    ApiError::new(
        Reason::UpgradeRequired,
        "this endpoint speaks protocol v1.1: commits are signed by the device; update the app",
    )
}

/// A commit as received: the exact signed bytes, the signature and the decoded request.
pub(crate) struct Received {
    pub req: CommitRequest,
    pub signed: SignedCommit,
}

/// Decodes the body and checks the device's signature.
fn open(device: &Device, bytes: &[u8]) -> Result<Received, ApiError> {
    let signed: SignedCommit = match decode(bytes, limits::MAX_SIGNED_COMMIT_BYTES, "commit") {
        Ok(s) => s,
        Err(e) => {
            return Err(
                match decode::<V1Commit>(bytes, limits::MAX_SIGNED_COMMIT_BYTES, "commit") {
                    Ok(_) => upgrade_required(),
                    Err(_) => e,
                },
            );
        }
    };
    check_version(signed.v)?;
    let key = device.signing_public.ok_or_else(upgrade_required)?;
    let req = open_signed_commit(&key, &signed).map_err(|e| match e {
        apoyo_sync::Error::Crypto(_) => ApiError::new(
            Reason::CommitSignatureInvalid,
            "the commit's signature does not verify under this device's signing key",
        ),
        other => ApiError::malformed(other.to_string()),
    })?;
    check_version(req.v)?;
    Ok(Received { req, signed })
}

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
    // `_budget`: the body's share of the body budget, held until the commit is answered.
    let crate::http::ReadBody {
        bytes,
        budget: _budget,
    } = read_body(
        &headers,
        body,
        limits::MAX_SIGNED_COMMIT_BYTES,
        crate::http::Pace::of(&st),
        "commit",
    )
    .await?;
    let received = open(&device, &bytes)?;
    if received.req.capture_id != id {
        return Err(ApiError::malformed(
            "the body's capture id is not the path's",
        ));
    }
    support::check_shape(&received.req)?;
    let answer = support::decide(&st, device, received).await?;
    Ok(cbor(answer.status, answer.body))
}
