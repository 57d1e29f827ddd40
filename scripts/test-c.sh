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
server=""
cleanup() {
  if [[ -n "$server" ]]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

echo "== compiling tests/c/test_ffi.c against the static library"
cc -std=c11 -Wall -Wextra -Werror -g -O1 -DAPOYO_TESTING -I include \
  tests/c/test_ffi.c "$lib" -lpthread -ldl -lm -o "$work/test_ffi"
if nm "$work/test_ffi" | grep -q " U apoyo_"; then
  echo "the test binary resolves apoyo_ symbols dynamically: not the static library" >&2
  exit 1
fi

echo "== starting the reference endpoint (apoyo serve --dev)"
apoyo="$target/debug/apoyo"
"$apoyo" endpoint-keygen --out "$work/keys" >/dev/null
"$apoyo" serve --db "$work/ine.db" --listen 127.0.0.1:0 --key "$work/keys/endpoint.key" \
  --processes examples/processes.json --dev >"$work/serve.out" 2>"$work/serve.err" &
server=$!
url=""
for _ in $(seq 1 100); do
  url=$(sed -n 's/^listening on \(http:[^ ]*\).*/\1/p' "$work/serve.out" | head -n1)
  [[ -n "$url" ]] && break
  kill -0 "$server" 2>/dev/null || { cat "$work/serve.err" >&2; exit 1; }
  sleep 0.1
done
[[ -n "$url" ]] || { echo "the endpoint did not start" >&2; exit 1; }
echo "endpoint at $url"
# endpoint.pub is `apoyo-seal-pub-v1 <hex>`: the C test takes the 32 bytes in hex; the INE root
# goes in as the line INE provisions (`apoyo-ine-root-v1 <hex>`), as an app passes it.
pubkey=$(awk '{print $NF}' "$work/keys/endpoint.pub")
ine_root=$(head -n1 "$work/keys/ine-root.pub")
"$apoyo" endpoint-keygen --out "$work/other-keys" >/dev/null
other_root=$(head -n1 "$work/other-keys/ine-root.pub")

echo "== running under valgrind (leaks: definite and indirect are errors; no suppressions)"
mkdir -p "$work/stores"
status=0
valgrind --error-exitcode=99 --leak-check=full --show-leak-kinds=definite,indirect \
  --errors-for-leak-kinds=definite,indirect --track-origins=yes --log-file="$work/valgrind.log" \
  "$work/test_ffi" "$url" "$pubkey" "$ine_root" "$other_root" "$work/stores" examples/images || status=$?
grep -E "ERROR SUMMARY|definitely lost|indirectly lost|All heap blocks" "$work/valgrind.log" || true
if [[ $status -ne 0 ]]; then
  cat "$work/valgrind.log" >&2
  exit "$status"
fi
echo "== C ABI test passed"
