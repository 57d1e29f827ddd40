//! The protocol contract shared with the endpoint — **not for apps**.
//!
//! What the reference endpoint (`endpoint/`), the field kit and the CLI's `serve` and
//! `endpoint-keygen` need to speak the same protocol as the device: the messages and reason
//! codes (`docs/protocol.md`, `schema/protocol.cddl`), the bounded CBOR codec, the tus
//! headers, the routes, every size limit, the validation both sides apply to a capture's
//! content, and the crypto an endpoint uses to open sealed material and sign receipts.
//! Changing anything here changes the wire: version it (docs/protocol.md §1).
//!
//! Apps use the facade at the crate root ([`crate::Engine`]); `tests/public_surface.rs`
//! fails if a bridge or a CLI device command imports this module.

pub use crate::protocol::*;

/// The manifest sealed inside every capture's upload, and the image formats it names.
pub use crate::model::{ImageFormat, ImageFormats, Manifest, is_auxiliar_id};

/// Size limits, enforced by both sides before allocating: the capture limits and the
/// protocol's message limits.
pub mod limits {
    pub use crate::limits::*;
    pub use crate::protocol::limits::*;
}

/// The bounded CBOR codec every message goes through (depth and size limits).
pub mod cbor {
    pub use crate::cbor::*;
}

/// The content checks both sides apply (the endpoint re-checks what the device checked).
pub mod validate {
    pub use crate::validate::*;
}

/// The endpoint's side of the crypto: opening what devices sealed to it, its keys and their
/// text forms, key certificates and receipt signatures, and the primitives it derives its
/// own secrets with. (Sealing, the device's identity and key guards are the device's.)
pub mod crypto {
    /// Key text forms (`apoyo-seal-pub-v1 …`), key ids and Ed25519 signatures.
    pub use crate::crypto::anchor;
    pub use crate::crypto::keys::device_id_of;
    /// The receipt signer (protocol v1) and its verification.
    pub use crate::crypto::receipt;
    pub use crate::crypto::wrap::open_from_device;
    pub use crate::crypto::{
        CIPHERTEXT_VERSION, Ed25519Secret, EndpointPublicKey, EndpointSecretKey, IneRoot,
        PartOpener, SecretKey, ciphertext_len, derive_key, fill_random, hmac_sha256,
        hmac_sha256_verify, random_key, sha256,
    };
}

/// Durable, private files and folders: fsync of a directory so that a file created, renamed or
/// removed in it survives power loss, and 0600/0700 creation (the endpoint's blobs, database
/// and keys are made durable and private the same way as the device's store).
pub use crate::fsutil::{
    create_private, create_private_dir, create_private_dir_durably, fsync_dir, precreate_private,
};
