"""The card a shopper types in a capture session's form (``POST /capture/{id}/card``, posted by the vault's frame):
tokenized by exactly the rules of ``POST /tokens``, one card a session, 5 failed submissions at most, for 15 minutes.

alice (the ``api`` fixture) opens the sessions for her checkout page; the shopper (``shopper``) is a browser with no
API key, holding the session's id and client secret as alice's page gave them; mallory is someone who knows a
session's id (it is in the page) but not its secret.
"""

import threading
from datetime import timedelta

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from rest_framework.test import APIClient

from core.models import AuditLog
from notifications import services as notification_services
from notifications.models import Delivery
from tests.cards import distinct_card_numbers
from tests.conftest import AMEX, MASTERCARD, SHERLOCK, VISA, VISA_2, card_request, events_of, path_of
from vault import capture, services
from vault.models import CaptureSession, Token

SHOP = "https://shop.example"


@pytest.fixture
def shopper() -> APIClient:
    """The shopper's browser (the vault's frame in it): no API key."""
    return APIClient()


mallory = shopper  # a browser like any other: what she lacks is the secret


@pytest.fixture
def session(api) -> dict:
    """A session alice opened for her checkout page: its id and clientSecret as her page has them."""
    response = api.post("/capture-sessions", {"origin": SHOP}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def card(secret: str | None, *, number: str = VISA, holder: str = "Sherlock Holmes", month=5, year=2035) -> dict:
    body = {"cardNumber": number, "cardExpiryDate": {"month": month, "year": year}, "cardHolderName": holder}
    if secret is not None:
        body["clientSecret"] = secret
    return body


def submit(client, session: dict, body: dict, **extra):
    return client.post(f"/capture/{session['id']}/card", body, format="json", **extra)


def failures(session: dict) -> int:
    return CaptureSession.objects.get(public_id=session["id"]).failed_submissions


def error_name(response) -> str:
    return response.json()["errorName"]


def refusals(response) -> list[tuple[str, str]]:
    assert response.status_code == 400, response.content[:300]
    assert error_name(response) == "bodyDoesNotMatchSchema"
    return [(item["errorName"], item["jsonPath"]) for item in response.json()["validationErrors"]]


# ------------------------------------------------------------------------------------------------------------
# 201, 200, 409: as POST /tokens
# ------------------------------------------------------------------------------------------------------------
def test_the_shoppers_card_becomes_alices_token(api, alice, session, shopper):
    response = submit(shopper, session, card(session["clientSecret"]))

    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == {"type", "tokenId", "href", "outcome", "paymentInstrument"}
    assert body["type"] == "vault.token" and body["outcome"] == "created"
    token = api.get(path_of(body["href"]))
    assert token.status_code == 200
    assert token.json()["tokenId"] == body["tokenId"]
    # The masked card exactly as /tokens shows it.
    assert body["paymentInstrument"] == token.json()["paymentInstrument"]
    assert body["paymentInstrument"]["cardNumber"] == "4444********1111"
    assert Token.objects.get(token_id=body["tokenId"]).merchant == alice


def test_the_token_is_made_with_the_sessions_namespace_and_description(api, shopper):
    opened = api.post(
        "/capture-sessions",
        {"origin": SHOP, "namespace": "SHOPPER_42", "description": "Order 1234"},
        format="json",
    ).json()

    created = submit(shopper, opened, card(opened["clientSecret"])).json()

    token = api.get(path_of(created["href"])).json()
    assert token["namespace"] == "SHOPPER_42"
    assert token["description"] == "Order 1234"
    listed = api.get("/tokens", {"namespace": "SHOPPER_42"}).json()["_embedded"]["tokens"]
    assert [item["tokenId"] for item in listed] == [created["tokenId"]]


def test_without_a_description_the_token_gets_the_default_one_as_post_tokens_gives(api, session, shopper):
    created = submit(shopper, session, card(session["clientSecret"], number=MASTERCARD)).json()

    assert api.get(path_of(created["href"])).json()["description"] == "Mastercard card ending 4444"


def test_a_card_alice_holds_with_the_same_details_is_matched_200(api, session, shopper):
    held = api.post("/tokens", card_request(billingAddress=None), format="json").json()

    response = submit(shopper, session, card(session["clientSecret"]))

    assert response.status_code == 200, response.content
    assert response.json()["outcome"] == "matched"
    assert response.json()["tokenId"] == held["tokenId"]
    assert Token.objects.count() == 1
    assert api.get(f"/capture-sessions/{session['id']}").json()["outcome"] == "matched"


def test_a_card_alice_holds_without_an_address_given_is_still_matched(api, session, shopper):
    """The form sends no billing address: an absent optional field keeps the stored one (POST /tokens' rule)."""
    held = api.post("/tokens", SHERLOCK, format="json").json()

    response = submit(shopper, session, card(session["clientSecret"]))

    assert response.status_code == 200
    assert response.json()["tokenId"] == held["tokenId"]


def test_a_card_alice_holds_with_other_details_is_a_conflict_409_with_the_existing_token(api, session, shopper):
    held = api.post("/tokens", card_request(cardHolderName="John Watson"), format="json").json()

    response = submit(shopper, session, card(session["clientSecret"]))

    assert response.status_code == 409, response.content
    body = response.json()
    assert body["outcome"] == "conflict" and body["tokenId"] == held["tokenId"]
    assert body["paymentInstrument"]["cardHolderName"] == "John Watson"  # stored data kept
    conflicts = api.get(path_of(body["href"]) + "/conflicts").json()["conflicts"]
    assert conflicts["paymentInstrument"] == {"cardHolderName": "Sherlock Holmes"}
    assert api.get(f"/capture-sessions/{session['id']}").json()["outcome"] == "conflict"


def test_a_full_namespace_refuses_the_card_as_post_tokens_does_without_counting_a_failure(alice, api, shopper):
    for number in distinct_card_numbers("400000", 16):
        services.card_tokenize(merchant=alice, card=services.Card(number, "Holder", 5, 2035), namespace="FAMILY")
    opened = api.post("/capture-sessions", {"origin": SHOP, "namespace": "FAMILY"}, format="json").json()

    response = submit(shopper, opened, card(opened["clientSecret"]))

    assert response.status_code == 400
    assert error_name(response) == "namespaceCardLimitReached"
    assert failures(opened) == 0
    assert api.get(f"/capture-sessions/{opened['id']}").json()["status"] == "open"


def test_the_token_created_event_and_its_webhook_are_those_of_post_tokens(
    api, session, shopper, broker, django_capture_on_commit_callbacks
):
    endpoint = api.post("/webhook-endpoints", {"url": "http://127.0.0.1:9/hook"}, format="json").json()
    by_api = api.post("/tokens", card_request(cardNumber=VISA_2), format="json").json()

    with django_capture_on_commit_callbacks(execute=True):
        captured = submit(shopper, session, card(session["clientSecret"])).json()

    assert broker.args_of("fan_out_events"), "the event is announced to the dispatcher, as POST /tokens' is"
    notification_services.events_fan_out()
    events = {event["tokenId"]: event for event in events_of(api, "token.created")}
    assert set(events) == {by_api["tokenId"], captured["tokenId"]}
    assert set(events[captured["tokenId"]]) == set(events[by_api["tokenId"]])
    assert VISA not in str(events[captured["tokenId"]])
    deliveries = Delivery.objects.filter(endpoint__public_id=endpoint["id"], event__type="token.created")
    assert deliveries.count() == 2


# ------------------------------------------------------------------------------------------------------------
# One card a session
# ------------------------------------------------------------------------------------------------------------
def test_a_second_card_in_the_same_session_is_refused(api, session, shopper):
    first = submit(shopper, session, card(session["clientSecret"]))

    second = submit(shopper, session, card(session["clientSecret"], number=MASTERCARD))

    assert first.status_code == 201
    assert second.status_code == 409
    assert error_name(second) == "captureSessionCompleted"
    assert set(second.json()) == {"errorName", "message", "requestId"}
    assert Token.objects.count() == 1
    assert api.get(f"/capture-sessions/{session['id']}").json()["tokenId"] == first.json()["tokenId"]


def test_the_same_card_again_in_the_same_session_is_refused_too(session, shopper):
    submit(shopper, session, card(session["clientSecret"]))

    again = submit(shopper, session, card(session["clientSecret"]))

    assert again.status_code == 409 and error_name(again) == "captureSessionCompleted"


def test_the_database_refuses_a_completed_session_without_its_card(alice):
    opened, _ = capture.capture_session_create(merchant=alice, origin=SHOP)

    with pytest.raises(IntegrityError), transaction.atomic():
        CaptureSession.objects.filter(pk=opened.pk).update(completed_at=timezone.now(), outcome="created")
    with pytest.raises(IntegrityError), transaction.atomic():
        CaptureSession.objects.filter(pk=opened.pk).update(failed_submissions=6)


def test_a_card_resent_with_its_idempotency_key_gets_its_first_answer_not_a_refusal(session, shopper):
    """The frame lost the answer (a dropped connection) and sends the card again under the same key."""
    body = card(session["clientSecret"])
    first = submit(shopper, session, body, HTTP_IDEMPOTENCY_KEY="frame-7f3a")

    again = submit(shopper, session, body, HTTP_IDEMPOTENCY_KEY="frame-7f3a")

    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert Token.objects.count() == 1


def test_another_submission_under_the_same_idempotency_key_is_refused(session, shopper):
    key = {"HTTP_IDEMPOTENCY_KEY": "frame-7f3a"}
    submit(shopper, session, card(session["clientSecret"]), **key)

    other = submit(shopper, session, card(session["clientSecret"], number=MASTERCARD), **key)

    assert other.status_code == 422 and error_name(other) == "idempotencyKeyReused"
    assert Token.objects.count() == 1


# ------------------------------------------------------------------------------------------------------------
# The card rules of POST /tokens; each refusal counts
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"number": "4444333322221112"}, [("panFailedLuhnCheck", "$.cardNumber")]),
        ({"number": "4444-3333-2222-1111"}, [("stringFailedRegexCheck", "$.cardNumber")]),
        ({"number": "44443333"}, [("stringIsTooShort", "$.cardNumber")]),
        ({"number": "4" * 20}, [("stringIsTooLong", "$.cardNumber")]),
        ({"number": "0" * 16}, [("fieldHasInvalidValue", "$.cardNumber")]),
        ({"holder": "H" * 256}, [("stringIsTooLong", "$.cardHolderName")]),
        ({"holder": f"Sherlock {VISA_2}"}, [("fieldContainsCardNumber", "$.cardHolderName")]),
        ({"month": 13}, [("integerIsTooLarge", "$.cardExpiryDate.month")]),
        ({"month": 0}, [("integerIsTooSmall", "$.cardExpiryDate.month")]),
        ({"year": 1999}, [("integerIsTooSmall", "$.cardExpiryDate.year")]),
        ({"year": 2100}, [("integerIsTooLarge", "$.cardExpiryDate.year")]),
        ({"month": 1, "year": 2020}, [("fieldHasInvalidValue", "$.cardExpiryDate")]),
    ],
    ids=[
        "luhn",
        "not-digits",
        "short",
        "long",
        "one-digit-repeated",
        "long-holder",
        "card-in-holder",
        "month-13",
        "month-0",
        "year-1999",
        "year-2100",
        "past",
    ],
)
def test_a_card_the_rules_refuse_is_400_with_the_names_of_post_tokens_and_counts(session, shopper, changes, expected):
    response = submit(shopper, session, card(session["clientSecret"], **changes))

    assert refusals(response) == expected
    assert failures(session) == 1
    assert not Token.objects.exists()
    assert VISA_2 not in response.content.decode()


