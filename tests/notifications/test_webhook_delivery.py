"""Webhook delivery end to end: the outbox, signed attempts to a real HTTP receiver, retries, leases, the sweeper.

Actors (tests/conftest.py): alice is a merchant with the default scopes; bob is another merchant who must see none
of alice's events; carol is alice's payment processor key (detokenize). ``receiver`` is a real HTTP server on
loopback (tests/receiver.py) standing for alice's webhook consumer.

A request writes its event only; the dispatcher (``services.events_fan_out``, run by a worker for the
``fan_out_events`` message sent once the event committed, or by the sweeper) makes its deliveries. The tests run the
dispatcher as a worker would (``fan_out``): in tests on the ``db`` fixture the test's transaction never commits, and
the events are visible to it in that same transaction. Attempts are driven by calling ``services.delivery_attempt``
directly and made due by editing ``next_attempt_at``. The broker is outside the product: what the product queues is
recorded by the shared ``broker`` stub (tests/conftest.py), except in the tests marked ``celery``, which run a real
worker on the real Redis broker. Signatures are checked with the Standard Webhooks library, never with our own
signing code.
"""

import contextlib
import json
import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.db import OperationalError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from notifications import services, tasks
from notifications.models import Delivery, DeliveryAttempt, Event, WebhookEndpoint
from tests.conftest import MASTERCARD, VISA, card_request, client_for, path_of, wait_for
from tests.receiver import Receiver, Reply
from vault import services as vault_services
from vault.models import Token

DEFAULT_SCHEDULE = [5, 300, 1800, 7200, 18000, 36000, 36000]


# ------------------------------------------------------------------------------------------------------------
# Fixtures and helpers
# ------------------------------------------------------------------------------------------------------------
SHERLOCKS_CARD = vault_services.Card(VISA, "Sherlock Holmes", 5, 2035)
FAN_OUT = "notifications.tasks.fan_out_events"


@pytest.fixture
def receiver():
    """alice's webhook consumer: a real HTTP server on 127.0.0.1, answering 204 unless told otherwise."""
    with Receiver() as server:
        yield server


@pytest.fixture
def endpoint(alice, receiver):
    """alice's endpoint for every event type, pointing at ``receiver``."""
    return services.endpoint_create(merchant=alice, url=receiver.url)


def fan_out() -> int:
    """The dispatcher, as a worker runs it for a ``fan_out_events`` message: the deliveries of the new events."""
    return services.events_fan_out()


def deliver_messages(broker) -> list[list[int]]:
    """The delivery ids of each ``deliver`` message the product sent, in order."""
    return [list(ids) for (ids,) in broker.args_of("deliver")]


def delivery_for(endpoint, type="token.created") -> Delivery:
    return Delivery.objects.select_related("event").get(endpoint=endpoint, event__type=type)


def emit_many(merchant, count: int, type="token.created") -> list[Event]:
    """``count`` events of ``merchant``, written in one transaction (not fanned out yet)."""
    with transaction.atomic():
        return [services.event_emit(merchant=merchant, type=type, data={"tokenId": f"T{n:04d}"}) for n in range(count)]


def pending_ids(endpoint) -> list[int]:
    return list(
        Delivery.objects.filter(endpoint=endpoint, status=Delivery.PENDING).order_by("pk").values_list("pk", flat=True)
    )


def make_due(delivery: Delivery) -> None:
    """Move time on: the delivery's next attempt is due now."""
    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())


def attempt_now(delivery: Delivery) -> DeliveryAttempt | None:
    make_due(delivery)
    return services.delivery_attempt(delivery_id=delivery.pk)


def verified(secret: str, request) -> dict:
    """The payload, after the Standard Webhooks library (not our code) accepted the signature."""
    return Webhook(secret).verify(request.body, request.headers)


def seconds_until(moment: datetime) -> float:
    return (moment - timezone.now()).total_seconds()


# ------------------------------------------------------------------------------------------------------------
# What a delivery looks like
# ------------------------------------------------------------------------------------------------------------
def test_a_delivered_event_verifies_with_standard_webhooks_and_holds_the_token_but_never_the_card_number(
    endpoint, receiver, tokenize, api
):
    created = tokenize().json()
    fan_out()
    delivery = delivery_for(endpoint)

    attempt = services.delivery_attempt(delivery_id=delivery.pk)

    assert attempt is not None and attempt.succeeded
    [request] = receiver.requests
    assert request.method == "POST" and request.path == "/hook"
    assert request.headers["content-type"].startswith("application/json")
    assert request.headers["webhook-id"] == delivery.event.public_id
    payload = verified(endpoint.secret, request)
    assert set(payload) == {"type", "timestamp", "data"}
    assert payload["type"] == "token.created"
    sent_at = datetime.fromisoformat(payload["timestamp"].replace("Z", "+00:00"))
    assert abs((timezone.now() - sent_at).total_seconds()) < 60
    data = payload["data"]
    assert data["tokenId"] == created["tokenId"]
    assert data["href"] == created["tokenPaymentInstrument"]["href"]
    assert data["paymentInstrument"]["type"] == "card/masked"
    assert data["paymentInstrument"]["cardNumber"] == "4444********1111"
    assert VISA not in request.text
    # the signature covers the body: one byte changed and the library refuses it
    with pytest.raises(WebhookVerificationError):
        Webhook(endpoint.secret).verify(request.body.replace(b"token.created", b"token.deleted"), request.headers)
    delivery.refresh_from_db()
    assert delivery.status == Delivery.SUCCEEDED and delivery.delivered_at is not None
    shown = api.get(f"/events/{delivery.event.public_id}").json()
    assert [(d["status"], d["attempts"]) for d in shown["deliveries"]] == [("SUCCEEDED", 1)]


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_any_2xx_answer_is_a_success(endpoint, receiver, tokenize, status):
    receiver.always(Reply(status))
    tokenize()
    fan_out()

    attempt = services.delivery_attempt(delivery_id=delivery_for(endpoint).pk)

    assert attempt.succeeded and attempt.status_code == status
    assert delivery_for(endpoint).status == Delivery.SUCCEEDED


@pytest.mark.parametrize("status", [400, 404, 429, 500, 503])
def test_any_other_answer_is_a_failure_that_is_retried(endpoint, receiver, tokenize, status):
    receiver.always(Reply(status))
    tokenize()
    fan_out()

    attempt = services.delivery_attempt(delivery_id=delivery_for(endpoint).pk)

    assert not attempt.succeeded and attempt.status_code == status
    delivery = delivery_for(endpoint)
    assert delivery.status == Delivery.PENDING and delivery.next_attempt_at > timezone.now()


