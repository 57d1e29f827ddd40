//! What the app hands the engine when it opens it: the values INE provisions into the app
//! ([`Provisioning`]) and the engine's own settings ([`EngineOptions`]).

use std::sync::Arc;
use std::time::Duration;

use crate::clock::{SharedClock, SystemClock};
use crate::crypto::{EndpointPublicKey, IneRoot};
use crate::limits::DEFAULT_DISK_RESERVE_BYTES;
use crate::model::Collector;
#[cfg(feature = "testkit")]
use crate::sync::Transport;
use crate::sync::{BackoffPolicy, TlsConfig};

/// The trust material INE ships inside the app (docs/protocol.md §10). A struct so that later
/// protocol versions can add fields (e.g. a trust anchor) without changing every call.
#[derive(Debug, Clone)]
pub struct Provisioning {
    /// INE's X25519 key: every capture's data key is sealed to it. Kept in the store at init;
    /// a store keeps the key it was created with.
    pub endpoint_public_key: EndpointPublicKey,
    /// The endpoint's CA (PEM) and/or pinned public keys, for `https` endpoints.
    pub tls: TlsConfig,
    /// Protocol v1.1: the INE root (`apoyo-ine-root-v1 <hex>`, docs/protocol.md 5.7) that
    /// certifies the endpoint's receipt and seal keys. A receipt is grounds for deleting a
    /// capture only if it chains to this root. `None` (a build that provisions none yet): no
    /// receipt is ever trusted, so nothing is ever deleted and supports stay queued.
    pub ine_root: Option<IneRoot>,
}

impl Provisioning {
    pub fn new(endpoint_public_key: EndpointPublicKey, ine_root: IneRoot) -> Self {
        Provisioning {
            endpoint_public_key,
            tls: TlsConfig::default(),
            ine_root: Some(ine_root),
        }
    }
}

/// The engine's settings; `Default` is what an app wants.
#[derive(Clone)]
pub struct EngineOptions {
    /// Free bytes that must remain after a capture is written.
    pub disk_reserve_bytes: u64,
    /// Who captures on this device (init only): `None` is the citizen on their own phone
    /// ("Mi Apoyo"); an auxiliar passes their registration id.
    pub collector: Option<Collector>,
    /// The sync budget when the app passes none.
    pub default_budget: Duration,
    pub backoff: BackoffPolicy,
    /// Test seam (feature `testkit`): seed of the retry jitter (`None`: random). Tests replay
    /// runs with a fixed seed.
    #[cfg(feature = "testkit")]
    pub seed: Option<u64>,
    /// Test seam (feature `testkit`): the clock. An app always runs on the system clock: the
    /// clock decides whether a capture is admitted (process window, card validity) and stamps
    /// it, so it is not the app's to move.
    #[cfg(feature = "testkit")]
    pub clock: SharedClock,
    /// Test seam (feature `testkit`): talk to the endpoint through this transport instead of
    /// HTTP (the network policy still applies on top of it).
    #[cfg(feature = "testkit")]
    pub transport: Option<Arc<dyn Transport>>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            disk_reserve_bytes: DEFAULT_DISK_RESERVE_BYTES,
            collector: None,
            default_budget: Duration::from_secs(9 * 60),
            backoff: BackoffPolicy::default(),
            #[cfg(feature = "testkit")]
            seed: None,
            #[cfg(feature = "testkit")]
            clock: Arc::new(SystemClock),
            #[cfg(feature = "testkit")]
            transport: None,
        }
    }
}

impl EngineOptions {
    /// The clock in use: the system's, or (feature `testkit`) the one a test set.
    pub(crate) fn clock(&self) -> SharedClock {
        #[cfg(feature = "testkit")]
        {
            self.clock.clone()
        }
        #[cfg(not(feature = "testkit"))]
        {
            Arc::new(SystemClock)
        }
    }

    /// The retry jitter's seed: random, or (feature `testkit`) the one a test set.
    pub(crate) fn seed(&self) -> Option<u64> {
        #[cfg(feature = "testkit")]
        {
            self.seed
        }
        #[cfg(not(feature = "testkit"))]
        {
            None
        }
    }
}

impl std::fmt::Debug for EngineOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("EngineOptions");
        d.field("disk_reserve_bytes", &self.disk_reserve_bytes)
            .field("default_budget", &self.default_budget)
            .field("seed", &self.seed());
        #[cfg(feature = "testkit")]
        d.field("transport", &self.transport.as_ref().map(|_| "custom"));
        d.finish_non_exhaustive()
    }
}