def test_every_broken_rule_is_listed_at_once(session, shopper):
    response = submit(
        shopper, session, card(session["clientSecret"], number="4444333322221112", holder=" " * 256, month=13)
    )

    assert refusals(response) == [
        ("panFailedLuhnCheck", "$.cardNumber"),
        ("stringIsTooLong", "$.cardHolderName"),
        ("integerIsTooLarge", "$.cardExpiryDate.month"),
    ]
    assert failures(session) == 1


def test_the_shopper_may_correct_a_refused_card(session, shopper):
    submit(shopper, session, card(session["clientSecret"], number="4444333322221112"))

    response = submit(shopper, session, card(session["clientSecret"]))

    assert response.status_code == 201
    assert failures(session) == 1


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"cvv": "123"}, [("unrecognizedField", "$.cvv")]),
        ({"paymentInstrument": {}}, [("unrecognizedField", "$.paymentInstrument")]),
        ({"cardNumber": 4444333322221111}, [("fieldMustBeString", "$.cardNumber")]),
        ({"cardExpiryDate": {"month": "05", "year": 2035}}, [("fieldMustBeInteger", "$.cardExpiryDate.month")]),
        ({"cardExpiryDate": {"month": 5, "year": 2035, "day": 1}}, [("unrecognizedField", "$.cardExpiryDate.day")]),
        ({"cardExpiryDate": "05/35"}, [("fieldMustBeObject", "$.cardExpiryDate")]),
        ({"cardHolderName": None}, [("fieldIsNull", "$.cardHolderName")]),
        ({"cardHolderName": ""}, [("fieldIsEmpty", "$.cardHolderName")]),
        ({"cardNumber": ""}, [("fieldIsEmpty", "$.cardNumber")]),
    ],
    ids=[
        "cvv",
        "payment-instrument",
        "number-not-a-string",
        "month-a-string",
        "day",
        "expiry-string",
        "null-holder",
        "empty-holder",
        "empty-number",
    ],
)
def test_a_body_of_the_wrong_shape_is_refused_before_the_secret_is_looked_at(session, shopper, body, expected):
    """Unknown fields are refused as by POST /tokens (a CVV above all: the vault never takes one)."""
    response = submit(shopper, session, {**card(session["clientSecret"]), **body})

    assert refusals(response) == expected
    assert failures(session) == 0
    assert not Token.objects.exists()


