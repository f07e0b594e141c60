# Throwaway PostgreSQL 15 and Redis servers on loopback, for scripts/test.sh and scripts/bench.sh.
# Sourced, not run. The caller defines:
#   log MESSAGE, die MESSAGE   how to report (each script prefixes its own name)
#   tmp                        a scratch directory; the servers' data, sockets and logs go under it
#   PGBIN, PG_DBNAME           where PostgreSQL's binaries are, the database to create
# and calls stop_servers from its EXIT trap. start_redis exports CELERY_BROKER_URL and sets
# started_redis_port; start_postgres sets PG_URL. server_logs lists the logs of the servers started (test.sh's leak
# scan searches them).

redis_pidfile=""
pg_data=""
started_redis_port=""
server_logs=()

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

# Debian's SoftHSM2, the HSM the pkcs11 KEK provider is tested and measured on (the tests and benchmarks initialise
# tokens of their own in temporary directories: only the package is needed). Installed when absent and we are root.
SOFTHSM2_MODULE="${SOFTHSM2_MODULE:-/usr/lib/softhsm/libsofthsm2.so}"
require_softhsm() {
    if [[ ! -f "$SOFTHSM2_MODULE" ]] || ! command -v softhsm2-util >/dev/null 2>&1; then
        if [[ "$SOFTHSM2_MODULE" == /usr/lib/softhsm/libsofthsm2.so ]] && is_root; then
            apt_install softhsm2
        fi
        [[ -f "$SOFTHSM2_MODULE" ]] && command -v softhsm2-util >/dev/null 2>&1 \
            || die "SoftHSM2 not found ($SOFTHSM2_MODULE, softhsm2-util): the pkcs11 KEK provider runs against it (e.g. 'sudo apt-get install softhsm2', or SOFTHSM2_MODULE=/path/to/libsofthsm2.so)"
    fi
    export SOFTHSM2_MODULE
}

# Run a command as the `postgres` system user when we are root (PostgreSQL
# refuses to run as root), otherwise as ourselves.
as_pg() {
    if is_root; then
        su postgres -s /bin/bash -c "cd / && $(printf '%q ' "$@")"
    else
        "$@"
    fi
}

# Stop whatever start_postgres and start_redis started (safe to call when they started nothing).
stop_servers() {
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
}

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
    server_logs+=("$tmp/redis.log")
    export CELERY_BROKER_URL="redis://127.0.0.1:$port/0"
    log "started throwaway redis-server $(redis-server --version | sed -E 's/.*v=([^ ]+).*/\1/') on 127.0.0.1:$port"
}

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
    server_logs+=("$pgdir/postgres.log")
    log "started throwaway PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$port (database $PG_DBNAME)"
}
