//! The part-file trailer (format 1, ADR 0013): the last bytes of a part file, which make it a
//! complete, self-describing record of its capture, and shredding its copy of the key wrap at
//! purge.

use std::fs;
use std::path::Path;

use super::files::PartSpan;
use crate::crypto::wrap::WRAP_LEN;
use crate::error::Result;
use crate::model::PartKind;

/// The last [`Trailer::LEN`] bytes of a part file (format 1): what it takes to rebuild the
/// capture's queue rows from the file alone, with the device's keys.
///
/// ```text
/// 0..40     the five parts' ciphertext lengths, u64 big-endian, in PartKind::ALL order
///           (front, back, selfie, signature, manifest); the parts lie back to back from 0
/// 40..113   the data key wrapped under the device master key (the same 73 bytes as
///           capture_keys.device_wrap: bound to "data-key" and the capture id)
/// 113..119  zero
/// 119       format version, 1
/// 120..128  "APOYOCAP"
/// ```
///
/// Nothing in it is personal data. Its integrity needs no tag of its own: a wrong length or a
/// wrong wrap makes the STREAM or the wrap fail to authenticate, and the manifest (authenticated)
/// names the capture id. It is written after every part byte, so after a kill a file with a
/// trailer has all its bytes (the page cache keeps write order for a surviving kernel); after
/// a power loss before the flush ended, the parts may not authenticate, and the file is moved
/// to [`DAMAGED_DIR`](super::files::DAMAGED_DIR) rather than deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trailer {
    pub part_lens: [u64; 5],
    pub device_wrap: [u8; WRAP_LEN],
}

impl Trailer {
    pub const LEN: usize = 128;
    const MAGIC: &'static [u8; 8] = b"APOYOCAP";
    const VERSION: u8 = 1;

    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        for (i, len) in self.part_lens.iter().enumerate() {
            out[i * 8..i * 8 + 8].copy_from_slice(&len.to_be_bytes());
        }
        out[40..40 + WRAP_LEN].copy_from_slice(&self.device_wrap);
        out[119] = Self::VERSION;
        out[120..].copy_from_slice(Self::MAGIC);
        out
    }

    /// `None` unless `bytes` is exactly a format-1 trailer.
    pub fn decode(bytes: &[u8]) -> Option<Trailer> {
        let bytes: &[u8; Self::LEN] = bytes.try_into().ok()?;
        if &bytes[120..] != Self::MAGIC
            || bytes[119] != Self::VERSION
            || bytes[40 + WRAP_LEN..119].iter().any(|b| *b != 0)
        {
            return None;
        }
        let mut part_lens = [0u64; 5];
        for (i, len) in part_lens.iter_mut().enumerate() {
            *len = u64::from_be_bytes(bytes[i * 8..i * 8 + 8].try_into().ok()?);
        }
        Some(Trailer {
            part_lens,
            device_wrap: bytes[40..40 + WRAP_LEN].try_into().ok()?,
        })
    }

    /// Each part's kind, offset and ciphertext length, and the file length they imply
    /// (`None` on overflow).
    pub fn layout(&self) -> Option<(Vec<PartSpan>, u64)> {
        let mut offset = 0u64;
        let mut parts = Vec::with_capacity(PartKind::ALL.len());
        for (kind, len) in PartKind::ALL.into_iter().zip(self.part_lens) {
            parts.push((kind, offset, len));
            offset = offset.checked_add(len)?;
        }
        Some((parts, offset.checked_add(Self::LEN as u64)?))
    }
}

/// Overwrites the trailer of the part file at `path` with zeros and flushes it, so the copy of
/// the device wrap it holds is gone from the file before the file is removed (purge, ADR 0006).
/// A missing file or one without a trailer is left alone.
pub fn shred_trailer(path: &Path) -> Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = match fs::OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let Some(at) = f.metadata()?.len().checked_sub(Trailer::LEN as u64) else {
        return Ok(());
    };
    let mut bytes = [0u8; Trailer::LEN];
    f.seek(SeekFrom::Start(at))?;
    f.read_exact(&mut bytes)?;
    if Trailer::decode(&bytes).is_none() {
        return Ok(());
    }
    super::part_fs::write_at(&f, path, &[0u8; Trailer::LEN], at)?;
    super::part_fs::sync_data(&f, path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::PartKind;

    #[test]
    fn a_trailer_round_trips_and_nothing_else_decodes() {
        let t = Trailer {
            part_lens: [600_016, 1, 0, u64::MAX - 7, 300],
            device_wrap: std::array::from_fn(|i| i as u8),
        };
        let bytes = t.encode();
        assert_eq!(Trailer::decode(&bytes), Some(t.clone()));
        assert_eq!(&bytes[120..], b"APOYOCAP");
        // Overflowing lengths decode but give no layout.
        assert_eq!(t.layout(), None);
        let ok = Trailer {
            part_lens: [10, 20, 30, 40, 50],
            ..t
        };
        let (parts, len) = ok.layout().unwrap();
        assert_eq!(len, 150 + Trailer::LEN as u64);
        assert_eq!(parts[2], (PartKind::Selfie, 30, 30));
        assert_eq!(parts[4], (PartKind::Manifest, 100, 50));
        let bytes = ok.encode();
        for at in [113, 118, 119, 120, 127] {
            let mut bad = bytes;
            bad[at] ^= 1;
            assert_eq!(Trailer::decode(&bad), None, "byte {at} changed");
        }
        assert_eq!(Trailer::decode(&bytes[1..]), None);
        assert_eq!(Trailer::decode(&[0; Trailer::LEN]), None);
    }

    #[test]
    fn shredding_zeroes_the_trailer_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let t = Trailer {
            part_lens: [3, 0, 0, 0, 0],
            device_wrap: [9; WRAP_LEN],
        };
        let path = dir.path().join("a.parts");
        let mut bytes = b"abc".to_vec();
        bytes.extend_from_slice(&t.encode());
        fs::write(&path, &bytes).unwrap();
        shred_trailer(&path).unwrap();
        let after = fs::read(&path).unwrap();
        assert_eq!(&after[..3], b"abc");
        assert_eq!(&after[3..], &[0u8; Trailer::LEN][..]);
        // No trailer (or no file): left alone.
        let other = dir.path().join("b.parts");
        fs::write(&other, vec![7u8; 300]).unwrap();
        shred_trailer(&other).unwrap();
        assert_eq!(fs::read(&other).unwrap(), vec![7u8; 300]);
        shred_trailer(&dir.path().join("missing.parts")).unwrap();
    }
}
