//! Unit tests of reading a part at commit, on real files in a real blob folder: with a kept
//! digest the bytes are read once and not hashed; any failed decryption is classified by a pass
//! that hashes the very bytes it decrypts, so bytes changed on disk are `Differ`
//! (`part_mismatch`), never a recorded `undecryptable`, even when they change between passes.

use std::fs;
use std::path::PathBuf;

use apoyo_sync::testkit::crypto::{PartSealer, SecretKey, random_key, sha256};

use super::*;
use crate::blob_store::FolderBlobs;

const CAPTURE: [u8; 16] = [7; 16];
const UPLOAD: &str = "0123456789abcdef0123456789abcdef";
/// Three STREAM chunks (64 KiB each, the last short).
const PLAIN_LEN: usize = 150_000;

/// A sealed part uploaded to a blob folder, as a completed upload leaves it.
struct Uploaded {
    dir: tempfile::TempDir,
    blobs: FolderBlobs,
    key: SecretKey,
    kind: PartKind,
    plain: Vec<u8>,
    /// The bytes the device uploaded (and declares, and the endpoint kept the digest of).
    uploaded: Vec<u8>,
}

impl Uploaded {
    /// A part of `kind` sealed by the device; `damage` changes the ciphertext before it is
    /// uploaded (the device declares the digest of what it uploads).
    fn new(kind: PartKind, damage: impl FnOnce(&mut Vec<u8>)) -> Uploaded {
        let dir = tempfile::tempdir().unwrap();
        let blobs = FolderBlobs::open(dir.path(), false).unwrap();
        let key = random_key().unwrap();
        let plain: Vec<u8> = (0..PLAIN_LEN).map(|i| (i * 31 % 251) as u8).collect();
        let mut uploaded = Vec::new();
        PartSealer::new(&key, &CAPTURE, kind)
            .unwrap()
            .seal_to(&plain, &mut uploaded)
            .unwrap();
        damage(&mut uploaded);
        blobs.create_upload(UPLOAD).unwrap();
        blobs.write_upload(UPLOAD, 0, &uploaded).unwrap();
        Uploaded {
            dir,
            blobs,
            key,
            kind,
            plain,
            uploaded,
        }
    }

    fn genuine(kind: PartKind) -> Uploaded {
        Uploaded::new(kind, |_| {})
    }

    /// What the commit's read phase hands over: the declared length and digest, and the
    /// running digest kept in the row (`kept`) or none.
    fn available(&self, kept: bool) -> Available {
        let digest = sha256(&self.uploaded);
        Available {
            kind: self.kind,
            upload: UPLOAD.into(),
            length: self.uploaded.len() as u64,
            declared_length: self.uploaded.len() as u64,
            declared_sha256: digest,
            stored_sha256: kept.then_some(digest),
        }
    }

    fn len(&self) -> u64 {
        self.uploaded.len() as u64
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("uploads").join(UPLOAD)
    }

    /// Flips one byte of the file on disk (behind the endpoint's back).
    fn flip(&self, at: usize) {
        flip_at(&self.path(), at);
    }

    /// Reads the part as the content phase does (with an opener) and what it read and
    /// hashed to do it.
    fn read(&self, a: &Available, manifest: &mut Vec<u8>) -> (PartBytes, (u64, u64)) {
        let opener = PartOpener::new(&self.key, &CAPTURE, self.kind).unwrap();
        seam::take();
        let found = read_part(&self.blobs, a, Some(opener), manifest).unwrap();
        (found, seam::take())
    }
}

fn flip_at(path: &std::path::Path, at: usize) {
    let mut bytes = fs::read(path).unwrap();
    bytes[at] ^= 1;
    fs::write(path, bytes).unwrap();
}

#[test]
fn with_a_kept_digest_the_bytes_are_read_once_and_not_hashed() {
    let part = Uploaded::genuine(PartKind::Selfie);
    let held = PartBytes::Held {
        sha256: sha256(&part.uploaded),
        authentic: true,
    };
    let (found, (read, hashed)) = part.read(&part.available(true), &mut Vec::new());
    assert_eq!(found, held);
    assert_eq!((read, hashed), (part.len(), 0), "one read, no SHA-256");
    // Without a kept digest (an old row, a stock tus server): hashed while decrypted.
    let (found, tally) = part.read(&part.available(false), &mut Vec::new());
    assert_eq!(found, held);
    assert_eq!(tally, (part.len(), part.len()));
}

#[test]
fn the_manifest_is_decrypted_once_into_the_buffer() {
    let part = Uploaded::genuine(PartKind::Manifest);
    let mut manifest = Vec::new();
    let (found, tally) = part.read(&part.available(true), &mut manifest);
    assert!(matches!(
        found,
        PartBytes::Held {
            authentic: true,
            ..
        }
    ));
    assert_eq!(tally, (part.len(), 0));
    assert!(manifest == part.plain, "the plaintext, once");
}

#[test]
fn a_byte_changed_on_disk_after_the_upload_is_a_mismatch() {
    // In the first chunk, the last one, and the version byte.
    for at in [10, PLAIN_LEN, 0] {
        let part = Uploaded::genuine(PartKind::Front);
        part.flip(at);
        let (found, (read, hashed)) = part.read(&part.available(true), &mut Vec::new());
        assert_eq!(found, PartBytes::Differ, "byte {at}");
        assert_eq!(hashed, part.len(), "the classifying pass hashed every byte");
        assert!(
            read > part.len(),
            "the failed decryption, then the classifying pass"
        );
        // The same without a kept digest (one pass, as before).
        let (found, tally) = part.read(&part.available(false), &mut Vec::new());
        assert_eq!(found, PartBytes::Differ, "byte {at}");
        assert_eq!(tally, (part.len(), part.len()));
    }
}