def test_a_receiver_failing_twice_then_succeeding_gets_the_event_on_the_third_attempt_with_the_same_webhook_id(
    endpoint, receiver, tokenize
):
    receiver.reply(
        Reply(500, body="boom"),
        Reply(500, body="still down", delay=0.2),
        Reply(200, body="x" * 50 * 1024),
    )
    tokenize()
    fan_out()
    delivery = delivery_for(endpoint)

    first = services.delivery_attempt(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    assert not first.succeeded
    assert delivery.status == Delivery.PENDING and delivery.next_attempt_at > timezone.now()
    attempt_now(delivery)
    attempt_now(delivery)

    requests = receiver.requests
    assert len(requests) == 3
    assert {r.headers["webhook-id"] for r in requests} == {delivery.event.public_id}
    assert len({r.body for r in requests}) == 1
    for request in requests:
        assert verified(endpoint.secret, request)["type"] == "token.created"
    delivery.refresh_from_db()
    assert delivery.status == Delivery.SUCCEEDED
    assert delivery.attempt_count == 3 and delivery.last_status_code == 200 and delivery.next_attempt_at is None
    attempts = list(DeliveryAttempt.objects.filter(delivery=delivery).order_by("number"))
    assert [a.number for a in attempts] == [1, 2, 3]
    assert [a.status_code for a in attempts] == [500, 500, 200]
    assert [a.succeeded for a in attempts] == [False, False, True]
    assert all(a.started_at is not None and 0 <= a.duration_ms < 5000 for a in attempts)
    assert attempts[1].duration_ms >= 200  # the receiver took 0.2 s over that one
    assert attempts[0].response_body == "boom"
    assert attempts[0].error == "HTTP 500"
    assert len(attempts[2].response_body) == 20 * 1024
    assert attempts[2].response_body == "x" * 20 * 1024


def test_a_receiver_that_hangs_is_cut_at_the_timeout(endpoint, receiver, tokenize, settings):
    settings.WEBHOOK_TIMEOUT_SECONDS = 1
    receiver.always(Reply(hang=True))
    tokenize()
    fan_out()
    delivery = delivery_for(endpoint)

    started = time.monotonic()
    attempt = services.delivery_attempt(delivery_id=delivery.pk)
    elapsed = time.monotonic() - started

    assert len(receiver.wait_for_requests(1)) == 1
    assert "timed out" in attempt.error
    assert attempt.status_code is None and not attempt.succeeded
    # Cut at the 1 s timeout, not after the hang (up to 60 s) or the default 15 s; the upper bounds leave room for a
    # loaded machine.
    assert 900 <= attempt.duration_ms <= 5000
    assert elapsed < 10
    delivery.refresh_from_db()
    assert delivery.status == Delivery.PENDING
    assert delivery.next_attempt_at > timezone.now()
    assert "timed out" in delivery.last_error


def test_a_receiver_that_stalls_in_the_middle_of_its_answer_is_cut_at_the_timeout_too(
    endpoint, receiver, tokenize, settings
):
    settings.WEBHOOK_TIMEOUT_SECONDS = 1
    receiver.always(Reply(200, body="x" * 1000, stall_after=10))
    tokenize()
    fan_out()
    delivery = delivery_for(endpoint)

    attempt = services.delivery_attempt(delivery_id=delivery.pk)

    assert "timed out" in attempt.error and not attempt.succeeded
    assert len(receiver.wait_for_requests(1)) == 1  # no second try on a fresh deadline
    assert 900 <= attempt.duration_ms <= 5000  # not the stall's 60 s, nor the default 15 s
    delivery.refresh_from_db()
    assert delivery.status == Delivery.PENDING and delivery.next_attempt_at > timezone.now()


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_is_a_failure_and_is_not_followed(endpoint, receiver, tokenize, status):
    with Receiver() as elsewhere:
        receiver.always(Reply(status, headers={"Location": elsewhere.url}))
        tokenize()
        fan_out()
        delivery = delivery_for(endpoint)

        attempt = services.delivery_attempt(delivery_id=delivery.pk)

        assert attempt.status_code == status and not attempt.succeeded
        assert "redirect" in attempt.error
        assert len(receiver.requests) == 1
        assert elsewhere.requests == []
    delivery.refresh_from_db()
    assert delivery.status == Delivery.PENDING and delivery.next_attempt_at > timezone.now()


def test_410_gone_disables_the_endpoint_and_fails_the_delivery(endpoint, receiver, tokenize):
    receiver.always(Reply(410))
    tokenize()
    fan_out()
    delivery = delivery_for(endpoint)

    attempt = services.delivery_attempt(delivery_id=delivery.pk)

    assert attempt.status_code == 410 and not attempt.succeeded
    endpoint.refresh_from_db()
    assert endpoint.is_enabled is False
    assert "410" in endpoint.disabled_reason
    assert endpoint.disabled_at is not None
    delivery.refresh_from_db()
    assert delivery.status == Delivery.FAILED and delivery.next_attempt_at is None
    # a disabled endpoint gets no deliveries for later events
    tokenize(cardNumber=MASTERCARD)
    fan_out()
    assert Delivery.objects.filter(endpoint=endpoint).count() == 1


# ------------------------------------------------------------------------------------------------------------
# The retry schedule, Retry-After, dead letters and replays
# ------------------------------------------------------------------------------------------------------------
def test_each_failed_attempt_waits_its_scheduled_time_with_jitter_then_the_delivery_is_a_replayable_dead_letter(
    endpoint, receiver, tokenize, settings, broker, django_capture_on_commit_callbacks
):
    schedule = list(settings.WEBHOOK_RETRY_SCHEDULE)
    assert schedule == DEFAULT_SCHEDULE
    receiver.always(Reply(500))
    tokenize()
    fan_out()
    delivery = delivery_for(endpoint)

    ratios = []
    for n, wait in enumerate(schedule, start=1):
        before = timezone.now()
        attempt = attempt_now(delivery)
        after = timezone.now()
        assert attempt.number == n and not attempt.succeeded
        delivery.refresh_from_db()
        assert delivery.status == Delivery.PENDING, f"after attempt {n}"
        # the wait was measured from a moment between before and after
        longest = (delivery.next_attempt_at - before).total_seconds()
        shortest = (delivery.next_attempt_at - after).total_seconds()
        assert 0.8 * wait - 0.01 <= longest and shortest <= 1.2 * wait + 0.01, f"after attempt {n}: {shortest}s"
        ratios.append(longest / wait)
    assert max(ratios) - min(ratios) > 0.01, f"no jitter: {ratios}"

    last = attempt_now(delivery)

    assert last.number == len(schedule) + 1
    delivery.refresh_from_db()
    assert delivery.status == Delivery.FAILED and delivery.next_attempt_at is None
    assert DeliveryAttempt.objects.filter(delivery=delivery).count() == len(schedule) + 1
    assert services.deliveries_sweep() == 0  # a dead letter is not retried by itself

    with django_capture_on_commit_callbacks(execute=True):
        replayed = services.deliveries_replay(deliveries=Delivery.objects.filter(pk=delivery.pk))

    assert replayed == 1
    assert broker.deliveries == [delivery.pk]
    delivery.refresh_from_db()
    assert delivery.status == Delivery.PENDING and delivery.attempt_count == 0
    assert delivery.next_attempt_at <= timezone.now()
    receiver.always(Reply(200))
    attempt = services.delivery_attempt(delivery_id=delivery.pk)
    assert attempt.succeeded
    delivery.refresh_from_db()
    assert delivery.status == Delivery.SUCCEEDED
    assert DeliveryAttempt.objects.filter(delivery=delivery).count() == len(schedule) + 2  # history kept
    assert {r.headers["webhook-id"] for r in receiver.requests} == {delivery.event.public_id}


def test_jitter_spreads_first_retries_of_many_deliveries(alice, receiver, settings):
    receiver.always(Reply(500))
    endpoints = [services.endpoint_create(merchant=alice, url=receiver.url) for _ in range(8)]
    vault_services.card_tokenize(merchant=alice, card=SHERLOCKS_CARD)
    fan_out()

    waits = []
    for endpoint in endpoints:
        delivery = delivery_for(endpoint)
        services.delivery_attempt(delivery_id=delivery.pk)
        delivery.refresh_from_db()
        waits.append(seconds_until(delivery.next_attempt_at))

    assert all(0.8 * 5 - 0.5 <= wait <= 1.2 * 5 for wait in waits), waits
    assert max(waits) - min(waits) > 0.05, f"every delivery waits the same: {waits}"


@pytest.mark.parametrize(
    "retry_after, expected",
    [
        ("120", 120),
        ("99999999999", 24 * 3600),  # absurd: bounded to a day
        ("0", 1),  # "now" still waits the minimum
    ],
)
def test_retry_after_replaces_the_scheduled_wait_within_bounds(endpoint, receiver, tokenize, retry_after, expected):
    receiver.always(Reply(503, headers={"Retry-After": retry_after}))
    tokenize()
    fan_out()
    delivery = delivery_for(endpoint)

    services.delivery_attempt(delivery_id=delivery.pk)

    delivery.refresh_from_db()
    assert delivery.status == Delivery.PENDING
    assert seconds_until(delivery.next_attempt_at) == pytest.approx(expected, abs=2)


def test_retry_after_as_an_http_date_is_honoured(endpoint, receiver, tokenize):
    at = timezone.now().astimezone(UTC) + timedelta(seconds=600)
    receiver.always(Reply(429, headers={"Retry-After": format_datetime(at, usegmt=True)}))
    tokenize()
    fan_out()
    delivery = delivery_for(endpoint)

    services.delivery_attempt(delivery_id=delivery.pk)

    delivery.refresh_from_db()
    assert seconds_until(delivery.next_attempt_at) == pytest.approx(600, abs=3)


# ------------------------------------------------------------------------------------------------------------
# Endpoints that keep failing
# ------------------------------------------------------------------------------------------------------------
def test_an_endpoint_failing_for_five_days_straight_is_disabled_and_says_why(endpoint, receiver, tokenize, api):
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(failing_since=timezone.now() - timedelta(days=5, minutes=1))
    receiver.always(Reply(500))
    tokenize()
    fan_out()

    services.delivery_attempt(delivery_id=delivery_for(endpoint).pk)

    endpoint.refresh_from_db()
    assert endpoint.is_enabled is False
    assert "5 days" in endpoint.disabled_reason
    assert endpoint.disabled_at is not None
    shown = api.get(f"/webhook-endpoints/{endpoint.public_id}").json()
    assert shown["enabled"] is False and shown["disabledReason"] == endpoint.disabled_reason


def test_an_endpoint_failing_for_less_than_five_days_stays_enabled(endpoint, receiver, tokenize):
    since = timezone.now() - timedelta(days=4, hours=23)
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(failing_since=since)
    receiver.always(Reply(500))
    tokenize()
    fan_out()

    services.delivery_attempt(delivery_id=delivery_for(endpoint).pk)

    endpoint.refresh_from_db()
    assert endpoint.is_enabled is True and endpoint.disabled_reason == ""
    assert endpoint.failing_since == since


def test_a_success_in_between_clears_the_failure_streak(endpoint, receiver, tokenize):
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(failing_since=timezone.now() - timedelta(days=4, hours=23))
    receiver.reply(Reply(200), Reply(500))
    tokenize()
    fan_out()

    services.delivery_attempt(delivery_id=delivery_for(endpoint).pk)

    endpoint.refresh_from_db()
    assert endpoint.failing_since is None
    tokenize(cardNumber=MASTERCARD)
    fan_out()
    services.delivery_attempt(delivery_id=Delivery.objects.filter(endpoint=endpoint).latest("pk").pk)
    endpoint.refresh_from_db()
    assert endpoint.is_enabled is True
    assert abs(seconds_until(endpoint.failing_since)) < 60  # a new streak, starting now


# ------------------------------------------------------------------------------------------------------------
# The outbox: a request writes its event, the dispatcher makes its deliveries once it committed
# ------------------------------------------------------------------------------------------------------------
def test_a_request_writes_its_event_only_and_the_dispatcher_makes_its_delivery(endpoint, tokenize):
    response = tokenize()

    event = Event.objects.get(type="token.created")
    assert event.data["tokenId"] == response.json()["tokenId"]
    assert event.fanned_out is False and not Delivery.objects.exists()

    assert fan_out() == 1

    event.refresh_from_db()
    assert event.fanned_out is True
    delivery = delivery_for(endpoint)
    assert delivery.event == event and delivery.status == Delivery.PENDING and delivery.attempt_count == 0
    # due now, and marked queued: its message goes out when the fan-out commits, and the sweeper leaves it alone
    assert delivery.next_attempt_at <= timezone.now() < delivery.queued_until
    assert fan_out() == 0


def outbox_statements(statements) -> list[str]:
    """What each captured statement on the notifications tables did, sorted: ``"event inserted"``, ``"endpoint
    checked"`` (whether the merchant has an enabled endpoint, one row at most), or the statement itself."""

    def kind(sql: str) -> str:
        if sql.startswith('INSERT INTO "notifications_event"'):
            return "event inserted"
        if sql.startswith('SELECT 1 AS "a" FROM "notifications_webhookendpoint"') and sql.endswith("LIMIT 1"):
            return "endpoint checked"
        return sql

    return sorted(kind(s["sql"]) for s in statements if '"notifications_' in s["sql"])


def test_a_tokenize_request_writes_its_event_and_no_delivery(endpoint, tokenize):
    with CaptureQueriesContext(connection) as statements:
        assert tokenize().status_code == 201

    # (the check is made at most every WEBHOOK_LISTENERS_TTL seconds per merchant: at every event in the tests)
    assert outbox_statements(statements) == ["endpoint checked", "event inserted"]


def test_emitting_an_event_costs_one_insert_and_at_most_one_endpoint_check_a_while(alice, bob, endpoint, settings):
    # The point of the dispatcher: a request pays for its event, however many endpoints listen; whether its
    # merchant has an endpoint at all (to announce the event to the dispatcher or not) is asked once in a while.
    settings.WEBHOOK_LISTENERS_TTL = 60
    services.endpoint_create(merchant=alice, url=endpoint.url)
    bobs = services.endpoint_create(merchant=bob, url=endpoint.url)
    services.endpoint_disable(endpoint=bobs, reason="Disabled by request")  # bob has none enabled

    def emitting(merchant, **data) -> list[str]:
        with CaptureQueriesContext(connection) as statements:
            services.event_emit(merchant=merchant, type="token.created", data=data)
        return outbox_statements(statements)

    with transaction.atomic():  # the caller's, as in the vault's services
        for merchant in (alice, bob):  # alice has two endpoints, bob none
            assert emitting(merchant, tokenId="T1") == ["endpoint checked", "event inserted"]
            for n in range(3):
                assert emitting(merchant, tokenId=f"T{n:04d}") == ["event inserted"]
        # a chunk of a network-token batch
        with CaptureQueriesContext(connection) as statements:
            services.events_emit(
                merchant=alice, type="network_token.created", data=[{"tokenId": f"T{n:04d}"} for n in range(50)]
            )
        assert outbox_statements(statements) == ["event inserted"]

    assert Event.objects.count() == 58 and not Delivery.objects.exists()


def test_a_fan_out_page_costs_the_same_few_statements_whatever_its_number_of_events(alice, bob, endpoint, receiver):
    deletes_only = services.endpoint_create(merchant=alice, url=receiver.url, event_types=["token.deleted"])
    bobs = services.endpoint_create(merchant=bob, url=receiver.url)
    statements_of = {}
    for count in (3, 30):
        with transaction.atomic():
            for n in range(count):  # alice's and bob's in turn, every third a token.deleted
                services.event_emit(
                    merchant=(alice, bob)[n % 2],
                    type="token.created" if n % 3 else "token.deleted",
                    data={"tokenId": f"T{n:04d}"},
                )
        with CaptureQueriesContext(connection) as statements:
            assert fan_out() == count
        statements_of[count] = [s["sql"] for s in statements if not s["sql"].startswith(("SAVEPOINT", "RELEASE"))]

    # the events, their merchants' endpoints, the deliveries, the events marked; the next page, empty
    assert len(statements_of[3]) == len(statements_of[30]) <= 5, statements_of[3]
    # alice's endpoint for every type gets each of her events, the other her token.deleted, bob's each of his
    counts = [Delivery.objects.filter(endpoint=e).count() for e in (endpoint, deletes_only, bobs)]
    assert counts == [2 + 15, 1 + 5, 1 + 15]


def test_an_event_whose_transaction_rolls_back_is_never_sent(
    alice, endpoint, receiver, broker, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError), transaction.atomic():
        vault_services.card_tokenize(merchant=alice, card=SHERLOCKS_CARD)
        raise RuntimeError("the change fails after its event was written")

    assert not Token.objects.exists()
    assert not Event.objects.exists()
    assert broker.sent == []  # not even a fan-out message
    assert fan_out() == 0
    assert services.deliveries_sweep() == 0
    assert not Delivery.objects.exists()
    assert broker.sent == []
    assert receiver.requests == []


def test_an_event_rolled_back_with_its_savepoint_gets_no_delivery_and_the_rest_of_the_transaction_does(
    alice, endpoint, broker, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        first = services.event_emit(merchant=alice, type="token.created", data={"tokenId": "T1"})
        with pytest.raises(RuntimeError), transaction.atomic():
            services.event_emit(merchant=alice, type="token.updated", data={"tokenId": "T2"})
            raise RuntimeError("the inner change fails")
        last = services.event_emit(merchant=alice, type="token.deleted", data={"tokenId": "T3"})
    assert broker.args_of("fan_out_events") != [] and broker.deliveries == []

    with django_capture_on_commit_callbacks(execute=True):
        assert fan_out() == 2

    assert [e.type for e in Event.objects.order_by("pk")] == ["token.created", "token.deleted"]
    assert deliver_messages(broker) == [[Delivery.objects.get(event=first).pk, Delivery.objects.get(event=last).pk]]


@pytest.mark.django_db(transaction=True)
def test_nothing_is_queued_before_the_commit_and_then_the_event_goes_out_through_the_dispatcher(
    alice, receiver, broker
):
    # Real commits (a transactional test): the on-commit messages go out for real, to the broker stub.
    endpoint = services.endpoint_create(merchant=alice, url=receiver.url)
    with transaction.atomic():  # the request's
        created = vault_services.card_tokenize(merchant=alice, card=SHERLOCKS_CARD)
        assert broker.sent == []  # not before the commit
    assert broker.sent == [(FAN_OUT, ())]

    with transaction.atomic():
        assert tasks.fan_out_events() == 1  # the worker that takes the message
        assert receiver.requests == []  # nothing is sent before the deliveries are committed
    # A trickle is sent by the worker that fanned it out, without another message.
    [request] = receiver.requests
    assert verified(endpoint.secret, request)["data"]["tokenId"] == created.token.token_id
    assert delivery_for(endpoint).status == Delivery.SUCCEEDED
    assert broker.deliveries == []


@pytest.mark.django_db(transaction=True)
def test_a_backlog_the_dispatcher_makes_is_queued_for_every_worker_rather_than_sent_by_it(
    alice, receiver, broker, settings
):
    settings.WEBHOOK_BATCH_SIZE = 2
    endpoint = services.endpoint_create(merchant=alice, url=receiver.url)
    emit_many(alice, 3)

    assert tasks.fan_out_events() == 3

    assert receiver.requests == []
    assert deliver_messages(broker) == [pending_ids(endpoint)[:2], pending_ids(endpoint)[2:]]
    for message in broker.args_of("deliver"):
        tasks.deliver(*message)
    assert len(receiver.requests) == 3
    assert pending_ids(endpoint) == []


@pytest.mark.django_db(transaction=True)
def test_a_dispatcher_that_dies_before_sending_what_it_fanned_out_loses_nothing(alice, receiver, broker):
    endpoint = services.endpoint_create(merchant=alice, url=receiver.url)
    services.event_emit(merchant=alice, type="token.created", data={"tokenId": "T1"})

    # The worker is killed once its fan-out committed, before it sends what it claimed.
    assert services.events_fan_out(attempt=lambda deliveries: None) == 1

    delivery = delivery_for(endpoint)
    assert delivery.status == Delivery.PENDING and receiver.requests == []
    assert services.deliveries_sweep() == 0  # claimed by the dead worker: its lease is trusted until it runs out
    Delivery.objects.filter(pk=delivery.pk).update(
        claimed_until=timezone.now() - timedelta(seconds=1), queued_until=timezone.now() - timedelta(seconds=1)
    )
    assert services.deliveries_sweep() == 1
    assert broker.deliveries == [delivery.pk]
    tasks.deliver([delivery.pk])
    [request] = receiver.requests
    assert request.headers["webhook-id"] == delivery.event.public_id
    assert delivery_for(endpoint).status == Delivery.SUCCEEDED


@pytest.mark.django_db(transaction=True)
def test_an_event_whose_fan_out_message_is_lost_is_still_delivered(endpoint, receiver, tokenize, broker):
    broker.fail = True  # the broker is down when the request commits

    response = tokenize()

    assert response.status_code == 201  # the request does not fail for it
    assert Token.objects.filter(token_id=response.json()["tokenId"]).exists()
    event = Event.objects.get(type="token.created")
    assert event.fanned_out is False and not Delivery.objects.exists()
    assert broker.sent == []

    # the broker is back; the sweeper (beat) fans out what the lost message left, and queues it
    broker.fail = False
    services.deliveries_sweep()

    delivery = delivery_for(endpoint)
    assert broker.deliveries == [delivery.pk]
    assert services.delivery_attempt(delivery_id=delivery.pk).succeeded
    [request] = receiver.requests
    assert verified(endpoint.secret, request)["data"]["tokenId"] == response.json()["tokenId"]
    services.deliveries_sweep()
    assert broker.deliveries == [delivery.pk] and len(receiver.requests) == 1  # sent once


@pytest.mark.django_db(transaction=True)
def test_an_event_is_sent_even_when_queueing_its_delivery_fails(alice, receiver, broker, settings):
    settings.WEBHOOK_BATCH_SIZE = 1  # two deliveries are a backlog: queued, not sent by the dispatcher
    endpoints = [services.endpoint_create(merchant=alice, url=receiver.url) for _ in range(2)]
    event = services.event_emit(merchant=alice, type="token.created", data={"tokenId": "T1"})
    assert broker.sent == [(FAN_OUT, ())]
    broker.fail = True  # down by the time the dispatcher has made the deliveries

    assert tasks.fan_out_events() == 1

    deliveries = [delivery_for(endpoint) for endpoint in endpoints]
    assert broker.deliveries == []  # queueing was tried after the commit, and failed
    assert all(d.status == Delivery.PENDING and d.queued_until > timezone.now() for d in deliveries)
    broker.fail = False
    assert services.deliveries_sweep() == 0  # the sweeper trusts the message until its queue lease passes

    Delivery.objects.update(queued_until=timezone.now() - timedelta(seconds=1))
    assert services.deliveries_sweep() == 2
    assert sorted(broker.deliveries) == sorted(d.pk for d in deliveries)
    assert all(a.succeeded for a in services.deliveries_attempt(delivery_ids=broker.deliveries))
    assert [r.headers["webhook-id"] for r in receiver.requests] == [event.public_id] * 2


@pytest.mark.django_db(transaction=True)
def test_a_crash_between_an_events_commit_and_its_fan_out_loses_nothing(alice, receiver, broker):
    # The dispatcher's transaction fails halfway (its deliveries written, the events not yet marked): the database
    # went away, or the worker died. Nothing of it stays, and the next run does the whole of it, once.
    endpoints = [services.endpoint_create(merchant=alice, url=receiver.url) for _ in range(2)]
    vault_services.card_tokenize(merchant=alice, card=SHERLOCKS_CARD)
    broker.clear()

    def crash_when_marking(execute, sql, params, many, context):
        if sql.startswith('UPDATE "notifications_event"'):
            raise OperationalError("server closed the connection unexpectedly")
        return execute(sql, params, many, context)

    with connection.execute_wrapper(crash_when_marking), pytest.raises(OperationalError):
        tasks.fan_out_events()

    assert not Delivery.objects.exists()
    assert Event.objects.get().fanned_out is False
    assert broker.sent == []

    services.deliveries_sweep()  # the next run: beat's, or the task's retry
    tasks.fan_out_events()  # and a late or duplicate message finds nothing left

    event = Event.objects.get()
    assert event.fanned_out is True
    deliveries = list(Delivery.objects.order_by("endpoint_id"))
    assert [(d.endpoint_id, d.event_id) for d in deliveries] == [(e.pk, event.pk) for e in endpoints]
    assert broker.deliveries == [d.pk for d in deliveries]
    assert all(a.succeeded for a in services.deliveries_attempt(delivery_ids=broker.deliveries))
    assert {r.headers["webhook-id"] for r in receiver.requests} == {event.public_id}
    assert len(receiver.requests) == 2


def test_the_fan_out_of_an_event_never_makes_two_deliveries_for_one_endpoint_even_when_run_twice(
    alice, endpoint, receiver, broker
):
    other = services.endpoint_create(merchant=alice, url=receiver.url)
    services.event_emit(merchant=alice, type="token.created", data={"tokenId": "T1"})

    assert tasks.fan_out_events() == 1
    assert tasks.fan_out_events() == 0  # a second message for the same commit, or a redelivered one
    assert fan_out() == 0
    services.deliveries_sweep()

    assert sorted(Delivery.objects.values_list("endpoint_id", flat=True)) == [endpoint.pk, other.pk]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_dispatchers_at_once_fan_an_event_out_once_and_neither_waits_for_the_other(alice, endpoint, receiver):
    # Two workers take fan_out_events messages at the same moment: the second skips the page the first holds.
    other = services.endpoint_create(merchant=alice, url=receiver.url)
    services.event_emit(merchant=alice, type="token.created", data={"tokenId": "T1"})
    holding, release, results = threading.Event(), threading.Event(), {}

    def hold_after_taking_the_page(execute, sql, params, many, context):
        taken = execute(sql, params, many, context)
        if sql.startswith('SELECT "notifications_event"') and "FOR UPDATE" in sql and not holding.is_set():
            holding.set()
            release.wait(30)
        return taken

    def dispatcher(name, wrapper=None):
        try:
            with connection.execute_wrapper(wrapper) if wrapper else contextlib.nullcontext():
                results[name] = services.events_fan_out()
        finally:
            connection.close()

    first = threading.Thread(target=dispatcher, args=("first", hold_after_taking_the_page))
    first.start()
    assert holding.wait(10)
    second = threading.Thread(target=dispatcher, args=("second",))
    second.start()
    second.join(timeout=10)
    finished = not second.is_alive()
    release.set()
    first.join(timeout=10)
    second.join(timeout=10)

    assert finished, "the second dispatcher waited for the first one's page"
    assert results == {"first": 1, "second": 0}
    assert sorted(Delivery.objects.values_list("endpoint_id", flat=True)) == [endpoint.pk, other.pk]


def test_a_transaction_emitting_many_events_has_them_delivered_in_a_few_messages(
    alice, endpoint, broker, settings, django_capture_on_commit_callbacks
):
    settings.WEBHOOK_BATCH_SIZE = 10
    with django_capture_on_commit_callbacks(execute=True):
        emit_many(alice, 25)
    assert broker.args_of("fan_out_events") != []

    with django_capture_on_commit_callbacks(execute=True):
        assert fan_out() == 25

    deliveries = list(Delivery.objects.filter(endpoint=endpoint).order_by("pk").values_list("pk", flat=True))
    assert broker.deliveries == deliveries
    assert [len(message) for message in deliver_messages(broker)] == [10, 10, 5]


def test_one_fan_out_takes_a_backlog_page_by_page_up_to_its_limit(alice, endpoint, settings, monkeypatch):
    monkeypatch.setattr(services, "SWEEP_PAGE", 10)
    settings.WEBHOOK_SWEEP_LIMIT = 20
    emit_many(alice, 25)  # every fan-out message was lost

    assert fan_out() == 20
    assert fan_out() == 5
    assert fan_out() == 0

    assert Delivery.objects.filter(endpoint=endpoint).count() == 25
    assert not Event.objects.filter(fanned_out=False).exists()


def test_an_endpoint_created_after_an_event_does_not_get_it(alice, endpoint, receiver):
    earlier = services.event_emit(merchant=alice, type="token.created", data={"tokenId": "T1"})
    later_endpoint = services.endpoint_create(merchant=alice, url=receiver.url)  # before the dispatcher ran
    later = services.event_emit(merchant=alice, type="token.created", data={"tokenId": "T2"})

    assert fan_out() == 2

    assert list(Delivery.objects.filter(endpoint=endpoint).order_by("pk").values_list("event", flat=True)) == [
        earlier.pk,
        later.pk,
    ]
    assert list(Delivery.objects.filter(endpoint=later_endpoint).values_list("event", flat=True)) == [later.pk]


def test_the_events_of_a_merchant_without_endpoints_are_not_announced_and_still_reach_its_first_endpoint(
    bob, receiver, broker, settings, django_capture_on_commit_callbacks
):
    # No message for a merchant this process knows has no enabled endpoint; it learns of a new one (made by another
    # process) only after WEBHOOK_LISTENERS_TTL, and meanwhile the sweeper fans out what no message announced.
    settings.WEBHOOK_LISTENERS_TTL = 60
    services.endpoint_disable(endpoint=services.endpoint_create(merchant=bob, url=receiver.url), reason="Not yet")
    with django_capture_on_commit_callbacks(execute=True):
        before = services.event_emit(merchant=bob, type="token.created", data={"tokenId": "T1"})
    assert broker.sent == []

    # another process (an API server, the admin) adds bob's first endpoint
    first_endpoint = WebhookEndpoint.objects.create(merchant=bob, url=receiver.url)
    with django_capture_on_commit_callbacks(execute=True):
        after = services.event_emit(merchant=bob, type="token.created", data={"tokenId": "T2"})
    assert broker.sent == []  # this process does not know of it yet

    with django_capture_on_commit_callbacks(execute=True):
        services.deliveries_sweep()

    assert Event.objects.filter(fanned_out=False).count() == 0
    [delivery] = Delivery.objects.filter(endpoint=first_endpoint)
    assert delivery.event == after != before  # the one it existed for
    assert broker.deliveries == [delivery.pk]


def test_a_disabled_endpoint_gets_nothing(
    alice, endpoint, receiver, tokenize, broker, django_capture_on_commit_callbacks
):
    services.endpoint_disable(endpoint=endpoint, reason="Disabled by an operator")
    services.endpoint_create(merchant=alice, url=receiver.url, event_types=["token.deleted"])  # wants other events

    tokenize()
    with django_capture_on_commit_callbacks(execute=True):
        assert fan_out() == 1

    assert Event.objects.get().fanned_out is True
    assert not Delivery.objects.exists()
    assert services.deliveries_sweep() == 0 and broker.deliveries == []
    assert receiver.requests == []


# ------------------------------------------------------------------------------------------------------------
# Leases and the sweeper
# ------------------------------------------------------------------------------------------------------------
def test_the_sweeper_requeues_a_delivery_whose_worker_was_killed_mid_attempt(endpoint, receiver, tokenize, broker):
    tokenize()
    fan_out()
    delivery = delivery_for(endpoint)
    past = timezone.now() - timedelta(seconds=1)
    # a worker claimed it, a message was queued, and both leases ran out: the worker died
    Delivery.objects.filter(pk=delivery.pk).update(
        claimed_until=past, queued_until=past, next_attempt_at=past - timedelta(minutes=2)
    )

    assert services.deliveries_sweep() == 1
    assert broker.deliveries == [delivery.pk]
    attempt = services.delivery_attempt(delivery_id=delivery.pk)

    assert attempt.succeeded
    assert len(receiver.requests) == 1
    assert delivery_for(endpoint).status == Delivery.SUCCEEDED


def test_the_sweeper_leaves_a_delivery_a_worker_is_attempting_right_now(endpoint, receiver, tokenize, broker):
    tokenize()
    fan_out()
    delivery = delivery_for(endpoint)
    Delivery.objects.filter(pk=delivery.pk).update(
        claimed_until=timezone.now() + timedelta(seconds=60),
        queued_until=None,
        next_attempt_at=timezone.now() - timedelta(minutes=1),
    )

    assert services.deliveries_sweep() == 0
    assert broker.deliveries == []
    assert services.delivery_attempt(delivery_id=delivery.pk) is None  # a second worker keeps its hands off
    assert receiver.requests == []


def test_the_sweeper_trusts_a_queued_message_until_its_queue_lease_passes(endpoint, tokenize, broker):
    tokenize()
    fan_out()
    delivery = delivery_for(endpoint)
    Delivery.objects.filter(pk=delivery.pk).update(
        queued_until=timezone.now() + timedelta(seconds=60), next_attempt_at=timezone.now() - timedelta(minutes=1)
    )
    assert services.deliveries_sweep() == 0
    assert broker.deliveries == []

    Delivery.objects.filter(pk=delivery.pk).update(queued_until=timezone.now() - timedelta(seconds=1))

    assert services.deliveries_sweep() == 1
    assert broker.deliveries == [delivery.pk]


def test_the_sweeper_leaves_deliveries_that_are_not_due_yet(endpoint, receiver, tokenize, broker):
    tokenize()
    fan_out()
    delivery = delivery_for(endpoint)
    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now() + timedelta(minutes=5))

    assert services.deliveries_sweep() == 0
    assert services.delivery_attempt(delivery_id=delivery.pk) is None
    assert receiver.requests == []


def test_a_duplicate_message_for_a_delivered_event_sends_nothing(endpoint, receiver, tokenize, broker):
    tokenize()
    fan_out()
    delivery = delivery_for(endpoint)
    assert services.delivery_attempt(delivery_id=delivery.pk).succeeded

    assert services.delivery_attempt(delivery_id=delivery.pk) is None
    tasks.deliver([delivery.pk])  # the task body itself, as a redelivered broker message would run it

    assert len(receiver.requests) == 1
    assert DeliveryAttempt.objects.filter(delivery=delivery).count() == 1
    assert services.deliveries_sweep() == 0 and broker.deliveries == []


def test_a_message_for_a_delivery_that_no_longer_exists_does_nothing(db):
    assert services.delivery_attempt(delivery_id=987654321) is None


@pytest.mark.django_db(transaction=True)
def test_a_second_message_while_an_attempt_is_in_flight_sends_nothing(alice, receiver):
    endpoint = services.endpoint_create(merchant=alice, url=receiver.url)
    receiver.reply(Reply(200, delay=0.6))
    vault_services.card_tokenize(merchant=alice, card=SHERLOCKS_CARD)
    fan_out()
    delivery = delivery_for(endpoint)
    results = {}

    def first_worker():
        try:
            results["first"] = services.delivery_attempt(delivery_id=delivery.pk)
        finally:
            connection.close()

    worker = threading.Thread(target=first_worker)
    worker.start()
    receiver.wait_for_requests(1, timeout=5)  # the first worker is now waiting for the answer

    second = services.delivery_attempt(delivery_id=delivery.pk)
    worker.join(timeout=10)

    assert second is None
    assert results["first"].succeeded
    assert len(receiver.requests) == 1
    assert DeliveryAttempt.objects.filter(delivery=delivery).count() == 1


def test_one_sweep_queues_a_whole_backlog_page_by_page_up_to_its_limit(endpoint, alice, broker, settings, monkeypatch):
    monkeypatch.setattr(services, "SWEEP_PAGE", 10)
    settings.WEBHOOK_SWEEP_LIMIT = 20
    emit_many(alice, 25)
    assert services.events_fan_out(limit=100) == 25
    # every message was lost and the leases have passed: a backlog of 25 for the sweeper
    Delivery.objects.update(queued_until=None, next_attempt_at=timezone.now() - timedelta(seconds=1))

    assert services.deliveries_sweep() == 20
    assert services.deliveries_sweep() == 5
    assert services.deliveries_sweep() == 0

    backlog = list(Delivery.objects.filter(endpoint=endpoint).order_by("pk").values_list("pk", flat=True))
    assert sorted(broker.deliveries) == backlog
    assert all(len(message) <= settings.WEBHOOK_BATCH_SIZE for message in deliver_messages(broker))


# ------------------------------------------------------------------------------------------------------------
# Batches: many deliveries per message, one connection per endpoint, a few statements per batch
# ------------------------------------------------------------------------------------------------------------
class KeepAliveReceiver(ThreadingHTTPServer):
    """A receiver that keeps connections alive, as most web servers do; it notes each request's webhook-id and the
    connection it came on. ``hang_up``: it closes each connection after one answer without saying so beforehand,
    as a server does whose keep-alive timeout has just run out."""

    daemon_threads = True

    def __init__(self, *, hang_up: bool = False):
        self.requests: list[tuple[int, dict]] = []  # (connection number, headers)
        self.bodies: list[bytes] = []
        self.connections = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                super().setup()
                with receiver.lock:
                    receiver.connections += 1
                    self.number = receiver.connections

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    receiver.requests.append((self.number, {k.lower(): v for k, v in self.headers.items()}))
                    receiver.bodies.append(body)
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()
                self.close_connection = hang_up

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}/hook"


