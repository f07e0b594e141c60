"""The webhook endpoints' pages and actions: enable, disable, rotate the secret, replay failed deliveries."""

from datetime import timedelta
from urllib.parse import urlencode

from django import forms
from django.contrib import admin, messages
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from notifications import services

# "whsec_" and four characters of the key: enough to tell two secrets apart, nothing to sign with.
from notifications.admin.base import OperationsAdmin, audited, masked_secret
from notifications.models import Delivery, WebhookEndpoint


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
            with audited(request, "enable", endpoint):
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
            with audited(request, "disable", endpoint, reason=reason):
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
            with audited(request, "rotate_secret", endpoint):
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
            with audited(
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
