#!/usr/bin/env bash
# CI stage: the JNI bridge (shared library + Java API mx.ine.apoyo.sync) tested from Java with
# JUnit 4 on the JVM against a real reference endpoint process. See scripts/test-java.sh.
set -euo pipefail
echo "== stage 50: JNI bridge from Java (scripts/test-java.sh)"
bash scripts/test-java.sh
