//! Key files: the endpoint's key folder (INE root, certified seal and receipt keys, rotation)
//! and the two public keys a device is provisioned with (protocol v1.1, §5.3).

use std::path::Path;

use apoyo_endpoint::keyring;
use apoyo_sync::{EndpointPublicKey, IneRoot, Provisioning};

use crate::{CliError, CliResult, read_file};

pub const PUBLIC_FILE: &str = "endpoint.pub";
pub const ROOT_PUBLIC_FILE: &str = "ine-root.pub";

/// `apoyo endpoint-keygen --out DIR [--rotate]`: a new key folder (the INE root, a first seal
/// and receipt key with certificates, the duplicate secret), or, with `--rotate`, a new seal
/// and receipt key certified by `DIR/ine-root.key`.
pub fn endpoint_keygen(out: &Path, rotate: bool) -> CliResult {
    let now = time::OffsetDateTime::now_utc();
    let ring = if rotate {
        keyring::rotate_dir(out, now)
    } else {
        keyring::create_dir(out, now)
    }
    .map_err(|e| CliError::Input(e.to_string()))?;
    if rotate {
        let (seal, receipt) = (ring.seal.last(), ring.receipt.last());
        if let (Some(s), Some(r)) = (seal, receipt) {
            println!(
                "added seal key {} and receipt key {}",
                s.info.key_id, r.info.key_id
            );
        }
    } else {
        println!("{}", out.join(PUBLIC_FILE).display());
        println!("{}", out.join(ROOT_PUBLIC_FILE).display());
    }
    Ok(())
}

/// Reads the provisioned seal key (`--endpoint-pub`).
pub fn read_public(path: &Path) -> CliResult<EndpointPublicKey> {
    let text = read_file(path, "endpoint public key (--endpoint-pub)")?;
    Ok(EndpointPublicKey::from_text(&String::from_utf8_lossy(
        &text,
    ))?)
}

/// Reads the provisioned INE root (`--ine-root`).
pub fn read_root(path: &Path) -> CliResult<IneRoot> {
    let text = read_file(path, "INE root (--ine-root)")?;
    Ok(IneRoot::from_text(&String::from_utf8_lossy(&text))?)
}

/// What `device init` provisions (no TLS settings: the device commands that talk to the
/// endpoint take those per command, `--ca`/`--pin`).
pub fn provisioning(endpoint_pub: &Path, ine_root: &Path) -> CliResult<Provisioning> {
    Ok(Provisioning::new(
        read_public(endpoint_pub)?,
        read_root(ine_root)?,
    ))
}
