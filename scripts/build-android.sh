#!/usr/bin/env bash
# Builds the JNI bridge (bridge/jni) for Android with cargo-ndk: libapoyo_jni.so (release) for
# arm64-v8a, armeabi-v7a and x86_64 into target/android/jniLibs/<abi>/, linked with 16 KB page
# alignment (-z max-page-size=16384), which Google Play requires of apps targeting Android 15+,
# and checked with readelf. Needs the Android NDK (ANDROID_NDK_HOME or ANDROID_NDK_ROOT) and
# cargo-ndk; fails with what to install when they are missing. See docs/embedding.md.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${APOYO_ANDROID_OUT:-target/android/jniLibs}
api=${APOYO_ANDROID_API:-24}
abis=(arm64-v8a armeabi-v7a x86_64)
declare -A triple=([arm64-v8a]=aarch64-linux-android [armeabi-v7a]=armv7-linux-androideabi
  [x86_64]=x86_64-linux-android)

ndk=${ANDROID_NDK_HOME:-${ANDROID_NDK_ROOT:-}}
if [[ -z "$ndk" || ! -d "$ndk/toolchains/llvm/prebuilt" ]]; then
  cat >&2 <<'MSG'
build-android.sh: the Android NDK was not found.
  Install it (Android Studio > SDK Manager > NDK, or `sdkmanager "ndk;27.2.12479018"`) and set
  ANDROID_NDK_HOME to its folder (the one holding toolchains/llvm/prebuilt). NDK r27+ is
  recommended (r28+ aligns to 16 KB by default; this script asks for it explicitly anyway).
MSG
  exit 1
fi
if ! cargo ndk --version >/dev/null 2>&1; then
  echo "build-android.sh: cargo-ndk is missing: run 'cargo install cargo-ndk --locked'" >&2
  exit 1
fi
for abi in "${abis[@]}"; do
  t=${triple[$abi]}
  if ! rustup target list --installed 2>/dev/null | grep -qx "$t"; then
    echo "== rustup target add $t"
    rustup target add "$t"
  fi
done

echo "== building libapoyo_jni.so for ${abis[*]} (API $api, 16 KB pages) into $out"
# The page-size flag goes through RUSTFLAGS (cargo-ndk keeps what is set there); it applies
# only to these Android targets' builds.
export RUSTFLAGS="${RUSTFLAGS:-} -C link-arg=-Wl,-z,max-page-size=16384"
args=()
for abi in "${abis[@]}"; do args+=(-t "$abi"); done
cargo ndk "${args[@]}" --platform "$api" -o "$out" build -p apoyo-jni --release

echo "== checking the 16 KB alignment of every LOAD segment"
readelf=$(find "$ndk/toolchains/llvm/prebuilt" -name llvm-readelf -type f | head -n1)
[[ -n "$readelf" ]] || readelf=$(command -v readelf || true)
[[ -n "$readelf" ]] || { echo "no readelf to check the alignment" >&2; exit 1; }
for abi in "${abis[@]}"; do
  so="$out/$abi/libapoyo_jni.so"
  [[ -f "$so" ]] || { echo "missing $so" >&2; exit 1; }
  bad=""
  for align in $("$readelf" -lW "$so" | awk '$1=="LOAD" {print $NF}'); do
    (( align >= 16384 )) || bad+=" $align"
  done
  if [[ -n "$bad" ]]; then
    echo "$so has LOAD segments aligned below 16 KB: $bad" >&2
    exit 1
  fi
  echo "$so: LOAD segments aligned to >= 16 KB"
done
echo "== done: copy $out/<abi>/libapoyo_jni.so into the app's src/main/jniLibs/<abi>/"
