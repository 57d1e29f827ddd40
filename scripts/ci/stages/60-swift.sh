#!/usr/bin/env bash
# CI stage: the Swift package (swift/, ApoyoSync) tested with XCTest on Linux against the
# static library and a real `apoyo serve --dev` process. Sets up the Debian 13 Swift chroot
# (scripts/setup/swift-chroot.sh, cached; ≈6 min from nothing) when no swift is on PATH, and
# fails when it cannot. See scripts/test-swift.sh.
set -euo pipefail
echo "== stage 60: Swift package (scripts/test-swift.sh)"
bash scripts/test-swift.sh
