//! Key types. Secrets are zeroized on drop and never printed.

use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::error::{Error, Result};

/// A 32-byte secret (master key, data key, derived key), wiped on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct SecretKey([u8; 32]);

impl SecretKey {
    pub fn zero() -> Self {
        SecretKey([0; 32])
    }
    pub fn from_bytes(b: [u8; 32]) -> Self {
        SecretKey(b)
    }
    pub fn from_slice(b: &[u8]) -> Result<Self> {
        let arr: [u8; 32] = b
            .try_into()
            .map_err(|_| Error::Crypto("a key must be 32 bytes"))?;
        Ok(SecretKey(arr))
    }
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl AsMut<[u8]> for SecretKey {
    fn as_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(…)")
    }
}

/// The endpoint's (INE's) X25519 public key, to which data keys are sealed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndpointPublicKey(pub [u8; 32]);

impl EndpointPublicKey {
    /// Key id: the first 8 bytes of SHA-256 of the key, in hex (names the key in receipts).
    pub fn key_id(&self) -> String {
        hex::encode(&super::sha256(&self.0)[..8])
    }

    /// Parses the provisioned text form (`apoyo-seal-pub-v1 <hex>` as `apoyo endpoint-keygen`
    /// writes it, or v1's bare hex); see [`super::anchor::parse_seal_public`].
    pub fn from_text(s: &str) -> Result<Self> {
        super::anchor::parse_seal_public(s)
    }

    /// Bare hex (v1's form; the typed form is [`super::anchor::seal_public_text`]).
    pub fn to_text(&self) -> String {
        hex::encode(self.0)
    }
}

/// The endpoint's X25519 private key (held only by the endpoint).
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct EndpointSecretKey(SecretKey);

impl EndpointSecretKey {
    pub fn generate() -> Result<Self> {
        Ok(EndpointSecretKey(super::random_key()?))
    }
    pub fn from_bytes(b: [u8; 32]) -> Self {
        EndpointSecretKey(SecretKey::from_bytes(b))
    }
    pub fn as_bytes(&self) -> &[u8; 32] {
        self.0.as_bytes()
    }
    pub fn public(&self) -> EndpointPublicKey {
        let s = x25519_dalek::StaticSecret::from(*self.0.as_bytes());
        EndpointPublicKey(x25519_dalek::PublicKey::from(&s).to_bytes())
    }
    /// X25519 shared secret with a peer public key.
    pub fn diffie_hellman(&self, peer: &[u8; 32]) -> SecretKey {
        let s = x25519_dalek::StaticSecret::from(*self.0.as_bytes());
        let shared = s.diffie_hellman(&x25519_dalek::PublicKey::from(*peer));
        SecretKey::from_bytes(shared.to_bytes())
    }
}

impl std::fmt::Debug for EndpointSecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EndpointSecretKey(…)")
    }
}

/// The device's X25519 identity key pair.
#[derive(Clone)]
pub struct DeviceIdentity {
    secret: SecretKey,
    public: [u8; 32],
}

impl DeviceIdentity {
    pub fn generate() -> Result<Self> {
        Ok(Self::from_secret(super::random_key()?))
    }
    pub fn from_secret(secret: SecretKey) -> Self {
        let s = x25519_dalek::StaticSecret::from(*secret.as_bytes());
        let public = x25519_dalek::PublicKey::from(&s).to_bytes();
        DeviceIdentity { secret, public }
    }
    pub fn public(&self) -> [u8; 32] {
        self.public
    }
    pub fn secret(&self) -> &SecretKey {
        &self.secret
    }
    /// X25519 shared secret with a peer public key.
    pub fn diffie_hellman(&self, peer: &[u8; 32]) -> SecretKey {
        let s = x25519_dalek::StaticSecret::from(*self.secret.as_bytes());
        SecretKey::from_bytes(
            s.diffie_hellman(&x25519_dalek::PublicKey::from(*peer))
                .to_bytes(),
        )
    }
    /// The device id: hex of the first 16 bytes of SHA-256 of the public key.
    pub fn device_id(&self) -> String {
        device_id_of(&self.public)
    }
}

/// The device id derived from a device public key.
pub fn device_id_of(public: &[u8; 32]) -> String {
    hex::encode(&super::sha256(public)[..16])
}

impl std::fmt::Debug for DeviceIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceIdentity")
            .field("public", &hex::encode(self.public))
            .finish()
    }
}
