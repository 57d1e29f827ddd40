//! Step 7 of deciding a commit: the parts' ciphertext moves from upload storage into the
//! support's folder, and the decision is recorded with its exact answer — the support's row (with the
//! device-signed commit and its signature, v1.1), its parts, and the removal of the uploads it
//! consumed, in one database commit.

use apoyo_sync::Collector;
use apoyo_sync::PartKind;

use super::{Answer, Decided, Decision};
use crate::error::ApiError;
use crate::http::rfc3339;
use crate::state::Inner;
use crate::store::{Db, SupportRow};

/// Links the held uploads' bytes as the support's parts, records the decision (removing the
/// support folder again if the record fails), then removes the consumed uploads' files.
pub(super) fn keep(
    tx: &dyn Db,
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
    tx: &dyn Db,
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
    tx.insert_support(&SupportRow {
        device_id: &d.device.id,
        capture_id: &capture,
        process_id: &d.req.process_id,
        result,
        reason,
        first_capture_id: first,
        dup_key: dup_key.map(|k| &k[..]),
        collector_kind,
        collector_id,
        captured_time: rfc3339(d.req.captured_at)?,
        counted_time: rfc3339(d.now)?,
        digest: &digest[..],
        status: i64::from(answer.status),
        body: &answer.body,
        blob_dir: &d.folder,
        signed_commit: &signed.commit,
        device_signature: &signed.device_signature,
        sent_time: rfc3339(d.req.sent_at)?,
        skew_seconds: d.skew,
        parts: d
            .held
            .iter()
            .map(|h| {
                (
                    h.kind.name(),
                    h.length as i64,
                    &h.sha256[..],
                    h.upload.as_str(),
                )
            })
            .collect(),
    })?;
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
