"""Tokens, masked, with their expiry extensions: deleted as tombstones and extended by hand, each confirmed first,
from the list or from the token's own page."""

from django.contrib import admin
from django.contrib.admin import helpers
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from core.admin import ObjectActions, ReadOnlyAdmin, ReadOnlyInline, staff_actor
from core.admin_display import counted, expiry_shown, merchant_shown, moment_shown, when_shown
from core.audit import audit_record
from vault import selectors, services
from vault.admin.base import (
    NamespaceFilter,
    ServiceActions,
    address_shown,
    conflict_table,
    duration_shown,
    token_status_label,
)
from vault.admin.search import TokenSearch
from vault.models import ExpiryExtension, Token
from vault.services.tokens import token_can_extend, token_extended_expiry


class ExpiredFilter(admin.SimpleListFilter):
    title = "expired"
    parameter_name = "expired"

    def lookups(self, request, model_admin):
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request, queryset):
        now = timezone.now()
        if self.value() == "yes":
            return queryset.filter(expires_at__lte=now)
        if self.value() == "no":
            return queryset.filter(expires_at__gt=now)
        return queryset


class DeletedFilter(admin.SimpleListFilter):
    title = "deleted"
    parameter_name = "deleted"

    def lookups(self, request, model_admin):
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request, queryset):
        if self.value() in ("yes", "no"):
            return queryset.filter(deleted_at__isnull=self.value() == "no")
        return queryset


class ExpiryExtensionInline(ReadOnlyInline):
    model = ExpiryExtension
    fields = ["old_expiry", "new_expiry", "reason", "created"]
    readonly_fields = fields

    @admin.display(description="old expiry")
    def old_expiry(self, obj):
        return when_shown(obj.old_expires_at)

    @admin.display(description="new expiry")
    def new_expiry(self, obj):
        return when_shown(obj.new_expires_at)

    @admin.display(description="extended")
    def created(self, obj):
        return moment_shown(obj.created_at)


