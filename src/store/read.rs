//! Reading the queue: counts per state, the rows the app may list, a capture's stored parts,
//! and a bounded reader over one part's ciphertext (exactly the bytes to upload).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{Store, files};
use crate::error::{Error, Result};
use crate::model::{CaptureId, Collector, PartKind};
use crate::queue::State;

/// Counts per queue state and the bytes still held on the device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Status {
    pub captured: u64,
    pub uploading: u64,
    pub committed: u64,
    pub quarantined: u64,
    pub purged: u64,
    /// Ciphertext bytes held for captures not yet purged.
    pub pending_bytes: u64,
}

/// A queue row, as the app may list it (no personal data).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CaptureInfo {
    pub id: CaptureId,
    pub process_id: String,
    pub state: State,
    pub reason: Option<String>,
    pub attempts: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub captured_at: OffsetDateTime,
    pub total_bytes: u64,
}

/// One stored part's location and digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartRecord {
    pub kind: PartKind,
    pub file_offset: u64,
    pub ct_len: u64,
    pub sha256: [u8; 32],
    pub upload_url: Option<String>,
    /// The upload's `Upload-Expires`, as the endpoint sent it (HTTP date).
    pub upload_expires: Option<String>,
    pub uploaded_bytes: u64,
}

/// A `parts` row as stored: kind, offset, length, digest, upload URL, uploaded bytes, expiry.
type PartRow = (
    String,
    i64,
    i64,
    Option<Vec<u8>>,
    Option<String>,
    i64,
    Option<String>,
);

impl Store {
    /// Counts per state and the bytes still held.
    pub fn status(&self) -> Result<Status> {
        let mut s = Status::default();
        let mut st = self.conn.prepare(
            // Kept by triggers in every transaction that changes a capture (schema 0004).
            "SELECT state, n, bytes FROM queue_counts",
        )?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })?;
        for row in rows {
            let (state, n, bytes) = row?;
            let n = n as u64;
            match state.as_str() {
                "captured" => s.captured = n,
                "uploading" => s.uploading = n,
                "committed" => s.committed = n,
                "quarantined" => s.quarantined = n,
                "purged" => s.purged = n,
                _ => {}
            }
            if state != "purged" {
                s.pending_bytes += bytes as u64;
            }
        }
        Ok(s)
    }

    /// Every capture in the queue, oldest first.
    pub fn list(&self) -> Result<Vec<CaptureInfo>> {
        let mut st = self.conn.prepare(
            "SELECT id, process_id, state, reason, attempts, captured_at, total_bytes FROM captures ORDER BY id",
        )?;
        let rows = st.query_map([], row_to_info)?;
        rows.map(|r| r.map_err(Error::from).and_then(|x| x))
            .collect()
    }

    /// One capture's queue row.
    pub fn info(&self, id: &CaptureId) -> Result<CaptureInfo> {
        self.conn
            .query_row(
                "SELECT id, process_id, state, reason, attempts, captured_at, total_bytes FROM captures WHERE id = ?1",
                [id.to_string()],
                row_to_info,
            )
            .optional()?
            .ok_or_else(|| Error::UnknownCapture(id.to_string()))?
    }

    /// Who captured a capture (kept in the queue row: an opaque id, never a name).
    pub fn capture_collector(&self, id: &CaptureId) -> Result<Collector> {
        let (kind, cid): (String, String) = self
            .conn
            .query_row(
                "SELECT collector_kind, collector_id FROM captures WHERE id = ?1",
                [id.to_string()],
                |r| r.try_into(),
            )
            .optional()?
            .ok_or_else(|| Error::UnknownCapture(id.to_string()))?;
        Ok(if kind == "auxiliar" {
            Collector::Auxiliar(cid)
        } else {
            Collector::MiApoyo(cid)
        })
    }

    /// The stored parts of a capture. The digests of parts that have none yet (hashed on
    /// first use rather than on the capture path: the AEAD tags already detect damage) are
    /// computed and recorded together, in one transaction that needs no flush of its own: a
    /// digest lost to a power loss is computed again.
    pub fn parts(&self, id: &CaptureId) -> Result<Vec<PartRecord>> {
        let mut st = self.conn.prepare(
            "SELECT kind, file_offset, ct_len, sha256, upload_url, uploaded_bytes, upload_expires FROM parts WHERE capture_id = ?1",
        )?;
        let rows: Vec<PartRow> = st
            .query_map([id.to_string()], |r| r.try_into())?
            .collect::<rusqlite::Result<_>>()?;
        let mut out = Vec::new();
        let mut hashed = Vec::new();
        for row in rows {
            let (rec, fresh) = self.part_record(id, row)?;
            if fresh {
                hashed.push((rec.kind, rec.sha256));
            }
            out.push(rec);
        }
        if !hashed.is_empty() {
            self.record_digests(id, &hashed)?;
        }
        out.sort_by_key(|p| p.kind);
        Ok(out)
    }

    /// Records the digests computed by [`Self::parts`], in one unflushed transaction.
    fn record_digests(&self, id: &CaptureId, digests: &[(PartKind, [u8; 32])]) -> Result<()> {
        super::db::with_unflushed(&self.conn, |conn| {
            let tx = conn.unchecked_transaction()?;
            for (kind, digest) in digests {
                tx.execute(
                    "UPDATE parts SET sha256 = ?3 WHERE capture_id = ?1 AND kind = ?2",
                    params![id.to_string(), kind.name(), &digest[..]],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
    }

    /// One `parts` row as a [`PartRecord`], and whether its digest was computed now (the row
    /// had none).
    fn part_record(&self, id: &CaptureId, row: PartRow) -> Result<(PartRecord, bool)> {
        let (kind, off, len, sha, url, up, expires) = row;
        let kind = PartKind::from_name(&kind).ok_or_else(|| Error::integrity("part kind"))?;
        let bad = || Error::integrity(format!("{} part (offset or length)", kind.name()));
        let mut rec = PartRecord {
            kind,
            file_offset: u64::try_from(off).map_err(|_| bad())?,
            ct_len: u64::try_from(len).map_err(|_| bad())?,
            sha256: [0; 32],
            upload_url: url,
            upload_expires: expires,
            uploaded_bytes: u64::try_from(up).unwrap_or(0),
        };
        let fresh = sha.is_none();
        rec.sha256 = match sha {
            Some(sha) => sha
                .try_into()
                .map_err(|_| Error::integrity("part digest"))?,
            None => self.hash_part(id, &rec)?,
        };
        Ok((rec, fresh))
    }

    fn hash_part(&self, id: &CaptureId, part: &PartRecord) -> Result<[u8; 32]> {
        use sha2::Digest;
        let mut reader = self.part_reader(id, part)?;
        let mut hasher = sha2::Sha256::new();
        let mut buf = vec![0u8; crate::limits::CHUNK_SIZE];
        loop {
            let n = reader.read(&mut buf)?;
            if n == 0 {
                return Ok(hasher.finalize().into());
            }
            hasher.update(&buf[..n]);
        }
    }

    /// A reader over the ciphertext of one part, exactly the bytes to upload.
    pub fn part_reader(
        &self,
        id: &CaptureId,
        part: &PartRecord,
    ) -> Result<impl Read + Seek + use<>> {
        let mut f = File::open(files::part_file(&self.dir, id)).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                Error::integrity(format!("{} part (file missing)", part.kind.name()))
            }
            _ => Error::Io(e),
        })?;
        let file_len = f.metadata()?.len();
        if part
            .file_offset
            .checked_add(part.ct_len)
            .is_none_or(|end| end > file_len)
        {
            return Err(Error::integrity(format!(
                "{} part (file truncated)",
                part.kind.name()
            )));
        }
        f.seek(SeekFrom::Start(part.file_offset))?;
        Ok(PartRange {
            file: f,
            start: part.file_offset,
            len: part.ct_len,
            pos: 0,
        })
    }

    /// The endpoint-sealed data key of a capture (sent in the commit).
    pub fn endpoint_seal(&self, id: &CaptureId) -> Result<Vec<u8>> {
        self.conn
            .query_row(
                "SELECT endpoint_seal FROM capture_keys WHERE capture_id = ?1",
                [id.to_string()],
                |r| r.get(0),
            )
            .optional()?
            .ok_or_else(|| self.gone(id))
    }

    /// The error for a capture whose key wraps are gone: its state, or why it has none.
    pub(super) fn gone(&self, id: &CaptureId) -> Error {
        match self.info(id) {
            Ok(info) => Error::CaptureGone {
                id: id.to_string(),
                state: info.state.as_str().to_string(),
            },
            Err(e) => e,
        }
    }
}

