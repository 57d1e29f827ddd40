//! Recovery at open (ADR 0013): reconciling `parts/` with the queue rows. A part file whose
//! capture was purged is shredded and removed; one without rows is either rebuilt from its
//! trailer (a power loss rolled its indexing commit back), removed (a capture interrupted before
//! it returned: no trailer) or moved to `damaged/` (a trailer, but parts that do not
//! authenticate: kept, never deleted).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use rusqlite::OptionalExtension;
use serde::Serialize;
use time::format_description::well_known::Rfc3339;

use super::files::{self, PartSpan};
use super::read::PartRecord;
use super::rows::{QueueRow, insert_keys};
use super::trailer::{self, Trailer};
use super::{Store, part_fs};
use crate::crypto::{self, PartOpener, SecretKey, wrap};
use crate::error::{Error, ErrorClass, Result};
use crate::model::{CaptureId, Manifest, PartKind};

/// What [`Store::open`] found and did among the part files (ADR 0013). Empty after a clean
/// shutdown or a kill between captures.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OpenReport {
    /// Captures whose queue rows a power loss had rolled back, rebuilt from their part files.
    pub recovered: Vec<CaptureId>,
    /// Part files of captures interrupted before they returned (no trailer), removed.
    pub removed_incomplete: u64,
    /// Part files with a trailer whose parts did not authenticate, moved to `damaged/` and
    /// kept (never deleted).
    pub damaged: Vec<PathBuf>,
    /// Captures committed by a verified receipt whose purge a crash cut short, purged at open
    /// (an app that syncs only when something is pending would otherwise keep them).
    pub purged_committed: u64,
}

enum Recovery {
    Recovered,
    Incomplete,
    Damaged,
}

/// A part file whose parts all authenticated and whose manifest names its capture.
struct Verified {
    manifest: Manifest,
    data_key: SecretKey,
    parts: Vec<PartSpan>,
    file_len: u64,
}

/// The trailer of the part file at `path` and the file's length; `None` if it has none.
fn read_trailer(path: &Path) -> Result<Option<(Trailer, u64)>> {
    let mut f = File::open(path)?;
    let file_len = f.metadata()?.len();
    let Some(trailer_at) = file_len.checked_sub(Trailer::LEN as u64) else {
        return Ok(None);
    };
    let mut bytes = [0u8; Trailer::LEN];
    f.seek(SeekFrom::Start(trailer_at))?;
    f.read_exact(&mut bytes)?;
    Ok(Trailer::decode(&bytes).map(|t| (t, file_len)))
}

impl Store {
    /// Reconciles `parts/` with the queue rows: a file whose capture was purged is removed (its
    /// keys are gone); a file without a row is either a capture whose indexing commit a power
    /// loss rolled back — it carries a trailer and authenticates, and its rows are rebuilt —
    /// or an interrupted capture that never returned (no trailer), removed. A file with a
    /// trailer that fails to authenticate is moved to `damaged/`, never deleted. ADR 0013.
    pub(super) fn reconcile_part_files(&self) -> Result<OpenReport> {
        let mut report = OpenReport::default();
        let mut changed = false;
        // The rows of every capture still holding its file, in one statement: only a file
        // without one (purged, or no row at all) needs a look of its own.
        let live: std::collections::HashSet<String> = self
            .conn
            .prepare(
                "SELECT id FROM captures
                 WHERE state IN ('captured', 'uploading', 'committed', 'quarantined')",
            )?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        for (path, id) in files::list_part_files(&self.dir)? {
            let Some(id) = id else { continue };
            if live.contains(&id.to_string()) {
                continue;
            }
            let held: Option<String> = self
                .conn
                .query_row(
                    "SELECT state FROM captures WHERE id = ?1",
                    [id.to_string()],
                    |r| r.get(0),
                )
                .optional()?;
            match held.as_deref() {
                Some("purged") => {
                    // A purge cut between its commit and its shred: shred the trailer's key
                    // wrap first, as the purge would have.
                    trailer::shred_trailer(&path)?;
                    part_fs::remove_file(&path)?;
                    changed = true;
                }
                Some(_) => {}
                None => changed |= self.settle_unindexed(&path, id, &mut report)?,
            }
        }
        if changed {
            part_fs::sync_dir(&files::parts_dir(&self.dir))?;
        }
        Ok(report)
    }

