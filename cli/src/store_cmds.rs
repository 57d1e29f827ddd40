//! The store commands: device init, process add/list, capture, status, open.
//!
//! A device command acts as the phone does, so it uses only the app-facing facade
//! ([`apoyo_sync::Engine`]); `tests/public_surface.rs` fails if this file imports anything
//! below it (ADR 0016).

use std::io::Write;
use std::path::{Path, PathBuf};

use apoyo_sync::{
    CardFields, Collector, CredentialModel, Engine, EngineOptions, FileKeyGuard, Images, Location,
    NetworkKind, NewCapture, Process, Provisioning, TlsConfig,
};
use clap::Args;

use crate::{CliError, CliResult, keys, read_file};

/// Opens the keyring named by $APOYO_KEYRING (or the user data dir).
pub fn keyring(create: bool) -> apoyo_sync::Result<FileKeyGuard> {
    let dir = FileKeyGuard::default_dir()?;
    if create {
        FileKeyGuard::open_or_create(&dir)
    } else {
        FileKeyGuard::open(&dir)
    }
}

/// The environment variable that overrides the free-space reserve a capture must leave.
pub const DISK_RESERVE_VAR: &str = "APOYO_DISK_RESERVE_BYTES";

/// The free-space reserve a capture must leave: `$APOYO_DISK_RESERVE_BYTES` (a whole number
/// of bytes) when it is set, else `default`.
pub fn disk_reserve_bytes(default: u64) -> CliResult<u64> {
    match std::env::var(DISK_RESERVE_VAR) {
        Ok(v) => v.trim().parse().map_err(|_| {
            CliError::Usage(format!(
                "{DISK_RESERVE_VAR} must be a whole number of bytes"
            ))
        }),
        Err(std::env::VarError::NotPresent) => Ok(default),
        Err(std::env::VarError::NotUnicode(_)) => Err(CliError::Usage(format!(
            "{DISK_RESERVE_VAR} must be a whole number of bytes"
        ))),
    }
}

/// The engine options: the defaults, with the disk reserve from [`disk_reserve_bytes`].
pub fn engine_options() -> CliResult<EngineOptions> {
    let mut opts = EngineOptions::default();
    opts.disk_reserve_bytes = disk_reserve_bytes(opts.disk_reserve_bytes)?;
    Ok(opts)
}

/// Opens a device store as the app would ([`Engine::open_existing`]: the trust material the
/// store was created with, `tls` for an https endpoint) with the [`engine_options`]. The CLI
/// runs on a desktop link, which it reports to the engine as unmetered ([`NetworkKind::Wifi`]).
/// An engine error while opening is a [`CliError::Open`]: the store (or its keyring) cannot be
/// used. What opening found among the part files (ADR 0013) goes to stderr, one line each, so
/// a field tester sees it without it mixing into `--json` output.
pub fn open_engine(dir: &Path, tls: TlsConfig) -> CliResult<Engine> {
    let opts = engine_options()?;
    let guard = keyring(false).map_err(CliError::Open)?;
    let engine = Engine::open_existing(dir, &guard, tls, opts).map_err(CliError::Open)?;
    engine.set_network(NetworkKind::Wifi);
    report_open(dir, &engine)?;
    Ok(engine)
}

/// Opens a device store for a command that does not talk to the endpoint.
pub fn open_store(dir: &Path) -> CliResult<Engine> {
    open_engine(dir, TlsConfig::default())
}

fn report_open(dir: &Path, engine: &Engine) -> CliResult {
    let report = engine.open_report()?;
    if !report.recovered.is_empty() {
        eprintln!(
            "apoyo: rebuilt the queue rows of {} capture(s) from their part files (their commit was undone, e.g. by a power loss)",
            report.recovered.len()
        );
    }
    if report.removed_incomplete > 0 {
        eprintln!(
            "apoyo: removed {} part file(s) of captures interrupted before they completed (never reported as captured)",
            report.removed_incomplete
        );
    }
    if report.purged_committed > 0 {
        eprintln!(
            "apoyo: finished crypto-shredding {} capture(s) the endpoint had acknowledged (a crash had cut their purge short)",
            report.purged_committed
        );
    }
    if !report.damaged.is_empty() {
        eprintln!(
            "apoyo: {} part file(s) without a queue row failed to authenticate; kept in {} — report them",
            report.damaged.len(),
            dir.join("damaged").display()
        );
    }
    Ok(())
}

