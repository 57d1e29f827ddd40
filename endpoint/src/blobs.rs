//! Ciphertext bytes on disk. The endpoint never writes a plaintext image or manifest.
//!
//! ```text
//! BLOBS/
//!   uploads/<upload id>                tus uploads in progress (one file each)
//!   supports/<folder>/<kind>.part      the parts of a decided support; the folder is
//!                                      `<capture id>-<device id>` (v1.1: supports are per
//!                                      device), or `<capture id>` for one decided before v1.1
//! ```
//!
//! Durability order: bytes are written and fsync'd before the database row that points at them
//! is committed; a file without a row (a crash in between) is removed at the next start. An
//! upload's file is created unflushed; its first PATCH makes it durable with its folder entry,
//! and each PATCH makes its bytes durable before the row's offset commits (ADR 0021). The file
//! may hold more than the row's offset (bytes whose row was lost): the next PATCH cuts them.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use apoyo_sync::wire::fsync_dir;
use apoyo_sync::{CaptureId, PartKind};
use sha2::Digest;

const UPLOADS: &str = "uploads";
const SUPPORTS: &str = "supports";

/// The blob folder.
#[derive(Debug, Clone)]
pub(crate) struct Blobs {
    uploads: PathBuf,
    supports: PathBuf,
}

/// Whether `id` has the form of an upload id (32 lowercase hex digits), so that it can never
/// name a path outside `uploads/`.
pub(crate) fn is_upload_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl Blobs {
    pub fn open(root: &Path) -> io::Result<Blobs> {
        let b = Blobs {
            uploads: root.join(UPLOADS),
            supports: root.join(SUPPORTS),
        };
        apoyo_sync::wire::create_private_dir(&b.uploads)?;
        apoyo_sync::wire::create_private_dir(&b.supports)?;
        if let Some(parent) = root.parent()
            && !parent.as_os_str().is_empty()
        {
            fsync_dir(parent)?;
        }
        fsync_dir(root)?;
        Ok(b)
    }

    fn upload_path(&self, id: &str) -> io::Result<PathBuf> {
        if !is_upload_id(id) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not an upload id",
            ));
        }
        Ok(self.uploads.join(id))
    }

    fn support_dir(&self, name: &str) -> io::Result<PathBuf> {
        if !is_support_dir(name) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a support folder name",
            ));
        }
        Ok(self.supports.join(name))
    }

    /// Creates the empty file of a new upload, not flushed: nothing is in it, and the first
    /// PATCH ([`Blobs::write_upload`] at offset 0) makes it and its folder entry durable.
    pub fn create_upload(&self, id: &str) -> io::Result<()> {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(self.upload_path(id)?)?;
        Ok(())
    }

    /// Writes `bytes` at `offset` of an upload and makes them durable (fdatasync; at offset 0
    /// also the folder entry, so the file exists after a power loss whenever an offset above 0
    /// committed). Anything past `offset` (bytes of a PATCH whose row never committed, or was
    /// lost at a power loss) is discarded first. A file shorter than `offset` is refused
    /// (`UnexpectedEof`), never filled: the bytes the row promises are gone.
    pub fn write_upload(&self, id: &str, offset: u64, bytes: &[u8]) -> io::Result<()> {
        let first = offset == 0;
        let mut f = OpenOptions::new()
            .write(true)
            .create(first)
            .open(self.upload_path(id)?)?;
        let held = f.metadata()?.len();
        if held < offset {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the upload's file is shorter than its offset",
            ));
        }
        if held > offset {
            f.set_len(offset)?;
        }
        f.seek(SeekFrom::Start(offset))?;
        f.write_all(bytes)?;
        f.sync_data()?;
        if first {
            fsync_dir(&self.uploads)?;
        }
        Ok(())
    }

    /// Removes an upload's bytes (missing is fine).
    pub fn remove_upload(&self, id: &str) -> io::Result<()> {
        match fs::remove_file(self.upload_path(id)?) {
            Ok(()) => fsync_dir(&self.uploads),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Length and SHA-256 of the first `len` bytes of an upload (`None` if the file is shorter).
    pub fn digest_upload(&self, id: &str, len: u64) -> io::Result<Option<[u8; 32]>> {
        let f = File::open(self.upload_path(id)?)?;
        if f.metadata()?.len() < len {
            return Ok(None);
        }
        let mut r = f.take(len);
        let mut h = sha2::Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut seen = 0u64;
        loop {
            let n = r.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            seen += n as u64;
        }
        Ok((seen == len).then(|| h.finalize().into()))
    }

    /// A reader over the first `len` bytes of an upload.
    pub fn read_upload(&self, id: &str, len: u64) -> io::Result<impl Read + use<>> {
        Ok(io::BufReader::with_capacity(
            64 * 1024,
            File::open(self.upload_path(id)?)?.take(len),
        ))
    }

    /// Makes the uploads' bytes the parts of a support: hard links (the bytes are not copied)
    /// under `supports/<folder>/` ([`support_dir_name`]), made durable. The upload files stay
    /// until [`Blobs::remove_upload`]; on failure nothing of the support folder is left.
    pub fn link_support(&self, folder: &str, parts: &[(PartKind, String)]) -> io::Result<()> {
        let dir = self.support_dir(folder)?;
        let result = (|| {
            if dir.exists() {
                // Left by a crash before its row committed: no row names it.
                fs::remove_dir_all(&dir)?;
            }
            fs::create_dir(&dir)?;
            for (kind, upload) in parts {
                let from = self.upload_path(upload)?;
                let to = dir.join(format!("{}.part", kind.name()));
                if fs::hard_link(&from, &to).is_err() {
                    // A file system without hard links: copy, durably.
                    fs::copy(&from, &to)?;
                    File::open(&to)?.sync_all()?;
                }
            }
            fsync_dir(&dir)?;
            fsync_dir(&self.supports)
        })();
        if result.is_err() {
            let _ = fs::remove_dir_all(&dir);
        }
        result
    }

    /// Removes a support folder whose row did not commit.
    pub fn unlink_support(&self, folder: &str) {
        let Ok(dir) = self.support_dir(folder) else {
            return;
        };
        if let Err(e) = fs::remove_dir_all(&dir)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(error = %e, "could not remove an uncommitted support folder");
        }
    }

    /// Removes upload files and support folders that no database row names (left by a crash
    /// between writing bytes and committing their row). Returns how many were removed.
    pub fn remove_orphans(
        &self,
        uploads: &HashSet<String>,
        supports: &HashSet<String>,
    ) -> io::Result<usize> {
        let mut removed = 0;
        for entry in fs::read_dir(&self.uploads)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if is_upload_id(&name) && !uploads.contains(&name) {
                fs::remove_file(entry.path())?;
                removed += 1;
            }
        }
        for entry in fs::read_dir(&self.supports)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if is_support_dir(&name) && !supports.contains(&name) {
                fs::remove_dir_all(entry.path())?;
                removed += 1;
            }
        }
        if removed > 0 {
            fsync_dir(&self.uploads)?;
            fsync_dir(&self.supports)?;
        }
        Ok(removed)
    }
}

