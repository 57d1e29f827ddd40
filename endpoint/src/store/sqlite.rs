//! The embedded SQLite backend of the storage seam: the queries the handlers made before the
//! seam, unchanged, on the endpoint's one connection (held under the state's mutex for the
//! whole of a handler's work, so a write transaction is `BEGIN IMMEDIATE` and nothing races).
//! Registration, activation and rate-limit queries live in `registration`. An upload's creation
//! and offset commit run with `synchronous = NORMAL` (`begin_unflushed`, ADR 0021); the
//! connection is back at `FULL` for whatever follows, even after an error.

mod registration;

use std::collections::HashSet;

use rusqlite::{Connection, OptionalExtension, params};

use super::{
    BlobNames, CountRow, CountedRow, Db, EventLog, NewRegistration, NewUpload, R, StoredAnswer,
    SupportRow, TokenRow, UploadRow,
};

/// The connection, for one handler's work.
pub(crate) struct SqliteDb<'a>(pub &'a Connection);

impl SqliteDb<'_> {
    /// Rolls back a transaction the handler left open (it returned an error midway).
    pub(crate) fn finish(&self) {
        if self.0.is_autocommit() {
            return;
        }
        if let Err(e) = self.0.execute_batch("ROLLBACK") {
            tracing::error!(error = %e, "could not roll back an abandoned transaction");
        }
        // It may have been begun by `begin_unflushed`: nothing after it may run unflushed.
        self.flush_commits();
    }

    /// Back to `synchronous = FULL` (db.rs), outside a transaction.
    fn flush_commits(&self) {
        if let Err(e) = self.0.execute_batch("PRAGMA synchronous = FULL") {
            tracing::error!(error = %e, "could not restore synchronous = FULL");
        }
    }

    fn ids(&self, sql: &str) -> R<HashSet<String>> {
        let mut st = self.0.prepare(sql)?;
        let rows = st.query_map([], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<Result<HashSet<_>, _>>()?)
    }
}

