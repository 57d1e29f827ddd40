//! Reason codes: why the endpoint refused, and what the device does about it.
//!
//! Classified in one place ([`Reason::action`]): a transient reason is retried with backoff;
//! a permanent one quarantines the capture with the reason, never deletes it.

use serde::{Deserialize, Serialize};

/// Every reason code the endpoint may answer with. Unknown codes decode as [`Reason::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    // --- permanent rejections of a support (INE category in the comment) ---
    /// Vigencia ended before the process cutoff ("credencial inválida").
    CredentialExpired,
    /// Credential model not accepted by the process ("credencial inválida").
    ModelNotAccepted,
    /// Clave de elector or other card field malformed ("credencial inválida").
    CardInvalid,
    /// The sección/entidad is outside the process's scope (LGIPE art. 385).
    OutOfScope,
    /// The process does not exist ("otro").
    ProcessUnknown,
    /// The process is not open at the capture time ("otro").
    ProcessClosed,
    /// The sealed key or a part could not be decrypted or authenticated ("otro").
    Undecryptable,
    /// A part's length or SHA-256 differs from the commit ("otro").
    PartMismatch,
    /// The manifest does not agree with the commit (id, process, capture time) ("otro").
    ManifestMismatch,
    /// The same capture id was committed with different content.
    IdempotencyConflict,
    /// A body that is not a valid message of this protocol.
    Malformed,
    /// A body or declared length over the documented maximum.
    TooLarge,
    // --- conditions the device handles without quarantining ---
    /// An upload named in the commit is unknown, incomplete or expired: upload again.
    UploadMissing,
    /// The activation token is missing, unknown or expired: activate again.
    Unauthorized,
    /// Slow down (429), with Retry-After.
    RateLimited,
    /// The endpoint is temporarily unable to serve (503), with Retry-After.
    Unavailable,
    // --- activation ---
    /// The activation code is not one the endpoint issued.
    ActivationCodeWrong,
    /// The activation code's 24 hours have passed: register again.
    ActivationCodeExpired,
    /// The code was issued to another device's key.
    ActivationCodeForeignDevice,
    /// The activation proof does not verify for the presented device key.
    ActivationProofInvalid,
    /// A registration request that cannot be honoured (bad email, provider or card image).
    RegistrationInvalid,
    /// Not found (unknown upload id, unknown route).
    NotFound,
    // --- protocol v1.1 ---
    /// The commit's collector is not this device (Mi Apoyo), or an auxiliar id of the wrong
    /// form or bound to another device key (v1.1, §6.5).
    CollectorInvalid,
    /// The commit's device signature does not verify under the signing key this device
    /// registered at activation: activate again (v1.1).
    CommitSignatureInvalid,
    /// A v1 message (no device signature, no signing key): this endpoint speaks v1.1 (426).
    UpgradeRequired,
    /// Any code this version does not know.
    #[serde(other)]
    Other,
}

/// What the device does with a reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Retry later with backoff (honouring Retry-After).
    Retry,
    /// Forget the upload state of the capture's parts and upload them again.
    Reupload,
    /// The activation is gone: stop syncing, ask the user to activate again.
    Reactivate,
    /// Quarantine the capture with this reason.
    Quarantine,
}

impl Reason {
    /// The single place that decides transient vs permanent.
    pub fn action(self) -> Action {
        match self {
            // Other: a code this version does not know; never quarantine on what we cannot read.
            Reason::RateLimited | Reason::Unavailable | Reason::Other => Action::Retry,
            Reason::UploadMissing | Reason::NotFound => Action::Reupload,
            // 426 goes to a v1 device, which reads it as `other` and retries; a v1.1 device never
            // gets it, and would retry as well rather than quarantine on a version mismatch.
            Reason::UpgradeRequired => Action::Retry,
            Reason::Unauthorized | Reason::CommitSignatureInvalid => Action::Reactivate,
            Reason::CredentialExpired
            | Reason::ModelNotAccepted
            | Reason::CardInvalid
            | Reason::OutOfScope
            | Reason::ProcessUnknown
            | Reason::ProcessClosed
            | Reason::Undecryptable
            | Reason::PartMismatch
            | Reason::ManifestMismatch
            | Reason::IdempotencyConflict
            | Reason::Malformed
            | Reason::TooLarge
            | Reason::ActivationCodeWrong
            | Reason::ActivationCodeExpired
            | Reason::ActivationCodeForeignDevice
            | Reason::ActivationProofInvalid
            | Reason::RegistrationInvalid
            | Reason::CollectorInvalid => Action::Quarantine,
        }
    }