def test_a_batch_to_one_endpoint_goes_over_one_kept_alive_connection_each_request_signed(alice):
    receiver = KeepAliveReceiver()
    try:
        endpoint = services.endpoint_create(merchant=alice, url=receiver.url)
        events = emit_many(alice, 5)
        fan_out()

        attempts = services.deliveries_attempt(delivery_ids=pending_ids(endpoint))
    finally:
        receiver.shutdown()

    assert [a.succeeded for a in attempts] == [True] * 5
    assert [headers["webhook-id"] for _, headers in receiver.requests] == [e.public_id for e in events]
    assert {number for number, _ in receiver.requests} == {1}
    for (_, headers), body in zip(receiver.requests, receiver.bodies, strict=True):
        assert Webhook(endpoint.secret).verify(body, headers)["type"] == "token.created"
    assert set(Delivery.objects.values_list("status", flat=True)) == {Delivery.SUCCEEDED}


def test_a_kept_alive_connection_the_receiver_closed_in_between_is_opened_again_and_nothing_is_lost(alice):
    receiver = KeepAliveReceiver(hang_up=True)
    try:
        endpoint = services.endpoint_create(merchant=alice, url=receiver.url)
        events = emit_many(alice, 3)
        fan_out()

        attempts = services.deliveries_attempt(delivery_ids=pending_ids(endpoint))
    finally:
        receiver.shutdown()

    assert [a.succeeded for a in attempts] == [True] * 3
    assert [headers["webhook-id"] for _, headers in receiver.requests] == [e.public_id for e in events]
    assert [number for number, _ in receiver.requests] == [1, 2, 3]


