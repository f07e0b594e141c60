"""The pieces every benchmark starts and stops: scratch databases, gunicorn, Celery workers, wrk.

Processes run in their own process group with their output in the run's log folder, and are stopped (TERM, then
KILL) by the ``with`` block that started them, whatever happens inside it.
"""

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
WRK_SCRIPT = Path(__file__).resolve().parent / "wrk" / "cards.lua"


class BenchError(RuntimeError):
    """A benchmark could not run (a server did not start, a tool is missing): the run says so and goes on."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, *, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    raise BenchError(f"{what}: not within {timeout:g} s")


# ------------------------------------------------------------------------------------------------------------
# The environment every process of the run shares
# ------------------------------------------------------------------------------------------------------------
@dataclass
class Run:
    """One benchmark run: the PostgreSQL server and Redis it uses, its secrets, its log folder."""

    server_url: str  # postgres://user@host:port/any-database: scratch databases are made beside it
    broker_url: str
    logs: Path
    secrets: dict[str, str]
    databases: list[str] = field(default_factory=list)

    def database_url(self, name: str) -> str:
        parts = urlsplit(self.server_url)
        return urlunsplit(parts._replace(path=f"/{name}"))

    def env(self, *, database: str, **extra) -> dict[str, str]:
        """The production environment for a process using ``database``."""
        return {
            # Production refuses the switch (benchmarks.settings allows loopback itself); a test run that starts the
            # benchmarks has it on.
            **{name: value for name, value in os.environ.items() if name != "WEBHOOK_ALLOW_LOOPBACK"},
            **self.secrets,
            # Another module (which must extend benchmarks.settings) tries a settings change under the same load.
            "DJANGO_SETTINGS_MODULE": os.environ.get("BENCH_SETTINGS_MODULE", "benchmarks.settings"),
            "DATABASE_URL": self.database_url(database),
            "CELERY_BROKER_URL": self.broker_url,
            # The rate limits count in Redis, as production's should (the database cache costs a few statements a
            # call), and stay above what one key sends here.
            "CACHE_URL": urlunsplit(urlsplit(self.broker_url)._replace(path="/1")),
            "API_RATE_LIMIT": "9999/second",
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "PUBLIC_BASE_URL": "http://127.0.0.1",
            "TSP_LATENCY_MS": "0",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            **{k: str(v) for k, v in extra.items()},
        }

    def admin_connection(self) -> psycopg.Connection:
        return psycopg.connect(self.database_url("postgres"), autocommit=True)

    # -------------------------------------------------------------------------------------------- databases
    def create_template(self, name: str) -> None:
        """A migrated database that the others are copied from (migrating once saves seconds per database)."""
        with self.admin_connection() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        self.databases.append(name)
        self.manage(["migrate", "--noinput"], database=name, log="migrate")

    def create_database(self, name: str, *, template: str) -> None:
        with self.admin_connection() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        self.databases.append(name)

    def drop_databases(self) -> None:
        with self.admin_connection() as conn:
            for name in reversed(self.databases):
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.databases.clear()

    def manage(self, args: list[str], *, database: str, log: str, timeout: float = 600, env: dict | None = None) -> str:
        """Run ``manage.py`` in the benchmark environment (plus ``env``); returns its output, raises BenchError on
        failure."""
        result = subprocess.run(
            [PYTHON, "manage.py", *args],
            cwd=ROOT,
            env=self.env(database=database, **(env or {})),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        (self.logs / f"{log}.log").write_text(result.stdout + result.stderr)
        if result.returncode:
            raise BenchError(f"manage.py {args[0]} failed (see {self.logs / log}.log): {result.stderr[-500:]}")
        return result.stdout

    # -------------------------------------------------------------------------------------------- processes
    @contextlib.contextmanager
    def process(self, command: list[str], *, database: str, log: str, env: dict | None = None):
        out = open(self.logs / f"{log}.log", "ab")  # noqa: SIM115 - the process's, closed when it ends
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=self.env(database=database, **(env or {})),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield process
        finally:
            stop(process)
            out.close()

    @contextlib.contextmanager
    def gunicorns(self, databases: dict[str, str], *, workers: int, env: dict[str, dict] | None = None):
        """One gunicorn with sync workers per ``log name → database`` (and ``log name → environment`` of its own in
        ``env``), each on a free loopback port, started together; yields ``log name → base URL`` once every one
        answers /healthz."""
        with contextlib.ExitStack() as stack:
            started = {}
            for log, database in databases.items():
                port = free_port()
                command = [
                    PYTHON,
                    "-m",
                    "gunicorn",
                    "config.wsgi:application",
                    "--chdir",
                    str(ROOT),
                    "--worker-class",
                    "sync",
                    "--workers",
                    str(workers),
                    "--bind",
                    f"127.0.0.1:{port}",
                    "--timeout",
                    "60",
                    "--graceful-timeout",
                    "5",
                ]
                process = stack.enter_context(
                    self.process(command, database=database, log=log, env=(env or {}).get(log))
                )
                started[log] = (process, f"http://127.0.0.1:{port}")
            for log, (process, url) in started.items():
                wait_until(
                    lambda p=process, u=url, n=log: _answers(f"{u}/healthz") or _died(p, n),
                    timeout=60,
                    what=f"gunicorn ({log}) answering /healthz",
                )
            yield {log: url for log, (_, url) in started.items()}

    @contextlib.contextmanager
    def gunicorn(self, *, database: str, workers: int, log: str):
        with self.gunicorns({log: database}, workers=workers) as urls:
            yield urls[log]

    @contextlib.contextmanager
    def celery(self, *, database: str, concurrency: int, log: str, beat: bool = False):
        """A prefork Celery worker with ``concurrency`` processes (and ``celery beat`` beside it when asked);
        yields once the worker answers a ping."""
        from config.celery import app

        name = f"bench-{log}-{os.getpid()}@%h"
        worker = [
            PYTHON,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "--pool=prefork",
            f"--concurrency={concurrency}",
            "--loglevel=INFO",
            "-n",
            name,
            "--without-gossip",
            "--without-mingle",
        ]
        with contextlib.ExitStack() as stack:
            if beat:
                schedule = self.logs / f"{log}-beat-schedule"
                stack.enter_context(
                    self.process(
                        [
                            PYTHON,
                            "-m",
                            "celery",
                            "-A",
                            "config",
                            "beat",
                            "--loglevel=INFO",
                            "--schedule",
                            str(schedule),
                        ],
                        database=database,
                        log=f"{log}-beat",
                    )
                )
            process = stack.enter_context(self.process(worker, database=database, log=f"{log}-worker"))
            hostname = name.replace("%h", socket.gethostname())
            wait_until(
                lambda: app.control.ping(destination=[hostname], timeout=0.3) or _died(process, log),
                timeout=60,
                what=f"celery worker ({log}) answering ping",
            )
            yield process


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def _died(process: subprocess.Popen, log: str) -> bool:
    if process.poll() is not None:
        raise BenchError(f"{log} exited with {process.returncode} before it was ready (see its log)")
    return False


def stop(process: subprocess.Popen, *, timeout: float = 15) -> None:
    """TERM the process group, then KILL whatever of it is left."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        process.wait()


