//! Protocol v1.1 trust: key certificates signed by the provisioned INE root, the device's
//! signature over its commit, and the receipt check that stands between a commit and the
//! irreversible deletion of a capture (docs/protocol.md 5.7, 5.8 and 6.5; ADR 0015).
//!
//! A receipt is accepted only if, in this order: it carries a key certificate; the certificate
//! is signed by the INE root, is for purpose `receipt`, and names its key by that key's id;
//! the receipt's signature verifies (strict Ed25519) under the certified key; the receipt
//! decodes, has `v` = 1 and names the certified key id; it was made within the certificate's
//! validity (times the root and the key signed, never the device clock); and every field the
//! device relies on equals what it committed.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::messages::{CommitRequest, Receipt, SignedCommit, SignedReceipt, bytes32};
use super::{VERSION, limits, receipt_signing_input};
use crate::crypto::anchor::{Ed25519Secret, IneRoot, key_id, verify_ed25519};
use crate::crypto::sha256;
use crate::error::{Error, Result};
use crate::model::PartKind;

/// Domain separation of a key certificate's signature.
pub const KEY_CERT_CONTEXT: &[u8] = b"apoyo-sync/v1.1/key-cert";
/// Domain separation of a device's commit signature.
pub const COMMIT_CONTEXT: &[u8] = b"apoyo-sync/v1.1/commit";
/// The largest encoded key certificate.
pub const MAX_KEY_CERT_BYTES: usize = 1024;

/// What a certified key is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyPurpose {
    /// An Ed25519 key that signs receipts.
    Receipt,
    /// An X25519 key devices seal data keys to (HPKE).
    Seal,
}

/// A working key, certified by the INE root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyCert {
    pub v: u8,
    pub purpose: KeyPurpose,
    #[serde(with = "bytes32")]
    pub key: [u8; 32],
    /// Hex of the first 8 bytes of SHA-256 of `key`.
    pub key_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
}

/// A key certificate and the root's Ed25519 signature over
/// `"apoyo-sync/v1.1/key-cert" || cert` (the exact bytes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedKeyCert {
    #[serde(with = "serde_bytes")]
    pub cert: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

/// Why a key certificate or a receipt was not accepted. None of them is grounds for deleting
/// anything; only [`ReceiptRefusal::NoAnchoredKey`] keeps the capture queued (a v1 endpoint),
/// every other one quarantines it as `receipt_invalid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptRefusal {
    /// The receipt carries no key certificate: the endpoint presents no anchored key.
    NoAnchoredKey,
    /// The certificate is not signed by the INE root, or does not decode.
    KeyNotAnchored,
    /// The certificate is for another purpose.
    WrongPurpose,
    /// The certificate's key id is not its key's, or the receipt names another key id.
    KeyIdMismatch,
    /// The receipt's signature does not verify under the certified key.
    Signature,
    /// The receipt does not decode.
    Undecodable,
    /// The receipt's `v` is not this protocol's.
    Version,
    /// The receipt was made outside the certificate's validity.
    OutsideValidity,
    /// A field differs from what the device committed (the field's name).
    Field(&'static str),
}

impl ReceiptRefusal {
    /// Whether the capture stays queued (rather than quarantined).
    pub fn keeps_queued(self) -> bool {
        self == ReceiptRefusal::NoAnchoredKey
    }
    /// A stable label (for reports).
    pub fn label(self) -> &'static str {
        match self {
            ReceiptRefusal::NoAnchoredKey => "endpoint presents no anchored receipt key",
            ReceiptRefusal::KeyNotAnchored => "receipt key not certified by the INE root",
            ReceiptRefusal::WrongPurpose => "receipt key certified for another purpose",
            ReceiptRefusal::KeyIdMismatch => "receipt key id mismatch",
            ReceiptRefusal::Signature => "receipt signature does not verify",
            ReceiptRefusal::Undecodable => "receipt does not decode",
            ReceiptRefusal::Version => "receipt of another protocol version",
            ReceiptRefusal::OutsideValidity => "receipt outside its key's validity",
            ReceiptRefusal::Field(_) => "receipt differs from the commit",
        }
    }

    /// A short description, without personal data.
    pub fn describe(self) -> String {
        match self {
            ReceiptRefusal::NoAnchoredKey => "endpoint presents no anchored receipt key".into(),
            ReceiptRefusal::KeyNotAnchored => "receipt key not certified by the INE root".into(),
            ReceiptRefusal::WrongPurpose => "receipt key certified for another purpose".into(),
            ReceiptRefusal::KeyIdMismatch => "receipt key id mismatch".into(),
            ReceiptRefusal::Signature => "receipt signature does not verify".into(),
            ReceiptRefusal::Undecodable => "receipt does not decode".into(),
            ReceiptRefusal::Version => "receipt of another protocol version".into(),
            ReceiptRefusal::OutsideValidity => "receipt outside its key's validity".into(),
            ReceiptRefusal::Field(f) => format!("receipt {f} differs from the commit"),
        }
    }
}

impl SignedKeyCert {
    /// Signs `cert` with the INE root's private key.
    pub fn issue(root: &Ed25519Secret, cert: &KeyCert) -> Result<Self> {
        let bytes = super::encode(cert)?;
        let signature = root.sign(&[KEY_CERT_CONTEXT, &bytes].concat()).to_vec();
        Ok(SignedKeyCert {
            cert: bytes,
            signature,
        })
    }