pub fn device_init(
    store: &Path,
    endpoint_pub: &Path,
    ine_root: &Path,
    auxiliar: Option<String>,
) -> CliResult {
    let mut opts = engine_options()?;
    let provisioning: Provisioning = keys::provisioning(endpoint_pub, ine_root)?;
    // A refused init leaves no development keyring behind when it made one.
    let keyring_dir = FileKeyGuard::default_dir()?;
    let made_keyring = !keyring_dir.exists();
    let guard = keyring(true)?;
    opts.collector = auxiliar.map(Collector::Auxiliar);
    let seal_key_id = provisioning.endpoint_public_key.key_id();
    let engine = match Engine::init(store, &guard, provisioning, opts) {
        Ok(e) => e,
        Err(e) => {
            drop(guard);
            if made_keyring {
                let _ = std::fs::remove_dir_all(&keyring_dir);
            }
            return Err(e.into());
        }
    };
    println!(
        "device {} created in {} (endpoint key {seal_key_id})",
        engine.device_id()?,
        store.display(),
    );
    engine.close();
    Ok(())
}

pub fn set_aside(store: &Path) -> CliResult {
    let to = Engine::set_aside(store)?;
    println!("{}", to.display());
    eprintln!("apoyo: the store was moved aside intact; report it — it may hold unsent supports");
    Ok(())
}

pub fn process_add(store: &Path, file: &Path) -> CliResult {
    let json = read_file(file, "process file (--file)")?;
    let list = Process::parse_json_list(&json)?;
    let s = open_store(store)?;
    s.add_processes(&list)?;
    for p in &list {
        println!("{}", p.id);
    }
    Ok(())
}

pub fn process_list(store: &Path) -> CliResult {
    let s = open_store(store)?;
    let list = s.processes()?;
    println!(
        "{}",
        serde_json::to_string_pretty(&list).map_err(|e| CliError::Io(e.to_string()))?
    );
    Ok(())
}

#[derive(Args)]
pub struct CaptureArgs {
    #[arg(long)]
    store: PathBuf,
    /// Process id (see `apoyo process list`).
    #[arg(long)]
    process: String,
    /// Credential model: C, D, E, F, G, H, …
    #[arg(long)]
    model: String,
    #[arg(long)]
    front: PathBuf,
    #[arg(long)]
    back: PathBuf,
    #[arg(long)]
    selfie: PathBuf,
    #[arg(long)]
    signature: PathBuf,
    #[arg(long)]
    clave_elector: String,
    #[arg(long)]
    entidad: Option<u8>,
    #[arg(long)]
    seccion: Option<u16>,
    /// Last year of validity printed on the card.
    #[arg(long)]
    vigencia: Option<u16>,
    #[arg(long)]
    curp: Option<String>,
    #[arg(long)]
    ocr: Option<String>,
    #[arg(long)]
    cic: Option<String>,
    #[arg(long)]
    emision: Option<u8>,
    #[arg(long, requires_all = ["lon", "accuracy"], allow_negative_numbers = true)]
    lat: Option<f64>,
    #[arg(long, requires_all = ["lat", "accuracy"], allow_negative_numbers = true)]
    lon: Option<f64>,
    /// Location accuracy in metres.
    #[arg(long, requires_all = ["lat", "lon"], allow_negative_numbers = true)]
    accuracy: Option<f64>,
    #[arg(long)]
    json: bool,
}

pub fn capture(a: CaptureArgs) -> CliResult {
    let images = Images {
        front: read_file(&a.front, "front image (--front)")?,
        back: read_file(&a.back, "back image (--back)")?,
        selfie: read_file(&a.selfie, "selfie image (--selfie)")?,
        signature: read_file(&a.signature, "signature image (--signature)")?,
    };
    let location = match (a.lat, a.lon, a.accuracy) {
        (Some(lat), Some(lon), Some(accuracy_m)) => Some(Location {
            lat,
            lon,
            accuracy_m,
        }),
        _ => None,
    };
    let c = NewCapture {
        process_id: a.process,
        model: CredentialModel::parse(&a.model)?,
        fields: CardFields {
            clave_elector: a.clave_elector,
            entidad: a.entidad,
            seccion: a.seccion,
            curp: a.curp,
            ocr: a.ocr,
            cic: a.cic,
            numero_emision: a.emision,
            vigencia: a.vigencia,
        },
        location,
        images,
        collector: None,
    };
    let s = open_store(&a.store)?;
    let id = s.capture(c)?;
    if a.json {
        println!("{}", serde_json::json!({"id": id, "state": "captured"}));
    } else {
        println!("{id}");
    }
    Ok(())
}

