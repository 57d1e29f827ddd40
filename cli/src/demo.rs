//! `apoyo demo`: the whole story on embedded defaults, in one command. An endpoint runs
//! in-process on loopback; two devices (an auxiliar and a Mi Apoyo citizen) register through
//! the development mailbox, capture synthetic supports (one citizen twice, on both devices),
//! and sync through a lossy link until drained. `lost` is computed by comparing what the
//! devices captured with what the endpoint recorded, never assumed.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use apoyo_endpoint::{EndpointConfig, RunningEndpoint};
use apoyo_sync::testkit::store::InePublicKeys;
use apoyo_sync::testkit::sync::transport::{Method, Request};
use apoyo_sync::testkit::sync::{
    self, BackoffPolicy, FaultPlan, FaultyTransport, HttpTransport, SyncOptions, TlsConfig,
    Transport,
};
use apoyo_sync::testkit::{Store, StoreOptions};
use apoyo_sync::wire::Provider;
use apoyo_sync::{
    CardFields, Collector, CredentialModel, FileKeyGuard, Images, NewCapture, Process,
};

use crate::{CliError, CliResult};

const PROCESSES: &[u8] = include_bytes!("../../examples/processes.json");
const FRONT: &[u8] = include_bytes!("../../examples/images/front.jpg");
const BACK: &[u8] = include_bytes!("../../examples/images/back.jpg");
const SELFIE: &[u8] = include_bytes!("../../examples/images/selfie.jpg");
const SIGNATURE: &[u8] = include_bytes!("../../examples/images/signature.png");
/// Synthetic claves de elector (no real person's). The last one is captured on both devices.
const CLAVES: [&str; 7] = [
    "MUESTR90010109H001",
    "EJEMPL85061215M002",
    "PRUEBA70123130H003",
    "DEMOST99022814M004",
    "SINTET01020309X005",
    "FICTIC88111121H006",
    "REPETI92070719M007",
];
/// How many sync runs the demo allows before giving up on draining.
const MAX_RUNS: usize = 30;

fn ok<T, E: std::fmt::Display>(r: Result<T, E>, what: &str) -> CliResult<T> {
    r.map_err(|e| CliError::Io(format!("{what}: {e}")))
}

struct Device {
    name: &'static str,
    store: Store,
}

fn device(
    dir: &Path,
    name: &'static str,
    collector: Option<Collector>,
    url: &str,
    provisioning: &InePublicKeys,
    t: &HttpTransport,
    rt: &tokio::runtime::Runtime,
) -> CliResult<Device> {
    let guard = FileKeyGuard::open_or_create(&dir.join(format!("{name}-keyring")))?;
    let mut store = Store::init(
        &dir.join(name),
        &guard,
        provisioning,
        collector,
        StoreOptions {
            disk_reserve_bytes: crate::store_cmds::disk_reserve_bytes(
                StoreOptions::default().disk_reserve_bytes,
            )?,
            ..StoreOptions::default()
        },
    )?;
    let email = format!("{name}@demo.invalid");
    sync::register_blocking(&mut store, t, url, &email, Provider::Google, FRONT)?;
    let resp = ok(
        rt.block_on(t.send(
            Request::new(
                Method::Get,
                format!("/v1/dev/mailbox/{email}"),
                Duration::from_secs(10),
            ),
            1 << 16,
        )),
        "mailbox",
    )?;
    let mail: serde_json::Value = ok(serde_json::from_slice(&resp.body), "mailbox answer")?;
    let code = mail["code"]
        .as_str()
        .ok_or_else(|| CliError::Io("no code in the development mailbox".into()))?;
    sync::activate_blocking(&mut store, t, code)?;
    Ok(Device { name, store })
}

fn capture(d: &mut Device, clave: &str, seccion: u16) -> apoyo_sync::Result<apoyo_sync::CaptureId> {
    d.store.capture(NewCapture {
        process_id: "revocacion-2022".into(),
        model: CredentialModel::parse("G")?,
        fields: CardFields {
            clave_elector: clave.into(),
            entidad: Some(9),
            seccion: Some(seccion),
            vigencia: Some(2029),
            ..Default::default()
        },
        location: None,
        images: Images {
            front: FRONT.to_vec(),
            back: BACK.to_vec(),
            selfie: SELFIE.to_vec(),
            signature: SIGNATURE.to_vec(),
        },
        collector: None,
    })
}

/// Prints the human-readable story, unless the output is JSON.
struct Say {
    json: bool,
}