def test_a_missing_card_field_is_refused_by_name(session, shopper):
    body = card(session["clientSecret"])
    del body["cardNumber"]

    assert refusals(submit(shopper, session, body)) == [("fieldIsMissing", "$.cardNumber")]


def test_a_body_that_is_not_json_is_refused(session, shopper):
    response = shopper.post(f"/capture/{session['id']}/card", "{not json", content_type="application/json")

    assert response.status_code == 400 and error_name(response) == "bodyIsNotJson"


# ------------------------------------------------------------------------------------------------------------
# The client secret
# ------------------------------------------------------------------------------------------------------------
def test_a_wrong_secret_is_401_counted_and_audited_as_a_failed_authentication(alice, session, mallory):
    response = submit(mallory, session, card("guessed-secret"), REMOTE_ADDR="203.0.113.66")

    assert response.status_code == 401
    assert error_name(response) == "accessDenied"
    assert failures(session) == 1
    assert not Token.objects.exists()
    row = AuditLog.objects.get(action="auth.failed")
    assert (row.result, row.object_type, row.object_id) == ("failure", "capture_session", session["id"])
    assert row.merchant == alice and row.origin == "203.0.113.66"
    assert row.detail == {"reason": "wrong client secret"}
    everything = str(list(AuditLog.objects.values_list()))
    assert "guessed-secret" not in everything and session["clientSecret"] not in everything


