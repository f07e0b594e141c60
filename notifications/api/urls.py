from django.urls import path, register_converter

from core.api import IdConverter
from notifications.api import views
from notifications.models import Event, WebhookEndpoint


class EndpointIdConverter(IdConverter):
    regex = f"[A-Za-z0-9_-]{{1,{WebhookEndpoint._meta.get_field('public_id').max_length}}}"


class EventIdConverter(IdConverter):
    regex = f"[A-Za-z0-9_-]{{1,{Event._meta.get_field('public_id').max_length}}}"


register_converter(EndpointIdConverter, "endpoint_id")
register_converter(EventIdConverter, "event_id")

urlpatterns = [
    path("webhook-endpoints", views.EndpointsView.as_view(), name="webhook-endpoints"),
    path("webhook-endpoints/<endpoint_id:public_id>", views.EndpointView.as_view(), name="webhook-endpoint"),
    path(
        "webhook-endpoints/<endpoint_id:public_id>/rotate-secret",
        views.EndpointRotateSecretView.as_view(),
        name="webhook-endpoint-rotate-secret",
    ),
    path("events", views.EventsView.as_view(), name="events"),
    path("events/<event_id:public_id>", views.EventView.as_view(), name="event"),
    path("events/<event_id:public_id>/redeliver", views.EventRedeliverView.as_view(), name="event-redeliver"),
]
