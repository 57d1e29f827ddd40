//! PostgreSQL queries of registration, activation and the rate limits (the `Db` methods of
//! `PgDb` delegate here): rate-limit event logs (under a transaction lock per subject, so
//! replicas counting one subject take turns), registrations and their sweep, activation codes
//! by keyed hash, nonces, tokens and the development mailbox.

use tokio_postgres::Error as PgError;

use super::super::{EventLog, NewRegistration, R, lock_key};
use super::PgDb;

pub(super) fn recent_events(
    db: &PgDb,
    log: EventLog,
    subject: &[u8],
    since: i64,
) -> R<(i64, Option<i64>)> {
    db.xact_lock(lock_key(log.table(), &[subject]))?;
    let sql = format!(
        "SELECT count(*), min(at) FROM {} WHERE {} = $1 AND at > $2",
        log.table(),
        log.subject_column()
    );
    let r = db.row(&sql, &[&subject, &since])?;
    Ok(r.map(|r| Ok::<_, PgError>((r.try_get(0)?, r.try_get(1)?)))
        .transpose()?
        .unwrap_or((0, None)))
}

pub(super) fn forget_events(db: &PgDb, log: EventLog, until: i64) -> R<()> {
    db.exec(
        &format!("DELETE FROM {} WHERE at <= $1", log.table()),
        &[&until],
    )?;
    Ok(())
}

pub(super) fn add_event(db: &PgDb, log: EventLog, subject: &[u8], at: i64) -> R<()> {
    let sql = format!(
        "INSERT INTO {} ({}, at) VALUES ($1, $2)",
        log.table(),
        log.subject_column()
    );
    db.exec(&sql, &[&subject, &at])?;
    Ok(())
}

pub(super) fn activation_code(db: &PgDb, code_hmac: &[u8]) -> R<Option<(Vec<u8>, i64)>> {
    Ok(db
        .row(
            "SELECT device_public, expires_at FROM activation_codes WHERE code_hmac = $1",
            &[&code_hmac],
        )?
        .map(|r| Ok::<_, PgError>((r.try_get(0)?, r.try_get(1)?)))
        .transpose()?)
}

pub(super) fn mark_activated(db: &PgDb, code_hmac: &[u8], now: i64) -> R<()> {
    db.exec(
        "UPDATE registrations SET activated_at = $2
         WHERE activated_at IS NULL
           AND registration_id = (SELECT registration_id FROM activation_codes WHERE code_hmac = $1)",
        &[&code_hmac, &now],
    )?;
    Ok(())
}

pub(super) fn use_nonce(
    db: &PgDb,
    device_public: &[u8],
    nonce: &[u8],
    expires_at: i64,
    now: i64,
) -> R<bool> {
    db.exec(
        "DELETE FROM activation_nonces WHERE expires_at <= $1",
        &[&now],
    )?;
    Ok(db.exec(
        "INSERT INTO activation_nonces (device_public, nonce, expires_at) VALUES ($1, $2, $3)
         ON CONFLICT DO NOTHING",
        &[&device_public, &nonce, &expires_at],
    )? == 1)
}

pub(super) fn insert_token(
    db: &PgDb,
    token_sha256: &[u8],
    device_public: &[u8],
    now: i64,
    expires_at: i64,
    signing_public: Option<&[u8]>,
) -> R<()> {
    db.exec(
        "INSERT INTO tokens (token_sha256, device_public, issued_at, expires_at, signing_public)
         VALUES ($1, $2, $3, $4, $5)",
        &[
            &token_sha256,
            &device_public,
            &now,
            &expires_at,
            &signing_public,
        ],
    )?;
    Ok(())
}

pub(super) fn registration_owner(db: &PgDb, registration_id: &str) -> R<Option<Vec<u8>>> {
    Ok(db
        .row(
            "SELECT device_public FROM registrations WHERE registration_id = $1",
            &[&registration_id],
        )?
        .map(|r| r.try_get(0))
        .transpose()?)
}

