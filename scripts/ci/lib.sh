# Helpers for CI stage files (scripts/ci/stages/NN-name.sh): logging, running a command so the
# log shows it, calling a setup script, and the one visible way for a stage to skip.
# Sourced by each stage; test-all.sh exports APOYO_ROOT and runs the stage from the repo root.

ci_log() { printf '[%s] %s\n' "${APOYO_CI_STAGE:-ci}" "$*"; }

# ci_fail MSG: the stage fails with a reason (a toolchain that cannot be set up lands here).
ci_fail() { printf '[%s] FAILED: %s\n' "${APOYO_CI_STAGE:-ci}" "$*" >&2; exit 1; }

# ci_run CMD...: prints the command, then runs it; a failure fails the stage (set -e).
ci_run() { printf '[%s] $ %s\n' "${APOYO_CI_STAGE:-ci}" "$*"; "$@"; }

# ci_setup NAME [ARGS...]: runs scripts/setup/NAME.sh; if it cannot set the toolchain up,
# the stage FAILS (never skips).
ci_setup() {
    local name="$1"; shift
    ci_log "setup: scripts/setup/$name.sh $*"
    bash "$APOYO_ROOT/scripts/setup/$name.sh" "$@" || ci_fail "setup $name failed: the toolchain for this stage could not be set up"
}

# ci_setup_eval NAME [ARGS...]: for setup scripts that print `export X=...` lines on stdout
# (java.sh, `postgres.sh start`): runs it, fails the stage if it fails, then applies the exports.
# (`eval "$(script)"` alone would not fail: eval of an empty string succeeds.)
ci_setup_eval() {
    local name="$1" out; shift
    ci_log "setup: scripts/setup/$name.sh $*"
    out="$(bash "$APOYO_ROOT/scripts/setup/$name.sh" "$@")" || ci_fail "setup $name failed: the toolchain for this stage could not be set up"
    eval "$out"
}

# ci_skip REASON: the only way to skip, for the cases an issue allows (e.g. netns when not
# root). It prints a visible "skipped because" line and exits 77, which test-all.sh reports as
# SKIP with the reason in its summary. APOYO_CI_NO_SKIP=1 turns every skip into a failure.
ci_skip() {
    if [ "${APOYO_CI_NO_SKIP:-0}" = 1 ]; then
        ci_fail "would skip because $* (APOYO_CI_NO_SKIP=1 forbids skipping)"
    fi
    printf '[%s] SKIPPED because %s\n' "${APOYO_CI_STAGE:-ci}" "$*"
    [ -n "${APOYO_CI_SKIP_FILE:-}" ] && printf '%s\n' "$*" >"$APOYO_CI_SKIP_FILE"
    exit 77
}
