"""``X-Request-Id`` (core.request_id): every answer has one, the client's when it is safe and a made one otherwise, and
the same id is in the request's log lines, its audit rows, its error body and the log lines of the task it queued.

alice is a merchant tokenizing cards; carol is her payment processor, who detokenizes (an audited call). The log
lines are read as the console handler writes them: through ``StructuredFormatter``, formatted as they are emitted.
"""

import json
import logging
import re
import uuid

import pytest
import requests

from core.logging import StructuredFormatter
from core.models import AuditLog
from core.request_id import current_request_id
from merchants.models import Merchant
from tests.conftest import (
    VISA,
    WORKER_LOG,
    card_request,
    database_url,
    path_of,
    start_celery_worker,
    stop_celery_worker,
    wait_for,
)
from tests.project.test_drills import api_server

MADE = re.compile(r"[0-9a-f]{32}")
NOT_LUHN = "4111111111111112"  # a test card number with its last digit changed

# What a client may send that is not taken: each is replaced by a made id, and never echoed, logged or stored.
UNSAFE = [
    "a" * 129,
    "trace id",
    "trace<script>",
    "",
    f"order-{VISA}",
    "order.4111.1111.1111.1111",
    f"0.{VISA}",
]
UNSAFE_IDS = ["too-long", "a-space", "markup", "empty", "card-number", "card-number-in-dotted-groups", "decimal"]


def json_lines(text: str) -> list[dict]:
    """The structured lines of a process's output (its other lines are Python's warnings and the like)."""
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@pytest.fixture
def log_lines(caplog):
    """The structured lines written from here on, as dicts."""
    caplog.handler.setFormatter(StructuredFormatter())
    caplog.set_level(logging.INFO)
    return lambda: [json.loads(line) for line in caplog.text.splitlines()]


@pytest.fixture
def token_path(tokenize) -> str:
    """alice's token for the seed's card."""
    response = tokenize()
    assert response.status_code == 201, response.content
    return path_of(response.json()["tokenPaymentInstrument"]["href"])


def from_a_host_not_served(client, settings, **headers):
    """A request whose Host header this server does not serve: a 400 in the error shape, and a WARNING line of
    ``django.security`` written while the request is handled."""
    settings.ALLOWED_HOSTS = ["testserver"]
    response = client.get("/tokens", HTTP_HOST="scanner.example", **headers)
    assert response.status_code == 400 and response.json()["errorName"] == "hostNotAllowed", response.content
    return response


# ------------------------------------------------------------------------------------------------------------
# The header
# ------------------------------------------------------------------------------------------------------------
def test_a_safe_id_sent_by_the_client_is_the_answers(api):
    response = api.get("/tokens", HTTP_X_REQUEST_ID="checkout-7f3a:attempt.2_b")

    assert response.status_code == 200
    assert response["X-Request-Id"] == "checkout-7f3a:attempt.2_b"


def test_without_an_id_each_request_gets_a_made_one_of_its_own(api):
    first, second = api.get("/tokens"), api.get("/tokens")

    assert MADE.fullmatch(first["X-Request-Id"]) and MADE.fullmatch(second["X-Request-Id"])
    assert first["X-Request-Id"] != second["X-Request-Id"]


def test_every_answer_has_an_id_refusals_and_the_admins_pages_included(client, api):
    answers = [
        client.get("/tokens"),  # 401: no API key
        api.get("/no-such-endpoint"),  # 404 endpointNotFound
        api.put("/tokens", {}, format="json"),  # 405
        client.get("/admin/login/"),  # an HTML page
        client.get("/healthz"),
    ]

    assert all(MADE.fullmatch(answer.get("X-Request-Id", "")) for answer in answers), [
        (answer.status_code, answer.get("X-Request-Id")) for answer in answers
    ]


@pytest.mark.parametrize("unsafe", UNSAFE, ids=UNSAFE_IDS)
def test_an_unsafe_id_is_replaced_and_appears_nowhere(unsafe, token_path, carol_api, client, settings, log_lines):
    detokenized = carol_api.post(f"{token_path}/detokenize", HTTP_X_REQUEST_ID=unsafe)
    refused = from_a_host_not_served(client, settings, HTTP_X_REQUEST_ID=unsafe)

    assert detokenized.status_code == 200
    assert MADE.fullmatch(detokenized["X-Request-Id"]) and MADE.fullmatch(refused["X-Request-Id"])
    assert refused.json()["requestId"] == refused["X-Request-Id"]
    if unsafe:
        assert unsafe not in json.dumps([dict(detokenized.headers), dict(refused.headers), refused.json()])
        assert unsafe not in json.dumps(log_lines())
        assert not AuditLog.objects.filter(request_id__contains=unsafe).exists()
    [row] = AuditLog.objects.filter(action="token.detokenize")
    assert row.request_id == detokenized["X-Request-Id"]
    assert {line.get("request_id") for line in log_lines() if line["logger"].startswith("django.security")} == {
        refused["X-Request-Id"]
    }


