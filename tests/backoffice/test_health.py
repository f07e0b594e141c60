"""``/healthz``: the database and the keys decide whether this server serves (503 when it cannot); the broker and
beat are reported for monitoring (``degraded``, still 200), and beat's periodic tasks keep quiet at INFO.

Actors (tests/conftest.py): alice is a merchant whose token makes the keys' check values part of the data; the
load balancer and the monitoring are anonymous clients of ``/healthz``. The broker is the run's real Redis.
"""

import os
import re
import time
from datetime import timedelta

import pytest
import requests
from django.utils import timezone
from rest_framework.test import APIClient

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
from tests.project.test_drills import api_server, free_port
from tests.receiver import Receiver


@pytest.fixture(autouse=True)
def real_broker():
    if not os.environ.get("CELERY_BROKER_URL", "").startswith("redis://"):
        pytest.fail("/healthz checks the real broker: run it through `make test` or set CELERY_BROKER_URL")


def health():
    response = APIClient().get("/healthz")
    return response.status_code, response.json()


def test_every_check_is_ok_while_beat_sweeps(db):
    notification_services.deliveries_sweep()  # what beat has a worker run every few seconds

    assert health() == (200, {"status": "ok", "checks": {"database": "ok", "keys": "ok", "broker": "ok", "beat": "ok"}})


def test_beat_that_never_ran_is_stale_and_the_server_stays_in_rotation(db):
    assert health() == (
        200,
        {"status": "degraded", "checks": {"database": "ok", "keys": "ok", "broker": "ok", "beat": "stale"}},
    )


def test_beat_whose_last_sweep_is_older_than_the_limit_is_stale(db, settings):
    settings.BEAT_STALE_AFTER_SECONDS = 120
    notification_services.deliveries_sweep()
    assert health()[1]["checks"]["beat"] == "ok"

    # beat stopped three minutes ago
    Heartbeat.objects.update(beat_at=timezone.now() - timedelta(minutes=3))

    status, body = health()
    assert status == 200
    assert body["status"] == "degraded" and body["checks"]["beat"] == "stale"


def test_keys_that_do_not_match_the_data_take_the_server_out_of_rotation(db, alice, settings):
    # alice's card is under keys wrapped by this server's KEK; it now runs with another (a restore, or a start, with
    # the wrong one): it can unwrap none of them
    assert client_for(alice.raw_key).post("/tokens", card_request(), format="json").status_code == 201
    notification_services.deliveries_sweep()
    assert health()[0] == 200

    settings.VAULT_KEK = new_key()

    assert health() == (
        503,
        {"status": "down", "checks": {"database": "ok", "keys": "down", "broker": "ok", "beat": "ok"}},
    )


@pytest.mark.django_db(transaction=True)
def test_a_broker_that_is_down_is_reported_at_once_and_the_server_stays_in_rotation(tmp_path):
    env = {"DATABASE_URL": database_url(), "CELERY_BROKER_URL": f"redis://127.0.0.1:{free_port()}/0"}
    with api_server(env=env, log=capture_path("health-api.log", fallback=tmp_path)) as (url, _):
        began = time.monotonic()
        response = requests.get(f"{url}/healthz", timeout=10)
        took = time.monotonic() - began

    assert response.status_code == 200
    assert response.json() == {
        "status": "degraded",
        "checks": {"database": "ok", "keys": "ok", "broker": "down", "beat": "stale"},
    }
    assert took < 3


# ------------------------------------------------------------------------------------------------------------
# A real worker with beat: the heartbeat comes from beat's schedule, and its routine lines stay out of INFO
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.celery
def test_a_running_beat_makes_health_ok_and_its_every_few_seconds_lines_are_not_logged_at_info(transactional_db, alice):
    assert health()[1]["checks"]["beat"] == "stale"
    start = WORKER_LOG.stat().st_size if WORKER_LOG.exists() else 0
    with Receiver() as receiver:
        endpoint = notification_services.endpoint_create(merchant=alice, url=receiver.url)
        worker = start_celery_worker(beat=True, env={"WEBHOOK_SWEEP_INTERVAL_SECONDS": "1"})
        try:
            wait_for(lambda: health()[1]["checks"]["beat"] == "ok", timeout=60)
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

    assert health()[0] == 200
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
