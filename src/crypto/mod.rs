//! Cryptography, behind a small seam. Nothing here is hand-rolled: the AEAD is
//! `chacha20poly1305`, the chunking is the STREAM construction from `aead-stream`, key sealing
//! to INE is HPKE (RFC 9180) from the `hpke` crate, signatures are Ed25519 from
//! `ed25519-dalek`, derivations are HKDF/HMAC-SHA-256.
//!
//! Key hierarchy (see `docs/adr/0002-key-hierarchy.md`):
//! - the **device master key** (32 random bytes) exists in the clear only in memory; at rest it
//!   is wrapped by a platform [`KeyGuard`] (Android Keystore, iOS Keychain, or the development
//!   file guard);
//! - the **device identity** is an X25519 key pair; its private half is wrapped under the
//!   master key;
//! - each capture has a fresh **data key**; every part is sealed under a key derived from it;
//!   the data key is wrapped twice: under the master key (the device's own, device-bound copy)
//!   and sealed to INE's X25519 key with HPKE in auth mode (the copy INE opens).

pub mod anchor;
pub mod keyguard;
pub mod keys;
pub mod part;
pub mod receipt;
pub mod wrap;

pub use anchor::{Ed25519Secret, IneRoot};
pub use keyguard::{FileKeyGuard, KeyGuard};
pub use keys::{DeviceIdentity, EndpointPublicKey, EndpointSecretKey, SecretKey};
pub use part::{PartOpener, PartSealer, ciphertext_len};

use crate::error::{Error, Result};

/// Version byte that starts every ciphertext this crate writes.
pub const CIPHERTEXT_VERSION: u8 = 1;

/// Fills `buf` from the operating system's CSPRNG.
pub fn fill_random(buf: &mut [u8]) -> Result<()> {
    getrandom::fill(buf).map_err(|_| Error::Crypto("the system random generator failed"))
}

/// 32 fresh random bytes as a secret key.
pub fn random_key() -> Result<SecretKey> {
    let mut k = SecretKey::zero();
    fill_random(k.as_mut())?;
    Ok(k)
}

/// HKDF-SHA-256 expand of `ikm` into a 32-byte key for `info`.
pub fn derive_key(ikm: &[u8], info: &[&[u8]]) -> Result<SecretKey> {
    let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(b"apoyo-sync/v1"), ikm);
    let mut out = SecretKey::zero();
    let info: Vec<u8> = info.concat();
    hk.expand(&info, out.as_mut())
        .map_err(|_| Error::Crypto("HKDF expand length"))?;
    Ok(out)
}

/// HMAC-SHA-256 of the concatenation of `parts` under `key`.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Result<[u8; 32]> {
    use hmac::{KeyInit, Mac};
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key)
        .map_err(|_| Error::Crypto("HMAC key"))?;
    for p in parts {
        mac.update(p);
    }
    Ok(mac.finalize().into_bytes().into())
}

/// Constant-time HMAC-SHA-256 check.
pub fn hmac_sha256_verify(key: &[u8], parts: &[&[u8]], tag: &[u8]) -> Result<bool> {
    use hmac::{KeyInit, Mac};
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key)
        .map_err(|_| Error::Crypto("HMAC key"))?;
    for p in parts {
        mac.update(p);
    }
    Ok(mac.verify_slice(tag).is_ok())
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}
