#!/usr/bin/env bash
# Refreshes the checked-in RustSec advisory snapshot in .ci/advisory-db from a clone of
# https://github.com/rustsec/advisory-db (CI cannot reach it, so the snapshot is committed).
#
#   scripts/setup/refresh-advisory-db.sh [SOURCE]
#
# SOURCE is a local git clone (or bare repo) of rustsec/advisory-db, or a URL to clone; default
# the upstream URL. Only `crates/` (the advisories cargo-deny reads, ≈1.3 MB) and the CC0 licence
# are copied; SNAPSHOT records the upstream commit and its date. Then run
# `scripts/test-all.sh cargo-deny`, and commit .ci/advisory-db (and any deny.toml change).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/lib.sh"
root="$(cd "$here/../.." && pwd)"
src="${1:-https://github.com/rustsec/advisory-db}"
dest="$root/.ci/advisory-db"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
if [ -d "$src" ]; then
    setup_log "reading the advisory database from $src"
    git_dir="$src"
else
    setup_log "git clone --depth 1 $src"
    git clone -q --depth 1 "$src" "$work/clone" || setup_die "cannot clone $src (pass a local clone instead)"
    git_dir="$work/clone"
fi
commit="$(git -C "$git_dir" rev-parse HEAD)" || setup_die "$git_dir is not a git repository"
date="$(git -C "$git_dir" show -s --format=%cI HEAD)"
mkdir -p "$work/out"
git -C "$git_dir" archive HEAD crates LICENSE.txt | tar -x -C "$work/out" \
    || setup_die "git archive of crates/ from $git_dir"
count="$(find "$work/out/crates" -name '*.md' | wc -l)"
[ "$count" -gt 100 ] || setup_die "only $count advisories in $git_dir/crates: not the RustSec database?"

rm -rf "$dest/crates"
mkdir -p "$dest"
cp -r "$work/out/crates" "$work/out/LICENSE.txt" "$dest/"
cat >"$dest/SNAPSHOT" <<SNAP
rustsec/advisory-db $commit $date
# Snapshot of https://github.com/rustsec/advisory-db (crates/ only, CC0-1.0: LICENSE.txt).
# $count advisories. Refreshed by scripts/setup/refresh-advisory-db.sh; read by the cargo-deny stage.
SNAP
setup_log "snapshot: $count advisories at $commit ($date) in $dest"
