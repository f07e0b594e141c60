from django.urls import path

from notifications.api import views

urlpatterns = [
    path("webhook-endpoints", views.EndpointsView.as_view(), name="webhook-endpoints"),
    path("webhook-endpoints/<str:public_id>", views.EndpointView.as_view(), name="webhook-endpoint"),
    path(
        "webhook-endpoints/<str:public_id>/rotate-secret",
        views.EndpointRotateSecretView.as_view(),
        name="webhook-endpoint-rotate-secret",
    ),
    path("events", views.EventsView.as_view(), name="events"),
    path("events/<str:public_id>", views.EventView.as_view(), name="event"),
    path("events/<str:public_id>/redeliver", views.EventRedeliverView.as_view(), name="event-redeliver"),
]