def test_a_message_fills_its_batch_with_its_endpoints_other_due_deliveries_oldest_first(
    alice, endpoint, receiver, settings
):
    # Events from the API come one per transaction, so one per message: when they queue up, a worker takes the
    # endpoint's backlog along with its message, and the messages of what it took find nothing left to do.
    settings.WEBHOOK_BATCH_SIZE = 4
    with Receiver() as elsewhere:
        other = services.endpoint_create(merchant=alice, url=elsewhere.url, event_types=["token.deleted"])
        for n in range(6):
            services.event_emit(merchant=alice, type="token.created", data={"tokenId": f"T{n:04d}"})
        services.event_emit(merchant=alice, type="token.deleted", data={"tokenId": "T0000"})
        fan_out()
        backlog = pending_ids(endpoint)  # 7: alice's endpoint wants every event type
        Delivery.objects.filter(pk=backlog[5]).update(next_attempt_at=timezone.now() - timedelta(minutes=1))

        tasks.deliver([backlog[2]])  # the task body, as the worker runs it

        sent = {
            Delivery.objects.get(event__public_id=r.headers["webhook-id"], endpoint=endpoint).pk
            for r in receiver.requests
        }
        assert sent == {backlog[2], backlog[5], backlog[0], backlog[1]}  # its own, then the oldest due
        assert elsewhere.requests == [] and pending_ids(other) != []

        tasks.deliver([backlog[0]])  # a message for a delivery already sent still helps with the backlog
        assert len(receiver.requests) == 7
        tasks.deliver([backlog[3]])
        assert len(receiver.requests) == 7
        assert pending_ids(endpoint) == []
        assert DeliveryAttempt.objects.filter(delivery__endpoint=endpoint).count() == 7


