#!/usr/bin/env bash
# Checks the JDK (javac, java; 17 or newer) and installs Debian's junit4 (for the JNI tests),
# failing loudly when either is missing. Prints the JUnit classpath as `export APOYO_JUNIT_CP=...`
# on stdout for `eval`.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/lib.sh"

if ! command -v javac >/dev/null || ! command -v java >/dev/null; then
    setup_apt_install openjdk-17-jdk-headless
fi
command -v javac >/dev/null || setup_die "javac not found (install a JDK 17+)"
command -v java >/dev/null || setup_die "java not found (install a JDK 17+)"
major="$(javac -version 2>&1 | awk '{print $2}' | cut -d. -f1)"
[ "${major:-0}" -ge 17 ] 2>/dev/null || setup_die "javac is version '$major', need 17 or newer"
setup_log "$(javac -version 2>&1), $(java -version 2>&1 | head -1)"

setup_apt_install junit4
cp=""
for jar in /usr/share/java/junit4.jar /usr/share/java/hamcrest-core.jar /usr/share/java/hamcrest.jar; do
    [ -f "$jar" ] && cp="${cp:+$cp:}$jar"
done
case "$cp" in *junit4.jar*) ;; *) setup_die "junit4 installed but /usr/share/java/junit4.jar is missing" ;; esac
java -cp "$cp" org.junit.runner.JUnitCore >/dev/null 2>&1 \
    || setup_die "java cannot run org.junit.runner.JUnitCore from $cp"
setup_log "junit4 ready: $cp"
printf 'export APOYO_JUNIT_CP=%q\n' "$cp"
