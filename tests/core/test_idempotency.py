"""``Idempotency-Key`` on every POST of the API (DESIGN.md, "Idempotency"): a repeat gets the first answer and the
work is not done again; another request under the same key is 422, a repeat while the first runs is 409; a failure
of ours (5xx) keeps nothing, so the retry is served; keys are per merchant, live 24 hours, and their answers are
kept encrypted.

Actors (tests/conftest.py): alice is the merchant who retries her requests; bob another merchant who happens to use
the same keys; carol is alice's payment processor key, the one that may detokenize. The TSP simulators are the
product and run for real.
"""

import json
import threading
from io import StringIO

import pytest
import yaml
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from core import tasks
from core.idempotency import idempotent_request_claim, request_fingerprint
from core.models import AuditLog, IdempotentRequest
from networks.models import NetworkToken
from notifications.models import WebhookEndpoint
from tests.conftest import MASTERCARD, VISA, card_request, client_for, events_of, path_of, wait_for
from vault.models import Token

KEY = "order-1138-attempt"
HOOK = {"url": "http://127.0.0.1:9/hooks"}
CORRELATION = {"X-Correlation-Id": "checkout-7f3a"}


def with_key(key=KEY, **headers) -> dict:
    return {"headers": {"Idempotency-Key": key, **headers}}


def network_card(number=MASTERCARD) -> dict:
    return {"card": {"cardNumber": number, "cardExpiryDate": {"month": 5, "year": 2035}}}


