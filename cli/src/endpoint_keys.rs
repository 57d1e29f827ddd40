//! `apoyo endpoint-keygen`: the endpoint's key folder (INE root, certified seal and receipt
//! keys, the duplicate secret) and its rotation. An endpoint command, so it may use the
//! endpoint crate; the device's side of the key files is `keys.rs`.

use std::path::Path;

use apoyo_endpoint::keyring;

use crate::keys::{PUBLIC_FILE, ROOT_PUBLIC_FILE};
use crate::{CliError, CliResult};

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
