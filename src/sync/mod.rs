//! Sync: delivering each capture to the endpoint exactly once.
//!
//! - [`transport`]: the network seam ([`Transport`]) and its HTTP implementation over rustls.
//! - [`pinning`]: the TLS settings ([`TlsConfig`]) and the rustls verifier that pins them.
//! - [`client`]: one function per protocol exchange; classifies every failure once.
//! - [`control`]: what stops a run between exchanges (cancel, network policy) and hears of
//!   each capture's state change.
//! - [`engine`]: a sync run within a time budget: the queue, commits, receipts, rescheduling.
//! - `pipeline`: the order of a run's exchanges: one capture's commit in flight while the next
//!   one's parts upload (ADR 0022).
//! - `upload`: the tus uploads of a capture's parts, two at a time, each resuming from the
//!   endpoint's offset.
//! - [`patch_size`]: how many bytes the next PATCH carries (ADR 0018).
//! - `link_memory`: what a run hands the next one (PATCH sizing, catalog freshness, ADR 0023).
//! - [`device`]: registration and activation.
//! - [`retry`]: backoff with full jitter, `Retry-After`.
//! - [`faults`]: a seeded fault-injecting transport (demo, tests, field tests).
//! - `test_bugs` (feature `testkit`, never in the bridges): deliberately broken variants the
//!   simulation must catch.
//!
//! The blocking entry points ([`sync_blocking`], [`register_blocking`], [`activate_blocking`])
//! run the async code on a current-thread runtime: what the CLI and the C ABI call.

pub mod client;
pub mod control;
pub mod device;
pub mod engine;
#[cfg(any(test, feature = "testkit"))]
pub mod faults;
mod link_memory;
pub mod patch_size;
pub mod pinning;
mod pipeline;
pub mod retry;
mod tail;
#[cfg(feature = "testkit")]
pub mod test_bugs;
pub mod transport;
mod upload;

#[cfg(any(test, feature = "testkit"))]
pub use control::{CaptureChange, Hold, RunControl};
pub use engine::{Progress, StopReason, SyncOptions, SyncReport};
#[cfg(any(test, feature = "testkit"))]
pub use faults::{FaultPlan, FaultyTransport};
pub use pinning::TlsConfig;
pub use retry::BackoffPolicy;
pub use transport::{HttpTransport, Transport};

use crate::error::{Error, Result};
use crate::protocol::{ActivateResponse, Provider, RegisterResponse};
use crate::store::Store;

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Internal(format!("runtime: {e}")))
}

/// Runs [`engine::run`] to completion on a private runtime.
pub fn sync_blocking(
    store: &mut Store,
    transport: &dyn Transport,
    opts: SyncOptions,
) -> Result<SyncReport> {
    runtime()?.block_on(engine::run(store, transport, opts))
}

/// Runs [`device::register`] on a private runtime.
pub fn register_blocking(
    store: &mut Store,
    transport: &dyn Transport,
    endpoint_url: &str,
    email: &str,
    provider: Provider,
    front: &[u8],
) -> Result<RegisterResponse> {
    runtime()?.block_on(device::register(
        store,
        transport,
        endpoint_url,
        email,
        provider,
        front,
    ))
}

/// Runs [`device::activate`] on a private runtime.
pub fn activate_blocking(
    store: &mut Store,
    transport: &dyn Transport,
    code: &str,
) -> Result<ActivateResponse> {
    runtime()?.block_on(device::activate(store, transport, code))
}
