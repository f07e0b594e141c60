"""Events and deliveries: their pages, with the attempts, and the actions retry now and replay."""

import json

from django.contrib import admin, messages
from django.utils.html import format_html
from django.utils.text import Truncator

from core.admin import ReadOnlyInline
from notifications import services

# "whsec_" and four characters of the key: enough to tell two secrets apart, nothing to sign with.
from notifications.admin.base import (
    RESPONSE_BODY_SHOWN,
    OperationsAdmin,
    audited,
    delivery_note,
    disabled_note,
)
from notifications.models import Delivery, DeliveryAttempt, Event


class DeliveryInline(ReadOnlyInline):
    model = Delivery
    fields = ["endpoint", "status", "attempt_count", "last_status_code", "next_attempt_at", "delivered_at"]
    readonly_fields = fields
    show_change_link = True
    ordering = ["pk"]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("endpoint")


@admin.register(Event)
class EventAdmin(OperationsAdmin):
    list_display = ["public_id", "type", "merchant", "created_at"]
    list_filter = ["type", "merchant"]
    list_select_related = ["merchant"]
    # Exact, as for endpoints: an event id is case-sensitive, and "=" (iexact) would read the whole outbox, since no
    # index answers UPPER(public_id).
    search_fields = ["public_id__exact"]
    search_help_text = "The event id (msg_…, the webhook-id header), exactly."
    date_hierarchy = "created_at"
    show_full_result_count = False  # the outbox grows with every token change
    fields = ["public_id", "type", "merchant", "created_at", "payload"]
    readonly_fields = fields
    inlines = [DeliveryInline]

    @admin.display(description="data")
    def payload(self, obj):
        # Ids, masked card data and metadata only (event_emit's contract): what was sent, as sent.
        return format_html("<pre>{}</pre>", json.dumps(obj.data, indent=2, sort_keys=True))


# ------------------------------------------------------------------------------------------------------------
# Deliveries and their attempts
# ------------------------------------------------------------------------------------------------------------
class AttemptInline(ReadOnlyInline):
    model = DeliveryAttempt
    fields = ["number", "started_at", "duration", "status_code", "error", "response", "succeeded"]
    readonly_fields = fields

    @admin.display(description="duration")
    def duration(self, obj):
        return f"{obj.duration_ms} ms"

    @admin.display(description="response body")
    def response(self, obj):
        return Truncator(obj.response_body).chars(RESPONSE_BODY_SHOWN) or "—"


@admin.register(Delivery)
class DeliveryAdmin(OperationsAdmin):
    list_display = [
        "event_type",
        "endpoint_url",
        "status",
        "attempt_count",
        "last_status_code",
        "next_attempt_at",
        "delivered_at",
        "created_at",
    ]
    list_filter = ["status", "endpoint"]
    list_select_related = ["event", "endpoint"]
    search_fields = ["event__public_id__exact"]  # exact, as for events
    search_help_text = "The event id (msg_…, the webhook-id header), exactly."
    show_full_result_count = False
    actions = ["retry_now", "replay"]
    fields = [
        "event",
        "webhook_id",
        "endpoint",
        "status",
        "attempt_count",
        "next_attempt_at",
        "last_status_code",
        "last_error",
        "delivered_at",
        "claimed_until",
        "queued_until",
        "created_at",
        "updated_at",
    ]
    readonly_fields = fields
    inlines = [AttemptInline]

    @admin.display(description="event", ordering="event__type")
    def event_type(self, obj):
        return obj.event.type

    @admin.display(description="endpoint", ordering="endpoint__url")
    def endpoint_url(self, obj):
        return obj.endpoint.url

    @admin.display(description="webhook-id")
    def webhook_id(self, obj):
        return obj.event.public_id

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
        self.message_user(request, f"{retried} delivery(ies) will be attempted now.", messages.SUCCESS)
        if not_pending:
            self.message_user(
                request,
                f"{not_pending} delivery(ies) were not pending and were left alone (replay them instead).",
                messages.WARNING,
            )
        if disabled:
            self.message_user(request, disabled_note(disabled, "delivery(ies)"), messages.WARNING)

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
        self.message_user(request, f"Replayed {replayed} delivery(ies).", messages.SUCCESS)
        if len(deliveries) > len(chosen):
            self.message_user(request, disabled_note(len(deliveries) - len(chosen), "delivery(ies)"), messages.WARNING)