def test_a_batch_costs_the_same_few_statements_whatever_its_size(alice, endpoint, receiver):
    def statements_for(count: int) -> int:
        emit_many(alice, count)
        fan_out()
        with CaptureQueriesContext(connection) as statements:
            attempts = services.deliveries_attempt(delivery_ids=pending_ids(endpoint))
        assert len(attempts) == count and all(a.succeeded for a in attempts)
        return len(statements)

    statements_for(1)  # a first batch: this process has looked at the keys its endpoint's secret is under since
    assert statements_for(3) == statements_for(30) <= 10


@pytest.mark.django_db(transaction=True)
def test_a_worker_whose_claim_ran_out_during_a_send_leaves_the_delivery_to_the_worker_that_took_it_over(
    alice, endpoint, receiver
):
    emit_many(alice, 2)
    fan_out()
    first, second = pending_ids(endpoint)
    first_event = Delivery.objects.get(pk=first).event.public_id

    def answer(request):
        if request.headers["webhook-id"] == first_event:
            # while it answers, the lease ran out, and another worker claimed the delivery, sent it, recorded it
            try:
                Delivery.objects.filter(pk=first).update(claim="another-worker", status=Delivery.SUCCEEDED)
            finally:
                connection.close()  # the receiver's thread's own connection
        return Reply(500)

    receiver.always(answer)

    attempts = services.deliveries_attempt(delivery_ids=[first, second])

    assert [a.delivery_id for a in attempts] == [second]
    taken_over = Delivery.objects.get(pk=first)
    assert (taken_over.status, taken_over.claim, taken_over.attempt_count) == (Delivery.SUCCEEDED, "another-worker", 0)
    assert not DeliveryAttempt.objects.filter(delivery_id=first).exists()
    assert Delivery.objects.get(pk=second).status == Delivery.PENDING  # its 500 is recorded: retried later


