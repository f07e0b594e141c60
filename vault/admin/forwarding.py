"""Forwarding in the back office: merchants' destinations, which staff may disable and enable again, and the log of
forwards, read-only.

A destination's credentials are never shown, nor any part of them: its page lists their names. Disabling and
enabling are actions (from the list, or the buttons of a destination's page) with a confirmation page first; each
calls ``vault.forwarding`` with the staff user as the actor, which writes the change and its audit row. A forward's
row holds nothing of a card or a credential (``vault.models.Forward``): the path is the template the merchant sent.
"""

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_permission_codename

from core.admin import ConfirmsActions, ObjectActions, ReadOnlyAdmin, staff_actor
from core.admin_display import BAD, GOOD, NOTHING, QUIET, counted, merchant_shown, moment_shown, status_label
from vault import forwarding
from vault.models import Forward, ForwardDestination


class DisableForm(forms.Form):
    reason = forms.CharField(
        max_length=255, help_text="Shown to the merchant as the destination's disabledReason, and to other staff."
    )


def destinations_counted(count: int) -> str:
    return counted(count, "destination")


def destination_status(destination: ForwardDestination):
    return status_label("Enabled", GOOD) if destination.is_enabled else status_label("Disabled", QUIET)


@admin.register(ForwardDestination)
class ForwardDestinationAdmin(ObjectActions, ConfirmsActions, ReadOnlyAdmin):
    """Looked at, and disabled or enabled through actions (the change permission); never added (merchants register
    them through the API, with their credentials), edited or deleted here."""

    list_display = ["name", "status", "url", "merchant_name", "created_at_shown"]
    list_filter = ["is_enabled", "merchant"]
    list_select_related = ["merchant"]
    # "__exact" rather than "=" (iexact): ids are random letters of both cases.
    search_fields = ["name", "url", "public_id__exact"]
    search_help_text = "Part of the name or the URL, or the destination id (fwd_…) exactly."
    empty_hint = "Search takes part of a name or a URL, or a whole destination id (fwd_…) in the same case."
    actions = ["disable", "enable"]
    object_actions = {"enable": "Enable", "disable": "Disable"}
    fields = [
        "public_id",
        "status",
        "merchant",
        "name",
        "url",
        "description",
        "credential_names",
        "disabled_reason",
        "disabled_at_shown",
        "created_at_shown",
        "updated_at_shown",
    ]
    readonly_fields = fields

    def has_operate_permission(self, request):
        return request.user.has_perm(f"{self.opts.app_label}.{get_permission_codename('change', self.opts)}")

    def object_action_applies(self, obj, name):
        return not obj.is_enabled if name == "enable" else obj.is_enabled

    @admin.display(description="status", ordering="is_enabled")
    def status(self, obj):
        return destination_status(obj)

    @admin.display(description="merchant", ordering="merchant__name")
    def merchant_name(self, obj):
        return merchant_shown(obj.merchant)

    @admin.display(description="credentials")
    def credential_names(self, obj):
        """Their names, never their values (decrypted to find the names, which are encrypted with them)."""
        return ", ".join(forwarding.destination_credential_names(obj)) or NOTHING

    @admin.display(description="disabled at")
    def disabled_at_shown(self, obj):
        return moment_shown(obj.disabled_at)

    @admin.display(description="created", ordering="created_at")
    def created_at_shown(self, obj):
        return moment_shown(obj.created_at)

    @admin.display(description="updated", ordering="updated_at")
    def updated_at_shown(self, obj):
        return moment_shown(obj.updated_at)

    # --------------------------------------------------------------------------------------------------------
    # Actions
    # --------------------------------------------------------------------------------------------------------
    @admin.action(description="Disable selected destinations", permissions=["operate"])
    def disable(self, request, queryset):
        queryset = queryset.select_related("merchant")
        confirmed = bool(request.POST.get("post"))
        form = DisableForm(request.POST if confirmed else None)
        if not (confirmed and form.is_valid()):
            return self.confirm(
                request,
                queryset,
                action="disable",
                title="Disable forward destinations",
                submit="Disable",
                form=form,
                intro="Forwards to these destinations are refused from now on; the merchant sees them disabled, "
                "with the reason, and cannot enable them again.",
                rows=[
                    (d, "enabled" if d.is_enabled else f"already disabled ({d.disabled_reason}), left as it is")
                    for d in queryset
                ],
            )
        reason = form.cleaned_data["reason"]
        disabled = 0
        for destination in queryset:
            if forwarding.destination_disable(destination=destination, reason=reason, actor=staff_actor(request)):
                self.log_change(request, destination, f"Disabled: {reason}")
                disabled += 1
        self.message_user(request, f"Disabled {destinations_counted(disabled)}.", messages.SUCCESS)

    @admin.action(description="Enable selected destinations", permissions=["operate"])
    def enable(self, request, queryset):
        queryset = queryset.select_related("merchant")
        if not request.POST.get("post"):
            return self.confirm(
                request,
                queryset,
                action="enable",
                title="Enable forward destinations",
                submit="Enable",
                intro="The merchant's forwards to these destinations are sent again.",
                rows=[
                    (d, f"disabled: {d.disabled_reason}" if not d.is_enabled else "already enabled, left as it is")
                    for d in queryset
                ],
            )
        enabled = 0
        for destination in queryset:
            if forwarding.destination_enable(destination=destination, actor=staff_actor(request)):
                self.log_change(request, destination, "Enabled.")
                enabled += 1
        self.message_user(request, f"Enabled {destinations_counted(enabled)}.", messages.SUCCESS)


def forward_status(forward: Forward):
    """The destination's status code (good when 2xx), or the error that stopped the forward."""
    if forward.status_code is not None:
        return status_label(str(forward.status_code), GOOD if 200 <= forward.status_code < 300 else BAD)
    return status_label(forward.error or "no answer", BAD)


@admin.register(Forward)
class ForwardAdmin(ReadOnlyAdmin):
    """The log of forwards, newest first: written by the forward itself, never changed."""

    list_display = ["when", "merchant_name", "token_id", "destination", "method", "path", "status", "duration"]
    list_filter = ["method", "merchant", "destination"]
    list_select_related = ["merchant", "token", "destination"]
    # "__exact" rather than "=" (iexact): ids of both cases; the index-backed equality on the token's tokenId.
    search_fields = ["token__token_id__exact", "public_id__exact"]
    search_help_text = "A tokenId or a forward id (fw_…), exactly."
    empty_hint = "Search takes a whole tokenId or forward id in the same case, or clear the filters."
    date_hierarchy = "created_at"
    show_full_result_count = False
    fields = [
        "public_id",
        "when",
        "merchant",
        "token_id",
        "network_token_id",
        "destination",
        "method",
        "path",
        "status",
        "duration",
    ]
    readonly_fields = fields

    @admin.display(description="when", ordering="created_at")
    def when(self, obj):
        return moment_shown(obj.created_at)

    @admin.display(description="merchant", ordering="merchant__name")
    def merchant_name(self, obj):
        return merchant_shown(obj.merchant)

    @admin.display(description="token")
    def token_id(self, obj):
        return obj.token.token_id

    @admin.display(description="status", ordering="status_code")
    def status(self, obj):
        return forward_status(obj)

    @admin.display(description="duration", ordering="duration_ms")
    def duration(self, obj):
        return NOTHING if obj.duration_ms is None else f"{obj.duration_ms:,} ms"
