//! The wire contract between a device and the INE endpoint, version 1.
//!
//! The prose specification is `docs/protocol.md`; the CDDL (RFC 8610) is
//! `schema/protocol.cddl`. This module holds the message types both sides use, the routes,
//! the limits and the reason codes. Decoders are plain functions from bytes to typed results
//! ([`decode`]), each bounded by a documented maximum size.

pub mod messages;
pub mod reason;
pub mod trust;

pub use messages::*;
pub use reason::{Action, Reason};
pub use trust::{KeyCert, KeyPurpose, ReceiptRefusal, SignedKeyCert};

use serde::de::DeserializeOwned;

use crate::crypto::{self, SecretKey};
use crate::error::Result;
use crate::limits::{MAX_CARD_IMAGE_BYTES, MAX_MANIFEST_BYTES};

/// Protocol version carried in every message (`v`).
pub const VERSION: u8 = 1;

/// Media type of every CBOR body.
pub const CBOR: &str = "application/cbor";

/// Routes (relative to the endpoint's base URL).
pub mod routes {
    pub const REGISTER: &str = "/v1/devices";
    pub const ACTIVATE: &str = "/v1/devices/activate";
    pub const PROCESSES: &str = "/v1/processes";
    pub const UPLOADS: &str = "/v1/uploads";
    pub const SUPPORTS: &str = "/v1/supports";
    pub const DEV_MAILBOX: &str = "/v1/dev/mailbox";
    pub const ADMIN_STATS: &str = "/v1/admin/stats";
}

/// tus 1.0 constants.
pub mod tus {
    pub const RESUMABLE: &str = "1.0.0";
    pub const EXTENSIONS: &str = "creation,checksum,termination,expiration";
    pub const CHECKSUM_ALGORITHMS: &str = "sha1,sha256";
    /// Content type of a PATCH body.
    pub const OFFSET_STREAM: &str = "application/offset+octet-stream";
    /// The status tus uses for a checksum mismatch.
    pub const CHECKSUM_MISMATCH: u16 = 460;
}

/// Size limits, enforced by both sides before allocating.
pub mod limits {
    use super::*;
    /// Registration carries the sealed card front: the image limit plus framing.
    pub const MAX_REGISTER_BYTES: usize = MAX_CARD_IMAGE_BYTES + 64 * 1024;
    /// Activation: a code, a nonce, a key and a MAC.
    pub const MAX_ACTIVATE_BYTES: usize = 1024;
    /// Answers other than the catalog: receipts, errors, activation.
    pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;
    /// The process catalog (a district-scoped process may list thousands of secciones).
    pub const MAX_CATALOG_BYTES: usize = 4 * 1024 * 1024;
    /// A commit: five parts' metadata and a sealed key.
    pub const MAX_COMMIT_BYTES: usize = 8 * 1024;
    /// A signed commit (v1.1): a commit, its signature and the framing.
    pub const MAX_SIGNED_COMMIT_BYTES: usize = MAX_COMMIT_BYTES + 256;
    /// Bytes of part ciphertext per PATCH. A PATCH cut midway is discarded by the server
    /// (its checksum cannot match), so this bounds what a drop costs: under one PATCH.
    /// 64 KiB is a few seconds on a rural 2G/3G link.
    pub const PATCH_BYTES: usize = 64 * 1024;
    /// The largest part ciphertext an upload may declare (a selfie at its limit, plus tags).
    pub const MAX_PART_BYTES: u64 = 4 * 1024 * 1024;
    /// The largest manifest ciphertext.
    pub const MAX_MANIFEST_CT_BYTES: u64 = MAX_MANIFEST_BYTES as u64 + 1024;
    /// Length of an activation code.
    pub const ACTIVATION_CODE_LEN: usize = 10;
}

/// Decodes a CBOR protocol message of at most `limit` bytes.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], limit: usize, what: &'static str) -> Result<T> {
    crate::cbor::from_slice(bytes, limit, what)
}

/// Encodes a protocol message.
pub fn encode<T: serde::Serialize>(msg: &T) -> Result<Vec<u8>> {
    crate::cbor::to_vec(msg)
}

