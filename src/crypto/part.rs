//! Chunked authenticated encryption of one capture part (STREAM, Hoang-Reyhanitabar-Rogaway-
//! Vizár, as implemented by `aead-stream` over ChaCha20-Poly1305).
//!
//! Ciphertext format of a part (exactly the bytes stored on the phone and uploaded):
//! `version(1) || chunk_0 || … || chunk_{n-1}`, each chunk the ChaCha20-Poly1305 encryption of
//! up to [`CHUNK_SIZE`] plaintext bytes followed by its 16-byte tag; every chunk but the last
//! is full; an empty plaintext is one empty chunk. The key is
//! `HKDF-SHA256(data_key, info = "part" || capture_id || kind)`; the STREAM nonce is a
//! 32-bit big-endian chunk counter plus a last-chunk flag (so chunks cannot be reordered or the
//! part truncated); the associated data of chunk *i* is
//! `"apoyo-sync/v1/part" || version || capture_id(16) || kind(1) || i (u32 BE) || 0x00 × 24`
//! (64 bytes), so parts cannot be swapped between captures or kinds. The 24 zero bytes pad the
//! associated data to a multiple of Poly1305's 16-byte block *and* of the 4-block stride of its
//! AVX2 backend: with 40 bytes the vectorised path never realigns and sealing ran 15 % slower
//! (measured in `benches/seal.rs`).

use std::io::{Read, Write};

use aead_stream::{NewStream, StreamBE32, StreamPrimitive};
use chacha20poly1305::ChaCha20Poly1305;
use chacha20poly1305::aead::KeyInit;
use zeroize::{Zeroize, Zeroizing};

use super::{CIPHERTEXT_VERSION, SecretKey, derive_key};
use crate::error::{Error, Result};
use crate::limits::CHUNK_SIZE;
use crate::model::PartKind;

const TAG: usize = 16;
const AD_PREFIX: &[u8] = b"apoyo-sync/v1/part";
/// Associated data length: 40 meaningful bytes, zero-padded to 64.
const AD_LEN: usize = 64;

/// Length of the ciphertext of a `plain_len`-byte part.
pub fn ciphertext_len(plain_len: u64) -> u64 {
    let chunks = plain_len.div_ceil(CHUNK_SIZE as u64).max(1);
    1 + plain_len + chunks * TAG as u64
}

/// Length of the plaintext inside a `ct_len`-byte part ciphertext, if `ct_len` is well formed.
pub fn plaintext_len(ct_len: u64) -> Option<u64> {
    let body = ct_len.checked_sub(1)?;
    let full = (CHUNK_SIZE + TAG) as u64;
    let chunks = body.div_ceil(full).max(1);
    let last = body - (chunks - 1) * full;
    // The last chunk holds its tag and, unless it is the only chunk, at least one byte: an
    // empty chunk after a full one is not what chunking produces (docs/protocol.md §5.2).
    let least = if chunks == 1 { TAG } else { TAG + 1 } as u64;
    if last < least {
        return None;
    }
    Some(body - chunks * TAG as u64)
}

struct PartCipher {
    stream: StreamBE32<ChaCha20Poly1305>,
    ad: [u8; AD_LEN],
}

impl PartCipher {
    fn new(data_key: &SecretKey, capture_id: &[u8; 16], kind: PartKind) -> Result<Self> {
        let key = derive_key(data_key.as_bytes(), &[b"part", capture_id, &[kind.code()]])?;
        let aead = ChaCha20Poly1305::new_from_slice(key.as_bytes())
            .map_err(|_| Error::Crypto("part key length"))?;
        // A fresh key per (capture, part), so the nonce prefix can be constant.
        let stream = StreamBE32::from_aead(aead, &Default::default());
        let mut ad = [0u8; AD_LEN];
        ad[..18].copy_from_slice(AD_PREFIX);
        ad[18] = CIPHERTEXT_VERSION;
        ad[19..35].copy_from_slice(capture_id);
        ad[35] = kind.code();
        Ok(PartCipher { stream, ad })
    }

    fn ad_for(&self, index: u32) -> [u8; AD_LEN] {
        let mut ad = self.ad;
        ad[36..40].copy_from_slice(&index.to_be_bytes());
        ad
    }
}