# ------------------------------------------------------------------------------------------------------------
# wrk
# ------------------------------------------------------------------------------------------------------------
@dataclass
class Load:
    """What wrk measured over one or more rounds; latencies in microseconds, as a merged histogram."""

    duration_s: float = 0.0
    requests: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    histogram: dict[int, int] = field(default_factory=dict)

    def add(self, result: dict) -> None:
        self.duration_s += result["duration_us"] / 1e6
        self.requests += result["requests"]
        for code, n in result["statuses"].items():
            self.statuses[code] = self.statuses.get(code, 0) + n
        for name, n in result["errors"].items():
            self.errors[name] = self.errors.get(name, 0) + n
        for value, count in result["latency_us"]:
            self.histogram[value] = self.histogram.get(value, 0) + count

    def percentile_ms(self, p: float) -> float | None:
        total = sum(self.histogram.values())
        if not total:
            return None
        rank, seen = p / 100 * total, 0
        for value in sorted(self.histogram):
            seen += self.histogram[value]
            if seen >= rank:
                return round(value / 1000, 2)
        return None

    def figures(self) -> dict:
        return {
            "requests_per_second": round(self.requests / self.duration_s, 1) if self.duration_s else 0.0,
            "p50_ms": self.percentile_ms(50),
            "p99_ms": self.percentile_ms(99),
            "requests": self.requests,
            "seconds": round(self.duration_s, 2),
            "statuses": dict(sorted(self.statuses.items())),
            "socket_errors": {k: v for k, v in self.errors.items() if k != "status" and v},
        }


