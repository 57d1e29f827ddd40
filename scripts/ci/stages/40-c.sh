#!/usr/bin/env bash
# CI stage: the C ABI (static library + include/apoyo_sync.h) tested from C under valgrind
# against a real reference endpoint process. See scripts/test-c.sh.
set -euo pipefail
echo "== stage 40: C ABI (scripts/test-c.sh)"
bash scripts/test-c.sh
