//! Bearer tokens: issued at activation (32 random bytes, hex), stored only as their SHA-256,
//! valid until the activation code's expiry.

use apoyo_sync::wire::crypto::{self, device_id_of};
use axum::http::HeaderMap;

use crate::error::ApiError;
use crate::http::{bearer, unix};
use crate::state::{AppState, Inner};
use crate::store::Db;

/// The device a valid token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Device {
    pub public: [u8; 32],
    pub id: String,
    /// The Ed25519 commit-signing key registered at the activation that issued the token
    /// (v1.1; `None` for a token issued before v1.1, whose commits get `426`).
    pub signing_public: Option<[u8; 32]>,
}

/// Longest token accepted before hashing (ours are 64 hex characters).
const MAX_TOKEN_LEN: usize = 128;

/// The device of a presented token, if the token is known and unexpired.
pub(crate) fn lookup(
    conn: &dyn Db,
    inner: &Inner,
    token: &str,
) -> Result<Option<Device>, ApiError> {
    if token.is_empty() || token.len() > MAX_TOKEN_LEN {
        return Ok(None);
    }
    let digest = crypto::sha256(token.as_bytes());
    let row: Option<(Vec<u8>, Option<Vec<u8>>)> =
        conn.token_device(&digest[..], unix(inner.now()))?;
    Ok(row.and_then(|(p, s)| {
        let public = <[u8; 32]>::try_from(p).ok()?;
        Some(Device {
            id: device_id_of(&public),
            public,
            signing_public: s.and_then(|s| <[u8; 32]>::try_from(s).ok()),
        })
    }))
}

/// The device of the request's bearer token, or 401 `unauthorized`.
pub(crate) async fn require(state: &AppState, headers: &HeaderMap) -> Result<Device, ApiError> {
    let token = bearer(headers)
        .ok_or_else(ApiError::unauthorized)?
        .to_string();
    state
        .db(move |conn, inner| lookup(conn, inner, &token))
        .await?
        .ok_or_else(ApiError::unauthorized)
}

/// The device of the request's bearer token, if any (for the chaos hook; never refuses).
pub(crate) async fn peek(state: &AppState, headers: &HeaderMap) -> Option<Device> {
    let token = bearer(headers)?.to_string();
    state
        .db(move |conn, inner| lookup(conn, inner, &token))
        .await
        .ok()
        .flatten()
}
