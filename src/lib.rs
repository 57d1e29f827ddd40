//! apoyo-sync: an offline-first, encrypted capture store and sync engine for INE's
//! "Apoyo Ciudadano" app.
//!
//! The app-facing API is [`Engine`] (module [`engine`]) and the types it takes and returns,
//! re-exported here; see `ARCHITECTURE.md` for the layers. The C ABI and JNI bridges live in
//! their own crates under `bridge/`, the only place `unsafe` code is allowed (ADR 0014).
#![forbid(unsafe_code)]

pub mod cbor;
pub mod clock;
pub mod crypto;
pub mod engine;
pub mod error;
pub mod fsutil;
pub mod limits;
pub mod model;
pub mod process;
pub mod protocol;
pub mod queue;
pub mod store;
pub mod sync;
pub mod validate;

pub use clock::{Clock, ManualClock, SharedClock, SystemClock};
pub use crypto::{EndpointPublicKey, EndpointSecretKey, FileKeyGuard, IneRoot, KeyGuard};
pub use engine::{
    Activated, CaptureChange, Engine, EngineOptions, EngineStatus, Event, Hold, Listener,
    NetworkKind, NetworkPolicy, NetworkUsage, Provisioning, Registered, Wait,
};
pub use error::{Error, ErrorClass, ErrorCode, Field, Result};
pub use model::{
    CaptureId, CardFields, Collector, CredentialModel, Images, Location, Manifest, NewCapture,
    PartKind,
};
pub use process::{Process, Scope};
pub use protocol::{Provider, ReceiptResult};
pub use queue::State;
pub use store::ReceiptInfo;
pub use store::{CaptureInfo, InePublicKeys, PartRecord, Status, Store, StoreOptions};
pub use sync::{Progress, StopReason, SyncReport, TlsConfig};
