#!/usr/bin/env bash
# CI stage: fuzz smoke. Builds every cargo-fuzz target (fuzz/, its own workspace) with the
# nightly toolchain and runs each for FUZZ_SMOKE_SECONDS (default 30) seconds. The long runs
# (10 minutes per target) are `scripts/fuzz.sh 600`; see docs/fuzzing.md.
#
# libFuzzer needs nightly. The stage installs it with rustup when rustup is there (set
# FUZZ_INSTALL_NIGHTLY=0 not to). If there is still no nightly, it says so plainly ("NOT RUN")
# and exits 0, as issue 15 asks: the proptest versions of the same properties
# (tests/prop_*.rs) still run in `cargo test`. FUZZ_REQUIRE_NIGHTLY=1 makes that a failure.
set -euo pipefail

SECS="${FUZZ_SMOKE_SECONDS:-30}"

if ! cargo +nightly --version >/dev/null 2>&1 && [ "${FUZZ_INSTALL_NIGHTLY:-1}" = 1 ] \
  && command -v rustup >/dev/null 2>&1; then
  echo "80-fuzz-smoke: installing the nightly toolchain"
  rustup toolchain install nightly --profile minimal || echo "80-fuzz-smoke: nightly install failed"
fi
if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "80-fuzz-smoke: NOT RUN: no nightly toolchain (cargo +nightly). Fuzz targets were not built or run."
  echo "80-fuzz-smoke: install it (rustup toolchain install nightly) to run this stage."
  if [ "${FUZZ_REQUIRE_NIGHTLY:-0}" = 1 ]; then exit 1; fi
  exit 0
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "80-fuzz-smoke: installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi
echo "80-fuzz-smoke: $(cargo +nightly --version); running every target for ${SECS}s"
FUZZ_JOBS="${FUZZ_JOBS:-2}" scripts/fuzz.sh "$SECS"
