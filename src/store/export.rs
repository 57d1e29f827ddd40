//! Decrypting the device's own copy of a capture: one part streamed out, the manifest, and the
//! whole capture exported to a folder as the original files plus `fields.json`.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use rusqlite::OptionalExtension;
use time::format_description::well_known::Rfc3339;

use super::Store;
use crate::crypto::{PartOpener, SecretKey, wrap};
use crate::error::{Error, Result};
use crate::model::{CaptureId, Manifest, PartKind};

impl Store {
    fn device_data_key(&self, id: &CaptureId) -> Result<SecretKey> {
        let w: Vec<u8> = self
            .conn
            .query_row(
                "SELECT device_wrap FROM capture_keys WHERE capture_id = ?1",
                [id.to_string()],
                |r| r.get(0),
            )
            .optional()?
            .ok_or_else(|| self.gone(id))?;
        wrap::unwrap(
            &self.keys.master,
            "data-key",
            id.as_bytes(),
            &w,
            "data key wrap",
        )
    }

    /// Decrypts one part of the device's own copy into `out` (streaming, one chunk of memory).
    pub fn read_part<W: Write>(&self, id: &CaptureId, kind: PartKind, out: &mut W) -> Result<u64> {
        let dk = self.device_data_key(id)?;
        let part = self
            .parts(id)?
            .into_iter()
            .find(|p| p.kind == kind)
            .ok_or_else(|| Error::integrity(format!("{} part (missing)", kind.name())))?;
        let reader = self.part_reader(id, &part)?;
        PartOpener::new(&dk, id.as_bytes(), kind)?.open_to(part.ct_len, reader, out)
    }

    /// Decrypts and decodes a capture's manifest (device copy).
    pub fn manifest(&self, id: &CaptureId) -> Result<Manifest> {
        let mut buf = zeroize::Zeroizing::new(Vec::new());
        self.read_part(id, PartKind::Manifest, &mut *buf)?;
        let m = Manifest::from_cbor(&buf)?;
        if m.capture_id != *id {
            return Err(Error::integrity("manifest (capture id)"));
        }
        Ok(m)
    }

    /// Writes the device's copy of a capture into `out_dir`: `front.<ext>`, `back.<ext>`,
    /// `selfie.<ext>`, `signature.<ext>` (byte-identical to what was captured) and `fields.json`.
    pub fn export(&self, id: &CaptureId, out_dir: &Path) -> Result<Vec<PathBuf>> {
        let m = self.manifest(id)?;
        crate::fsutil::create_private_dir(out_dir)?;
        let mut written = Vec::new();
        for kind in PartKind::ALL {
            let Some(fmt) = m.formats.get(kind) else {
                continue;
            };
            let path = out_dir.join(format!("{}.{}", kind.name(), fmt.extension()));
            self.export_part(id, kind, out_dir, &path)?;
            written.push(path);
        }
        let path = out_dir.join("fields.json");
        let json = serde_json::json!({
            "capture_id": m.capture_id,
            "process_id": m.process_id,
            "collector": m.collector,
            "model": m.model,
            "captured_at": m.captured_at.format(&Rfc3339).map_err(|e| Error::Internal(e.to_string()))?,
            "engine_version": m.engine_version,
            "fields": m.fields,
            "location": m.location,
        });
        // The clave de elector and the location: readable by the owner only.
        let text = zeroize::Zeroizing::new(
            serde_json::to_vec_pretty(&json).map_err(|e| Error::Internal(e.to_string()))?,
        );
        let mut f = crate::fsutil::create_private(&path)?;
        f.write_all(&text)?;
        f.sync_all()?;
        written.push(path);
        Ok(written)
    }

    /// Decrypts one part to `path`, through a temporary name in `out_dir`: a part that fails
    /// authentication halfway must not leave a truncated image that looks like the real one.
    fn export_part(
        &self,
        id: &CaptureId,
        kind: PartKind,
        out_dir: &Path,
        path: &Path,
    ) -> Result<()> {
        let tmp = out_dir.join(format!(".{}.partial", kind.name()));
        let mut f = crate::fsutil::create_private(&tmp)?;
        if let Err(e) = self
            .read_part(id, kind, &mut f)
            .and_then(|_| Ok(f.sync_all()?))
        {
            drop(f);
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        fs::rename(&tmp, path)?;
        Ok(())
    }
}
