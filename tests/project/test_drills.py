"""Fault drills with the real servers: what an operator's bad day does to the product.

- A Celery worker killed with SIGKILL in the middle of a 1,000-card network-token batch: once a new worker is
  started, every card has exactly one network token and the batch counts every item once.
- PostgreSQL killed (``pg_ctl stop -m immediate``) under a tokenize load: the API answers errors in its error shape
  (no traceback, no card number) while the database is away, and serves again by itself once it is back, without
  a restart, with every card it said it stored.
- Redis restarted (it keeps nothing: ``--save ''``) while webhooks are being delivered and cards tokenized: every
  event still reaches the receiver, those whose broker messages were lost and those made while Redis was down.
- Asynchronous network-token requests, which live in the database until they end: PostgreSQL restarted under a
  running worker, then 100 requests: all complete without restarting the worker; a worker killed with SIGKILL during
  200 requests: all complete once another worker's sweeper finds them; Redis stopped while 50 requests are
  accepted, then started: all complete.

(The webhook worker kill drill is tests/notifications/test_webhook_crash.py.) Each drill starts the servers it
breaks itself (PostgreSQL cluster, redis-server, gunicorn), so breaking them cannot disturb the rest of the suite.

alice is a merchant tokenizing cards, asking for network tokens in bulk and receiving webhooks.
"""

import contextlib
import json
import os
import random
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from networks import services as network_services
from networks import tsp
from networks.models import BatchItem, NetworkToken, ProvisioningRequest
from notifications import services as notification_services
from notifications.models import Delivery, Event
from tests.cards import distinct_card_numbers
from tests.conftest import (
    PGBIN,
    ROOT,
    WORKER_LOG,
    capture_path,
    card_request,
    database_url,
    dump_database,
    kill_celery_worker,
    start_celery_worker,
    stop_celery_worker,
    stop_process_group,
    wait_for,
)
from tests.networks.test_network_batches import vault_tokens
from tests.receiver import Receiver, Reply
from vault.models import Token

# The drills that run workers use the transactional database, so the workers see what the test committed, with
# serialized_rollback: the issuers seeded by the migrations are there whatever test ran before, and the flush at the
# end leaves the database as the next serialized test expects it (a plain flush recreates the content types with
# other ids, and that test's reload of its data then fails on them).

# psycopg's words for a connection that could not be made (refused, or the server shutting down or starting up).
CONNECT_FAILED = re.compile(r"connection to server at .{0,80}? port \d+ failed:")

# Short leases so a drill takes seconds, not the production minutes (as in tests/notifications/test_webhook_crash.py).
FAST_RECOVERY = {
    "WEBHOOK_CLAIM_LEASE_SECONDS": "3",
    "WEBHOOK_QUEUE_LEASE_SECONDS": "5",
    "WEBHOOK_SWEEP_INTERVAL_SECONDS": "1",
    "WEBHOOK_TIMEOUT_SECONDS": "2",
    "NETWORK_BATCH_LEASE_SECONDS": "5",
    "NETWORK_REQUEST_LEASE_SECONDS": "5",
    "NETWORK_REQUEST_SWEEP_SECONDS": "1",
}


