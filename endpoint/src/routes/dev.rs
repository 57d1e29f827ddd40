//! Development routes (only with `EndpointConfig::dev`): the mailbox that stands in for the
//! email server (addresses compared case-insensitively), and the stats.

use apoyo_sync::wire::Mailbox;
use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::http::{from_unix, rfc3339};
use crate::state::AppState;
use crate::stats;

pub(crate) async fn mailbox(
    State(st): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Ok(Path(email)) = path else {
        return Err(ApiError::not_found());
    };
    let row: Option<(String, String, i64)> = st
        .db(move |conn, _| Ok(conn.dev_mailbox(&email.to_lowercase())?))
        .await?;
    let (email, code, expires_at) = row.ok_or_else(ApiError::not_found)?;
    Ok(Json(Mailbox {
        email,
        code,
        expires_at: rfc3339(from_unix(expires_at))?,
    })
    .into_response())
}

pub(crate) async fn stats(State(st): State<AppState>) -> Result<Response, ApiError> {
    let s = st.db(|conn, _| Ok(stats::query(conn)?)).await?;
    Ok(Json(s).into_response())
}
