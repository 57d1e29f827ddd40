//! Protocol v1.1 state of the device store (ADR 0015): what the app provisions (the INE root
//! beside the seal key), the device's commit-signing key, the endpoint keys the root
//! certified, which seal key each capture was sealed to, and the device clock's offset.

use rusqlite::{OptionalExtension, params};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::Store;
use crate::crypto::{self, Ed25519Secret, EndpointPublicKey, IneRoot, SecretKey, wrap};
use crate::error::{Error, Result};
use crate::model::CaptureId;
use crate::protocol::{KeyPurpose, Receipt, SignedKeyCert, SignedReceipt};

/// What the app provisions out of band (from its build, never from the network): INE's seal
/// key, to which data keys are sealed, and the INE root, which certifies the endpoint's
/// receipt and seal keys. A receipt is grounds for deleting a capture only if it chains to
/// this root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InePublicKeys {
    pub seal_key: EndpointPublicKey,
    pub ine_root: IneRoot,
}

impl InePublicKeys {
    /// From the two provisioned text forms (`apoyo-seal-pub-v1 <hex>` or v1's bare hex, and
    /// `apoyo-ine-root-v1 <hex>`); a private key, another key's file, a zero or low-order key
    /// is refused with [`Error::BadKey`].
    #[cfg(any(test, feature = "testkit"))]
    pub fn from_text(seal_key: &str, ine_root: &str) -> Result<Self> {
        Ok(InePublicKeys {
            seal_key: crypto::anchor::parse_seal_public(seal_key)?,
            ine_root: IneRoot::from_text(ine_root)?,
        })
    }
}

/// Domain of the signing key's wrap.
const SIGNING_DOMAIN: &str = "signing";

impl Store {
    /// Records the provisioning of a new store, or of a store made before v1.1 (which has no
    /// root yet): the root is set once; a different root later is refused. Creates the
    /// device's commit-signing key if it has none.
    pub fn provision(&mut self, p: &InePublicKeys) -> Result<()> {
        crypto::anchor::check_x25519_public(&p.seal_key.0, "INE seal key")?;
        let stored: Option<Vec<u8>> =
            self.conn()
                .query_row("SELECT ine_root FROM device WHERE singleton = 1", [], |r| {
                    r.get(0)
                })?;
        match stored {
            Some(r) if r[..] == p.ine_root.to_bytes()[..] => {}
            Some(_) => return Err(Error::ProvisioningMismatch),
            None => {
                self.conn().execute(
                    "UPDATE device SET ine_root = ?1 WHERE singleton = 1",
                    [&p.ine_root.to_bytes()[..]],
                )?;
            }
        }
        self.ensure_signing_key()?;
        Ok(())
    }

    /// The provisioned INE root, if the app provisioned one.
    pub fn ine_root(&self) -> Result<Option<IneRoot>> {
        let stored: Option<Vec<u8>> =
            self.conn()
                .query_row("SELECT ine_root FROM device WHERE singleton = 1", [], |r| {
                    r.get(0)
                })?;
        stored
            .map(|b| {
                let arr: [u8; 32] = b.try_into().map_err(|_| Error::integrity("INE root"))?;
                IneRoot::from_bytes(&arr)
            })
            .transpose()
    }

    /// Creates the commit-signing key when the store has none (new stores, and stores made
    /// before v1.1, at their first open or provisioning).
    pub(crate) fn ensure_signing_key(&mut self) -> Result<()> {
        let has: Option<Vec<u8>> = self.conn().query_row(
            "SELECT wrapped_signing FROM device WHERE singleton = 1",
            [],
            |r| r.get(0),
        )?;
        if has.is_some() {
            return Ok(());
        }
        let key = Ed25519Secret::generate()?;
        let secret = SecretKey::from_bytes(*key.to_bytes());
        let wrapped = wrap::wrap(self.master(), SIGNING_DOMAIN, self.store_id(), &secret)?;
        self.conn().execute(
            "UPDATE device SET wrapped_signing = ?1, signing_public = ?2 WHERE singleton = 1",
            params![wrapped, &key.public()[..]],
        )?;
        Ok(())
    }

