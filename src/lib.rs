//! apoyo-sync: an offline-first, encrypted capture store and sync engine for INE's
//! "Apoyo Ciudadano" app.
//!
//! The public API is what this file re-exports; see `ARCHITECTURE.md` for the layers.
//! Only the FFI layer may contain `unsafe` code.
#![deny(unsafe_code)]

pub mod cbor;
pub mod clock;
pub mod crypto;
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
pub use error::{Error, ErrorClass, ErrorCode, Field, Result};
pub use model::{
    CaptureId, CardFields, Collector, CredentialModel, Images, Location, Manifest, NewCapture,
    PartKind,
};
pub use process::{Process, Scope};
pub use queue::State;
pub use store::{CaptureInfo, PartRecord, Provisioning, Status, Store, StoreOptions};
