#!/usr/bin/env bash
# The Swift package test: builds the STATIC library (bridge/ffi, feature "testing") and the
# apoyo tool on the host, starts a real reference endpoint process (`apoyo serve --dev` on a
# free loopback port), and runs the XCTest suite of swift/ (ApoyoSync) linked against
# libapoyo_sync_ffi.a: capture -> sync -> verified receipt with the endpoint's INE root,
# nothing deleted with another root, every error code's mapping, the panic path,
# close twice / use after close, a key guard that throws. Also checks that the Swift example in
# docs/embedding.md is the one the tests compile (scripts/check-swift-example.sh).
#
# Where `swift` is on PATH (macOS, a Swift toolchain) it runs there; otherwise it sets up the
# Debian 13 chroot with Swift 6.0.3 (scripts/setup/swift-chroot.sh, cached) and runs inside it
# (the host-built library links there: trixie's glibc is newer than bookworm's). It FAILS when
# the toolchain cannot be set up; it never skips.
#
# Env: APOYO_SWIFT_CHROOT (chroot folder), APOYO_SWIFT_FILTER (an XCTest filter).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
t0=$(date +%s)

echo "== checking the Swift example in docs/embedding.md"
bash scripts/check-swift-example.sh

need=()
command -v curl >/dev/null || need+=(curl)
if ((${#need[@]})); then
  echo "== installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

if command -v swift >/dev/null; then
  runner=()
  echo "== using the swift on PATH: $(swift --version 2>&1 | head -n1)"
else
  echo "== no swift on PATH: setting up the Swift chroot (scripts/setup/swift-chroot.sh, cached)"
  bash scripts/setup/swift-chroot.sh || { echo "FAILED: the Swift toolchain could not be set up (see above)" >&2; exit 1; }
  runner=(bash "$root/scripts/setup/in-swift-chroot.sh" "$root")
fi

echo "== building the static library (apoyo-ffi, feature testing) and the apoyo tool"
cargo build -p apoyo-ffi --features testing
cargo build -p apoyo-cli
target=${CARGO_TARGET_DIR:-$root/target}
libdir="$target/debug"
[[ -f "$libdir/libapoyo_sync_ffi.a" ]] || { echo "no static library in $libdir" >&2; exit 1; }
case "$libdir" in
  "$root"/*) ;;
  *) [[ ${#runner[@]} -eq 0 ]] || { echo "CARGO_TARGET_DIR must be inside $root for the chroot run" >&2; exit 1; } ;;
esac

work=$(mktemp -d)
source scripts/lib/endpoint.sh
trap 'endpoint_stop; rm -rf "$work"' EXIT

endpoint_start "$target/debug/apoyo" "$work"

export APOYO_TEST_ENDPOINT="$endpoint_url"
export APOYO_TEST_ENDPOINT_KEY="$endpoint_pubkey"
export APOYO_TEST_INE_ROOT="$endpoint_ine_root"
export APOYO_TEST_OTHER_INE_ROOT="$endpoint_other_root"
export APOYO_TEST_IMAGES="$root/examples/images"
filter=()
[[ -n "${APOYO_SWIFT_FILTER:-}" ]] && filter=(--filter "$APOYO_SWIFT_FILTER")

echo "== swift test (XCTest) against $libdir/libapoyo_sync_ffi.a"
t1=$(date +%s)
set +e
"${runner[@]}" sh -c 'cd swift && exec "$@"' swift-test \
  swift test -Xcc -DAPOYO_TESTING -Xlinker -L"$libdir" "${filter[@]}" 2>&1 | tee "$work/swift-test.log"
rc=${PIPESTATUS[0]}
set -e
[[ $rc -eq 0 ]] || { echo "FAILED: swift test exited $rc" >&2; exit "$rc"; }
grep -q "Executed [1-9][0-9]* tests, with 0 failures" "$work/swift-test.log" \
  || { echo "FAILED: no XCTest summary with 0 failures in the output" >&2; exit 1; }
echo "== Swift test passed (swift test $(( $(date +%s) - t1 ))s, total $(( $(date +%s) - t0 ))s)"
