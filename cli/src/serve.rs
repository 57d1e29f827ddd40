//! `apoyo serve`: the reference INE endpoint.

use std::net::SocketAddr;
use std::path::Path;

use apoyo_endpoint::EndpointConfig;
use apoyo_sync::Process;

use crate::{CliError, CliResult, keys, read_file};

pub fn serve(db: &Path, listen: &str, key: &Path, processes: &Path, dev: bool) -> CliResult {
    let addr: SocketAddr = listen.parse().map_err(|_| {
        CliError::Usage(format!(
            "--listen: '{listen}' is not an address like 127.0.0.1:8080"
        ))
    })?;
    let secret = keys::read_secret(key)?;
    let signer =
        apoyo_endpoint::load_or_create_signer(key).map_err(|e| CliError::Io(e.to_string()))?;
    let list = Process::parse_json_list(&read_file(processes, "process file (--processes)")?)?;
    let mut cfg = EndpointConfig::new(db.to_path_buf(), secret, signer, list);
    cfg.dev = dev;
    apoyo_endpoint::serve_blocking(cfg, addr, |bound| {
        println!("listening on http://{bound}");
        if dev {
            println!("development routes enabled: /v1/dev/mailbox/{{email}}, /v1/admin/stats");
        }
    })
    .map_err(|e| CliError::Io(e.to_string()))
}
