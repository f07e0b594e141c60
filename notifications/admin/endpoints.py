"""The webhook endpoints' pages and actions: enable, disable, rotate the secret, replay failed deliveries.

An endpoint's page answers "why does it fail?" at the top: its state, its last success, a breakdown of the errors of
the last 24 hours and its last attempts, each linked to its delivery (``selectors``, bounded reads whatever the
number of deliveries); then its actions as buttons (``ObjectActions``), which lead to the list's confirmation pages.
A rotated secret is shown once, on the page that answers the rotation (``secrets.secrets_page``), as a new API key
is.
"""

from urllib.parse import urlencode

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import JsonResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from core.admin_display import counted, merchant_shown, moment_shown, when_shown
from notifications import selectors, services
from notifications.admin import replay
from notifications.admin.base import (
    OperationsAdmin,
    attempt_result,
    audited,
    deliveries_counted,
    endpoint_status,
    masked_secret,
)
from notifications.admin.secrets import secrets_page
from notifications.models import Delivery, WebhookEndpoint


class DisableForm(forms.Form):
    reason = forms.CharField(
        max_length=255, help_text="Shown to the merchant as the endpoint's disabledReason, and to other operators."
    )


def endpoints_counted(count: int) -> str:
    return counted(count, "endpoint")


def delivery_url(pk: int) -> str:
    return reverse("admin:notifications_delivery_change", args=[pk])


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(OperationsAdmin):
    list_display = ["public_id", "status", "url", "merchant_name", "failing_since_shown", "created_at_shown"]
    list_display_links = ["public_id"]
    list_filter = ["is_enabled", "merchant"]
    list_select_related = ["merchant"]
    # "__exact" rather than "=", which means iexact (UPPER(column) = UPPER(term)): ids are random letters of both
    # cases ("ep_a" and "ep_A" would be two endpoints), so only the id exactly as typed is the one asked for.
    search_fields = ["url", "public_id__exact"]
    search_help_text = "Part of the URL, or the endpoint id (ep_…) exactly."
    empty_hint = "Search takes part of the URL (a host, a path) or a whole endpoint id (ep_…) in the same case."
    actions = ["enable", "disable", "rotate_secret", "replay_failed"]
    object_actions = {
        "replay_failed": "Replay failed deliveries",
        "enable": "Enable",
        "disable": "Disable",
        "rotate_secret": "Rotate secret",
    }
    confirmation_template = "admin/notifications/webhookendpoint/action_confirmation.html"
    fieldsets = [
        (
            None,
            {"fields": ["public_id", "status", "merchant", "url", "description", "subscribed_to", "created_at_shown"]},
        ),
        ("State", {"fields": ["disabled_reason", "disabled_at_shown", "failing_since_shown", "deliveries"]}),
        ("Signing", {"fields": ["signing_secret", "previous_secret_until", "updated_at_shown"]}),
    ]
    readonly_fields = [
        "public_id",
        "status",
        "merchant",
        "url",
        "description",
        "subscribed_to",
        "created_at_shown",
        "updated_at_shown",
        "disabled_reason",
        "disabled_at_shown",
        "failing_since_shown",
        "deliveries",
        "signing_secret",
        "previous_secret_until",
    ]

    def object_action_applies(self, obj, name):
        if name == "enable":
            return not obj.is_enabled
        if name in ("disable", "replay_failed"):
            return obj.is_enabled
        return True

    def get_urls(self):
        view = self.admin_site.admin_view(self.replay_count_view)
        return [path("replay-count/", view, name="notifications_webhookendpoint_replay_count"), *super().get_urls()]

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None:
            context.update(self.health(obj))
        return super().render_change_form(request, context, add, change, form_url, obj)

    @staticmethod
    def health(endpoint: WebhookEndpoint) -> dict:
        """The top of the endpoint's page (admin/notifications/webhookendpoint/change_form.html)."""
        now = timezone.now()
        status = endpoint_status(endpoint)
        if endpoint.failing_since is not None:
            status = format_html("{} since {}", status, moment_shown(endpoint.failing_since, now))
        success = selectors.endpoint_last_success(endpoint=endpoint)
        return {
            "endpoint_status": status,
            "last_success": success
            and {
                "url": delivery_url(success.pk),
                "when": moment_shown(success.delivered_at, now),
                "type": success.event.type,
            },
            "error_breakdown": selectors.endpoint_error_breakdown(endpoint=endpoint, now=now),
            "recent_attempts": [
                {
                    "when": moment_shown(attempt.started_at, now),
                    "result": attempt_result(attempt),
                    "duration_ms": f"{attempt.duration_ms:,}",
                    "url": delivery_url(attempt.delivery_id),
                    "type": attempt.delivery.event.type,
                    "number": attempt.number,
                }
                for attempt in selectors.endpoint_recent_attempts(endpoint=endpoint)
            ],
        }

    # --------------------------------------------------------------------------------------------------------
    # Columns and fields
    # --------------------------------------------------------------------------------------------------------
    @admin.display(description="status", ordering="is_enabled")
    def status(self, obj):
        if obj.disabled_reason:
            return format_html('<span title="{}">{}</span>', obj.disabled_reason, endpoint_status(obj))
        return endpoint_status(obj)

    @admin.display(description="merchant", ordering="merchant__name")
    def merchant_name(self, obj):
        return merchant_shown(obj.merchant)

    @admin.display(description="failing since", ordering="failing_since")
    def failing_since_shown(self, obj):
        return moment_shown(obj.failing_since)

    @admin.display(description="created", ordering="created_at")
    def created_at_shown(self, obj):
        return moment_shown(obj.created_at)

    @admin.display(description="updated", ordering="updated_at")
    def updated_at_shown(self, obj):
        return moment_shown(obj.updated_at)

    @admin.display(description="disabled at", ordering="disabled_at")
    def disabled_at_shown(self, obj):
        return moment_shown(obj.disabled_at)

    @admin.display(description="event types")
    def subscribed_to(self, obj):
        return ", ".join(obj.event_types) or "every event type"

    @admin.display(description="signing secret")
    def signing_secret(self, obj):
        return masked_secret(obj.secret)

    @admin.display(description="previous secret signs until")
    def previous_secret_until(self, obj):
        if obj.previous_secret and obj.previous_secret_expires_at and obj.previous_secret_expires_at > timezone.now():
            return format_html(
                "{} ({})", moment_shown(obj.previous_secret_expires_at), masked_secret(obj.previous_secret)
            )
        return "—"

    @admin.display(description="deliveries")
    def deliveries(self, obj):
        url = reverse("admin:notifications_delivery_changelist")
        counts = selectors.delivery_counts(endpoint=obj)
        return format_html(
            '<a href="{}?{}">all</a> · <a href="{}?{}">{} dead</a> · <a href="{}?{}">{} pending</a>',
            url,
            urlencode({"endpoint__id__exact": obj.pk}),
            url,
            urlencode({"endpoint__id__exact": obj.pk, "status__exact": Delivery.FAILED}),
            f"{counts['dead_letters']:,}",
            url,
            urlencode({"endpoint__id__exact": obj.pk, "status__exact": Delivery.PENDING}),
            f"{counts['pending']:,}",
        )

    # --------------------------------------------------------------------------------------------------------
    # Actions
    # --------------------------------------------------------------------------------------------------------
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
        self.message_user(request, f"Enabled {endpoints_counted(enabled)}.", messages.SUCCESS)

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
        self.message_user(request, f"Disabled {endpoints_counted(disabled)}.", messages.SUCCESS)

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
        rotated = []
        for endpoint in queryset:
            with audited(request, "rotate_secret", endpoint):
                rotated.append((endpoint, services.endpoint_rotate_secret(endpoint=endpoint)))
            self.log_change(request, endpoint, "Rotated the signing secret.")
        self.message_user(
            request,
            f"Rotated the signing secret of {counted(len(rotated), 'endpoint')}: copy it below, once.",
            messages.SUCCESS,
        )
        return secrets_page(request, self, rotated)

    @admin.action(description="Replay failed deliveries in a time window", permissions=["operate"])
    def replay_failed(self, request, queryset):
        """Every dead letter of the chosen enabled endpoints whose event is in the window starts over. The window
        defaults to when the endpoints started failing; a window holding nothing is refused with a warning."""
        endpoints = list(queryset.select_related("merchant"))
        enabled = [endpoint for endpoint in endpoints if endpoint.is_enabled]
        confirmed = bool(request.POST.get("post"))
        form = replay.ReplayWindowForm(
            request.POST if confirmed else None, endpoints=endpoints, count_url=replay.count_url(endpoints)
        )
        if confirmed and form.is_valid() and not form.counts()["in_window"]:
            since, until = form.window()
            self.message_user(
                request,
                f"Nothing was replayed: no failed delivery of {'these endpoints' if len(endpoints) > 1 else 'it'} "
                f"has its event between {when_shown(since)} and {when_shown(until)}. Widen the window.",
                messages.WARNING,
            )
            confirmed = False
        if not (confirmed and form.is_valid()):
            return self._replay_form(request, queryset, endpoints, form)
        since, until = form.window()
        replayed_at, replayed = timezone.now(), 0
        for endpoint in enabled:
            with audited(
                request, "replay_failed", endpoint, since=since.isoformat(), until=until.isoformat()
            ) as detail:
                detail["replayed"] = services.endpoint_replay_failed(endpoint=endpoint, since=since, until=until)
            replayed += detail["replayed"]
        url = replay.replayed_url(enabled, since=since, until=until, at=replayed_at)
        self.message_user(
            request,
            format_html(
                'Replayed {}. <a href="{}" id="replayed-deliveries">See them in the deliveries list</a>.',
                counted(replayed, "failed delivery", "failed deliveries"),
                url,
            ),
            messages.SUCCESS,
        )
        if len(enabled) < len(endpoints):
            self.message_user(
                request,
                f"{endpoints_counted(len(endpoints) - len(enabled))} disabled, left alone: enable them first.",
                messages.WARNING,
            )

    def _replay_form(self, request, queryset, endpoints, form):
        disabled = sum(1 for endpoint in endpoints if not endpoint.is_enabled)
        return self.confirm(
            request,
            queryset,
            action="replay_failed",
            title="Replay failed deliveries",
            submit="Replay",
            form=form,
            intro="Every failed delivery (dead letter) of these endpoints whose event happened in the window starts a "
            "fresh cycle of attempts now (its attempt history is kept). Merchants receive the same webhook-id "
            "again.",
            notes=[f"{endpoints_counted(disabled)} disabled, left alone: enable them first." if disabled else ""],
            rows=self._rows(
                endpoints,
                lambda e: (
                    f"{deliveries_counted(selectors.delivery_counts(endpoint=e)['dead_letters'])} failed in all"
                    + ("" if e.is_enabled else "; disabled, left alone")
                ),
            ),
        )

    def replay_count_view(self, request):
        """What the replay form's window holds, as JSON for its script: ``{"inWindow", "failed", "text"}``, or 400
        with the reason in ``text`` when the window is not one."""
        if not self.has_operate_permission(request):
            raise PermissionDenied
        ids = [value for value in request.GET.getlist("endpoint")[:100] if value.isdigit()]
        endpoints = list(self.get_queryset(request).filter(pk__in=ids))
        form = replay.ReplayWindowForm(request.GET, endpoints=endpoints)
        if not form.is_valid():
            errors = [error for errors in form.errors.values() for error in errors]
            return JsonResponse({"text": " ".join(errors)}, status=400)
        counts = form.counts()
        return JsonResponse(
            {"inWindow": counts["in_window"], "failed": counts["failed"], "text": replay.count_text(counts)}
        )