impl Say {
    fn say(&self, s: String) {
        if !self.json {
            println!("{s}");
        }
    }
}

/// What the sync runs did, summed over both devices and every run.
#[derive(Default)]
struct Totals {
    runs: usize,
    quarantined: u64,
    retries: u64,
    bytes_sent: u64,
}

/// What the endpoint recorded and the devices still hold, against what was captured.
#[derive(Clone, Copy)]
struct Accounting {
    counted: u64,
    duplicates: u64,
    accounted: u64,
    lost: u64,
    receipts_ok: bool,
}

pub fn demo(json: bool, seed: u64) -> CliResult {
    let out = Say { json };
    let tmp = ok(tempfile::tempdir(), "temporary folder")?;
    let rt = ok(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build(),
        "runtime",
    )?;
    let (ep, key) = start_endpoint(&rt, tmp.path())?;
    let url = ep.url();
    out.say(format!(
        "endpoint    {url} (in-process, temporary database)"
    ));
    let http = HttpTransport::new(&url, &TlsConfig::default())?;
    let mut aux = device(
        tmp.path(),
        "auxiliar",
        Some(Collector::Auxiliar("AUX-0001".into())),
        &url,
        &key,
        &http,
        &rt,
    )?;
    let mut citizen = device(tmp.path(), "mi-apoyo", None, &url, &key, &http, &rt)?;
    out.say("devices     auxiliar and mi-apoyo registered (card front sealed for INE) and activated via the dev mailbox".into());
    let captured = capture_supports(&mut aux, &mut citizen, &out)?;
    out.say(format!(
        "captured    {captured} supports, encrypted on the phones (one citizen on both phones)"
    ));
    let links: Vec<FaultyTransport<HttpTransport>> = (0..2)
        .map(|i| {
            HttpTransport::new(&url, &TlsConfig::default())
                .map(|t| FaultyTransport::new(t, FaultPlan::lossy(), seed.wrapping_add(i)))
        })
        .collect::<Result<_, _>>()?;
    let totals = sync_until_drained([&mut aux, &mut citizen], &links, seed)?;
    out.say(format!(
        "sync        {} run(s) over a lossy link: {} faults injected (dropped requests, lost answers, cut uploads), {} retries",
        totals.runs,
        faults_injected(&links),
        totals.retries
    ));
    let acc = account(&rt, &ep, [&aux, &citizen], captured)?;
    print_summary(&out, [&aux, &citizen], &acc, captured, &totals)?;
    rt.block_on(ep.shutdown());
    if acc.lost > 0 || !acc.receipts_ok || acc.accounted > captured {
        return Err(CliError::Io(format!(
            "the demo found a problem: lost {}, receipts verified {}",
            acc.lost, acc.receipts_ok
        )));
    }
    Ok(())
}

/// The reference endpoint, in-process on loopback with a temporary database and the
/// development mailbox on.
/// Starts the endpoint on a fresh key ring (v1.1: an INE root certifying a seal key and a
/// receipt key); returns it and what the demo's phones are provisioned with.
fn start_endpoint(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
) -> CliResult<(RunningEndpoint, InePublicKeys)> {
    let root = apoyo_sync::testkit::crypto::Ed25519Secret::generate()?;
    let ring = ok(
        apoyo_endpoint::KeyRing::generate(&root, time::OffsetDateTime::now_utc()),
        "key ring",
    )?;
    let provisioning = InePublicKeys {
        seal_key: ring.seal[0].secret.public(),
        ine_root: ring.root,
    };
    let processes = Process::parse_json_list(PROCESSES)?;
    let mut cfg = EndpointConfig::new(dir.join("endpoint.db"), ring, processes);
    cfg.dev = true;
    let ep = ok(
        rt.block_on(apoyo_endpoint::start(cfg, ([127, 0, 0, 1], 0).into())),
        "endpoint",
    )?;
    Ok((ep, provisioning))
}

/// Captures the synthetic supports: every clave on the auxiliar's phone, the last one again
/// there (which must be refused locally), and on the citizen's phone that same citizen plus
/// one more. How many were stored.
fn capture_supports(aux: &mut Device, citizen: &mut Device, out: &Say) -> CliResult<u64> {
    let mut captured = 0u64;
    for (i, clave) in CLAVES.iter().enumerate() {
        capture(aux, clave, 100 + i as u16)?;
        captured += 1;
    }
    // The same citizen again on the same device: refused locally, before anything is stored.
    match capture(aux, CLAVES[6], 106) {
        Err(e @ apoyo_sync::Error::Duplicate { .. }) => out.say(format!(
            "local check  second capture on the same phone refused ({e})"
        )),
        other => {
            return Err(CliError::Io(format!(
                "expected a local duplicate refusal, got {other:?}"
            )));
        }
    }
    // …but on another phone it can only be caught by the endpoint (counted once, LGIPE art. 385).
    capture(citizen, CLAVES[6], 106)?;
    capture(citizen, "UNICOC93030309H008", 107)?;
    captured += 2;
    Ok(captured)
}

