"""Tokens, masked, with their expiry extensions: deleted as tombstones and extended by hand, each confirmed first."""

from django.contrib import admin
from django.contrib.admin import helpers
from django.template.response import TemplateResponse
from django.utils import timezone

from core.admin import ReadOnlyAdmin, ReadOnlyInline, staff_actor
from core.audit import audit_record
from vault import selectors, services
from vault.admin.base import (
    NamespaceFilter,
    ServiceActions,
    address_shown,
    conflict_table,
    duration_shown,
    expiry_shown,
)
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
    fields = ["old_expires_at", "new_expires_at", "reason", "created_at"]
    readonly_fields = fields


@admin.register(Token)
class TokenAdmin(ServiceActions):
    confirmation_template = "admin/vault/token/action_confirmation.html"
    list_display = ["token_id", "masked_card", "brand", "merchant", "namespace", "expires_at", "created_at", "deleted"]
    list_filter = ["brand", "merchant", NamespaceFilter, ExpiredFilter, DeletedFilter]
    list_select_related = ["merchant", "namespace"]
    # Exact matches only: a clerk asks for one token, not for every card sharing some digits. "__exact" rather than
    # "=", which means iexact: UPPER(column) = UPPER(term), which none of the token's indexes can answer.
    search_fields = ["token_id__exact", "last_four__exact", "bin__exact"]
    search_help_text = "tokenId, last four digits or BIN (first six), exactly."
    date_hierarchy = "created_at"
    show_full_result_count = False  # one COUNT over the vault per page view is enough
    actions = ["tombstone_selected", "extend_expiry"]
    inlines = [ExpiryExtensionInline]
    fieldsets = [
        (None, {"fields": ["token_id", "merchant", "namespace", "description"]}),
        ("Card (masked)", {"fields": ["masked_card", "brand", "card_holder_name", "card_expiry", "billing"]}),
        # Right under the stored card data it would replace.
        ("Pending conflict", {"fields": ["pending_conflict"]}),
        ("Lifecycle", {"fields": ["created_at", "updated_at", "expires_at", "deleted_at", "deleted_reason"]}),
    ]
    readonly_fields = [
        "token_id",
        "merchant",
        "namespace",
        "description",
        "masked_card",
        "brand",
        "card_holder_name",
        "card_expiry",
        "billing",
        "created_at",
        "updated_at",
        "expires_at",
        "deleted_at",
        "deleted_reason",
        "pending_conflict",
    ]

    def get_search_results(self, request, queryset, search_term):
        # tokenIds are capitals and digits, BINs and last fours digits: the term in capitals finds what iexact would.
        return super().get_search_results(request, queryset, search_term.upper())

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

    @admin.display(description="deleted", boolean=True, ordering="deleted_at")
    def deleted(self, obj):
        return obj.is_deleted

    @admin.display(description="stored and requested")
    def pending_conflict(self, obj):
        return conflict_table(obj, selectors.conflict_pending(token=obj))

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
            self.report(request, f"Deleted {len(deleted)} token(s); their tombstones remain.", refused, "token(s)")
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
                notes=[
                    f"{left_alone} of these token(s) are deleted or expired and will be left alone."
                    if left_alone
                    else ""
                ],
                rows=[(token, self._extension_note(token, now)) for token in tokens],
            )
        actor = staff_actor(request)
        extended, refused = self.run_each(
            queryset, lambda token: services.token_extend_expiry(token=token, actor=actor)
        )
        for token, extension in extended:
            self.log_change(request, token, f"Extended the expiry to {extension.new_expires_at:%Y-%m-%d %H:%M} UTC.")
        self.report(
            request,
            f"Extended the expiry of {len(extended)} token(s) by {duration_shown(lifetime)}.",
            refused,
            "token(s)",
        )
        return None

    @staticmethod
    def _extension_note(token: Token, now) -> str:
        if token_can_extend(token, now):
            return f"{token.expires_at:%Y-%m-%d %H:%M} → {token_extended_expiry(token, now):%Y-%m-%d %H:%M} UTC"
        if token.is_deleted:
            return "deleted: left alone"
        return f"expired {token.expires_at:%Y-%m-%d %H:%M} UTC: left alone"


@admin.register(ExpiryExtension)
class ExpiryExtensionAdmin(ReadOnlyAdmin):
    list_display = ["token", "old_expires_at", "new_expires_at", "reason", "created_at"]
    list_filter = ["reason"]
    list_select_related = ["token"]
    search_fields = ["=token__token_id"]
    date_hierarchy = "created_at"
    fields = list_display
    readonly_fields = fields
