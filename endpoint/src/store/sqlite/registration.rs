//! SQLite queries of registration, activation and the rate limits (the `Db` methods of
//! `SqliteDb` delegate here): rate-limit event logs, registrations and their sweep, activation
//! codes by keyed hash, nonces, tokens and the development mailbox.

use rusqlite::{Connection, OptionalExtension, params};

use super::super::{EventLog, NewRegistration, R};

pub(super) fn recent_events(
    c: &Connection,
    log: EventLog,
    subject: &[u8],
    since: i64,
) -> R<(i64, Option<i64>)> {
    let sql = format!(
        "SELECT count(*), min(at) FROM {} WHERE {} = ?1 AND at > ?2",
        log.table(),
        log.subject_column()
    );
    Ok(c.query_row(&sql, params![subject, since], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })?)
}

pub(super) fn forget_events(c: &Connection, log: EventLog, until: i64) -> R<()> {
    let sql = format!("DELETE FROM {} WHERE at <= ?1", log.table());
    c.execute(&sql, [until])?;
    Ok(())
}

pub(super) fn add_event(c: &Connection, log: EventLog, subject: &[u8], at: i64) -> R<()> {
    let sql = format!(
        "INSERT INTO {} ({}, at) VALUES (?1, ?2)",
        log.table(),
        log.subject_column()
    );
    c.execute(&sql, params![subject, at])?;
    Ok(())
}

pub(super) fn activation_code(c: &Connection, code_hmac: &[u8]) -> R<Option<(Vec<u8>, i64)>> {
    Ok(c.query_row(
        "SELECT device_public, expires_at FROM activation_codes WHERE code_hmac = ?1",
        [code_hmac],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()?)
}

pub(super) fn mark_activated(c: &Connection, code_hmac: &[u8], now: i64) -> R<()> {
    c.execute(
        "UPDATE registrations SET activated_at = ?2
         WHERE activated_at IS NULL
           AND registration_id = (SELECT registration_id FROM activation_codes WHERE code_hmac = ?1)",
        params![code_hmac, now],
    )?;
    Ok(())
}

pub(super) fn use_nonce(
    c: &Connection,
    device_public: &[u8],
    nonce: &[u8],
    expires_at: i64,
    now: i64,
) -> R<bool> {
    c.execute(
        "DELETE FROM activation_nonces WHERE expires_at <= ?1",
        [now],
    )?;
    Ok(c.execute(
        "INSERT INTO activation_nonces (device_public, nonce, expires_at) VALUES (?1, ?2, ?3)
         ON CONFLICT DO NOTHING",
        params![device_public, nonce, expires_at],
    )? == 1)
}

pub(super) fn insert_token(
    c: &Connection,
    token_sha256: &[u8],
    device_public: &[u8],
    now: i64,
    expires_at: i64,
    signing_public: Option<&[u8]>,
) -> R<()> {
    c.execute(
        "INSERT INTO tokens (token_sha256, device_public, issued_at, expires_at, signing_public)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![token_sha256, device_public, now, expires_at, signing_public],
    )?;
    Ok(())
}

pub(super) fn registration_owner(c: &Connection, registration_id: &str) -> R<Option<Vec<u8>>> {
    Ok(c.query_row(
        "SELECT device_public FROM registrations WHERE registration_id = ?1",
        [registration_id],
        |r| r.get(0),
    )
    .optional()?)
}

pub(super) fn insert_registration(c: &Connection, r: &NewRegistration<'_>) -> R<()> {
    c.execute(
        "INSERT INTO devices (device_public, device_id, registered_at) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
        params![r.device_public, r.device_id, r.now],
    )?;
    c.execute(
        "INSERT INTO registrations (registration_id, device_public, provider, front_sealed_key, front, registered_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (registration_id) DO NOTHING",
        params![r.registration_id, r.device_public, r.provider, r.front_sealed_key, r.front, r.now],
    )?;
    Ok(())
}

pub(super) fn sweep_registrations(c: &Connection, before: i64, now: i64, limit: i64) -> R<u64> {
    let mut st = c.prepare(
        "SELECT registration_id, device_public FROM registrations r
         WHERE activated_at IS NULL AND registered_at <= ?1
           AND NOT EXISTS (SELECT 1 FROM activation_codes x
                           WHERE x.registration_id = r.registration_id AND x.expires_at > ?2)
         LIMIT ?3",
    )?;
    let stale = st
        .query_map(params![before, now, limit], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut swept = 0;
    for (id, device) in &stale {
        c.execute(
            "DELETE FROM activation_codes WHERE registration_id = ?1",
            [id],
        )?;
        swept += c.execute(
            "DELETE FROM registrations WHERE registration_id = ?1 AND activated_at IS NULL",
            [id],
        )? as u64;
        c.execute(
            "DELETE FROM devices WHERE device_public = ?1
               AND NOT EXISTS (SELECT 1 FROM registrations x WHERE x.device_public = ?1)
               AND NOT EXISTS (SELECT 1 FROM activation_codes x WHERE x.device_public = ?1)
               AND NOT EXISTS (SELECT 1 FROM tokens x WHERE x.device_public = ?1)
               AND NOT EXISTS (SELECT 1 FROM auxiliar_bindings x WHERE x.device_public = ?1)",
            [device],
        )?;
    }
    Ok(swept)
}

pub(super) fn code_taken(c: &Connection, code_hmac: &[u8]) -> R<bool> {
    Ok(c.query_row(
        "SELECT EXISTS (SELECT 1 FROM activation_codes WHERE code_hmac = ?1)",
        [code_hmac],
        |r| r.get(0),
    )?)
}

pub(super) fn insert_activation_code(
    c: &Connection,
    code_hmac: &[u8],
    device_public: &[u8],
    registration_id: &str,
    now: i64,
    expires_at: i64,
) -> R<()> {
    c.execute(
        "INSERT INTO activation_codes (code_hmac, device_public, registration_id, issued_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![code_hmac, device_public, registration_id, now, expires_at],
    )?;
    Ok(())
}

pub(super) fn put_dev_mailbox(c: &Connection, email: &str, code: &str, expires_at: i64) -> R<()> {
    c.execute(
        "INSERT INTO dev_mailbox (email, code, expires_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (email) DO UPDATE SET code = excluded.code, expires_at = excluded.expires_at",
        params![email, code, expires_at],
    )?;
    Ok(())
}

pub(super) fn dev_mailbox(c: &Connection, email: &str) -> R<Option<(String, String, i64)>> {
    Ok(c.query_row(
        "SELECT email, code, expires_at FROM dev_mailbox WHERE email = ?1",
        [email],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
    .optional()?)
}