    /// The device's commit-signing key (unwrapped in memory for one use). The sync engine
    /// signs each commit with it; it is public for tools and tests that build commits by hand.
    pub fn signing_key(&self) -> Result<Ed25519Secret> {
        let wrapped: Option<Vec<u8>> = self.conn().query_row(
            "SELECT wrapped_signing FROM device WHERE singleton = 1",
            [],
            |r| r.get(0),
        )?;
        let wrapped = wrapped.ok_or(Error::NotActivated)?;
        let secret = wrap::unwrap(
            self.master(),
            SIGNING_DOMAIN,
            self.store_id(),
            &wrapped,
            "signing key",
        )?;
        Ok(Ed25519Secret::from_bytes(secret.as_bytes()))
    }

    /// The public half of the commit-signing key.
    pub fn signing_public(&self) -> Result<[u8; 32]> {
        Ok(self.signing_key()?.public())
    }

    /// Keeps the certificates an activation answer carried that chain to the provisioned root
    /// (others are dropped, never trusted), and seals new captures to the newest seal key among
    /// them. Returns how many were kept.
    pub fn put_key_certs(&mut self, certs: &[SignedKeyCert]) -> Result<usize> {
        let Some(root) = self.ine_root()? else {
            return Ok(0);
        };
        let mut kept = 0;
        for signed in certs {
            let purpose = match signed.verify(&root, KeyPurpose::Seal) {
                Ok(_) => KeyPurpose::Seal,
                Err(_) => KeyPurpose::Receipt,
            };
            let Ok(cert) = signed.verify(&root, purpose) else {
                tracing::warn!("dropped a key certificate that does not chain to the INE root");
                continue;
            };
            if purpose == KeyPurpose::Seal
                && crypto::anchor::check_x25519_public(&cert.key, "seal key").is_err()
            {
                continue;
            }
            let fmt = |t: OffsetDateTime| {
                t.format(&Rfc3339)
                    .map_err(|e| Error::Internal(e.to_string()))
            };
            self.conn().execute(
                "INSERT INTO endpoint_keys (key_id, purpose, key, cert, not_before, not_after)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (key_id) DO NOTHING",
                params![
                    cert.key_id,
                    if purpose == KeyPurpose::Seal {
                        "seal"
                    } else {
                        "receipt"
                    },
                    &cert.key[..],
                    crate::protocol::encode(signed)?,
                    fmt(cert.not_before)?,
                    fmt(cert.not_after)?
                ],
            )?;
            kept += 1;
        }
        self.refresh_seal_key()?;
        Ok(kept)
    }