/// Syncs both devices, each over its own lossy link, until nothing is pending or
/// [`MAX_RUNS`] runs were made.
fn sync_until_drained(
    devices: [&mut Device; 2],
    links: &[FaultyTransport<HttpTransport>],
    seed: u64,
) -> CliResult<Totals> {
    let opts = SyncOptions {
        budget: Duration::from_secs(60),
        backoff: BackoffPolicy {
            min_delay: Duration::from_millis(50),
            max_delay: Duration::from_millis(500),
        },
        seed: Some(seed),
        progress: None,
        control: None,
    };
    let mut totals = Totals::default();
    let mut pending = u64::MAX;
    let [a, b] = devices;
    while pending > 0 && totals.runs < MAX_RUNS {
        totals.runs += 1;
        pending = 0;
        for (d, link) in [&mut *a, &mut *b].into_iter().zip(links) {
            let r = sync::sync_blocking(&mut d.store, link, opts.clone())?;
            totals.quarantined += r.quarantined;
            totals.retries += r.retries;
            totals.bytes_sent += r.bytes_sent;
            pending += r.pending;
        }
    }
    Ok(totals)
}

/// Faults the lossy links injected: dropped requests, lost answers, cut uploads.
fn faults_injected(links: &[FaultyTransport<HttpTransport>]) -> u64 {
    links
        .iter()
        .map(|l| {
            l.stats.dropped.load(Ordering::Relaxed)
                + l.stats.lost_responses.load(Ordering::Relaxed)
                + l.stats.cut_uploads.load(Ordering::Relaxed)
        })
        .sum()
}

/// Compares what the devices captured with what the endpoint recorded and the devices still
/// hold; `lost` is what neither side accounts for.
fn account(
    rt: &tokio::runtime::Runtime,
    ep: &RunningEndpoint,
    devices: [&Device; 2],
    captured: u64,
) -> CliResult<Accounting> {
    let stats = rt.block_on(ep.stats());
    let stats = ok(serde_json::to_value(&stats), "stats")?;
    let counted = stats["counted"].as_u64().unwrap_or(0);
    let duplicates = stats["duplicates"].as_u64().unwrap_or(0);
    let held: u64 = devices
        .iter()
        .map(|d| {
            d.store
                .status()
                .map(|s| s.captured + s.uploading + s.quarantined)
        })
        .sum::<apoyo_sync::Result<u64>>()?;
    let accounted = counted + duplicates + held;
    let receipts_ok = devices
        .iter()
        .map(|d| d.store.receipts().map(|r| r.iter().all(|x| x.verified)))
        .collect::<apoyo_sync::Result<Vec<bool>>>()?
        .into_iter()
        .all(|b| b);
    Ok(Accounting {
        counted,
        duplicates,
        accounted,
        lost: captured.saturating_sub(accounted),
        receipts_ok,
    })
}

/// Each device's queue, the endpoint's counts and the result; the JSON line with `--json`.
fn print_summary(
    out: &Say,
    devices: [&Device; 2],
    acc: &Accounting,
    captured: u64,
    totals: &Totals,
) -> CliResult {
    for d in devices {
        let s = d.store.status()?;
        out.say(format!(
            "{:<11} purged {}  pending {}  quarantined {}  bytes held {}",
            d.name,
            s.purged,
            s.captured + s.uploading,
            s.quarantined,
            s.pending_bytes
        ));
    }
    let Accounting {
        counted,
        duplicates,
        accounted,
        lost,
        receipts_ok,
    } = *acc;
    out.say(format!(
        "endpoint    counted {counted}, duplicates {duplicates} (counted once), receipts verified: {receipts_ok}"
    ));
    out.say(format!(
        "result      captured {captured}, accounted for {accounted}, lost {lost}"
    ));
    if out.json {
        println!(
            "{}",
            serde_json::json!({
                "captured": captured, "counted": counted, "duplicates": duplicates, "quarantined": totals.quarantined,
                "lost": lost, "retries": totals.retries, "bytes_sent": totals.bytes_sent,
            })
        );
    }
    Ok(())
}
