"""Asynchronous requests: history to look through, and "Retry now" for a pending one (on the list, and as a button on
the request's page)."""

from django.contrib import admin, messages
from django.utils.html import format_html

from core.admin import staff_actor
from core.admin_display import counted, moment_shown
from networks import services
from networks.admin.base import HistoryAdmin, ShowsVaultTokens
from networks.models import ProvisioningRequest


@admin.register(ProvisioningRequest)
class ProvisioningRequestAdmin(ShowsVaultTokens, HistoryAdmin):
    list_display = [
        "public_id",
        "current_status",
        "merchant_name",
        "correlation_id",
        "attempts",
        "next_attempt",
        "failure_code",
        "created",
    ]
    list_filter = ["status"]
    list_select_related = ["merchant"]
    search_fields = ["=public_id", "=correlation_id", "vault_token__token_id__exact"]
    search_help_text = "The request id (req_…), the merchant's correlation id or the vault tokenId, exactly."
    date_hierarchy = "created_at"
    show_full_result_count = False
    actions = ["retry_now"]
    object_actions = {"retry_now": "Retry now"}
    # Never the card ciphertext nor its key version: a card sent in the request is only said to be there.
    fields = [
        "public_id",
        "merchant",
        "correlation_id",
        "current_status",
        "attempts",
        "next_attempt",
        "queued",
        "claimed",
        "card_source",
        "account_id",
        "network_token",
        "failure_code",
        "failure_reason",
        "created",
        "updated",
    ]
    readonly_fields = fields

    def object_action_applies(self, obj, name):
        return obj.status == ProvisioningRequest.PENDING

    @admin.display(description="next attempt", ordering="next_attempt_at")
    def next_attempt(self, obj):
        return moment_shown(obj.next_attempt_at)

    @admin.display(description="queued until")
    def queued(self, obj):
        return moment_shown(obj.queued_until)

    @admin.display(description="claimed until")
    def claimed(self, obj):
        return moment_shown(obj.claimed_until)

    @admin.action(description="Retry now (pending requests)", permissions=["operate"])
    def retry_now(self, request, queryset):
        """A pending request attempted at once: one whose retry is scheduled later, or that looks stuck (its message
        lost, its worker gone before its lease ran out). Requests that ended are left alone."""
        queryset = queryset.select_related("merchant")
        if not request.POST.get("post"):
            return self.confirm(
                request,
                queryset,
                action="retry_now",
                title="Retry network-token requests now",
                submit="Retry now",
                intro="Each pending request below is queued for an attempt at once. A worker still busy with one "
                "loses it to the new attempt: the network may then be asked twice for that card.",
                rows=[
                    (
                        r,
                        f"{r.status}, attempt {r.attempts}"
                        + ("" if r.status == ProvisioningRequest.PENDING else ", left alone"),
                    )
                    for r in queryset
                ],
            )
        actor = staff_actor(request)
        retried = sum(services.provisioning_request_retry_now(request=r, actor=actor) for r in queryset)
        if retried or not queryset.exists():
            self.message_user(request, f"{counted(retried, 'request')} will be attempted now.", messages.SUCCESS)
        if left := queryset.count() - retried:
            ended = counted(left, "request had ended and was", "requests had ended and were")
            self.message_user(request, f"{ended} left alone.", messages.WARNING)

    @admin.display(description="card")
    def card_source(self, obj):
        if obj.vault_token_id is not None:
            return format_html("from vault token {}", self.vault_token_shown(obj))
        if obj.card_ciphertext is not None:
            return "sent in the request (kept encrypted until the request ends)"
        return "sent in the request (destroyed when the request ended)"
