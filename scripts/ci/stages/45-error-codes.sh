#!/usr/bin/env bash
# CI stage: the Swift and Java error-code mappings match include/apoyo_sync.h, and the check
# itself catches a missing, extra or renumbered code (its --self-test). See
# scripts/check-error-codes.sh.
set -euo pipefail
echo "== stage 45: error-code mappings (scripts/check-error-codes.sh)"
bash scripts/check-error-codes.sh --self-test
bash scripts/check-error-codes.sh
