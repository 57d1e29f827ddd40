//! `POST /v1/devices` ("Registro ciudadano"): check the sealed card front, record the device
//! and its registration, and mail an activation code (rate limited per address and per device
//! key). Activation with that code is in [`super::activation`].

use std::io::Write;

use apoyo_sync::wire::crypto::device_id_of;
use apoyo_sync::wire::crypto::open_from_device;
use apoyo_sync::wire::crypto::{self, PartOpener};
use apoyo_sync::wire::{
    self as protocol, Provider, Reason, RegisterRequest, RegisterResponse, limits,
};
use apoyo_sync::{PartKind, wire::validate};
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;

use super::rate_limit::{Window, refuse_when_over};
use crate::error::ApiError;
use crate::http::{cbor_msg, check_version, from_unix, read_message, unix};
use crate::state::{AppState, Inner};
use crate::store::{Db, EventLog, NewRegistration};

/// An activation code is valid for 24 hours from its issue (DOMAIN.md, Mi Apoyo flow step 3).
const CODE_VALIDITY_SECS: i64 = 24 * 60 * 60;
/// Code characters: no 0/O, 1/I/L, so a code read from an email and typed is not misread.
const CODE_ALPHABET: &[u8] = b"23456789ABCDEFGHJKMNPQRSTUVWXYZ";
/// Registrations that mail a code, per email address and per device key, within
/// [`REGISTRATION_WINDOW_SECS`] before 429: enough for a citizen who lost the email or mistyped
/// the address a few times, too few to flood someone's inbox through this endpoint.
const MAX_REGISTRATIONS: i64 = 5;
/// The registration rate-limit window: one hour.
const REGISTRATION_WINDOW_SECS: i64 = 60 * 60;
/// Longest email address (RFC 5321 path limit).
const MAX_EMAIL_BYTES: usize = 254;

pub(crate) async fn register(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let req: RegisterRequest = read_message(
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
    let req = st
        .blocking(move |inner| {
            check_front(inner, &req)?;
            Ok(req)
        })
        .await?;
    let resp = st
        .db(move |conn, inner| record_registration(conn, inner, &req))
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
) -> Result<RegisterResponse, ApiError> {
    let now = unix(inner.now());
    let expires_at = now + CODE_VALIDITY_SECS;
    let reg_id = req.registration_id.to_string();
    conn.begin()?;
    let tx = conn;
    let subjects = registration_subjects(inner, req)?;
    check_registration_rate(tx, &subjects, now)?;
    let owner: Option<Vec<u8>> = tx.registration_owner(&reg_id)?;
    if owner.is_some_and(|p| p != req.device_public) {
        return Err(ApiError::new(
            Reason::IdempotencyConflict,
            "this registration id was used by another device key",
        ));
    }
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
    let code = unused_code(tx)?;
    tx.insert_activation_code(&code, &req.device_public[..], &reg_id, now, expires_at)?;
    for subject in &subjects {
        tx.add_event(EventLog::RegistrationAttempts, &subject[..], now)?;
    }
    // "Send it by email": the development mailbox keeps the latest code per address (lower-cased;
    // the rate limit counts a normalised form, `rate_limit_address`). Only in
    // development mode: otherwise the address and the code would sit in the clear, unread.
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

/// The rate limit's subjects of a registration: its email address ([`rate_limit_address`]) and
/// its device key, each as an HMAC so the table holds no address.
fn registration_subjects(inner: &Inner, req: &RegisterRequest) -> Result<[[u8; 32]; 2], ApiError> {
    let email = rate_limit_address(&req.email);
    Ok([
        crypto::hmac_sha256(inner.rate_key.as_bytes(), &[b"email", email.as_bytes()])?,
        crypto::hmac_sha256(
            inner.rate_key.as_bytes(),
            &[b"device", &req.device_public[..]],
        )?,
    ])
}

/// The form of an address the registration limit counts: lower case, without a `+tag` and
/// without dots in the local part, `googlemail.com` as `gmail.com`. Mail providers deliver
/// `Ana.Maria+1@gmail.com` and `anamaria@gmail.com` to one mailbox, so they share one budget
/// (merging two real mailboxes that differ only by dots costs them a shared budget, nothing
/// else). Only the limit uses it: the code is mailed to the address as given.
fn rate_limit_address(email: &str) -> String {
    let email = email.trim().to_lowercase();
    let Some((local, domain)) = email.rsplit_once('@') else {
        return email;
    };
    let local = local.split('+').next().unwrap_or_default().replace('.', "");
    let domain = match domain {
        "googlemail.com" => "gmail.com",
        d => d,
    };
    format!("{local}@{domain}")
}

/// Refuses with `429 rate_limited` when either subject mailed [`MAX_REGISTRATIONS`] codes in
/// the last [`REGISTRATION_WINDOW_SECS`]; `Retry-After` is the time until its oldest one leaves
/// the window. Entries older than the window are forgotten here.
fn check_registration_rate(tx: &dyn Db, subjects: &[[u8; 32]], now: i64) -> Result<(), ApiError> {
    let window_start = now - REGISTRATION_WINDOW_SECS;
    tx.forget_events(EventLog::RegistrationAttempts, window_start)?;
    for subject in subjects {
        refuse_when_over(
            tx,
            EventLog::RegistrationAttempts,
            subject,
            Window {
                now,
                secs: REGISTRATION_WINDOW_SECS,
                max: MAX_REGISTRATIONS,
            },
            "too many registrations for this email address or device key in the last hour",
        )?;
    }
    Ok(())
}

/// A fresh code no other registration holds.
fn unused_code(conn: &dyn Db) -> Result<String, ApiError> {
    // 31^10 ≈ 8·10^14 codes: a clash is rare enough that a few tries always suffice.
    for _ in 0..8 {
        let code = random_code()?;
        let taken: bool = conn.code_taken(&code)?;
        if !taken {
            return Ok(code);
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
    fn addresses_are_normalised_for_the_limit() {
        for variant in [
            "anamaria@gmail.com",
            "Ana.Maria@gmail.com",
            "ana.maria+apoyo@GMAIL.com",
            "a.n.a.m.a.r.i.a+1+2@googlemail.com",
        ] {
            assert_eq!(
                rate_limit_address(variant),
                "anamaria@gmail.com",
                "{variant}"
            );
        }
        assert_ne!(
            rate_limit_address("anamaria@example.org"),
            rate_limit_address("anamaria@gmail.com")
        );
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
