"""Events and deliveries: their pages, with the attempts, and the actions retry now and replay.

Both lists are searched by event id or by the tokenId an event carries (``SearchesEvents``), so a token's webhooks
are one search away from the token's own page.
"""

import json

from django.contrib import admin, messages
from django.utils.html import format_html
from django.utils.text import Truncator

from core.admin import ReadOnlyInline
from core.admin_display import NOTHING, merchant_shown, moment_shown
from notifications import services
from notifications.admin.base import (
    RESPONSE_BODY_SHOWN,
    OperationsAdmin,
    SearchesEvents,
    attempt_result,
    audited,
    deliveries_counted,
    delivery_note,
    delivery_status,
    disabled_note,
)
from notifications.models import Delivery, DeliveryAttempt, Event
from notifications.selectors import error_reason

ENDPOINT_URL_SHOWN = 40


def endpoint_url_shown(url: str):
    """A URL short enough for a list cell, whole on hover."""
    return format_html('<span title="{}">{}</span>', url, Truncator(url).chars(ENDPOINT_URL_SHOWN))


class DeliveryInline(ReadOnlyInline):
    model = Delivery
    fields = ["endpoint", "status_shown", "attempt_count", "last_status_code", "next_attempt", "delivered"]
    readonly_fields = fields
    show_change_link = True
    ordering = ["pk"]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("endpoint")

    @admin.display(description="status")
    def status_shown(self, obj):
        return delivery_status(obj)

    @admin.display(description="next attempt")
    def next_attempt(self, obj):
        return moment_shown(obj.next_attempt_at)

    @admin.display(description="delivered")
    def delivered(self, obj):
        return moment_shown(obj.delivered_at)


@admin.register(Event)
class EventAdmin(SearchesEvents, OperationsAdmin):
    list_display = ["public_id", "type", "token_id", "merchant_name", "created"]
    list_filter = ["type", "merchant"]
    list_select_related = ["merchant"]
    search_fields = ["public_id", "data__tokenId"]  # each exactly: SearchesEvents
    date_hierarchy = "created_at"
    show_full_result_count = False  # the outbox grows with every token change
    fields = ["public_id", "type", "merchant", "created", "payload"]
    readonly_fields = fields
    inlines = [DeliveryInline]

    @admin.display(description="tokenId")
    def token_id(self, obj):
        token_id = obj.data.get("tokenId") if isinstance(obj.data, dict) else None  # a network token's failure has none
        return token_id or NOTHING

    @admin.display(description="merchant", ordering="merchant__name")
    def merchant_name(self, obj):
        return merchant_shown(obj.merchant)

    @admin.display(description="created", ordering="created_at")
    def created(self, obj):
        return moment_shown(obj.created_at)

    @admin.display(description="data")
    def payload(self, obj):
        # Ids, masked card data and metadata only (event_emit's contract): what was sent, as sent.
        return format_html("<pre>{}</pre>", json.dumps(obj.data, indent=2, sort_keys=True))


# ------------------------------------------------------------------------------------------------------------
# Deliveries and their attempts
# ------------------------------------------------------------------------------------------------------------
class AttemptInline(ReadOnlyInline):
    model = DeliveryAttempt
    fields = ["number", "started", "duration", "result", "error", "response"]
    readonly_fields = fields

    @admin.display(description="started")
    def started(self, obj):
        return moment_shown(obj.started_at)

    @admin.display(description="duration")
    def duration(self, obj):
        return f"{obj.duration_ms} ms"

    @admin.display(description="result")
    def result(self, obj):
        return attempt_result(obj)

    @admin.display(description="response body")
    def response(self, obj):
        return Truncator(obj.response_body).chars(RESPONSE_BODY_SHOWN) or "—"


