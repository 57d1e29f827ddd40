//! Errors: [`EndpointError`] for starting and running the endpoint (public), [`ApiError`] for
//! one HTTP answer (internal; every refusal is an `ErrorBody` with the reason's status).

use apoyo_sync::wire::{self as protocol, ErrorBody, Reason};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Why the endpoint could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A PostgreSQL failure (never with the URL's password, nor values the server quoted).
    #[error("database error: {0}")]
    Database(String),
    #[error("the database has schema version {found}; this endpoint knows up to {supported}")]
    SchemaVersion { found: i64, supported: i64 },
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Core(#[from] apoyo_sync::Error),
    #[error("internal error: {0}")]
    Internal(String),
}

/// One refusal, answered as `ErrorBody{v:1, reason, detail}` (CBOR).
#[derive(Debug)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub reason: Reason,
    /// English, never personal data.
    pub detail: String,
    pub retry_after: Option<u64>,
    /// The database transaction lost a race to another replica: running it again decides.
    pub conflict: bool,
}

impl ApiError {
    /// A refusal with the reason's own status.
    pub fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Self::with_status(reason.http_status(), reason, detail)
    }

    /// A refusal whose status is not the reason's (tus statuses: 409, 412, 415, 460).
    pub fn with_status(status: u16, reason: Reason, detail: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            reason,
            detail: detail.into(),
            retry_after: None,
            conflict: false,
        }
    }

    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    pub fn malformed(detail: impl Into<String>) -> Self {
        Self::new(Reason::Malformed, detail)
    }

    pub fn too_large(detail: impl Into<String>) -> Self {
        Self::new(Reason::TooLarge, detail)
    }

    pub fn unauthorized() -> Self {
        Self::new(Reason::Unauthorized, "a valid bearer token is required")
    }

    pub fn not_found() -> Self {
        Self::new(Reason::NotFound, "not found")
    }

    /// A local failure (database, disk): logged, answered 500 without details.
    pub fn internal(what: impl std::fmt::Display) -> Self {
        tracing::error!(error = %what, "internal error");
        Self::with_status(500, Reason::Other, "internal error")
    }

    /// The encoded `ErrorBody`.
    pub fn body(&self) -> Vec<u8> {
        let body = ErrorBody {
            v: protocol::VERSION,
            reason: self.reason,
            detail: self.detail.clone(),
        };
        // Encoding a two-field struct into a Vec cannot fail; an empty body is the fallback.
        protocol::encode(&body).unwrap_or_default()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = self.body();
        let mut resp = (self.status, body).into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(protocol::CBOR),
        );
        if let Some(secs) = self.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

impl From<rusqlite::Error> for ApiError {
    fn from(e: rusqlite::Error) -> Self {
        ApiError::internal(e)
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        if e.is_conflict() {
            tracing::debug!(error = %e.redacted(), "transaction lost a race; running it again");
            let mut busy =
                ApiError::new(Reason::Unavailable, "the database is busy; retry").retry_after(1);
            busy.conflict = true;
            return busy;
        }
        if let crate::store::StoreError::Pool(_) = &e {
            // Every connection busy past the pool's wait, or none can be made: a load or
            // availability condition the device retries after a pause, not a fault.
            tracing::warn!(error = %e.redacted(), "no database connection available");
            return ApiError::new(Reason::Unavailable, "the database is busy; retry")
                .retry_after(POOL_RETRY_AFTER_SECS);
        }
        ApiError::internal(e.redacted())
    }
}

/// The `Retry-After` of an answer refused for want of a database connection.
const POOL_RETRY_AFTER_SECS: u64 = 2;

impl From<std::io::Error> for ApiError {
    fn from(e: std::io::Error) -> Self {
        ApiError::internal(e)
    }
}

impl From<apoyo_sync::Error> for ApiError {
    fn from(e: apoyo_sync::Error) -> Self {
        ApiError::internal(e)
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> Self {
        ApiError::internal(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreError;

    /// A pool timeout is a busy database, answered `503 unavailable` with `Retry-After`
    /// (the device waits and retries), never `500`.
    #[test]
    fn a_pool_timeout_is_unavailable_with_retry_after() {
        let e = ApiError::from(StoreError::Pool(
            "Timeout occurred while waiting for a slot".into(),
        ));
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(e.reason, Reason::Unavailable);
        assert!(
            !e.conflict,
            "not a lost race: running it again at once would not help"
        );
        let resp = e.into_response();
        assert_eq!(resp.status(), 503);
        let retry = resp
            .headers()
            .get(header::RETRY_AFTER)
            .expect("Retry-After");
        assert_eq!(retry.to_str().unwrap(), POOL_RETRY_AFTER_SECS.to_string());
    }
}
