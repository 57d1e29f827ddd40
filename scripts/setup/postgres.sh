#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for tests: installs Debian's `postgresql` if missing, then
#
#   eval "$(scripts/setup/postgres.sh start [DIR])"   # initdb + start; prints export lines
#   scripts/setup/postgres.sh stop "$APOYO_PG_DIR"     # stop it and delete DIR
#
# start creates DIR (default: a new temp dir), runs initdb and pg_ctl as the `postgres` user when
# root (else as the caller), listens on 127.0.0.1 on a free port and on a socket in DIR, with
# scram-sha-256 and a random password, creates database `apoyo`, and checks `select 1`. It prints
# `export DATABASE_URL=postgres://apoyo:<pw>@127.0.0.1:<port>/apoyo` and `export APOYO_PG_DIR=DIR`
# on stdout and writes the same lines to DIR/env (to source later). fsync is off: a throwaway
# cluster for tests whose crashes are process kills, not power cuts.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/lib.sh"

pg_bin() {
    local d
    d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
    [ -n "$d" ] && [ -x "$d/initdb" ] || return 1
    printf '%s' "$d"
}
as_owner() { # runs a command as the cluster's owner
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start() {
    pg_bin >/dev/null || setup_apt_install postgresql
    local bin dir port pw
    bin="$(pg_bin)" || setup_die "no initdb under /usr/lib/postgresql/*/bin after installing postgresql"
    dir="${1:-$(mktemp -d /tmp/apoyo-pg.XXXXXX)}"
    mkdir -p "$dir"
    [ "$(id -u)" -eq 0 ] && chown postgres: "$dir"
    chmod 700 "$dir"
    pw="$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')"
    port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')" \
        || setup_die "cannot pick a free loopback port"
    printf '%s\n' "$pw" >"$dir/pwfile" && chmod 600 "$dir/pwfile"
    [ "$(id -u)" -eq 0 ] && chown postgres: "$dir/pwfile"
    setup_log "initdb $dir/data ($("$bin/postgres" --version))"
    as_owner "$bin/initdb" -D "$dir/data" -U apoyo -A scram-sha-256 --pwfile="$dir/pwfile" \
        -E UTF8 --locale=C.UTF-8 --no-sync >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; setup_die "initdb"; }
    rm -f "$dir/pwfile"
    setup_log "pg_ctl start on 127.0.0.1:$port (socket dir $dir)"
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c full_page_writes=off -c synchronous_commit=off" \
        start >/dev/null || { tail -20 "$dir/server.log" >&2; setup_die "pg_ctl start"; }
    local url="postgres://apoyo:$pw@127.0.0.1:$port/apoyo"
    PGPASSWORD="$pw" "$bin/psql" -q -h 127.0.0.1 -p "$port" -U apoyo -d postgres -c 'create database apoyo' \
        || setup_die "create database apoyo"
    [ "$("$bin/psql" "$url" -Atc 'select 1')" = 1 ] || setup_die "select 1 on $url did not answer 1"
    setup_log "cluster up: select 1 answered; DATABASE_URL written to $dir/env"
    (umask 077 && printf 'export DATABASE_URL=%q\nexport APOYO_PG_DIR=%q\n' "$url" "$dir" >"$dir/env")
    cat "$dir/env"
}

stop() {
    local dir="${1:-${APOYO_PG_DIR:-}}" bin
    [ -n "$dir" ] || setup_die "usage: postgres.sh stop DIR (or set APOYO_PG_DIR)"
    [ -d "$dir/data" ] || { setup_log "no cluster in $dir"; rm -rf "$dir"; return 0; }
    bin="$(pg_bin)" || setup_die "no pg_ctl under /usr/lib/postgresql/*/bin"
    setup_log "pg_ctl stop $dir/data; removing $dir"
    as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || setup_die "pg_ctl stop $dir/data"
    rm -rf "$dir"
}

case "${1:-}" in
    start) shift; start "$@" ;;
    stop) shift; stop "$@" ;;
    *) setup_die "usage: postgres.sh start [DIR] | stop DIR" ;;
esac
