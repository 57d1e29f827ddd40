//! Crypto-shredding a capture the endpoint acknowledged: its key wraps deleted, the copy of the
//! device wrap in its part file's trailer overwritten, its part file removed (ADR 0006).

use rusqlite::params;

use super::{Store, files, part_fs, trailer};
use crate::error::Result;
use crate::model::CaptureId;

impl Store {
    /// Crypto-shreds a capture the endpoint acknowledged (state `committed`; any other state is
    /// left untouched): deletes both key wraps (the bytes
    /// become unreadable), overwrites the copy of the device wrap in the part file's trailer,
    /// then removes the part file, then makes the deletion reach the disk
    /// (`secure_delete` overwrites freed pages; a TRUNCATE checkpoint empties the WAL, which
    /// would otherwise still hold the old pages).
    pub(crate) fn purge(&mut self, id: &CaptureId) -> Result<()> {
        let now = self.now_text()?;
        let tx = self.conn.transaction()?;
        // Only a committed capture (one whose verified receipt is recorded) is shredded: the
        // state change comes first, and nothing is deleted when it does not apply.
        let changed = tx.execute(
            "UPDATE captures SET state = 'purged', total_bytes = 0, updated_at = ?2 WHERE id = ?1 AND state = 'committed'",
            params![id.to_string(), now],
        )?;
        if changed != 1 {
            return Ok(());
        }
        tx.execute(
            "DELETE FROM capture_keys WHERE capture_id = ?1",
            [id.to_string()],
        )?;
        tx.commit()?;
        let path = files::part_file(&self.dir, id);
        trailer::shred_trailer(&path)?;
        match part_fs::remove_file(&path) {
            Ok(()) => part_fs::sync_dir(&files::parts_dir(&self.dir))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        super::db::checkpoint_truncate(&self.conn)?;
        Ok(())
    }

    /// For the simulation's deliberately broken variant only (feature `testkit`): marks a capture committed without any receipt.
    #[cfg(feature = "testkit")]
    pub(crate) fn mark_committed_unverified(&mut self, id: &CaptureId) -> Result<()> {
        self.conn.execute(
            "UPDATE captures SET state = 'committed' WHERE id = ?1",
            [id.to_string()],
        )?;
        Ok(())
    }
}
