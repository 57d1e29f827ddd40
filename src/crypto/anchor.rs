//! The INE trust anchor and the typed text forms of provisioned keys (protocol v1.1, §5.3).
//!
//! The app provisions two INE public keys out of band: the X25519 **seal key** data keys are
//! sealed to, and the Ed25519 **INE root** that certifies the endpoint's working keys (receipt
//! and seal keys, `protocol::trust`). Each has a typed one-line text form, so that a wrong file
//! (a private key, the other key, a truncated copy) is refused with a clear error:
//!
//! ```text
//! apoyo-seal-pub-v1 <64 hex>      the seal key (a bare 64-hex line, v1's form, is still accepted)
//! apoyo-ine-root-v1 <64 hex>      the INE root
//! ```
//!
//! All-zero and low-order keys are refused. The private halves have their own tags
//! (`apoyo-seal-key-v1`, `apoyo-ine-root-key-v1`, `apoyo-receipt-key-v1`), which every public
//! parser names as "a private key file" instead of accepting.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use zeroize::Zeroizing;

use super::keys::EndpointPublicKey;
use crate::error::{Error, Result};

/// Tag of the provisioned seal key's text form.
pub const SEAL_PUB_TAG: &str = "apoyo-seal-pub-v1";
/// Tag of the provisioned INE root's text form.
pub const ROOT_PUB_TAG: &str = "apoyo-ine-root-v1";
/// Tag of a seal (X25519) private key file.
pub const SEAL_KEY_TAG: &str = "apoyo-seal-key-v1";
/// Tag of the INE root's private key file (kept offline).
pub const ROOT_KEY_TAG: &str = "apoyo-ine-root-key-v1";
/// Tag of a receipt-signing private key file.
pub const RECEIPT_KEY_TAG: &str = "apoyo-receipt-key-v1";

const PRIVATE_TAGS: [&str; 3] = [SEAL_KEY_TAG, ROOT_KEY_TAG, RECEIPT_KEY_TAG];

fn bad(what: &str, problem: &str) -> Error {
    Error::BadKey(format!("{what}: {problem}"))
}

/// A private key file's text, `<tag> <hex>\n`, built without leaving an unwiped copy of the
/// hex behind.
pub fn key_text(tag: &str, key: &[u8]) -> Zeroizing<String> {
    let hex_text = Zeroizing::new(hex::encode(key));
    let mut text = Zeroizing::new(String::with_capacity(tag.len() + hex_text.len() + 2));
    text.push_str(tag);
    text.push(' ');
    text.push_str(&hex_text);
    text.push('\n');
    text
}

/// Splits a key file's text into its tag (if any) and 32 bytes of hex. Never echoes the text.
pub fn parse_tagged(text: &str, what: &str) -> Result<(Option<String>, Zeroizing<[u8; 32]>)> {
    let text = text.trim();
    let (tag, hex_text) = match text.split_once(char::is_whitespace) {
        Some((tag, rest)) => (Some(tag.to_string()), rest.trim()),
        None => (None, text),
    };
    let mut out = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(hex_text, &mut out[..]).map_err(|e| match e {
        hex::FromHexError::InvalidHexCharacter { .. } => bad(what, "not a key file (not hex)"),
        _ => bad(what, "the key must be 32 bytes (64 hex characters)"),
    })?;
    Ok((tag, out))
}

/// Refuses private-key tags and any tag other than `want` (`None` allows a bare key too).
fn check_tag(tag: Option<&str>, want: &str, bare_ok: bool, what: &str) -> Result<()> {
    match tag {
        Some(t) if PRIVATE_TAGS.contains(&t) => Err(bad(
            what,
            "this is a private key file; provision only the public key",
        )),
        Some(t) if t == want => Ok(()),
        Some(_) => Err(bad(what, &format!("not a {want} file (another key's tag)"))),
        None if bare_ok => Ok(()),
        None => Err(bad(what, &format!("the file must start with {want}"))),
    }
}

