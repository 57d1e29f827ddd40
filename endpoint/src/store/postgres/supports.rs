//! The PostgreSQL queries of deciding a commit (`support`) and of the support counts (`stats`):
//! the lock on a device's capture, the stored answer, the counted support of a duplicate key,
//! the record of a decision, and the counts. `impl Db for PgDb` delegates here.

use super::{CountRow, CountedRow, PgDb, R, StoredAnswer, SupportRow, lock_key};

/// A transaction lock on (device, capture id): deliveries of one capture through several
/// replicas are decided one after the other.
pub(super) fn lock_capture(db: &PgDb, device_id: &str, capture_id: &str) -> R<()> {
    db.xact_lock(lock_key(
        "capture",
        &[device_id.as_bytes(), capture_id.as_bytes()],
    ))
}

pub(super) fn stored_answer(
    db: &PgDb,
    device_id: &str,
    capture_id: &str,
) -> R<Option<StoredAnswer>> {
    Ok(db
        .row(
            "SELECT digest, status, body FROM supports WHERE device_id = $1 AND capture_id = $2",
            &[&device_id, &capture_id],
        )?
        .map(|r| {
            Ok::<_, tokio_postgres::Error>(StoredAnswer {
                digest: r.try_get(0)?,
                status: r.try_get(1)?,
                body: r.try_get(2)?,
            })
        })
        .transpose()?)
}

pub(super) fn counted_by_dup_key(db: &PgDb, dup_key: &[u8]) -> R<Option<CountedRow>> {
    Ok(db
        .row(
            "SELECT capture_id, device_id, collector_kind, collector_id FROM supports
             WHERE dup_key = $1 AND result = 'counted'",
            &[&dup_key],
        )?
        .map(|r| {
            Ok::<_, tokio_postgres::Error>((
                r.try_get(0)?,
                r.try_get(1)?,
                r.try_get(2)?,
                r.try_get(3)?,
            ))
        })
        .transpose()?)
}

/// The support's row, its parts' rows, and the removal of the uploads it consumed.
pub(super) fn insert_support(db: &PgDb, s: &SupportRow<'_>) -> R<()> {
    db.exec(
        "INSERT INTO supports (device_id, capture_id, process_id, result, reason, first_capture_id, dup_key,
                               collector_kind, collector_id, captured_time, counted_time, digest, status, body,
                               blob_dir, signed_commit, device_signature, sent_time, skew_seconds)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)",
        &[
            &s.device_id,
            &s.capture_id,
            &s.process_id,
            &s.result,
            &s.reason,
            &s.first_capture_id,
            &s.dup_key,
            &s.collector_kind,
            &s.collector_id,
            &s.captured_time,
            &s.counted_time,
            &s.digest,
            &s.status,
            &s.body,
            &s.blob_dir,
            &s.signed_commit,
            &s.device_signature,
            &s.sent_time,
            &s.skew_seconds,
        ],
    )?;
    for (kind, length, sha256, upload) in &s.parts {
        db.exec(
            "INSERT INTO support_parts (device_id, capture_id, kind, length, sha256) VALUES ($1, $2, $3, $4, $5)",
            &[&s.device_id, &s.capture_id, kind, length, sha256],
        )?;
        db.exec("DELETE FROM uploads WHERE id = $1", &[upload])?;
    }
    Ok(())
}

/// `(process_id, result, reason or '', count)`.
pub(super) fn support_counts(db: &PgDb) -> R<Vec<CountRow>> {
    Ok(db
        .rows(
            "SELECT process_id, result, coalesce(reason, ''), count(*) FROM supports GROUP BY 1, 2, 3",
            &[],
        )?
        .iter()
        .map(|r| {
            Ok::<_, tokio_postgres::Error>((
                r.try_get(0)?,
                r.try_get(1)?,
                r.try_get(2)?,
                r.try_get(3)?,
            ))
        })
        .collect::<Result<_, _>>()?)
}