def claim_left_running(merchant, *, path: str, body: dict, key: str = KEY) -> IdempotentRequest:
    """What a process that died while serving the request leaves behind: its claim on the key, still running."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    fingerprint = request_fingerprint(method="POST", path=path, body=canonical)
    return idempotent_request_claim(merchant_id=merchant.pk, key=key, fingerprint=fingerprint).row


def error_name(response) -> str:
    return response.json()["errorName"]


# ------------------------------------------------------------------------------------------------------------
# A repeat gets the first answer, and nothing is done twice
# ------------------------------------------------------------------------------------------------------------
def test_a_repeated_tokenize_answers_the_first_201_without_a_second_token_or_event(api, alice):
    first = api.post("/tokens", card_request(), format="json", **with_key())
    repeat = api.post("/tokens", card_request(), format="json", **with_key())

    assert first.status_code == repeat.status_code == 201, repeat.content  # not the 200 of a token found again
    assert repeat.content == first.content
    assert repeat["Content-Type"] == first["Content-Type"] == "application/hal+json"
    assert repeat["Idempotent-Replayed"] == "true" and not first.has_header("Idempotent-Replayed")
    assert Token.objects.filter(merchant=alice).count() == 1
    assert len(events_of(api, "token.created")) == 1


def test_without_a_key_a_repeat_is_served_again(api):
    assert api.post("/tokens", card_request(), format="json").status_code == 201
    assert api.post("/tokens", card_request(), format="json").status_code == 200


def test_the_same_json_spaced_and_ordered_otherwise_is_the_same_request(api, alice):
    first = api.post("/tokens", card_request(), format="json", **with_key())
    body = json.dumps(dict(reversed(list(card_request().items()))), indent=2)

    repeat = api.post("/tokens", body, content_type="application/json", **with_key())

    assert repeat.status_code == 201 and repeat.json()["tokenId"] == first.json()["tokenId"]
    assert Token.objects.filter(merchant=alice).count() == 1


def test_a_webhook_endpoint_made_twice_with_one_key_is_one_endpoint_with_one_secret(api, alice):
    first = api.post("/webhook-endpoints", HOOK, format="json", **with_key())
    repeat = api.post("/webhook-endpoints", HOOK, format="json", **with_key())

    assert first.status_code == repeat.status_code == 201, repeat.content
    assert repeat.json()["secret"] == first.json()["secret"]
    assert repeat.json()["id"] == first.json()["id"]
    assert WebhookEndpoint.objects.filter(merchant=alice).count() == 1


def test_a_refusal_is_kept_like_a_success(api):
    first = api.post("/tokens", card_request(cardNumber="4444333322221112"), format="json", **with_key())
    repeat = api.post("/tokens", card_request(cardNumber="4444333322221112"), format="json", **with_key())

    assert first.status_code == repeat.status_code == 400
    assert repeat.content == first.content and repeat["Idempotent-Replayed"] == "true"


# ------------------------------------------------------------------------------------------------------------
# Another request under the key, a repeat too early
# ------------------------------------------------------------------------------------------------------------
def test_the_key_with_another_body_answers_422_idempotency_key_reused(api, alice):
    api.post("/tokens", card_request(), format="json", **with_key())

    response = api.post("/tokens", card_request(cardHolderName="John Watson"), format="json", **with_key())

    assert response.status_code == 422
    assert error_name(response) == "idempotencyKeyReused"
    assert Token.objects.get(merchant=alice).card_holder_name == "Sherlock Holmes"


def test_the_key_on_another_path_answers_422(api, alice):
    api.post("/tokens", card_request(), format="json", **with_key())

    response = api.post("/webhook-endpoints", HOOK, format="json", **with_key())

    assert response.status_code == 422 and error_name(response) == "idempotencyKeyReused"
    assert not WebhookEndpoint.objects.filter(merchant=alice).exists()


def test_a_repeat_while_the_first_still_runs_answers_409_request_in_progress(api, alice):
    claim_left_running(alice, path="/tokens", body=card_request())

    response = api.post("/tokens", card_request(), format="json", **with_key())

    assert response.status_code == 409
    assert error_name(response) == "requestInProgress"
    assert not Token.objects.filter(merchant=alice).exists()


def test_an_abandoned_claim_is_taken_over_by_the_next_repeat(api, alice, settings):
    claim_left_running(alice, path="/webhook-endpoints", body=HOOK)
    settings.IDEMPOTENCY_ABANDONED_AFTER = 0  # the claim is older than that: its process died

    taken_over = api.post("/webhook-endpoints", HOOK, format="json", **with_key())
    repeat = api.post("/webhook-endpoints", HOOK, format="json", **with_key())

    assert taken_over.status_code == 201, taken_over.content
    assert repeat.status_code == 201 and repeat.json()["id"] == taken_over.json()["id"]
    assert WebhookEndpoint.objects.filter(merchant=alice).count() == 1


def test_a_failure_of_ours_keeps_nothing_and_the_retry_is_served(api, alice, settings):
    settings.TSP_SIMULATOR = False  # no token service configured: 503, nothing done
    failed = api.post("/network-tokens", network_card(), format="json", **with_key(**CORRELATION))
    assert failed.status_code == 503 and error_name(failed) == "networkNotConfigured"
    assert not IdempotentRequest.objects.exists()

    settings.TSP_SIMULATOR = True
    retried = api.post("/network-tokens", network_card(), format="json", **with_key(**CORRELATION))
    repeat = api.post("/network-tokens", network_card(), format="json", **with_key(**CORRELATION))

    assert retried.status_code == repeat.status_code == 201, retried.content
    assert repeat.json()["tokenId"] == retried.json()["tokenId"]  # Mastercard gives a new tokenId every time
    assert NetworkToken.objects.count() == 1


def test_a_network_that_failed_is_asked_again_but_not_one_that_may_have_acted(api, settings):
    settings.TSP_FAILURE_RATE = 1.0  # each call fails, half of them as timeouts (504), the others at once (502)
    answers = {}
    for attempt in range(40):
        response = api.post(
            "/network-tokens", network_card(), format="json", **with_key(f"try-{attempt}", **CORRELATION)
        )
        answers.setdefault(response.status_code, f"try-{attempt}")
        if {502, 504} <= set(answers):
            break
    settings.TSP_FAILURE_RATE = 0.0

    refused = api.post("/network-tokens", network_card(), format="json", **with_key(answers[502], **CORRELATION))
    timed_out = api.post("/network-tokens", network_card(), format="json", **with_key(answers[504], **CORRELATION))

    assert refused.status_code == 201  # nothing was done: the retry does it
    assert timed_out.status_code == 504 and timed_out["Idempotent-Replayed"] == "true"
    assert error_name(timed_out) == "networkUnavailable"


# ------------------------------------------------------------------------------------------------------------
# Keys: per merchant, well formed, 24 hours
# ------------------------------------------------------------------------------------------------------------
def test_bobs_same_key_is_his_own(api, bob_api, alice, bob):
    mine = api.post("/tokens", card_request(), format="json", **with_key())
    his = bob_api.post("/tokens", card_request(cardHolderName="Bob Bicycle"), format="json", **with_key())

    assert mine.status_code == his.status_code == 201, his.content
    assert his.json()["tokenId"] != mine.json()["tokenId"]
    assert his.json()["paymentInstrument"]["cardHolderName"] == "Bob Bicycle"


@pytest.mark.parametrize(
    ("key", "name"),
    [
        ("", "fieldIsEmpty"),
        ("k" * 256, "stringIsTooLong"),
        ("clé", "stringFailedRegexCheck"),
        ("tab\there", "stringFailedRegexCheck"),
        (f"order {VISA}", "fieldContainsCardNumber"),  # kept in clear: never a card number
    ],
    ids=["empty", "too long", "not ascii", "control character", "card number"],
)
def test_a_malformed_key_answers_400_and_does_nothing(api, alice, key, name):
    response = api.post("/tokens", card_request(), format="json", HTTP_IDEMPOTENCY_KEY=key)

    assert response.status_code == 400
    assert error_name(response) == "bodyDoesNotMatchSchema"
    assert [(item["errorName"], item["jsonPath"]) for item in response.json()["validationErrors"]] == [
        (name, "$.headers.Idempotency-Key")
    ]
    assert VISA not in response.content.decode()
    assert not Token.objects.filter(merchant=alice).exists()


def test_a_key_of_255_printable_characters_is_taken(api):
    key = ("~ !" * 85)[:255]
    assert api.post("/tokens", card_request(), format="json", **with_key(key)).status_code == 201
    assert api.post("/tokens", card_request(), format="json", **with_key(key)).status_code == 201


def test_expired_keys_are_free_again_and_purged_by_the_periodic_task(api, alice, settings):
    day, settings.IDEMPOTENCY_KEY_TTL = settings.IDEMPOTENCY_KEY_TTL, 0  # a day went by
    api.post("/webhook-endpoints", HOOK, format="json", **with_key("old"))
    settings.IDEMPOTENCY_KEY_TTL = day
    api.post("/webhook-endpoints", HOOK, format="json", **with_key("recent"))

    assert tasks.purge_expired_idempotency_keys.apply().get() == 1

    assert list(IdempotentRequest.objects.values_list("key", flat=True)) == ["recent"]
    again = api.post("/tokens", card_request(), format="json", **with_key("old"))
    assert again.status_code == 201  # another request, served: the key's day is over


def test_an_expired_key_not_yet_purged_is_free_again(api, alice, settings):
    day, settings.IDEMPOTENCY_KEY_TTL = settings.IDEMPOTENCY_KEY_TTL, 0
    api.post("/webhook-endpoints", HOOK, format="json", **with_key())
    settings.IDEMPOTENCY_KEY_TTL = day

    response = api.post("/tokens", card_request(), format="json", **with_key())

    assert response.status_code == 201, response.content
    row = IdempotentRequest.objects.get()  # the key's second day, for the second request
    assert row.status == 201 and row.expires_at > timezone.now()


# ------------------------------------------------------------------------------------------------------------
# The stored answers are encrypted
# ------------------------------------------------------------------------------------------------------------
def table_text() -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {IdempotentRequest._meta.db_table}")
        rows = cursor.fetchall()
    return repr(rows) + "".join(
        bytes(value).hex() for row in rows for value in row if isinstance(value, bytes | memoryview)
    )


def test_no_card_number_or_secret_is_kept_in_clear(api, carol_api, alice):
    token = api.post("/tokens", card_request(), format="json").json()
    detokenize = f"{path_of(token['tokenPaymentInstrument']['href'])}/detokenize"
    first = carol_api.post(detokenize, **with_key("pay-1"))
    endpoint = api.post("/webhook-endpoints", HOOK, format="json", **with_key("hook-1")).json()

    stored = table_text()

    assert first.status_code == 200 and first.json()["paymentInstrument"]["cardNumber"] == VISA
    assert IdempotentRequest.objects.filter(state=IdempotentRequest.DONE).count() == 2
    for secret in (VISA, VISA.encode().hex(), endpoint["secret"], endpoint["secret"].encode().hex()):
        assert secret not in stored


def test_a_replayed_detokenize_gives_the_card_again_and_is_audited(api, carol_api, alice):
    token = api.post("/tokens", card_request(), format="json").json()
    detokenize = f"{path_of(token['tokenPaymentInstrument']['href'])}/detokenize"

    first = carol_api.post(detokenize, **with_key("pay-1"))
    repeat = carol_api.post(detokenize, **with_key("pay-1"))

    assert repeat.status_code == 200 and repeat.content == first.content
    assert repeat["Cache-Control"] == "no-store"
    assert AuditLog.objects.filter(action="idempotency.replayed", merchant=alice).count() == 1


def test_rotate_keys_re_encrypts_the_stored_answers_and_they_still_replay(api, alice):
    first = api.post("/webhook-endpoints", HOOK, format="json", **with_key())
    assert IdempotentRequest.objects.get().key_version == 1

    call_command("rotate_keys", "--new-dek", stdout=StringIO(), stderr=StringIO())

    assert IdempotentRequest.objects.get().key_version == 2
    repeat = api.post("/webhook-endpoints", HOOK, format="json", **with_key())
    assert repeat.status_code == 201 and repeat.json()["secret"] == first.json()["secret"]


# ------------------------------------------------------------------------------------------------------------
# The schema
# ------------------------------------------------------------------------------------------------------------
def test_every_post_documents_the_header_and_its_answers(tmp_path):
    target = tmp_path / "schema.yaml"  # validated as a whole by tests/core/test_openapi.py
    call_command("spectacular", "--file", str(target), stdout=StringIO())
    schema = yaml.safe_load(target.read_text())

    posts = [(path, methods["post"]) for path, methods in schema["paths"].items() if "post" in methods]
    assert len(posts) > 5
    for path, operation in posts:
        header = [p for p in operation.get("parameters", []) if p["name"] == "Idempotency-Key"]
        assert header and header[0]["in"] == "header" and header[0]["required"] is False, path
        assert {"400", "409", "422"} <= set(operation["responses"]), path
    conflict = schema["paths"]["/tokens"]["post"]["responses"]["409"]["content"]["application/hal+json"]["schema"]
    assert [shape["$ref"].rsplit("/", 1)[1] for shape in conflict["oneOf"]] == ["TokenOutput", "ErrorOutput"]


# ------------------------------------------------------------------------------------------------------------
# Two requests at once (threads, PostgreSQL)
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_concurrent_repeat_answers_409_and_the_work_is_done_once(alice, settings):
    settings.TSP_LATENCY_MS = "1500"  # the network is slow: the first request is still running
    answers = {}

    def first_request():
        client = client_for(alice.raw_key)
        try:
            answers["first"] = client.post("/network-tokens", network_card(), format="json", **with_key(**CORRELATION))
        finally:
            connection.close()

    thread = threading.Thread(target=first_request)
    thread.start()
    wait_for(lambda: IdempotentRequest.objects.filter(key=KEY).exists(), timeout=10, interval=0.02)
    client = client_for(alice.raw_key)
    during = client.post("/network-tokens", network_card(), format="json", **with_key(**CORRELATION))
    thread.join()
    after = client.post("/network-tokens", network_card(), format="json", **with_key(**CORRELATION))

    assert during.status_code == 409 and error_name(during) == "requestInProgress"
    assert answers["first"].status_code == after.status_code == 201
    assert after.json()["tokenId"] == answers["first"].json()["tokenId"]
    assert NetworkToken.objects.count() == 1