def test_a_batch_records_each_outcome_and_retries_only_the_failures(alice, endpoint, receiver):
    receiver.reply(Reply(200), Reply(500), Reply(503, headers={"Retry-After": "120"}), Reply(204))
    emit_many(alice, 4)
    fan_out()

    attempts = services.deliveries_attempt(delivery_ids=pending_ids(endpoint))

    assert [(a.status_code, a.succeeded, a.number) for a in attempts] == [
        (200, True, 1),
        (500, False, 1),
        (503, False, 1),
        (204, True, 1),
    ]
    deliveries = list(Delivery.objects.filter(endpoint=endpoint).order_by("pk"))
    assert [d.status for d in deliveries] == [
        Delivery.SUCCEEDED,
        Delivery.PENDING,
        Delivery.PENDING,
        Delivery.SUCCEEDED,
    ]
    assert [d.last_status_code for d in deliveries] == [200, 500, 503, 204]
    assert [d.attempt_count for d in deliveries] == [1, 1, 1, 1]
    assert 0.8 * 5 - 1 <= seconds_until(deliveries[1].next_attempt_at) <= 1.2 * 5
    assert seconds_until(deliveries[2].next_attempt_at) == pytest.approx(120, abs=2)
    assert all(d.claimed_until is None and d.queued_until is None for d in deliveries)
    endpoint.refresh_from_db()
    assert endpoint.failing_since is None  # the batch ended on a success