# ------------------------------------------------------------------------------------------------------------
# Servers the drills own
# ------------------------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def api_server(*, env: dict, log: Path):
    """The API served by gunicorn (two sync workers, as in production) on a free loopback port; yields
    ``(base URL, process)`` once it answers."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "config.wsgi:application",
        "--workers",
        "2",
        "--bind",
        f"127.0.0.1:{port}",
        "--timeout",
        "60",
        "--graceful-timeout",
        "5",
    ]
    with open(log, "ab") as out:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test", **env},
        )
    url = f"http://127.0.0.1:{port}"
    try:

        def answers():
            if process.poll() is not None:
                pytest.fail(f"gunicorn exited with {process.returncode} before it answered: see {log}")
            with contextlib.suppress(requests.RequestException):
                return requests.get(f"{url}/healthz", timeout=2).status_code == 200

        wait_for(answers, timeout=60, interval=0.2)
        yield url, process
    finally:
        stop_process_group(process)


class RedisServer:
    """A redis-server of the drill's own on a fixed free port, keeping nothing across a restart (as in make test),
    with `redis-cli monitor` recording its traffic for the leak scan."""

    def __init__(self, directory: Path):
        if not shutil.which("redis-server") or not shutil.which("redis-cli"):
            pytest.fail("redis-server and redis-cli are needed: install Redis (e.g. 'apt-get install redis-server')")
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None
        self.monitor: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        log = capture_path(f"drill-redis-{self.port}.log", fallback=self.directory)
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
                "--logfile",
                str(log),
            ],
            start_new_session=True,
        )
        wait_for(self._answers, timeout=10)
        monitor_log = capture_path(f"drill-redis-{self.port}-monitor-{self.starts}.log", fallback=self.directory)
        with open(monitor_log, "wb") as out:
            self.monitor = subprocess.Popen(
                ["redis-cli", "-p", str(self.port), "monitor"],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        # Recording before anyone uses the server, so the leak scan sees every message.
        wait_for(lambda: monitor_log.read_bytes().startswith(b"OK"), timeout=10)

    def stop(self) -> None:
        for process in (self.monitor, self.process):
            if process is not None:
                stop_process_group(process)

    def _answers(self) -> bool:
        ping = subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True, text=True)
        return ping.stdout.strip() == "PONG"


class PostgresServer:
    """A PostgreSQL cluster of the drill's own (initdb into a scratch directory), run as the ``postgres`` system
    user when we are root, since PostgreSQL refuses to run as root (scripts/servers.sh does the same)."""

    def __init__(self):
        self.directory = Path(tempfile.mkdtemp(prefix="drill-pg-"))
        self.data = self.directory / "data"
        self.log = self.directory / "postgres.log"
        self.port = free_port()
        self.settings_dict = {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": "drill",
            "USER": "postgres",
            "PASSWORD": "",
            "HOST": "127.0.0.1",
            "PORT": self.port,
        }
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/drill"

    def create(self) -> None:
        """A new cluster, started, with an empty database ``drill``."""
        if not (PGBIN / "initdb").exists():
            pytest.fail(f"PostgreSQL binaries not found in {PGBIN}: install postgresql-15 or set PGBIN")
        if os.getuid() == 0:
            try:
                shutil.chown(self.directory, "postgres", "postgres")
            except LookupError:
                pytest.fail("PostgreSQL refuses to run as root and there is no `postgres` user to run it as")
            self.directory.chmod(0o755)
        self._as_postgres(
            [PGBIN / "initdb", "-D", self.data, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C.UTF-8"]
        )
        self.start()
        subprocess.run(
            [PGBIN / "createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "drill"],
            check=True,
            capture_output=True,
        )

    def start(self) -> None:
        # fsync off (the machine does not crash, only PostgreSQL), but synchronous_commit on, unlike make test's
        # server: a commit acknowledged to the API must survive PostgreSQL being killed.
        self._as_postgres(
            [
                PGBIN / "pg_ctl",
                "start",
                "-w",
                "-t",
                "60",
                "-D",
                self.data,
                "-l",
                self.log,
                "-o",
                f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c full_page_writes=off",
            ]
        )

    def stop(self, mode: str = "fast") -> None:
        self._as_postgres([PGBIN / "pg_ctl", "stop", "-w", "-D", self.data, "-m", mode])

    def destroy(self) -> None:
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(subprocess.CalledProcessError):
                self.stop("immediate")
        if self.log.exists():
            shutil.copy(self.log, capture_path("drill-postgres.log", fallback=self.directory))
        shutil.rmtree(self.directory, ignore_errors=True)

    def _as_postgres(self, command: list) -> None:
        command = [str(part) for part in command]
        if os.getuid() == 0:
            command = ["su", "postgres", "-s", "/bin/sh", "-c", f"cd / && {shlex.join(command)}"]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if result.returncode:
            tail = self.log.read_text()[-2000:] if self.log.exists() else ""
            pytest.fail(f"{shlex.join(command)} failed: {result.stdout}{result.stderr}{tail}")


def manage(*args: str, env: dict, log: Path) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test", **env},
    )
    with open(log, "a") as out:
        out.write(result.stdout + result.stderr)
    if result.returncode:
        pytest.fail(f"manage.py {args[0]} failed: {result.stderr[-2000:]}")
    return result.stdout


# ------------------------------------------------------------------------------------------------------------
# A load of tokenize requests from a few client threads, each answer labelled with the drill's phase
# ------------------------------------------------------------------------------------------------------------
@dataclass
class Answer:
    started: str  # the phase when the request was sent
    ended: str  # the phase when its answer came
    status: int  # 0: no answer at all (connection refused or reset, timeout)
    body: str
    card_number: str


class TokenizeLoad:
    """``threads`` clients POSTing new cards to /tokens, one after the other, until stopped."""

    def __init__(self, url: str, api_key: str, numbers: list[str], *, threads: int = 3):
        self.url, self.api_key = url, api_key
        self.numbers = iter(numbers)
        self.phase = "before"
        self.answers: list[Answer] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc_info):
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=30)

    def in_phase(self, phase: str, *, status: int | None = None) -> list[Answer]:
        with self.lock:
            return [a for a in self.answers if a.started == a.ended == phase and status in (None, a.status)]

    def _run(self):
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {self.api_key}"
        while not self.stopping.is_set():
            with self.lock:
                number = next(self.numbers)
            started = self.phase
            try:
                response = session.post(f"{self.url}/tokens", json=card_request(cardNumber=number), timeout=15)
                status, body = response.status_code, response.text
            except requests.RequestException as exc:
                status, body = 0, type(exc).__name__
            with self.lock:
                self.answers.append(Answer(started, self.phase, status, body, number))


# ------------------------------------------------------------------------------------------------------------
# A worker killed in the middle of a 1,000-card batch
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.celery
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_worker_killed_mid_batch_leaves_every_card_with_exactly_one_network_token(alice, api):
    # Half Visa, whose TSP answers the same tokenId for the same card, half Mastercard, whose TSP makes a new one on
    # every call: a card provisioned twice shows either as a second created event or as a second network token.
    tokens = vault_tokens(alice, distinct_card_numbers("444433", 500) + distinct_card_numbers("555555", 500))
    first = start_celery_worker(beat=True, concurrency=4, env=FAST_RECOVERY)
    second = None
    try:
        accepted = api.post(
            "/network-tokens/batches", {"items": [{"token": t.token_id} for t in tokens]}, format="json"
        )
        assert accepted.status_code == 202, accepted.content
        batch_url = f"/network-tokens/batches/{accepted.json()['id']}"

        def batch() -> dict:
            """The batch as the API shows it, or {} while SQLite, busy with the worker's writes, answers 503."""
            answer = api.get(batch_url)
            assert answer.status_code in (200, 503), answer.content
            return answer.json() if answer.status_code == 200 else {}

        wait_for(lambda: batch().get("counts", {}).get("SUCCEEDED", 0) >= 200, timeout=120, interval=0.05)
        kill_celery_worker(first)
        at_kill = wait_for(batch)["counts"]
        # The dead worker held items: claimed, or released to it through the broker.
        assert at_kill["RUNNING"] + at_kill["QUEUED"] > 0, at_kill

        second = start_celery_worker(beat=True, concurrency=4, env=FAST_RECOVERY)
        wait_for(lambda: batch().get("status") == "COMPLETED", timeout=300, interval=0.5)
    finally:
        stop_celery_worker(first)
        if second is not None:
            stop_celery_worker(second)

    shown = api.get(batch_url).json()
    assert shown["total"] == 1000
    assert shown["counts"] == {
        "PENDING": 0,
        "QUEUED": 0,
        "RUNNING": 0,
        "PENDING_ACTIVATION": 0,
        "SUCCEEDED": 1000,
        "FAILED": 0,
    }
    assert shown["failedItems"] == []
    items = list(BatchItem.objects.filter(batch__public_id=shown["id"]))
    assert len(items) == 1000
    assert {item.vault_token_id for item in items} == {token.pk for token in tokens}
    # Exactly once: one network token per card, each the one its item names, one created event each, and no card
    # stored twice in the vault.
    network_tokens = NetworkToken.objects.filter(merchant=alice)
    assert network_tokens.count() == 1000
    assert set(network_tokens.values_list("vault_token", flat=True)) == {token.pk for token in tokens}
    assert {item.network_token_id for item in items} == set(network_tokens.values_list("pk", flat=True))
    created = Event.objects.filter(merchant=alice, type="network_token.created")
    assert sorted(event.data["tokenId"] for event in created) == sorted(t.token_id for t in network_tokens)
    assert Token.objects.filter(merchant=alice).count() == 1000
    assert at_kill["SUCCEEDED"] < 1000


