//! apoyo-jni: the JNI bridge of apoyo-sync for the Android app — a shared library
//! (`libapoyo_jni.so`, loaded by `System.loadLibrary("apoyo_jni")`) implementing the natives of
//! the Java API in `java/src/main/java/mx/ine/apoyo/sync/` (class `Native`). With apoyo-ffi it
//! is the only crate allowed `unsafe` code (ADR 0014); it needs none of its own beyond the
//! `no_mangle` exports.
//!
//! Conventions:
//! - every native goes through one wrapper ([`boundary::run`]) that catches panics and turns
//!   every failure into a typed Java exception (`SyncException.create(code, message)`), with
//!   the codes of `include/apoyo_sync.h` and messages that never hold personal data;
//! - engines live in apoyo-ffi's registry: Java holds the handle as a `long`; a closed handle
//!   throws `EngineClosedException`, closing twice is harmless;
//! - the app's `KeyGuard` and `SyncListener` are Java objects called back through the JVM
//!   ([`keyguard`], [`listener`]); an exception they throw never crosses into Rust as a crash.
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod boundary;
pub mod convert;
pub mod engine;
pub mod keyguard;
pub mod listener;
pub mod ops;
#[cfg(feature = "testing")]
pub mod testing;
