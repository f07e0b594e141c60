#!/usr/bin/env bash
# Checks the code with ruff and import-linter, then runs the whole test suite twice, both passes at once (each is
# mostly one Python process, so two keep two cores busy; their outputs are printed one after the other):
#   1. SQLite      (DATABASE_URL=sqlite:///..., tests marked `postgres` deselected)
#   2. PostgreSQL  (a throwaway PostgreSQL 15 cluster, or $DATABASE_URL if it is postgres://)
# Both passes use a real Redis as Celery broker (CELERY_BROKER_URL), either the
# one given in the environment (redis://...) or a throwaway redis-server, each pass a database of its own.
# The browser tests (tests/browser) drive Debian's Chromium (/usr/bin/chromium,
# installed with apt-get when absent and we are root) and save their screenshots
# under $TEST_OUTPUT_DIR (default test-results/<timestamp>).
# Each pass runs its tests in $TEST_WORKERS pytest-xdist workers (default 3): most of the suite waits on the workers,
# servers and browsers it starts, so six processes on two cores keep them busy (tests/notifications: 163 s alone,
# 112 s in two workers). Each worker has its own test database and broker database (config/settings/test.py).
# Extra arguments are passed to pytest in both passes.
# The pkcs11 KEK provider's tests use Debian's SoftHSM2 (installed with apt-get when absent and we are root).
# After each pass a leak scan (scripts/leak_scan.py) searches the pass's logs, broker traffic and database dumps
# for every card number and every key the tests used; a hit fails the run (see "Leak scan" below).
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

# --------------------------------------------------------------------- Lint
# First, and in seconds: the linter and formatter's rules (ruff) and the apps' ladder (import-linter's contracts),
# both configured in pyproject.toml.
log "ruff"
.venv/bin/ruff check . || die "ruff found problems (.venv/bin/ruff check --fix . mends most)"
.venv/bin/ruff format --check . >/dev/null || { .venv/bin/ruff format --check .; die "not formatted: .venv/bin/ruff format ."; }
log "import contracts"
.venv/bin/lint-imports --no-cache >/dev/null || { .venv/bin/lint-imports --no-cache; die "an import breaks the apps' ladder"; }

# pytest-django prefers the environment over pyproject; force the test settings.
export DJANGO_SETTINGS_MODULE=config.settings.test

tmp="$(mktemp -d "${TMPDIR:-/tmp}/tokenvault-test.XXXXXX")"

# The throwaway servers (start_redis, start_postgres, stop_servers) and small helpers (is_root, redact, ...).
# shellcheck source=scripts/servers.sh
source scripts/servers.sh

# The passes running in the background (see "Tests" below).
pass_pids=()