/// Parses the provisioned seal key (`apoyo-seal-pub-v1 <hex>`, or v1's bare hex).
pub fn parse_seal_public(text: &str) -> Result<EndpointPublicKey> {
    let what = "INE seal key";
    let (tag, bytes) = parse_tagged(text, what)?;
    check_tag(tag.as_deref(), SEAL_PUB_TAG, true, what)?;
    let key = EndpointPublicKey(*bytes);
    check_x25519_public(&key.0, what)?;
    Ok(key)
}

/// The text form of a seal public key.
pub fn seal_public_text(key: &EndpointPublicKey) -> String {
    format!("{SEAL_PUB_TAG} {}", hex::encode(key.0))
}

/// Refuses the all-zero key and the X25519 points of small order (a DH with them yields a
/// value the peer's secret does not contribute to).
pub fn check_x25519_public(key: &[u8; 32], what: &str) -> Result<()> {
    if key.iter().all(|b| *b == 0) {
        return Err(bad(what, "the key is all zeros"));
    }
    let probe = x25519_dalek::StaticSecret::from(*super::random_key()?.as_bytes());
    let shared = probe.diffie_hellman(&x25519_dalek::PublicKey::from(*key));
    if !shared.was_contributory() {
        return Err(bad(what, "the key is a low-order point"));
    }
    Ok(())
}

/// The INE root: the Ed25519 public key that certifies the endpoint's working keys.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct IneRoot(VerifyingKey);

impl IneRoot {
    /// From 32 bytes; refuses encodings that are not a point, the all-zero key and weak
    /// (small-order) keys.
    pub fn from_bytes(b: &[u8; 32]) -> Result<Self> {
        let what = "INE root";
        if b.iter().all(|x| *x == 0) {
            return Err(bad(what, "the key is all zeros"));
        }
        let vk = VerifyingKey::from_bytes(b).map_err(|_| bad(what, "not an Ed25519 key"))?;
        if vk.is_weak() {
            return Err(bad(what, "the key is a low-order point"));
        }
        Ok(IneRoot(vk))
    }
    /// Parses the provisioned text form `apoyo-ine-root-v1 <64 hex>` (the tag is required).
    pub fn from_text(text: &str) -> Result<Self> {
        let what = "INE root";
        let (tag, bytes) = parse_tagged(text, what)?;
        check_tag(tag.as_deref(), ROOT_PUB_TAG, false, what)?;
        IneRoot::from_bytes(&bytes)
    }
    pub fn to_text(&self) -> String {
        format!("{ROOT_PUB_TAG} {}", hex::encode(self.0.to_bytes()))
    }
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }
    /// Strict Ed25519 verification of `sig` over `msg` under the root.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> Result<()> {
        verify_ed25519(&self.0.to_bytes(), msg, sig)
    }
}

impl std::fmt::Debug for IneRoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IneRoot({})", hex::encode(self.0.to_bytes()))
    }
}

/// An Ed25519 private key: the INE root (offline), a receipt key, or a device's commit key.
#[derive(Clone)]
pub struct Ed25519Secret(SigningKey);

impl Ed25519Secret {
    pub fn generate() -> Result<Self> {
        let mut b = Zeroizing::new([0u8; 32]);
        super::fill_random(&mut b[..])?;
        Ok(Ed25519Secret(SigningKey::from_bytes(&b)))
    }
    pub fn from_bytes(b: &[u8; 32]) -> Self {
        Ed25519Secret(SigningKey::from_bytes(b))
    }
    pub fn to_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.0.to_bytes())
    }
    pub fn public(&self) -> [u8; 32] {
        self.0.verifying_key().to_bytes()
    }
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.0.sign(msg).to_bytes()
    }
    /// The key file text: `<tag> <64 hex>`, wiped on drop (the hex on its way too).
    pub fn to_text(&self, tag: &str) -> Zeroizing<String> {
        key_text(tag, &*self.to_bytes())
    }
    /// Parses a private key file of the given tag.
    pub fn from_text(text: &str, tag: &str, what: &str) -> Result<Self> {
        let (found, bytes) = parse_tagged(text, what)?;
        if found.as_deref() != Some(tag) {
            return Err(bad(what, &format!("the file must start with {tag}")));
        }
        Ok(Ed25519Secret::from_bytes(&bytes))
    }
}