    /// Sets the seal key new captures use: the certified seal key with the latest
    /// `not_before` (the root's time, not the device clock), else the provisioned one.
    pub(crate) fn refresh_seal_key(&mut self) -> Result<()> {
        let newest: Option<Vec<u8>> = self
            .conn()
            .query_row(
                "SELECT key FROM endpoint_keys WHERE purpose = 'seal' ORDER BY not_before DESC, key_id DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()?;
        let key = match newest {
            Some(k) => k,
            None => self.conn().query_row(
                "SELECT endpoint_public FROM device WHERE singleton = 1",
                [],
                |r| r.get(0),
            )?,
        };
        let arr: [u8; 32] = key.try_into().map_err(|_| Error::integrity("seal key"))?;
        self.set_seal_key(EndpointPublicKey(arr));
        Ok(())
    }

    /// The key id of the seal key a capture's data key was sealed to.
    pub fn capture_seal_key_id(&self, id: &CaptureId) -> Result<String> {
        let kid: Option<Option<String>> = self
            .conn()
            .query_row(
                "SELECT seal_key_id FROM capture_keys WHERE capture_id = ?1",
                [id.to_string()],
                |r| r.get(0),
            )
            .optional()?;
        match kid {
            None => Err(Error::UnknownCapture(id.to_string())),
            Some(Some(k)) => Ok(k),
            Some(None) => {
                let provisioned: Vec<u8> = self.conn().query_row(
                    "SELECT endpoint_public FROM device WHERE singleton = 1",
                    [],
                    |r| r.get(0),
                )?;
                let arr: [u8; 32] = provisioned
                    .try_into()
                    .map_err(|_| Error::integrity("seal key"))?;
                Ok(EndpointPublicKey(arr).key_id())
            }
        }
    }

    /// Records a receipt that passed `protocol::trust::verify_receipt`, with its key
    /// certificate (so it re-verifies against the root when listed), and marks the capture
    /// committed.
    pub fn record_receipt_v11(&mut self, receipt: &Receipt, signed: &SignedReceipt) -> Result<()> {
        let cert = signed
            .key_cert
            .as_ref()
            .map(crate::protocol::encode)
            .transpose()?;
        self.record_receipt_with_cert(receipt, &signed.receipt, &signed.signature, cert)
    }

    /// Whether a kept receipt verifies: with its key certificate, against the INE root; a
    /// receipt kept before v1.1, against the receipt key learned at that activation.
    pub(crate) fn kept_receipt_verifies(
        &self,
        receipt: &[u8],
        signature: &[u8],
        key_cert: Option<&[u8]>,
        legacy_key: Option<&[u8; 32]>,
    ) -> Result<bool> {
        let Some(cert) = key_cert else {
            return Ok(legacy_key.is_some_and(|k| {
                crypto::anchor::verify_ed25519(
                    k,
                    &crate::protocol::receipt_signing_input(receipt),
                    signature,
                )
                .is_ok()
            }));
        };
        let (Some(root), Ok(cert)) = (
            self.ine_root()?,
            crate::protocol::decode::<SignedKeyCert>(cert, 2048, "key certificate"),
        ) else {
            return Ok(false);
        };
        let signed = SignedReceipt {
            receipt: receipt.to_vec(),
            signature: signature.to_vec(),
            key_cert: Some(cert),
        };
        Ok(crate::protocol::trust::verify_receipt_signature(&root, &signed).is_ok())
    }

    /// Overwrites the keyed duplicate hash of every purged capture whose process has closed
    /// (its `closes` is at or before `now`), so the phone no longer holds anything that could
    /// test whether a given clave supported it. While the process is open the hash stays, also
    /// after the purge: it is what refuses the same citizen twice on this phone (ADR 0015).
    /// Returns how many were cleared.
    pub fn forget_closed_duplicates(&mut self, now: OffsetDateTime) -> Result<u64> {
        let closed: Vec<String> = self
            .processes()?
            .into_iter()
            .filter(|p| p.closes.is_some_and(|c| c <= now))
            .map(|p| p.id)
            .collect();
        let mut cleared = 0u64;
        for id in closed {
            // All zeros: an HMAC output no clave produces, so it matches nothing.
            cleared += self.conn().execute(
                "UPDATE captures SET dup_key = zeroblob(32)
                 WHERE process_id = ?1 AND state = 'purged' AND dup_key != zeroblob(32)",
                [id],
            )? as u64;
        }
        if cleared > 0 {
            // The old values are gone from the pages (secure_delete); empty the WAL too.
            super::db::checkpoint_truncate(self.conn())?;
        }
        Ok(cleared)
    }

    /// Records the device clock's offset from the endpoint's `Date` at a contact. (A sync run
    /// records it with its link memory in one transaction: `Store::record_run_end`.)
    #[cfg_attr(not(feature = "testkit"), allow(dead_code))]
    pub fn set_clock_offset(&mut self, offset: time::Duration) -> Result<()> {
        let ms = i64::try_from(offset.whole_milliseconds()).unwrap_or(i64::MAX);
        self.conn().execute(
            "UPDATE endpoint SET clock_offset_ms = ?1 WHERE singleton = 1",
            [ms],
        )?;
        Ok(())
    }

    /// The last recorded offset of the endpoint's clock from the device's (endpoint − device).
    #[cfg(any(test, feature = "testkit"))]
    pub fn clock_offset(&self) -> Result<Option<time::Duration>> {
        let ms: Option<Option<i64>> = self
            .conn()
            .query_row(
                "SELECT clock_offset_ms FROM endpoint WHERE singleton = 1",
                [],
                |r| r.get(0),
            )
            .optional()?;
        Ok(ms.flatten().map(time::Duration::milliseconds))
    }
}