# ------------------------------------------------------------------------------------------------------------
# Log lines and audit rows
# ------------------------------------------------------------------------------------------------------------
def test_the_log_lines_of_a_request_carry_its_id_and_no_other_lines_do(client, settings, log_lines):
    from_a_host_not_served(client, settings, HTTP_X_REQUEST_ID="first-request")
    from_a_host_not_served(client, settings, HTTP_X_REQUEST_ID="second-request")
    logging.getLogger("tests.request_ids").warning("written between requests")

    lines = log_lines()
    security = [line for line in lines if line["logger"].startswith("django.security")]
    assert [line.get("request_id") for line in security] == ["first-request", "second-request"], security
    [between] = [line for line in lines if line["logger"] == "tests.request_ids"]
    assert "request_id" not in between
    assert current_request_id() is None  # the request's context ended with it


def test_the_audit_rows_of_a_request_carry_its_id_and_staff_find_them_by_it(token_path, carol_api, clerk):
    request_id = f"support-case-{uuid.uuid4().hex[:8]}"

    assert carol_api.post(f"{token_path}/detokenize", HTTP_X_REQUEST_ID=request_id).status_code == 200
    assert carol_api.post(f"{token_path}/detokenize").status_code == 200

    rows = AuditLog.objects.filter(action="token.detokenize").order_by("pk")
    assert rows[0].request_id == request_id
    assert MADE.fullmatch(rows[1].request_id)
    found = clerk.get("/admin/core/auditlog/", {"q": request_id})
    assert found.status_code == 200
    assert list(found.context["cl"].result_list) == [rows[0]]
    assert request_id in found.content.decode()  # the list shows the id


# ------------------------------------------------------------------------------------------------------------
# Error bodies
# ------------------------------------------------------------------------------------------------------------
def test_every_error_body_names_the_request_it_answers(alice, api, client):
    def error(response, status: int) -> dict:
        assert response.status_code == status, (response.status_code, response.content[:300])
        return response.json()

    bodies = {
        "bodyDoesNotMatchSchema": error(
            api.post("/tokens", card_request(cardNumber=NOT_LUHN), format="json", HTTP_X_REQUEST_ID="req-400"),
            400,
        ),
        "accessDenied": error(client.get("/tokens", HTTP_X_REQUEST_ID="req-401"), 401),
        "resourceNotFound": error(api.get("/tokens/no-such-token", HTTP_X_REQUEST_ID="req-404"), 404),
        "endpointNotFound": error(api.get("/no-such-endpoint", HTTP_X_REQUEST_ID="req-404e"), 404),
    }
    Merchant.objects.filter(pk=alice.pk).update(api_rate_limit="1/minute")
    api.get("/tokens")
    bodies["tooManyRequests"] = error(api.get("/tokens", HTTP_X_REQUEST_ID="req-429"), 429)

    assert {name: (body["errorName"], body["requestId"]) for name, body in bodies.items()} == {
        "bodyDoesNotMatchSchema": ("bodyDoesNotMatchSchema", "req-400"),
        "accessDenied": ("accessDenied", "req-401"),
        "resourceNotFound": ("resourceNotFound", "req-404"),
        "endpointNotFound": ("endpointNotFound", "req-404e"),
        "tooManyRequests": ("tooManyRequests", "req-429"),
    }


# ------------------------------------------------------------------------------------------------------------
# Through the whole stack: gunicorn, and a Celery worker
# ------------------------------------------------------------------------------------------------------------
def test_gunicorn_answers_with_the_id_and_writes_it_in_its_access_line(transactional_db, tmp_path):
    log = tmp_path / "gunicorn.log"

    with api_server(env={"DATABASE_URL": database_url()}, log=log) as (url, _):
        kept = requests.get(f"{url}/tokens", headers={"X-Request-Id": "edge-proxy-1"}, timeout=10)
        replaced = requests.get(f"{url}/tokens", headers={"X-Request-Id": f"order-{VISA}"}, timeout=10)

    assert kept.status_code == 401 and kept.headers["X-Request-Id"] == "edge-proxy-1"
    assert kept.json()["requestId"] == "edge-proxy-1"
    assert MADE.fullmatch(replaced.headers["X-Request-Id"]) and VISA not in replaced.text
    text = log.read_text()
    assert VISA not in text
    access = [line for line in json_lines(text) if line["logger"] == "gunicorn.access"]
    by_id = {line.get("request_id"): line["message"] for line in access}
    assert "GET /tokens" in by_id["edge-proxy-1"], access
    assert "GET /tokens" in by_id[replaced.headers["X-Request-Id"]], access


@pytest.mark.celery
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_task_a_request_queued_runs_under_the_requests_id(api):
    # Eight hex digits: twelve would be all decimal once in 280 draws, an id the vault rightly refuses as card-like.
    request_id = f"async-{uuid.uuid4().hex[:8]}"
    worker = start_celery_worker()
    try:
        card = {"cardNumber": VISA, "cardExpiryDate": {"month": 5, "year": 2035}, "cardHolderName": "Sherlock Holmes"}
        response = api.post(
            "/network-tokens/async",
            {"card": card},
            format="json",
            HTTP_X_REQUEST_ID=request_id,
            HTTP_X_CORRELATION_ID="checkout-7f3a",
        )
        assert response.status_code == 202, response.content

        def task_lines():
            lines = [line for line in json_lines(WORKER_LOG.read_text()) if line.get("request_id") == request_id]
            return [line for line in lines if "succeeded" in line["message"]] and lines

        lines = wait_for(task_lines, timeout=120)  # the worker's start-up included
    finally:
        stop_celery_worker(worker)

    assert any("run_provisioning_request" in line["message"] for line in lines), lines
