"""Webhook metrics as an operator's Prometheus scrapes them from ``GET /metrics``: every attempt by outcome and its
duration, the retries, the backlog and its oldest due delivery, the disabled endpoints and beat's heartbeat; and, with
a real Celery worker on the real broker, a failing endpoint seen from the scrape of another process.

Actors (tests/conftest.py): alice is a merchant whose tokens make events; ``receiver`` is alice's webhook consumer, a
real HTTP server on loopback (tests/receiver.py). ``prometheus`` is the operator's scraper (text format, parsed with
prometheus-client's own parser). Counters are shared by every test of the process: tests compare scrapes before and
after; the gauges read this test's database.

As in test_webhook_delivery.py, the tests on the ``db`` fixture run the dispatcher (``fan_out``) and the attempts
themselves, and make a delivery due by moving its ``next_attempt_at``.
"""

from datetime import timedelta

import pytest
from django.utils import timezone

from notifications import services
from notifications.models import Delivery
from tests.conftest import MASTERCARD, VISA, card_request, client_for, start_celery_worker, stop_celery_worker, wait_for
from tests.metrics import Scrape
from tests.receiver import Receiver, Reply

OUTCOMES = ("delivered", "retry", "dead", "skipped")


class WebhookScrape(Scrape):
    """One scrape of /metrics, read for the webhooks' figures."""

    def attempts(self) -> dict[str, float]:
        return {outcome: self.value("tokenvault_webhook_attempts_total", outcome=outcome) for outcome in OUTCOMES}

    def backlog(self) -> tuple[float, float]:
        """(pending, due)."""
        return tuple(self.value("tokenvault_webhook_backlog", state=state) for state in ("pending", "due"))


def scrape() -> WebhookScrape:
    return WebhookScrape.of()


def moved(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: after[name] - before[name] for name in before}


@pytest.fixture
def receiver():
    """alice's webhook consumer: a real HTTP server on 127.0.0.1, answering 204 unless told otherwise."""
    with Receiver() as server:
        yield server


@pytest.fixture
def endpoint(alice, receiver):
    """alice's endpoint for every event type, pointing at ``receiver``."""
    return services.endpoint_create(merchant=alice, url=receiver.url)


def delivery_made(tokenize, endpoint, **card) -> Delivery:
    """A token event of alice's and its delivery to ``endpoint``, due now (the dispatcher ran, as a worker would)."""
    assert tokenize(**card).status_code == 201
    services.events_fan_out()
    return Delivery.objects.filter(endpoint=endpoint).latest("pk")


def attempt_now(delivery: Delivery):
    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
    return services.delivery_attempt(delivery_id=delivery.pk)


# ------------------------------------------------------------------------------------------------------------
# Attempts, retries and the backlog
# ------------------------------------------------------------------------------------------------------------
def test_a_failing_endpoint_counts_a_retry_and_holds_the_backlog_until_its_delivery_succeeds(
    endpoint, receiver, tokenize
):
    receiver.always(Reply(500))
    start = scrape()
    assert start.backlog() == (0, 0)

    delivery = delivery_made(tokenize, endpoint)
    made = scrape()
    assert services.delivery_attempt(delivery_id=delivery.pk) is not None  # 500: retried in about 5 s
    failed = scrape()
    receiver.always(Reply(200))
    assert attempt_now(delivery).succeeded
    delivered = scrape()

    assert made.backlog() == (1, 1)  # pending, and due at once
    assert failed.backlog() == (1, 0)  # pending, due again later
    assert delivered.backlog() == (0, 0)
    assert moved(made.attempts(), failed.attempts()) == {"delivered": 0, "retry": 1, "dead": 0, "skipped": 0}
    assert failed.value("tokenvault_webhook_retries_total") - made.value("tokenvault_webhook_retries_total") == 1
    assert moved(failed.attempts(), delivered.attempts()) == {"delivered": 1, "retry": 0, "dead": 0, "skipped": 0}
    assert delivered.value("tokenvault_webhook_retries_total") == failed.value("tokenvault_webhook_retries_total")
    durations = [s.value("tokenvault_webhook_attempt_duration_seconds_count") for s in (made, failed, delivered)]
    assert [durations[1] - durations[0], durations[2] - durations[1]] == [1, 1]


def test_the_oldest_due_delivery_shows_how_long_it_has_been_due(endpoint, receiver, tokenize):
    delivery_made(tokenize, endpoint)
    late = delivery_made(tokenize, endpoint, cardNumber=MASTERCARD)
    Delivery.objects.filter(pk=late.pk).update(next_attempt_at=timezone.now() - timedelta(minutes=11))

    age = scrape().value("tokenvault_webhook_oldest_due_age_seconds")

    assert 660 <= age < 670


def test_no_delivery_due_is_an_oldest_age_of_zero(endpoint, receiver, tokenize):
    delivery = delivery_made(tokenize, endpoint)
    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now() + timedelta(minutes=5))

    now = scrape()

    assert now.backlog() == (1, 0)
    assert now.value("tokenvault_webhook_oldest_due_age_seconds") == 0


