#!/usr/bin/env bash
# CI stage: fuzz smoke. Builds every cargo-fuzz target (fuzz/, its own workspace) with the
# nightly toolchain and runs each for FUZZ_SMOKE_SECONDS (default 30) seconds. The long runs
# (10 minutes per target) are `scripts/fuzz.sh 600`; see docs/fuzzing.md.
#
# libFuzzer needs nightly. The stage installs it with rustup (and cargo-fuzz with cargo
# install) when missing; if it cannot, it fails (CI stages never skip silently). The proptest
# versions of the same properties (tests/prop_*.rs) run in `cargo test` either way.
set -euo pipefail

SECS="${FUZZ_SMOKE_SECONDS:-30}"

if ! cargo +nightly --version >/dev/null 2>&1; then
  if ! command -v rustup >/dev/null 2>&1; then
    echo "80-fuzz-smoke: FAILED: no nightly toolchain and no rustup to install it" >&2
    exit 1
  fi
  echo "80-fuzz-smoke: installing the nightly toolchain"
  rustup toolchain install nightly --profile minimal
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "80-fuzz-smoke: installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi
echo "80-fuzz-smoke: $(cargo +nightly --version); running every target for ${SECS}s"
FUZZ_JOBS="${FUZZ_JOBS:-2}" scripts/fuzz.sh "$SECS"
