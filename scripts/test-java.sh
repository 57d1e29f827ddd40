#!/usr/bin/env bash
# The JNI bridge test: builds the SHARED library (bridge/jni, feature "testing"), compiles the
# Java API (bridge/jni/java/src/main) and its JUnit 4 tests with the JDK (17+), starts a real
# reference endpoint process (`apoyo serve --dev` on a free loopback port), and runs the tests
# on the JVM against the library: capture -> sync -> verified receipt with the endpoint's INE
# root (ine-root.pub), nothing deleted with another key folder's root, every error code's
# exception, the panic path, close twice, use after close, key guards that throw. Also fails when the Java
# example in docs/embedding.md differs from ReadmeExample.java. Never skips: when the JDK or
# JUnit cannot be set up it fails.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
jni=bridge/jni/java

echo "== the README example matches ReadmeExample.java"
extract_java() { sed -n '/README:begin/,/README:end/p' "$1" | sed '1d;$d'; }
extract_doc() { # the first ```java block under an "## Android" or "### Android" heading
  awk '/^##+ /{on=($0 ~ /^##+ Android/)} on && /^```java$/{inb=1; next} inb && /^```$/{exit} inb{print}' "$1"
}
for doc in docs/embedding.md README.md; do
  if ! diff <(extract_java "$jni/src/test/java/mx/ine/apoyo/sync/ReadmeExample.java") \
            <(extract_doc "$doc") >/dev/null; then
    echo "$doc (Android) differs from ReadmeExample.java between README:begin/end:" >&2
    diff <(extract_java "$jni/src/test/java/mx/ine/apoyo/sync/ReadmeExample.java") \
         <(extract_doc "$doc") >&2 || true
    exit 1
  fi
  [[ -n "$(extract_doc "$doc")" ]] || { echo "no java block under an Android heading in $doc" >&2; exit 1; }
done

echo "== JDK and JUnit 4"
if [[ -x scripts/setup/java.sh ]] || [[ -f scripts/setup/java.sh ]]; then
  eval "$(bash scripts/setup/java.sh)"
else
  if ! command -v javac >/dev/null || [[ ! -f /usr/share/java/junit4.jar ]]; then
    [[ $(id -u) -eq 0 ]] || { echo "javac or junit4 missing and not root to install them" >&2; exit 1; }
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      openjdk-17-jdk-headless junit4 >/dev/null
  fi
  APOYO_JUNIT_CP=/usr/share/java/junit4.jar:/usr/share/java/hamcrest-core.jar
fi
command -v javac >/dev/null || { echo "javac not found after setup" >&2; exit 1; }
javac -version
[[ -n "${APOYO_JUNIT_CP:-}" ]] || { echo "no JUnit classpath" >&2; exit 1; }
command -v curl >/dev/null || true

echo "== building the shared library (apoyo-jni, feature testing) and the apoyo tool"
cargo build -p apoyo-jni --features testing
cargo build -p apoyo-cli
target=${CARGO_TARGET_DIR:-$root/target}
lib="$target/debug/libapoyo_jni.so"
[[ -f "$lib" ]] || { echo "no shared library at $lib" >&2; exit 1; }

work=$(mktemp -d)
source scripts/lib/endpoint.sh
trap 'endpoint_stop; rm -rf "$work"' EXIT

echo "== compiling the Java API and its tests"
mkdir -p "$work/classes"
javac -Xlint:all -Werror -d "$work/classes" -cp "$APOYO_JUNIT_CP" \
  $(find "$jni/src/main/java" "$jni/src/test/java" -name '*.java' | sort)

endpoint_start "$target/debug/apoyo" "$work"

echo "== running the JUnit tests on the JVM against $lib"
tests=$(cd "$jni/src/test/java" && find . -name '*Test.java' | sed 's|^\./||; s|\.java$||; s|/|.|g' | sort)
java -Xcheck:jni -Djava.library.path="$(dirname "$lib")" \
  -Dapoyo.endpoint="$endpoint_url" -Dapoyo.pubkey="$endpoint_pubkey" \
  -Dapoyo.images="$root/examples/images" \
  -Dapoyo.ineroot="$endpoint_ine_root" -Dapoyo.otherroot="$endpoint_other_root" \
  -Djava.io.tmpdir="$work" \
  -cp "$work/classes:$APOYO_JUNIT_CP" org.junit.runner.JUnitCore $tests
echo "== Java tests passed"