@admin.register(Token)
class TokenAdmin(ObjectActions, ServiceActions):
    confirmation_template = "admin/vault/token/action_confirmation.html"
    # Status and expiry beside the tokenId: what a clerk looks for first, and never pushed off a narrow screen.
    list_display = ["token_id", "status", "expires", "masked_card", "brand", "merchant_cell", "namespace", "created"]
    list_filter = ["brand", "merchant", NamespaceFilter, ExpiredFilter, DeletedFilter]
    list_select_related = ["merchant", "namespace"]
    # Read by TokenSearch (vault/admin/search.py), which replaces Django's search over these fields.
    search_fields = ["token_id", "last_four", "bin", "merchant__name"]
    search_help_text = (
        "A masked number as shown (4761********5989), last four digits, BIN (first six), the start of a tokenId, "
        "or a merchant's name."
    )
    # What to try when nothing is found (admin/change_list.html), below how the term was read.
    empty_hint = (
        "Try a masked number as the pages show it (4761********5989), the last four digits (5989), the BIN (the first "
        "six digits), the first four or more characters of a tokenId, or a merchant's name."
    )
    date_hierarchy = "created_at"
    show_full_result_count = False  # one COUNT over the vault per page view is enough
    actions = ["tombstone_selected", "extend_expiry"]
    object_actions = {"extend_expiry": "Extend expiry", "tombstone_selected": "Delete"}
    irreversible_actions = frozenset({"tombstone_selected"})
    inlines = [ExpiryExtensionInline]
    fieldsets = [
        (None, {"fields": ["token_id", "status", "merchant_cell", "namespace", "description"]}),
        ("Card (masked)", {"fields": ["masked_card", "brand", "card_holder_name", "card_expiry", "billing"]}),
        # Right under the stored card data it would replace.
        ("Pending conflict", {"fields": ["pending_conflict"]}),
        ("Lifecycle", {"fields": ["created", "updated", "expires", "deleted", "deleted_reason"]}),
    ]
    readonly_fields = [
        "token_id",
        "status",
        "merchant_cell",
        "namespace",
        "description",
        "masked_card",
        "brand",
        "card_holder_name",
        "card_expiry",
        "billing",
        "created",
        "updated",
        "expires",
        "deleted",
        "deleted_reason",
        "pending_conflict",
    ]

    def object_action_applies(self, obj, name: str) -> bool:
        if name == "extend_expiry":
            return token_can_extend(obj)
        return not obj.is_deleted

    def get_search_results(self, request, queryset, search_term):
        if not search_term.strip():
            return queryset, False
        return TokenSearch.read(search_term).filter(queryset), False

    def changelist_view(self, request, extra_context=None):
        # What the term was read as, for the page that found nothing (admin/vault/token/change_list.html).
        term = request.GET.get("q", "").strip()
        readings = TokenSearch.read(term).readings() if term else []
        return super().changelist_view(request, {**(extra_context or {}), "search_readings": readings})

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # raw row deletion would destroy the tombstone too
        return actions

    def has_tombstone_permission(self, request):
        # The model's delete permission, which here means "destroy the card data", never "drop the row".
        return request.user.has_perm("vault.delete_token")

    def has_extend_permission(self, request):
        # The model's change permission: nothing else of a token is changed in the admin.
        return request.user.has_perm("vault.change_token")

    @admin.display(description="card number")
    def masked_card(self, obj):
        return obj.masked_number

    @admin.display(description="card expiry")
    def card_expiry(self, obj):
        return expiry_shown(obj.expiry_month, obj.expiry_year)

    @admin.display(description="billing address")
    def billing(self, obj):
        return address_shown(obj.billing_address)

    @admin.display(description="status", ordering="expires_at")
    def status(self, obj):
        return token_status_label(obj)

    @admin.display(description="merchant", ordering="merchant__name")
    def merchant_cell(self, obj):
        return merchant_shown(obj.merchant)

    @admin.display(description="expires", ordering="expires_at")
    def expires(self, obj):
        return moment_shown(obj.expires_at)

    @admin.display(description="created", ordering="created_at")
    def created(self, obj):
        return moment_shown(obj.created_at)

    @admin.display(description="updated", ordering="updated_at")
    def updated(self, obj):
        return moment_shown(obj.updated_at)

    @admin.display(description="deleted", ordering="deleted_at")
    def deleted(self, obj):
        return moment_shown(obj.deleted_at)

    @admin.display(description="stored and requested")
    def pending_conflict(self, obj):
        return conflict_table(obj, selectors.conflict_pending(token=obj))

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None and (conflict := selectors.conflict_pending(token=obj)) is not None:
            # A button beside the token's actions: the conflict is resolved on its own page.
            context["pending_conflict_url"] = reverse("admin:vault_tokenconflict_change", args=[conflict.pk])
        return super().render_change_form(request, context, add, change, form_url, obj)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        response = super().change_view(request, object_id, form_url, extra_context)
        # 200 means the page shows the token (a missing one redirects with a message).
        if request.method == "GET" and response.status_code == 200:
            token = response.context_data["original"]
            audit_record(actor=staff_actor(request), action="admin.token.view", obj=token)
        return response

    @admin.action(description="Delete selected tokens", permissions=["tombstone"])
    def tombstone_selected(self, request, queryset):
        """Through a confirmation page: ``token_delete`` for each token not deleted yet (it writes the tombstone, the
        audit row and the merchant's event)."""
        if request.POST.get("post"):
            actor = staff_actor(request)
            deleted, refused = self.run_each(
                queryset.filter(deleted_at__isnull=True), lambda token: services.token_delete(token=token, actor=actor)
            )
            for token, _ in deleted:
                self.log_change(request, token, "Deleted the card data; the token is now a tombstone.")
            tombstones = "its tombstone remains" if len(deleted) == 1 else "their tombstones remain"
            self.report(request, f"Deleted {counted(len(deleted), 'token')}; {tombstones}.", refused, "token")
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": "Delete tokens",
            "subtitle": None,
            "opts": self.opts,
            "queryset": queryset.select_related("merchant"),
            "already_deleted": queryset.filter(deleted_at__isnull=False).count(),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "media": self.media,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/vault/token/delete_selected_confirmation.html", context)

    @admin.action(description="Extend expiry by one default lifetime", permissions=["extend"])
    def extend_expiry(self, request, queryset):
        """Through a confirmation page: ``token_extend_expiry`` for each token (it writes the extension row, the audit
        row and the merchant's event, and refuses deleted and expired tokens: ``token_can_extend``)."""
        lifetime = services.default_lifetime()
        queryset = queryset.select_related("merchant")
        if not request.POST.get("post"):
            tokens = list(queryset)
            now = timezone.now()
            left_alone = sum(1 for token in tokens if not token_can_extend(token, now))
            return self.confirm(
                request,
                tokens,
                action="extend_expiry",
                title="Extend token expiry",
                submit="Extend",
                intro=f"Each live token's expiry moves {duration_shown(lifetime)} (one default lifetime) later. The "
                "extension is recorded in the token's history and the merchant gets a token.expiry_extended "
                "webhook.",
                notes=[self._left_alone_note(left_alone, len(tokens))],
                rows=[(token, self._extension_note(token, now)) for token in tokens],
            )
        actor = staff_actor(request)
        extended, refused = self.run_each(
            queryset, lambda token: services.token_extend_expiry(token=token, actor=actor)
        )
        for token, extension in extended:
            self.log_change(request, token, f"Extended the expiry to {when_shown(extension.new_expires_at)}.")
        self.report(
            request,
            f"Extended the expiry of {counted(len(extended), 'token')} by {duration_shown(lifetime)}"
            + (f", to {when_shown(extended[0][1].new_expires_at)}." if len(extended) == 1 else "."),
            refused,
            "token",
        )
        return None

    @staticmethod
    def _left_alone_note(left_alone: int, selected: int) -> str:
        if not left_alone:
            return ""
        if selected == 1:
            return "This token is deleted or expired and will be left alone."
        verb = "is" if left_alone == 1 else "are"
        return f"{left_alone} of these {selected} tokens {verb} deleted or expired and will be left alone."

    @staticmethod
    def _extension_note(token: Token, now):
        if token_can_extend(token, now):
            return format_html(
                "{} → {}", moment_shown(token.expires_at, now), moment_shown(token_extended_expiry(token, now), now)
            )
        if token.is_deleted:
            return "deleted: left alone"
        return format_html("expired {}: left alone", moment_shown(token.expires_at, now))


@admin.register(ExpiryExtension)
class ExpiryExtensionAdmin(ReadOnlyAdmin):
    list_display = ["token", "old_expiry", "new_expiry", "reason", "created"]
    list_filter = ["reason"]
    list_select_related = ["token"]
    search_fields = ["=token__token_id"]
    date_hierarchy = "created_at"
    fields = list_display
    readonly_fields = fields

    @admin.display(description="old expiry", ordering="old_expires_at")
    def old_expiry(self, obj):
        return moment_shown(obj.old_expires_at)

    @admin.display(description="new expiry", ordering="new_expires_at")
    def new_expiry(self, obj):
        return moment_shown(obj.new_expires_at)

    @admin.display(description="extended", ordering="created_at")
    def created(self, obj):
        return moment_shown(obj.created_at)
