//! Test-only: simulated power loss, in the spirit of SQLite's `test6.c` (ADR 0017).
//!
//! - [`disk`]: what survives a power loss of the files under one folder: writes and folder
//!   entries held as pending until a sync, numbered sync points, and at the chosen one each
//!   pending write kept, dropped, torn or replaced with garbage (seeded).
//! - [`vfs`]: a VFS shim over SQLite's unix VFS that reports the database files' writes and
//!   syncs to their [`Disk`]; registered as the default VFS of the test process.
//!
//! The part files reach the same [`Disk`] through the store's `part_fs` seam (feature
//! `testkit`), wired up by the suites in `tests/`. This crate is never published or linked
//! into anything but its own tests; its `vfs` module is the only place `unsafe` is allowed.
#![deny(unsafe_code)]
#![cfg(unix)]

pub mod disk;
#[allow(unsafe_code)]
pub mod vfs;

pub use disk::{Disk, Losses};
pub use vfs::{Tracked, track};