/// Number of chunks in the ciphertext of a `plain_len`-byte part (an empty part is one empty
/// chunk).
pub fn chunk_count(plain_len: usize) -> usize {
    plain_len.div_ceil(CHUNK_SIZE).max(1)
}

/// Where the bytes [`PartSealer::seal_chunk`] gives for chunk `index` go in the part's
/// ciphertext: chunk 0 carries the version byte and starts the part; chunk *i* > 0 starts
/// after the version byte and *i* full sealed chunks.
pub fn chunk_offset(index: usize) -> u64 {
    if index == 0 {
        0
    } else {
        1 + index as u64 * (CHUNK_SIZE + TAG) as u64
    }
}

/// An [`aead::Buffer`](chacha20poly1305::aead::Buffer) over a `Vec` past its first `head`
/// bytes, so chunk 0 can be sealed in place right after the version byte.
struct Tail<'a> {
    buf: &'a mut Vec<u8>,
    head: usize,
}

impl AsRef<[u8]> for Tail<'_> {
    fn as_ref(&self) -> &[u8] {
        &self.buf[self.head..]
    }
}

impl AsMut<[u8]> for Tail<'_> {
    fn as_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.head..]
    }
}

impl chacha20poly1305::aead::Buffer for Tail<'_> {
    fn extend_from_slice(&mut self, other: &[u8]) -> chacha20poly1305::aead::Result<()> {
        self.buf.extend_from_slice(other);
        Ok(())
    }
    fn truncate(&mut self, len: usize) {
        self.buf.truncate(self.head + len);
    }
}

/// Encrypts one part. Memory use: one chunk. Chunks are independent (STREAM's position and
/// last-chunk flag are explicit), so [`PartSealer::seal_chunk`] may seal them in any order,
/// from several threads at once (`PartSealer` is `Sync`).
pub struct PartSealer {
    cipher: PartCipher,
}

impl PartSealer {
    pub fn new(data_key: &SecretKey, capture_id: &[u8; 16], kind: PartKind) -> Result<Self> {
        Ok(PartSealer {
            cipher: PartCipher::new(data_key, capture_id, kind)?,
        })
    }

    /// Seals `plaintext` into `out`; returns the number of ciphertext bytes written.
    pub fn seal_to<W: Write + ?Sized>(&mut self, plaintext: &[u8], out: &mut W) -> Result<u64> {
        let mut buf: Vec<u8> = Vec::with_capacity(1 + CHUNK_SIZE + TAG);
        self.seal_with_buffer(plaintext, out, &mut buf)
    }

    /// As [`PartSealer::seal_to`], reusing the caller's chunk buffer.
    pub fn seal_with_buffer<W: Write + ?Sized>(
        &mut self,
        plaintext: &[u8],
        out: &mut W,
        buf: &mut Vec<u8>,
    ) -> Result<u64> {
        let mut written = 0u64;
        for index in 0..chunk_count(plaintext.len()) {
            self.seal_chunk(plaintext, index, buf)?;
            out.write_all(buf)?;
            written += buf.len() as u64;
        }
        Ok(written)
    }

    /// Replaces `buf`'s contents with chunk `index` of the ciphertext of `plaintext` (the
    /// whole part's plaintext): the sealed chunk, preceded by the version byte for chunk 0.
    /// Those bytes belong at [`chunk_offset`]`(index)` of the part's ciphertext; sealing every
    /// index below [`chunk_count`]`(plaintext.len())` and placing each there gives exactly the
    /// bytes of [`PartSealer::seal_to`]. `buf` needs room for `1 + CHUNK_SIZE + 16` bytes.
    pub fn seal_chunk(&self, plaintext: &[u8], index: usize, buf: &mut Vec<u8>) -> Result<()> {
        let n = chunk_count(plaintext.len());
        if index >= n {
            return Err(Error::Internal(format!(
                "chunk {index} of a {n}-chunk part"
            )));
        }
        let position = u32::try_from(index).map_err(|_| Error::Crypto("too many chunks"))?;
        let start = index * CHUNK_SIZE;
        let chunk = &plaintext[start..plaintext.len().min(start + CHUNK_SIZE)];
        buf.clear();
        let head = if index == 0 {
            buf.push(CIPHERTEXT_VERSION);
            1
        } else {
            0
        };
        buf.extend_from_slice(chunk);
        let ad = self.cipher.ad_for(position);
        self.cipher
            .stream
            .encrypt_in_place(position, index + 1 == n, &ad, &mut Tail { buf, head })
            .map_err(|_| Error::Crypto("part encryption"))
    }
}

