#!/usr/bin/env bash
# Stage rust-tests: every Rust test in the workspace (unit, integration, doc-less all-targets).
set -euo pipefail
. "$APOYO_ROOT/scripts/ci/lib.sh"
ci_setup rust
# --no-fail-fast: one failing test binary does not hide the results of the others.
ci_run cargo test --workspace --all-targets --locked --no-fail-fast