# ------------------------------------------------------------------------------------------------------------
# PostgreSQL stopped and started again under a tokenize load
# ------------------------------------------------------------------------------------------------------------
@pytest.fixture
def drill_postgres():
    server = PostgresServer()
    try:
        server.create()
        yield server
    finally:
        if (server.data / "postmaster.pid").exists():
            dump_database(server.settings_dict, "drill-postgres")
        server.destroy()


@pytest.mark.postgres
def test_the_api_answers_errors_while_postgresql_is_down_and_serves_again_once_it_is_back(drill_postgres, tmp_path):
    env = {"DATABASE_URL": drill_postgres.url}
    log = capture_path("drill-postgres-api.log", fallback=tmp_path)
    manage("migrate", "--noinput", env=env, log=log)
    api_key = json.loads(manage("create_merchant", "Drill Shop", "--json", env=env, log=log))["apiKey"]
    numbers = distinct_card_numbers("444433", 5000, seed=7)
    random.Random(7).shuffle(numbers)

    with api_server(env=env, log=log) as (url, server):
        with TokenizeLoad(url, api_key, numbers) as load:
            wait_for(lambda: len(load.in_phase("before", status=201)) >= 30, timeout=60)

            load.phase = "stopping"
            drill_postgres.stop("immediate")  # as a crash: no checkpoint, sessions cut, recovery at the next start
            load.phase = "down"
            wait_for(lambda: len(load.in_phase("down")) >= 30, timeout=60)

            load.phase = "starting"
            drill_postgres.start()
            load.phase = "back"
            wait_for(lambda: len(load.in_phase("back")) >= 30, timeout=60)
        assert server.poll() is None, "gunicorn died"

        assert {a.status for a in load.in_phase("before")} == {201}
        # While the database is away: 503 serviceUnavailable in the API's shape, nothing more (no traceback, no card
        # number).
        for answer in load.in_phase("down"):
            assert answer.status == 503, (answer.status, answer.body[:300])
            assert json.loads(answer.body)["errorName"] == "serviceUnavailable", answer.body[:300]
            assert set(json.loads(answer.body)) == {"errorName", "message", "requestId"}, answer.body[:300]
            assert "Traceback" not in answer.body and "psycopg" not in answer.body.lower()
            assert answer.card_number not in answer.body
        # Back by itself, without a restart: every request sent once PostgreSQL was up again was served...
        back = load.in_phase("back")
        assert [a.status for a in back] == [201] * len(back), [
            (a.status, a.body[:200]) for a in back if a.status != 201
        ]
        # ...and every card the API said it stored, before or after, is there.
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {api_key}"
        for answer in load.in_phase("before") + back:
            found = session.get(f"{url}/tokens", params={"tokenId": json.loads(answer.body)["tokenId"]}, timeout=15)
            assert found.status_code == 200, found.text[:300]


