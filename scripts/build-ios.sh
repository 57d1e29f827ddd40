#!/usr/bin/env bash
# Builds the iOS XCFramework of the C ABI: `swift/CApoyoSync.xcframework`, which
# swift/Package.swift then uses as its binary target (module CApoyoSync).
#
#   device     aarch64-apple-ios                                   -> ios-arm64
#   simulator  aarch64-apple-ios-sim + x86_64-apple-ios, lipo'd    -> ios-arm64_x86_64-simulator
#
# Each slice is libapoyo_sync_ffi.a (release, no `testing` feature) with include/apoyo_sync.h
# and a module map. Needs macOS with Xcode (xcodebuild, lipo) and rustup; fails elsewhere.
#
# Deployment target: IPHONEOS_DEPLOYMENT_TARGET (default 13.0, the floor of the package's
# async API). Rust's aarch64-apple-ios target supports iOS 10.0 at the lowest; the seed
# (mi-apoyo-guia.txt) lists iOS 9.1 for the current app, which this library cannot reach.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

if [[ "$(uname -s)" != Darwin ]]; then
  echo "FAILED: scripts/build-ios.sh needs macOS with Xcode (xcodebuild, lipo, the iOS SDKs);" \
    "this is $(uname -s). The Swift package is tested on Linux by scripts/test-swift.sh." >&2
  exit 1
fi
for tool in xcodebuild lipo cargo rustup; do
  command -v "$tool" >/dev/null || { echo "FAILED: $tool not found (install Xcode / rustup)" >&2; exit 1; }
done
export IPHONEOS_DEPLOYMENT_TARGET=${IPHONEOS_DEPLOYMENT_TARGET:-13.0}
targets=(aarch64-apple-ios aarch64-apple-ios-sim x86_64-apple-ios)

echo "== rustup target add ${targets[*]}"
rustup target add "${targets[@]}"
for t in "${targets[@]}"; do
  echo "== cargo build -p apoyo-ffi --release --target $t (iOS $IPHONEOS_DEPLOYMENT_TARGET)"
  cargo build -p apoyo-ffi --release --locked --target "$t"
done
target=${CARGO_TARGET_DIR:-$root/target}
lib=libapoyo_sync_ffi.a

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
headers="$work/include"
mkdir -p "$headers" "$work/sim"
cp include/apoyo_sync.h "$headers/"
cat >"$headers/module.modulemap" <<'MAP'
module CApoyoSync {
    header "apoyo_sync.h"
    link "apoyo_sync_ffi"
    export *
}
MAP

echo "== lipo: one simulator library for arm64 + x86_64"
lipo -create "$target/aarch64-apple-ios-sim/release/$lib" "$target/x86_64-apple-ios/release/$lib" \
  -output "$work/sim/$lib"

out=swift/CApoyoSync.xcframework
rm -rf "$out"
echo "== xcodebuild -create-xcframework -> $out"
xcodebuild -create-xcframework \
  -library "$target/aarch64-apple-ios/release/$lib" -headers "$headers" \
  -library "$work/sim/$lib" -headers "$headers" \
  -output "$out"
echo "== built $out; add the swift/ package to the app (it links this XCFramework)"
