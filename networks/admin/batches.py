"""Batches and their items: history, counted by state."""

from urllib.parse import urlencode

from django.contrib import admin
from django.db.models import Count, Q
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from core.admin_display import moment_shown
from networks.admin.base import HistoryAdmin, reference_shown
from networks.models import Batch, BatchItem
from vault.admin import NamespaceFilter

# Shown on a batch page; the rest are a click away in the batch items list.
FAILED_ITEMS_SHOWN = 50


def _counted(status: str) -> str:
    return f"{status.lower()}_count"


class BatchFilter(NamespaceFilter):
    """By batch id, typed in: batches are far too many to list."""

    title = "batch"
    parameter_name = "batch"
    placeholder = "bat_…"

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(batch__public_id=self.value())
        return queryset


@admin.register(Batch)
class BatchAdmin(HistoryAdmin):
    list_display = [
        "public_id",
        "current_status",
        "merchant_name",
        "total",
        "pending",
        "queued",
        "running",
        "pending_activation",
        "succeeded",
        "failed",
        "created",
        "completed",
    ]
    list_filter = ["status"]
    list_select_related = ["merchant"]
    search_fields = ["=public_id"]
    search_help_text = "The batch id (bat_…), exactly."
    date_hierarchy = "created_at"
    show_full_result_count = False
    fields = [
        "public_id",
        "merchant",
        "current_status",
        "total",
        "items_by_state",
        "created",
        "completed",
        "failed_items",
    ]
    readonly_fields = fields

    @admin.display(description="completed", ordering="completed_at")
    def completed(self, obj):
        return moment_shown(obj.completed_at)

    def get_queryset(self, request):
        counts = {_counted(status): Count("items", filter=Q(items__status=status)) for status, _ in BatchItem.STATUSES}
        return super().get_queryset(request).annotate(**counts)

    @admin.display(description="pending", ordering=_counted(BatchItem.PENDING))
    def pending(self, obj):
        return getattr(obj, _counted(BatchItem.PENDING))

    @admin.display(description="queued", ordering=_counted(BatchItem.QUEUED))
    def queued(self, obj):
        return getattr(obj, _counted(BatchItem.QUEUED))

    @admin.display(description="running", ordering=_counted(BatchItem.RUNNING))
    def running(self, obj):
        return getattr(obj, _counted(BatchItem.RUNNING))

    @admin.display(description="awaiting activation", ordering=_counted(BatchItem.PENDING_ACTIVATION))
    def pending_activation(self, obj):
        return getattr(obj, _counted(BatchItem.PENDING_ACTIVATION))

    @admin.display(description="succeeded", ordering=_counted(BatchItem.SUCCEEDED))
    def succeeded(self, obj):
        return getattr(obj, _counted(BatchItem.SUCCEEDED))

    @admin.display(description="failed", ordering=_counted(BatchItem.FAILED))
    def failed(self, obj):
        return getattr(obj, _counted(BatchItem.FAILED))

    @admin.display(description="items")
    def items_by_state(self, obj):
        url = reverse("admin:networks_batchitem_changelist")
        links = [(url, urlencode({"batch": obj.public_id}), "all", obj.total)] + [
            (
                url,
                urlencode({"batch": obj.public_id, "status__exact": status}),
                status.lower(),
                getattr(obj, _counted(status)),
            )
            for status, _ in BatchItem.STATUSES
        ]
        return format_html_join(" · ", '<a href="{}?{}">{} ({})</a>', links)

    @admin.display(description="failed items")
    def failed_items(self, obj):
        failed = list(obj.items.filter(status=BatchItem.FAILED).order_by("index")[:FAILED_ITEMS_SHOWN])
        if not failed:
            return "None."
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (item.index, reference_shown(item.token_reference), item.failure_code, item.failure_reason)
                for item in failed
            ),
        )
        more = getattr(obj, _counted(BatchItem.FAILED)) - len(failed)
        link = (
            reverse("admin:networks_batchitem_changelist")
            + "?"
            + urlencode({"batch": obj.public_id, "status__exact": BatchItem.FAILED})
        )
        return format_html(
            '<table><thead><tr><th scope="col">#</th><th scope="col">token</th><th scope="col">error</th>'
            '<th scope="col">reason</th></tr></thead><tbody>{}</tbody></table><p>{}<a href="{}">All failed items'
            "</a></p>",
            rows,
            f"{more} more not shown. " if more > 0 else "",
            link,
        )


@admin.register(BatchItem)
class BatchItemAdmin(HistoryAdmin):
    list_display = [
        "batch",
        "index",
        "reference",
        "current_status",
        "issuer",
        "attempts",
        "failure_code",
        "failure_reason",
        "finished",
    ]
    list_filter = [BatchFilter, "status", "issuer"]
    list_select_related = ["batch", "issuer"]
    search_fields = ["=batch__public_id", "=token_reference"]
    search_help_text = "The batch id (bat_…) or the token reference the merchant sent, exactly."
    show_full_result_count = False
    fields = [
        "batch",
        "index",
        "reference",
        "correlation_id",
        "account_id",
        "issuer",
        "current_status",
        "attempts",
        "abandoned",
        "queued",
        "called",
        "finished",
        "network_token",
        "failure_code",
        "failure_reason",
    ]
    readonly_fields = fields

    @admin.display(description="queued", ordering="queued_at")
    def queued(self, obj):
        return moment_shown(obj.queued_at)

    @admin.display(description="called", ordering="called_at")
    def called(self, obj):
        return moment_shown(obj.called_at)

    @admin.display(description="finished", ordering="finished_at")
    def finished(self, obj):
        return moment_shown(obj.finished_at)

    @admin.display(description="token reference", ordering="token_reference")
    def reference(self, obj):
        return reference_shown(obj.token_reference)