    /// Rebuilds, removes or sets aside the part file of a capture that has no queue rows, and
    /// records what was done in `report`. Returns whether `parts/` changed.
    fn settle_unindexed(
        &self,
        path: &Path,
        id: CaptureId,
        report: &mut OpenReport,
    ) -> Result<bool> {
        match self.recover(path, &id)? {
            Recovery::Recovered => {
                report.recovered.push(id);
                return Ok(false);
            }
            Recovery::Incomplete => {
                part_fs::remove_file(path)?;
                report.removed_incomplete += 1;
            }
            Recovery::Damaged => {
                let damaged = self.dir.join(files::DAMAGED_DIR);
                crate::fsutil::create_private_dir_durably(&damaged)?;
                let target = damaged.join(path.file_name().unwrap_or_default());
                part_fs::rename(path, &target)?;
                part_fs::sync_dir(&damaged)?;
                if let Some(from) = path.parent() {
                    part_fs::sync_dir(from)?;
                }
                report.damaged.push(target);
            }
        }
        Ok(true)
    }

    /// Rebuilds the queue rows of the capture in `path`, which has none, from its trailer,
    /// after checking that every part authenticates under the device's keys and that the
    /// manifest names this capture.
    fn recover(&self, path: &Path, id: &CaptureId) -> Result<Recovery> {
        let Some((trailer, file_len)) = read_trailer(path)? else {
            return Ok(Recovery::Incomplete);
        };
        let verified = match self.verify_part_file(id, &trailer, file_len) {
            Ok(v) => v,
            Err(e) if e.class() == ErrorClass::Integrity => return Ok(Recovery::Damaged),
            Err(e) => return Err(e),
        };
        self.reindex(id, &trailer, verified)?;
        Ok(Recovery::Recovered)
    }

    /// Checks the part file against its trailer: its length, the data key wrap, every part's
    /// authentication, and the manifest's capture id. Damage is an integrity error.
    fn verify_part_file(
        &self,
        id: &CaptureId,
        trailer: &Trailer,
        file_len: u64,
    ) -> Result<Verified> {
        let (parts, len) = trailer
            .layout()
            .ok_or_else(|| Error::integrity("part file (lengths)"))?;
        if len != file_len {
            return Err(Error::integrity("part file (length)"));
        }
        let data_key = wrap::unwrap(
            &self.keys.master,
            "data-key",
            id.as_bytes(),
            &trailer.device_wrap,
            "data key wrap",
        )?;
        let mut manifest = zeroize::Zeroizing::new(Vec::new());
        for &(kind, file_offset, ct_len) in &parts {
            let record = PartRecord {
                kind,
                file_offset,
                ct_len,
                sha256: [0; 32],
                upload_url: None,
                upload_expires: None,
                uploaded_bytes: 0,
            };
            let reader = self.part_reader(id, &record)?;
            let mut opener = PartOpener::new(&data_key, id.as_bytes(), kind)?;
            if kind == PartKind::Manifest {
                opener.open_to(ct_len, reader, &mut *manifest)?;
            } else {
                opener.open_to(ct_len, reader, &mut std::io::sink())?;
            }
        }
        let m =
            Manifest::from_cbor(&manifest).map_err(|_| Error::integrity("manifest (decoding)"))?;
        if m.capture_id != *id {
            return Err(Error::integrity("manifest (capture id)"));
        }
        Ok(Verified {
            manifest: m,
            data_key,
            parts,
            file_len: len,
        })
    }

    /// Writes the queue rows and key wraps of a verified part file, in one transaction.
    fn reindex(&self, id: &CaptureId, trailer: &Trailer, v: Verified) -> Result<()> {
        let m = &v.manifest;
        let row = QueueRow {
            id: id.to_string(),
            process_id: &m.process_id,
            collector: &m.collector,
            captured_at: m
                .captured_at
                .format(&Rfc3339)
                .map_err(|e| Error::Internal(e.to_string()))?,
            dup_key: self
                .keys
                .dup_key_of(&m.process_id, &m.fields.clave_elector)?,
            total_bytes: v.file_len,
            parts: v.parts,
        };
        let endpoint_seal = crypto::wrap::seal_to_endpoint(
            &self.endpoint_public,
            &self.keys.identity,
            id.as_bytes(),
            &v.data_key,
        )?;
        // `conn` is borrowed shared here; the unchecked transaction is still one transaction,
        // committed with `synchronous=FULL`.
        let tx = self.conn.unchecked_transaction()?;
        row.insert(&tx)?;
        insert_keys(
            &tx,
            &row.id,
            &trailer.device_wrap,
            &endpoint_seal,
            &self.endpoint_public.key_id(),
        )?;
        tx.commit()?;
        Ok(())
    }
}
