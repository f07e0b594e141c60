"""The operators' webhook console: endpoints, events, deliveries and their attempts.

Every page here is read-only: rows change only through actions, and actions only through
``notifications.services``, the code the merchant API and the workers run too. (A form saving a whole endpoint or
delivery row would write back stale copies of the columns the workers keep moving: ``failing_since``, leases,
``next_attempt_at``.) Viewing takes the model's view permission; running an action takes its change permission,
which the ``operators`` group holds (migration 0002) and nobody in the back office does. Each action asks for
confirmation when it touches endpoints, and writes one audit row per object as ``admin:<username>``.

A signing secret is never a field of any page: its first characters identify it, and a secret rotated here is shown
once, in the message that follows the rotation, exactly as the API shows it once to the merchant.
"""

import json
from contextlib import contextmanager
from datetime import timedelta
from urllib.parse import urlencode

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_permission_codename
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.text import Truncator

from core.admin import ConfirmsActions, ReadOnlyInline, staff_actor
from core.audit import audit_record
from notifications import services
from notifications.models import Delivery, DeliveryAttempt, Event, WebhookEndpoint

# "whsec_" and four characters of the key: enough to tell two secrets apart, nothing to sign with.
SECRET_SHOWN = len("whsec_") + 4
RESPONSE_BODY_SHOWN = 300


@contextmanager
def _audited(request, action: str, *objects: WebhookEndpoint | Delivery, **detail):
    """One transaction for the block (a service call) and an ``admin.webhook.<action>`` audit row per object, an
    endpoint or a delivery, as it was before the block; the block may add to the ``detail`` it is given (what the
    service returned).

    Until the notifications services take the actor and audit themselves, as the vault's do: then this goes.
    """
    subjects = [_audit_subject(obj) for obj in objects]
    with transaction.atomic():
        yield detail
        for object_type, object_id, about in subjects:
            audit_record(
                actor=staff_actor(request),
                action=f"admin.webhook.{action}",
                object_type=object_type,
                object_id=object_id,
                detail={**about, **detail},
            )


def _audit_subject(obj: WebhookEndpoint | Delivery) -> tuple[str, str, dict]:
    """How the audit log names ``obj``, and what it notes of it."""
    if isinstance(obj, WebhookEndpoint):
        return "webhook_endpoint", obj.public_id, {"merchant": obj.merchant.public_id}
    # A delivery has no public id of its own: it is its event (the webhook-id merchants see) at one endpoint.
    return (
        "webhook_delivery",
        f"{obj.event.public_id}/{obj.endpoint.public_id}",
        {"merchant": obj.endpoint.merchant.public_id, "status_before": obj.status},
    )


def masked_secret(secret: str) -> str:
    return f"{secret[:SECRET_SHOWN]}…" if secret else "—"


# ------------------------------------------------------------------------------------------------------------
# Shared shape: read-only pages, actions on the change permission
# ------------------------------------------------------------------------------------------------------------
class OperationsAdmin(ConfirmsActions, admin.ModelAdmin):
    """Look through pages, act through actions (``permissions=["operate"]``: the model's change permission)."""

    def has_add_permission(self, request):
        # Endpoints are the merchants' (made through the API, which hands them their secret); the rest is history.
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        # Disable an endpoint instead; events, deliveries and attempts are the record of what was sent.
        return False

    def has_operate_permission(self, request):
        return request.user.has_perm(f"{self.opts.app_label}.{get_permission_codename('change', self.opts)}")


def _delivery_note(delivery: Delivery, *, wanted: str | None = None) -> str:
    """What an action will do with ``delivery``, for its confirmation page."""
    if not delivery.endpoint.is_enabled:
        return "endpoint disabled, left alone"
    if wanted and delivery.status != wanted:
        return f"{delivery.get_status_display()}, left alone"
    return delivery.get_status_display()


def _disabled_note(count: int, what: str) -> str:
    if not count:
        return ""
    return (
        f"{count} {what} to a disabled endpoint will be left alone: an attempt there fails at once. "
        "Enable the endpoint first."
    )


# ------------------------------------------------------------------------------------------------------------
# Endpoints
# ------------------------------------------------------------------------------------------------------------
class DisableForm(forms.Form):
    reason = forms.CharField(
        max_length=255, help_text="Shown to the merchant as the endpoint's disabledReason, and to other operators."
    )


