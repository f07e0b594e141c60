"""``/healthz`` and ``/readyz``. Liveness asks nothing of anything; readiness: the database, the keys and the
migrations decide whether this server serves (503 when it cannot); the KEK provider, the broker and beat are reported
for monitoring (``degraded``, still 200), and beat's periodic tasks keep quiet at INFO.

Actors (tests/conftest.py): alice is a merchant whose token makes the keys' check values part of the data; the
load balancer, the orchestrator and the monitoring are anonymous clients of both. The broker is the run's real Redis.
``NetworkHsm`` stands for an HSM across a network (a KEK provider of ``vault.kek``'s contract, plugged in as an
installation plugs its own), whose link the test cuts, or leaves hanging.
"""

import base64
import os
import re
import threading
import time
from datetime import timedelta

import pytest
import requests
from django.conf import settings as django_settings
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from backoffice.health import CHECKS
from config.settings.secrets import new_key
from notifications import services as notification_services
from notifications.models import Heartbeat
from tests.conftest import (
    WORKER_LOG,
    capture_path,
    card_request,
    client_for,
    database_url,
    start_celery_worker,
    stop_celery_worker,
    wait_for,
)
from tests.metrics import Scrape
from tests.project.test_drills import api_server, free_port
from tests.receiver import Receiver
from vault.kek import KekUnavailable
from vault.kek.local import LocalProvider
from vault.metrics import KEK_PROBE_SECONDS, KEK_TIMEOUT

ALL_OK = {"database": "ok", "keys": "ok", "kek": "ok", "migrations": "ok", "broker": "ok", "beat": "ok"}


@pytest.fixture(autouse=True)
def real_broker():
    if not os.environ.get("CELERY_BROKER_URL", "").startswith("redis://"):
        pytest.fail("/readyz checks the real broker: run it through `make test` or set CELERY_BROKER_URL")


def ready():
    response = APIClient().get("/readyz")
    return response.status_code, response.json()


def restart(settings):
    """This server restarted: its settings read again, nothing of its earlier answers kept."""
    settings.MIGRATION_MODULES = settings.MIGRATION_MODULES
    settings.VAULT_KEK_PROVIDER = settings.VAULT_KEK_PROVIDER


# ------------------------------------------------------------------------------------------------------------
# Liveness
# ------------------------------------------------------------------------------------------------------------
def test_liveness_answers_ok_without_asking_the_database():
    # No database for this test: pytest-django refuses any query, so a check of it would fail the answer.
    response = APIClient().get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


# ------------------------------------------------------------------------------------------------------------
# Readiness: what takes a server out of rotation, and what is only reported
# ------------------------------------------------------------------------------------------------------------
def test_every_check_is_ok_while_beat_sweeps(db):
    notification_services.deliveries_sweep()  # what beat has a worker run every few seconds

    assert ready() == (200, {"status": "ok", "checks": ALL_OK})


def test_beat_that_never_ran_is_stale_and_the_server_stays_in_rotation(db):
    assert ready() == (200, {"status": "degraded", "checks": {**ALL_OK, "beat": "stale"}})


def test_beat_whose_last_sweep_is_older_than_the_limit_is_stale(db, settings):
    settings.BEAT_STALE_AFTER_SECONDS = 120
    notification_services.deliveries_sweep()
    assert ready()[1]["checks"]["beat"] == "ok"

    # beat stopped three minutes ago
    Heartbeat.objects.update(beat_at=timezone.now() - timedelta(minutes=3))

    status, body = ready()
    assert status == 200
    assert body["status"] == "degraded" and body["checks"]["beat"] == "stale"


def test_keys_that_do_not_match_the_data_take_the_server_out_of_rotation(db, alice, settings):
    # alice's card is under keys wrapped by this server's KEK; it now runs with another (a restore, or a start, with
    # the wrong one): it can unwrap none of them
    assert client_for(alice.raw_key).post("/tokens", card_request(), format="json").status_code == 201
    notification_services.deliveries_sweep()
    assert ready()[0] == 200

    settings.VAULT_KEK = new_key()

    # and its provider does not hold the KEK the keys are wrapped under: out of reach, as far as this server goes
    assert ready() == (503, {"status": "down", "checks": {**ALL_OK, "keys": "down", "kek": "down"}})


def test_a_server_started_before_migrate_ran_is_out_of_rotation_until_it_has(db, settings):
    notification_services.deliveries_sweep()
    # The new release's server starts before `migrate` has applied its newest migration.
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM django_migrations WHERE app = 'backoffice' AND name = '0001_initial'")
    restart(settings)

    assert ready() == (503, {"status": "down", "checks": {**ALL_OK, "migrations": "pending"}})
    assert ready()[0] == 503  # asked again, not remembered

    with connection.cursor() as cursor:  # `migrate` has run
        cursor.execute(
            "INSERT INTO django_migrations (app, name, applied) VALUES ('backoffice', '0001_initial', %s)",
            [timezone.now()],
        )

    assert ready() == (200, {"status": "ok", "checks": ALL_OK})


