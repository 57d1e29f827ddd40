#!/usr/bin/env bash
# Stage cargo-deny: licences, bans and sources from deny.toml, and advisories against the
# checked-in RustSec snapshot in .ci/advisory-db, never fetched (its git source is not reachable
# from CI): `--offline`, which replaced `check --disable-fetch` in cargo-deny 0.16+. cargo-deny reads a database only from a git checkout, so the stage builds a throwaway
# one whose commit and HEAD carry the snapshot's date: deny.toml's maximum-db-staleness then
# measures the snapshot's real age. Refresh it with scripts/setup/refresh-advisory-db.sh.
set -euo pipefail
. "$APOYO_ROOT/scripts/ci/lib.sh"
ci_setup rust
ci_setup cargo-deny

snapshot="$APOYO_ROOT/.ci/advisory-db"
[ -f "$snapshot/SNAPSHOT" ] && [ -d "$snapshot/crates" ] || ci_fail "no advisory snapshot in $snapshot"
read -r _ commit date _ <"$snapshot/SNAPSHOT"
age_days=$(( ($(date +%s) - $(date -d "$date" +%s)) / 86400 ))
ci_log "advisories: checked-in RustSec snapshot $commit of $date ($age_days days old),"
ci_log "  not fetched (--offline, formerly --disable-fetch): the advisory database's git source is not reachable from CI"

# The directory name cargo-deny derives from the default db-url (name + xxhash64 of the URL).
export APOYO_ADVISORY_DB_ROOT; APOYO_ADVISORY_DB_ROOT="$(mktemp -d)"
trap 'rm -rf "$APOYO_ADVISORY_DB_ROOT"' EXIT
db="$APOYO_ADVISORY_DB_ROOT/advisory-db-3157b0e258782691"
mkdir -p "$db" && cp -r "$snapshot/crates" "$db/"
(
    cd "$db"
    export GIT_AUTHOR_DATE="$date" GIT_COMMITTER_DATE="$date"
    git init -q . && git add crates
    git -c user.name=snapshot -c user.email=snapshot@invalid commit -q -m "rustsec/advisory-db $commit"
    touch -d "$date" .git/HEAD
) || ci_fail "could not prepare the advisory snapshot checkout"

ci_run cargo fetch --locked
ci_run cargo deny --version
ci_run cargo deny --frozen check --show-stats advisories bans licenses sources
