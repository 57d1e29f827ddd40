//! The PostgreSQL queries of the `uploads` table (tus uploads in progress): an upload's row,
//! its transaction lock, creation, the sweep's candidates, removal, and the PATCH's row write
//! (offset, running digest state and final SHA-256 together, ADR 0021). An upload's creation
//! and offset commit with `synchronous_commit = off` (`begin_unflushed`): the next flushed
//! commit of any transaction makes them durable, in WAL order.

use super::{PgDb, R};
use crate::store::{NewUpload, UploadRow, lock_key};

pub(super) fn begin_unflushed(db: &PgDb) -> R<()> {
    // Marked first: if the SET fails after the BEGIN, `finish` rolls the transaction back
    // (a ROLLBACK outside one is only a warning).
    db.in_tx.set(true);
    db.rt.block_on(
        db.client
            .batch_execute("BEGIN; SET LOCAL synchronous_commit = off"),
    )?;
    Ok(())
}

pub(super) fn upload(db: &PgDb, id: &str) -> R<Option<UploadRow>> {
    Ok(db
        .row(
            "SELECT device_id, capture_id, kind, length, upload_offset, expires_at, digest_state, sha256
             FROM uploads WHERE id = $1",
            &[&id],
        )?
        .map(|r| {
            let sha256: Option<Vec<u8>> = r.try_get(7)?;
            Ok::<_, tokio_postgres::Error>(UploadRow {
                device_id: r.try_get(0)?,
                capture_id: r.try_get(1)?,
                kind: r.try_get(2)?,
                length: r.try_get(3)?,
                offset: r.try_get(4)?,
                expires_at: r.try_get(5)?,
                digest_state: r.try_get(6)?,
                // The column's CHECK keeps it 32 bytes.
                sha256: sha256.and_then(|d| <[u8; 32]>::try_from(d).ok()),
            })
        })
        .transpose()?)
}

pub(super) fn lock_upload(db: &PgDb, id: &str) -> R<()> {
    db.xact_lock(lock_key("upload", &[id.as_bytes()]))
}

pub(super) fn count_uploads(db: &PgDb, device_id: &str) -> R<i64> {
    Ok(db
        .row(
            "SELECT count(*) FROM uploads WHERE device_id = $1",
            &[&device_id],
        )?
        .map(|r| r.try_get(0))
        .transpose()?
        .unwrap_or(0))
}

pub(super) fn insert_upload(db: &PgDb, u: &NewUpload<'_>) -> R<()> {
    db.exec(
        "INSERT INTO uploads (id, device_id, capture_id, kind, length, upload_offset, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, 0, $6, $7)",
        &[&u.id, &u.device_id, &u.capture_id, &u.kind, &u.length, &u.now, &u.expires_at],
    )?;
    Ok(())
}

pub(super) fn expired_uploads(db: &PgDb, before: i64, limit: i64) -> R<Vec<String>> {
    Ok(db
        .rows(
            "SELECT id FROM uploads WHERE expires_at <= $1 LIMIT $2",
            &[&before, &limit],
        )?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?)
}

pub(super) fn delete_upload(db: &PgDb, id: &str) -> R<()> {
    db.exec("DELETE FROM uploads WHERE id = $1", &[&id])?;
    Ok(())
}

pub(super) fn advance_upload(
    db: &PgDb,
    id: &str,
    offset: i64,
    digest_state: Option<&[u8]>,
    sha256: Option<&[u8; 32]>,
) -> R<()> {
    let sha256 = sha256.map(|d| &d[..]);
    db.exec(
        "UPDATE uploads SET upload_offset = $2, digest_state = $3, sha256 = $4 WHERE id = $1",
        &[&id, &offset, &digest_state, &sha256],
    )?;
    Ok(())
}
