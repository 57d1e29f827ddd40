//! The rows that index a capture in the queue: `captures`, its five `parts` and its
//! `capture_keys`, as `capture.rs` writes them and as `recover.rs` rebuilds them from a part
//! file's trailer.

use rusqlite::params;

use super::files::PartSpan;
use crate::error::Result;
use crate::model::Collector;

/// The queue rows of a new capture (`captures` and its five `parts`).
pub(super) struct QueueRow<'a> {
    pub id: String,
    pub process_id: &'a str,
    pub collector: &'a Collector,
    pub captured_at: String,
    pub dup_key: [u8; 32],
    pub total_bytes: u64,
    pub parts: Vec<PartSpan>,
}

impl QueueRow<'_> {
    pub fn insert(&self, tx: &rusqlite::Transaction<'_>) -> Result<()> {
        let (ck, cid) = collector_parts(self.collector);
        tx.prepare_cached(
            "INSERT INTO captures (id, process_id, collector_kind, collector_id, captured_at, dup_key, state, total_bytes, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'captured', ?7, ?5)",
        )?
        .execute(params![
            self.id,
            self.process_id,
            ck,
            cid,
            self.captured_at,
            &self.dup_key[..],
            self.total_bytes as i64
        ])?;
        let mut part = tx.prepare_cached(
            "INSERT INTO parts (capture_id, kind, file_offset, ct_len) VALUES (?1, ?2, ?3, ?4)",
        )?;
        for (kind, offset, len) in &self.parts {
            part.execute(params![self.id, kind.name(), *offset as i64, *len as i64])?;
        }
        Ok(())
    }
}

/// The two wraps of a capture's data key; `seal_key_id` names the seal key `endpoint_seal` was
/// sealed to (v1.1).
pub(super) fn insert_keys(
    tx: &rusqlite::Transaction<'_>,
    id: &str,
    device_wrap: &[u8],
    endpoint_seal: &[u8],
    seal_key_id: &str,
) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO capture_keys (capture_id, device_wrap, endpoint_seal, seal_key_id) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![id, device_wrap, endpoint_seal, seal_key_id])?;
    Ok(())
}

/// How a collector is stored: its kind's column value and its id.
pub(super) fn collector_parts(c: &Collector) -> (&'static str, &str) {
    match c {
        Collector::MiApoyo(id) => ("mi_apoyo", id),
        Collector::Auxiliar(id) => ("auxiliar", id),
    }
}
