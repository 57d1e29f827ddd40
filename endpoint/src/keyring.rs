//! The endpoint's key ring (protocol v1.1, ADR 0015): the seal keys (X25519) devices seal data
//! keys to and the receipt keys (Ed25519) that sign receipts, each with its certificate from
//! the INE root, plus the duplicate secret. Rotation adds keys; old ones stay, so supports
//! sealed to an old seal key still open and old receipts keep verifying.
//!
//! ```text
//! DIR/ine-root.key            apoyo-ine-root-key-v1 <hex>   0600 — keep it offline
//! DIR/ine-root.pub            apoyo-ine-root-v1 <hex>       provisioned in the app
//! DIR/endpoint.pub            apoyo-seal-pub-v1 <hex>       the first seal key, provisioned
//! DIR/dup.secret              apoyo-dup-secret-v1 <hex>     0600 — the duplicate rule's key
//! DIR/ring/seal-<id>.key      apoyo-seal-key-v1 <hex>       0600
//! DIR/ring/seal-<id>.cert     CBOR signed-key-cert
//! DIR/ring/receipt-<id>.key   apoyo-receipt-key-v1 <hex>    0600
//! DIR/ring/receipt-<id>.cert  CBOR signed-key-cert
//! ```
//!
//! `serve` needs everything but `ine-root.key`.

use std::fs;
use std::io::Write;
use std::path::Path;

use apoyo_sync::wire::crypto::anchor::{
    self, Ed25519Secret, IneRoot, RECEIPT_KEY_TAG, ROOT_KEY_TAG, SEAL_KEY_TAG,
};
use apoyo_sync::wire::crypto::{self, EndpointPublicKey, EndpointSecretKey, SecretKey};
use apoyo_sync::wire::trust::{KeyCert, KeyPurpose, SignedKeyCert, key_cert};
use time::OffsetDateTime;

use crate::error::EndpointError;

/// Tag of the duplicate secret's file.
pub const DUP_SECRET_TAG: &str = "apoyo-dup-secret-v1";
/// How long a working key's certificate is valid (two years: rotate before).
pub const KEY_VALIDITY: time::Duration = time::Duration::days(2 * 365);
/// A certificate starts this long before its issue, so an endpoint whose clock is a little
/// behind the machine that issued it still signs inside the validity.
const BACKDATE: time::Duration = time::Duration::days(1);

/// A seal key and its certificate.
#[derive(Clone)]
pub struct SealKey {
    pub secret: EndpointSecretKey,
    pub cert: SignedKeyCert,
    pub info: KeyCert,
}

/// A receipt key and its certificate.
#[derive(Clone)]
pub struct ReceiptKey {
    pub signer: Ed25519Secret,
    pub cert: SignedKeyCert,
    pub info: KeyCert,
}

