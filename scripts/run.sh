#!/usr/bin/env bash
# Embedded local run: SQLite in var/, Celery on the filesystem:// transport
# (no servers needed). Starts runserver + celery worker + celery beat and
# stops all of them on Ctrl-C / SIGTERM or as soon as one of them dies.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

export DJANGO_SETTINGS_MODULE=config.settings.local
PORT="${PORT:-8000}"
export PORT
PY=.venv/bin/python
CELERY=.venv/bin/celery

if [[ ! -x "$PY" ]]; then
    echo "run.sh: $PY not found; run 'make run' (or 'make install') first." >&2
    exit 1
fi

mkdir -p var

# Started with the pkcs11 provider (VAULT_KEK_PROVIDER=pkcs11 and PKCS11_*), the KEK is generated inside the HSM
# when its label is missing there (non-extractable); the start-up check would refuse everything below without it.
if [[ "${VAULT_KEK_PROVIDER:-local}" == pkcs11 ]]; then
    "$PY" manage.py kek_create
fi
"$PY" manage.py migrate --noinput
# An install from before key custody (var/local.env holding VAULT_KEYS) has its keys wrapped under the KEK now
# generated beside them; every later start finds nothing to wrap.
"$PY" manage.py migrate_keys_to_kek
"$PY" manage.py setup_local
# A database without any token gets the demo data set once, so the back office has something to show;
# seed_demo --if-empty says so when it seeds and does nothing otherwise. SEED_DEMO=0 make run skips it.
if [[ "${SEED_DEMO:-1}" != "0" ]]; then
    "$PY" manage.py seed_demo --if-empty || echo "run.sh: seed_demo failed; starting without demo data" >&2
fi

pids=()
names=()

# PIDs of every descendant of $1 (children first, deepest last).
descendants() {
    local child
    for child in $(ps -o pid= --ppid "$1" 2>/dev/null); do
        echo "$child"
        descendants "$child"
    done
}

stopped=0
stop_all() {
    [[ $stopped -eq 1 ]] && return 0
    stopped=1
    trap - INT TERM
    local pid alive i
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    # Give them up to ~15s to shut down cleanly (celery warm shutdown).
    for ((i = 0; i < 75; i++)); do
        alive=0
        for pid in "${pids[@]}"; do
            kill -0 "$pid" 2>/dev/null && alive=1
        done
        [[ $alive -eq 0 ]] && break
        sleep 0.2
    done
    for pid in "${pids[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            echo "run.sh: pid $pid did not stop in time, killing it" >&2
            # shellcheck disable=SC2046
            kill -KILL $(descendants "$pid") "$pid" 2>/dev/null || true
        fi
    done
    wait 2>/dev/null || true
}

# shellcheck disable=SC2329  # invoked via trap
on_signal() {
    echo
    echo "run.sh: $1 received, stopping runserver, celery worker and celery beat..." >&2
    stop_all
    exit "$2"
}

# shellcheck disable=SC2329  # invoked via trap
on_exit() {
    local rc=$?
    stop_all
    exit "$rc"
}

trap 'on_signal SIGINT 130' INT
trap 'on_signal SIGTERM 143' TERM
trap on_exit EXIT

start() {
    local name=$1
    shift
    "$@" &
    pids+=("$!")
    names+=("$name")
    echo "run.sh: started $name (pid $!)"
}

# Every process started below counts in one folder, which /metrics adds up (core/metrics.py): emptied first, so the
# counts are this run's (not those of the commands above either).
export PROMETHEUS_MULTIPROC_DIR="${PROMETHEUS_MULTIPROC_DIR:-$PWD/var/metrics}"
mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
rm -f "$PROMETHEUS_MULTIPROC_DIR"/*.db

start runserver "$PY" manage.py runserver "127.0.0.1:${PORT}" --noreload
start celery-worker "$CELERY" -A config worker --loglevel=INFO --concurrency=2
start celery-beat "$CELERY" -A config beat --loglevel=INFO --schedule var/celerybeat-schedule

echo "run.sh: serving on http://127.0.0.1:${PORT}/  (Ctrl-C stops everything)"
echo "run.sh: the admin signs in with a password and a code from an authenticator app (TOTP); the first sign-in" \
    "shows the QR code to set the app up, once"

rc=0
wait -n || rc=$?

# One child exited on its own: report which one, stop the others, fail.
for i in "${!pids[@]}"; do
    if ! kill -0 "${pids[$i]}" 2>/dev/null; then
        echo "run.sh: ${names[$i]} (pid ${pids[$i]}) exited with status $rc; stopping the others" >&2
    fi
done
stop_all
[[ $rc -eq 0 ]] && rc=1
exit "$rc"
