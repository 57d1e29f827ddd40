//! Test-only access below the facade (feature `testkit`) — **not for apps**.
//!
//! For the crate's own tests and benchmarks, the fuzz targets (`fuzz/`), the simulation
//! (`tests/sim/`), the endpoint's tests and the field kit: the store itself, the sync
//! engine's passes, transports and their request types, clocks, randomness, fault injection
//! and the deliberately broken variants the simulation must catch (`sync::test_bugs`).
//!
//! The bridges never enable this feature (they depend on the crate without it, and
//! `tests/public_surface.rs` checks that `cargo tree` agrees), so an app cannot reach
//! `Store::record_receipt` or a fault plan. The mirrors keep the crate's module names:
//! `testkit::sync::transport::Request` is the crate's `sync::transport::Request`.

pub use crate::clock::{ManualClock, Sleep};
pub use crate::store::{Store, StoreOptions};

/// The device store: captures, queue rows, receipts, migrations, recovery.
pub mod store {
    pub use crate::store::*;
}

/// The sync engine: passes, transports, retry, pinning, run control, fault injection and the
/// deliberately broken variants.
pub mod sync {
    pub use crate::sync::*;
}

/// Every crypto primitive, including the device's sealing, identity and key wrapping.
pub mod crypto {
    pub use crate::crypto::*;
}

/// Captures, ids and the manifest.
pub mod model {
    pub use crate::model::*;
}

/// Process definitions and scopes.
pub mod process {
    pub use crate::process::*;
}

/// Folder fsyncs as tests see them: [`fsutil::fsync_log`] records which folders were synced.
pub mod fsutil {
    pub use crate::fsutil::fsync_log;
}

/// Clocks (virtual time for tests).
pub mod clock {
    pub use crate::clock::*;
}