/// The activation proof: `HMAC-SHA256(K, "apoyo-sync/v1/activate" || code || nonce || device_public)`
/// with `K = HKDF-SHA256(X25519(device, endpoint), info = "activation")`. Only the holder of
/// the device private key the code was issued to (or the endpoint) can compute it.
pub fn activation_proof(
    shared: &SecretKey,
    code: &str,
    nonce: &[u8],
    device_public: &[u8; 32],
) -> Result<[u8; 32]> {
    let k = crypto::derive_key(shared.as_bytes(), &[b"activation"])?;
    crypto::hmac_sha256(
        k.as_bytes(),
        &[
            b"apoyo-sync/v1/activate",
            code.as_bytes(),
            nonce,
            device_public,
        ],
    )
}

/// Verifies an activation proof in constant time.
pub fn verify_activation_proof(
    shared: &SecretKey,
    code: &str,
    nonce: &[u8],
    device_public: &[u8; 32],
    proof: &[u8],
) -> Result<bool> {
    let k = crypto::derive_key(shared.as_bytes(), &[b"activation"])?;
    crypto::hmac_sha256_verify(
        k.as_bytes(),
        &[
            b"apoyo-sync/v1/activate",
            code.as_bytes(),
            nonce,
            device_public,
        ],
        proof,
    )
}

/// The v1.1 activation proof: `HMAC-SHA256(K, "apoyo-sync/v1.1/activate" || code || nonce ||
/// device_public || signing_public || len(auxiliar_id) || auxiliar_id)`, `K` as in v1 and
/// `len` one byte (0 without an auxiliar id). It binds the signing key and the auxiliar id to
/// the holder of the device key, so neither can be swapped on the way.
pub fn activation_proof_v11(
    shared: &SecretKey,
    code: &str,
    nonce: &[u8],
    device_public: &[u8; 32],
    signing_public: &[u8; 32],
    auxiliar_id: Option<&str>,
) -> Result<[u8; 32]> {
    proof_v11(
        shared,
        code,
        nonce,
        device_public,
        signing_public,
        auxiliar_id,
        None,
    )
    .map(|t| t.unwrap_or_default())
}

/// Verifies a v1.1 activation proof in constant time (HMAC verification).
pub fn verify_activation_proof_v11(
    shared: &SecretKey,
    req: &ActivateRequest,
    signing_public: &[u8; 32],
) -> Result<bool> {
    let ok = proof_v11(
        shared,
        &req.code,
        &req.nonce,
        &req.device_public,
        signing_public,
        req.auxiliar_id.as_deref(),
        Some(&req.proof),
    )?;
    Ok(ok.is_some())
}

/// Computes the v1.1 proof, or (with `check`) verifies it: `Some` when it matches.
fn proof_v11(
    shared: &SecretKey,
    code: &str,
    nonce: &[u8],
    device_public: &[u8; 32],
    signing_public: &[u8; 32],
    auxiliar_id: Option<&str>,
    check: Option<&[u8]>,
) -> Result<Option<[u8; 32]>> {
    let k = crypto::derive_key(shared.as_bytes(), &[b"activation"])?;
    let aux = auxiliar_id.unwrap_or("").as_bytes();
    let len = u8::try_from(aux.len())
        .map_err(|_| crate::Error::Decode("the auxiliar id is too long".into()))?;
    let parts: [&[u8]; 7] = [
        b"apoyo-sync/v1.1/activate",
        code.as_bytes(),
        nonce,
        device_public,
        signing_public,
        &[len],
        aux,
    ];
    match check {
        None => crypto::hmac_sha256(k.as_bytes(), &parts).map(Some),
        Some(tag) => Ok(crypto::hmac_sha256_verify(k.as_bytes(), &parts, tag)?.then_some([0; 32])),
    }
}

/// Domain separation for receipt signatures.
pub const RECEIPT_CONTEXT: &[u8] = b"apoyo-sync/v1/receipt";

/// The bytes an endpoint signs for a receipt.
pub fn receipt_signing_input(receipt_cbor: &[u8]) -> Vec<u8> {
    [RECEIPT_CONTEXT, receipt_cbor].concat()
}
