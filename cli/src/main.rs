//! `apoyo`: the command-line tool for field testers, demos and scripts.
//!
//! Every refusal exits non-zero with one line on stderr (`apoyo: <message>`); the message
//! names what was wrong, never personal data (a command-line error names the flag, never the
//! value). Exit codes: 0 success (also `--help`, `--version`), 1 refused (bad input, an
//! unreadable input file, duplicate, storage full, one capture failing its integrity check,
//! store in use, rejected), 2 usage error, 3 the store cannot be opened (corrupt, unknown
//! version, wrong or missing device key), 4 internal error.
//!
//! This file declares the commands and dispatches them; parse errors are worded in `usage`,
//! the commands live in `keys`, `store_cmds`, `sync_cmds`, `serve` and `demo`.
#![forbid(unsafe_code)]

mod bench;
mod demo;
mod endpoint_keys;
mod field_cmds;
mod field_display;
mod keys;
mod serve;
mod store_cmds;
mod sync_cmds;
mod usage;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "apoyo",
    version,
    about = "apoyo-sync field tools: encrypted capture store, sync, reference endpoint"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Make an endpoint (INE) key folder: the INE root (DIR/ine-root.key, 0600, to keep
    /// offline; DIR/ine-root.pub), a first seal key (DIR/endpoint.pub) and receipt key with
    /// their certificates (DIR/ring/), and the duplicate secret. With --rotate, add a new seal
    /// and receipt key certified by DIR/ine-root.key.
    EndpointKeygen {
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        rotate: bool,
    },
    /// Device store management.
    #[command(subcommand)]
    Device(DeviceCmd),
    /// Process catalog management.
    #[command(subcommand)]
    Process(ProcessCmd),
    /// Capture a support: validate, encrypt and durably store it.
    Capture(store_cmds::CaptureArgs),
    /// Counts per queue state and the bytes still held.
    Status {
        #[arg(long)]
        store: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Decrypt the device's own copy of a capture into a folder.
    Open {
        #[arg(long)]
        store: PathBuf,
        #[arg(long)]
        id: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Upload pending captures, commit them, keep receipts, purge what was acknowledged.
    Sync {
        #[arg(long)]
        store: PathBuf,
        /// Stop cleanly after this long (e.g. 30s, 5m); default 9m.
        #[arg(long)]
        budget: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        tls: sync_cmds::TlsArgs,
    },
    /// List the kept receipts (capture id, counted_at, result, signature check).
    Receipts {
        #[arg(long)]
        store: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Queue a quarantined capture again.
    Retry {
        #[arg(long)]
        store: PathBuf,
        #[arg(long)]
        id: String,
    },
    /// Run the reference INE endpoint (axum; SQLite, or PostgreSQL for replicas). Logs to
    /// stderr; RUST_LOG filters (default info).
    Serve {
        /// A SQLite file (created if missing), or `postgres://user:pw@host:port/db` to run as one
        /// of several replicas on one PostgreSQL database (the password is never printed).
        /// Default: the `APOYO_DATABASE_URL` environment variable (keeps the password out of
        /// the process list).
        #[arg(long, alias = "database")]
        db: Option<String>,
        /// The blob folder (default `<db>.blobs`); with PostgreSQL, required: the folder every
        /// replica shares.
        #[arg(long)]
        blobs: Option<PathBuf>,
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// The endpoint's key folder (from `apoyo endpoint-keygen`); ine-root.key is not needed.
        /// (`--key <folder>/endpoint.key`, v1's form, names the same folder.)
        #[arg(long, alias = "key")]
        keys: PathBuf,
        #[arg(long)]
        processes: PathBuf,
        /// Enable the development mailbox and admin stats routes.
        #[arg(long)]
        dev: bool,
        #[command(flatten)]
        registration: serve::RegistrationArgs,
    },
    /// The main job on embedded defaults: endpoint, two devices, captures, a lossy link, sync.
    Demo {
        #[arg(long)]
        json: bool,
        /// Seed of the lossy link and the retry jitter.
        #[arg(long, default_value_t = 2022)]
        seed: u64,
    },
    /// A fault-injecting TCP proxy between devices (or a phone) and an endpoint.
    Proxy(field_cmds::ProxyArgs),
    /// A whole field scenario: endpoint, proxy, devices, a bad link, and the report.
    Fieldtest(field_cmds::FieldtestArgs),
    /// Test support: one device process of `fieldtest --kill-rate`.
    #[command(hide = true)]
    FieldtestDevice(field_cmds::DeviceArgs),
    /// Performance figures, each beside a baseline measured in the same run (docs/performance.md).
    Bench(bench::BenchArgs),
    /// Test support: open a device folder's store and wait to be SIGKILLed (`bench`).
    #[command(hide = true)]
    BenchHold(bench::HoldArgs),
    /// Test support: sync a device folder's store until drained, print the peak RSS (`bench`).
    #[command(hide = true)]
    BenchSyncChild(bench::ChildArgs),
    /// Test support: capture synthetic supports in a loop, printing each id once durable.
    #[command(hide = true)]
    CaptureLoop(StoreArg),
}

#[derive(Args)]
struct StoreArg {
    #[arg(long)]
    store: PathBuf,
}

#[derive(Subcommand)]
enum DeviceCmd {
    /// Create a device store bound to this machine's keyring ($APOYO_KEYRING).
    Init {
        #[arg(long)]
        store: PathBuf,
        /// INE's seal key file (`apoyo-seal-pub-v1 <hex>`, from `apoyo endpoint-keygen`).
        #[arg(long)]
        endpoint_pub: PathBuf,
        /// The INE root (`apoyo-ine-root-v1 <hex>`): receipts are trusted only if their key
        /// chains to it.
        #[arg(long)]
        ine_root: PathBuf,
        /// Capture as this auxiliar (registration id) instead of as the Mi Apoyo citizen.
        #[arg(long)]
        auxiliar: Option<String>,
    },
    /// Move a store that cannot be opened (corrupt, unknown version) aside, keeping every byte,
    /// so a fresh one can be created. Prints where it went.
    SetAside {
        #[arg(long)]
        store: PathBuf,
    },
    /// Register with the endpoint ("Registro ciudadano"); the code arrives by email.
    Register {
        #[arg(long)]
        store: PathBuf,
        /// Endpoint base URL (https, or http on loopback).
        #[arg(long)]
        endpoint: String,
        #[arg(long)]
        email: String,
        /// google | facebook
        #[arg(long)]
        provider: String,
        /// The card front image.
        #[arg(long)]
        front: PathBuf,
        #[command(flatten)]
        tls: sync_cmds::TlsArgs,
    },
    /// Activate with the emailed code (valid 24 h, only on this device).
    Activate {
        #[arg(long)]
        store: PathBuf,
        #[arg(long)]
        code: String,
        #[command(flatten)]
        tls: sync_cmds::TlsArgs,
    },
}

#[derive(Subcommand)]
enum ProcessCmd {
    /// Add process definitions from a JSON file (one object or an array).
    Add {
        #[arg(long)]
        store: PathBuf,
        #[arg(long)]
        file: PathBuf,
    },
    /// List the process catalog as JSON.
    List {
        #[arg(long)]
        store: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage::parse_failure(&e),
    };
    let result = match cli.cmd {
        Cmd::EndpointKeygen { out, rotate } => endpoint_keys::endpoint_keygen(&out, rotate),
        Cmd::Device(DeviceCmd::Init {
            store,
            endpoint_pub,
            ine_root,
            auxiliar,
        }) => store_cmds::device_init(&store, &endpoint_pub, &ine_root, auxiliar),
        Cmd::Device(DeviceCmd::SetAside { store }) => store_cmds::set_aside(&store),
        Cmd::Process(ProcessCmd::Add { store, file }) => store_cmds::process_add(&store, &file),
        Cmd::Process(ProcessCmd::List { store }) => store_cmds::process_list(&store),
        Cmd::Capture(args) => store_cmds::capture(args),
        Cmd::Status { store, json } => store_cmds::status(&store, json),
        Cmd::Open { store, id, out } => store_cmds::open(&store, &id, &out),
        Cmd::Device(DeviceCmd::Register {
            store,
            endpoint,
            email,
            provider,
            front,
            tls,
        }) => sync_cmds::register(&store, &endpoint, &email, &provider, &front, &tls),
        Cmd::Device(DeviceCmd::Activate { store, code, tls }) => {
            sync_cmds::activate(&store, &code, &tls)
        }
        Cmd::Sync {
            store,
            budget,
            json,
            tls,
        } => sync_cmds::run_sync(&store, budget, json, &tls),
        Cmd::Receipts { store, json } => sync_cmds::receipts(&store, json),
        Cmd::Retry { store, id } => sync_cmds::retry(&store, &id),
        Cmd::Serve {
            db,
            blobs,
            listen,
            keys,
            processes,
            dev,
            registration,
        } => serve::serve(
            &serve::Storage { db, blobs },
            &listen,
            &keys,
            &processes,
            dev,
            &registration,
        ),
        Cmd::Demo { json, seed } => demo::demo(json, seed),
        Cmd::Bench(a) => bench::bench(a),
        Cmd::BenchHold(a) => bench::hold(a),
        Cmd::BenchSyncChild(a) => bench::child(a),
        Cmd::CaptureLoop(a) => store_cmds::capture_loop(&a.store),
        Cmd::Proxy(a) => field_cmds::proxy(a),
        Cmd::Fieldtest(a) => return field_cmds::fieldtest(a),
        Cmd::FieldtestDevice(a) => field_cmds::device(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("apoyo: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

const EXIT_REFUSED: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_STORE_UNUSABLE: u8 = 3;
const EXIT_INTERNAL: u8 = 4;

/// A CLI failure: an engine error or a usage problem found after parsing.
#[derive(Debug)]
pub enum CliError {
    /// An engine error once the store is open (or without a store).
    Engine(apoyo_sync::Error),
    /// An engine error while opening a store: a store that cannot be opened (corrupt, another
    /// device's keyring, unknown version, damaged keys) is unusable, not just one refusal.
    Open(apoyo_sync::Error),
    Usage(String),
    /// One of the user's own input files (an image, a process file, a key file) could not be
    /// read or used: a refusal, not an internal error.
    Input(String),
    Io(String),
}

impl CliError {
    fn exit_code(&self) -> u8 {
        use apoyo_sync::ErrorClass as C;
        match self {
            CliError::Usage(_) => EXIT_USAGE,
            CliError::Input(_) => EXIT_REFUSED,
            CliError::Io(_) => EXIT_INTERNAL,
            CliError::Open(e) => match e.class() {
                C::StoreUnusable | C::KeyUnavailable | C::Integrity => EXIT_STORE_UNUSABLE,
                C::Internal => EXIT_INTERNAL,
                _ => EXIT_REFUSED,
            },
            // Once the store is open, an integrity failure concerns one capture (or one
            // receipt): the store stays usable and the other captures open.
            CliError::Engine(e) => match e.class() {
                C::StoreUnusable | C::KeyUnavailable => EXIT_STORE_UNUSABLE,
                C::Internal => EXIT_INTERNAL,
                _ => EXIT_REFUSED,
            },
        }
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CliError::Engine(e) | CliError::Open(e) => write!(f, "{e}"),
            CliError::Usage(m) | CliError::Input(m) | CliError::Io(m) => f.write_str(m),
        }
    }
}

impl From<apoyo_sync::Error> for CliError {
    fn from(e: apoyo_sync::Error) -> Self {
        CliError::Engine(e)
    }
}

pub type CliResult<T = ()> = Result<T, CliError>;

/// The most of an input file [`read_file`] reads: above every input's limit (images 3 MiB,
/// process files 1 MiB).
const READ_CAP: u64 = 16 * 1024 * 1024;

/// Reads one of the user's input files, naming its role (`what`, e.g. "front image
/// (--front)") and its path in the error, which is a refusal (exit 1).
pub fn read_file(path: &std::path::Path, what: &str) -> CliResult<Vec<u8>> {
    use std::io::Read;
    // Never more than READ_CAP + 1 bytes: every input's own limit is below the cap, so a huge
    // file (or /dev/zero) is read only far enough to be refused by that limit.
    let read = || -> std::io::Result<Vec<u8>> {
        let mut buf = Vec::new();
        std::fs::File::open(path)?
            .take(READ_CAP + 1)
            .read_to_end(&mut buf)?;
        Ok(buf)
    };
    read().map_err(|e| {
        CliError::Input(format!(
            "cannot read the {what} at {}: {}",
            path.display(),
            e.kind()
        ))
    })
}