#[test]
fn a_part_undecryptable_as_uploaded_is_undecryptable() {
    for at in [10, PLAIN_LEN, 0] {
        let part = Uploaded::new(PartKind::Signature, |ct| ct[at] ^= 1);
        let (found, (_, hashed)) = part.read(&part.available(true), &mut Vec::new());
        assert_eq!(
            found,
            PartBytes::Held {
                sha256: sha256(&part.uploaded),
                authentic: false
            },
            "byte {at}"
        );
        assert_eq!(hashed, part.len());
    }
}

#[test]
fn bytes_missing_on_disk_are_gone() {
    let part = Uploaded::genuine(PartKind::Back);
    let a = part.available(true);
    fs::OpenOptions::new()
        .write(true)
        .open(part.path())
        .unwrap()
        .set_len(part.len() - 1)
        .unwrap();
    assert_eq!(part.read(&a, &mut Vec::new()).0, PartBytes::Gone);
    fs::remove_file(part.path()).unwrap();
    assert_eq!(part.read(&a, &mut Vec::new()).0, PartBytes::Gone);
}

#[test]
fn bytes_changed_between_the_passes_are_never_undecryptable() {
    // Undecryptable as uploaded, then changed on disk after the failed decryption: the
    // classifying pass sees other bytes than the declared ones, so `part_mismatch` (not
    // recorded), never a permanent `undecryptable`.
    let part = Uploaded::new(PartKind::Selfie, |ct| ct[10] ^= 1);
    let path = part.path();
    seam::on_between_passes(move || flip_at(&path, 70_000));
    let (found, _) = part.read(&part.available(true), &mut Vec::new());
    assert_eq!(found, PartBytes::Differ);
    // Changed on disk (in the second chunk), then back before the classifying pass: the
    // verdict is on the bytes that pass read, the declared ones, which decrypt; the manifest's
    // plaintext of the failed pass's first chunk is not kept beside it.
    let part = Uploaded::genuine(PartKind::Manifest);
    part.flip(70_000);
    let path = part.path();
    seam::on_between_passes(move || flip_at(&path, 70_000));
    let mut manifest = Vec::new();
    let (found, (_, hashed)) = part.read(&part.available(true), &mut manifest);
    assert!(matches!(
        found,
        PartBytes::Held {
            authentic: true,
            ..
        }
    ));
    assert_eq!(hashed, part.len());
    assert!(manifest == part.plain, "only the verdict's plaintext");
}

#[test]
fn without_an_opener_only_the_digest_is_checked() {
    let part = Uploaded::genuine(PartKind::Front);
    let a = part.available(true);
    let found = read_part(&part.blobs, &a, None, &mut Vec::new()).unwrap();
    assert_eq!(
        found,
        PartBytes::Held {
            sha256: sha256(&part.uploaded),
            authentic: false
        }
    );
    part.flip(10);
    let found = read_part(&part.blobs, &a, None, &mut Vec::new()).unwrap();
    assert_eq!(found, PartBytes::Differ);
}

/// Benchmark, run by hand: the commit's read of one ≈2 MB part with a kept digest (decrypt
/// only) against the same part without one (hash while decrypting), alternated in one run;
/// prints the medians and their ratio. `cargo test --release -p apoyo-endpoint --lib
/// bench_kept_digest -- --ignored --nocapture`.
#[test]
#[ignore = "a benchmark, run by hand"]
fn bench_kept_digest_vs_hash_while_decrypting() {
    const PLAIN: usize = 2_000_000;
    let dir = tempfile::tempdir().unwrap();
    let blobs = FolderBlobs::open(dir.path(), false).unwrap();
    let key = random_key().unwrap();
    let plain: Vec<u8> = (0..PLAIN).map(|i| (i * 31 % 251) as u8).collect();
    let mut sealed = Vec::new();
    PartSealer::new(&key, &CAPTURE, PartKind::Selfie)
        .unwrap()
        .seal_to(&plain, &mut sealed)
        .unwrap();
    blobs.create_upload(UPLOAD).unwrap();
    blobs.write_upload(UPLOAD, 0, &sealed).unwrap();
    let digest = sha256(&sealed);
    let available = |kept: bool| Available {
        kind: PartKind::Selfie,
        upload: UPLOAD.into(),
        length: sealed.len() as u64,
        declared_length: sealed.len() as u64,
        declared_sha256: digest,
        stored_sha256: kept.then_some(digest),
    };
    let (kept, not_kept) = (available(true), available(false));
    let time = |a: &Available| {
        let opener = PartOpener::new(&key, &CAPTURE, PartKind::Selfie).unwrap();
        let start = std::time::Instant::now();
        let found = read_part(&blobs, a, Some(opener), &mut Vec::new()).unwrap();
        assert!(matches!(
            found,
            PartBytes::Held {
                authentic: true,
                ..
            }
        ));
        start.elapsed().as_secs_f64() * 1e3
    };
    let (mut fast, mut full) = (Vec::new(), Vec::new());
    for _ in 0..61 {
        fast.push(time(&kept));
        full.push(time(&not_kept));
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (fast, full) = (median(&mut fast), median(&mut full));
    println!(
        "commit read of a {} B part: kept digest {fast:.3} ms, hash while decrypting \
         {full:.3} ms, ratio {:.3}",
        sealed.len(),
        fast / full
    );
}
