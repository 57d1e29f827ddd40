//! The rate limits: the window check shared by registrations and activations (count a
//! subject's recent events, refuse with `429 rate_limited` and a `Retry-After` when the window
//! is full), and the registration budget (issue 17): per email address and per device key
//! (codes mailed), per source address (and IPv6 /48), and for the whole endpoint, each per
//! window and configured in [`RegistrationLimits`]. The events live in the database (replicas share them),
//! and every subject is an HMAC under a key derived from the endpoint's secret: no address,
//! email or IP, is kept.

pub(super) mod source;

use std::net::IpAddr;

use apoyo_sync::wire::Reason;
use apoyo_sync::wire::crypto;

use crate::error::ApiError;
use crate::registration_limits::RegistrationLimits;
use crate::state::Inner;
use crate::store::{Db, EventLog};
use source::{site_key, source_key};

/// A rate limit: at most `max` events in the last `secs` seconds before `now`.
pub(super) struct Window {
    pub(super) now: i64,
    pub(super) secs: i64,
    pub(super) max: i64,
}

/// Refuses with `429 rate_limited` when the subject's events in `log` within the window reach
/// the window's `max`; `Retry-After` is the time until the oldest event leaves the window.
pub(super) fn refuse_when_over(
    tx: &dyn Db,
    log: EventLog,
    subject: &[u8],
    w: Window,
    detail: &'static str,
) -> Result<(), ApiError> {
    let (count, oldest): (i64, Option<i64>) = tx.recent_events(log, subject, w.now - w.secs)?;
    if count >= w.max {
        let wait = (oldest.unwrap_or(w.now) + w.secs - w.now).max(1);
        return Err(ApiError::new(Reason::RateLimited, detail).retry_after(wait as u64));
    }
    Ok(())
}

/// The one subject of the global registration log (32 bytes, like the HMAC subjects).
const GLOBAL_SUBJECT: &[u8; 32] = b"apoyo-endpoint/registrations/all";

/// What one registration is counted against: HMACs of its normalised address
/// ([`rate_limit_address`]), of its device key and of its source ([`source_key`]).
#[derive(Clone)]
pub(super) struct Subjects {
    email: [u8; 32],
    device: [u8; 32],
    source: [u8; 32],
    /// An IPv6 source's /48 ([`site_key`]); none for IPv4.
    site: Option<[u8; 32]>,
}

impl Subjects {
    pub(super) fn of(
        inner: &Inner,
        email: &str,
        device_public: &[u8],
        source: Option<IpAddr>,
    ) -> Result<Subjects, ApiError> {
        let key = inner.rate_key.as_bytes();
        let email = rate_limit_address(email);
        Ok(Subjects {
            email: crypto::hmac_sha256(key, &[b"email", email.as_bytes()])?,
            device: crypto::hmac_sha256(key, &[b"device", device_public])?,
            source: crypto::hmac_sha256(key, &[b"source", &source_key(source)])?,
            site: site_key(source)
                .map(|site| crypto::hmac_sha256(key, &[b"ipv6-site", &site]))
                .transpose()?,
        })
    }
}

/// Refuses when the registration's source or the whole endpoint used its budget.
fn check_source_and_global(
    tx: &dyn Db,
    limits: &RegistrationLimits,
    s: &Subjects,
    now: i64,
) -> Result<(), ApiError> {
    let secs = limits.window_secs();
    refuse_when_over(
        tx,
        EventLog::RegistrationSources,
        &s.source,
        Window {
            now,
            secs,
            max: i64::from(limits.per_source),
        },
        "too many registrations from this network address; retry later",
    )?;
    if let Some(site) = &s.site {
        refuse_when_over(
            tx,
            EventLog::RegistrationSources,
            site,
            Window {
                now,
                secs,
                max: i64::from(limits.per_ipv6_site),
            },
            "too many registrations from this network; retry later",
        )?;
    }
    refuse_when_over(
        tx,
        EventLog::RegistrationsGlobal,
        GLOBAL_SUBJECT,
        Window {
            now,
            secs,
            max: i64::from(limits.global),
        },
        "the endpoint takes no more registrations for now; retry later",
    )
}

