//! The persisted sync state: endpoint registration and activation, per-part upload progress,
//! the retry schedule and receipts. Every change is one SQLite transaction, so the app can be
//! killed at any point and the next run resumes from what is recorded here.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::Store;
use crate::crypto::{SecretKey, wrap};
use crate::error::{Error, Result};
use crate::model::{CaptureId, PartKind};
use crate::protocol::{Reason, Receipt, ReceiptResult};

/// The device's activation with the endpoint. `Debug` redacts the token, which is wiped on drop.
#[derive(Clone)]
#[cfg_attr(not(feature = "testkit"), allow(dead_code))]
pub struct Activation {
    pub url: String,
    pub token: String,
    pub expires_at: OffsetDateTime,
    pub receipt_public: [u8; 32],
    pub receipt_key_id: String,
}

impl std::fmt::Debug for Activation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Activation")
            .field("url", &self.url)
            .field("token", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .field("receipt_key_id", &self.receipt_key_id)
            .finish_non_exhaustive()
    }
}

impl Drop for Activation {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.token);
    }
}

/// A kept receipt (listed by `apoyo receipts`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReceiptInfo {
    pub capture_id: CaptureId,
    pub result: ReceiptResult,
    pub counted_at: String,
    pub first_capture_id: Option<String>,
    /// Whether the endpoint's signature verified when the receipt arrived (re-checked on list).
    pub verified: bool,
}

fn rfc3339(t: OffsetDateTime) -> Result<String> {
    t.format(&Rfc3339)
        .map_err(|e| Error::Internal(e.to_string()))
}

