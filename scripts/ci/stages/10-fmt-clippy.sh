#!/usr/bin/env bash
# Stage fmt-clippy: `cargo fmt --check` and `cargo clippy -D warnings` over the whole workspace.
set -euo pipefail
. "$APOYO_ROOT/scripts/ci/lib.sh"
ci_setup rust
ci_run cargo fmt --all -- --check
ci_run cargo clippy --workspace --all-targets --locked -- -D warnings