    /// The snake_case code on the wire.
    pub fn code(self) -> &'static str {
        match self {
            Reason::CredentialExpired => "credential_expired",
            Reason::ModelNotAccepted => "model_not_accepted",
            Reason::CardInvalid => "card_invalid",
            Reason::OutOfScope => "out_of_scope",
            Reason::ProcessUnknown => "process_unknown",
            Reason::ProcessClosed => "process_closed",
            Reason::Undecryptable => "undecryptable",
            Reason::PartMismatch => "part_mismatch",
            Reason::ManifestMismatch => "manifest_mismatch",
            Reason::IdempotencyConflict => "idempotency_conflict",
            Reason::Malformed => "malformed",
            Reason::TooLarge => "too_large",
            Reason::UploadMissing => "upload_missing",
            Reason::Unauthorized => "unauthorized",
            Reason::RateLimited => "rate_limited",
            Reason::Unavailable => "unavailable",
            Reason::ActivationCodeWrong => "activation_code_wrong",
            Reason::ActivationCodeExpired => "activation_code_expired",
            Reason::ActivationCodeForeignDevice => "activation_code_foreign_device",
            Reason::ActivationProofInvalid => "activation_proof_invalid",
            Reason::RegistrationInvalid => "registration_invalid",
            Reason::NotFound => "not_found",
            Reason::CollectorInvalid => "collector_invalid",
            Reason::CommitSignatureInvalid => "commit_signature_invalid",
            Reason::UpgradeRequired => "upgrade_required",
            Reason::Other => "other",
        }
    }

    /// Whether the endpoint stores this rejection with the verdict and replays it to every
    /// later commit of the same content (protocol §6.5, "Which answers are stored and
    /// replayed"): the `422`s of the decryption, manifest, process and card steps. A replay
    /// comes before the upload check, so a retry of such a capture commits before uploading.
    pub fn verdict_is_stored(self) -> bool {
        matches!(
            self,
            Reason::Undecryptable
                | Reason::ManifestMismatch
                | Reason::ProcessUnknown
                | Reason::ProcessClosed
                | Reason::CardInvalid
                | Reason::ModelNotAccepted
                | Reason::CredentialExpired
                | Reason::OutOfScope
        )
    }

    /// The reason a code names, if this version knows it (`other` is known).
    pub fn from_code(code: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.code() == code)
    }

    /// The HTTP status the endpoint answers with for this reason.
    pub fn http_status(self) -> u16 {
        match self {
            Reason::CredentialExpired
            | Reason::ModelNotAccepted
            | Reason::CardInvalid
            | Reason::OutOfScope
            | Reason::ProcessUnknown
            | Reason::ProcessClosed
            | Reason::Undecryptable
            | Reason::PartMismatch
            | Reason::ManifestMismatch
            | Reason::RegistrationInvalid
            | Reason::CollectorInvalid => 422,
            Reason::CommitSignatureInvalid => 403,
            Reason::UpgradeRequired => 426,
            Reason::IdempotencyConflict => 409,
            Reason::Malformed => 400,
            Reason::TooLarge => 413,
            Reason::UploadMissing => 409,
            Reason::Unauthorized => 401,
            Reason::RateLimited => 429,
            Reason::Unavailable => 503,
            Reason::ActivationCodeWrong
            | Reason::ActivationCodeForeignDevice
            | Reason::ActivationProofInvalid => 403,
            Reason::ActivationCodeExpired => 410,
            Reason::NotFound => 404,
            Reason::Other => 400,
        }
    }

    /// Every reason (for docs and exhaustive tests).
    pub const ALL: [Reason; 26] = [
        Reason::CredentialExpired,
        Reason::ModelNotAccepted,
        Reason::CardInvalid,
        Reason::OutOfScope,
        Reason::ProcessUnknown,
        Reason::ProcessClosed,
        Reason::Undecryptable,
        Reason::PartMismatch,
        Reason::ManifestMismatch,
        Reason::IdempotencyConflict,
        Reason::Malformed,
        Reason::TooLarge,
        Reason::UploadMissing,
        Reason::Unauthorized,
        Reason::RateLimited,
        Reason::Unavailable,
        Reason::ActivationCodeWrong,
        Reason::ActivationCodeExpired,
        Reason::ActivationCodeForeignDevice,
        Reason::ActivationProofInvalid,
        Reason::RegistrationInvalid,
        Reason::NotFound,
        Reason::CollectorInvalid,
        Reason::CommitSignatureInvalid,
        Reason::UpgradeRequired,
        Reason::Other,
    ];
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_roundtrip_through_serde() {
        for r in Reason::ALL {
            let v = crate::cbor::to_vec(&r).unwrap();
            let back: Reason = crate::cbor::from_slice(&v, 100, "reason").unwrap();
            assert_eq!(back, r);
            assert_eq!(
                serde_json::to_string(&r).unwrap(),
                format!("\"{}\"", r.code())
            );
        }
        let unknown: Reason = serde_json::from_str("\"something_new\"").unwrap();
        assert_eq!(unknown, Reason::Other);
    }

    #[test]
    fn stored_verdicts_are_the_content_rejections() {
        let stored: Vec<&str> = Reason::ALL
            .into_iter()
            .filter(|r| r.verdict_is_stored())
            .map(Reason::code)
            .collect();
        // Every stored verdict is a permanent 422; part_mismatch depends on the uploads and
        // registration_invalid is not a commit answer, so neither is stored.
        assert_eq!(
            stored,
            [
                "credential_expired",
                "model_not_accepted",
                "card_invalid",
                "out_of_scope",
                "process_unknown",
                "process_closed",
                "undecryptable",
                "manifest_mismatch"
            ]
        );
        for r in Reason::ALL.into_iter().filter(|r| r.verdict_is_stored()) {
            assert_eq!((r.http_status(), r.action()), (422, Action::Quarantine));
            assert_eq!(Reason::from_code(r.code()), Some(r));
        }
        assert_eq!(Reason::from_code("receipt_invalid"), None);
    }
}
