//! Key wrapping: a secret wrapped under a symmetric key (device-bound copies), and a data key
//! sealed to the endpoint with HPKE (the copy INE opens).
//!
//! Formats (all start with [`CIPHERTEXT_VERSION`]):
//! - symmetric wrap: `version(1) || nonce(24) || XChaCha20-Poly1305(secret)(32+16)` = 73 bytes,
//!   associated data `"apoyo-sync/v1/wrap/" || domain || 0x00 || label`;
//! - HPKE seal: `version(1) || enc(32) || ct(32+16)` = 81 bytes, HPKE mode Auth
//!   (X25519-HKDF-SHA256, HKDF-SHA256, ChaCha20-Poly1305), info
//!   `"apoyo-sync/v1/data-key"`, aad = the 16 capture-id bytes.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hpke::{Deserializable, Kem as _, OpModeR, OpModeS, Serializable};

use super::{
    CIPHERTEXT_VERSION, DeviceIdentity, EndpointPublicKey, EndpointSecretKey, SecretKey,
    fill_random,
};
use crate::error::{Error, Result};

type HpkeKem = hpke::kem::X25519HkdfSha256;
type HpkeKdf = hpke::kdf::HkdfSha256;
type HpkeAead = hpke::aead::ChaCha20Poly1305;

/// Length of a symmetric wrap.
pub const WRAP_LEN: usize = 1 + 24 + 32 + 16;
/// Length of an HPKE-sealed data key.
pub const SEALED_KEY_LEN: usize = 1 + 32 + 32 + 16;
const HPKE_INFO: &[u8] = b"apoyo-sync/v1/data-key";

fn wrap_ad(domain: &str, label: &[u8]) -> Vec<u8> {
    [b"apoyo-sync/v1/wrap/", domain.as_bytes(), &[0u8], label].concat()
}

/// Wraps `secret` under `kek`, bound to `domain` and `label`.
pub fn wrap(kek: &SecretKey, domain: &str, label: &[u8], secret: &SecretKey) -> Result<Vec<u8>> {
    let cipher = XChaCha20Poly1305::new_from_slice(kek.as_bytes())
        .map_err(|_| Error::Crypto("wrap key length"))?;
    let mut nonce = [0u8; 24];
    fill_random(&mut nonce)?;
    let ad = wrap_ad(domain, label);
    let ct = cipher
        .encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: secret.as_bytes(),
                aad: &ad,
            },
        )
        .map_err(|_| Error::Crypto("wrap"))?;
    let mut out = Vec::with_capacity(WRAP_LEN);
    out.push(CIPHERTEXT_VERSION);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Unwraps what [`wrap`] made. A wrong key, domain or label, or a tampered wrap, gives
/// [`Error::Integrity`] naming `what`.
pub fn unwrap(
    kek: &SecretKey,
    domain: &str,
    label: &[u8],
    wrapped: &[u8],
    what: &str,
) -> Result<SecretKey> {
    if wrapped.len() != WRAP_LEN {
        return Err(Error::integrity(format!("{what} (length)")));
    }
    if wrapped[0] != CIPHERTEXT_VERSION {
        return Err(Error::CiphertextVersion(wrapped[0]));
    }
    let cipher = XChaCha20Poly1305::new_from_slice(kek.as_bytes())
        .map_err(|_| Error::Crypto("wrap key length"))?;
    let nonce: [u8; 24] = wrapped[1..25]
        .try_into()
        .map_err(|_| Error::integrity(what.to_string()))?;
    let ad = wrap_ad(domain, label);
    let pt = cipher
        .decrypt(
            &XNonce::from(nonce),
            Payload {
                msg: &wrapped[25..],
                aad: &ad,
            },
        )
        .map_err(|_| Error::integrity(what.to_string()))?;
    let key = SecretKey::from_slice(&pt);
    let mut pt = pt;
    zeroize::Zeroize::zeroize(&mut pt);
    key
}

