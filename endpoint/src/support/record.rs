//! Step 7 of deciding a commit: the parts' ciphertext moves from upload storage into the
//! support's folder, and the decision is recorded with its exact answer — the support's row (with the
//! device-signed commit and its signature, v1.1), its parts, and the removal of the uploads it
//! consumed, in one SQLite commit.

use apoyo_sync::Collector;
use apoyo_sync::PartKind;
use rusqlite::{Transaction, params};

use super::{Answer, Decided, Decision};
use crate::error::ApiError;
use crate::http::rfc3339;
use crate::state::Inner;

/// Links the held uploads' bytes as the support's parts, records the decision (removing the
/// support folder again if the record fails), then removes the consumed uploads' files.
pub(super) fn keep(
    tx: Transaction<'_>,
    inner: &Inner,
    d: &Decided<'_>,
    digest: &[u8; 32],
    answer: &Answer,
) -> Result<(), ApiError> {
    let links: Vec<(PartKind, String)> =
        d.held.iter().map(|h| (h.kind, h.upload.clone())).collect();
    inner.blobs.link_support(&d.folder, &links)?;
    if let Err(e) = record(tx, d, digest, answer) {
        inner.blobs.unlink_support(&d.folder);
        return Err(e);
    }
    for h in d.held {
        if let Err(e) = inner.blobs.remove_upload(&h.upload) {
            tracing::warn!(error = %e, "could not remove a committed upload's file");
        }
    }
    Ok(())
}

/// The support's row, its parts, and the uploads it consumed, in one commit.
fn record(
    tx: Transaction<'_>,
    d: &Decided<'_>,
    digest: &[u8; 32],
    answer: &Answer,
) -> Result<(), ApiError> {
    let (result, reason, first, dup_key) = match d.decision {
        Decision::Counted { dup_key } => ("counted", None, None, Some(dup_key)),
        Decision::Duplicate { dup_key, first, .. } => {
            ("duplicate", None, Some(first.to_string()), Some(dup_key))
        }
        Decision::Rejected(e) => ("rejected", Some(e.reason.code()), None, None),
    };
    let (collector_kind, collector_id) = collector_parts(&d.req.collector);
    let capture = d.req.capture_id.to_string();
    let signed = &d.received.signed;
    tx.execute(
        "INSERT INTO supports (device_id, capture_id, process_id, result, reason, first_capture_id, dup_key,
                               collector_kind, collector_id, captured_time, counted_time, digest, status, body,
                               blob_dir, signed_commit, device_signature, sent_time, skew_seconds)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)",
        params![
            d.device.id,
            capture,
            d.req.process_id,
            result,
            reason,
            first,
            dup_key.map(|k| &k[..]),
            collector_kind,
            collector_id,
            rfc3339(d.req.captured_at)?,
            rfc3339(d.now)?,
            &digest[..],
            answer.status,
            answer.body,
            d.folder,
            signed.commit,
            signed.device_signature,
            rfc3339(d.req.sent_at)?,
            d.skew,
        ],
    )?;
    for h in d.held {
        tx.execute(
            "INSERT INTO support_parts (device_id, capture_id, kind, length, sha256) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![d.device.id, capture, h.kind.name(), h.length as i64, &h.sha256[..]],
        )?;
        tx.execute("DELETE FROM uploads WHERE id = ?1", [&h.upload])?;
    }
    tx.commit()?;
    Ok(())
}

/// How a collector is recorded: its kind and id.
pub(super) fn collector_parts(c: &Collector) -> (&'static str, &str) {
    match c {
        Collector::MiApoyo(id) => ("mi_apoyo", id),
        Collector::Auxiliar(id) => ("auxiliar", id),
    }
}
