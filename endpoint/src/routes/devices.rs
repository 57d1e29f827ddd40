//! `POST /v1/devices` ("Registro ciudadano"): check the sealed card front, record the device
//! and its registration, and mail an activation code, within the registration budgets
//! ([`super::rate_limit`]: per address, device key, source and globally), all checked before the
//! front is decrypted; a front that fails its check counts against its source. Each
//! registration first sweeps registrations never activated within their TTL, and so does a
//! periodic task ([`sweep_unactivated_every`]). Codes are stored only as a
//! keyed hash ([`code_digest`]). Activation with a code is in [`super::activation`].

use std::io::Write;
use std::net::SocketAddr;

use apoyo_sync::wire::crypto::device_id_of;
use apoyo_sync::wire::crypto::open_from_device;
use apoyo_sync::wire::crypto::{self, PartOpener};
use apoyo_sync::wire::{
    self as protocol, Provider, Reason, RegisterRequest, RegisterResponse, limits,
};
use apoyo_sync::{PartKind, wire::validate};
use axum::Extension;
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::Response;

use super::rate_limit::{self, Subjects, source};
use crate::error::ApiError;
use crate::http::{cbor_msg, check_version, from_unix, read_message, unix};
use crate::state::{AppState, Inner};
use crate::store::{Db, NewRegistration};

/// An activation code is valid for 24 hours from its issue (DOMAIN.md, Mi Apoyo flow step 3).
const CODE_VALIDITY_SECS: i64 = 24 * 60 * 60;
/// Code characters: no 0/O, 1/I/L, so a code read from an email and typed is not misread.
const CODE_ALPHABET: &[u8] = b"23456789ABCDEFGHJKMNPQRSTUVWXYZ";
/// Unactivated registrations removed per sweep (a sweep runs on each registration, and
/// periodically: [`sweep_unactivated_every`]).
const SWEEP_BATCH: i64 = 32;
/// Batches the periodic sweep removes at most per tick.
const SWEEPS_PER_TICK: usize = 64;
/// Longest email address (RFC 5321 path limit).
const MAX_EMAIL_BYTES: usize = 254;

pub(crate) async fn register(
    State(st): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let source = source::client_address(
        st.inner().cfg.registration.forwarded.as_ref(),
        peer.map(|Extension(ConnectInfo(a))| a),
        &headers,
    );
    // `_budget`: the body's share of the body budget, held until this request is answered.
    let (req, _budget): (RegisterRequest, _) = read_message(
        &st,
        &headers,
        body,
        limits::MAX_REGISTER_BYTES,
        "registration",
    )
    .await?;
    check_version(req.v)?;
    if !plausible_email(&req.email) {
        return Err(ApiError::new(
            Reason::RegistrationInvalid,
            "the email is not an address",
        ));
    }
    let subjects = Subjects::of(st.inner(), &req.email, &req.device_public[..], source)?;
    let early = subjects.clone();
    st.db(move |conn, inner| sweep_and_precheck(conn, inner, &early))
        .await?;
    let checked = st
        .blocking(move |inner| Ok(check_front(inner, &req).map(|()| req)))
        .await?;
    let req = match checked {
        Ok(req) => req,
        Err(refused) => {
            // A bad front cost a ≈2 MiB read and a decrypt: it counts against its source.
            let s = subjects.clone();
            st.db(move |conn, inner| rate_limit::record_refused_front(conn, &s, unix(inner.now())))
                .await?;
            return Err(refused);
        }
    };
    let resp = st
        .db(move |conn, inner| record_registration(conn, inner, &req, &subjects))
        .await?;
    cbor_msg(201, &resp)
}

/// One '@', something on both sides, no spaces or control characters, at most 254 bytes.
fn plausible_email(e: &str) -> bool {
    let Some((local, domain)) = e.split_once('@') else {
        return false;
    };
    e.len() <= MAX_EMAIL_BYTES
        && !local.is_empty()
        && !domain.is_empty()
        && !domain.contains('@')
        && e.chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && c != '/')
}

