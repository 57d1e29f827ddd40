//! Reading one part's bytes in the content phase of a commit (ADRs 0020, 0021): what the
//! commit may conclude from them — the declared bytes (and whether they decrypt), other bytes
//! (`part_mismatch`), or bytes gone (`upload_missing`).
//!
//! - **Kept digest** (the upload's row holds the running SHA-256 and it is the declared one):
//!   the bytes are only decrypted. ChaCha20-Poly1305 under STREAM authenticates every chunk,
//!   its position and the end under the part's key, so bytes that decrypt are the ciphertext
//!   the device sealed; the declared digest, checked against the kept one before any byte was
//!   read, is theirs. One read, no SHA-256.
//! - **Anything else** — no digest kept (a row from before schema 0006, a stock tus server in
//!   front), or the decryption above failed in any way — one pass that hashes the bytes while
//!   it decrypts them, as before ADR 0021's amendment. After a failed decryption this pass
//!   classifies: a digest other than the declared one means the bytes changed on disk after
//!   the upload (`part_mismatch`); the declared digest means the declared bytes themselves do
//!   not decrypt (`undecryptable`). The digest and the decryption see the same bytes in the
//!   same pass, so a file changed between the two passes can never make a permanent
//!   `undecryptable` out of bytes that were not the declared ones: at worst the commit is
//!   `part_mismatch` (the device uploads again) or, if the bytes came back, decided on them.
//! - **No opener** (the verdict is already `undecryptable`: no seal key, a sealed key that does
//!   not open, an earlier part that failed): the digest only, so `part_mismatch` still comes
//!   first.

use std::io::{self, Read};

use apoyo_sync::PartKind;
use apoyo_sync::wire::crypto::PartOpener;
use sha2::{Digest, Sha256};
use zeroize::Zeroize;

use super::parts::Available;
use crate::blob_store::BlobStore;
use crate::error::ApiError;

/// What a part's bytes are.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum PartBytes {
    /// The declared bytes (`sha256` is their digest); `authentic`: they decrypted (always
    /// `false` without an opener).
    Held { sha256: [u8; 32], authentic: bool },
    /// Bytes other than the declared ones: `part_mismatch`.
    Differ,
    /// Fewer bytes on disk than the row promises: `upload_missing`.
    Gone,
}

/// Reads the part `a`; with an opener, decrypts it (the manifest's plaintext goes to
/// `manifest`, images' nowhere). The error is a local failure.
pub(super) fn read_part(
    blobs: &dyn BlobStore,
    a: &Available,
    opener: Option<PartOpener>,
    manifest: &mut Vec<u8>,
) -> Result<PartBytes, ApiError> {
    let Some(mut opener) = opener else {
        return digest_only(blobs, a);
    };
    if a.stored_sha256 == Some(a.declared_sha256) {
        if decrypts(blobs, a, &mut opener, manifest) {
            return Ok(PartBytes::Held {
                sha256: a.declared_sha256,
                authentic: true,
            });
        }
        // The plaintext of the manifest's chunks that did open is not the verdict's: start
        // again (only this part's own: another part's failed pass leaves an opened manifest
        // alone, whatever the order the parts are read in).
        if a.kind == PartKind::Manifest {
            manifest.zeroize();
        }
        #[cfg(test)]
        seam::between_passes();
    }
    hash_while_decrypting(blobs, a, opener, manifest)
}

/// Whether the part's bytes, read once and not hashed, decrypt whole: every byte the row
/// promises read without error, and authentic. Any failure is only `false`: the hashing pass
/// then says what it was.
fn decrypts(
    blobs: &dyn BlobStore,
    a: &Available,
    opener: &mut PartOpener,
    manifest: &mut Vec<u8>,
) -> bool {
    let Ok(file) = blobs.read_upload(&a.upload, a.length) else {
        return false;
    };
    let mut input = Tap::new(file, NoHash);
    let opened = open(opener, a, &mut input, manifest).is_ok();
    opened && input.error.is_none() && input.seen == a.length
}