pub fn status(store: &Path, json: bool) -> CliResult {
    let s = open_store(store)?;
    let st = s.status()?.queue;
    if json {
        println!(
            "{}",
            serde_json::to_string(&st).map_err(|e| CliError::Io(e.to_string()))?
        );
    } else {
        println!("device       {}", s.device_id()?);
        println!("captured     {}", st.captured);
        println!("uploading    {}", st.uploading);
        println!("committed    {}", st.committed);
        println!("quarantined  {}", st.quarantined);
        println!("purged       {}", st.purged);
        println!("pending      {} bytes", st.pending_bytes);
        for info in s
            .captures()?
            .iter()
            .filter(|i| i.state == apoyo_sync::State::Quarantined)
        {
            println!(
                "  quarantined {} reason={}",
                info.id,
                info.reason.as_deref().unwrap_or("-")
            );
        }
    }
    Ok(())
}

pub fn open(store: &Path, id: &str, out: &Path) -> CliResult {
    if out.exists() && !out.is_dir() {
        return Err(CliError::Input(format!(
            "--out {} is not a folder (the capture is written as several files)",
            out.display()
        )));
    }
    let s = open_store(store)?;
    let id = id.parse()?;
    for path in s.export(&id, out)? {
        println!("{}", path.display());
    }
    Ok(())
}

/// Synthetic JPEG-framed bytes (magic bytes + random body) for load and crash tests. (Test
/// data, not secrets: `fastrand`, seeded from the system at start.)
pub fn synthetic_jpeg(len: usize) -> CliResult<Vec<u8>> {
    let mut v = vec![0u8; len.max(8)];
    fastrand::fill(&mut v);
    v[..4].copy_from_slice(&[0xFF, 0xD8, 0xFF, 0xE0]);
    let n = v.len();
    v[n - 2..].copy_from_slice(&[0xFF, 0xD9]);
    Ok(v)
}

/// A random, well-formed clave de elector (synthetic: no real person's).
pub fn synthetic_clave() -> CliResult<String> {
    let mut r = [0u8; 9];
    fastrand::fill(&mut r);
    let letters: String = r[..6].iter().map(|b| char::from(b'A' + b % 26)).collect();
    let digits = u16::from_le_bytes([r[6], r[7]]) % 1000;
    let sex = ['H', 'M', 'X'][usize::from(r[8] % 3)];
    Ok(format!(
        "{letters}900101{:02}{sex}{digits:03}",
        1 + r[8] % 32
    ))
}

/// Captures synthetic supports for the first process in the catalog until killed, printing
/// each id on its own line once `capture()` returned (i.e. once it is durable).
pub fn capture_loop(store: &Path) -> CliResult {
    let s = open_store(store)?;
    let process = s
        .processes()?
        .into_iter()
        .next()
        .ok_or_else(|| CliError::Usage("the store has no process".into()))?;
    let model = process.accepted_models[0].clone();
    let stdout = std::io::stdout();
    loop {
        let c = NewCapture {
            process_id: process.id.clone(),
            model: model.clone(),
            fields: CardFields {
                clave_elector: synthetic_clave()?,
                ..Default::default()
            },
            location: None,
            images: Images {
                front: synthetic_jpeg(150_000)?,
                back: synthetic_jpeg(150_000)?,
                selfie: synthetic_jpeg(200_000)?,
                signature: synthetic_jpeg(20_000)?,
            },
            collector: None,
        };
        match s.capture(c) {
            Ok(id) => {
                let mut out = stdout.lock();
                writeln!(out, "{id}")
                    .and_then(|_| out.flush())
                    .map_err(|e| CliError::Io(e.to_string()))?;
            }
            Err(apoyo_sync::Error::Duplicate { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}
