//! The CBOR messages of protocol version 1.1 (`v` stays 1: v1.1 adds keys, see
//! `docs/protocol.md` §11). Byte strings are CBOR byte strings (major type 2),
//! never arrays of integers; times are RFC 3339 UTC text.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::reason::Reason;
use super::trust::SignedKeyCert;
use crate::model::{CaptureId, Collector, PartKind};
use crate::process::Process;

/// A fixed-size byte string serialized as a CBOR byte string.
pub mod bytes32 {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};
    pub fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let b: serde_bytes::ByteBuf = Deserialize::deserialize(d)?;
        b.into_vec()
            .try_into()
            .map_err(|_| D::Error::custom("expected 32 bytes"))
    }
}

/// An optional fixed-size byte string (absent when `None`).
pub mod opt_bytes32 {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};
    pub fn serialize<S: Serializer>(v: &Option<[u8; 32]>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_bytes(b),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<[u8; 32]>, D::Error> {
        let b: Option<serde_bytes::ByteBuf> = Deserialize::deserialize(d)?;
        b.map(|b| {
            b.into_vec()
                .try_into()
                .map_err(|_| D::Error::custom("expected 32 bytes"))
        })
        .transpose()
    }
}

/// Email validation provider (the app validates the address through one of these).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Google,
    Facebook,
}

/// `POST /v1/devices` — "Registro ciudadano". `Debug` redacts the email and the card front.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisterRequest {
    pub v: u8,
    /// The device's X25519 public key; the activation code is bound to it.
    #[serde(with = "bytes32")]
    pub device_public: [u8; 32],
    pub email: String,
    pub provider: Provider,
    /// Binds the sealed card front (used as the "capture id" of its encryption).
    pub registration_id: CaptureId,
    /// The card front's data key, HPKE-sealed to the endpoint (81 bytes).
    #[serde(with = "serde_bytes")]
    pub front_sealed_key: Vec<u8>,
    /// The card front, encrypted exactly like a capture's `front` part.
    #[serde(with = "serde_bytes")]
    pub front: Vec<u8>,
}

/// Answer to a registration (201).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisterResponse {
    pub v: u8,
    pub registration_id: CaptureId,
    /// When the emailed code stops working (24 h after issue).
    #[serde(with = "time::serde::rfc3339")]
    pub code_expires_at: OffsetDateTime,
}

/// `POST /v1/devices/activate`. `Debug` redacts the code and proof.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct ActivateRequest {
    pub v: u8,
    #[serde(with = "bytes32")]
    pub device_public: [u8; 32],
    pub code: String,
    /// 16 random bytes chosen by the device for this attempt.
    #[serde(with = "serde_bytes")]
    pub nonce: Vec<u8>,
    /// [`super::activation_proof`] over code, nonce, key, signing key and auxiliar id.
    #[serde(with = "bytes32")]
    pub proof: [u8; 32],
    /// v1.1: the device's Ed25519 key that signs its commits (required by a v1.1 endpoint; a
    /// request without it is a v1 device's and gets `426 upgrade_required`).
    #[serde(default, with = "opt_bytes32", skip_serializing_if = "Option::is_none")]
    pub signing_public: Option<[u8; 32]>,
    /// v1.1: the auxiliar id this device captures as, bound to this device key from now on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auxiliar_id: Option<String>,
}

/// Answer to an activation (200). `Debug` redacts the token.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct ActivateResponse {
    pub v: u8,
    /// Bearer token for uploads and commits.
    pub token: String,
    /// The token is valid while the code is (24 h from registration).
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// The endpoint's newest Ed25519 receipt key. Kept for v1 decoders: a v1.1 device trusts
    /// only keys certified by the INE root (`key_certs`, and each receipt's `key_cert`).
    #[serde(with = "bytes32")]
    pub receipt_key: [u8; 32],
    pub receipt_key_id: String,
    /// The open processes (those this version can read: see [`readable_processes`]).
    #[serde(deserialize_with = "readable_processes")]
    pub processes: Vec<Process>,
    /// v1.1: certificates, signed by the INE root, of the endpoint's current and still-valid
    /// receipt and seal keys. Absent from a v1 endpoint's answer (then empty).
    #[serde(default)]
    pub key_certs: Vec<SignedKeyCert>,
}

impl std::fmt::Debug for RegisterRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisterRequest")
            .field("v", &self.v)
            .field("email", &"<redacted>")
            .field("provider", &self.provider)
            .field("registration_id", &self.registration_id)
            .field("front_sealed_key_len", &self.front_sealed_key.len())
            .field("front_len", &self.front.len())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for ActivateRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActivateRequest")
            .field("v", &self.v)
            .field("code", &"<redacted>")
            .field("proof", &"<redacted>")
            .field("signing_public", &self.signing_public.is_some())
            .field("auxiliar_id", &self.auxiliar_id)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for ActivateResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActivateResponse")
            .field("v", &self.v)
            .field("token", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .field("receipt_key_id", &self.receipt_key_id)
            .field("processes", &self.processes.len())
            .field("key_certs", &self.key_certs.len())
            .finish_non_exhaustive()
    }
}

