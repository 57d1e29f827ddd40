#!/usr/bin/env bash
# Stage fmt-clippy: `cargo fmt --check` and `cargo clippy -D warnings` over the whole workspace,
# then over the bridges alone: their build compiles the core without the `testkit` feature
# (ADR 0016), a configuration the workspace-wide run (features unified) never sees.
set -euo pipefail
. "$APOYO_ROOT/scripts/ci/lib.sh"
ci_setup rust
ci_run cargo fmt --all -- --check
ci_run cargo clippy --workspace --all-targets --locked -- -D warnings
ci_run cargo clippy -p apoyo-ffi -p apoyo-jni --locked -- -D warnings
