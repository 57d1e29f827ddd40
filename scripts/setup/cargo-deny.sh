#!/usr/bin/env bash
# Installs cargo-deny with `cargo install --locked` into ~/.cargo/bin (cached: a second run only
# checks the version). APOYO_CARGO_DENY_VERSION pins a version (default: the one below).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/lib.sh"

want="${APOYO_CARGO_DENY_VERSION:-0.20.2}"
have="$(cargo deny --version 2>/dev/null | awk '{print $2}')" || true
if [ "$have" = "$want" ]; then
    setup_log "cargo-deny $have already installed (cached in ${CARGO_HOME:-$HOME/.cargo}/bin)"
    exit 0
fi
# cargo-deny's release profile is fat LTO with one codegen unit: minutes of single-core linking
# for a tool whose speed does not matter here. Build it with thin local LTO and 16 units instead.
setup_log "cargo install cargo-deny --version $want --locked (have: ${have:-none}; a few minutes)"
CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
    cargo install cargo-deny --version "$want" --locked --quiet || setup_die "cargo install cargo-deny $want"
have="$(cargo deny --version 2>/dev/null | awk '{print $2}')" || true
[ "$have" = "$want" ] || setup_die "cargo deny --version says '${have:-nothing}', wanted $want"
setup_log "cargo-deny $have installed"