impl std::fmt::Debug for Ed25519Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ed25519Secret(…)")
    }
}

/// Strict Ed25519 verification (rejects malleable signatures and small-order keys).
pub fn verify_ed25519(public: &[u8; 32], msg: &[u8], sig: &[u8]) -> Result<()> {
    let vk = VerifyingKey::from_bytes(public).map_err(|_| Error::BadReceipt)?;
    let sig: [u8; 64] = sig.try_into().map_err(|_| Error::BadReceipt)?;
    vk.verify_strict(msg, &Signature::from_bytes(&sig))
        .map_err(|_| Error::BadReceipt)
}

/// The key id of a public key: hex of the first 8 bytes of its SHA-256.
pub fn key_id(public: &[u8; 32]) -> String {
    hex::encode(&super::sha256(public)[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_forms_round_trip_and_wrong_files_are_refused() {
        let root = Ed25519Secret::generate().unwrap();
        let public = IneRoot::from_bytes(&root.public()).unwrap();
        assert_eq!(IneRoot::from_text(&public.to_text()).unwrap(), public);
        let msg = |e: Error| e.to_string();
        // The private file given where the public one belongs.
        let e = IneRoot::from_text(&root.to_text(ROOT_KEY_TAG)).unwrap_err();
        assert!(msg(e).contains("private key file"));
        // A bare key, or the seal key's form, is not a root.
        let bare = hex::encode(root.public());
        assert!(msg(IneRoot::from_text(&bare).unwrap_err()).contains("must start with"));
        let e = IneRoot::from_text(&format!("{SEAL_PUB_TAG} {bare}")).unwrap_err();
        assert!(msg(e).contains("another key's tag"));
        // Zero and low-order keys.
        let zeros = format!("{ROOT_PUB_TAG} {}", "00".repeat(32));
        assert!(msg(IneRoot::from_text(&zeros).unwrap_err()).contains("all zeros"));
        let mut identity = [0u8; 32];
        identity[0] = 1; // the Edwards identity point: order 1
        assert!(msg(IneRoot::from_bytes(&identity).unwrap_err()).contains("low-order"));
        // Never echoes the text.
        let e = IneRoot::from_text("apoyo-ine-root-v1 SECRETSECRET").unwrap_err();
        assert!(!msg(e).contains("SECRET"));
    }

    #[test]
    fn seal_key_forms() {
        let sk = super::super::EndpointSecretKey::generate().unwrap();
        let pk = sk.public();
        assert_eq!(parse_seal_public(&seal_public_text(&pk)).unwrap(), pk);
        // v1's bare hex stays accepted.
        assert_eq!(parse_seal_public(&pk.to_text()).unwrap(), pk);
        let private = format!("{SEAL_KEY_TAG} {}", hex::encode(sk.as_bytes()));
        assert!(
            parse_seal_public(&private)
                .unwrap_err()
                .to_string()
                .contains("private key file")
        );
        let root = Ed25519Secret::generate().unwrap();
        let as_root = IneRoot::from_bytes(&root.public()).unwrap().to_text();
        assert!(parse_seal_public(&as_root).is_err());
        assert!(parse_seal_public(&"00".repeat(32)).is_err());
        // A low-order X25519 point (order 8).
        let low = "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800";
        assert!(
            parse_seal_public(low)
                .unwrap_err()
                .to_string()
                .contains("low-order")
        );
    }
}
