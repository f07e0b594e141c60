#!/usr/bin/env bash
# Runs the whole test suite twice:
#   1. SQLite      (DATABASE_URL=sqlite:///..., tests marked `postgres` deselected)
#   2. PostgreSQL  (a throwaway PostgreSQL 15 cluster, or $DATABASE_URL if it is postgres://)
# Both passes use a real Redis as Celery broker (CELERY_BROKER_URL), either the
# one given in the environment (redis://...) or a throwaway redis-server.
# The browser tests (tests/browser) drive Debian's Chromium (/usr/bin/chromium,
# installed with apt-get when absent and we are root) and save their screenshots
# under $TEST_OUTPUT_DIR (default test-results/<timestamp>).
# Extra arguments are passed to pytest in both passes.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

PY=.venv/bin/python
PGBIN="${PGBIN:-/usr/lib/postgresql/15/bin}"
PG_DBNAME=tokenvault

log() { echo "test.sh: $*"; }
die() { echo "test.sh: ERROR: $*" >&2; exit 1; }

if [[ ! -x "$PY" ]]; then
    die "$PY not found; run 'make test' (or 'make install') first."
fi

# pytest-django prefers the environment over pyproject; force the test settings.
export DJANGO_SETTINGS_MODULE=config.settings.test

is_root() { [[ "$(id -u)" -eq 0 ]]; }

# Hide the password in URLs when printing them.
redact() { sed -E 's#(://[^:@/]*):[^@/]*@#\1:***@#' <<<"$1"; }

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

apt_install() {
    log "installing $* with apt-get"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y "$@"
}

tmp="$(mktemp -d "${TMPDIR:-/tmp}/tokenvault-test.XXXXXX")"
redis_pidfile=""
pg_data=""

# Run a command as the `postgres` system user when we are root (PostgreSQL
# refuses to run as root), otherwise as ourselves.
as_pg() {
    if is_root; then
        su postgres -s /bin/bash -c "cd / && $(printf '%q ' "$@")"
    else
        "$@"
    fi
}

cleanup() {
    local rc=$?
    set +e
    trap - INT TERM
    if [[ -n "$pg_data" && -f "$pg_data/postmaster.pid" ]]; then
        log "stopping PostgreSQL"
        if ! as_pg "$PGBIN/pg_ctl" stop -D "$pg_data" -m immediate -w >/dev/null 2>&1; then
            local pgpid
            pgpid="$(head -n1 "$pg_data/postmaster.pid" 2>/dev/null)"
            [[ -n "$pgpid" ]] && kill -KILL "$pgpid" 2>/dev/null
        fi
    fi
    if [[ -n "$redis_pidfile" && -f "$redis_pidfile" ]]; then
        log "stopping redis-server"
        local rpid i
        rpid="$(cat "$redis_pidfile" 2>/dev/null)"
        if [[ -n "$rpid" ]]; then
            kill -TERM "$rpid" 2>/dev/null
            for ((i = 0; i < 50; i++)); do
                kill -0 "$rpid" 2>/dev/null || break
                sleep 0.1
            done
            kill -KILL "$rpid" 2>/dev/null
        fi
    fi
    rm -rf "$tmp"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------------ Chromium
# Playwright cannot download its own browser here (no internet): the browser
# tests point it at Debian's package.
# $CHROMIUM names another binary; Debian's is installed only when it is the one.
export CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
if [[ ! -x "$CHROMIUM" ]]; then
    if [[ "$CHROMIUM" == /usr/bin/chromium ]] && is_root; then
        apt_install chromium
    fi
    [[ -x "$CHROMIUM" ]] || die "$CHROMIUM not found: the browser tests need Debian's chromium package (e.g. 'sudo apt-get install chromium') or CHROMIUM=/path/to/chromium."
fi
log "using $("$CHROMIUM" --version 2>/dev/null | head -n1)"

# Where the browser tests save their screenshots, one folder per run.
export TEST_OUTPUT_DIR="${TEST_OUTPUT_DIR:-test-results/$(date +%Y%m%d-%H%M%S)}"
log "screenshots go to $TEST_OUTPUT_DIR"

# --------------------------------------------------------------------- Redis
redis_ping() {  # $1 = port
    if command -v redis-cli >/dev/null 2>&1; then
        [[ "$(redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null)" == "PONG" ]]
    else
        python3 - "$1" <<'EOF' 2>/dev/null
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1)
s.sendall(b"PING\r\n")
sys.exit(0 if s.recv(64).startswith(b"+PONG") else 1)
EOF
    fi
}

