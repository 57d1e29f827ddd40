#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for SECONDS each (default 30), JOBS at a time
# (default 1), under `nice`. Crashes land in fuzz/artifacts/<target>/; the corpus grows in a
# scratch copy (fuzz/corpus/<target>/ holds only the small checked-in seeds) unless
# FUZZ_KEEP_CORPUS=1. Each target's last libFuzzer status line (executions, cov:, ft:) is
# printed at the end and kept in fuzz/logs/<target>.log.
#
#   scripts/fuzz.sh [SECONDS]            all targets
#   FUZZ_TARGETS="tus_headers" scripts/fuzz.sh 600
#   FUZZ_JOBS=2 scripts/fuzz.sh 600      two targets at a time (a 2-core machine)
#   FUZZ_SANITIZER=address scripts/fuzz.sh   (default: none, for speed; ASan ~2x slower)
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz --locked`).
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_EACH="${1:-30}"
JOBS="${FUZZ_JOBS:-1}"
SAN="${FUZZ_SANITIZER:-none}"
ALL="protocol_decode tus_headers open_sealed endpoint_sequences client_adversarial store_queue"
TARGETS="${FUZZ_TARGETS:-$ALL}"

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz.sh: the nightly toolchain is not installed (rustup toolchain install nightly)" >&2
  exit 2
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: cargo-fuzz is not installed (cargo install cargo-fuzz --locked)" >&2
  exit 2
fi

cd fuzz
echo "fuzz.sh: building ${TARGETS// /, } (sanitizer: $SAN, debug assertions on)"
# shellcheck disable=SC2086
for t in $TARGETS; do
  nice -n 15 cargo +nightly fuzz build -s "$SAN" -a "$t"
done

mkdir -p logs work
# Input sizes: the decoder takes whole messages; the stateful targets take operation lists
# (a few hundred bytes is a couple of dozen operations), at full length from the start
# (-len_control=0) since they run a few hundred inputs a second, not thousands.
limits_for() {
  case "$1" in
    protocol_decode) echo "-max_len=8192" ;;
    open_sealed) echo "-max_len=1024" ;;
    *) echo "-max_len=512 -len_control=0" ;;
  esac
}

run_one() {
  local t="$1"
  local work="work/$t"
  rm -rf "$work"
  mkdir -p "$work" "artifacts/$t"
  if [ -d "corpus/$t" ]; then cp -r "corpus/$t/." "$work/"; fi
  local dest="$work"
  if [ "${FUZZ_KEEP_CORPUS:-0}" = 1 ]; then dest="corpus/$t"; fi
  echo "fuzz.sh: $t for ${SECONDS_EACH}s"
  # -rss_limit_mb: a target that grows without bound fails ("memory bounded").
  # shellcheck disable=SC2046
  nice -n 15 cargo +nightly fuzz run -s "$SAN" -a "$t" "$dest" -- $(limits_for "$t") \
    -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 -timeout=60 -print_final_stats=1 \
    -artifact_prefix="artifacts/$t/" >"logs/$t.log" 2>&1 || {
      echo "fuzz.sh: $t FAILED; see fuzz/logs/$t.log and fuzz/artifacts/$t/" >&2
      return 1
    }
}

status=0
running=0
pids=()
names=()
for t in $TARGETS; do
  run_one "$t" &
  pids+=($!)
  names+=("$t")
  running=$((running + 1))
  if [ "$running" -ge "$JOBS" ]; then
    wait "${pids[0]}" || status=1
    pids=("${pids[@]:1}")
    running=$((running - 1))
  fi
done
for p in "${pids[@]}"; do wait "$p" || status=1; done

echo
echo "fuzz.sh: results (executions, edges covered):"
for t in $TARGETS; do
  line="$(grep -E '^#[0-9]+' "logs/$t.log" | tail -1 || true)"
  execs="$(grep -E 'stat::number_of_executed_units' "logs/$t.log" | awk '{print $2}' || true)"
  printf '  %-20s execs=%-10s %s\n' "$t" "${execs:-?}" "${line:-no status line}"
done
exit "$status"
