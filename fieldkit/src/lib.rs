//! apoyo-fieldkit: field-testing tools for apoyo-sync.
//!
//! - [`profile`]: named bad links (EDGE, GPRS, Slow 3G, ATC's 2G rural, …) with their sources;
//! - [`schedule`]: the seeded fault schedule (same seed + profile ⇒ same faults);
//! - [`proxy`]: the fault-injecting TCP proxy (`apoyo proxy`), its fault log and byte counters;
//! - [`fieldtest`]: a whole field scenario (endpoint, proxy, devices) and its report, in JSON
//!   and as one self-contained HTML page.
#![deny(unsafe_code)]

pub mod fieldtest;
pub mod profile;
pub mod proxy;
pub mod schedule;

pub use profile::Profile;
pub use proxy::{FaultLog, ProxyConfig, RunningProxy};