# ------------------------------------------------------------------------------------------------------------
# Redis restarted while webhooks are on their way
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.celery
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_redis_restart_during_deliveries_loses_no_event(alice, tmp_path):
    # The receiver answers slowly, so messages wait in Redis when it goes away with them.
    receiver = Receiver(Reply(200, delay=0.03)).start()
    endpoint = notification_services.endpoint_create(merchant=alice, url=receiver.url)
    redis = RedisServer(tmp_path)
    env = {**FAST_RECOVERY, "CELERY_BROKER_URL": redis.url, "DATABASE_URL": database_url()}
    numbers = iter(distinct_card_numbers("444433", 200, seed=11))
    worker = None

    def delivered() -> int:
        return len({request.headers["webhook-id"] for request in receiver.requests})

    try:
        redis.start()
        worker = start_celery_worker(beat=True, env=env)
        # The cards are tokenized through the API (a gunicorn of its own on the drill's Redis): each makes a
        # token.created event whose fan-out is queued to Redis once the token is stored; the worker then queues
        # its delivery there too.
        with api_server(env=env, log=capture_path("drill-redis-api.log", fallback=tmp_path)) as (url, _):
            session = requests.Session()
            session.headers["Authorization"] = f"Bearer {alice.raw_key}"

            def tokenize(count: int) -> list[int]:
                return [
                    session.post(f"{url}/tokens", json=card_request(cardNumber=next(numbers)), timeout=30).status_code
                    for _ in range(count)
                ]

            statuses = tokenize(120)
            wait_for(lambda: delivered() >= 20, timeout=60)
            redis.stop()
            restarted_at = delivered()
            # While Redis is away the API goes on storing cards: their events cannot be announced at all (the
            # sweeper fans them out once beat is back).
            statuses += tokenize(10)
            redis.start()
            statuses += tokenize(70)
        assert restarted_at < 120, "every event was delivered before Redis went away: nothing was tested"
        assert statuses == [201] * 200
        wait_for(lambda: delivered() >= 200, timeout=120)
        wait_for(
            lambda: not Delivery.objects.filter(endpoint=endpoint).exclude(status=Delivery.SUCCEEDED).exists(),
            timeout=30,
        )
    finally:
        if worker is not None:
            stop_celery_worker(worker)
        redis.stop()
        receiver.stop()

    events = set(Event.objects.filter(merchant=alice, type="token.created").values_list("public_id", flat=True))
    assert len(events) == 200
    assert {request.headers["webhook-id"] for request in receiver.requests} == events


