//! Key files for the endpoint.

use std::fs;
use std::io::Write;
use std::path::Path;

use apoyo_sync::{EndpointPublicKey, EndpointSecretKey};

use crate::{CliError, CliResult, read_file};

pub const SECRET_FILE: &str = "endpoint.key";
pub const PUBLIC_FILE: &str = "endpoint.pub";

/// Writes a fresh endpoint key pair into `out`.
pub fn endpoint_keygen(out: &Path) -> CliResult {
    fs::create_dir_all(out)
        .map_err(|e| CliError::Io(format!("cannot create {}: {}", out.display(), e.kind())))?;
    let sk = EndpointSecretKey::generate()?;
    write_private(
        &out.join(SECRET_FILE),
        format!("{}\n", hex::encode(sk.as_bytes())).as_bytes(),
    )?;
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
    let mut f = opts
        .open(path)
        .map_err(|e| CliError::Io(format!("cannot create {}: {}", path.display(), e.kind())))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| CliError::Io(format!("cannot write {}: {}", path.display(), e.kind())))
}

/// Reads an endpoint public key file.
pub fn read_public(path: &Path) -> CliResult<EndpointPublicKey> {
    let text = read_file(path, "endpoint public key")?;
    Ok(EndpointPublicKey::from_text(&String::from_utf8_lossy(
        &text,
    ))?)
}

/// Reads an endpoint secret key file.
pub fn read_secret(path: &Path) -> CliResult<EndpointSecretKey> {
    let text = read_file(path, "endpoint key")?;
    let b = hex::decode(String::from_utf8_lossy(&text).trim())
        .map_err(|_| CliError::Usage(format!("{} is not a hex key", path.display())))?;
    let arr: [u8; 32] = b
        .try_into()
        .map_err(|_| CliError::Usage(format!("{} must hold 32 bytes", path.display())))?;
    Ok(EndpointSecretKey::from_bytes(arr))
}
