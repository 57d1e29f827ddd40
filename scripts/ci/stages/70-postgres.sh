#!/usr/bin/env bash
# Stage postgres: the endpoint on PostgreSQL (ADR 0019). Starts a throwaway cluster
# (scripts/setup/postgres.sh: Debian's postgresql, installed when missing; loopback port and a
# socket in a temp dir; random password), then runs the endpoint's whole test suite against it
# (APOYO_TEST_DATABASE_URL: each test endpoint gets a fresh schema), including the replica test
# (endpoint/tests/replicas.rs, ignored without PostgreSQL): several `apoyo serve` processes on
# one database, one of them SIGKILLed mid-run. If PostgreSQL cannot be set up the stage FAILS.
set -euo pipefail
. "$APOYO_ROOT/scripts/ci/lib.sh"
ci_setup rust
ci_setup_eval postgres start
[ -n "${DATABASE_URL:-}" ] && [ -n "${APOYO_PG_DIR:-}" ] || ci_fail "postgres.sh start gave no DATABASE_URL"
trap 'bash "$APOYO_ROOT/scripts/setup/postgres.sh" stop "$APOYO_PG_DIR" || true' EXIT
export APOYO_TEST_DATABASE_URL="$DATABASE_URL"
# The replica test starts the `apoyo` binary.
ci_run cargo build -p apoyo-cli --locked
# The benchmark (tests/replica_bench.rs, over a minute) is not a check: scripts/bench-replicas.sh.
ci_run cargo test -p apoyo-endpoint --all-targets --locked --no-fail-fast -- --include-ignored \
    --skip supports_per_second_sqlite_vs_replicas