/// The folder of a support's parts: `<capture id>-<device id>`.
pub(crate) fn support_dir_name(capture_id: &CaptureId, device_id: &str) -> String {
    // A name per attempt: a replica whose record failed (or seemed to: a commit whose answer
    // was lost, a session ended under its lock) removes only its own folder, never the one
    // another attempt's committed row names.
    let attempt = uuid::Uuid::new_v4().simple().to_string();
    format!("{capture_id}-{device_id}-{}", &attempt[..ATTEMPT_LEN])
}

/// Hex digits of the attempt suffix of a support folder's name.
const ATTEMPT_LEN: usize = 16;

/// Whether `name` is a support folder name: a capture id, optionally followed by `-` and a
/// device id (32 lowercase hex digits), optionally followed by `-` and a 16-hex-digit attempt.
/// Nothing else can name a path under `supports/`.
fn is_support_dir(name: &str) -> bool {
    const ID_LEN: usize = 36;
    let (capture, device) = match (name.get(..ID_LEN), name.get(ID_LEN..)) {
        (Some(c), Some("")) => (c, None),
        (Some(c), Some(rest)) => (c, rest.strip_prefix('-')),
        _ => return false,
    };
    if capture.parse::<CaptureId>().is_err() {
        return false;
    }
    match device {
        None => name.len() == ID_LEN,
        // Older folders have no attempt suffix.
        Some(d) => match d.split_once('-') {
            None => is_upload_id(d),
            Some((dev, attempt)) => {
                is_upload_id(dev)
                    && attempt.len() == ATTEMPT_LEN
                    && attempt
                        .bytes()
                        .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn support_folder_names_cannot_escape_the_folder() {
        let id = "017d3e39-f3c3-73ff-8786-d4c4c55a727c";
        let dev = "72b65672c8142a08323d254a501ffc6b";
        assert!(is_support_dir(id));
        assert!(is_support_dir(&format!("{id}-{dev}")));
        assert!(is_support_dir(&format!("{id}-{dev}-0123456789abcdef")));
        let cid: CaptureId = id.parse().expect("a capture id");
        let (a, b) = (support_dir_name(&cid, dev), support_dir_name(&cid, dev));
        assert!(is_support_dir(&a) && is_support_dir(&b), "{a} {b}");
        assert_ne!(a, b, "each attempt gets its own folder");
        for bad in [
            format!("{id}-"),
            format!("{id}-{dev}-"),
            format!("{id}-{dev}-../../etc/passwd"),
            format!("{id}-{dev}-0123456789ABCDEF"),
            format!("{id}-{dev}-0123456789abcdef0"),
            format!("{id}-../../etc"),
            format!("{id}/{dev}"),
            "../../etc/passwd".into(),
            String::new(),
        ] {
            assert!(!is_support_dir(&bad), "{bad}");
        }
    }

    #[test]
    fn upload_ids_cannot_escape_the_folder() {
        assert!(is_upload_id("0123456789abcdef0123456789abcdef"));
        for bad in [
            "",
            "../../etc/passwd",
            "0123456789ABCDEF0123456789ABCDEF",
            "0123456789abcdef0123456789abcde/",
        ] {
            assert!(!is_upload_id(bad), "{bad}");
        }
    }

    #[test]
    fn a_rewrite_discards_bytes_past_the_offset() {
        let dir = tempfile::tempdir().unwrap();
        let b = Blobs::open(dir.path()).unwrap();
        let id = "0123456789abcdef0123456789abcdef";
        b.create_upload(id).unwrap();
        b.write_upload(id, 0, b"hello world").unwrap();
        b.write_upload(id, 5, b"!").unwrap();
        let mut s = String::new();
        b.read_upload(id, 100)
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        assert_eq!(s, "hello!");
        assert_eq!(
            b.digest_upload(id, 6).unwrap(),
            Some(apoyo_sync::wire::crypto::sha256(b"hello!"))
        );
        assert_eq!(b.digest_upload(id, 7).unwrap(), None);
    }

    #[test]
    fn a_write_past_the_bytes_held_is_refused_not_filled() {
        let dir = tempfile::tempdir().unwrap();
        let b = Blobs::open(dir.path()).unwrap();
        let id = "0123456789abcdef0123456789abcdef";
        b.create_upload(id).unwrap();
        b.write_upload(id, 0, b"hello").unwrap();
        let err = b.write_upload(id, 9, b"!").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(
            b.digest_upload(id, 5).unwrap(),
            Some(apoyo_sync::wire::crypto::sha256(b"hello"))
        );
        assert_eq!(
            b.digest_upload(id, 6).unwrap(),
            None,
            "nothing was filled in"
        );
        // A first PATCH finds its file even if the creation's was lost.
        let other = "fedcba9876543210fedcba9876543210";
        b.write_upload(other, 0, b"x").unwrap();
        assert_eq!(
            b.digest_upload(other, 1).unwrap(),
            Some(apoyo_sync::wire::crypto::sha256(b"x"))
        );
    }
}
