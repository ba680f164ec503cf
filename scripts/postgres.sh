#!/usr/bin/env bash
# A private PostgreSQL cluster for databuild's tests and for trying `--bel postgres://...`.
#
#   scripts/postgres.sh start   # install PostgreSQL if missing, start the cluster, print its URL
#   scripts/postgres.sh env     # the same, then print `export DATABUILD_TEST_POSTGRES=<url>`
#   scripts/postgres.sh url     # print the URL
#   scripts/postgres.sh stop    # stop the cluster (its data is kept)
#
# The cluster listens on 127.0.0.1:$DATABUILD_PG_PORT (default 55432) with its data in
# $DATABUILD_PG_DIR (default /tmp/databuild-pg-<port>); role and database `databuild`
# (password `databuild`) are created on first start. `start` is idempotent.
set -euo pipefail

PGPORT=${DATABUILD_PG_PORT:-55432}
PGDIR=${DATABUILD_PG_DIR:-/tmp/databuild-pg-$PGPORT}
URL="postgres://databuild:databuild@127.0.0.1:$PGPORT/databuild"

say() { echo "postgres.sh: $*" >&2; }

pgbin() {
    local bin
    bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [[ -z $bin || ! -x $bin/initdb ]]; then
        return 1
    fi
    echo "$bin"
}

install() {
    pgbin >/dev/null && return 0
    if [[ $(id -u) -ne 0 ]]; then
        say "PostgreSQL is not installed; install it (e.g. \`sudo apt-get install -y postgresql\`) and run this again"
        exit 1
    fi
    say "installing PostgreSQL from Debian's packages"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    pgbin >/dev/null || { say "PostgreSQL was installed but no initdb is in /usr/lib/postgresql/*/bin"; exit 1; }
}

# Runs a command as the cluster's owner: `postgres` when we are root, else ourselves.
as_owner() {
    if [[ $(id -u) -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

running() {
    [[ -f $PGDIR/data/PG_VERSION ]] && as_owner "$(pgbin)/pg_ctl" -D "$PGDIR/data" status >/dev/null 2>&1
}

start() {
    install
    local bin
    bin=$(pgbin)
    if running; then
        return 0
    fi
    if [[ ! -f $PGDIR/data/PG_VERSION ]]; then
        mkdir -p "$PGDIR"
        [[ $(id -u) -eq 0 ]] && chown postgres:postgres "$PGDIR"
        as_owner "$bin/initdb" -D "$PGDIR/data" -U postgres --auth-local=trust \
            --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 --no-sync >"$PGDIR/initdb.log" 2>&1 ||
            { cat "$PGDIR/initdb.log" >&2; exit 1; }
    fi
    as_owner "$bin/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/pg.log" -w -t 30 \
        -o "-c listen_addresses=127.0.0.1 -p $PGPORT -k $PGDIR -c max_connections=300" start >/dev/null ||
        { tail -n 20 "$PGDIR/pg.log" >&2; exit 1; }
    local have
    have=$(as_owner psql -h "$PGDIR" -p "$PGPORT" -U postgres -d postgres -At \
        -c "SELECT 1 FROM pg_roles WHERE rolname = 'databuild'")
    if [[ $have != 1 ]]; then
        as_owner psql -h "$PGDIR" -p "$PGPORT" -U postgres -d postgres -q -v ON_ERROR_STOP=1 \
            -c "CREATE ROLE databuild LOGIN CREATEDB PASSWORD 'databuild'" \
            -c "CREATE DATABASE databuild OWNER databuild"
    fi
}

stop() {
    local bin
    bin=$(pgbin) || return 0
    if running; then
        as_owner "$bin/pg_ctl" -D "$PGDIR/data" -m fast -w stop >/dev/null
    fi
}

case "${1:-}" in
start) start; echo "$URL" ;;
env) start; echo "export DATABUILD_TEST_POSTGRES=$URL" ;;
url) echo "$URL" ;;
stop) stop ;;
*) echo "usage: $0 start|env|url|stop" >&2; exit 2 ;;
esac
