#!/usr/bin/env bash
# The C ABI test: builds the STATIC library (bridge/ffi, feature "testing") and tests/c/test_ffi.c
# against include/apoyo_sync.h, starts a real reference endpoint process (`apoyo serve --dev`
# on a free loopback port), and runs the C program under valgrind: every function and error
# path, capture -> sync -> verified receipt with the endpoint's INE root (its key folder's
# ine-root.pub), nothing deleted with another root (a second key folder's). Fails on any C
# check, any valgrind error, and any definite or indirect leak (no suppressions). Installs gcc, valgrind and curl when missing (Debian).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

need=()
command -v cc >/dev/null || need+=(gcc libc6-dev)
command -v valgrind >/dev/null || need+=(valgrind)
command -v curl >/dev/null || need+=(curl)
if ((${#need[@]})); then
  echo "== installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

echo "== building the static library (apoyo-ffi, feature testing) and the apoyo tool"
cargo build -p apoyo-ffi --features testing
cargo build -p apoyo-cli
target=${CARGO_TARGET_DIR:-$root/target}
lib="$target/debug/libapoyo_sync_ffi.a"
[[ -f "$lib" ]] || { echo "no static library at $lib" >&2; exit 1; }

work=$(mktemp -d)
source scripts/lib/endpoint.sh
trap 'endpoint_stop; rm -rf "$work"' EXIT

echo "== compiling tests/c/test_ffi.c against the static library"
cc -std=c11 -Wall -Wextra -Werror -g -O1 -DAPOYO_TESTING -I include \
  tests/c/test_ffi.c "$lib" -lpthread -ldl -lm -o "$work/test_ffi"
if nm "$work/test_ffi" | grep -q " U apoyo_"; then
  echo "the test binary resolves apoyo_ symbols dynamically: not the static library" >&2
  exit 1
fi

endpoint_start "$target/debug/apoyo" "$work"

echo "== running under valgrind (leaks: definite and indirect are errors; no suppressions)"
mkdir -p "$work/stores"
status=0
valgrind --error-exitcode=99 --leak-check=full --show-leak-kinds=definite,indirect \
  --errors-for-leak-kinds=definite,indirect --track-origins=yes --log-file="$work/valgrind.log" \
  "$work/test_ffi" "$endpoint_url" "$endpoint_pubkey" "$endpoint_ine_root" "$endpoint_other_root" "$work/stores" examples/images || status=$?
grep -E "ERROR SUMMARY|definitely lost|indirectly lost|All heap blocks" "$work/valgrind.log" || true
if [[ $status -ne 0 ]]; then
  cat "$work/valgrind.log" >&2
  exit "$status"
fi
echo "== C ABI test passed"