def test_every_answer_holds_only_the_words_of_its_schema_so_no_secret_can_be_in_it(db, alice, settings, hsm):
    # Every check in every state it can be in here; each answer holds nothing but listed words, whatever the
    # failures' own messages say (an HSM's names its token and key, a database's its address).
    assert client_for(alice.raw_key).post("/tokens", card_request(), format="json").status_code == 201
    answers = [APIClient().get("/readyz"), APIClient().get("/healthz")]
    hsm.link = "down"
    restart(settings)
    answers.append(APIClient().get("/readyz"))
    settings.VAULT_KEK = new_key()
    answers.append(APIClient().get("/readyz"))

    for answer in answers:
        body = answer.json()
        assert set(body) <= {"status", "checks"}
        assert body["status"] in {"ok", "degraded", "down"}
        assert all(value in CHECKS[name] for name, value in body.get("checks", {}).items())
    assert answers[2].json()["checks"]["kek"] == "down" and answers[3].json()["checks"]["keys"] == "down"


# ------------------------------------------------------------------------------------------------------------
# The KEK provider: reported, never a reason to leave rotation; asked cheaply and never waited for long
# ------------------------------------------------------------------------------------------------------------
class NetworkHsm(LocalProvider):
    """A KEK provider across a network: ``link`` is ``up``, ``down`` (refused at once) or ``hanging`` (every call
    waits until the test lets it through); ``wraps`` counts the calls that reached it."""

    name = "network-hsm"
    link = "up"
    wraps = 0
    let_through = threading.Event()

    def __init__(self):
        super().__init__(base64.b64decode(django_settings.VAULT_KEK))

    def wrap(self, key):
        NetworkHsm.wraps += 1
        self._through_the_link()
        return super().wrap(key)

    def unwrap(self, kek_id, wrapped):
        self._through_the_link()
        return super().unwrap(kek_id, wrapped)

    def _through_the_link(self):
        if NetworkHsm.link == "hanging":
            NetworkHsm.let_through.wait(timeout=30)
        if NetworkHsm.link == "down":
            raise KekUnavailable("the HSM does not answer (connection refused)")


@pytest.fixture
def hsm(settings):
    """This server's KEK in NetworkHsm, its link up; whatever hangs is let through once the test ends."""
    settings.VAULT_KEK_PROVIDER = f"{__name__}.NetworkHsm"
    NetworkHsm.link, NetworkHsm.wraps = "up", 0
    NetworkHsm.let_through.clear()
    yield NetworkHsm
    NetworkHsm.link = "up"
    NetworkHsm.let_through.set()
    for thread in threading.enumerate():
        if thread.name == "kek-ask":  # a question let through: answered before the next test asks its own
            thread.join(timeout=10)


def test_an_hsm_out_of_reach_is_reported_and_the_server_holding_its_keys_stays_in_rotation(db, alice, hsm):
    assert client_for(alice.raw_key).post("/tokens", card_request(), format="json").status_code == 201
    notification_services.deliveries_sweep()

    hsm.link = "down"

    assert ready() == (200, {"status": "degraded", "checks": {**ALL_OK, "kek": "down"}})
    hsm.link = "up"
    # The last answer is kept a few seconds: the server asks its provider again after them.
    wait_for(lambda: ready() == (200, {"status": "ok", "checks": ALL_OK}), timeout=10)


def test_the_hsm_is_asked_once_however_often_the_load_balancer_asks(db, hsm):
    for _ in range(5):
        assert ready()[1]["checks"]["kek"] == "ok"

    assert hsm.wraps == 1


def test_an_hsm_that_hangs_is_down_within_the_timeout_and_is_not_called_again_while_it_hangs(db, hsm):
    hsm.link = "hanging"

    began = time.monotonic()
    first = ready()
    took = time.monotonic() - began
    again = [ready() for _ in range(3)]

    assert first[1]["checks"]["kek"] == "down" and first[0] == 200
    assert KEK_TIMEOUT <= took < 10  # not the 30 s the call hangs for
    assert all(answer[1]["checks"]["kek"] == "down" for answer in again)
    assert hsm.wraps == 1  # one call stuck, and no other piled up behind it

    hsm.link = "up"
    hsm.let_through.set()
    wait_for(lambda: ready()[1]["checks"]["kek"] == "ok", timeout=10)


