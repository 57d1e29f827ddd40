//! apoyo-sync: an offline-first, encrypted capture store and sync engine for INE's
//! "Apoyo Ciudadano" app.
//!
//! The crate has three public faces (ADR 0016, `ARCHITECTURE.md` "Public surface"):
//!
//! - **The facade**, re-exported here: [`Engine`] and the types it takes and returns, the
//!   errors and their stable codes. This is the whole app-facing API; the C ABI and the JNI
//!   bridge (their own crates under `bridge/`, the only place `unsafe` code is allowed,
//!   ADR 0014) and the CLI's device commands use nothing else (`tests/public_surface.rs`).
//! - [`wire`]: the protocol contract shared with the reference endpoint (messages, CBOR
//!   codec, tus helpers, limits, the crypto that opens sealed material and signs receipts).
//!   Not for apps.
//! - `testkit` (feature `testkit`): the store, the sync engine's parts, transports, clocks,
//!   randomness and fault injection, for tests, benchmarks, fuzz targets, the simulation and
//!   the field kit. Never enabled by the bridges.
//!
//! Every other module is private to the crate.
#![forbid(unsafe_code)]

mod cbor;
mod clock;
mod crypto;
mod engine;
mod error;
mod fsutil;
mod limits;
mod model;
mod process;
mod protocol;
mod queue;
mod store;
mod sync;
mod validate;

#[cfg(feature = "testkit")]
pub mod testkit;
pub mod wire;

pub use clock::{Clock, SharedClock, SystemClock};
pub use crypto::{EndpointPublicKey, FileKeyGuard, IneRoot, KeyGuard, SecretKey};
pub use engine::{
    Activated, CaptureChange, Engine, EngineOptions, EngineStatus, Event, Hold, Listener,
    NetworkKind, NetworkPolicy, NetworkUsage, Provisioning, Registered, Wait,
};
pub use error::{Error, ErrorClass, ErrorCode, Field, Result};
pub use model::{
    CaptureId, CardFields, Collector, CredentialModel, Images, Location, NewCapture, PartKind,
};
pub use process::{NationalTag, Process, Scope, SeccionRef};
pub use protocol::{Provider, ReceiptResult};
pub use queue::State;
pub use store::{CaptureInfo, OpenReport, ReceiptInfo, Status};
pub use sync::{BackoffPolicy, Progress, StopReason, SyncReport, TlsConfig};