/// The whole ring, oldest key first within each purpose.
#[derive(Clone)]
pub struct KeyRing {
    pub root: IneRoot,
    pub seal: Vec<SealKey>,
    pub receipt: Vec<ReceiptKey>,
    /// Key of the duplicate HMAC: the endpoint's own, independent of every HPKE key, so the
    /// same citizen is counted once across seal-key rotations.
    pub dup_secret: SecretKey,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("root", &self.root)
            .field(
                "seal",
                &self.seal.iter().map(|k| &k.info.key_id).collect::<Vec<_>>(),
            )
            .field(
                "receipt",
                &self
                    .receipt
                    .iter()
                    .map(|k| &k.info.key_id)
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

fn issue(
    root: &Ed25519Secret,
    purpose: KeyPurpose,
    key: [u8; 32],
    now: OffsetDateTime,
) -> Result<(SignedKeyCert, KeyCert), EndpointError> {
    let info = key_cert(purpose, key, now - BACKDATE, now + KEY_VALIDITY);
    Ok((SignedKeyCert::issue(root, &info)?, info))
}

impl KeyRing {
    /// A new ring under `root`: one seal key, one receipt key, a fresh duplicate secret.
    pub fn generate(root: &Ed25519Secret, now: OffsetDateTime) -> Result<KeyRing, EndpointError> {
        let mut ring = KeyRing {
            root: IneRoot::from_bytes(&root.public())?,
            seal: Vec::new(),
            receipt: Vec::new(),
            dup_secret: crypto::random_key()?,
        };
        ring.rotate(root, now)?;
        Ok(ring)
    }

    /// Adds a new seal key and a new receipt key, certified by `root` from `now`.
    pub fn rotate(
        &mut self,
        root: &Ed25519Secret,
        now: OffsetDateTime,
    ) -> Result<(), EndpointError> {
        if root.public() != self.root.to_bytes() {
            return Err(EndpointError::Config(
                "the INE root key does not match this ring's ine-root.pub".into(),
            ));
        }
        let secret = EndpointSecretKey::generate()?;
        let (cert, info) = issue(root, KeyPurpose::Seal, secret.public().0, now)?;
        self.seal.push(SealKey { secret, cert, info });
        let signer = Ed25519Secret::generate()?;
        let (cert, info) = issue(root, KeyPurpose::Receipt, signer.public(), now)?;
        self.receipt.push(ReceiptKey { signer, cert, info });
        Ok(())
    }

    /// The seal key devices are provisioned with (the first one).
    pub fn provisioned_seal(&self) -> Result<&SealKey, EndpointError> {
        self.seal
            .first()
            .ok_or_else(|| EndpointError::Config("the key ring has no seal key".into()))
    }

    /// The seal key of this id.
    pub fn seal_key(&self, key_id: &str) -> Option<&SealKey> {
        self.seal.iter().find(|k| k.info.key_id == key_id)
    }

    /// The newest receipt key whose certificate covers `now` (receipts signed outside their
    /// key's validity are refused by devices).
    pub fn signing_key(&self, now: OffsetDateTime) -> Option<&ReceiptKey> {
        self.receipt
            .iter()
            .rev()
            .find(|k| k.info.not_before <= now && now <= k.info.not_after)
    }

    /// The certificates to hand a device at activation: every key still valid at `now`.
    pub fn certs(&self, now: OffsetDateTime) -> Vec<SignedKeyCert> {
        let seal = self.seal.iter().map(|k| (&k.cert, &k.info));
        let receipt = self.receipt.iter().map(|k| (&k.cert, &k.info));
        seal.chain(receipt)
            .filter(|(_, i)| now <= i.not_after)
            .map(|(c, _)| c.clone())
            .collect()
    }

    /// Checks every certificate against the root and its key (a ring assembled from the wrong
    /// files fails here, at start, not at a device).
    pub fn check(&self) -> Result<(), EndpointError> {
        self.provisioned_seal()?;
        let bad = |what: &str, id: &str| {
            EndpointError::Config(format!("{what} key {id}: its certificate does not match"))
        };
        for k in &self.seal {
            let c = k.cert.verify(&self.root, KeyPurpose::Seal);
            if c.as_ref().ok() != Some(&k.info) || k.info.key != k.secret.public().0 {
                return Err(bad("seal", &k.info.key_id));
            }
        }
        for k in &self.receipt {
            let c = k.cert.verify(&self.root, KeyPurpose::Receipt);
            if c.as_ref().ok() != Some(&k.info) || k.info.key != k.signer.public() {
                return Err(bad("receipt", &k.info.key_id));
            }
        }
        if self.receipt.is_empty() {
            return Err(EndpointError::Config(
                "the key ring has no receipt key".into(),
            ));
        }
        Ok(())
    }
}

/// Creates a key folder: the root (private and public), a first seal and receipt key with
/// certificates, and the duplicate secret. Refuses a folder that already has a root.
pub fn create_dir(dir: &Path, now: OffsetDateTime) -> Result<KeyRing, EndpointError> {
    if dir.join("ine-root.key").exists() || dir.join("ine-root.pub").exists() {
        return Err(EndpointError::Config(format!(
            "{} already holds an INE root; use --rotate to add keys",
            dir.display()
        )));
    }
    apoyo_sync::wire::create_private_dir_durably(dir)?;
    apoyo_sync::wire::create_private_dir_durably(&dir.join("ring"))?;
    let root = Ed25519Secret::generate()?;
    let ring = KeyRing::generate(&root, now)?;
    write_private(
        &dir.join("ine-root.key"),
        root.to_text(ROOT_KEY_TAG).as_bytes(),
    )?;
    write_public(
        &dir.join("ine-root.pub"),
        format!("{}\n", ring.root.to_text()).as_bytes(),
    )?;
    let first = ring.provisioned_seal()?;
    write_public(
        &dir.join("endpoint.pub"),
        format!("{}\n", anchor::seal_public_text(&first.secret.public())).as_bytes(),
    )?;
    let dup = anchor::key_text(DUP_SECRET_TAG, ring.dup_secret.as_bytes());
    write_private(&dir.join("dup.secret"), dup.as_bytes())?;
    save_new_keys(dir, &ring)?;
    Ok(ring)
}

/// Adds a seal key and a receipt key to the folder's ring, certified by `DIR/ine-root.key`.
pub fn rotate_dir(dir: &Path, now: OffsetDateTime) -> Result<KeyRing, EndpointError> {
    let mut ring = load_dir(dir)?;
    let text = zeroize::Zeroizing::new(read_text(&dir.join("ine-root.key"))?);
    let root = Ed25519Secret::from_text(&text, ROOT_KEY_TAG, "INE root key")?;
    ring.rotate(&root, now)?;
    save_new_keys(dir, &ring)?;
    Ok(ring)
}

/// Writes every key of the ring that has no file yet.
fn save_new_keys(dir: &Path, ring: &KeyRing) -> Result<(), EndpointError> {
    let ring_dir = dir.join("ring");
    for k in &ring.seal {
        let base = ring_dir.join(format!("seal-{}", k.info.key_id));
        if !base.with_extension("key").exists() {
            let text = anchor::key_text(SEAL_KEY_TAG, k.secret.as_bytes());
            write_private(&base.with_extension("key"), text.as_bytes())?;
            write_public(
                &base.with_extension("cert"),
                &apoyo_sync::wire::encode(&k.cert)?,
            )?;
        }
    }
    for k in &ring.receipt {
        let base = ring_dir.join(format!("receipt-{}", k.info.key_id));
        if !base.with_extension("key").exists() {
            write_private(
                &base.with_extension("key"),
                k.signer.to_text(RECEIPT_KEY_TAG).as_bytes(),
            )?;
            write_public(
                &base.with_extension("cert"),
                &apoyo_sync::wire::encode(&k.cert)?,
            )?;
        }
    }
    fsync(&ring_dir)?;
    fsync(dir)
}

fn read_text(path: &Path) -> Result<String, EndpointError> {
    let bytes = fs::read(path).map_err(|e| {
        EndpointError::Config(format!("cannot read {}: {}", path.display(), e.kind()))
    })?;
    String::from_utf8(bytes).map_err(|e| {
        // A key file that is not text is still key material: wipe it.
        zeroize::Zeroize::zeroize(&mut e.into_bytes());
        EndpointError::Config(format!("{} is not text", path.display()))
    })
}

fn read_cert(path: &Path) -> Result<SignedKeyCert, EndpointError> {
    let bytes = fs::read(path).map_err(|e| {
        EndpointError::Config(format!("cannot read {}: {}", path.display(), e.kind()))
    })?;
    Ok(apoyo_sync::wire::decode(&bytes, 2048, "key certificate")?)
}

/// Loads the ring `serve` runs with (no root private key needed) and checks it.
pub fn load_dir(dir: &Path) -> Result<KeyRing, EndpointError> {
    let root = IneRoot::from_text(&read_text(&dir.join("ine-root.pub"))?)?;
    let dup_text = zeroize::Zeroizing::new(read_text(&dir.join("dup.secret"))?);
    let (tag, dup) = anchor::parse_tagged(&dup_text, "duplicate secret")?;
    if tag.as_deref() != Some(DUP_SECRET_TAG) {
        return Err(EndpointError::Config(format!(
            "dup.secret must start with {DUP_SECRET_TAG}"
        )));
    }
    let mut ring = KeyRing {
        root,
        seal: Vec::new(),
        receipt: Vec::new(),
        dup_secret: SecretKey::from_bytes(*dup),
    };
    let mut names: Vec<String> = fs::read_dir(dir.join("ring"))?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.ends_with(".key"))
        .collect();
    names.sort();
    for name in names {
        let path = dir.join("ring").join(&name);
        let text = zeroize::Zeroizing::new(read_text(&path)?);
        let cert = read_cert(&path.with_extension("cert"))?;
        if name.starts_with("seal-") {
            let (_, b) = anchor::parse_tagged(&text, "seal key")?;
            let Ok(info) = cert.verify(&ring.root, KeyPurpose::Seal) else {
                return Err(EndpointError::Config(format!(
                    "{name}: certificate refused"
                )));
            };
            let secret = EndpointSecretKey::from_bytes(*b);
            ring.seal.push(SealKey { secret, cert, info });
        } else if name.starts_with("receipt-") {
            let signer = Ed25519Secret::from_text(&text, RECEIPT_KEY_TAG, "receipt key")?;
            let Ok(info) = cert.verify(&ring.root, KeyPurpose::Receipt) else {
                return Err(EndpointError::Config(format!(
                    "{name}: certificate refused"
                )));
            };
            ring.receipt.push(ReceiptKey { signer, cert, info });
        }
    }
    let by_age =
        |a: &KeyCert, b: &KeyCert| (a.not_before, &a.key_id).cmp(&(b.not_before, &b.key_id));
    ring.seal.sort_by(|a, b| by_age(&a.info, &b.info));
    ring.receipt.sort_by(|a, b| by_age(&a.info, &b.info));
    // The provisioned seal key comes first, whatever its age.
    let provisioned = anchor::parse_seal_public(&read_text(&dir.join("endpoint.pub"))?)?;
    let Some(i) = ring
        .seal
        .iter()
        .position(|k| k.secret.public() == provisioned)
    else {
        return Err(EndpointError::Config(
            "endpoint.pub is not one of the ring's seal keys".into(),
        ));
    };
    let first = ring.seal.remove(i);
    ring.seal.insert(0, first);
    ring.check()?;
    Ok(ring)
}

/// The provisioned seal public key of a ring.
pub fn provisioned_public(ring: &KeyRing) -> Result<EndpointPublicKey, EndpointError> {
    Ok(ring.provisioned_seal()?.secret.public())
}

/// Writes a file readable only by its owner (0600), refusing to overwrite.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), EndpointError> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(|e| {
        EndpointError::Config(format!("cannot create {}: {}", path.display(), e.kind()))
    })?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}