def test_after_a_410_in_a_batch_the_rest_of_it_is_not_sent_and_fails(alice, endpoint, receiver):
    receiver.reply(Reply(410))
    emit_many(alice, 3)
    fan_out()

    attempts = services.deliveries_attempt(delivery_ids=pending_ids(endpoint))

    assert len(receiver.requests) == 1
    assert [a.status_code for a in attempts] == [410, None, None]
    assert [a.error for a in attempts[1:]] == ["endpoint disabled"] * 2
    assert set(Delivery.objects.values_list("status", flat=True)) == {Delivery.FAILED}
    endpoint.refresh_from_db()
    assert endpoint.is_enabled is False and "410" in endpoint.disabled_reason


def test_a_slow_endpoint_stops_its_batch_before_the_lease_could_run_out_and_the_rest_is_queued_again(
    alice, endpoint, receiver, broker, settings
):
    # An attempt may take up to 2 s and a claim lasts 3 s: once the first answer took 0.8 s, starting another
    # could outlast the lease (and another worker could send it at the same time).
    settings.WEBHOOK_CLAIM_LEASE_SECONDS, settings.WEBHOOK_TIMEOUT_SECONDS = 3, 2
    receiver.reply(Reply(204, delay=0.8))
    emit_many(alice, 3)
    fan_out()
    first, *rest = pending_ids(endpoint)

    attempts = services.deliveries_attempt(delivery_ids=[first, *rest])

    assert [a.delivery_id for a in attempts] == [first]
    assert len(receiver.requests) == 1
    assert broker.deliveries == rest
    left = Delivery.objects.filter(pk__in=rest)
    assert all(
        d.status == Delivery.PENDING
        and d.claimed_until is None
        and d.queued_until > timezone.now()
        and d.attempt_count == 0
        for d in left
    )

    assert all(a.succeeded for a in services.deliveries_attempt(delivery_ids=broker.deliveries))
    assert len(receiver.requests) == 3


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_deliveries_to_an_endpoint_go_on_while_its_row_is_locked(alice, receiver):
    # Workers never lock the endpoint row to record an attempt: an operator's long transaction on it (or another
    # worker's) holds up nobody's deliveries.
    endpoint = services.endpoint_create(merchant=alice, url=receiver.url)
    vault_services.card_tokenize(merchant=alice, card=SHERLOCKS_CARD)
    fan_out()
    delivery = delivery_for(endpoint)
    locked, release, results = threading.Event(), threading.Event(), {}

    def operator():
        try:
            with transaction.atomic():
                WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
                locked.set()
                release.wait(30)
        finally:
            connection.close()

    def worker():
        try:
            results["attempt"] = services.delivery_attempt(delivery_id=delivery.pk)
        finally:
            connection.close()

    holder = threading.Thread(target=operator)
    holder.start()
    locked.wait(10)
    sender = threading.Thread(target=worker)
    sender.start()
    sender.join(timeout=20)
    finished = not sender.is_alive()
    release.set()
    holder.join(timeout=10)
    sender.join(timeout=10)

    assert finished, "the attempt waited for the endpoint's row lock"
    assert results["attempt"].succeeded
    assert delivery_for(endpoint).status == Delivery.SUCCEEDED


