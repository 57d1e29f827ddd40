//! `POST /v1/devices/activate`: a registered device proves it holds its key and the emailed
//! code, registers its commit-signing key (and binds its auxiliar id, v1.1) under that proof,
//! and gets a bearer token, the INE root's certificates of the endpoint's keys and the open
//! processes. Failed attempts are rate limited per device key; each signed request works once.
//! A v1 request (no signing key) gets `426 upgrade_required`.

use apoyo_sync::wire::crypto;
use apoyo_sync::wire::crypto::device_id_of;
use apoyo_sync::wire::{self as protocol, ActivateRequest, ActivateResponse, Reason, limits};
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use time::OffsetDateTime;

use super::rate_limit::{Window, refuse_when_over};
use crate::error::ApiError;
use crate::http::{cbor_msg, check_version, from_unix, random_hex, read_message, unix};
use crate::state::{AppState, Inner};
use crate::store::{Db, EventLog};

/// Failed activations allowed per device key within [`FAILURE_WINDOW_SECS`] before 429.
const MAX_FAILURES: i64 = 5;
/// The rate-limit window: 15 minutes.
const FAILURE_WINDOW_SECS: i64 = 15 * 60;
/// The activation nonce is 16 bytes (protocol).
const NONCE_LEN: usize = 16;
/// Longest code text accepted (ours are [`limits::ACTIVATION_CODE_LEN`]).
const MAX_CODE_TEXT: usize = 64;

pub(crate) async fn activate(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (req, _budget): (ActivateRequest, _) = read_message(
        &st,
        &headers,
        body,
        limits::MAX_ACTIVATE_BYTES,
        "activation",
    )
    .await?;
    check_version(req.v)?;
    if req.signing_public.is_none() {
        // A v1 device: it cannot sign commits, so nothing it sends could be counted.
        return Err(ApiError::new(
            Reason::UpgradeRequired,
            "this endpoint speaks protocol v1.1: activation registers a signing key; update the app",
        ));
    }
    if req.nonce.len() != NONCE_LEN {
        return Err(ApiError::malformed(format!(
            "the nonce must be {NONCE_LEN} bytes"
        )));
    }
    if req.code.is_empty() || req.code.len() > MAX_CODE_TEXT {
        return Err(ApiError::malformed(format!(
            "the code must be 1-{MAX_CODE_TEXT} bytes"
        )));
    }
    let resp = st
        .db(move |conn, inner| activate_device(conn, inner, &req))
        .await?;
    cbor_msg(200, &resp)
}

/// Checks, in order: the rate limit, the proof, the code (known, this device's, unexpired).
/// An unknown or foreign code counts as a failure of the presented device key. A bad proof does
/// not: whoever sent it does not hold that key, and counting it would let anyone lock a device
/// out by sending garbage with its public key.
fn activate_device(
    conn: &dyn Db,
    inner: &Inner,
    req: &ActivateRequest,
) -> Result<ActivateResponse, ApiError> {
    let now = inner.now();
    let now_s = unix(now);
    conn.begin()?;
    let tx = conn;
    refuse_when_over(
        tx,
        EventLog::ActivationFailures,
        &req.device_public[..],
        Window {
            now: now_s,
            secs: FAILURE_WINDOW_SECS,
            max: MAX_FAILURES,
        },
        "too many failed activation attempts for this device key",
    )?;
    if !proof_valid(inner, req)? {
        return Err(ApiError::new(
            Reason::ActivationProofInvalid,
            "the proof does not verify for this device key",
        ));
    }
    let digest = super::devices::code_digest(inner, &req.code)?;
    let expires_at = match code_expiry(tx, &digest, req)? {
        Ok(expires_at) => expires_at,
        Err(refusal) => {
            record_failure(tx, req, now_s)?;
            return Err(refusal);
        }
    };
    if now_s >= expires_at {
        return Err(ApiError::new(
            Reason::ActivationCodeExpired,
            "the code's 24 hours have passed; register again",
        ));
    }
    use_nonce(tx, req, now_s, expires_at)?;
    // Before anything is issued: without a receipt key valid now, nothing could be counted.
    let response = activation_response(inner, String::new(), expires_at, now)?;
    if let Some(aux) = &req.auxiliar_id {
        crate::collector::bind(tx, aux, &req.device_public, now_s)?;
    }
    let token = issue_token(tx, req, now_s, expires_at)?;
    // An activated registration is kept; the sweep removes only those never activated.
    tx.mark_activated(&digest, now_s)?;
    tx.commit()?;
    tracing::info!(device = %device_id_of(&req.device_public), "device activated");
    Ok(ActivateResponse { token, ..response })
}