fn row_to_info(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<CaptureInfo>> {
    let id: String = r.get(0)?;
    let process_id: String = r.get(1)?;
    let state: String = r.get(2)?;
    let reason: Option<String> = r.get(3)?;
    let attempts: i64 = r.get(4)?;
    let captured_at: String = r.get(5)?;
    let total: i64 = r.get(6)?;
    Ok((|| {
        Ok(CaptureInfo {
            id: id.parse()?,
            process_id,
            state: State::parse(&state)?,
            reason,
            attempts: attempts.max(0) as u32,
            captured_at: OffsetDateTime::parse(&captured_at, &Rfc3339)
                .map_err(|_| Error::integrity("captured_at"))?,
            total_bytes: total.max(0) as u64,
        })
    })())
}

/// A bounded view of one part inside a capture's file.
struct PartRange {
    file: File,
    start: u64,
    len: u64,
    pos: u64,
}

impl Read for PartRange {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.len - self.pos;
        if left == 0 {
            return Ok(0);
        }
        let n = (buf.len() as u64).min(left) as usize;
        let got = self.file.read(&mut buf[..n])?;
        self.pos += got as u64;
        Ok(got)
    }
}

impl Seek for PartRange {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        let target = match pos {
            SeekFrom::Start(p) => p as i64,
            SeekFrom::Current(d) => self.pos as i64 + d,
            SeekFrom::End(d) => self.len as i64 + d,
        };
        if target < 0 || target as u64 > self.len {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "seek outside the part",
            ));
        }
        self.file
            .seek(SeekFrom::Start(self.start + target as u64))?;
        self.pos = target as u64;
        Ok(self.pos)
    }
}
