"""Namespaces: looked at with their live card counts, never renamed or dropped."""

from urllib.parse import urlencode

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from core.admin import ReadOnlyAdmin
from core.admin_display import merchant_shown, moment_shown
from vault import selectors
from vault.models import Namespace


@admin.register(Namespace)
class NamespaceAdmin(ReadOnlyAdmin):
    # A namespace is part of its tokens' identity: renaming or dropping one here would move or orphan cards.
    list_display = ["name", "merchant_cell", "card_count", "created", "tokens_link"]
    list_filter = ["merchant"]
    search_fields = ["name"]
    fields = ["name", "merchant_cell", "card_count", "created"]
    readonly_fields = fields

    def get_queryset(self, request):
        return selectors.namespaces_with_counts()

    @admin.display(description="cards", ordering="card_count")
    def card_count(self, obj):
        return obj.card_count

    @admin.display(description="merchant", ordering="merchant__name")
    def merchant_cell(self, obj):
        return merchant_shown(obj.merchant)

    @admin.display(description="created", ordering="created_at")
    def created(self, obj):
        return moment_shown(obj.created_at)

    @admin.display(description="tokens")
    def tokens_link(self, obj):
        url = reverse("admin:vault_token_changelist")
        query = urlencode({"merchant__id__exact": obj.merchant_id, "namespace": obj.name})
        return format_html('<a href="{}?{}">tokens</a>', url, query)