@admin.register(Delivery)
class DeliveryAdmin(SearchesEvents, OperationsAdmin):
    list_display = [
        "event_type",
        "status_shown",
        "endpoint_url",
        "merchant_name",
        "attempts",
        "last_result",
        "next_attempt",
        "created",
    ]
    list_filter = ["status", "endpoint"]
    list_select_related = ["event", "endpoint__merchant"]
    event_prefix = "event__"
    search_fields = ["event__public_id", "event__data__tokenId"]  # each exactly: SearchesEvents
    show_full_result_count = False
    actions = ["retry_now", "replay"]
    object_actions = {"retry_now": "Retry now", "replay": "Replay"}
    # The link that follows an endpoint's replay shows what it replayed: the event window is one of its filters.
    replayed_lookups = frozenset({"event__created_at__gte", "event__created_at__lte"})
    fields = [
        "event",
        "webhook_id",
        "endpoint",
        "status_shown",
        "attempt_count",
        "next_attempt",
        "last_status_code",
        "last_error",
        "delivered",
        "claimed",
        "queued",
        "created",
        "updated",
    ]
    readonly_fields = fields
    inlines = [AttemptInline]

    def lookup_allowed(self, lookup, value, request=None):
        return lookup in self.replayed_lookups or super().lookup_allowed(lookup, value, request)

    def object_action_applies(self, obj, name):
        """Retry now for a delivery waiting for its next attempt, replay for one that is done (dead or delivered);
        neither while its endpoint is disabled, where an attempt fails at once."""
        if not obj.endpoint.is_enabled:
            return False
        return (obj.status == Delivery.PENDING) == (name == "retry_now")

    @admin.display(description="event", ordering="event__type")
    def event_type(self, obj):
        return obj.event.type

    @admin.display(description="status", ordering="status")
    def status_shown(self, obj):
        return delivery_status(obj)

    @admin.display(description="endpoint", ordering="endpoint__url")
    def endpoint_url(self, obj):
        return endpoint_url_shown(obj.endpoint.url)

    @admin.display(description="merchant", ordering="endpoint__merchant__name")
    def merchant_name(self, obj):
        return merchant_shown(obj.endpoint.merchant)

    @admin.display(description="attempts", ordering="attempt_count")
    def attempts(self, obj):
        return obj.attempt_count

    @admin.display(description="last answer", ordering="last_status_code")
    def last_result(self, obj):
        if obj.last_status_code:
            return obj.last_status_code
        return error_reason(None, obj.last_error) if obj.last_error else NOTHING

    @admin.display(description="webhook-id")
    def webhook_id(self, obj):
        return obj.event.public_id

    @admin.display(description="next attempt", ordering="next_attempt_at")
    def next_attempt(self, obj):
        return moment_shown(obj.next_attempt_at)

    @admin.display(description="delivered", ordering="delivered_at")
    def delivered(self, obj):
        return moment_shown(obj.delivered_at)

    @admin.display(description="created", ordering="created_at")
    def created(self, obj):
        return moment_shown(obj.created_at)

    @admin.display(description="claimed by a worker until")
    def claimed(self, obj):
        return moment_shown(obj.claimed_until)

    @admin.display(description="queued in the broker until")
    def queued(self, obj):
        return moment_shown(obj.queued_until)

    @admin.display(description="updated", ordering="updated_at")
    def updated(self, obj):
        return moment_shown(obj.updated_at)

    @admin.action(description="Retry now (pending deliveries)", permissions=["operate"])
    def retry_now(self, request, queryset):
        """A pending delivery's next attempt now instead of at its scheduled time; other statuses are left alone."""
        queryset = queryset.select_related("event", "endpoint__merchant")
        if not request.POST.get("post"):
            return self.confirm(
                request,
                queryset,
                action="retry_now",
                title="Retry deliveries now",
                submit="Retry now",
                intro="Each pending delivery below is attempted at once instead of at its scheduled time.",
                rows=[(d, delivery_note(d, wanted=Delivery.PENDING)) for d in queryset],
            )
        retried = not_pending = disabled = 0
        for delivery in queryset:
            if delivery.status != Delivery.PENDING:
                not_pending += 1
            elif not delivery.endpoint.is_enabled:
                disabled += 1
            else:
                with audited(request, "retry_now", delivery):
                    services.delivery_retry_now(delivery=delivery)
                retried += 1
        self.message_user(request, f"{deliveries_counted(retried)} will be attempted now.", messages.SUCCESS)
        if not_pending:
            self.message_user(
                request,
                f"{deliveries_counted(not_pending)} not pending, left alone (replay them instead).",
                messages.WARNING,
            )
        if disabled:
            self.message_user(request, disabled_note(disabled), messages.WARNING)

    @admin.action(description="Replay: a fresh cycle of attempts", permissions=["operate"])
    def replay(self, request, queryset):
        """Each selected delivery to an enabled endpoint starts over: pending, attempt count 0, due now."""
        queryset = queryset.select_related("event", "endpoint__merchant")
        if not request.POST.get("post"):
            return self.confirm(
                request,
                queryset,
                action="replay",
                title="Replay deliveries",
                submit="Replay",
                intro="Each delivery below starts a fresh cycle of attempts now, with the same webhook-id; its past "
                "attempts stay on record. The receiver may get an event it already has.",
                rows=[(d, delivery_note(d)) for d in queryset],
            )
        deliveries = list(queryset)
        chosen = [delivery for delivery in deliveries if delivery.endpoint.is_enabled]
        with audited(request, "replay", *chosen):
            replayed = services.deliveries_replay(deliveries=Delivery.objects.filter(pk__in=[d.pk for d in chosen]))
        self.message_user(request, f"Replayed {deliveries_counted(replayed)}.", messages.SUCCESS)
        if len(deliveries) > len(chosen):
            self.message_user(request, disabled_note(len(deliveries) - len(chosen)), messages.WARNING)
