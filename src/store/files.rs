//! Where part files live: one file per capture under `parts/`, holding its part ciphertexts
//! back to back and, last, a trailer (`trailer.rs`) that makes the file a complete,
//! self-describing record of the capture; `damaged/` for files that fail to authenticate at
//! open. Writing a part file is `part_writer.rs`.
//!
//! A capture's file, trailer included, is written and fdatasync'd, and the folder fsync'd,
//! *before* the SQLite transaction that indexes the capture commits (ADR 0013). The file is the
//! durable record: that commit skips its own flush (`synchronous=NORMAL` for that one
//! transaction), and if a power loss rolls the rows back, the next open rebuilds them from the
//! file (`recover.rs`). A file without a trailer is a capture that was never completed, let
//! alone reported, and is removed at the next open.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::model::{CaptureId, PartKind};

pub const PARTS_DIR: &str = "parts";
/// Where part files that carry a trailer but fail to authenticate are moved, never deleted.
pub const DAMAGED_DIR: &str = "damaged";
const EXT: &str = "parts";

pub fn parts_dir(store: &Path) -> PathBuf {
    store.join(PARTS_DIR)
}

pub fn part_file(store: &Path, id: &CaptureId) -> PathBuf {
    parts_dir(store).join(format!("{id}.{EXT}"))
}

/// Where a part lies in its file: (kind, offset, ciphertext length).
pub type PartSpan = (PartKind, u64, u64);

/// Capture ids of the part files present on disk.
pub fn list_part_files(store: &Path) -> Result<Vec<(PathBuf, Option<CaptureId>)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(parts_dir(store))? {
        let path = entry?.path();
        let id = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(&format!(".{EXT}")))
            .and_then(|s| s.parse::<CaptureId>().ok());
        out.push((path, id));
    }
    Ok(out)
}