def test_the_last_attempt_of_the_schedule_counts_dead_and_not_as_a_retry(endpoint, receiver, tokenize, settings):
    settings.WEBHOOK_RETRY_SCHEDULE = [5]  # one retry, then the dead letter
    receiver.always(Reply(503))
    delivery = delivery_made(tokenize, endpoint)
    before = scrape()

    attempt_now(delivery)
    attempt_now(delivery)

    after = scrape()
    assert moved(before.attempts(), after.attempts()) == {"delivered": 0, "retry": 1, "dead": 1, "skipped": 0}
    assert after.value("tokenvault_webhook_retries_total") - before.value("tokenvault_webhook_retries_total") == 1
    assert after.backlog() == (0, 0)


def test_a_410_disables_the_endpoint_and_a_delivery_to_a_disabled_endpoint_is_skipped(
    alice, endpoint, receiver, tokenize
):
    other = services.endpoint_create(merchant=alice, url=receiver.url)
    receiver.always(Reply(410))
    first = delivery_made(tokenize, endpoint)
    waiting = Delivery.objects.get(endpoint=other, event=first.event)
    before = scrape()

    services.delivery_attempt(delivery_id=first.pk)  # 410 Gone: dead, and the endpoint disabled
    services.endpoint_disable(endpoint=other, reason="alice's consumer is down for maintenance")
    services.delivery_attempt(delivery_id=waiting.pk)  # not sent: its endpoint is disabled

    after = scrape()
    assert moved(before.attempts(), after.attempts()) == {"delivered": 0, "retry": 0, "dead": 1, "skipped": 1}
    assert len(receiver.requests) == 1
    assert (
        before.value("tokenvault_webhook_endpoints_disabled"),
        after.value("tokenvault_webhook_endpoints_disabled"),
    ) == (
        0,
        2,
    )


def test_beats_heartbeat_is_infinitely_old_until_the_sweeper_runs_then_fresh(db):
    never = scrape().value("tokenvault_beat_heartbeat_age_seconds")

    services.deliveries_sweep()

    assert never == float("inf")
    assert 0 <= scrape().value("tokenvault_beat_heartbeat_age_seconds") < 5


def test_no_webhook_metric_names_an_endpoint_its_url_or_the_card(alice, endpoint, receiver, tokenize):
    receiver.always(Reply(500))
    services.delivery_attempt(delivery_id=delivery_made(tokenize, endpoint).pk)

    text = scrape().text

    assert endpoint.public_id not in text and receiver.url not in text
    assert VISA not in text and alice.public_id not in text


# ------------------------------------------------------------------------------------------------------------
# A real worker: its counts reach the scrape of another process through the metrics folder
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.celery
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_failing_to_deliver_raises_the_backlog_and_the_retry_counter(alice, receiver, settings, tmp_path):
    # The worker and this test's /metrics share a metrics folder, as a host's gunicorn and Celery processes do.
    # The worker runs no beat: its first failed attempt is retried in about 5 minutes (its schedule here, so that
    # the delivery is not due yet however slow the machine), by nobody during this test.
    settings.PROMETHEUS_MULTIPROC_DIR = str(tmp_path)
    receiver.always(Reply(500))
    endpoint = services.endpoint_create(merchant=alice, url=receiver.url)
    worker = start_celery_worker(env={"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "WEBHOOK_RETRY_SCHEDULE": "300"})
    try:
        before = scrape()

        response = client_for(alice.raw_key).post("/tokens", card_request(), format="json")

        assert response.status_code == 201
        receiver.wait_for_requests(1, timeout=120)  # the worker's start-up included
        # The worker counts the attempt inside the transaction that records it: before its commit a scrape would
        # find the counts up and the delivery still due. Wait for the committed row first.
        wait_for(lambda: Delivery.objects.filter(endpoint=endpoint, attempt_count=1).exists(), timeout=30)
        # The worker counts the attempt, the retry and the attempt's time one after the other: wait for the last.
        after = wait_for(
            lambda: (s := scrape()).value("tokenvault_webhook_attempt_duration_seconds_count") >= 1 and s, timeout=30
        )
    finally:
        stop_celery_worker(worker)
    assert before.attempts() == {"delivered": 0, "retry": 0, "dead": 0, "skipped": 0}  # a new folder: none yet
    assert after.attempts() == {"delivered": 0, "retry": 1, "dead": 0, "skipped": 0}
    assert after.value("tokenvault_webhook_retries_total") == 1
    assert after.value("tokenvault_webhook_attempt_duration_seconds_count") == 1
    assert after.backlog() == (1, 0)  # pending, its retry due in about 5 s
    [delivery] = Delivery.objects.filter(endpoint=endpoint)
    assert delivery.status == Delivery.PENDING and delivery.attempt_count == 1
