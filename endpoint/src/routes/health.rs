//! Health and readiness, for a load balancer in front of replicas: `GET /healthz` answers 200
//! while the process serves; `GET /readyz` answers 200 only when the database answers a query
//! and the blob folder is there (else 503), with which backend is in use and how many
//! transactions were run again after losing a race to another replica.

use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::state::{AppState, Backend};

pub(crate) const HEALTH: &str = "/healthz";
pub(crate) const READY: &str = "/readyz";

pub(crate) async fn health() -> &'static str {
    "ok\n"
}

/// What `/readyz` answers (JSON).
#[derive(Serialize)]
struct Readiness {
    ready: bool,
    database: &'static str,
    blobs: bool,
    conflicts_retried: u64,
    /// Commits this replica decided since it started (replays not counted).
    commits_decided: u64,
}

pub(crate) async fn ready(State(st): State<AppState>) -> Response {
    let inner = st.inner();
    let (database, db_ok) = match &inner.backend {
        Backend::Sqlite(_) => ("sqlite", st.db(|conn, _| Ok(conn.ping().is_ok())).await),
        Backend::Postgres(pg) => ("postgres", Ok(pg.ready().await.is_ok())),
    };
    let db_ok = db_ok.unwrap_or(false);
    let blobs = inner.cfg.blob_dir().is_dir();
    let body = Readiness {
        ready: db_ok && blobs,
        database,
        blobs,
        conflicts_retried: inner.conflicts_retried.load(Ordering::Relaxed),
        commits_decided: inner.commits_decided.load(Ordering::Relaxed),
    };
    let status = if body.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}