@pytest.mark.parametrize("secret", [None, ""], ids=["missing", "empty"])
def test_a_missing_secret_is_401_and_counted(session, mallory, secret):
    response = submit(mallory, session, card(secret))

    assert response.status_code == 401 and error_name(response) == "accessDenied"
    assert failures(session) == 1
    assert AuditLog.objects.get(action="auth.failed").detail == {"reason": "no client secret"}


def test_another_sessions_secret_does_not_open_this_one(api, session, mallory):
    other = api.post("/capture-sessions", {"origin": SHOP}, format="json").json()

    response = submit(mallory, session, card(other["clientSecret"]))

    assert response.status_code == 401
    assert failures(session) == 1


def test_a_wrong_secret_is_judged_before_anything_else_about_the_session(api, session, mallory, shopper):
    submit(shopper, session, card(session["clientSecret"]))  # completed

    response = submit(mallory, session, card("guessed-secret"))

    assert response.status_code == 401  # not 409: without the secret nothing of the session is told


def test_an_unknown_session_is_404(db, shopper):
    response = shopper.post("/capture/cs_nothing_at_all/card", card("whatever"), format="json")

    assert response.status_code == 404 and error_name(response) == "resourceNotFound"


# ------------------------------------------------------------------------------------------------------------
# Five failures lock the session
# ------------------------------------------------------------------------------------------------------------
def test_five_failed_submissions_lock_the_session_even_for_the_right_secret_and_a_good_card(
    api, session, mallory, shopper
):
    for _ in range(3):
        assert submit(mallory, session, card("guessed-secret")).status_code == 401
    for _ in range(2):
        assert submit(shopper, session, card(session["clientSecret"], number="4444333322221112")).status_code == 400

    locked = submit(shopper, session, card(session["clientSecret"]))

    assert locked.status_code == 403
    assert error_name(locked) == "captureSessionLocked"
    assert not Token.objects.exists()
    assert failures(session) == 5
    row = AuditLog.objects.get(action="capture_session.locked")
    assert row.object_id == session["id"] and row.detail == {"failedSubmissions": 5}
    assert api.get(f"/capture-sessions/{session['id']}").json()["status"] == "locked"


