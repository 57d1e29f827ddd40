//! Power loss at every sync point (ADR 0017, docs/reliability.md): the store's captures, a
//! sync's purge and a migration on the device, and the endpoint's commit, each crashed at
//! every sync point it passes (and once after it returned) over `APOYO_POWERLOSS_SEEDS`
//! seeds (default 20), then reopened and checked. A failing run prints the command that
//! replays it.
#![cfg(unix)]

mod device;
mod layer;
mod migration;
mod network;
mod scenarios;
mod support;