/// Forgets events older than the window, then refuses when the address or the device key was
/// mailed its budget of codes, or the source or the endpoint used its budget. Cheap, so it runs
/// before the card front is decrypted as well as inside the recording transaction.
/// `Retry-After` is the time until the oldest counted event leaves the window.
pub(super) fn check_registration(
    tx: &dyn Db,
    limits: &RegistrationLimits,
    s: &Subjects,
    now: i64,
) -> Result<(), ApiError> {
    let secs = limits.window_secs();
    for log in [
        EventLog::RegistrationAttempts,
        EventLog::RegistrationSources,
        EventLog::RegistrationsGlobal,
    ] {
        tx.forget_events(log, now - secs)?;
    }
    for subject in [&s.email, &s.device] {
        refuse_when_over(
            tx,
            EventLog::RegistrationAttempts,
            subject,
            Window {
                now,
                secs,
                max: i64::from(limits.per_address),
            },
            "too many registrations for this email address or device key; retry later",
        )?;
    }
    check_source_and_global(tx, limits, s, now)
}

/// Counts a registration that mailed a code against each of its subjects.
pub(super) fn record_registration(tx: &dyn Db, s: &Subjects, now: i64) -> Result<(), ApiError> {
    tx.add_event(EventLog::RegistrationAttempts, &s.email, now)?;
    tx.add_event(EventLog::RegistrationAttempts, &s.device, now)?;
    record_source(tx, s, now)?;
    tx.add_event(EventLog::RegistrationsGlobal, GLOBAL_SUBJECT, now)?;
    Ok(())
}

/// Counts an event against the source (and an IPv6 source's /48).
fn record_source(tx: &dyn Db, s: &Subjects, now: i64) -> Result<(), ApiError> {
    tx.add_event(EventLog::RegistrationSources, &s.source, now)?;
    if let Some(site) = &s.site {
        tx.add_event(EventLog::RegistrationSources, site, now)?;
    }
    Ok(())
}

/// Counts a registration whose card front failed its check (a ≈2 MiB read and a decrypt spent)
/// against its source, so a source cannot make the endpoint decrypt without limit.
pub(super) fn record_refused_front(tx: &dyn Db, s: &Subjects, now: i64) -> Result<(), ApiError> {
    tx.begin()?;
    record_source(tx, s, now)?;
    tx.commit()?;
    Ok(())
}

/// The form of an address the registration limit counts. Everywhere: lower case, without a
/// `+tag` in the local part (subaddressing: `ana+1@x` and `ana@x` reach one mailbox at the
/// providers that matter here). Dots in the local part are dropped only at `gmail.com` and
/// `googlemail.com` (one domain for Gmail), where they are documented as insignificant; at any
/// other domain `ana.maria@` and `anamaria@` may be two people and count apart. Only the limit
/// uses this form: the code is mailed to the address as given.
pub(super) fn rate_limit_address(email: &str) -> String {
    let email = email.trim().to_lowercase();
    let Some((local, domain)) = email.rsplit_once('@') else {
        return email;
    };
    let local = local.split('+').next().unwrap_or_default();
    match domain {
        "gmail.com" | "googlemail.com" => format!("{}@gmail.com", local.replace('.', "")),
        d => format!("{local}@{d}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gmail_addresses_are_normalised_with_their_dots() {
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
    fn other_domains_keep_their_dots_and_lose_tags_and_case() {
        assert_eq!(
            rate_limit_address("Ana.Maria+apoyo@Example.ORG"),
            "ana.maria@example.org"
        );
        assert_ne!(
            rate_limit_address("ana.maria@example.org"),
            rate_limit_address("anamaria@example.org")
        );
        assert_eq!(
            rate_limit_address("ana+x@outlook.com"),
            rate_limit_address("ANA@outlook.com")
        );
    }
}