/// Decrypts one part, streaming. Memory use: one chunk.
pub struct PartOpener {
    cipher: PartCipher,
    kind: PartKind,
}

impl PartOpener {
    pub fn new(data_key: &SecretKey, capture_id: &[u8; 16], kind: PartKind) -> Result<Self> {
        Ok(PartOpener {
            cipher: PartCipher::new(data_key, capture_id, kind)?,
            kind,
        })
    }

    /// Reads exactly `ct_len` ciphertext bytes from `input` and writes the plaintext to `out`.
    /// Any tampering, truncation, reordering or swap gives [`Error::Integrity`] naming the part
    /// kind. Returns the plaintext length. The chunk buffer, which holds plaintext, is wiped
    /// before this returns, whatever the outcome.
    pub fn open_to<R: Read, W: Write>(
        &mut self,
        ct_len: u64,
        input: R,
        out: &mut W,
    ) -> Result<u64> {
        // `Zeroizing` wipes it again on drop, which also covers an unwinding panic in `out`.
        let mut buf = Zeroizing::new(Vec::with_capacity(CHUNK_SIZE + TAG));
        self.open_with_buffer(ct_len, input, out, &mut buf)
    }

    /// As [`PartOpener::open_to`], in the caller's chunk buffer, which is left zeroed over its
    /// whole capacity (its length set to the capacity) on success and on failure alike: a
    /// short last chunk would otherwise leave the previous chunk's plaintext past its end.
    fn open_with_buffer<R: Read, W: Write>(
        &mut self,
        ct_len: u64,
        input: R,
        out: &mut W,
        buf: &mut Vec<u8>,
    ) -> Result<u64> {
        let result = self.open_chunks(ct_len, input, out, buf);
        buf.resize(buf.capacity(), 0);
        buf.as_mut_slice().zeroize();
        result
    }

    fn open_chunks<R: Read, W: Write>(
        &mut self,
        ct_len: u64,
        mut input: R,
        out: &mut W,
        buf: &mut Vec<u8>,
    ) -> Result<u64> {
        let what = || Error::integrity(format!("{} part", self.kind.name()));
        let expected_plain = plaintext_len(ct_len).ok_or_else(what)?;
        let mut version = [0u8; 1];
        read_exact(&mut input, &mut version).map_err(|_| what())?;
        if version[0] != CIPHERTEXT_VERSION {
            return Err(Error::CiphertextVersion(version[0]));
        }
        let mut remaining = ct_len - 1;
        // Room for a whole chunk up front: `resize` below then never reallocates, which would
        // free a copy of earlier plaintext unwiped.
        buf.clear();
        buf.reserve(CHUNK_SIZE + TAG);
        let mut index: u32 = 0;
        let mut plain = 0u64;
        loop {
            let this = remaining.min((CHUNK_SIZE + TAG) as u64) as usize;
            let last = remaining <= (CHUNK_SIZE + TAG) as u64;
            buf.resize(this, 0);
            read_exact(&mut input, buf).map_err(|_| what())?;
            let ad = self.cipher.ad_for(index);
            self.cipher
                .stream
                .decrypt_in_place(index, last, &ad, buf)
                .map_err(|_| what())?;
            out.write_all(buf)?;
            plain += buf.len() as u64;
            remaining -= this as u64;
            if last {
                break;
            }
            index = index.checked_add(1).ok_or_else(what)?;
        }
        if plain != expected_plain {
            return Err(what());
        }
        Ok(plain)
    }
}