    /// The certificate, if it is signed by `root`, decodes, is for `purpose`, and names its key
    /// by the key's id.
    pub fn verify(
        &self,
        root: &IneRoot,
        purpose: KeyPurpose,
    ) -> std::result::Result<KeyCert, ReceiptRefusal> {
        if self.cert.len() > MAX_KEY_CERT_BYTES {
            return Err(ReceiptRefusal::KeyNotAnchored);
        }
        root.verify(&[KEY_CERT_CONTEXT, &self.cert].concat(), &self.signature)
            .map_err(|_| ReceiptRefusal::KeyNotAnchored)?;
        let cert: KeyCert = super::decode(&self.cert, MAX_KEY_CERT_BYTES, "key certificate")
            .map_err(|_| ReceiptRefusal::KeyNotAnchored)?;
        if cert.v != VERSION || cert.not_after < cert.not_before {
            return Err(ReceiptRefusal::KeyNotAnchored);
        }
        if cert.purpose != purpose {
            return Err(ReceiptRefusal::WrongPurpose);
        }
        if cert.key_id != key_id(&cert.key) {
            return Err(ReceiptRefusal::KeyIdMismatch);
        }
        Ok(cert)
    }
}

/// Builds a certificate valid from `not_before` to `not_after`.
pub fn key_cert(
    purpose: KeyPurpose,
    key: [u8; 32],
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> KeyCert {
    KeyCert {
        v: VERSION,
        purpose,
        key,
        key_id: key_id(&key),
        not_before,
        not_after,
    }
}

/// Checks a receipt against the INE root and the commit it answers (see the module comment).
/// `device_id` is the committing device's own id.
pub fn verify_receipt(
    root: &IneRoot,
    signed: &SignedReceipt,
    sent: &CommitRequest,
    device_id: &str,
) -> std::result::Result<Receipt, ReceiptRefusal> {
    let cert = verify_receipt_signature(root, signed)?;
    let r: Receipt = super::decode(&signed.receipt, limits::MAX_RESPONSE_BYTES, "receipt")
        .map_err(|_| ReceiptRefusal::Undecodable)?;
    if r.v != VERSION {
        return Err(ReceiptRefusal::Version);
    }
    if r.endpoint_key_id != cert.key_id {
        return Err(ReceiptRefusal::KeyIdMismatch);
    }
    if r.counted_at < cert.not_before || r.counted_at > cert.not_after {
        return Err(ReceiptRefusal::OutsideValidity);
    }
    check_fields(&r, sent, device_id)?;
    Ok(r)
}

/// The chain and the signature alone (what a kept receipt is re-checked with when listed):
/// the certified key, if the receipt is signed by a receipt key the root certified.
pub fn verify_receipt_signature(
    root: &IneRoot,
    signed: &SignedReceipt,
) -> std::result::Result<KeyCert, ReceiptRefusal> {
    let anchored = signed
        .key_cert
        .as_ref()
        .ok_or(ReceiptRefusal::NoAnchoredKey)?;
    let cert = anchored.verify(root, KeyPurpose::Receipt)?;
    verify_ed25519(
        &cert.key,
        &receipt_signing_input(&signed.receipt),
        &signed.signature,
    )
    .map_err(|_| ReceiptRefusal::Signature)?;
    Ok(cert)
}

/// Every field the device relies on equals what it committed.
fn check_fields(
    r: &Receipt,
    sent: &CommitRequest,
    device_id: &str,
) -> std::result::Result<(), ReceiptRefusal> {
    let field = |ok: bool, name| {
        if ok {
            Ok(())
        } else {
            Err(ReceiptRefusal::Field(name))
        }
    };
    field(r.capture_id == sent.capture_id, "capture_id")?;
    field(r.process_id == sent.process_id, "process_id")?;
    field(r.device_id == device_id, "device_id")?;
    field(r.collector == sent.collector, "collector")?;
    field(r.captured_at == sent.captured_at, "captured_at")?;
    field(
        r.sealed_key_sha256 == sha256(&sent.sealed_key),
        "sealed_key_sha256",
    )?;
    // The exact set, in the canonical order: one entry per kind, each with the committed hash.
    let parts_match = r.parts.len() == PartKind::ALL.len()
        && r.parts.iter().zip(PartKind::ALL).all(|(q, kind)| {
            q.kind == kind
                && sent
                    .parts
                    .iter()
                    .filter(|p| p.kind == kind)
                    .all(|p| p.sha256 == q.sha256)
                && sent.parts.iter().any(|p| p.kind == kind)
        });
    field(parts_match, "parts")
}

/// The bytes a device signs for a commit.
pub fn commit_signing_input(commit_cbor: &[u8]) -> Vec<u8> {
    [COMMIT_CONTEXT, commit_cbor].concat()
}

/// Encodes and signs a commit with the device's signing key.
pub fn sign_commit(key: &Ed25519Secret, commit: &CommitRequest) -> Result<SignedCommit> {
    let bytes = super::encode(commit)?;
    let device_signature = key.sign(&commit_signing_input(&bytes)).to_vec();
    Ok(SignedCommit {
        v: VERSION,
        commit: bytes,
        device_signature,
    })
}

/// Verifies a signed commit under the device's registered signing key and decodes it.
pub fn open_signed_commit(
    signing_public: &[u8; 32],
    signed: &SignedCommit,
) -> Result<CommitRequest> {
    verify_ed25519(
        signing_public,
        &commit_signing_input(&signed.commit),
        &signed.device_signature,
    )
    .map_err(|_| Error::Crypto("the commit signature does not verify"))?;
    super::decode(&signed.commit, limits::MAX_COMMIT_BYTES, "commit")
}
