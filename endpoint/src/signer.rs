//! The receipt signing key file: `<endpoint key path>.sign`, 32 bytes in hex, mode 0600.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use apoyo_sync::crypto::receipt::ReceiptSigner;

use crate::error::EndpointError;

/// Where the signing key of the X25519 key file `key_path` lives.
pub fn signer_path(key_path: &Path) -> PathBuf {
    let mut s = key_path.as_os_str().to_owned();
    s.push(".sign");
    PathBuf::from(s)
}

/// Loads the Ed25519 signing key stored beside the X25519 key file (`<key path>.sign`, hex,
/// mode 0600), creating it if missing.
pub fn load_or_create_signer(key_path: &Path) -> Result<ReceiptSigner, EndpointError> {
    let path = signer_path(key_path);
    match fs::read(&path) {
        Ok(text) => parse(&path, &text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create(&path),
        Err(e) => Err(e.into()),
    }
}

fn parse(path: &Path, text: &[u8]) -> Result<ReceiptSigner, EndpointError> {
    let bad = |problem| EndpointError::SignerKey {
        path: path.to_path_buf(),
        problem,
    };
    let text = std::str::from_utf8(text).map_err(|_| bad("not text"))?;
    let mut bytes = hex::decode(text.trim()).map_err(|_| bad("not hex"))?;
    let arr: Result<[u8; 32], _> = bytes.as_slice().try_into();
    zeroize::Zeroize::zeroize(&mut bytes);
    let mut arr = arr.map_err(|_| bad("not 32 bytes"))?;
    let signer = ReceiptSigner::from_bytes(&arr);
    zeroize::Zeroize::zeroize(&mut arr);
    Ok(signer)
}

fn create(path: &Path) -> Result<ReceiptSigner, EndpointError> {
    let signer = ReceiptSigner::generate()?;
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    let mut text = zeroize::Zeroizing::new(format!("{}\n", hex::encode(signer.to_bytes())));
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    zeroize::Zeroize::zeroize(&mut *text);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        #[cfg(unix)]
        fs::File::open(dir)?.sync_all()?;
        #[cfg(not(unix))]
        let _ = dir;
    }
    tracing::info!("created a receipt signing key");
    Ok(signer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_once_then_loads_the_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("endpoint.key");
        let a = load_or_create_signer(&key).unwrap();
        let b = load_or_create_signer(&key).unwrap();
        assert_eq!(a.public(), b.public());
        let path = signer_path(&key);
        assert_eq!(path, dir.path().join("endpoint.key.sign"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        fs::write(&path, "zz").unwrap();
        assert!(matches!(
            load_or_create_signer(&key),
            Err(EndpointError::SignerKey {
                problem: "not hex",
                ..
            })
        ));
        fs::write(&path, "abcd").unwrap();
        assert!(matches!(
            load_or_create_signer(&key),
            Err(EndpointError::SignerKey {
                problem: "not 32 bytes",
                ..
            })
        ));
    }
}
