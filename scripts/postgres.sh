#!/usr/bin/env bash
# A private PostgreSQL cluster for databuild's tests and for trying `--bel postgres://...`.
#
#   scripts/postgres.sh start      # install PostgreSQL if missing, start the cluster, print its URL
#   scripts/postgres.sh env        # start both clusters, then print
#                                  # `export DATABUILD_TEST_POSTGRES=<url>` and the TLS
#                                  # cluster's `DATABUILD_TEST_POSTGRES_TLS{,_CA}`
#   scripts/postgres.sh url        # print the URL
#   scripts/postgres.sh stop       # stop the cluster (its data is kept); `stop-tls` the TLS one
#   scripts/postgres.sh start-tls  # a second cluster with `ssl=on`, print its URL
#   scripts/postgres.sh env-tls    # the same, then print `export DATABUILD_TEST_POSTGRES_TLS=<url>`
#                                  # and `export DATABUILD_TEST_POSTGRES_TLS_CA=<its CA file>`
#
# The cluster listens on 127.0.0.1:$DATABUILD_PG_PORT (default 55432) with its data in
# $DATABUILD_PG_DIR (default /tmp/databuild-pg-<port>); role and database `databuild`
# (password `databuild`) are created on first start. `start` is idempotent. The TLS
# cluster listens on $DATABUILD_PG_TLS_PORT (default 55443), data in
# /tmp/databuild-pg-tls-<port>, with a server certificate for `localhost` and 127.0.0.1 that
# the test CA `ca.crt` in that directory signed (made with openssl on first start); it
# takes connections with and without TLS.
set -euo pipefail

PGPORT=${DATABUILD_PG_PORT:-55432}
PGDIR=${DATABUILD_PG_DIR:-/tmp/databuild-pg-$PGPORT}
URL="postgres://databuild:databuild@127.0.0.1:$PGPORT/databuild"
TLS_PORT=${DATABUILD_PG_TLS_PORT:-55443}
TLS_DIR=/tmp/databuild-pg-tls-$TLS_PORT
TLS_URL="postgres://databuild:databuild@127.0.0.1:$TLS_PORT/databuild"
EXTRA_OPTS=""

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
        -o "-c listen_addresses=127.0.0.1 -p $PGPORT -k $PGDIR -c max_connections=300 $EXTRA_OPTS" start >/dev/null ||
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

# A test CA and a server certificate it signed for localhost and 127.0.0.1, in $TLS_DIR.
certs() {
    mkdir -p "$TLS_DIR"
    [[ -f $TLS_DIR/server.crt ]] && return 0
    command -v openssl >/dev/null || { say "openssl is needed for the TLS cluster"; exit 1; }
    (
        cd "$TLS_DIR"
        openssl req -new -x509 -days 3650 -nodes -subj "/CN=databuild test CA" \
            -keyout ca.key -out ca.crt 2>/dev/null
        openssl req -new -nodes -subj "/CN=localhost" -keyout server.key -out server.csr 2>/dev/null
        printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' >server.ext
        openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
            -extfile server.ext -out server.crt 2>/dev/null
        chmod 600 server.key
        [[ $(id -u) -eq 0 ]] && chown postgres:postgres server.key server.crt
        true
    )
}

start_tls() {
    PGPORT=$TLS_PORT
    PGDIR=$TLS_DIR
    install
    certs
    EXTRA_OPTS="-c ssl=on -c ssl_cert_file=$TLS_DIR/server.crt -c ssl_key_file=$TLS_DIR/server.key"
    start
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
env)
    start
    echo "export DATABUILD_TEST_POSTGRES=$URL"
    start_tls
    echo "export DATABUILD_TEST_POSTGRES_TLS=$TLS_URL"
    echo "export DATABUILD_TEST_POSTGRES_TLS_CA=$TLS_DIR/ca.crt"
    ;;
url) echo "$URL" ;;
stop) stop ;;
stop-tls) PGPORT=$TLS_PORT; PGDIR=$TLS_DIR; stop ;;
start-tls) start_tls; echo "$TLS_URL" ;;
env-tls)
    start_tls
    echo "export DATABUILD_TEST_POSTGRES_TLS=$TLS_URL"
    echo "export DATABUILD_TEST_POSTGRES_TLS_CA=$TLS_DIR/ca.crt"
    ;;
*) echo "usage: $0 start|env|url|stop|start-tls|env-tls|stop-tls" >&2; exit 2 ;;
esac
