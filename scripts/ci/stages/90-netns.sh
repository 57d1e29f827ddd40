#!/usr/bin/env bash
# Kernel-level bad links (short version): EDGE, GPRS, ATC "Edge - Lossy", ATC "2G - Developing
# Rural" and 30 % random drops, each in its own network namespace (htb rates, nftables drops),
# endpoint and `apoyo fieldtest --endpoint` inside. Runs when root and namespaces work; not root:
# prints why it skipped; root but namespaces refused: FAILS (see scripts/netns-loss.sh).
# The full version: scripts/netns-loss.sh (no --short), or APOYO_NETNS_FULL=1 here.
set -euo pipefail
echo "== 90-netns: kernel-level bad links (unshare -n, tc htb, nftables numgen drops)"
if [[ -n "${APOYO_NETNS_FULL:-}" ]]; then
  exec scripts/netns-loss.sh
fi
exec scripts/netns-loss.sh --short
