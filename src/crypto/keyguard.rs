//! The seam through which the platform protects the device master key.
//!
//! Android implements [`KeyGuard`] with the Android Keystore (an AES-GCM key that is *not*
//! bound to user authentication: enrolling a fingerprint would otherwise invalidate it, and
//! every unsent capture with it); iOS with the Keychain/Secure Enclave
//! (`kSecAttrAccessibleAfterFirstUnlockThisDeviceOnly`, so background sync can run). The
//! [`FileKeyGuard`] here is **for development and tests only**: its key is a file.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use super::{SecretKey, random_key, wrap};
use crate::error::{Error, Result};

/// Wraps and unwraps the device master key with a key the platform keeps.
pub trait KeyGuard: Send + Sync {
    /// Wraps `key`, bound to `label` (the store id).
    fn wrap(&self, label: &[u8], key: &SecretKey) -> Result<Vec<u8>>;
    /// Unwraps; a key from another device gives [`Error::WrongDevice`].
    fn unwrap(&self, label: &[u8], wrapped: &[u8]) -> Result<SecretKey>;
    /// A human description (shown by `apoyo status`), never a secret.
    fn describe(&self) -> String;
    /// Where the guard keeps its key on this file system, if it does (the store refuses a
    /// keyring inside its own folder: a copied store would carry its key along).
    fn location(&self) -> Option<&Path> {
        None
    }
}

/// Development guard: a 32-byte key in a file, in a keyring folder **outside** the store.
///
/// It stands in for the hardware-backed keystore so that a store copied to another machine
/// (another keyring) cannot be opened. It is not a protection against an attacker who can read
/// the keyring folder.
pub struct FileKeyGuard {
    dir: PathBuf,
    key: SecretKey,
}

const KEY_FILE: &str = "apoyo-dev-keyring.key";
const README: &str = "This folder holds the apoyo-sync DEVELOPMENT key guard: a plain key file that\n\
stands in for the Android Keystore / iOS Keychain. It is for development and tests only.\n\
Deleting it makes every store created with it unreadable.\n";

impl FileKeyGuard {
    /// The keyring folder named by `APOYO_KEYRING`, else `<user data dir>/apoyo-sync/keyring`.
    pub fn default_dir() -> Result<PathBuf> {
        if let Some(p) = std::env::var_os("APOYO_KEYRING") {
            return Ok(PathBuf::from(p));
        }
        dirs::data_dir()
            .map(|d| d.join("apoyo-sync").join("keyring"))
            .ok_or_else(|| {
                Error::KeyUnavailable("no user data directory; set APOYO_KEYRING".into())
            })
    }

    /// Opens the keyring in `dir`, creating its key if there is none.
    pub fn open_or_create(dir: &Path) -> Result<Self> {
        match Self::open(dir) {
            Err(Error::KeyUnavailable(_)) => {}
            other => return other,
        }
        crate::fsutil::create_private_dir_durably(dir)?;
        let key = random_key()?;
        let path = dir.join(KEY_FILE);
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&path)?;
        f.write_all(key.as_bytes())?;
        f.sync_all()?;
        crate::fsutil::fsync_dir(dir)?;
        fs::write(dir.join("README.txt"), README)?;
        Ok(FileKeyGuard {
            dir: dir.to_path_buf(),
            key,
        })
    }

    /// Opens an existing keyring; [`Error::KeyUnavailable`] if it has no key.
    pub fn open(dir: &Path) -> Result<Self> {
        let path = dir.join(KEY_FILE);
        // The raw key bytes are wiped when this buffer is dropped.
        let bytes = match fs::read(&path) {
            Ok(b) => Zeroizing::new(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::KeyUnavailable(format!(
                    "no development keyring key in {}",
                    dir.display()
                )));
            }
            Err(e) => return Err(e.into()),
        };
        let key = SecretKey::from_slice(&bytes).map_err(|_| {
            Error::KeyUnavailable(format!(
                "the keyring key in {} is not 32 bytes",
                dir.display()
            ))
        })?;
        Ok(FileKeyGuard {
            dir: dir.to_path_buf(),
            key,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl KeyGuard for FileKeyGuard {
    fn wrap(&self, label: &[u8], key: &SecretKey) -> Result<Vec<u8>> {
        wrap::wrap(&self.key, "keyguard", label, key)
    }

    fn unwrap(&self, label: &[u8], wrapped: &[u8]) -> Result<SecretKey> {
        wrap::unwrap(&self.key, "keyguard", label, wrapped, "master key").map_err(|e| match e {
            Error::Integrity { .. } => Error::WrongDevice,
            other => other,
        })
    }

    fn describe(&self) -> String {
        format!(
            "development file key guard in {} (NOT for production)",
            self.dir.display()
        )
    }

    fn location(&self) -> Option<&Path> {
        Some(&self.dir)
    }
}