/// One pass over a part's bytes: their SHA-256 while they are decrypted.
fn hash_while_decrypting(
    blobs: &dyn BlobStore,
    a: &Available,
    mut opener: PartOpener,
    manifest: &mut Vec<u8>,
) -> Result<PartBytes, ApiError> {
    let file = match blobs.read_upload(&a.upload, a.length) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(PartBytes::Gone),
        Err(e) => return Err(e.into()),
    };
    let mut input = Tap::new(file, Sha256::new());
    let authentic = match open(&mut opener, a, &mut input, manifest) {
        Ok(_) => true,
        Err(apoyo_sync::Error::Io(e)) => return Err(e.into()),
        Err(_) => false,
    };
    // A part that failed early is still hashed to its end: `part_mismatch` comes first.
    if let Err(e) = io::copy(&mut input, &mut io::sink()) {
        input.error.get_or_insert(e);
    }
    match input.error {
        Some(e) if e.kind() == io::ErrorKind::NotFound => Ok(PartBytes::Gone),
        Some(e) => Err(e.into()),
        None if input.seen != a.length => Ok(PartBytes::Gone),
        None => Ok(judged(a, input.hasher.finalize().into(), authentic)),
    }
}

/// Nothing to authenticate (the verdict is already `undecryptable`): the digest only.
fn digest_only(blobs: &dyn BlobStore, a: &Available) -> Result<PartBytes, ApiError> {
    match blobs.digest_upload(&a.upload, a.length) {
        Ok(Some(d)) => Ok(judged(a, d, false)),
        Ok(None) => Ok(PartBytes::Gone),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(PartBytes::Gone),
        Err(e) => Err(e.into()),
    }
}

fn judged(a: &Available, sha256: [u8; 32], authentic: bool) -> PartBytes {
    if sha256 == a.declared_sha256 {
        PartBytes::Held { sha256, authentic }
    } else {
        PartBytes::Differ
    }
}

fn open<R: Read>(
    opener: &mut PartOpener,
    a: &Available,
    input: &mut R,
    manifest: &mut Vec<u8>,
) -> apoyo_sync::Result<u64> {
    if a.kind == PartKind::Manifest {
        opener.open_to(a.length, input, manifest)
    } else {
        opener.open_to(a.length, input, &mut io::sink())
    }
}

/// What a [`Tap`] does with the bytes passing through it besides counting them.
trait Fold {
    /// Whether it hashes them (what the unit tests tally).
    #[cfg(test)]
    const HASHES: bool;
    fn update(&mut self, bytes: &[u8]);
}

impl Fold for Sha256 {
    #[cfg(test)]
    const HASHES: bool = true;
    fn update(&mut self, bytes: &[u8]) {
        Digest::update(self, bytes);
    }
}

/// Nothing: the bytes are only decrypted.
struct NoHash;

impl Fold for NoHash {
    #[cfg(test)]
    const HASHES: bool = false;
    fn update(&mut self, _: &[u8]) {}
}

/// A reader that counts what passes through it, folds it into `hasher`, and keeps the first
/// read error (the part opener turns any read error into an integrity failure).
struct Tap<R, H> {
    inner: R,
    hasher: H,
    seen: u64,
    error: Option<io::Error>,
}

impl<R, H> Tap<R, H> {
    fn new(inner: R, hasher: H) -> Self {
        Tap {
            inner,
            hasher,
            seen: 0,
            error: None,
        }
    }
}

impl<R: Read, H: Fold> Read for Tap<R, H> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                self.hasher.update(&buf[..n]);
                self.seen += n as u64;
                #[cfg(test)]
                seam::tally(n as u64, H::HASHES);
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                let copy = io::Error::new(e.kind(), e.to_string());
                self.error.get_or_insert(e);
                Err(copy)
            }
        }
    }
}

/// What the unit tests observe of the reading, on the test's own thread: the bytes read and
/// hashed, and a hook run between a failed decryption and the hashing pass (the race window).
#[cfg(test)]
mod seam {
    use std::cell::{Cell, RefCell};

    thread_local! {
        static READ: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
        static BETWEEN: RefCell<Option<Box<dyn FnOnce()>>> = RefCell::new(None);
    }

    pub(super) fn tally(n: u64, hashed: bool) {
        READ.with(|c| {
            let (read, h) = c.get();
            c.set((read + n, h + if hashed { n } else { 0 }));
        });
    }

    /// (bytes read, bytes hashed) since the last call.
    pub(super) fn take() -> (u64, u64) {
        READ.with(|c| c.replace((0, 0)))
    }

    pub(super) fn on_between_passes(f: impl FnOnce() + 'static) {
        BETWEEN.with(|b| *b.borrow_mut() = Some(Box::new(f)));
    }

    pub(super) fn between_passes() {
        if let Some(f) = BETWEEN.with(|b| b.borrow_mut().take()) {
            f();
        }
    }
}

#[cfg(test)]
mod tests;
