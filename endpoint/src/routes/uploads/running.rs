//! The running SHA-256 of an upload (ADR 0021): the digest of its first `offset` bytes, kept
//! as sha2's serialized state in the upload's row beside the offset, so that the next PATCH,
//! on this replica or another, continues it; the PATCH that completes the upload stores the
//! final digest instead. The commit compares it with the declared digest before reading any
//! byte (a contradicting commit is refused at once); when they agree the commit only decrypts
//! the bytes (the AEAD authenticates them) and hashes them again only when decryption fails,
//! to tell bytes changed on disk after the upload (`part_mismatch`) from bytes that do not
//! decrypt as uploaded (`undecryptable`), in one pass that hashes what it decrypts
//! (`support::reading`; ADR 0021, amendment). So each byte is hashed twice on the usual path:
//! the PATCH's tus checksum and this running digest.
//!
//! The state is sha2's own (`SerializableState`), never a hand-made one. A row without a
//! state past offset 0 (written before schema 0006) keeps none: its upload completes without a
//! stored digest and the commit hashes the bytes, as it did before.

use sha2::digest::common::hazmat::{SerializableState, SerializedState};
use sha2::{Digest, Sha256};

/// What one PATCH writes into the upload's row besides the offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Advance {
    /// The state the PATCH continued from (the row's, when it was read).
    pub(super) from: Option<Vec<u8>>,
    /// The state after the PATCH's bytes (`None` once complete, or when not kept).
    pub(super) state: Option<Vec<u8>>,
    /// The upload's SHA-256, when this PATCH completes it (and the digest was kept).
    pub(super) sha256: Option<[u8; 32]>,
}

/// The running digest of an upload at `offset` whose row holds `state`; `None` when not kept
/// (or unreadable: then the commit hashes the bytes).
fn resume(offset: u64, state: Option<&[u8]>) -> Option<Sha256> {
    let Some(bytes) = state else {
        return (offset == 0).then(Sha256::new);
    };
    let restored = SerializedState::<Sha256>::try_from(bytes)
        .ok()
        .and_then(|s| Sha256::deserialize(&s).ok());
    if restored.is_none() {
        tracing::warn!("an upload's digest state is unreadable; its commit will hash the bytes");
    }
    restored
}

/// The row's digest fields after appending `bytes` at `offset` to an upload whose row holds
/// `from`; `complete` when the bytes end the upload.
pub(super) fn advance(offset: u64, from: Option<Vec<u8>>, bytes: &[u8], complete: bool) -> Advance {
    let (state, sha256) = match resume(offset, from.as_deref()) {
        None => (None, None),
        Some(mut h) => {
            h.update(bytes);
            if complete {
                (None, Some(h.finalize().into()))
            } else {
                (Some(h.serialize().to_vec()), None)
            }
        }
    };
    Advance {
        from,
        state,
        sha256,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha256(b: &[u8]) -> [u8; 32] {
        apoyo_sync::wire::crypto::sha256(b)
    }

    #[test]
    fn a_digest_continued_piece_by_piece_is_the_digest_of_the_whole() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        // Pieces of awkward sizes (not multiples of the 64-byte block), each continued from
        // the serialized state alone, as another replica would.
        let mut offset = 0usize;
        let mut state = None;
        for n in [1usize, 63, 64, 65, 1000, 65_536, 100_000] {
            let end = (offset + n).min(data.len());
            let a = advance(offset as u64, state, &data[offset..end], false);
            assert!(a.sha256.is_none());
            state = a.state;
            assert!(state.is_some());
            offset = end;
        }
        let last = advance(offset as u64, state, &data[offset..], true);
        assert_eq!(last.state, None);
        assert_eq!(last.sha256, Some(sha256(&data)));
    }

    #[test]
    fn a_missing_or_damaged_state_keeps_no_digest() {
        // Past offset 0 without a state (a row from before schema 0006): none kept.
        let a = advance(10, None, b"rest", true);
        assert_eq!((a.state, a.sha256), (None, None));
        // A damaged state (wrong length) is not trusted.
        let a = advance(10, Some(vec![0; 5]), b"rest", true);
        assert_eq!((a.state, a.sha256), (None, None));
        // At offset 0 there is nothing to continue: a fresh digest.
        let a = advance(0, None, b"all", true);
        assert_eq!(a.sha256, Some(sha256(b"all")));
    }
}