/// Writes a public file (a public key, a certificate) and syncs it before the folder is synced.
fn write_public(path: &Path, bytes: &[u8]) -> Result<(), EndpointError> {
    let mut f = fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}

/// fsyncs a folder through the shared helper (which tests can watch: `fsync_log`).
fn fsync(dir: &Path) -> Result<(), EndpointError> {
    apoyo_sync::wire::fsync_dir(dir)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_is_created_rotated_and_loaded_whole() {
        let dir = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::now_utc();
        let made = create_dir(dir.path(), now).unwrap();
        #[cfg(unix)]
        for f in ["ine-root.key", "dup.secret"] {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join(f))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
        assert!(
            create_dir(dir.path(), now).is_err(),
            "never overwrites a root"
        );
        let rotated = rotate_dir(dir.path(), now + time::Duration::days(30)).unwrap();
        assert_eq!((rotated.seal.len(), rotated.receipt.len()), (2, 2));
        let loaded = load_dir(dir.path()).unwrap();
        assert_eq!(loaded.seal.len(), 2);
        assert_eq!(
            loaded.seal[0].secret.public(),
            made.seal[0].secret.public(),
            "the provisioned seal key stays first"
        );
        assert_eq!(
            loaded
                .signing_key(now + time::Duration::days(31))
                .unwrap()
                .info
                .key_id,
            rotated.receipt[1].info.key_id,
            "the newest receipt key signs"
        );
        assert_eq!(loaded.dup_secret.as_bytes(), made.dup_secret.as_bytes());
        // A certificate from another root is refused at load.
        let other = create_dir(&dir.path().join("other"), now).unwrap();
        let foreign = &other.receipt[0];
        let name = format!("receipt-{}", foreign.info.key_id);
        fs::copy(
            dir.path().join("other/ring").join(format!("{name}.key")),
            dir.path().join("ring").join(format!("{name}.key")),
        )
        .unwrap();
        fs::copy(
            dir.path().join("other/ring").join(format!("{name}.cert")),
            dir.path().join("ring").join(format!("{name}.cert")),
        )
        .unwrap();
        assert!(load_dir(dir.path()).is_err());
    }

    /// Every key file's entry is made durable: the ring folder, then the key folder, are
    /// fsync'd after the files are written (at creation and at rotation), and a new key
    /// folder's own entry in its parent too.
    #[test]
    fn key_files_are_made_durable() {
        use apoyo_sync::testkit::fsutil::fsync_log;
        let root = tempfile::tempdir().unwrap();
        let (dir, now) = (root.path().join("keys"), OffsetDateTime::now_utc());
        let ring = dir.join("ring");
        let recorder = fsync_log::record(root.path());
        create_dir(&dir, now).unwrap();
        let synced = recorder.synced();
        assert!(synced.contains(&root.path().to_path_buf()), "{synced:?}");
        assert_eq!(synced[synced.len() - 2..], [ring.clone(), dir.clone()]);
        drop(recorder);
        let recorder = fsync_log::record(root.path());
        rotate_dir(&dir, now + time::Duration::days(30)).unwrap();
        assert_eq!(recorder.synced(), vec![ring, dir]);
    }
}