/// Opens the sealed card front with the registering device's key and checks it is a JPEG or
/// PNG within the card limit. The plaintext is never kept: only its first bytes and its length
/// are looked at as it streams through.
fn check_front(inner: &Inner, req: &RegisterRequest) -> Result<(), ApiError> {
    let invalid = |d: &str| ApiError::new(Reason::RegistrationInvalid, d);
    let id = req.registration_id.as_bytes();
    // The device sealed to the seal key it was provisioned with: any key of the ring.
    let dk = inner
        .cfg
        .keys
        .seal
        .iter()
        .find_map(|k| {
            open_from_device(&k.secret, &req.device_public, id, &req.front_sealed_key).ok()
        })
        .ok_or_else(|| invalid("the card front's sealed key does not open for this device key"))?;
    let mut probe = ImageProbe::default();
    PartOpener::new(&dk, id, PartKind::Front)?
        .open_to(req.front.len() as u64, &req.front[..], &mut probe)
        .map_err(|_| invalid("the card front does not decrypt"))?;
    if probe.len == 0 || probe.len > validate::max_image_bytes(PartKind::Front) as u64 {
        return Err(invalid("the card front is empty or over its size limit"));
    }
    validate::check_image(PartKind::Front, &probe.head)
        .map_err(|_| invalid("the card front is not a JPEG or PNG image"))?;
    Ok(())
}

/// A sink that keeps an image's first bytes (enough for its magic number) and counts the rest.
#[derive(Default)]
struct ImageProbe {
    head: Vec<u8>,
    len: u64,
}

impl Write for ImageProbe {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let keep = 16usize.saturating_sub(self.head.len()).min(buf.len());
        self.head.extend_from_slice(&buf[..keep]);
        self.len += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn record_registration(
    conn: &dyn Db,
    inner: &Inner,
    req: &RegisterRequest,
    subjects: &Subjects,
) -> Result<RegisterResponse, ApiError> {
    let now = unix(inner.now());
    let expires_at = now + CODE_VALIDITY_SECS;
    let reg_id = req.registration_id.to_string();
    conn.begin()?;
    let tx = conn;
    rate_limit::check_registration(tx, &inner.cfg.registration, subjects, now)?;
    let provider = match req.provider {
        Provider::Google => "google",
        Provider::Facebook => "facebook",
    };
    tx.insert_registration(&NewRegistration {
        registration_id: &reg_id,
        device_public: &req.device_public[..],
        device_id: &device_id_of(&req.device_public),
        provider,
        front_sealed_key: &req.front_sealed_key,
        front: &req.front,
        now,
    })?;
    // Read after the insert (which kept a row already there): another device key that took
    // this id first, even on another replica at the same moment, is seen here.
    let owner: Option<Vec<u8>> = tx.registration_owner(&reg_id)?;
    if owner.as_deref() != Some(&req.device_public[..]) {
        return Err(ApiError::new(
            Reason::IdempotencyConflict,
            "this registration id was used by another device key",
        ));
    }
    let (code, digest) = unused_code(tx, inner)?;
    tx.insert_activation_code(&digest, &req.device_public[..], &reg_id, now, expires_at)?;
    rate_limit::record_registration(tx, subjects, now)?;
    // "Send it by email": the development mailbox keeps the latest code per address (lower-cased;
    // the rate limit counts a normalised form, `rate_limit_address`). Only in development mode
    // (the developer's own mailbox): otherwise no address and no clear code is kept.
    if inner.cfg.dev {
        tx.put_dev_mailbox(&req.email.to_lowercase(), &code, expires_at)?;
    }
    tx.commit()?;
    tracing::info!("registration recorded; activation code mailed");
    Ok(RegisterResponse {
        v: protocol::VERSION,
        registration_id: req.registration_id,
        code_expires_at: from_unix(expires_at),
    })
}

/// Before the card front is decrypted: deletes registrations never activated within the TTL
/// (and whose codes all expired), in a transaction of its own, then refuses when the address,
/// the device key, the source or the endpoint used its budget, so a refusal costs no decrypt.
fn sweep_and_precheck(conn: &dyn Db, inner: &Inner, subjects: &Subjects) -> Result<(), ApiError> {
    let now = unix(inner.now());
    sweep_unactivated(conn, inner, now)?;
    rate_limit::check_registration(conn, &inner.cfg.registration, subjects, now)
}

/// Deletes up to [`SWEEP_BATCH`] registrations never activated within the TTL (and whose codes
/// all expired), in a transaction of its own; how many went.
fn sweep_unactivated(conn: &dyn Db, inner: &Inner, now: i64) -> Result<i64, ApiError> {
    conn.begin()?;
    let ttl = inner.cfg.registration.ttl_secs();
    let swept = conn.sweep_registrations(now - ttl, now, SWEEP_BATCH)?;
    conn.commit()?;
    if swept > 0 {
        tracing::info!(swept, "removed registrations never activated");
    }
    Ok(i64::try_from(swept).unwrap_or(i64::MAX))
}

/// The periodic sweep (every `RegistrationLimits::sweep_every`), so unactivated
/// registrations go even when no one registers: batch after batch until one is not full, at
/// most [`SWEEPS_PER_TICK`] batches a tick. Runs for as long as the server does.
pub(crate) async fn sweep_unactivated_every(
    st: AppState,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let every = st.inner().cfg.registration.sweep_every;
    // The first after one period: nothing touches the database at start.
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // Stopped only between sweeps: a sweep under way (its database work on a blocking
        // thread, which cancelling would not stop) finishes before the endpoint stops.
        tokio::select! {
            _ = tick.tick() => {}
            _ = &mut stop => return,
        }
        for _ in 0..SWEEPS_PER_TICK {
            let swept = st
                .db(|conn, inner| sweep_unactivated(conn, inner, unix(inner.now())))
                .await;
            match swept {
                Ok(n) if n >= SWEEP_BATCH => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e.detail, "sweep of unactivated registrations failed");
                    break;
                }
            }
        }
    }
}

