//! `apoyo serve`: the reference INE endpoint.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;

use apoyo_endpoint::EndpointConfig;
use apoyo_sync::Process;

use crate::{CliError, CliResult, read_file};

pub fn serve(db: &Path, listen: &str, keys: &Path, processes: &Path, dev: bool) -> CliResult {
    let addr: SocketAddr = listen.parse().map_err(|_| {
        CliError::Usage(format!(
            "--listen: '{listen}' is not an address like 127.0.0.1:8080"
        ))
    })?;
    if dev && !addr.ip().is_loopback() {
        return Err(CliError::Usage(format!(
            "--dev hands out activation codes to anyone who asks; it serves only on a loopback address (127.0.0.1 or ::1), not {addr}"
        )));
    }
    // v1's `--key <folder>/endpoint.key` names a file in (or beside) the key folder.
    let folder = match keys.parent() {
        Some(parent) if !keys.is_dir() => parent,
        _ => keys,
    };
    let ring =
        apoyo_endpoint::keyring::load_dir(folder).map_err(|e| CliError::Input(e.to_string()))?;
    let list = Process::parse_json_list(&read_file(processes, "process file (--processes)")?)?;
    let mut cfg = EndpointConfig::new(db.to_path_buf(), ring, list);
    cfg.dev = dev;
    apoyo_endpoint::serve_blocking(cfg, addr, |bound| {
        // One write, and a closed stdout (a supervisor that read the first line and went
        // away) never stops the endpoint: `println!` would panic on the broken pipe.
        let mut text = format!("listening on http://{bound}\n");
        if dev {
            text.push_str("development routes enabled: /v1/dev/mailbox/{email}, /v1/admin/stats\n");
        }
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
    })
    .map_err(|e| CliError::Io(e.to_string()))
}
