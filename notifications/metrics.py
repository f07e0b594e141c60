"""Webhook metrics: every delivery attempt by outcome and its duration, counted where the attempt is recorded; the
backlog, the oldest due delivery, the disabled endpoints and the sweeper's heartbeat, read from the database at
scrape time.

No label names an endpoint, its URL or its merchant: an operator finds which endpoint fails in the admin (the
endpoints in trouble), and the metrics say that one does.
"""

from collections.abc import Iterator

from django.db.models import Count, Min, Q
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily

from core.metrics import counter, histogram
from notifications.models import Delivery, WebhookEndpoint
from notifications.selectors import deliveries_sweep_ran_at

# ------------------------------------------------------------------------------------------------------------
# Counted where an attempt is recorded (services.attempts)
# ------------------------------------------------------------------------------------------------------------
# delivered: a 2xx answer; retry: it failed and another attempt is scheduled; dead: it failed and the delivery is a
# dead letter (schedule used up, or 410 Gone); skipped: not sent, the endpoint was disabled (a dead letter too).
ATTEMPT_OUTCOMES = ("delivered", "retry", "dead", "skipped")
ATTEMPTS = counter(
    "webhook_attempts",
    "Webhook delivery attempts, by outcome: delivered (2xx), retry (failed, another attempt scheduled), dead "
    "(failed, the delivery is a dead letter), skipped (not sent: the endpoint is disabled).",
    ["outcome"],
)
ATTEMPTED = {outcome: ATTEMPTS.labels(outcome=outcome) for outcome in ATTEMPT_OUTCOMES}
ATTEMPT_DURATION = histogram(
    "webhook_attempt_duration_seconds", "How long a webhook delivery attempt that was sent took, whatever its answer."
)
RETRIES = counter("webhook_retries", "Webhook delivery attempts that failed and have another attempt scheduled.")


def attempt_count(outcome: str, *, seconds: float | None) -> None:
    """Count one recorded attempt; ``seconds`` is how long it took, None when it was not sent."""
    ATTEMPTED[outcome].inc()
    if outcome == "retry":
        RETRIES.inc()
    if seconds is not None:
        ATTEMPT_DURATION.observe(seconds)


# ------------------------------------------------------------------------------------------------------------
# Read at scrape time
# ------------------------------------------------------------------------------------------------------------
class StateCollector:
    """The webhook gauges, computed at each scrape: three queries, each on an index (delivery_due's pending range,
    the endpoints' table, the heartbeat's primary key)."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = timezone.now()
        due = Q(next_attempt_at__lte=now)
        backlog = Delivery.objects.filter(status=Delivery.PENDING).aggregate(
            pending=Count("pk"), due=Count("pk", filter=due), oldest_due=Min("next_attempt_at", filter=due)
        )
        gauge = GaugeMetricFamily(
            "tokenvault_webhook_backlog",
            "Webhook deliveries not done, by state: pending (every one waiting for an attempt, now or later), due "
            "(those whose attempt time has come, being sent or not).",
            labels=["state"],
        )
        gauge.add_metric(["pending"], backlog["pending"])
        gauge.add_metric(["due"], backlog["due"])
        yield gauge
        oldest = backlog["oldest_due"]
        yield GaugeMetricFamily(
            "tokenvault_webhook_oldest_due_age_seconds",
            "How long the oldest due webhook delivery has been due (0 when none is).",
            value=0 if oldest is None else max(0.0, (now - oldest).total_seconds()),
        )
        yield GaugeMetricFamily(
            "tokenvault_webhook_endpoints_disabled",
            "Webhook endpoints disabled (410 Gone, days of failures, or by an operator or their merchant).",
            value=WebhookEndpoint.objects.filter(is_enabled=False).count(),
        )
        ran_at = deliveries_sweep_ran_at()
        yield GaugeMetricFamily(
            "tokenvault_beat_heartbeat_age_seconds",
            "Seconds since the webhook sweeper, which beat sends every few seconds, last ran (+Inf: never).",
            value=float("inf") if ran_at is None else max(0.0, (now - ran_at).total_seconds()),
        )
