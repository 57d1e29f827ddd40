//! The blob tier's seam (ADR 0019): where part ciphertext lives while uploaded and once a
//! support is decided. The default is a folder ([`Blobs`], `blobs.rs`), private to one
//! endpoint or shared by every replica (NFS, CephFS, a mounted bucket): replicas read each
//! other's uploads at commit, so the folder must be the same one on all of them.
//!
//! With several replicas on one folder, a replica that starts must not remove files another
//! replica is writing (their row is not committed yet): on a shared folder only files older
//! than [`SHARED_ORPHAN_AGE`] that no row names are removed.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use apoyo_sync::PartKind;

use crate::blobs::Blobs;

/// Far longer than any request holds a file before its row commits.
pub(crate) const SHARED_ORPHAN_AGE: Duration = Duration::from_secs(60 * 60);

/// The blob tier as the handlers use it.
pub(crate) trait BlobStore: Send + Sync + std::fmt::Debug {
    /// Creates the empty file of a new upload (not flushed: the first write makes it durable).
    fn create_upload(&self, id: &str) -> io::Result<()>;
    /// Writes `bytes` at `offset` of an upload (discarding anything past `offset`), durably,
    /// with the file's folder entry when `offset` is 0 (creating the file if it is missing);
    /// `UnexpectedEof` when the upload holds fewer than `offset` bytes (ADR 0021).
    fn write_upload(&self, id: &str, offset: u64, bytes: &[u8]) -> io::Result<()>;
    /// Removes an upload's bytes (missing is fine).
    fn remove_upload(&self, id: &str) -> io::Result<()>;
    /// SHA-256 of the first `len` bytes of an upload (`None` if it is shorter).
    fn digest_upload(&self, id: &str, len: u64) -> io::Result<Option<[u8; 32]>>;
    /// A reader over the first `len` bytes of an upload.
    fn read_upload(&self, id: &str, len: u64) -> io::Result<Box<dyn Read + Send>>;
    /// Makes the uploads' bytes the parts of the support folder `folder`, durably.
    fn link_support(&self, folder: &str, parts: &[(PartKind, String)]) -> io::Result<()>;
    /// Removes a support folder whose row did not commit.
    fn unlink_support(&self, folder: &str);
    /// Removes what no row names, given the names rows hold (`live` is asked after the blob
    /// tier has listed its candidates). Returns how many were removed.
    fn remove_orphans(
        &self,
        live: &mut dyn FnMut() -> io::Result<(HashSet<String>, HashSet<String>)>,
    ) -> io::Result<usize>;
}

/// The filesystem blob tier: [`Blobs`] in a folder; `shared` when other replicas use it too.
#[derive(Debug)]
pub(crate) struct FolderBlobs {
    blobs: Blobs,
    root: PathBuf,
    shared: bool,
}

impl FolderBlobs {
    pub(crate) fn open(root: &Path, shared: bool) -> io::Result<FolderBlobs> {
        Ok(FolderBlobs {
            blobs: Blobs::open(root)?,
            root: root.to_path_buf(),
            shared,
        })
    }

    /// On a shared folder: names of entries under `sub` modified at least
    /// [`SHARED_ORPHAN_AGE`] ago.
    fn old_entries(&self, sub: &str) -> io::Result<Vec<String>> {
        let now = SystemTime::now();
        let mut out = Vec::new();
        for entry in fs::read_dir(self.root.join(sub))? {
            let entry = entry?;
            let age = now
                .duration_since(entry.metadata()?.modified()?)
                .unwrap_or_default();
            if age >= SHARED_ORPHAN_AGE {
                out.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        Ok(out)
    }
}

impl BlobStore for FolderBlobs {
    fn create_upload(&self, id: &str) -> io::Result<()> {
        self.blobs.create_upload(id)
    }
    fn write_upload(&self, id: &str, offset: u64, bytes: &[u8]) -> io::Result<()> {
        self.blobs.write_upload(id, offset, bytes)
    }
    fn remove_upload(&self, id: &str) -> io::Result<()> {
        self.blobs.remove_upload(id)
    }
    fn digest_upload(&self, id: &str, len: u64) -> io::Result<Option<[u8; 32]>> {
        self.blobs.digest_upload(id, len)
    }
    fn read_upload(&self, id: &str, len: u64) -> io::Result<Box<dyn Read + Send>> {
        Ok(Box::new(self.blobs.read_upload(id, len)?))
    }
    fn link_support(&self, folder: &str, parts: &[(PartKind, String)]) -> io::Result<()> {
        self.blobs.link_support(folder, parts)
    }
    fn unlink_support(&self, folder: &str) {
        self.blobs.unlink_support(folder)
    }

    fn remove_orphans(
        &self,
        live: &mut dyn FnMut() -> io::Result<(HashSet<String>, HashSet<String>)>,
    ) -> io::Result<usize> {
        if !self.shared {
            let (uploads, supports) = live()?;
            return self.blobs.remove_orphans(&uploads, &supports);
        }
        // Candidates first, rows second: a file old enough to be a candidate had its row
        // committed (or abandoned) long before the rows are read.
        let old_uploads = self.old_entries("uploads")?;
        let old_supports = self.old_entries("supports")?;
        let (uploads, supports) = live()?;
        let mut removed = 0;
        for id in old_uploads.iter().filter(|id| !uploads.contains(*id)) {
            if crate::blobs::is_upload_id(id) {
                self.blobs.remove_upload(id)?;
                removed += 1;
            }
        }
        for dir in old_supports.iter().filter(|d| !supports.contains(*d)) {
            self.blobs.unlink_support(dir);
            removed += 1;
        }
        Ok(removed)
    }
}
