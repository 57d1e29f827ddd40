#!/usr/bin/env bash
# Installs Debian's chromium (used headless, e.g. to render and check an HTML report) and checks
# it runs: `chromium --headless --dump-dom` of a tiny page must print it back.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/lib.sh"

setup_apt_install chromium
command -v chromium >/dev/null || setup_die "chromium not on PATH after installing it"
page="$(mktemp --suffix=.html)"
trap 'rm -f "$page"' EXIT
printf '<html><body><p id="x">apoyo-chromium-ok</p></body></html>\n' >"$page"
out="$(timeout 60 chromium --headless --no-sandbox --disable-gpu --dump-dom "file://$page" 2>/dev/null)" \
    || setup_die "chromium --headless --dump-dom failed"
case "$out" in *apoyo-chromium-ok*) ;; *) setup_die "chromium --headless did not render the test page" ;; esac
setup_log "$(chromium --version 2>/dev/null | head -1) runs headless"