# ------------------------------------------------------------------------------------------------------------
# Asynchronous network-token requests: the database says what is left to do, whatever happened to the broker
# ------------------------------------------------------------------------------------------------------------
class AsyncRequests:
    """A merchant's client of ``POST /network-tokens/async`` on a drill's API server, following its requests."""

    def __init__(self, url: str, api_key: str):
        self.url = url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {api_key}"
        self.ended: dict[str, str] = {}  # requestId → its final status
        self.waiting: list[str] = []

    def send(self, numbers: list[str]) -> None:
        for number in numbers:
            card = {"cardNumber": number, "cardExpiryDate": {"month": 5, "year": 2035}}
            # SQLite, busy with the worker's writes, may answer 503 (nothing stored): sent again, as a merchant would.
            for _ in range(10):
                response = self.session.post(
                    f"{self.url}/network-tokens/async",
                    json={"card": card},
                    headers={"X-Correlation-Id": f"drill-{number[-6:]}"},
                    timeout=30,
                )
                if response.status_code != 503:
                    break
                time.sleep(int(response.headers.get("Retry-After", "1")))
            assert response.status_code == 202, response.text[:300]
            self.waiting.append(response.json()["requestId"])

    def all_ended(self) -> bool:
        for request_id in list(self.waiting):
            answer = self.session.get(f"{self.url}/network-tokens/requests/{request_id}", timeout=15)
            # SQLite, busy with the worker's writes, may answer 503: the request is looked at again next time.
            assert answer.status_code in (200, 503), answer.text[:300]
            status = answer.json()["status"] if answer.status_code == 200 else "PENDING"
            if status != "PENDING":
                self.ended[request_id] = status
                self.waiting.remove(request_id)
        return not self.waiting


