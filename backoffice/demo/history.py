"""The webhook history of the demo: endpoints created last, and the deliveries and attempts the retry schedule
would have left by now (written in bulk; see the command's docstring)."""

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from backoffice.demo.plans import DAYS, DISCARD_URL, FAILURES, EndpointPlan
from notifications import services as notification_services
from notifications.models import Delivery, DeliveryAttempt, Event, WebhookEndpoint


class WebhookHistory:
    """The ``Seeder``'s webhook part."""

    def webhooks(self) -> None:
        """Endpoints created last (no event of the seed goes to the broker), with the deliveries the retry schedule
        would have left: a healthy endpoint per merchant, one failing for two days (dead letters and retries), one
        disabled after five days of failures."""
        self.now = now = timezone.now()  # the history of attempts runs up to this moment, past the last event
        disable_after = timedelta(days=settings.WEBHOOK_DISABLE_AFTER_DAYS)
        events = {m.pk: list(Event.objects.filter(merchant=m).order_by("created_at", "pk")) for m in self.merchants}
        # Failing long enough that its oldest failures have used up the schedule (~28 h by default).
        used_up = now - timedelta(seconds=sum(settings.WEBHOOK_RETRY_SCHEDULE) * 1.25)
        older = [e.created_at for e in events[self.merchants[0].pk] if e.created_at < used_up]
        failing_since = min(now - timedelta(days=2), older[-5] if len(older) >= 5 else now) - timedelta(minutes=1)
        disabled_at = now - timedelta(days=1)

        def endpoint(merchant: int, path: str, description: str, event_types=None) -> WebhookEndpoint:
            return notification_services.endpoint_create(
                merchant=self.merchants[merchant],
                url=f"{DISCARD_URL}/{path}",
                description=description,
                event_types=event_types,
            )

        with transaction.atomic():
            plans = [
                EndpointPlan(endpoint(0, "webhooks/orders", "Order service")),
                EndpointPlan(
                    endpoint(0, "hooks/analytics", "Analytics collector (down since the migration)"),
                    failing_since=failing_since,
                ),
                EndpointPlan(endpoint(1, "erp/webhooks", "ERP sync")),
                EndpointPlan(
                    endpoint(1, "legacy-crm/notify", "Legacy CRM", ["token.created", "token.deleted"]),
                    failing_since=disabled_at - disable_after,
                    disabled_at=disabled_at,
                ),
                EndpointPlan(endpoint(2, "bookings/webhooks", "Booking engine")),
            ]
            WebhookEndpoint.objects.filter(pk__in=[p.endpoint.pk for p in plans]).update(
                created_at=now - timedelta(days=DAYS + 1)
            )
            for plan in plans:
                if plan.disabled_at:
                    notification_services.endpoint_disable(
                        endpoint=plan.endpoint,
                        reason=f"Every delivery failed for {settings.WEBHOOK_DISABLE_AFTER_DAYS} days",
                    )
                    WebhookEndpoint.objects.filter(pk=plan.endpoint.pk).update(disabled_at=plan.disabled_at)
                self.deliveries(plan, [e for e in events[plan.endpoint.merchant_id] if plan.endpoint.wants(e.type)])
            # Their deliveries are written above, as the dispatcher would have made them.
            Event.objects.filter(merchant__in=self.merchants).update(fanned_out=True)

    def deliveries(self, plan: EndpointPlan, events: list[Event]) -> None:
        """Write each event's delivery to ``plan.endpoint`` as the retry schedule would have left it by now."""
        deliveries, attempts = [], []
        for event in events:
            if plan.disabled_at and event.created_at >= plan.disabled_at:
                continue  # a disabled endpoint gets no deliveries
            delivery, tries = self.simulate(plan, event)
            deliveries.append(delivery)
            attempts.append(tries)
        Delivery.objects.bulk_create(deliveries, batch_size=500)
        for delivery, tries in zip(deliveries, attempts, strict=True):
            for attempt in tries:
                attempt.delivery = delivery
        DeliveryAttempt.objects.bulk_create([a for tries in attempts for a in tries], batch_size=500)
        # The endpoint has been failing since the first failure after its last success, if any.
        trail = sorted((a for tries in attempts for a in tries), key=lambda a: a.started_at)
        failing = None
        for attempt in reversed(trail):
            if attempt.succeeded:
                break
            failing = attempt.started_at
        WebhookEndpoint.objects.filter(pk=plan.endpoint.pk).update(failing_since=failing)

    def simulate(self, plan: EndpointPlan, event: Event) -> tuple[Delivery, list[DeliveryAttempt]]:
        rng, now, schedule = self.rng, self.now, settings.WEBHOOK_RETRY_SCHEDULE
        delivery = Delivery(event=event, endpoint=plan.endpoint, created_at=event.created_at)
        tries: list[DeliveryAttempt] = []
        at = min(event.created_at + timedelta(seconds=rng.uniform(0.05, 2)), now)
        while True:
            if at > now:
                delivery.status, delivery.next_attempt_at = Delivery.PENDING, at
                break
            number = len(tries) + 1
            duration = rng.randint(25, 400)
            if plan.disabled_at and at >= plan.disabled_at:
                tries.append(DeliveryAttempt(number=number, started_at=at, duration_ms=0, error="endpoint disabled"))
                delivery.status = Delivery.FAILED
                break
            if (plan.failing_since and at >= plan.failing_since) or rng.random() < plan.flakiness:
                code, error = rng.choice(FAILURES)
                if code:
                    error = f"HTTP {code}"
                else:
                    duration = 15000 if error.startswith("timed out") else rng.randint(1, 5)
                tries.append(
                    DeliveryAttempt(
                        number=number,
                        started_at=at,
                        duration_ms=duration,
                        status_code=code,
                        response_body="Service Unavailable" if code else "",
                        error=error,
                    )
                )
                if number > len(schedule):
                    delivery.status = Delivery.FAILED
                    break
                at += timedelta(seconds=schedule[number - 1] * rng.uniform(0.8, 1.2))
                continue
            tries.append(
                DeliveryAttempt(
                    number=number,
                    started_at=at,
                    duration_ms=duration,
                    status_code=200,
                    response_body='{"received":true}',
                    succeeded=True,
                )
            )
            delivery.status = Delivery.SUCCEEDED
            delivery.delivered_at = at + timedelta(milliseconds=duration)
            break
        last = tries[-1]  # the first attempt is never later than now
        delivery.attempt_count = len(tries)
        delivery.last_status_code, delivery.last_error = last.status_code, last.error
        delivery.updated_at = last.started_at
        return delivery, tries
