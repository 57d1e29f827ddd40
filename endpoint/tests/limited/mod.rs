//! For the commit tests (issue 17): the common harness restarted with a given refused-commit
//! budget and hook.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use apoyo_endpoint::{Chaos, EndpointConfig, RunningEndpoint};

use crate::common::{Harness, Opts, db_path};

/// A harness whose endpoint runs with the given refused-commit budget and hook: the common
/// harness's configuration, restarted on the same database and blob folder.
pub async fn start(o: Opts, refusals: u32, window: Duration) -> Harness {
    let chaos = o.chaos.clone();
    let mut h = Harness::start_with(o).await;
    if let Some(ep) = h.ep.take() {
        ep.shutdown().await;
    }
    let cfg = config(&h, refusals, window, chaos);
    let ep = apoyo_endpoint::start(cfg, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    h.url = ep.url();
    h.addr = ep.addr;
    h.ep = Some(ep);
    h
}

/// Another replica on the harness's database and blob folder, with the same budget and no
/// hook.
pub async fn another_replica(h: &Harness, refusals: u32, window: Duration) -> RunningEndpoint {
    let cfg = config(h, refusals, window, None);
    apoyo_endpoint::start(cfg, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("another replica")
}

fn config(
    h: &Harness,
    refusals: u32,
    window: Duration,
    chaos: Option<Arc<dyn Chaos>>,
) -> EndpointConfig {
    let mut cfg = EndpointConfig::new(db_path(h.dir.path()), h.ring.clone(), h.processes.clone());
    cfg.dev = h.dev;
    cfg.upload_ttl = h.upload_ttl;
    cfg.body_idle_timeout = h.body_idle_timeout;
    cfg.chaos = chaos;
    cfg.commit_refusals = refusals;
    cfg.commit_refusal_window = window;
    if let Some(url) = &h.database {
        cfg.database = Some(url.parse().expect("a PostgreSQL URL"));
        cfg.blob_dir = Some(h.blob_dir());
    }
    if let Some(c) = &h.clock {
        let clock: apoyo_sync::SharedClock = Arc::new(c.clone());
        cfg.clock = clock;
    }
    cfg
}