@pytest.mark.postgres
@pytest.mark.celery
def test_a_worker_that_lived_through_a_postgresql_restart_completes_every_request_after_it(drill_postgres, tmp_path):
    env = {**FAST_RECOVERY, "DATABASE_URL": drill_postgres.url}
    log = capture_path("drill-postgres-async.log", fallback=tmp_path)
    manage("migrate", "--noinput", env=env, log=log)
    api_key = json.loads(manage("create_merchant", "Drill Shop", "--json", env=env, log=log))["apiKey"]
    numbers = distinct_card_numbers("555555", 105, seed=13)
    worker = start_celery_worker(beat=True, env=env)
    try:
        with api_server(env=env, log=log) as (url, _):
            merchant = AsyncRequests(url, api_key)
            # The worker holds a database connection once it has done some work...
            merchant.send(numbers[:5])
            wait_for(merchant.all_ended, timeout=120, interval=0.5)  # the worker's start-up included

            drill_postgres.stop("fast")  # ...which the restart cuts
            drill_postgres.start()
            logged_before = WORKER_LOG.stat().st_size
            merchant.send(numbers[5:])
            wait_for(merchant.all_ended, timeout=180, interval=1)
        assert worker.poll() is None, "the worker died"
    finally:
        stop_celery_worker(worker)

    assert list(merchant.ended.values()) == ["SUCCEEDED"] * 105
    # The worker noticed the broken connection before using it: no task failed on it (and waited for a retry). A
    # connection that could not be made ("connection to server at … failed:", refused or refused while the server shut
    # down) is a task beat started during the outage, whose line can be written just after it.
    since_restart = WORKER_LOG.read_bytes()[logged_before:].decode(errors="replace").splitlines()
    failed_on_it = [
        line
        for line in since_restart
        if ("OperationalError" in line or "InterfaceError" in line) and not CONNECT_FAILED.search(line)
    ]
    assert not failed_on_it, failed_on_it


@pytest.mark.celery
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_requests_a_killed_worker_held_complete_once_another_worker_sweeps_them(alice, settings):
    numbers = distinct_card_numbers("444433", 200, seed=17)  # Visa: a card asked for twice is still one token
    env = {**FAST_RECOVERY, "TSP_LATENCY_MS": "20"}
    # The requests are accepted here: their messages' lease is the drill's too (the dead worker's are lost with it).
    settings.NETWORK_REQUEST_LEASE_SECONDS = int(FAST_RECOVERY["NETWORK_REQUEST_LEASE_SECONDS"])
    first = start_celery_worker(beat=True, concurrency=4, env=env)
    second = None
    try:
        requests_made = [
            network_services.provisioning_request_create(
                merchant=alice, correlation_id=f"kill-{n}", card=tsp.CardData(number, 5, 2035)
            )
            for n, number in enumerate(numbers)
        ]
        ids = [request.pk for request in requests_made]

        def succeeded() -> int:
            return ProvisioningRequest.objects.filter(pk__in=ids, status=ProvisioningRequest.SUCCEEDED).count()

        wait_for(lambda: succeeded() >= 40, timeout=120, interval=0.05)
        kill_celery_worker(first)
        at_kill = succeeded()
        assert at_kill < 200, "every request ended before the kill: nothing was tested"

        second = start_celery_worker(beat=True, concurrency=4, env=env)
        wait_for(lambda: succeeded() == 200, timeout=180, interval=0.5)
    finally:
        stop_celery_worker(first)
        if second is not None:
            stop_celery_worker(second)

    assert not ProvisioningRequest.objects.filter(pk__in=ids).exclude(card_ciphertext=None).exists()
    assert not ProvisioningRequest.objects.filter(pk__in=ids, network_token=None).exists()
    assert NetworkToken.objects.filter(merchant=alice).count() == 200


@pytest.mark.celery
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_requests_accepted_while_redis_is_down_complete_once_it_is_back(alice, tmp_path):
    redis = RedisServer(tmp_path)
    env = {**FAST_RECOVERY, "CELERY_BROKER_URL": redis.url, "DATABASE_URL": database_url()}
    numbers = distinct_card_numbers("555555", 60, seed=19)
    worker = None
    try:
        redis.start()
        worker = start_celery_worker(beat=True, env=env)
        with api_server(env=env, log=capture_path("drill-redis-async.log", fallback=tmp_path)) as (url, _):
            merchant = AsyncRequests(url, alice.raw_key)
            merchant.send(numbers[:10])
            wait_for(merchant.all_ended, timeout=120, interval=0.5)  # the worker's start-up included

            redis.stop()
            merchant.send(numbers[10:])  # 50 accepted (202) with nowhere to queue them
            assert len(merchant.waiting) == 50
            redis.start()
            wait_for(merchant.all_ended, timeout=120, interval=1)
    finally:
        if worker is not None:
            stop_celery_worker(worker)
        redis.stop()

    assert list(merchant.ended.values()) == ["SUCCEEDED"] * 60
    assert ProvisioningRequest.objects.filter(merchant=alice, status=ProvisioningRequest.SUCCEEDED).count() == 60
