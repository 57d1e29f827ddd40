#!/usr/bin/env bash
# The replica benchmark (ADR 0019): supports counted per second by the SQLite endpoint and by
# 1, 2 and 4 `apoyo serve` replicas on one PostgreSQL, same run, same captures. Starts a
# throwaway PostgreSQL (scripts/setup/postgres.sh), builds `apoyo` in the chosen profile, runs
# endpoint/tests/replica_bench.rs, stops the cluster.
#
#   scripts/bench-replicas.sh [--release]      # APOYO_BENCH_DEVICES, APOYO_BENCH_CAPTURES size it
set -euo pipefail
cd "$(dirname "$0")/.."
profile=()
[ "${1:-}" = --release ] && profile=(--release)
eval "$(bash scripts/setup/postgres.sh start)"
trap 'bash scripts/setup/postgres.sh stop "$APOYO_PG_DIR" >/dev/null || true' EXIT
export APOYO_TEST_DATABASE_URL="$DATABASE_URL"
cargo build "${profile[@]}" -p apoyo-cli
cargo test "${profile[@]}" -p apoyo-endpoint --test replica_bench -- --include-ignored --nocapture
