#!/usr/bin/env bash
# make bench: the benchmark suite (benchmarks/run.py) against a throwaway PostgreSQL 15 and Redis, started as
# `make test` starts them (scripts/servers.sh), or those of $DATABASE_URL (postgres://) and $CELERY_BROKER_URL
# (redis://) when given. The runner installs wrk with apt-get when it is missing and we are root.
#   BENCH_SCALE=smoke make bench      seconds, every path; the default is full (the issue's sizes)
#   make bench ARGS="--only tokenize,crypto"
# Writes benchmarks/results/<date>.json and prints the table; the servers' logs go to var/bench/.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

PY=.venv/bin/python
PGBIN="${PGBIN:-/usr/lib/postgresql/15/bin}"
PG_DBNAME=tokenvault  # the runner makes its scratch databases beside it

log() { echo "bench.sh: $*"; }
die() { echo "bench.sh: ERROR: $*" >&2; exit 1; }

[[ -x "$PY" ]] || die "$PY not found; run 'make bench' (or 'make install') first."

tmp="$(mktemp -d "${TMPDIR:-/tmp}/tokenvault-bench.XXXXXX")"

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

if [[ "${CELERY_BROKER_URL:-}" == redis://* ]]; then
    log "using Redis from CELERY_BROKER_URL: $(redact "$CELERY_BROKER_URL")"
else
    start_redis
fi

if [[ "${DATABASE_URL:-}" == postgres* ]]; then
    PG_URL="$DATABASE_URL"
    log "using PostgreSQL from DATABASE_URL: $(redact "$PG_URL")"
else
    start_postgres
fi

"$PY" -m benchmarks.run --server-url "$PG_URL" --broker-url "$CELERY_BROKER_URL" "$@"