pub(super) fn insert_registration(db: &PgDb, r: &NewRegistration<'_>) -> R<()> {
    db.exec(
        "INSERT INTO devices (device_public, device_id, registered_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        &[&r.device_public, &r.device_id, &r.now],
    )?;
    // READ COMMITTED: a concurrent insert of the same id on another replica makes this one
    // wait for its commit and then do nothing; the caller's next read sees the winner's row.
    db.exec(
        "INSERT INTO registrations (registration_id, device_public, provider, front_sealed_key, front, registered_at)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (registration_id) DO NOTHING",
        &[&r.registration_id, &r.device_public, &r.provider, &r.front_sealed_key, &r.front, &r.now],
    )?;
    Ok(())
}

pub(super) fn sweep_registrations(db: &PgDb, before: i64, now: i64, limit: i64) -> R<u64> {
    let stale = db.rows(
        "SELECT registration_id, device_public FROM registrations r
         WHERE activated_at IS NULL AND registered_at <= $1
           AND NOT EXISTS (SELECT 1 FROM activation_codes c
                           WHERE c.registration_id = r.registration_id AND c.expires_at > $2)
         LIMIT $3",
        &[&before, &now, &limit],
    )?;
    let mut swept = 0;
    for row in &stale {
        let id: String = row.try_get(0)?;
        let device: Vec<u8> = row.try_get(1)?;
        db.exec(
            "DELETE FROM activation_codes WHERE registration_id = $1",
            &[&id],
        )?;
        swept += db.exec(
            "DELETE FROM registrations WHERE registration_id = $1 AND activated_at IS NULL",
            &[&id],
        )?;
        db.exec(
            "DELETE FROM devices d WHERE device_public = $1
               AND NOT EXISTS (SELECT 1 FROM registrations x WHERE x.device_public = d.device_public)
               AND NOT EXISTS (SELECT 1 FROM activation_codes x WHERE x.device_public = d.device_public)
               AND NOT EXISTS (SELECT 1 FROM tokens x WHERE x.device_public = d.device_public)
               AND NOT EXISTS (SELECT 1 FROM auxiliar_bindings x WHERE x.device_public = d.device_public)",
            &[&device],
        )?;
    }
    Ok(swept)
}

pub(super) fn code_taken(db: &PgDb, code_hmac: &[u8]) -> R<bool> {
    Ok(db
        .row(
            "SELECT EXISTS (SELECT 1 FROM activation_codes WHERE code_hmac = $1)",
            &[&code_hmac],
        )?
        .map(|r| r.try_get::<_, bool>(0))
        .transpose()?
        .unwrap_or(false))
}

pub(super) fn insert_activation_code(
    db: &PgDb,
    code_hmac: &[u8],
    device_public: &[u8],
    registration_id: &str,
    now: i64,
    expires_at: i64,
) -> R<()> {
    db.exec(
        "INSERT INTO activation_codes (code_hmac, device_public, registration_id, issued_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
        &[&code_hmac, &device_public, &registration_id, &now, &expires_at],
    )?;
    Ok(())
}

pub(super) fn put_dev_mailbox(db: &PgDb, email: &str, code: &str, expires_at: i64) -> R<()> {
    db.exec(
        "INSERT INTO dev_mailbox (email, code, expires_at) VALUES ($1, $2, $3)
         ON CONFLICT (email) DO UPDATE SET code = excluded.code, expires_at = excluded.expires_at",
        &[&email, &code, &expires_at],
    )?;
    Ok(())
}

pub(super) fn dev_mailbox(db: &PgDb, email: &str) -> R<Option<(String, String, i64)>> {
    Ok(db
        .row(
            "SELECT email, code, expires_at FROM dev_mailbox WHERE email = $1",
            &[&email],
        )?
        .map(|r| Ok::<_, PgError>((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
        .transpose()?)
}
