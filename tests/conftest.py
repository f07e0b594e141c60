"""Actors and helpers shared by the suite.

alice is a merchant with the default scopes; bob is another merchant who must see none of alice's tokens;
carol is alice's payment processor key, the only one allowed to detokenize.
"""

import copy
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from django.db import connection
from rest_framework.test import APIClient

from vault import services

ROOT = Path(__file__).resolve().parent.parent

# Public test card numbers (card networks' and processors' documentation): never real cards.
VISA = "4444333322221111"
VISA_2 = "4111111111111111"
MASTERCARD = "5555555555554444"
MASTERCARD_2_SERIES = "2223003122003222"
AMEX = "378282246310005"
DISCOVER = "6011111111111117"
DINERS = "36227206271667"
JCB = "3530111333300000"
UNIONPAY = "6200000000000005"
MAESTRO = "6759649826438453"

SHERLOCK = {
    "description": "Test Token Description",
    "paymentInstrument": {
        "type": "card/front",
        "cardHolderName": "Sherlock Holmes",
        "cardNumber": VISA,
        "cardExpiryDate": {"month": 5, "year": 2035},
        "billingAddress": {
            "address1": "221B Baker Street",
            "address2": "Marylebone",
            "address3": "Westminster",
            "postalCode": "NW1 6XE",
            "city": "London",
            "state": "Greater London",
            "countryCode": "GB",
        },
    },
}


def card_request(**changes) -> dict:
    """The seed's create-a-token body; ``changes`` replace top-level or paymentInstrument keys (None removes)."""
    body = copy.deepcopy(SHERLOCK)
    instrument = body["paymentInstrument"]
    for key, value in changes.items():
        target = instrument if key in instrument or key in ("cardNumber", "billingAddress") else body
        if value is None:
            target.pop(key, None)
        else:
            target[key] = value
    return body


def client_for(raw_key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    return client


@pytest.fixture(autouse=True)
def _postgres_tests_fail_loudly_elsewhere(request):
    if request.node.get_closest_marker("postgres") and connection.vendor != "postgresql":
        pytest.fail("this test needs PostgreSQL: run it through `make test` (its second pass) or set DATABASE_URL")


@pytest.fixture
def alice(db):
    merchant, key = services.merchant_create(name="Alice's Shop")
    merchant.raw_key = key
    return merchant


@pytest.fixture
def bob(db):
    merchant, key = services.merchant_create(name="Bob's Bikes")
    merchant.raw_key = key
    return merchant


@pytest.fixture
def api(alice) -> APIClient:
    """alice's client: scopes tokens, network-tokens, webhooks (no detokenize)."""
    return client_for(alice.raw_key)


@pytest.fixture
def bob_api(bob) -> APIClient:
    return client_for(bob.raw_key)


@pytest.fixture
def carol_api(alice) -> APIClient:
    """alice's payment processor: a key of alice's with the detokenize scope."""
    _, raw = services.api_key_create(merchant=alice, scopes=["tokens", "tokens:detokenize"], name="processor")
    return client_for(raw)


@pytest.fixture
def tokenize(api):
    """POST /tokens as alice; returns the response."""

    def post(body=None, client=None, **changes):
        return (client or api).post("/tokens", body if body is not None else card_request(**changes), format="json")

    return post


def path_of(href: str) -> str:
    return "/" + href.split("/", 3)[3]


# ------------------------------------------------------------------------------------------------------------
# A real Celery worker on the real broker (CELERY_BROKER_URL, a Redis server started by `make test`).
# ------------------------------------------------------------------------------------------------------------
def start_celery_worker(*, beat: bool = False, env: dict | None = None, concurrency: int = 1) -> subprocess.Popen:
    """A real ``celery worker`` process on the real broker, using the test database; ``beat`` embeds the scheduler,
    ``concurrency`` above 1 runs that many threads.

    Call it inside a test that uses the transactional database, so the worker sees what the test committed.
    """
    broker = os.environ.get("CELERY_BROKER_URL", "")
    if not broker.startswith("redis://"):
        pytest.fail("this test needs a real Redis broker: run it through `make test` or set CELERY_BROKER_URL")
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        database_url = f"sqlite:///{db['NAME']}"
    else:
        database_url = f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    pool = ["--pool=solo"] if concurrency == 1 else ["--pool=threads", f"--concurrency={concurrency}"]
    command = [sys.executable, "-m", "celery", "-A", "config", "worker", *pool, "--loglevel=INFO",
               "--without-gossip", "--without-mingle", "--without-heartbeat"]
    if beat:
        command += ["--beat", "--schedule", os.path.join(tempfile.mkdtemp(), "beat-schedule")]
    (ROOT / "var").mkdir(exist_ok=True)
    log = open(ROOT / "var" / "test-worker.log", "ab")
    full_env = {**os.environ, "DATABASE_URL": database_url, "DJANGO_SETTINGS_MODULE": "config.settings.test",
                **(env or {})}
    # Its own process group: an embedded beat or pool child dies with it (see kill_celery_worker).
    return subprocess.Popen(command, cwd=ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


def kill_celery_worker(process: subprocess.Popen) -> None:
    """SIGKILL, as a crash: the worker and every process it started (beat, pool), with no chance to clean up."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def stop_celery_worker(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
    kill_celery_worker(process)  # whatever of its group is still there


@pytest.fixture
def celery_worker_process(transactional_db):
    process = start_celery_worker()
    yield process
    stop_celery_worker(process)


def wait_for(predicate, *, timeout: float = 30.0, interval: float = 0.1):
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    pytest.fail(f"condition not met within {timeout}s")
