//! Ed25519 signatures over receipts (the endpoint signs, the device verifies).

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use crate::error::{Error, Result};

/// The endpoint's receipt-signing key.
pub struct ReceiptSigner(SigningKey);

impl ReceiptSigner {
    pub fn generate() -> Result<Self> {
        let mut b = [0u8; 32];
        super::fill_random(&mut b)?;
        let k = ReceiptSigner(SigningKey::from_bytes(&b));
        zeroize::Zeroize::zeroize(&mut b);
        Ok(k)
    }
    pub fn from_bytes(b: &[u8; 32]) -> Self {
        ReceiptSigner(SigningKey::from_bytes(b))
    }
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }
    pub fn public(&self) -> [u8; 32] {
        self.0.verifying_key().to_bytes()
    }
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.0.sign(msg).to_bytes()
    }
}

/// Verifies a receipt signature (strict: rejects malleable and small-order encodings).
pub fn verify(public: &[u8; 32], msg: &[u8], sig: &[u8]) -> Result<()> {
    let vk = VerifyingKey::from_bytes(public).map_err(|_| Error::BadReceipt)?;
    let sig: [u8; 64] = sig.try_into().map_err(|_| Error::BadReceipt)?;
    vk.verify_strict(msg, &Signature::from_bytes(&sig))
        .map_err(|_| Error::BadReceipt)
}
