#!/usr/bin/env bash
# The fieldtest HTML report renders in headless Chromium (Debian's `chromium`): a short field
# run writes the report, Chromium loads it from disk with networking disabled and a fresh
# profile, and the rendered page must show the verdict, the summary and the timeline with its
# per-attempt marks (upload and commit attempts, a failed one with its fault, a retry, a
# receipt); a screenshot is written to target/fieldtest-report.png (docs/fieldtest-report.png
# is one).
set -euo pipefail
echo "== 91-fieldtest-report: the HTML report renders in headless Chromium"
if ! command -v chromium >/dev/null; then
  if [[ -x scripts/setup/chromium.sh ]]; then
    scripts/setup/chromium.sh
  else
    echo "installing Debian's chromium"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  fi
fi
command -v chromium >/dev/null || { echo "FAILED: chromium could not be installed" >&2; exit 1; }
cargo build -q -p apoyo-cli
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
target/debug/apoyo fieldtest --devices 2 --captures 6 --capture-bytes 4096 --profile lossy \
  --up-kbps 2000 --down-kbps 2000 --delay-ms 20 --cut-pct 60 --cut-max-bytes 8000 \
  --reset-up-after 40000 --http --status-pct 25 --retry-after 1 --seed 91 --deadline 120s \
  --report "$work/report.html"
flags=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run
  --disable-background-networking --disable-component-update --disable-sync
  --user-data-dir="$work/profile")
timeout 120 chromium "${flags[@]}" --dump-dom "file://$work/report.html" >"$work/dom.html" 2>"$work/chromium.log" || {
  cat "$work/chromium.log" >&2; echo "FAILED: chromium could not load the report" >&2; exit 1; }
for text in "Field test report" "OK: every support counted exactly once" "<svg" "Bytes sent over time" "Faults injected" \
  '<rect class="attempt ok" data-step="patch"' '<rect class="attempt ok" data-step="commit"' \
  '<rect class="attempt fault"' '<rect class="attempt refused"' '<text class="decision retry"' '<text class="decision receipt"' \
  '<text class="decision quarantined"' '<path class="capture"' '<circle class="endpoint"'; do
  grep -qF "$text" "$work/dom.html" || { echo "FAILED: the rendered report lacks: $text" >&2; exit 1; }
done
# One receipt mark per support the endpoint counted or recorded as duplicate (2 devices x 3).
receipts=$(grep -oF 'class="decision receipt"' "$work/dom.html" | wc -l)
[[ "$receipts" -eq 6 ]] || { echo "FAILED: $receipts receipt marks rendered, expected 6" >&2; exit 1; }
mkdir -p target
timeout 120 chromium "${flags[@]}" --window-size=1120,1500 --screenshot=target/fieldtest-report.png \
  "file://$work/report.html" >>"$work/chromium.log" 2>&1
size=$(stat -c %s target/fieldtest-report.png)
if (( size < 20000 )); then
  echo "FAILED: the screenshot is only $size bytes (blank page?)" >&2
  exit 1
fi
echo "ok: report rendered (DOM checked), screenshot target/fieldtest-report.png ($size bytes)"