cleanup() {
    local rc=$?
    set +e
    trap - INT TERM
    for pid in "${pass_pids[@]}"; do
        kill -- -"$pid" 2>/dev/null || kill "$pid" 2>/dev/null
    done
    wait 2>/dev/null
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

# ------------------------------------------------------------------ SoftHSM2
# The pkcs11 KEK provider's tests run on a real SoftHSM2 token, which tests/vault/conftest.py initialises in a
# temporary directory of each pytest process's own: the package is all they need.
require_softhsm
log "using $(softhsm2-util --version | head -n1 | sed 's/^/SoftHSM2 /') ($SOFTHSM2_MODULE)"

# ------------------------------------------------------------------ promtool
# The alert rules of deploy/prometheus are checked and unit-tested by promtool (tests/project/test_monitoring_config.py),
# from Debian's prometheus package: installed when absent and we are root.
if ! command -v promtool >/dev/null 2>&1; then
    is_root && apt_install prometheus
    command -v promtool >/dev/null 2>&1 || die "promtool not found: the alert rules are checked with it (e.g. 'sudo apt-get install prometheus')"
fi
log "using $(promtool --version 2>&1 | head -n1)"

# ------------------------------------------------------------------ workers
TEST_WORKERS="${TEST_WORKERS:-3}"
[[ "$TEST_WORKERS" =~ ^[0-9]+$ ]] || die "TEST_WORKERS must be a number of pytest-xdist workers (0: none)"
workers=()
((TEST_WORKERS > 0)) && workers=(-n "$TEST_WORKERS" --dist load)
log "each pass in ${TEST_WORKERS} pytest-xdist worker(s)"

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

# ----------------------------------------------------------------- Leak scan
# Each pass records everything a card number or a key could leak into: every log its processes write (TEST_LOG_FILE,
# read by config/settings/test.py and inherited by the workers and servers the tests start; the workers' own output),
# every message that went over the wire to the broker (redis-cli monitor for the whole pass), the test database
# (tests/conftest.py: on PostgreSQL what each test wrote before its rollback, each transactional test's data before
# its flush, the whole database at the end) and the servers' logs. After the pass, scripts/leak_scan.py searches all
# of it for every card number the tests used, and for every key: each process of the pass appends the hex of each key
# encryption key, data encryption key and HSM PIN it used to TEST_KEY_MATERIAL_FILE, outside the capture. Forwards
# (POST /forward) hand the card to a payment provider: the tests' loopback providers (tests/receiver.py) keep what
# they receive in memory, the provider's side, never in the capture; our side of every forward (logs, the Forward and
# audit rows) is searched like the rest.
if ! command -v redis-cli >/dev/null 2>&1; then
    is_root && apt_install redis-tools
    command -v redis-cli >/dev/null 2>&1 || die "redis-cli not found: the leak scan records the broker's traffic with it (e.g. 'sudo apt-get install redis-tools')."
fi

# broker_database URL N: the Redis URL with database N (a pass's queues are its own).
broker_database() {
    local url=${1%/}
    [[ "$url" =~ /[0-9]+$ ]] && url=${url%/*}
    echo "$url/$2"
}

# run_pass NAME DATABASE_URL BROKER_URL PYTEST_ARGS...: writes "<pytest's exit status> <the leak scan's>" to
# $tmp/rc-NAME. The broker capture records the whole server, the other pass's traffic too: the scan reads both.
run_pass() {
    local name=$1 database_url=$2 broker_url=$3 i monitor_pid pass_rc scan_rc
    shift 3
    local capture="$tmp/capture-$name" numbers="$tmp/card-numbers-$name.txt" keys="$tmp/key-material-$name.txt"
    mkdir -p "$capture"
    : >"$keys"  # a pass that used no key (a -k selection) still has its list, empty
    redis-cli -u "$broker_url" monitor >"$capture/broker-monitor.log" 2>&1 &
    monitor_pid=$!
    for ((i = 0; i < 50; i++)); do
        grep -q '^OK' "$capture/broker-monitor.log" && break
        sleep 0.1
    done
    grep -q '^OK' "$capture/broker-monitor.log" || die "redis-cli monitor did not connect to $(redact "$CELERY_BROKER_URL")"

    pass_rc=0
    TEST_CAPTURE_DIR="$capture" TEST_LOG_FILE="$capture/app.log" TEST_CARD_NUMBERS_FILE="$numbers" \
        TEST_KEY_MATERIAL_FILE="$keys" DATABASE_URL="$database_url" CELERY_BROKER_URL="$broker_url" \
        "$PY" -m pytest "${workers[@]}" "$@" || pass_rc=$?
    local monitor_lived=1
    kill -0 "$monitor_pid" 2>/dev/null || monitor_lived=0
    kill "$monitor_pid" 2>/dev/null || true
    wait "$monitor_pid" 2>/dev/null || true

    log "leak scan of the $name pass"
    scan_rc=0
    "$PY" scripts/leak_scan.py --numbers "$numbers" --keys "$keys" "$capture" "${server_logs[@]}" || scan_rc=$?
    if [[ ! -s "$capture/app.log" ]]; then
        log "ERROR: the $name pass wrote no log to $capture/app.log: the leak scan did not see the logs"
        scan_rc=1
    fi
    if [[ $monitor_lived -eq 0 ]]; then
        log "ERROR: redis-cli monitor stopped during the $name pass: the broker capture is incomplete"
        scan_rc=1
    fi
    if [[ $pass_rc -ne 0 || $scan_rc -ne 0 ]]; then
        # $tmp goes when the run ends: keep the logs (the workers' among them) and what the scan named, to look at.
        { mkdir -p "$TEST_OUTPUT_DIR/capture-$name" \
            && cp -r "$capture"/. "${server_logs[@]}" "$TEST_OUTPUT_DIR/capture-$name/" \
            && log "the $name pass's logs, broker capture and database dumps are kept in $TEST_OUTPUT_DIR/capture-$name"; } \
            || log "could not keep the $name pass's capture"
    fi
    echo "$pass_rc $scan_rc" >"$tmp/rc-$name"
}

# --------------------------------------------------------------------- Tests
# Both passes at once, each in its own process group (so an interrupted run stops their workers and servers too),
# each with its own output, printed when both are done.
sqlite_broker=$(broker_database "$CELERY_BROKER_URL" 1)
pg_broker=$(broker_database "$CELERY_BROKER_URL" 2)
log "pass 1/2: SQLite (-m 'not postgres'), broker $(redact "$sqlite_broker")"
log "pass 2/2: PostgreSQL $(redact "$PG_URL"), broker $(redact "$pg_broker")"
set -m
run_pass sqlite "sqlite:///$tmp/test.sqlite3" "$sqlite_broker" -m "not postgres" "$@" >"$tmp/out-sqlite.log" 2>&1 &
pass_pids+=($!)
run_pass postgresql "$PG_URL" "$pg_broker" "$@" >"$tmp/out-postgresql.log" 2>&1 &
pass_pids+=($!)
set +m
for pid in "${pass_pids[@]}"; do
    wait "$pid" || true
done
pass_pids=()
for name in sqlite postgresql; do
    echo
    log "---------------------------------------------------------------- the $name pass"
    cat "$tmp/out-$name.log"
done
read -r sqlite_rc sqlite_scan_rc <"$tmp/rc-sqlite" || { sqlite_rc=1 sqlite_scan_rc=1; }
read -r pg_rc pg_scan_rc <"$tmp/rc-postgresql" || { pg_rc=1 pg_scan_rc=1; }

status() { if [[ $1 -eq 0 ]]; then echo "passed"; else echo "FAILED (pytest exit $1)"; fi; }
scan_status() { if [[ $1 -eq 0 ]]; then echo "no card number or key leaked"; else echo "LEAK SCAN FAILED (see above)"; fi; }
echo
echo "sqlite: $(status "$sqlite_rc"); $(scan_status "$sqlite_scan_rc")"
echo "postgresql: $(status "$pg_rc"); $(scan_status "$pg_scan_rc")"

[[ $sqlite_rc -eq 0 && $pg_rc -eq 0 && $sqlite_scan_rc -eq 0 && $pg_scan_rc -eq 0 ]]