def test_a_locked_session_still_answers_a_wrong_secret_with_401_and_counts_no_further(session, mallory):
    for _ in range(5):
        submit(mallory, session, card("guessed-secret"))

    response = submit(mallory, session, card("guessed-secret"))

    assert response.status_code == 401
    assert failures(session) == 5
    assert AuditLog.objects.filter(action="auth.failed").count() == 6


# ------------------------------------------------------------------------------------------------------------
# Fifteen minutes
# ------------------------------------------------------------------------------------------------------------
def test_an_expired_session_is_410_and_takes_no_card(session, shopper):
    CaptureSession.objects.filter(public_id=session["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))

    response = submit(shopper, session, card(session["clientSecret"]))

    assert response.status_code == 410
    assert error_name(response) == "captureSessionExpired"
    assert not Token.objects.exists()
    assert failures(session) == 0


# ------------------------------------------------------------------------------------------------------------
# The card in clear: only in the request that carries it
# ------------------------------------------------------------------------------------------------------------
def test_the_card_number_is_nowhere_but_masked(api, session, shopper):
    numbers = [VISA, MASTERCARD, AMEX]
    answers = [submit(shopper, session, card("guessed-secret", number=AMEX))]
    answers.append(submit(shopper, session, card(session["clientSecret"], number=MASTERCARD, month=13)))
    answers.append(submit(shopper, session, card(session["clientSecret"])))
    answers.append(submit(shopper, session, card(session["clientSecret"], number=MASTERCARD)))
    answers.append(api.get(f"/capture-sessions/{session['id']}"))

    for answer in answers:
        assert not any(number in answer.content.decode() for number in numbers), answer.content
    rows = str(list(CaptureSession.objects.values_list())) + str(list(AuditLog.objects.values_list()))
    assert not any(number in rows for number in numbers)


def test_a_refusal_of_the_service_never_holds_the_number(alice):
    opened, secret = capture.capture_session_create(merchant=alice, origin=SHOP)

    with pytest.raises(capture.ValuesRefused) as refused:
        capture.capture_session_submit(
            public_id=opened.public_id,
            client_secret=secret,
            card_number="4444333322221112",
            holder_name=f"S {VISA}",
            expiry_month=5,
            expiry_year=2035,
        )

    assert "4444333322221112" not in repr(refused.value) and VISA not in repr(refused.value)


# ------------------------------------------------------------------------------------------------------------
# Rate limits: the merchant's general limit over its sessions, the card-data limit per client
# ------------------------------------------------------------------------------------------------------------
def test_submissions_count_against_the_general_limit_of_the_sessions_merchant(alice, api, session, shopper):
    alice.api_rate_limit = "3/minute"
    alice.save(update_fields=["api_rate_limit"])
    for address in ("203.0.113.1", "203.0.113.2", "203.0.113.3"):
        assert submit(shopper, session, card("guessed"), REMOTE_ADDR=address).status_code == 401

    refused = submit(shopper, session, card(session["clientSecret"]), REMOTE_ADDR="203.0.113.4")

    assert refused.status_code == 429
    assert error_name(refused) == "tooManyRequests"
    assert int(refused["Retry-After"]) >= 1
    assert not Token.objects.exists()
    row = AuditLog.objects.get(action="api.rate_limited")
    assert (row.merchant, row.object_id, row.detail["limit"]) == (alice, session["id"], "api")
    # alice's own key is counted apart: her servers are not held back by her shoppers.
    assert api.get(f"/capture-sessions/{session['id']}").status_code == 200


def test_one_client_is_held_to_the_merchants_card_data_rate(alice, api, shopper):
    alice.card_data_rate_limit = "2/minute"
    alice.save(update_fields=["card_data_rate_limit"])
    first, second, third = (api.post("/capture-sessions", {"origin": SHOP}, format="json").json() for _ in range(3))
    submit(shopper, first, card("guessed"), REMOTE_ADDR="203.0.113.9")
    submit(shopper, second, card("guessed"), REMOTE_ADDR="203.0.113.9")

    refused = submit(shopper, third, card(third["clientSecret"]), REMOTE_ADDR="203.0.113.9")
    another_client = submit(shopper, third, card(third["clientSecret"]), REMOTE_ADDR="198.51.100.7")

    assert refused.status_code == 429 and error_name(refused) == "tooManyRequests"
    assert another_client.status_code == 201
    assert AuditLog.objects.get(action="api.rate_limited").detail["limit"] == "card-data"


# ------------------------------------------------------------------------------------------------------------
# Concurrency (PostgreSQL): the session's row lock decides, never two cards
# ------------------------------------------------------------------------------------------------------------
def race(session: dict, bodies: list[dict]) -> list[int]:
    """Send ``bodies`` to the session at once, one thread and one database connection each."""
    barrier = threading.Barrier(len(bodies))
    statuses: list[int] = [0] * len(bodies)

    def send(index: int):
        client = APIClient()
        client.raise_request_exception = False
        try:
            barrier.wait()
            # Each its own address: the client limit is not what this is about.
            statuses[index] = submit(client, session, bodies[index], REMOTE_ADDR=f"203.0.113.{index + 1}").status_code
        finally:
            connection.close()

    threads = [threading.Thread(target=send, args=(index,)) for index in range(len(bodies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_cards_submitted_at_once_to_one_session_capture_exactly_one(api, session):
    numbers = distinct_card_numbers("400000", 8)
    statuses = race(session, [card(session["clientSecret"], number=number) for number in numbers])

    assert sorted(statuses) == [201] + [409] * 7
    assert Token.objects.count() == 1
    stored = CaptureSession.objects.get(public_id=session["id"])
    assert stored.token == Token.objects.get() and stored.outcome == "created"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_wrong_secrets_sent_at_once_count_to_five_and_no_further(session):
    statuses = race(session, [card(f"guess-{index}") for index in range(12)])

    assert statuses == [401] * 12
    assert failures(session) == 5
    assert AuditLog.objects.filter(action="capture_session.locked").count() == 1
