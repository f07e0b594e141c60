from django.db.models import Prefetch, QuerySet

from config.errors import ResourceNotFound
from notifications.models import Delivery, Event, WebhookEndpoint
from vault.models import Merchant


def endpoint_list(*, merchant: Merchant) -> QuerySet[WebhookEndpoint]:
    return WebhookEndpoint.objects.filter(merchant=merchant).order_by("created_at")


def endpoint_get(*, merchant: Merchant, public_id: str) -> WebhookEndpoint:
    endpoint = WebhookEndpoint.objects.filter(merchant=merchant, public_id=public_id).first()
    if endpoint is None:
        raise ResourceNotFound("The webhook endpoint does not exist")
    return endpoint


def event_list(*, merchant: Merchant, type: str | None = None) -> QuerySet[Event]:
    events = Event.objects.filter(merchant=merchant).prefetch_related(
        Prefetch("deliveries", queryset=Delivery.objects.select_related("endpoint").order_by("pk"))
    )
    return events.filter(type=type) if type else events


def event_get(*, merchant: Merchant, public_id: str) -> Event:
    event = event_list(merchant=merchant).filter(public_id=public_id).first()
    if event is None:
        raise ResourceNotFound("The event does not exist")
    return event
