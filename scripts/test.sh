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

tmp="$(mktemp -d "${TMPDIR:-/tmp}/tokenvault-test.XXXXXX")"

# The throwaway servers (start_redis, start_postgres, stop_servers) and small helpers (is_root, redact, ...).
# shellcheck source=scripts/servers.sh
source scripts/servers.sh

cleanup() {
    local rc=$?
    set +e
    trap - INT TERM
    stop_servers
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
if [[ "${CELERY_BROKER_URL:-}" == redis://* ]]; then
    export CELERY_BROKER_URL
    log "using Redis from CELERY_BROKER_URL: $(redact "$CELERY_BROKER_URL")"
else
    start_redis
fi

# ---------------------------------------------------------------- PostgreSQL
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