/// The v1.1 proof (5.4), under any seal key of the ring (the one the device was provisioned
/// with): it covers the signing key and the auxiliar id too.
fn proof_valid(inner: &Inner, req: &ActivateRequest) -> Result<bool, ApiError> {
    let Some(signing_public) = req.signing_public else {
        return Ok(false);
    };
    for key in &inner.cfg.keys.seal {
        let shared = key.secret.diffie_hellman(&req.device_public);
        // A low-order device key gives an all-zero secret anyone can compute: never valid.
        if shared.as_bytes().iter().all(|&b| b == 0) {
            return Ok(false);
        }
        if protocol::verify_activation_proof_v11(&shared, req, &signing_public)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// When the presented code (looked up by its keyed hash, `digest`) expires, if it was issued
/// to this device key (the inner `Ok`); else the refusal (the inner `Err`): not issued, or
/// issued to another device key.
fn code_expiry(
    tx: &dyn Db,
    digest: &[u8; 32],
    req: &ActivateRequest,
) -> Result<Result<i64, ApiError>, ApiError> {
    let row: Option<(Vec<u8>, i64)> = tx.activation_code(digest)?;
    Ok(match row {
        Some((owner, expires_at)) if owner == req.device_public => Ok(expires_at),
        None => Err(ApiError::new(
            Reason::ActivationCodeWrong,
            "this code was not issued",
        )),
        Some(_) => Err(ApiError::new(
            Reason::ActivationCodeForeignDevice,
            "this code was issued to another device key",
        )),
    })
}

/// Counts a failed activation against the presented device key (forgetting failures older
/// than the window) and commits, so the refusal that follows is remembered.
fn record_failure(tx: &dyn Db, req: &ActivateRequest, now_s: i64) -> Result<(), ApiError> {
    tx.forget_events(EventLog::ActivationFailures, now_s - FAILURE_WINDOW_SECS)?;
    tx.add_event(EventLog::ActivationFailures, &req.device_public[..], now_s)?;
    tx.commit()?;
    Ok(())
}

/// The same signed request sent again (a replay) must not mint another token: each nonce
/// works once per device key while its code is valid. Not a failure (see [`activate_device`]).
fn use_nonce(
    tx: &dyn Db,
    req: &ActivateRequest,
    now_s: i64,
    expires_at: i64,
) -> Result<(), ApiError> {
    let fresh_nonce = tx.use_nonce(&req.device_public[..], &req.nonce[..], expires_at, now_s)?;
    if !fresh_nonce {
        return Err(ApiError::new(
            Reason::ActivationProofInvalid,
            "this proof was already used; sign a fresh nonce",
        ));
    }
    Ok(())
}

/// A fresh bearer token for the device, valid as long as its code; only its SHA-256 is kept,
/// with the commit-signing key the device registered under this activation's proof.
fn issue_token(
    tx: &dyn Db,
    req: &ActivateRequest,
    now_s: i64,
    expires_at: i64,
) -> Result<String, ApiError> {
    let token = random_hex(32)?;
    let signing_public = req.signing_public.map(|k| k.to_vec());
    tx.insert_token(
        &crypto::sha256(token.as_bytes())[..],
        &req.device_public[..],
        now_s,
        expires_at,
        signing_public.as_deref(),
    )?;
    Ok(token)
}

/// The token, the newest receipt key, the key certificates still valid and the processes
/// open now; `503 unavailable` when no receipt key is valid now (the endpoint must rotate).
fn activation_response(
    inner: &Inner,
    token: String,
    expires_at: i64,
    now: OffsetDateTime,
) -> Result<ActivateResponse, ApiError> {
    let newest = inner.cfg.keys.signing_key(now).ok_or_else(|| {
        ApiError::new(Reason::Unavailable, "no receipt key is valid now").retry_after(3600)
    })?;
    Ok(ActivateResponse {
        v: protocol::VERSION,
        token,
        expires_at: from_unix(expires_at),
        receipt_key: newest.info.key,
        receipt_key_id: newest.info.key_id.clone(),
        key_certs: inner.cfg.keys.certs(now),
        processes: inner
            .cfg
            .processes
            .iter()
            .filter(|p| p.is_open_at(now))
            .cloned()
            .collect(),
    })
}