def ensure_wrk() -> None:
    """wrk is Debian's package, not PyPI's: installed with apt-get when missing and we are root (as scripts/test.sh
    installs PostgreSQL and Redis), so a clean machine runs the suite without a manual step."""
    if shutil.which("wrk"):
        return
    if os.geteuid() != 0:
        raise BenchError("wrk is not installed: install Debian's wrk package (e.g. 'sudo apt-get install wrk')")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update"], env=env, capture_output=True, check=False)
    result = subprocess.run(["apt-get", "install", "-y", "wrk"], env=env, capture_output=True, text=True)
    if result.returncode or not shutil.which("wrk"):
        raise BenchError(f"apt-get install wrk failed: {result.stderr[-300:]}")


# ------------------------------------------------------------------------------------------------------------
# SoftHSM2: the HSM of the pkcs11 KEK provider's benchmarks
# ------------------------------------------------------------------------------------------------------------
SOFTHSM2_MODULE = os.environ.get("SOFTHSM2_MODULE", "/usr/lib/softhsm/libsofthsm2.so")


def ensure_softhsm() -> None:
    """Debian's softhsm2, installed with apt-get when missing and we are root (as ``ensure_wrk``)."""
    if os.path.isfile(SOFTHSM2_MODULE) and shutil.which("softhsm2-util"):
        return
    if os.geteuid() != 0:
        raise BenchError("SoftHSM2 is not installed: install Debian's softhsm2 package (sudo apt-get install softhsm2)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update"], env=env, capture_output=True, check=False)
    result = subprocess.run(["apt-get", "install", "-y", "softhsm2"], env=env, capture_output=True, text=True)
    if result.returncode or not os.path.isfile(SOFTHSM2_MODULE):
        raise BenchError(f"apt-get install softhsm2 failed: {result.stderr[-300:]}")


def softhsm_token(directory: Path, *, label: str) -> dict[str, str]:
    """A new SoftHSM2 token in ``directory``; returns the environment a process needs to use it through the pkcs11
    KEK provider (its key label aside): SoftHSM2's configuration, the module, the token and a PIN made here."""
    ensure_softhsm()
    tokens = directory / "tokens"
    tokens.mkdir(parents=True)
    conf = directory / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n")
    pin = secrets.token_hex(12)
    result = subprocess.run(
        ["softhsm2-util", "--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", secrets.token_hex(12)],
        env={**os.environ, "SOFTHSM2_CONF": str(conf)},
        capture_output=True,
        text=True,
    )
    if result.returncode:
        raise BenchError(f"softhsm2-util --init-token failed: {result.stderr[-300:]}")
    return {
        "SOFTHSM2_CONF": str(conf),
        "VAULT_KEK_PROVIDER": "pkcs11",
        "PKCS11_MODULE": SOFTHSM2_MODULE,
        "PKCS11_TOKEN_LABEL": label,
        "PKCS11_PIN": pin,
    }


def wrk(
    url: str,
    *,
    seconds: float,
    connections: int,
    threads: int,
    env: dict[str, str],
    log: Path,
    script: Path = WRK_SCRIPT,
    timeout: str = "10s",
) -> dict:
    """One wrk run of ``script`` (``benchmarks/wrk/cards.lua`` unless told), each request given up after ``timeout``;
    returns the JSON line it prints."""
    if not shutil.which("wrk"):
        raise BenchError("wrk is not installed (Debian package wrk)")
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        timeout,
        "-s",
        str(script),
        url,
    ]
    result = subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True, timeout=seconds + 60)
    with open(log, "a") as f:
        f.write(f"$ {' '.join(command)}\n{result.stdout}{result.stderr}\n")
    for line in result.stdout.splitlines():
        if line.startswith("BENCH_RESULT "):
            return json.loads(line.removeprefix("BENCH_RESULT "))
    raise BenchError(f"wrk printed no result (exit {result.returncode}): {result.stderr[-300:]}")


def alternate(
    loads: dict[str, tuple[str, dict]],
    *,
    rounds: int,
    seconds: float,
    warmup: float,
    connections: int,
    threads: int,
    log: Path,
) -> dict[str, Load]:
    """Run wrk against each target in turn, ``rounds`` times, so that each pair of figures shares the machine's
    moods; a short unmeasured warm-up of each first. ``loads``: name → (url, wrk environment, or a function
    returning one for each wrk run), or (url, environment, wrk script) for another script than ``cards.lua``."""
    merged = {name: Load() for name in loads}

    def once(url, env, seconds, script=WRK_SCRIPT):
        env = env() if callable(env) else env
        return wrk(url, seconds=seconds, connections=connections, threads=threads, env=env, log=log, script=script)

    if warmup:
        for load in loads.values():
            once(load[0], load[1], warmup, *load[2:])
    for _ in range(rounds):
        for name, load in loads.items():
            merged[name].add(once(load[0], load[1], seconds, *load[2:]))
    return merged