started_redis_port=""
start_redis() {
    if ! command -v redis-server >/dev/null 2>&1; then
        if is_root; then
            apt_install redis-server
        else
            die "redis-server is not installed. Install it (e.g. 'sudo apt-get install redis-server') or set CELERY_BROKER_URL=redis://HOST:PORT/0."
        fi
    fi
    local port i
    port="$(free_port)"
    redis_pidfile="$tmp/redis.pid"
    redis-server --bind 127.0.0.1 --port "$port" \
        --save '' --appendonly no --daemonize yes \
        --dir "$tmp" --pidfile "$redis_pidfile" --logfile "$tmp/redis.log" \
        || die "redis-server failed to start"
    for ((i = 0; i < 100; i++)); do
        redis_ping "$port" && break
        sleep 0.1
    done
    if ! redis_ping "$port"; then
        tail -n 20 "$tmp/redis.log" >&2 || true
        die "redis-server on port $port did not answer PING"
    fi
    started_redis_port="$port"
    export CELERY_BROKER_URL="redis://127.0.0.1:$port/0"
    log "started throwaway redis-server $(redis-server --version | sed -E 's/.*v=([^ ]+).*/\1/') on 127.0.0.1:$port"
}

if [[ "${CELERY_BROKER_URL:-}" == redis://* ]]; then
    export CELERY_BROKER_URL
    log "using Redis from CELERY_BROKER_URL: $(redact "$CELERY_BROKER_URL")"
else
    start_redis
fi

# ---------------------------------------------------------------- PostgreSQL
start_postgres() {
    if [[ ! -x "$PGBIN/initdb" ]]; then
        if is_root; then
            apt_install postgresql-15
        fi
        [[ -x "$PGBIN/initdb" ]] || die "PostgreSQL 15 binaries not found in $PGBIN. Install postgresql-15 or set DATABASE_URL=postgres://..."
    fi
    local pgdir="$tmp/pg"
    mkdir -p "$pgdir/sock"
    if is_root; then
        id postgres >/dev/null 2>&1 \
            || useradd --system --no-create-home --shell /usr/sbin/nologin postgres
        chmod 755 "$tmp"
        chown -R postgres: "$pgdir"
        as_pg test -w "$pgdir" \
            || die "user postgres cannot write to $pgdir (set TMPDIR to a directory it can reach, e.g. /tmp)"
    fi
    local port
    port="$(free_port)"
    pg_data="$pgdir/data"
    as_pg "$PGBIN/initdb" -D "$pg_data" -A trust -U postgres -E UTF8 --locale=C.UTF-8 \
        >"$tmp/initdb.log" 2>&1 \
        || { cat "$tmp/initdb.log" >&2; die "initdb failed"; }
    if ! as_pg "$PGBIN/pg_ctl" start -w -t 60 -D "$pg_data" -l "$pgdir/postgres.log" \
        -o "-p $port -k $pgdir/sock -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
        >/dev/null; then
        tail -n 30 "$pgdir/postgres.log" >&2 || true
        die "PostgreSQL failed to start"
    fi
    "$PGBIN/createdb" -h 127.0.0.1 -p "$port" -U postgres "$PG_DBNAME" \
        || die "could not create database $PG_DBNAME"
    PG_URL="postgres://postgres@127.0.0.1:$port/$PG_DBNAME"
    log "started throwaway PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$port (database $PG_DBNAME)"
}

if [[ "${DATABASE_URL:-}" == postgres* ]]; then
    PG_URL="$DATABASE_URL"
    log "using PostgreSQL from DATABASE_URL: $(redact "$PG_URL")"
else
    start_postgres
fi

# --------------------------------------------------------------------- Tests
sqlite_rc=0
pg_rc=0

log "pass 1/2: SQLite (-m 'not postgres'), broker $(redact "$CELERY_BROKER_URL")"
DATABASE_URL="sqlite:///$tmp/test.sqlite3" "$PY" -m pytest -m "not postgres" "$@" || sqlite_rc=$?

# Don't let anything queued by pass 1 leak into pass 2.
if [[ -n "$started_redis_port" ]] && command -v redis-cli >/dev/null 2>&1; then
    redis-cli -h 127.0.0.1 -p "$started_redis_port" flushall >/dev/null || true
fi

log "pass 2/2: PostgreSQL $(redact "$PG_URL"), broker $(redact "$CELERY_BROKER_URL")"
DATABASE_URL="$PG_URL" "$PY" -m pytest "$@" || pg_rc=$?

status() { if [[ $1 -eq 0 ]]; then echo "passed"; else echo "FAILED (pytest exit $1)"; fi; }
echo
echo "sqlite: $(status "$sqlite_rc")"
echo "postgresql: $(status "$pg_rc")"

[[ $sqlite_rc -eq 0 && $pg_rc -eq 0 ]]