/// Seals a capture's data key to the endpoint (HPKE auth mode with the device's identity).
pub fn seal_to_endpoint(
    endpoint: &EndpointPublicKey,
    device: &DeviceIdentity,
    capture_id: &[u8; 16],
    data_key: &SecretKey,
) -> Result<Vec<u8>> {
    let pk_r = <HpkeKem as hpke::Kem>::PublicKey::from_bytes(&endpoint.0)
        .map_err(|_| Error::Crypto("endpoint public key"))?;
    let sk_s = <HpkeKem as hpke::Kem>::PrivateKey::from_bytes(device.secret().as_bytes())
        .map_err(|_| Error::Crypto("device identity key"))?;
    let pk_s = HpkeKem::sk_to_pk(&sk_s);
    let mode = OpModeS::Auth((sk_s, pk_s));
    let (enc, ct) = hpke::single_shot_seal::<HpkeAead, HpkeKdf, HpkeKem>(
        &mode,
        &pk_r,
        HPKE_INFO,
        data_key.as_bytes(),
        capture_id,
    )
    .map_err(|_| Error::Crypto("HPKE seal"))?;
    let mut out = Vec::with_capacity(SEALED_KEY_LEN);
    out.push(CIPHERTEXT_VERSION);
    out.extend_from_slice(&enc.to_bytes());
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Opens a sealed data key at the endpoint, authenticating the sending device's public key.
pub fn open_from_device(
    endpoint: &EndpointSecretKey,
    device_public: &[u8; 32],
    capture_id: &[u8; 16],
    sealed: &[u8],
) -> Result<SecretKey> {
    if sealed.len() != SEALED_KEY_LEN {
        return Err(Error::integrity("sealed data key (length)"));
    }
    if sealed[0] != CIPHERTEXT_VERSION {
        return Err(Error::CiphertextVersion(sealed[0]));
    }
    let sk_r = <HpkeKem as hpke::Kem>::PrivateKey::from_bytes(endpoint.as_bytes())
        .map_err(|_| Error::Crypto("endpoint key"))?;
    let pk_s = <HpkeKem as hpke::Kem>::PublicKey::from_bytes(device_public)
        .map_err(|_| Error::integrity("device public key"))?;
    let enc = <HpkeKem as hpke::Kem>::EncappedKey::from_bytes(&sealed[1..33])
        .map_err(|_| Error::integrity("sealed data key"))?;
    let mode = OpModeR::Auth(pk_s);
    let mut pt = hpke::single_shot_open::<HpkeAead, HpkeKdf, HpkeKem>(
        &mode,
        &sk_r,
        &enc,
        HPKE_INFO,
        &sealed[33..],
        capture_id,
    )
    .map_err(|_| Error::integrity("sealed data key"))?;
    let key = SecretKey::from_slice(&pt);
    zeroize::Zeroize::zeroize(&mut pt);
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::random_key;

    #[test]
    fn wrap_roundtrip_and_binding() {
        let kek = random_key().unwrap();
        let secret = random_key().unwrap();
        let w = wrap(&kek, "data-key", b"id-1", &secret).unwrap();
        assert_eq!(w.len(), WRAP_LEN);
        assert_eq!(unwrap(&kek, "data-key", b"id-1", &w, "k").unwrap(), secret);
        assert!(matches!(
            unwrap(&kek, "data-key", b"id-2", &w, "k"),
            Err(Error::Integrity { .. })
        ));
        assert!(matches!(
            unwrap(&kek, "identity", b"id-1", &w, "k"),
            Err(Error::Integrity { .. })
        ));
        let other = random_key().unwrap();
        assert!(matches!(
            unwrap(&other, "data-key", b"id-1", &w, "k"),
            Err(Error::Integrity { .. })
        ));
        let mut t = w.clone();
        t[40] ^= 1;
        assert!(matches!(
            unwrap(&kek, "data-key", b"id-1", &t, "k"),
            Err(Error::Integrity { .. })
        ));
    }

    fn is_integrity_class(r: &Result<SecretKey>) -> bool {
        matches!(r, Err(e) if e.class() == crate::error::ErrorClass::Integrity)
    }

    /// A flipped bit anywhere in a symmetric wrap (version, nonce, ciphertext, tag) or a
    /// changed length fails as an integrity error, never as another key.
    #[test]
    fn a_tampered_wrap_fails_integrity() {
        let kek = random_key().unwrap();
        let secret = random_key().unwrap();
        let w = wrap(&kek, "data-key", b"id-1", &secret).unwrap();
        for pos in [0, 1, 12, 24, 25, 40, 56, 57, WRAP_LEN - 1] {
            for bit in [0x01u8, 0x80] {
                let mut t = w.clone();
                t[pos] ^= bit;
                let r = unwrap(&kek, "data-key", b"id-1", &t, "k");
                assert!(is_integrity_class(&r), "byte {pos}, bit {bit:#04x}: {r:?}");
            }
        }
        let mut longer = w.clone();
        longer.push(0);
        for t in [&w[..WRAP_LEN - 1], &longer[..], &[][..]] {
            let r = unwrap(&kek, "data-key", b"id-1", t, "k");
            assert!(is_integrity_class(&r), "{} bytes: {r:?}", t.len());
        }
        assert_eq!(unwrap(&kek, "data-key", b"id-1", &w, "k").unwrap(), secret);
    }

    /// A flipped bit anywhere in a sealed data key (version, encapsulated key, ciphertext,
    /// tag) or a changed length fails as an integrity error at the endpoint, never as another
    /// key. (The top bit of the encapsulated key's last byte is ignored by X25519 itself; HPKE
    /// still binds the bytes as sent.)
    #[test]
    fn a_tampered_sealed_key_fails_integrity() {
        let ep = EndpointSecretKey::generate().unwrap();
        let dev = DeviceIdentity::generate().unwrap();
        let dk = random_key().unwrap();
        let id = [9u8; 16];
        let sealed = seal_to_endpoint(&ep.public(), &dev, &id, &dk).unwrap();
        for pos in [0, 1, 16, 31, 32, 33, 48, 64, 65, SEALED_KEY_LEN - 1] {
            for bit in [0x01u8, 0x80] {
                let mut t = sealed.clone();
                t[pos] ^= bit;
                let r = open_from_device(&ep, &dev.public(), &id, &t);
                assert!(is_integrity_class(&r), "byte {pos}, bit {bit:#04x}: {r:?}");
            }
        }
        let mut longer = sealed.clone();
        longer.push(0);
        for t in [&sealed[..SEALED_KEY_LEN - 1], &longer[..], &[][..]] {
            let r = open_from_device(&ep, &dev.public(), &id, t);
            assert!(is_integrity_class(&r), "{} bytes: {r:?}", t.len());
        }
        assert_eq!(
            open_from_device(&ep, &dev.public(), &id, &sealed).unwrap(),
            dk
        );
    }

    #[test]
    fn hpke_auth_roundtrip_binds_sender_and_capture() {
        let ep = EndpointSecretKey::generate().unwrap();
        let dev = DeviceIdentity::generate().unwrap();
        let other = DeviceIdentity::generate().unwrap();
        let dk = random_key().unwrap();
        let id = [7u8; 16];
        let sealed = seal_to_endpoint(&ep.public(), &dev, &id, &dk).unwrap();
        assert_eq!(sealed.len(), SEALED_KEY_LEN);
        assert_eq!(
            open_from_device(&ep, &dev.public(), &id, &sealed).unwrap(),
            dk
        );
        // Another device's key, another capture id: refused.
        assert!(open_from_device(&ep, &other.public(), &id, &sealed).is_err());
        assert!(open_from_device(&ep, &dev.public(), &[8u8; 16], &sealed).is_err());
        // Another endpoint: refused.
        let ep2 = EndpointSecretKey::generate().unwrap();
        assert!(open_from_device(&ep2, &dev.public(), &id, &sealed).is_err());
    }
}
