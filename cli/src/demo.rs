//! `apoyo demo`: the whole story on embedded defaults, in one command. An endpoint runs
//! in-process on loopback; two devices (an auxiliar and a Mi Apoyo citizen) register through
//! the development mailbox, capture synthetic supports (one citizen twice, on both devices),
//! and sync through a lossy link until drained. `lost` is computed by comparing what the
//! devices captured with what the endpoint recorded, never assumed.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use apoyo_endpoint::EndpointConfig;
use apoyo_sync::protocol::Provider;
use apoyo_sync::sync::transport::{Method, Request};
use apoyo_sync::sync::{
    self, BackoffPolicy, FaultPlan, FaultyTransport, HttpTransport, SyncOptions, TlsConfig,
    Transport,
};
use apoyo_sync::{
    CardFields, Collector, CredentialModel, FileKeyGuard, Images, NewCapture, Provisioning,
    Process, Store,
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
    provisioning: &Provisioning,
    t: &HttpTransport,
    rt: &tokio::runtime::Runtime,
) -> CliResult<Device> {
    let guard = FileKeyGuard::open_or_create(&dir.join(format!("{name}-keyring")))?;
    let mut store = Store::init(
        &dir.join(name),
        &guard,
        provisioning,
        collector,
        crate::store_cmds::store_options()?,
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

pub fn demo(json: bool, seed: u64) -> CliResult {
    let say = |s: String| {
        if !json {
            println!("{s}");
        }
    };
    let tmp = ok(tempfile::tempdir(), "temporary folder")?;
    let rt = ok(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build(),
        "runtime",
    )?;
    let root = apoyo_sync::crypto::Ed25519Secret::generate()?;
    let ring = ok(
        apoyo_endpoint::KeyRing::generate(&root, time::OffsetDateTime::now_utc()),
        "key ring",
    )?;
    let key = Provisioning {
        seal_key: ring.seal[0].secret.public(),
        ine_root: ring.root,
    };
    let processes = Process::parse_json_list(PROCESSES)?;
    let mut cfg = EndpointConfig::new(tmp.path().join("endpoint.db"), ring, processes);
    cfg.dev = true;
    let ep = ok(
        rt.block_on(apoyo_endpoint::start(cfg, ([127, 0, 0, 1], 0).into())),
        "endpoint",
    )?;
    let url = ep.url();
    say(format!(
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
    say("devices     auxiliar and mi-apoyo registered (card front sealed for INE) and activated via the dev mailbox".into());

    let mut captured = 0u64;
    for (i, clave) in CLAVES.iter().enumerate() {
        capture(&mut aux, clave, 100 + i as u16)?;
        captured += 1;
    }
    // The same citizen again on the same device: refused locally, before anything is stored.
    match capture(&mut aux, CLAVES[6], 106) {
        Err(e @ apoyo_sync::Error::Duplicate { .. }) => say(format!(
            "local check  second capture on the same phone refused ({e})"
        )),
        other => {
            return Err(CliError::Io(format!(
                "expected a local duplicate refusal, got {other:?}"
            )));
        }
    }
    // …but on another phone it can only be caught by the endpoint (counted once, LGIPE art. 385).
    capture(&mut citizen, CLAVES[6], 106)?;
    capture(&mut citizen, "UNICOC93030309H008", 107)?;
    captured += 2;
    say(format!(
        "captured    {captured} supports, encrypted on the phones (one citizen on both phones)"
    ));

    let plan = FaultPlan::lossy();
    let opts = SyncOptions {
        budget: Duration::from_secs(60),
        backoff: BackoffPolicy {
            min_delay: Duration::from_millis(50),
            max_delay: Duration::from_millis(500),
        },
        seed: Some(seed),
        progress: None,
    };
    let mut totals = (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut runs = 0;
    let links: Vec<FaultyTransport<HttpTransport>> = (0..2)
        .map(|i| {
            HttpTransport::new(&url, &TlsConfig::default())
                .map(|t| FaultyTransport::new(t, plan, seed.wrapping_add(i)))
        })
        .collect::<Result<_, _>>()?;
    let mut pending = u64::MAX;
    while pending > 0 && runs < MAX_RUNS {
        runs += 1;
        pending = 0;
        for (d, link) in [&mut aux, &mut citizen].into_iter().zip(&links) {
            let r = sync::sync_blocking(&mut d.store, link, opts.clone())?;
            totals.0 += r.committed;
            totals.1 += r.duplicates;
            totals.2 += r.quarantined;
            totals.3 += r.retries;
            totals.4 += r.bytes_sent;
            pending += r.pending;
        }
    }
    let faults: u64 = links
        .iter()
        .map(|l| {
            l.stats.dropped.load(Ordering::Relaxed)
                + l.stats.lost_responses.load(Ordering::Relaxed)
                + l.stats.cut_uploads.load(Ordering::Relaxed)
        })
        .sum();
    say(format!(
        "sync        {runs} run(s) over a lossy link: {faults} faults injected (dropped requests, lost answers, cut uploads), {} retries",
        totals.3
    ));

    let stats = rt.block_on(ep.stats());
    let stats = ok(serde_json::to_value(&stats), "stats")?;
    let counted = stats["counted"].as_u64().unwrap_or(0);
    let duplicates = stats["duplicates"].as_u64().unwrap_or(0);
    let held: u64 = [&aux, &citizen]
        .iter()
        .map(|d| {
            d.store
                .status()
                .map(|s| s.captured + s.uploading + s.quarantined)
        })
        .sum::<apoyo_sync::Result<u64>>()?;
    let accounted = counted + duplicates + held;
    let lost = captured.saturating_sub(accounted);
    let receipts_ok = [&aux, &citizen]
        .iter()
        .map(|d| d.store.receipts().map(|r| r.iter().all(|x| x.verified)))
        .collect::<apoyo_sync::Result<Vec<bool>>>()?
        .into_iter()
        .all(|b| b);
    for d in [&aux, &citizen] {
        let s = d.store.status()?;
        say(format!(
            "{:<11} purged {}  pending {}  quarantined {}  bytes held {}",
            d.name,
            s.purged,
            s.captured + s.uploading,
            s.quarantined,
            s.pending_bytes
        ));
    }
    say(format!(
        "endpoint    counted {counted}, duplicates {duplicates} (counted once), receipts verified: {receipts_ok}"
    ));
    say(format!(
        "result      captured {captured}, accounted for {accounted}, lost {lost}"
    ));
    if json {
        println!(
            "{}",
            serde_json::json!({
                "captured": captured, "counted": counted, "duplicates": duplicates, "quarantined": totals.2,
                "lost": lost, "retries": totals.3, "bytes_sent": totals.4,
            })
        );
    }
    rt.block_on(ep.shutdown());
    if lost > 0 || !receipts_ok || accounted > captured {
        return Err(CliError::Io(format!(
            "the demo found a problem: lost {lost}, receipts verified {receipts_ok}"
        )));
    }
    Ok(())
}
