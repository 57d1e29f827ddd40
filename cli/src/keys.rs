//! Key files a device is provisioned with: the endpoint's seal key and the INE root (protocol
//! v1.1, §5.3). The endpoint's own key folder is `endpoint_keys.rs`.

use std::path::Path;

use apoyo_sync::{EndpointPublicKey, IneRoot, Provisioning};

use crate::{CliResult, read_file};

pub const PUBLIC_FILE: &str = "endpoint.pub";
pub const ROOT_PUBLIC_FILE: &str = "ine-root.pub";

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
