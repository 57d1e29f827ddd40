//! Key files for the endpoint.

use std::fs;
use std::io::Write;
use std::path::Path;

use apoyo_sync::{EndpointPublicKey, EndpointSecretKey};
use zeroize::Zeroizing;

use crate::{CliError, CliResult, read_file};

pub const SECRET_FILE: &str = "endpoint.key";
pub const PUBLIC_FILE: &str = "endpoint.pub";

/// Writes a fresh endpoint key pair into `out`.
pub fn endpoint_keygen(out: &Path) -> CliResult {
    fs::create_dir_all(out)
        .map_err(|e| CliError::Io(format!("cannot create {}: {}", out.display(), e.kind())))?;
    let sk = EndpointSecretKey::generate()?;
    // The hex text of the secret key lives only in this buffer, wiped on drop.
    let mut text = Zeroizing::new([0u8; 65]);
    hex::encode_to_slice(sk.as_bytes(), &mut text[..64])
        .map_err(|_| CliError::Io("cannot encode the endpoint key".into()))?;
    text[64] = b'\n';
    write_private(&out.join(SECRET_FILE), &text[..])?;
    fs::write(
        out.join(PUBLIC_FILE),
        format!("{}\n", sk.public().to_text()),
    )
    .map_err(|e| CliError::Io(format!("cannot write {PUBLIC_FILE}: {}", e.kind())))?;
    println!("{}", out.join(PUBLIC_FILE).display());
    Ok(())
}

/// Writes a file readable only by its owner (0600), refusing to overwrite.
pub fn write_private(path: &Path, bytes: &[u8]) -> CliResult {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            CliError::Input(format!(
                "{} already exists; it is never overwritten",
                path.display()
            ))
        } else {
            CliError::Io(format!("cannot create {}: {}", path.display(), e.kind()))
        }
    })?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| CliError::Io(format!("cannot write {}: {}", path.display(), e.kind())))
}

/// Reads an endpoint public key file.
pub fn read_public(path: &Path) -> CliResult<EndpointPublicKey> {
    let text = read_file(path, "endpoint public key (--endpoint-pub)")?;
    Ok(EndpointPublicKey::from_text(&String::from_utf8_lossy(
        &text,
    ))?)
}

/// Reads an endpoint secret key file. The file text and the decoded bytes are wiped on drop.
pub fn read_secret(path: &Path) -> CliResult<EndpointSecretKey> {
    let text = Zeroizing::new(read_file(path, "endpoint key (--key)")?);
    let not_hex = || CliError::Input(format!("{} is not a hex key", path.display()));
    let hex_text = std::str::from_utf8(&text).map_err(|_| not_hex())?.trim();
    let mut arr = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(hex_text, &mut arr[..]).map_err(|e| match e {
        hex::FromHexError::InvalidStringLength | hex::FromHexError::OddLength => {
            CliError::Input(format!("{} must hold 32 bytes", path.display()))
        }
        hex::FromHexError::InvalidHexCharacter { .. } => not_hex(),
    })?;
    Ok(EndpointSecretKey::from_bytes(*arr))
}