/// `GET /v1/processes` (200).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessList {
    pub v: u8,
    /// The catalog (those processes this version can read: see [`readable_processes`]).
    #[serde(deserialize_with = "readable_processes")]
    pub processes: Vec<Process>,
}

/// Decodes a list of processes the way docs/protocol.md §2 asks of a v1 device: a key it does
/// not know is ignored, and a process it cannot read (a `scope` form or a required field of a
/// later version) or whose definition breaks the §6.3 rules is left out, keeping the rest of
/// the answer. The endpoint still judges every commit against its own rules, so nothing is
/// counted on the strength of a rule the device skipped.
pub fn readable_processes<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<Process>, D::Error> {
    let raw: Vec<ciborium::Value> = Deserialize::deserialize(d)?;
    Ok(raw
        .into_iter()
        .filter_map(|v| v.deserialized::<Process>().ok())
        .filter(|p| p.check().is_ok())
        .collect())
}

/// One part named in a commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitPart {
    pub kind: PartKind,
    /// The tus upload URL path that holds the part's ciphertext (`/v1/uploads/{id}`).
    pub upload: String,
    #[serde(with = "bytes32")]
    pub sha256: [u8; 32],
    pub length: u64,
}

/// `PUT /v1/supports/{capture_id}` with `Idempotency-Key: {capture_id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommitRequest {
    pub v: u8,
    pub capture_id: CaptureId,
    pub process_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub captured_at: OffsetDateTime,
    pub collector: Collector,
    /// The capture's data key, HPKE-sealed (auth mode) by this device to the endpoint.
    #[serde(with = "serde_bytes")]
    pub sealed_key: Vec<u8>,
    /// Exactly the five parts: front, back, selfie, signature, manifest.
    pub parts: Vec<CommitPart>,
    /// v1.1: the device clock when this commit was built (the endpoint corrects a skewed
    /// `captured_at` with it, §6.5).
    #[serde(with = "time::serde::rfc3339")]
    pub sent_at: OffsetDateTime,
    /// v1.1: the key id of the seal key `sealed_key` was sealed to.
    pub seal_key_id: String,
}

/// v1.1: the body of `PUT /v1/supports/{capture_id}`: the encoded [`CommitRequest`] and the
/// device's Ed25519 signature over `"apoyo-sync/v1.1/commit" || commit`, made with the signing
/// key it registered at activation. The exact bytes are signed, so nothing is re-encoded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignedCommit {
    pub v: u8,
    /// The CBOR encoding of a [`CommitRequest`].
    #[serde(with = "serde_bytes")]
    pub commit: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub device_signature: Vec<u8>,
}

/// The outcome a receipt certifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceiptResult {
    /// The support was counted.
    Counted,
    /// The citizen was already counted for this process (LGIPE art. 385): this support is
    /// recorded but not counted again; `first_capture_id` names the counted one.
    Duplicate,
}

/// A part's digest as the endpoint verified it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptPart {
    pub kind: PartKind,
    #[serde(with = "bytes32")]
    pub sha256: [u8; 32],
}

/// What the endpoint signs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Receipt {
    pub v: u8,
    pub capture_id: CaptureId,
    pub process_id: String,
    pub device_id: String,
    pub result: ReceiptResult,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_capture_id: Option<CaptureId>,
    /// The parts as the endpoint verified them, in kind order (front, back, selfie, signature,
    /// manifest).
    pub parts: Vec<ReceiptPart>,
    #[serde(with = "time::serde::rfc3339")]
    pub counted_at: OffsetDateTime,
    /// Id of the Ed25519 key that signed (hex of the first 8 bytes of its SHA-256).
    pub endpoint_key_id: String,
    /// v1.1: who captured it, as committed.
    pub collector: Collector,
    /// v1.1: the capture time as committed (the device's clock).
    #[serde(with = "time::serde::rfc3339")]
    pub captured_at: OffsetDateTime,
    /// v1.1: SHA-256 of the committed `sealed_key`.
    #[serde(with = "bytes32")]
    pub sealed_key_sha256: [u8; 32],
}

/// Answer to a commit (201 counted, 200 duplicate; the same bytes on every replay).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignedReceipt {
    /// The CBOR encoding of a [`Receipt`].
    #[serde(with = "serde_bytes")]
    pub receipt: Vec<u8>,
    /// Ed25519 over `"apoyo-sync/v1/receipt" || receipt`.
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
    /// v1.1: the INE root's certificate of the key that signed, so that the receipt verifies
    /// on its own against the provisioned root, after any rotation. A v1.1 device never
    /// deletes on a receipt without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_cert: Option<SignedKeyCert>,
}

/// Every 4xx/5xx answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub v: u8,
    pub reason: Reason,
    /// Human-readable detail in English, never personal data.
    pub detail: String,
}

/// `GET /v1/dev/mailbox/{email}` (development endpoint only; JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mailbox {
    pub email: String,
    pub code: String,
    pub expires_at: String,
}