fn unix_ms(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

impl Store {
    /// Records the endpoint URL (kept across registrations).
    pub fn set_endpoint_url(&mut self, url: &str) -> Result<()> {
        let now = self.now_text()?;
        self.conn().execute(
            "INSERT INTO endpoint (singleton, url, updated_at) VALUES (1, ?1, ?2)
             ON CONFLICT (singleton) DO UPDATE SET url = excluded.url, updated_at = excluded.updated_at",
            params![url, now],
        )?;
        Ok(())
    }

    /// The endpoint URL, if one was set.
    pub fn endpoint_url(&self) -> Result<Option<String>> {
        Ok(self
            .conn()
            .query_row("SELECT url FROM endpoint WHERE singleton = 1", [], |r| {
                r.get(0)
            })
            .optional()?)
    }

    /// Records a registration.
    pub fn set_registration(&mut self, registration_id: &CaptureId) -> Result<()> {
        let now = self.now_text()?;
        let n = self.conn().execute(
            "UPDATE endpoint SET registration_id = ?1, registered_at = ?2, updated_at = ?2 WHERE singleton = 1",
            params![registration_id.to_string(), now],
        )?;
        if n == 0 {
            return Err(Error::NotRegistered);
        }
        Ok(())
    }

    /// Whether the device registered.
    pub fn registration_id(&self) -> Result<Option<String>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT registration_id FROM endpoint WHERE singleton = 1",
                [],
                |r| r.get::<_, Option<String>>(0),
            )
            .optional()?
            .flatten())
    }

    /// Records an activation (the token is wrapped under the master key).
    pub fn set_activation(
        &mut self,
        token: &str,
        expires_at: OffsetDateTime,
        receipt_public: &[u8; 32],
        key_id: &str,
    ) -> Result<()> {
        let token_bytes =
            hex::decode(token).map_err(|_| Error::Decode("activation token is not hex".into()))?;
        let token_key = SecretKey::from_slice(&token_bytes)
            .map_err(|_| Error::Decode("activation token must be 32 bytes".into()))?;
        let wrapped = wrap::wrap(self.master(), "token", self.store_id(), &token_key)?;
        let now = self.now_text()?;
        let n = self.conn().execute(
            "UPDATE endpoint SET token_wrapped = ?1, token_expires_at = ?2, receipt_public = ?3, receipt_key_id = ?4,
                                 updated_at = ?5 WHERE singleton = 1",
            params![wrapped, rfc3339(expires_at)?, &receipt_public[..], key_id, now],
        )?;
        if n == 0 {
            return Err(Error::NotRegistered);
        }
        Ok(())
    }

    /// The current activation, if any (expired or not: the caller checks `expires_at`).
    pub fn activation(&self) -> Result<Option<Activation>> {
        type Row = (
            String,
            Option<Vec<u8>>,
            Option<String>,
            Option<Vec<u8>>,
            Option<String>,
        );
        let row: Option<Row> = self
            .conn()
            .query_row(
                "SELECT url, token_wrapped, token_expires_at, receipt_public, receipt_key_id FROM endpoint WHERE singleton = 1",
                [],
                |r| r.try_into(),
            )
            .optional()?;
        let Some((url, Some(tw), Some(exp), Some(rp), Some(kid))) = row else {
            return Ok(None);
        };
        let token = wrap::unwrap(
            self.master(),
            "token",
            self.store_id(),
            &tw,
            "activation token",
        )?;
        Ok(Some(Activation {
            url,
            token: hex::encode(token.as_bytes()),
            expires_at: OffsetDateTime::parse(&exp, &Rfc3339)
                .map_err(|_| Error::integrity("token expiry"))?,
            receipt_public: rp.try_into().map_err(|_| Error::integrity("receipt key"))?,
            receipt_key_id: kid,
        }))
    }

    /// Captures that a sync run should work on now, oldest first.
    pub fn due_captures(&self, now: OffsetDateTime) -> Result<Vec<CaptureId>> {
        let mut st = self.conn().prepare(
            "SELECT id FROM captures WHERE state IN ('captured', 'uploading')
               AND (next_attempt_at IS NULL OR next_attempt_at <= ?1) ORDER BY id",
        )?;
        let rows = st.query_map([unix_ms(now)], |r| r.get::<_, String>(0))?;
        rows.map(|r| r.map_err(Error::from).and_then(|s| s.parse()))
            .collect()
    }

    /// When the next not-yet-due capture becomes due, if any is waiting.
    pub fn next_due_at(&self) -> Result<Option<OffsetDateTime>> {
        // One index seek per waiting state (`captures_by_state` orders NULL, "as soon as
        // possible", first), whatever the queue holds.
        let mut ms: Option<i64> = None;
        for state in ["captured", "uploading"] {
            let first: Option<Option<i64>> = self
                .conn()
                .prepare_cached(
                    "SELECT next_attempt_at FROM captures WHERE state = ?1 ORDER BY next_attempt_at LIMIT 1",
                )?
                .query_row([state], |r| r.get(0))
                .optional()?;
            if let Some(at) = first {
                let at = at.unwrap_or(0);
                ms = Some(ms.map_or(at, |m| m.min(at)));
            }
        }
        Ok(ms.and_then(|ms| {
            OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
        }))
    }

    /// Captures not yet acknowledged (captured or uploading).
    pub fn pending_count(&self) -> Result<u64> {
        let n: i64 = self.conn().query_row(
            "SELECT count(*) FROM captures WHERE state IN ('captured', 'uploading')",
            [],
            |r| r.get(0),
        )?;
        Ok(n as u64)
    }

    /// Records a created tus upload for a part (and moves the capture to `uploading`).
    pub fn set_upload(
        &mut self,
        id: &CaptureId,
        kind: PartKind,
        url: &str,
        expires: Option<&str>,
    ) -> Result<()> {
        let now = self.now_text()?;
        // Unflushed (ADR 0013, amendment): lost to a power loss, the upload is created again;
        // the next flushed commit (any state change) flushes it too.
        super::db::with_unflushed_commit(self.conn_mut(), |conn| {
            let tx = conn.transaction()?;
            tx.execute(
                "UPDATE parts SET upload_url = ?3, upload_expires = ?4, uploaded_bytes = 0 WHERE capture_id = ?1 AND kind = ?2",
                params![id.to_string(), kind.name(), url, expires],
            )?;
            tx.execute(
                "UPDATE captures SET state = 'uploading', updated_at = ?2 WHERE id = ?1 AND state = 'captured'",
                params![id.to_string(), now],
            )?;
            tx.commit()?;
            Ok(())
        })
    }

    /// Records the offset the server acknowledged for a part. Unflushed (ADR 0013,
    /// amendment): the endpoint's offset is the truth (a known upload is asked where it
    /// stands before the next PATCH), so an offset lost to a power loss costs one question.
    pub fn set_uploaded(&mut self, id: &CaptureId, kind: PartKind, offset: u64) -> Result<()> {
        super::db::with_unflushed_commit(self.conn_mut(), |conn| {
            conn.execute(
                "UPDATE parts SET uploaded_bytes = ?3 WHERE capture_id = ?1 AND kind = ?2",
                params![id.to_string(), kind.name(), offset as i64],
            )?;
            Ok(())
        })
    }

    /// Forgets a part's upload (expired or lost on the server): it will be uploaded again.
    pub fn reset_upload(&mut self, id: &CaptureId, kind: PartKind) -> Result<()> {
        self.conn().execute(
            "UPDATE parts SET upload_url = NULL, upload_expires = NULL, uploaded_bytes = 0 WHERE capture_id = ?1 AND kind = ?2",
            params![id.to_string(), kind.name()],
        )?;
        Ok(())
    }

    /// Records a transient failure: one more attempt, the next one not before `next_at`.
    pub fn record_transient(
        &mut self,
        id: &CaptureId,
        next_at: OffsetDateTime,
        error: &str,
    ) -> Result<u32> {
        let now = self.now_text()?;
        let attempts: i64 = self.conn().query_row(
            "UPDATE captures SET attempts = attempts + 1, next_attempt_at = ?2, last_error = ?3, updated_at = ?4
             WHERE id = ?1 RETURNING attempts",
            params![id.to_string(), unix_ms(next_at), error, now],
            |r| r.get(0),
        )?;
        Ok(attempts.max(0) as u32)
    }

    /// Starts a capture's backoff over (its link is slow, not failing).
    pub fn reset_attempts(&mut self, id: &CaptureId) -> Result<()> {
        self.conn().execute(
            "UPDATE captures SET attempts = 0 WHERE id = ?1",
            [id.to_string()],
        )?;
        Ok(())
    }

    /// The number of failed attempts so far.
    pub fn attempts(&self, id: &CaptureId) -> Result<u32> {
        Ok(self.info(id)?.attempts)
    }

    /// Quarantines a capture with the endpoint's reason. Its bytes and keys are kept.
    pub fn quarantine(&mut self, id: &CaptureId, reason: &str) -> Result<()> {
        let now = self.now_text()?;
        self.conn().execute(
            "UPDATE captures SET state = 'quarantined', reason = ?2, next_attempt_at = NULL, updated_at = ?3
             WHERE id = ?1 AND state IN ('captured', 'uploading')",
            params![id.to_string(), reason, now],
        )?;
        Ok(())
    }

    /// Puts a quarantined capture back in the queue (the user asked to retry it).
    ///
    /// Its upload state is reset, except after a rejection the endpoint stores and replays
    /// ([`Reason::verdict_is_stored`], protocol §6.5): the endpoint consumed the five uploads
    /// into the support and answers a replay before it looks at uploads, so uploading the parts
    /// again would only spend the device's upload allowance. The parts then keep their
    /// (consumed) upload paths as complete, with no expiry, and the next attempt sends the
    /// commit before any upload. Only an `upload_missing` answer (the endpoint holds no stored
    /// verdict) resets them and leads to uploading.
    pub fn retry_quarantined(&mut self, id: &CaptureId) -> Result<()> {
        let now = self.now_text()?;
        let tx = self.conn_mut().transaction()?;
        let reason: Option<Option<String>> = tx
            .query_row(
                "SELECT reason FROM captures WHERE id = ?1 AND state = 'quarantined'",
                [id.to_string()],
                |r| r.get(0),
            )
            .optional()?;
        let Some(reason) = reason else {
            return Err(Error::UnknownCapture(id.to_string()));
        };
        check_not_duplicated(&tx, id)?;
        tx.execute(
            "UPDATE captures SET state = 'captured', reason = NULL, attempts = 0, next_attempt_at = NULL, updated_at = ?2
             WHERE id = ?1",
            params![id.to_string(), now],
        )?;
        let stored = reason
            .as_deref()
            .and_then(Reason::from_code)
            .is_some_and(Reason::verdict_is_stored);
        let complete: i64 = tx.query_row(
            "SELECT count(*) FROM parts WHERE capture_id = ?1 AND upload_url IS NOT NULL AND uploaded_bytes = ct_len",
            [id.to_string()],
            |r| r.get(0),
        )?;
        if stored && complete == PartKind::ALL.len() as i64 {
            tx.execute(
                "UPDATE parts SET upload_expires = NULL WHERE capture_id = ?1",
                [id.to_string()],
            )?;
        } else {
            tx.execute(
                "UPDATE parts SET upload_url = NULL, upload_expires = NULL, uploaded_bytes = 0 WHERE capture_id = ?1",
                [id.to_string()],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Records a verified receipt and marks the capture committed, in one transaction
    /// (protocol v1; the sync engine records v1.1 receipts with `record_receipt_v11`).
    #[cfg(any(test, feature = "testkit"))]
    pub fn record_receipt(
        &mut self,
        receipt: &Receipt,
        receipt_cbor: &[u8],
        signature: &[u8],
    ) -> Result<()> {
        self.record_receipt_with_cert(receipt, receipt_cbor, signature, None)
    }

    /// [`Store::record_receipt`] with the receipt key's certificate (v1.1), all in one
    /// transaction, so a crash never leaves a committed capture whose receipt lacks its cert.
    pub(crate) fn record_receipt_with_cert(
        &mut self,
        receipt: &Receipt,
        receipt_cbor: &[u8],
        signature: &[u8],
        key_cert: Option<Vec<u8>>,
    ) -> Result<()> {
        let now = self.now_text()?;
        let id = receipt.capture_id.to_string();
        let result = match receipt.result {
            ReceiptResult::Counted => "counted",
            ReceiptResult::Duplicate => "duplicate",
        };
        let tx = self.conn_mut().transaction()?;
        tx.execute(
            "INSERT INTO receipts (capture_id, result, counted_at, first_capture_id, receipt, signature, verified, received_at, key_cert)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, ?7, ?8)
             ON CONFLICT (capture_id) DO NOTHING",
            params![
                id,
                result,
                rfc3339(receipt.counted_at)?,
                receipt.first_capture_id.map(|c| c.to_string()),
                receipt_cbor,
                signature,
                now,
                key_cert
            ],
        )?;
        tx.execute(
            "UPDATE captures SET state = 'committed', reason = NULL, next_attempt_at = NULL, updated_at = ?2
             WHERE id = ?1 AND state IN ('captured', 'uploading')",
            params![id, now],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Crypto-shreds every committed capture (normally done right after each receipt).
    pub fn purge_committed(&mut self) -> Result<u64> {
        let ids: Vec<String> = {
            let mut st = self
                .conn()
                .prepare("SELECT id FROM captures WHERE state = 'committed'")?;
            st.query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?
        };
        for id in &ids {
            self.purge(&id.parse()?)?;
        }
        Ok(ids.len() as u64)
    }

    /// The kept receipts, each re-verified: against the INE root through its key certificate
    /// (v1.1), or a receipt kept before v1.1 against the receipt key of that activation.
    pub fn receipts(&self) -> Result<Vec<ReceiptInfo>> {
        let key: Option<Vec<u8>> = self
            .conn()
            .query_row(
                "SELECT receipt_public FROM endpoint WHERE singleton = 1",
                [],
                |r| r.get(0),
            )
            .optional()?
            .flatten();
        let key: Option<[u8; 32]> = key.and_then(|k| k.try_into().ok());
        let mut st = self.conn().prepare(
            "SELECT capture_id, result, counted_at, first_capture_id, receipt, signature, key_cert FROM receipts ORDER BY capture_id",
        )?;
        type Row = (
            String,
            String,
            String,
            Option<String>,
            Vec<u8>,
            Vec<u8>,
            Option<Vec<u8>>,
        );
        let rows = st.query_map([], |r| r.try_into())?;
        let mut out = Vec::new();
        for row in rows {
            let (id, result, counted_at, first, rc, sig, cert): Row = row?;
            let verified = self.kept_receipt_verifies(&rc, &sig, cert.as_deref(), key.as_ref())?;
            out.push(ReceiptInfo {
                capture_id: id.parse()?,
                result: if result == "duplicate" {
                    ReceiptResult::Duplicate
                } else {
                    ReceiptResult::Counted
                },
                counted_at,
                first_capture_id: first,
                verified,
            });
        }
        Ok(out)
    }
}

/// A quarantined capture is outside the duplicate rule, so the same citizen may have been
/// captured again since: retrying it then would queue a second support. Refused as
/// [`Error::Duplicate`] naming the other capture (quarantined ones aside, as at capture).
fn check_not_duplicated(tx: &rusqlite::Transaction<'_>, id: &CaptureId) -> Result<()> {
    let other: Option<(String, String)> = tx
        .query_row(
            "SELECT o.process_id, o.id FROM captures c JOIN captures o
               ON o.dup_key = c.dup_key AND o.id <> c.id AND o.state <> 'quarantined'
             WHERE c.id = ?1 AND c.dup_key <> zeroblob(32)
             ORDER BY o.id LIMIT 1",
            [id.to_string()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    match other {
        Some((process, earlier)) => Err(Error::Duplicate { process, earlier }),
        None => Ok(()),
    }
}