fn read_exact<R: Read>(r: &mut R, buf: &mut [u8]) -> std::io::Result<()> {
    r.read_exact(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::random_key;

    fn roundtrip(len: usize) {
        let dk = random_key().unwrap();
        let id = [3u8; 16];
        let pt: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
        let mut ct = Vec::new();
        let n = PartSealer::new(&dk, &id, PartKind::Selfie)
            .unwrap()
            .seal_to(&pt, &mut ct)
            .unwrap();
        assert_eq!(n as usize, ct.len());
        assert_eq!(ciphertext_len(len as u64), ct.len() as u64);
        assert_eq!(plaintext_len(ct.len() as u64), Some(len as u64));
        let mut back = Vec::new();
        PartOpener::new(&dk, &id, PartKind::Selfie)
            .unwrap()
            .open_to(ct.len() as u64, &ct[..], &mut back)
            .unwrap();
        assert_eq!(back, pt);
    }

    #[test]
    fn roundtrips_at_chunk_boundaries() {
        for len in [
            0,
            1,
            CHUNK_SIZE - 1,
            CHUNK_SIZE,
            CHUNK_SIZE + 1,
            3 * CHUNK_SIZE,
            600_000,
        ] {
            roundtrip(len);
        }
    }

    #[test]
    fn chunks_sealed_in_any_order_give_the_same_bytes() {
        let dk = random_key().unwrap();
        let id = [5u8; 16];
        for len in [0, 1, CHUNK_SIZE, CHUNK_SIZE + 1, 3 * CHUNK_SIZE + 10] {
            let pt: Vec<u8> = (0..len).map(|i| (i * 7 % 253) as u8).collect();
            let mut whole = Vec::new();
            PartSealer::new(&dk, &id, PartKind::Back)
                .unwrap()
                .seal_to(&pt, &mut whole)
                .unwrap();
            let sealer = PartSealer::new(&dk, &id, PartKind::Back).unwrap();
            let mut pieced = vec![0u8; ciphertext_len(len as u64) as usize];
            let mut buf = Vec::new();
            for index in (0..chunk_count(len)).rev() {
                sealer.seal_chunk(&pt, index, &mut buf).unwrap();
                let at = chunk_offset(index) as usize;
                pieced[at..at + buf.len()].copy_from_slice(&buf);
            }
            assert_eq!(pieced, whole, "{len}-byte part");
            assert!(sealer.seal_chunk(&pt, chunk_count(len), &mut buf).is_err());
        }
    }

    /// The chunk buffer holds plaintext: it is wiped over its whole capacity after opening,
    /// after a success and after a failure alike. A full chunk then a short last one leaves
    /// the first chunk's plaintext past the buffer's length unless the whole capacity is wiped.
    #[test]
    fn the_chunk_buffer_is_wiped_after_opening() {
        let dk = random_key().unwrap();
        let id = [6u8; 16];
        let pt = vec![0x5au8; CHUNK_SIZE + 10];
        let mut ct = Vec::new();
        PartSealer::new(&dk, &id, PartKind::Selfie)
            .unwrap()
            .seal_to(&pt, &mut ct)
            .unwrap();
        let assert_wiped = |buf: &Vec<u8>, when: &str| {
            assert!(buf.capacity() >= CHUNK_SIZE + TAG, "{when}: capacity");
            assert_eq!(buf.len(), buf.capacity(), "{when}: not wiped to capacity");
            assert!(buf.iter().all(|&b| b == 0), "{when}: plaintext left");
        };

        let mut buf = Vec::new();
        let mut out = Vec::new();
        let n = PartOpener::new(&dk, &id, PartKind::Selfie)
            .unwrap()
            .open_with_buffer(ct.len() as u64, &ct[..], &mut out, &mut buf)
            .unwrap();
        assert_eq!(n as usize, pt.len());
        assert_eq!(out, pt);
        assert_wiped(&buf, "after a success");

        // The last chunk tampered: the first one was decrypted into the buffer already.
        let mut tampered = ct.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 0x01;
        let mut buf = Vec::new();
        let r = PartOpener::new(&dk, &id, PartKind::Selfie)
            .unwrap()
            .open_with_buffer(
                tampered.len() as u64,
                &tampered[..],
                &mut std::io::sink(),
                &mut buf,
            );
        assert!(matches!(r, Err(Error::Integrity { .. })), "{r:?}");
        assert_wiped(&buf, "after a failure");
    }

    #[test]
    fn detects_tamper_truncation_swap_and_reorder() {
        let dk = random_key().unwrap();
        let id = [3u8; 16];
        let pt = vec![0x5au8; 3 * CHUNK_SIZE + 10];
        let mut ct = Vec::new();
        PartSealer::new(&dk, &id, PartKind::Front)
            .unwrap()
            .seal_to(&pt, &mut ct)
            .unwrap();
        let open = |kind: PartKind, cid: [u8; 16], bytes: &[u8]| {
            PartOpener::new(&dk, &cid, kind).unwrap().open_to(
                bytes.len() as u64,
                bytes,
                &mut std::io::sink(),
            )
        };
        assert!(open(PartKind::Front, id, &ct).is_ok());
        // Flip a byte.
        let mut t = ct.clone();
        t[1000] ^= 0x01;
        assert!(matches!(
            open(PartKind::Front, id, &t),
            Err(Error::Integrity { .. })
        ));
        // Another kind or capture.
        assert!(matches!(
            open(PartKind::Back, id, &ct),
            Err(Error::Integrity { .. })
        ));
        assert!(matches!(
            open(PartKind::Front, [4u8; 16], &ct),
            Err(Error::Integrity { .. })
        ));
        // Truncated at a chunk boundary (drop the last chunk): the last-flag catches it.
        let full = CHUNK_SIZE + TAG;
        assert!(matches!(
            open(PartKind::Front, id, &ct[..1 + 3 * full]),
            Err(Error::Integrity { .. })
        ));
        // Two chunks swapped.
        let mut s = ct.clone();
        let (a, b) = (1, 1 + full);
        let first: Vec<u8> = s[a..a + full].to_vec();
        let second: Vec<u8> = s[b..b + full].to_vec();
        s[a..a + full].copy_from_slice(&second);
        s[b..b + full].copy_from_slice(&first);
        assert!(matches!(
            open(PartKind::Front, id, &s),
            Err(Error::Integrity { .. })
        ));
        // Unknown version.
        let mut v = ct.clone();
        v[0] = 9;
        assert!(matches!(
            open(PartKind::Front, id, &v),
            Err(Error::CiphertextVersion(9))
        ));
    }

    /// Spec gap 9: a full chunk followed by an empty final chunk authenticates under the
    /// STREAM rules, but chunking never produces it (65536 bytes are one chunk). The length
    /// rule refuses it, so one plaintext has exactly one well-formed ciphertext length.
    #[test]
    fn an_empty_final_chunk_after_a_full_one_is_refused() {
        let dk = random_key().unwrap();
        let id = [3u8; 16];
        let sealer = PartSealer::new(&dk, &id, PartKind::Selfie).unwrap();
        let pt = vec![0x42u8; CHUNK_SIZE];
        let mut ct = vec![CIPHERTEXT_VERSION];
        for (index, last, chunk) in [(0u32, false, &pt[..]), (1, true, &[][..])] {
            let mut buf = chunk.to_vec();
            let ad = sealer.cipher.ad_for(index);
            sealer
                .cipher
                .stream
                .encrypt_in_place(index, last, &ad, &mut buf)
                .unwrap();
            ct.extend_from_slice(&buf);
        }
        assert_eq!(
            ct.len() as u64,
            ciphertext_len(CHUNK_SIZE as u64) + TAG as u64
        );
        assert_eq!(plaintext_len(ct.len() as u64), None);
        let r = PartOpener::new(&dk, &id, PartKind::Selfie)
            .unwrap()
            .open_to(ct.len() as u64, &ct[..], &mut std::io::sink());
        assert!(matches!(r, Err(Error::Integrity { .. })), "{r:?}");
        // The lengths chunking does produce stay well formed, the empty part included.
        for len in [0u64, 1, 65535, 65536, 65537, 2 * 65536, 2 * 65536 + 1] {
            assert_eq!(plaintext_len(ciphertext_len(len)), Some(len), "{len}");
        }
    }
}