def test_a_metrics_scrape_reads_an_hsm_that_hangs_as_unavailable_within_the_timeout(db, hsm):
    assert Scrape.of().value("tokenvault_kek_available", provider="network-hsm") == 1
    hsm.link = "hanging"
    time.sleep(KEK_PROBE_SECONDS)  # the answer above is kept this long

    began = time.monotonic()
    scrapes = [Scrape.of() for _ in range(3)]
    took = time.monotonic() - began

    assert [scrape.value("tokenvault_kek_available", provider="network-hsm") for scrape in scrapes] == [0, 0, 0]
    assert KEK_TIMEOUT <= took < 10  # not the 30 s the call hangs for (nor a question each: the wraps below)
    assert hsm.wraps == 2  # the first scrape's, and the one stuck: no other piled up behind it
    assert ready()[1]["checks"]["kek"] == "down"  # /readyz waits for the same question, not a second one
    assert hsm.wraps == 2

    hsm.link = "up"
    hsm.let_through.set()
    wait_for(lambda: Scrape.of().value("tokenvault_kek_available", provider="network-hsm") == 1, timeout=10)


# ------------------------------------------------------------------------------------------------------------
# Real servers: what a load balancer sees when the broker or the database is away
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_a_broker_that_is_down_is_reported_at_once_and_the_server_stays_in_rotation(tmp_path):
    env = {"DATABASE_URL": database_url(), "CELERY_BROKER_URL": f"redis://127.0.0.1:{free_port()}/0"}
    with api_server(env=env, log=capture_path("health-api.log", fallback=tmp_path)) as (url, _):
        began = time.monotonic()
        response = requests.get(f"{url}/readyz", timeout=10)
        took = time.monotonic() - began
        live = requests.get(f"{url}/healthz", timeout=10)

    assert response.status_code == 200
    assert response.json() == {"status": "degraded", "checks": {**ALL_OK, "broker": "down", "beat": "stale"}}
    # One refused connection, not a retrying one (kombu retries a broker forever by default): a fresh server's first
    # answer on a busy machine takes a few seconds at most.
    assert took < 8
    assert live.status_code == 200


def test_a_server_whose_database_is_down_is_alive_and_out_of_rotation(tmp_path):
    env = {"DATABASE_URL": f"postgres://postgres@127.0.0.1:{free_port()}/nowhere"}
    with api_server(env=env, log=capture_path("health-no-database.log", fallback=tmp_path)) as (url, _):
        live = requests.get(f"{url}/healthz", timeout=10)
        response = requests.get(f"{url}/readyz", timeout=10)

    assert live.status_code == 200 and live.json() == {"status": "ok"}
    assert response.status_code == 503
    assert response.json() == {
        "status": "down",
        "checks": {**ALL_OK, "database": "down", "keys": "unknown", "migrations": "unknown", "beat": "unknown"},
    }


# ------------------------------------------------------------------------------------------------------------
# A real worker with beat: the heartbeat comes from beat's schedule, and its routine lines stay out of INFO
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.celery
def test_a_running_beat_makes_readiness_ok_and_its_every_few_seconds_lines_are_not_logged_at_info(
    transactional_db, alice
):
    assert ready()[1]["checks"]["beat"] == "stale"
    start = WORKER_LOG.stat().st_size if WORKER_LOG.exists() else 0
    with Receiver() as receiver:
        endpoint = notification_services.endpoint_create(merchant=alice, url=receiver.url)
        worker = start_celery_worker(beat=True, env={"WEBHOOK_SWEEP_INTERVAL_SECONDS": "1"})
        try:
            wait_for(lambda: ready()[1]["checks"]["beat"] == "ok", timeout=60)
            # a task that is not periodic (the fan-out, which sends this one delivery itself): its lines stay at INFO
            notification_services.event_emit(merchant=alice, type="token.deleted", data={"tokenId": "0" * 19})
            receiver.wait_for_requests(1, timeout=30)
            wait_for(lambda: endpoint.deliveries.filter(status="SUCCEEDED").exists(), timeout=30)
            wait_for(
                lambda: (
                    "notifications.tasks.fan_out_events[" in _log_since(start) and " succeeded in " in _log_since(start)
                ),
                timeout=30,
            )
        finally:
            stop_celery_worker(worker)

    assert ready()[0] == 200
    lines = [line for line in _log_since(start).splitlines() if line.startswith("{")]  # log records, not the banner
    fan_out = r'"level": "INFO".*notifications\.tasks\.fan_out_events\[.*\] succeeded'
    assert any(re.search(fan_out, line) for line in lines)
    routine = [
        line
        for line in lines
        if re.search(r"notifications\.tasks\.sweep_deliveries|networks\.tasks\.dispatch_batches|Sending due task", line)
    ]
    assert routine == []


def _log_since(offset: int) -> str:
    with open(WORKER_LOG, "rb") as log:
        log.seek(offset)
        return log.read().decode("utf-8", "replace")