class ReplayWindowForm(forms.Form):
    since = forms.DateTimeField(
        label="Events from", widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M")
    )
    until = forms.DateTimeField(
        label="Events until", widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M")
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        zone = timezone.get_current_timezone_name()
        self.fields["since"].help_text = f"{zone}, when the event happened (not when it was last attempted)."
        self.fields["until"].help_text = f"{zone}, included."

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("since") and cleaned.get("until") and cleaned["since"] > cleaned["until"]:
            raise forms.ValidationError("The window ends before it starts.")
        return cleaned


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(OperationsAdmin):
    list_display = ["url", "public_id", "merchant", "is_enabled", "disabled_reason", "failing_since", "created_at"]
    list_filter = ["is_enabled", "merchant"]
    list_select_related = ["merchant"]
    # "__exact" rather than "=", which means iexact (UPPER(column) = UPPER(term)): ids are random letters of both
    # cases ("ep_a" and "ep_A" would be two endpoints), so only the id exactly as typed is the one asked for.
    search_fields = ["url", "public_id__exact"]
    search_help_text = "Part of the URL, or the endpoint id (ep_…) exactly."
    actions = ["enable", "disable", "rotate_secret", "replay_failed"]
    fieldsets = [
        (
            None,
            {"fields": ["public_id", "merchant", "url", "description", "subscribed_to", "created_at", "updated_at"]},
        ),
        ("State", {"fields": ["is_enabled", "disabled_reason", "disabled_at", "failing_since", "deliveries"]}),
        ("Signing", {"fields": ["signing_secret", "previous_secret_until"]}),
    ]
    readonly_fields = [
        "public_id",
        "merchant",
        "url",
        "description",
        "subscribed_to",
        "created_at",
        "updated_at",
        "is_enabled",
        "disabled_reason",
        "disabled_at",
        "failing_since",
        "deliveries",
        "signing_secret",
        "previous_secret_until",
    ]

    @admin.display(description="event types")
    def subscribed_to(self, obj):
        return ", ".join(obj.event_types) or "every event type"

    @admin.display(description="signing secret")
    def signing_secret(self, obj):
        return masked_secret(obj.secret)

    @admin.display(description="previous secret signs until")
    def previous_secret_until(self, obj):
        if obj.previous_secret and obj.previous_secret_expires_at and obj.previous_secret_expires_at > timezone.now():
            return f"{obj.previous_secret_expires_at:%Y-%m-%d %H:%M} UTC ({masked_secret(obj.previous_secret)})"
        return "—"

    @admin.display(description="deliveries")
    def deliveries(self, obj):
        url = reverse("admin:notifications_delivery_changelist")
        failed = obj.deliveries.filter(status=Delivery.FAILED).count()
        pending = obj.deliveries.filter(status=Delivery.PENDING).count()
        return format_html(
            '<a href="{}?{}">all</a> · <a href="{}?{}">failed ({})</a> · <a href="{}?{}">pending ({})</a>',
            url,
            urlencode({"endpoint__id__exact": obj.pk}),
            url,
            urlencode({"endpoint__id__exact": obj.pk, "status__exact": Delivery.FAILED}),
            failed,
            url,
            urlencode({"endpoint__id__exact": obj.pk, "status__exact": Delivery.PENDING}),
            pending,
        )

    def _rows(self, queryset, note):
        return [(endpoint, note(endpoint)) for endpoint in queryset]

    @admin.action(description="Enable selected endpoints", permissions=["operate"])
    def enable(self, request, queryset):
        queryset = queryset.select_related("merchant")
        if not request.POST.get("post"):
            return self.confirm(
                request,
                queryset,
                action="enable",
                title="Enable webhook endpoints",
                submit="Enable",
                intro="Deliveries to these endpoints start again with the next event, and their failure streak is "
                "cleared. Deliveries that already failed stay failed: replay them with “Replay failed "
                "deliveries”.",
                rows=self._rows(
                    queryset,
                    lambda e: (
                        f"disabled: {e.disabled_reason}" if not e.is_enabled else "already enabled, left as it is"
                    ),
                ),
            )
        enabled = 0
        for endpoint in queryset.filter(is_enabled=False):
            with _audited(request, "enable", endpoint):
                services.endpoint_update(endpoint=endpoint, enabled=True)
            self.log_change(request, endpoint, "Enabled.")
            enabled += 1
        self.message_user(request, f"Enabled {enabled} endpoint(s).", messages.SUCCESS)

    @admin.action(description="Disable selected endpoints", permissions=["operate"])
    def disable(self, request, queryset):
        queryset = queryset.select_related("merchant")
        confirmed = bool(request.POST.get("post"))
        form = DisableForm(request.POST if confirmed else None)
        if not (confirmed and form.is_valid()):
            return self.confirm(
                request,
                queryset,
                action="disable",
                title="Disable webhook endpoints",
                submit="Disable",
                form=form,
                intro="Nothing more is sent to these endpoints: new events make no delivery for them, and pending "
                "deliveries fail at their next attempt (they can be replayed once the endpoint is enabled).",
                rows=self._rows(
                    queryset,
                    lambda e: "enabled" if e.is_enabled else f"already disabled ({e.disabled_reason}), left as it is",
                ),
            )
        reason = form.cleaned_data["reason"]
        disabled = 0
        for endpoint in queryset.filter(is_enabled=True):
            with _audited(request, "disable", endpoint, reason=reason):
                services.endpoint_disable(endpoint=endpoint, reason=reason)
            self.log_change(request, endpoint, f"Disabled: {reason}")
            disabled += 1
        self.message_user(request, f"Disabled {disabled} endpoint(s).", messages.SUCCESS)

    @admin.action(description="Rotate the signing secret", permissions=["operate"])
    def rotate_secret(self, request, queryset):
        queryset = queryset.select_related("merchant")
        if not request.POST.get("post"):
            return self.confirm(
                request,
                queryset,
                action="rotate_secret",
                title="Rotate signing secrets",
                submit="Rotate",
                intro="Each endpoint gets a new signing secret, shown once on the next page. For 24 hours the old "
                "secret keeps signing beside it, so the merchant can switch without losing a delivery; a "
                "secret rotated again within those hours stops at once.",
                rows=self._rows(queryset, lambda e: f"merchant {e.merchant}, secret {masked_secret(e.secret)}"),
            )
        for endpoint in queryset:
            with _audited(request, "rotate_secret", endpoint):
                rotated = services.endpoint_rotate_secret(endpoint=endpoint)
            self.log_change(request, endpoint, "Rotated the signing secret.")
            messages.warning(
                request,
                f"New signing secret for {rotated.url} ({rotated.public_id}), shown only this once: {rotated.secret} "
                f"— the previous one keeps signing until {rotated.previous_secret_expires_at:%Y-%m-%d %H:%M} UTC.",
            )

    @admin.action(description="Replay failed deliveries in a time window", permissions=["operate"])
    def replay_failed(self, request, queryset):
        queryset = queryset.select_related("merchant")
        confirmed = bool(request.POST.get("post"))
        # The form shows minutes: the default window ends at the next whole minute, so it holds what failed just now.
        until = (timezone.localtime() + timedelta(minutes=1)).replace(second=0, microsecond=0)
        form = ReplayWindowForm(
            request.POST if confirmed else None, initial={"since": until - timedelta(days=1), "until": until}
        )
        if not (confirmed and form.is_valid()):
            disabled = sum(1 for endpoint in queryset if not endpoint.is_enabled)
            return self.confirm(
                request,
                queryset,
                action="replay_failed",
                title="Replay failed deliveries",
                submit="Replay",
                form=form,
                intro="Every FAILED delivery of these endpoints whose event happened in the window starts a fresh "
                "cycle of attempts now (its attempt history is kept). Merchants receive the same webhook-id "
                "again.",
                notes=[
                    f"{disabled} of these endpoints are disabled and will be left alone: enable them first."
                    if disabled
                    else ""
                ],
                rows=self._rows(
                    queryset,
                    lambda e: (
                        f"{e.deliveries.filter(status=Delivery.FAILED).count()} failed in all"
                        + ("" if e.is_enabled else "; disabled, left alone")
                    ),
                ),
            )
        since, until = form.cleaned_data["since"], form.cleaned_data["until"]
        replayed = skipped = 0
        for endpoint in queryset:
            if not endpoint.is_enabled:
                skipped += 1
                continue
            with _audited(
                request, "replay_failed", endpoint, since=since.isoformat(), until=until.isoformat()
            ) as detail:
                detail["replayed"] = services.endpoint_replay_failed(endpoint=endpoint, since=since, until=until)
            replayed += detail["replayed"]
        self.message_user(request, f"Replayed {replayed} failed delivery(ies).", messages.SUCCESS)
        if skipped:
            self.message_user(
                request, f"{skipped} disabled endpoint(s) left alone: enable them first.", messages.WARNING
            )


# ------------------------------------------------------------------------------------------------------------
# Events
# ------------------------------------------------------------------------------------------------------------
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
                rows=[(d, _delivery_note(d, wanted=Delivery.PENDING)) for d in queryset],
            )
        retried = not_pending = disabled = 0
        for delivery in queryset:
            if delivery.status != Delivery.PENDING:
                not_pending += 1
            elif not delivery.endpoint.is_enabled:
                disabled += 1
            else:
                with _audited(request, "retry_now", delivery):
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
            self.message_user(request, _disabled_note(disabled, "delivery(ies)"), messages.WARNING)

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
                rows=[(d, _delivery_note(d)) for d in queryset],
            )
        deliveries = list(queryset)
        chosen = [delivery for delivery in deliveries if delivery.endpoint.is_enabled]
        with _audited(request, "replay", *chosen):
            replayed = services.deliveries_replay(deliveries=Delivery.objects.filter(pk__in=[d.pk for d in chosen]))
        self.message_user(request, f"Replayed {replayed} delivery(ies).", messages.SUCCESS)
        if len(deliveries) > len(chosen):
            self.message_user(request, _disabled_note(len(deliveries) - len(chosen), "delivery(ies)"), messages.WARNING)