/// The keyed hash an activation code is stored and looked up by: HMAC-SHA-256 of the code
/// (upper case) under a key derived from the endpoint's secret, which is never in the
/// database. A plain hash would not do: 31^10 codes can be hashed through in days.
pub(super) fn code_digest(inner: &Inner, code: &str) -> Result<[u8; 32], ApiError> {
    let key = crypto::derive_key(
        inner.cfg.keys.dup_secret.as_bytes(),
        &[b"apoyo-endpoint/v1.1/activation-code-key"],
    )?;
    Ok(crypto::hmac_sha256(
        key.as_bytes(),
        &[b"activation-code", code.to_ascii_uppercase().as_bytes()],
    )?)
}

/// A fresh code no other registration holds, and its [`code_digest`].
fn unused_code(conn: &dyn Db, inner: &Inner) -> Result<(String, [u8; 32]), ApiError> {
    // 31^10 ≈ 8·10^14 codes: a clash is rare enough that a few tries always suffice.
    for _ in 0..8 {
        let code = random_code()?;
        let digest = code_digest(inner, &code)?;
        if !conn.code_taken(&digest)? {
            return Ok((code, digest));
        }
    }
    Err(ApiError::internal(
        "could not draw an unused activation code",
    ))
}

/// [`limits::ACTIVATION_CODE_LEN`] characters of [`CODE_ALPHABET`] from the OS CSPRNG, without
/// modulo bias (bytes at or above the largest multiple of 31 are drawn again).
fn random_code() -> Result<String, ApiError> {
    let n = CODE_ALPHABET.len();
    let cutoff = 256 - 256 % n;
    let mut out = String::with_capacity(limits::ACTIVATION_CODE_LEN);
    let mut buf = [0u8; 32];
    while out.len() < limits::ACTIVATION_CODE_LEN {
        crypto::fill_random(&mut buf)?;
        for &b in buf.iter().filter(|&&b| usize::from(b) < cutoff) {
            if out.len() == limits::ACTIVATION_CODE_LEN {
                break;
            }
            out.push(char::from(CODE_ALPHABET[usize::from(b) % n]));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_use_the_alphabet_and_length() {
        for _ in 0..200 {
            let c = random_code().unwrap();
            assert_eq!(c.len(), limits::ACTIVATION_CODE_LEN);
            assert!(c.bytes().all(|b| CODE_ALPHABET.contains(&b)), "{c}");
        }
    }

    #[test]
    fn emails_are_checked_for_plausibility() {
        assert!(plausible_email("a@example.org"));
        for bad in [
            "",
            "a",
            "@example.org",
            "a@",
            "a@b@c",
            "a b@example.org",
            "a/b@example.org",
        ] {
            assert!(!plausible_email(bad), "{bad}");
        }
        assert!(!plausible_email(&format!(
            "{}@example.org",
            "a".repeat(250)
        )));
    }
}