# ------------------------------------------------------------------------------------------------------------
# Secret rotation
# ------------------------------------------------------------------------------------------------------------
def test_after_a_secret_rotation_deliveries_verify_with_both_secrets_and_after_24_hours_only_with_the_new_one(
    endpoint, receiver, tokenize
):
    old = endpoint.secret

    rotated = services.endpoint_rotate_secret(endpoint=endpoint)

    new = rotated.secret
    assert new != old and new.startswith("whsec_")
    assert seconds_until(rotated.previous_secret_expires_at) == pytest.approx(24 * 3600, abs=60)
    tokenize()
    fan_out()
    assert services.delivery_attempt(delivery_id=delivery_for(endpoint).pk).succeeded
    [during] = receiver.requests
    signatures = during.headers["webhook-signature"].split(" ")
    assert len(signatures) == 2 and all(s.startswith("v1,") for s in signatures)
    assert verified(old, during)["type"] == "token.created"
    assert verified(new, during)["type"] == "token.created"

    # 24 hours later
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
        previous_secret_expires_at=timezone.now() - timedelta(seconds=1)
    )
    receiver.clear()
    tokenize(cardNumber=MASTERCARD)
    fan_out()
    assert services.delivery_attempt(delivery_id=Delivery.objects.filter(endpoint=endpoint).latest("pk").pk).succeeded
    [after] = receiver.requests
    assert len(after.headers["webhook-signature"].split(" ")) == 1
    assert verified(new, after)["type"] == "token.created"
    with pytest.raises(WebhookVerificationError):
        verified(old, after)


def test_rotating_through_the_api_returns_the_new_secret_once(endpoint, api):
    response = api.post(f"/webhook-endpoints/{endpoint.public_id}/rotate-secret")

    assert response.status_code == 200
    endpoint.refresh_from_db()
    assert response.json()["secret"] == endpoint.secret
    assert "secret" not in api.get(f"/webhook-endpoints/{endpoint.public_id}").json()


# ------------------------------------------------------------------------------------------------------------
# Events from the vault
# ------------------------------------------------------------------------------------------------------------
def test_every_vault_action_emits_its_event_to_the_merchants_own_endpoints_only(
    alice, bob, api, bob_api, carol_api, tokenize, receiver, settings
):
    settings.TOKENS_ENVIRONMENT = "live"  # where a use extends a token (in try none does)
    with Receiver() as bobs_receiver, Receiver() as deletes_receiver:
        alices = services.endpoint_create(merchant=alice, url=receiver.url)
        created_endpoint = api.post(
            "/webhook-endpoints", {"url": deletes_receiver.url, "eventTypes": ["token.deleted"]}, format="json"
        )
        assert created_endpoint.status_code == 201
        deletes_secret = created_endpoint.json()["secret"]
        deletes_only = WebhookEndpoint.objects.get(public_id=created_endpoint.json()["id"])
        bobs = services.endpoint_create(merchant=bob, url=bobs_receiver.url)

        created = tokenize()
        token_id = created.json()["tokenId"]
        path = path_of(created.json()["tokenPaymentInstrument"]["href"])
        assert api.put(f"{path}/description", "Sherlock's card", format="json").status_code == 204
        Token.objects.filter(token_id=token_id).update(
            created_at=timezone.now() - timedelta(days=30), expires_at=timezone.now() + timedelta(days=1)
        )
        assert carol_api.post(f"{path}/detokenize").status_code == 200  # past half-life: extended
        assert api.delete(path).status_code == 204
        bobs_token = tokenize(client=bob_api)
        assert bobs_token.status_code == 201
        assert fan_out() == 5  # both merchants' events, in one run of the dispatcher

        alice_events = list(Event.objects.filter(merchant=alice).order_by("created_at", "pk"))
        assert [e.type for e in alice_events] == [
            "token.created",
            "token.updated",
            "token.expiry_extended",
            "token.deleted",
        ]
        assert all(e.data["tokenId"] == token_id for e in alice_events)
        assert alice_events[1].data["changed"] == ["description"]
        assert "previousExpiryDateTime" in alice_events[2].data
        for event in alice_events:
            assert list(Delivery.objects.filter(event=event, endpoint=alices)) != []
        assert [d.event.type for d in Delivery.objects.filter(endpoint=deletes_only)] == ["token.deleted"]
        bob_deliveries = list(Delivery.objects.filter(endpoint=bobs).select_related("event"))
        assert [(d.event.merchant_id, d.event.type) for d in bob_deliveries] == [(bob.pk, "token.created")]
        assert not Delivery.objects.filter(endpoint=bobs, event__merchant=alice).exists()
        assert not Delivery.objects.filter(event__merchant=bob).exclude(endpoint=bobs).exists()
        for event in Event.objects.all():
            assert VISA not in json.dumps(event.data)

        for delivery in Delivery.objects.order_by("pk"):
            assert services.delivery_attempt(delivery_id=delivery.pk).succeeded

        got = [verified(alices.secret, r) for r in receiver.requests]
        assert sorted(p["type"] for p in got) == sorted(e.type for e in alice_events)
        [deleted] = [verified(deletes_secret, r) for r in deletes_receiver.requests]
        assert deleted["type"] == "token.deleted" and deleted["data"]["tokenId"] == token_id
        [bobs_own] = [verified(bobs.secret, r) for r in bobs_receiver.requests]
        assert bobs_own["data"]["tokenId"] == bobs_token.json()["tokenId"] != token_id
        for request in receiver.requests + deletes_receiver.requests + bobs_receiver.requests:
            assert VISA not in request.text


# ------------------------------------------------------------------------------------------------------------
# A real worker on the real broker
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.celery
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_delivers_a_tokenized_cards_webhook_without_anything_called_by_hand(
    alice, receiver, celery_worker_process
):
    # The worker runs no beat, so no sweeper: the request's commit sends fan_out_events, the worker makes the
    # delivery and sends deliver, and the worker takes that one too.
    endpoint = services.endpoint_create(merchant=alice, url=receiver.url)

    response = client_for(alice.raw_key).post("/tokens", card_request(), format="json")

    assert response.status_code == 201
    [request] = receiver.wait_for_requests(1, timeout=120)  # the worker's start-up included
    payload = verified(endpoint.secret, request)
    assert payload["type"] == "token.created"
    assert payload["data"]["tokenId"] == response.json()["tokenId"]
    assert VISA not in request.text
    wait_for(lambda: delivery_for(endpoint).status == Delivery.SUCCEEDED, timeout=15)
    assert Event.objects.get(type="token.created").fanned_out is True
    assert DeliveryAttempt.objects.filter(delivery__endpoint=endpoint).count() == 1
