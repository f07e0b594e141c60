"""Capture sessions in the back office, read-only: which merchant opened one for which page, whether it took its card
(the token, linked) or failed. A session holds nothing of a card, nor its client secret (a hash of it, not shown)."""

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from core.admin import ReadOnlyAdmin
from core.admin_display import BAD, GOOD, NOTHING, QUIET, WARNING, merchant_shown, moment_shown, status_label
from vault.models import CaptureSession

# Each status of a session (CaptureSession.status) as a label.
STATUS_LABELS = {
    "open": ("Open", WARNING),
    "completed": ("Completed", GOOD),
    "locked": ("Locked", BAD),
    "expired": ("Expired", QUIET),
}


@admin.register(CaptureSession)
class CaptureSessionAdmin(ReadOnlyAdmin):
    """Written by the API only (``vault.capture``), newest first."""

    list_display = ["public_id", "merchant_name", "origin", "status", "created", "expires", "failed", "token_link"]
    list_filter = ["merchant", "outcome"]
    list_select_related = ["merchant", "token"]
    # "__exact" rather than "=" (iexact): ids are random letters of both cases.
    search_fields = ["public_id__exact", "origin"]
    search_help_text = "A capture session id (cs_…) exactly, or part of an origin."
    empty_hint = "Search takes a whole session id (cs_…) in the same case, or part of an origin."
    date_hierarchy = "created_at"
    show_full_result_count = False
    fields = [
        "public_id",
        "status",
        "merchant",
        "origin",
        "namespace",
        "description",
        "created",
        "expires",
        "failed",
        "token_link",
        "outcome",
        "completed",
    ]
    readonly_fields = fields

    @admin.display(description="merchant", ordering="merchant__name")
    def merchant_name(self, obj):
        return merchant_shown(obj.merchant)

    @admin.display(description="status")
    def status(self, obj):
        return status_label(*STATUS_LABELS[obj.status()])

    @admin.display(description="created", ordering="created_at")
    def created(self, obj):
        return moment_shown(obj.created_at)

    @admin.display(description="expires", ordering="expires_at")
    def expires(self, obj):
        return moment_shown(obj.expires_at)

    @admin.display(description="completed", ordering="completed_at")
    def completed(self, obj):
        return moment_shown(obj.completed_at)

    @admin.display(description="failed submissions", ordering="failed_submissions")
    def failed(self, obj):
        return obj.failed_submissions

    @admin.display(description="token")
    def token_link(self, obj):
        if obj.token is None:
            return NOTHING
        url = reverse("admin:vault_token_change", args=[obj.token.pk])
        return format_html('<a href="{}">{}</a> {}', url, obj.token.token_id, obj.token.masked_number)