impl Db for SqliteDb<'_> {
    fn begin(&self) -> R<()> {
        Ok(self.0.execute_batch("BEGIN IMMEDIATE")?)
    }

    fn commit(&self) -> R<()> {
        Ok(self.0.execute_batch("COMMIT")?)
    }

    fn ping(&self) -> R<()> {
        Ok(self.0.query_row("SELECT 1", [], |_| Ok(()))?)
    }

    fn token_device(&self, token_sha256: &[u8], now: i64) -> R<Option<TokenRow>> {
        Ok(self
            .0
            .query_row(
                "SELECT device_public, signing_public FROM tokens WHERE token_sha256 = ?1 AND expires_at > ?2",
                params![token_sha256, now],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    fn auxiliar_owner(&self, auxiliar_id: &str) -> R<Option<Vec<u8>>> {
        Ok(self
            .0
            .query_row(
                "SELECT device_public FROM auxiliar_bindings WHERE auxiliar_id = ?1",
                [auxiliar_id],
                |r| r.get(0),
            )
            .optional()?)
    }

    fn bind_auxiliar(&self, auxiliar_id: &str, device_public: &[u8], now: i64) -> R<bool> {
        Ok(self.0.execute(
            "INSERT INTO auxiliar_bindings (auxiliar_id, device_public, bound_at) VALUES (?1, ?2, ?3)
             ON CONFLICT DO NOTHING",
            params![auxiliar_id, device_public, now],
        )? == 1)
    }

    fn recent_events(&self, log: EventLog, subject: &[u8], since: i64) -> R<(i64, Option<i64>)> {
        registration::recent_events(self.0, log, subject, since)
    }

    fn forget_events(&self, log: EventLog, until: i64) -> R<()> {
        registration::forget_events(self.0, log, until)
    }

    fn add_event(&self, log: EventLog, subject: &[u8], at: i64) -> R<()> {
        registration::add_event(self.0, log, subject, at)
    }

    fn activation_code(&self, code_hmac: &[u8]) -> R<Option<(Vec<u8>, i64)>> {
        registration::activation_code(self.0, code_hmac)
    }

    fn mark_activated(&self, code_hmac: &[u8], now: i64) -> R<()> {
        registration::mark_activated(self.0, code_hmac, now)
    }

    fn use_nonce(&self, device_public: &[u8], nonce: &[u8], expires_at: i64, now: i64) -> R<bool> {
        registration::use_nonce(self.0, device_public, nonce, expires_at, now)
    }

    fn insert_token(
        &self,
        token_sha256: &[u8],
        device_public: &[u8],
        now: i64,
        expires_at: i64,
        signing_public: Option<&[u8]>,
    ) -> R<()> {
        registration::insert_token(
            self.0,
            token_sha256,
            device_public,
            now,
            expires_at,
            signing_public,
        )
    }

    fn registration_owner(&self, registration_id: &str) -> R<Option<Vec<u8>>> {
        registration::registration_owner(self.0, registration_id)
    }

    fn insert_registration(&self, r: &NewRegistration<'_>) -> R<()> {
        registration::insert_registration(self.0, r)
    }

    fn sweep_registrations(&self, before: i64, now: i64, limit: i64) -> R<u64> {
        registration::sweep_registrations(self.0, before, now, limit)
    }

    fn code_taken(&self, code_hmac: &[u8]) -> R<bool> {
        registration::code_taken(self.0, code_hmac)
    }

    fn insert_activation_code(
        &self,
        code_hmac: &[u8],
        device_public: &[u8],
        registration_id: &str,
        now: i64,
        expires_at: i64,
    ) -> R<()> {
        registration::insert_activation_code(
            self.0,
            code_hmac,
            device_public,
            registration_id,
            now,
            expires_at,
        )
    }

    fn put_dev_mailbox(&self, email: &str, code: &str, expires_at: i64) -> R<()> {
        registration::put_dev_mailbox(self.0, email, code, expires_at)
    }

    fn dev_mailbox(&self, email: &str) -> R<Option<(String, String, i64)>> {
        registration::dev_mailbox(self.0, email)
    }

    fn begin_unflushed(&self) -> R<()> {
        // The safety level may only change outside a transaction.
        self.0.execute_batch("PRAGMA synchronous = NORMAL")?;
        let begun = self.0.execute_batch("BEGIN IMMEDIATE");
        if begun.is_err() {
            self.flush_commits();
        }
        Ok(begun?)
    }

    fn commit_unflushed(&self) -> R<()> {
        let committed = self.0.execute_batch("COMMIT");
        // A failed COMMIT that left the transaction open is rolled back, and the level
        // restored, by `finish`.
        if self.0.is_autocommit() {
            self.flush_commits();
        }
        Ok(committed?)
    }

    fn upload(&self, id: &str) -> R<Option<UploadRow>> {
        Ok(self
            .0
            .query_row(
                "SELECT device_id, capture_id, kind, length, upload_offset, expires_at, digest_state, sha256
                 FROM uploads WHERE id = ?1",
                [id],
                |r| {
                    Ok(UploadRow {
                        device_id: r.get(0)?,
                        capture_id: r.get(1)?,
                        kind: r.get(2)?,
                        length: r.get(3)?,
                        offset: r.get(4)?,
                        expires_at: r.get(5)?,
                        digest_state: r.get(6)?,
                        sha256: r.get(7)?,
                    })
                },
            )
            .optional()?)
    }

    fn lock_upload(&self, _id: &str) -> R<()> {
        Ok(())
    }

    fn count_uploads(&self, device_id: &str) -> R<i64> {
        Ok(self.0.query_row(
            "SELECT count(*) FROM uploads WHERE device_id = ?1",
            [device_id],
            |r| r.get(0),
        )?)
    }

    fn insert_upload(&self, u: &NewUpload<'_>) -> R<()> {
        self.0.execute(
            "INSERT INTO uploads (id, device_id, capture_id, kind, length, upload_offset, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6, ?7)",
            params![u.id, u.device_id, u.capture_id, u.kind, u.length, u.now, u.expires_at],
        )?;
        Ok(())
    }

    fn expired_uploads(&self, before: i64, limit: i64) -> R<Vec<String>> {
        let mut st = self
            .0
            .prepare("SELECT id FROM uploads WHERE expires_at <= ?1 LIMIT ?2")?;
        let rows = st.query_map(params![before, limit], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn delete_upload(&self, id: &str) -> R<()> {
        self.0.execute("DELETE FROM uploads WHERE id = ?1", [id])?;
        Ok(())
    }

    fn advance_upload(
        &self,
        id: &str,
        offset: i64,
        digest_state: Option<&[u8]>,
        sha256: Option<&[u8; 32]>,
    ) -> R<()> {
        self.0.execute(
            "UPDATE uploads SET upload_offset = ?2, digest_state = ?3, sha256 = ?4 WHERE id = ?1",
            params![id, offset, digest_state, sha256.map(|d| &d[..])],
        )?;
        Ok(())
    }

    fn lock_capture(&self, _device_id: &str, _capture_id: &str) -> R<()> {
        Ok(())
    }

    fn stored_answer(&self, device_id: &str, capture_id: &str) -> R<Option<StoredAnswer>> {
        Ok(self
            .0
            .query_row(
                "SELECT digest, status, body FROM supports WHERE device_id = ?1 AND capture_id = ?2",
                [device_id, capture_id],
                |r| {
                    Ok(StoredAnswer {
                        digest: r.get(0)?,
                        status: r.get(1)?,
                        body: r.get(2)?,
                    })
                },
            )
            .optional()?)
    }

    fn counted_by_dup_key(&self, dup_key: &[u8]) -> R<Option<CountedRow>> {
        Ok(self
            .0
            .query_row(
                "SELECT capture_id, device_id, collector_kind, collector_id FROM supports
             WHERE dup_key = ?1 AND result = 'counted'",
                [dup_key],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?)
    }

    fn insert_support(&self, s: &SupportRow<'_>) -> R<()> {
        self.0.execute(
            "INSERT INTO supports (device_id, capture_id, process_id, result, reason, first_capture_id, dup_key,
                               collector_kind, collector_id, captured_time, counted_time, digest, status, body,
                               blob_dir, signed_commit, device_signature, sent_time, skew_seconds)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)",
            params![
                s.device_id,
                s.capture_id,
                s.process_id,
                s.result,
                s.reason,
                s.first_capture_id,
                s.dup_key,
                s.collector_kind,
                s.collector_id,
                s.captured_time,
                s.counted_time,
                s.digest,
                s.status,
                s.body,
                s.blob_dir,
                s.signed_commit,
                s.device_signature,
                s.sent_time,
                s.skew_seconds,
            ],
        )?;
        for (kind, length, sha256, upload) in &s.parts {
            self.0.execute(
                "INSERT INTO support_parts (device_id, capture_id, kind, length, sha256) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![s.device_id, s.capture_id, kind, length, sha256],
            )?;
            self.0
                .execute("DELETE FROM uploads WHERE id = ?1", [upload])?;
        }
        Ok(())
    }

    fn support_counts(&self) -> R<Vec<CountRow>> {
        let mut st = self.0.prepare(
            "SELECT process_id, result, coalesce(reason, ''), count(*) FROM supports GROUP BY 1, 2, 3",
        )?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn live_blob_names(&self) -> R<BlobNames> {
        Ok((
            self.ids("SELECT id FROM uploads")?,
            self.ids("SELECT blob_dir FROM supports")?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level(conn: &Connection) -> i64 {
        conn.query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap()
    }

    /// An unflushed transaction never leaves the connection unflushed: not after its commit,
    /// and not after a handler abandoned it midway (`finish` rolls it back).
    #[test]
    fn unflushed_transactions_leave_the_connection_at_full() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::db::open(&dir.path().join("e.db")).unwrap();
        const FULL: i64 = 2;
        assert_eq!(level(&conn), FULL);
        let db = SqliteDb(&conn);
        db.begin_unflushed().unwrap();
        assert_eq!(level(&conn), 1, "NORMAL inside");
        db.commit_unflushed().unwrap();
        assert_eq!(level(&conn), FULL);
        db.begin_unflushed().unwrap();
        db.finish();
        assert!(conn.is_autocommit());
        assert_eq!(level(&conn), FULL);
    }
}
