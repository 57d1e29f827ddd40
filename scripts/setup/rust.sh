#!/usr/bin/env bash
# Checks the Rust toolchain (cargo, rustc) and installs the rustfmt and clippy components
# through rustup when they are missing; fails loudly if any of them cannot be had.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/lib.sh"

command -v cargo >/dev/null || setup_die "cargo not found on PATH (install Rust with rustup)"
setup_log "$(cargo --version), $(rustc --version)"
for comp in rustfmt clippy; do
    tool=$([ "$comp" = rustfmt ] && echo fmt || echo clippy)
    if ! cargo "$tool" --version >/dev/null 2>&1; then
        command -v rustup >/dev/null || setup_die "cargo $tool missing and no rustup to install $comp"
        setup_log "rustup component add $comp"
        rustup component add "$comp" || setup_die "rustup component add $comp"
    fi
    cargo "$tool" --version >/dev/null 2>&1 || setup_die "cargo $tool does not run after installing $comp"
done
setup_log "$(cargo fmt --version), $(cargo clippy --version)"
