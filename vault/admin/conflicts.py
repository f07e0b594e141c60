"""Token conflicts: the stored data beside the requested data, applied or dismissed through the services."""

from collections.abc import Callable
from dataclasses import dataclass

from django.contrib import admin
from django.utils import timezone

from core.admin import staff_actor
from core.audit import audit_record
from vault import services
from vault.admin.base import ServiceActions, conflict_comparison, conflict_table
from vault.models import TokenConflict


class PendingFilter(admin.SimpleListFilter):
    title = "pending"
    parameter_name = "pending"

    def lookups(self, request, model_admin):
        return [("yes", "Yes"), ("no", "No (expired)")]

    def queryset(self, request, queryset):
        now = timezone.now()
        if self.value() == "yes":
            return queryset.filter(expires_at__gt=now)
        if self.value() == "no":
            return queryset.filter(expires_at__lte=now)
        return queryset


@dataclass(frozen=True)
class Resolution:
    """Apply or dismiss: the service each runs, and what its confirmation page and messages say."""

    action: str  # the admin action
    service: Callable
    title: str
    intro: str
    submit: str
    done: str
    expired_note: str  # a row's note when its conflict is no longer pending (``TokenConflict.is_pending``)


APPLY = Resolution(
    "apply",
    services.conflict_apply,
    "Apply token conflicts",
    "For each token the requested values replace the stored ones, exactly as the merchant's PUT on the token's "
    "conflicts does, and the merchant gets a token.updated webhook. The stored values are not kept anywhere.",
    "Apply",
    "Applied",
    "expired: nothing to apply, left alone",
)
DISMISS = Resolution(
    "dismiss",
    services.conflict_dismiss,
    "Dismiss token conflicts",
    "For each token the stored values stay and the requested ones are forgotten. The merchant is not notified; a "
    "later request with the same values makes a new conflict.",
    "Dismiss",
    "Dismissed",
    "expired: the conflict is removed, the stored data stays",
)


@admin.register(TokenConflict)
class TokenConflictAdmin(ServiceActions):
    confirmation_template = "admin/vault/tokenconflict/action_confirmation.html"
    list_display = ["token", "merchant", "created_at", "expires_at", "pending"]
    list_filter = [PendingFilter]
    list_select_related = ["token__merchant"]
    search_fields = ["=token__token_id"]
    search_help_text = "tokenId, exactly."
    actions = ["apply", "dismiss"]
    fields = ["token", "merchant", "created_at", "expires_at", "pending", "comparison"]
    readonly_fields = fields

    def has_resolve_permission(self, request):
        return request.user.has_perm("vault.change_tokenconflict")

    @admin.display(description="merchant")
    def merchant(self, obj):
        return obj.token.merchant

    @admin.display(description="pending", boolean=True, ordering="expires_at")
    def pending(self, obj):
        return obj.is_pending()

    @admin.display(description="stored and requested")
    def comparison(self, obj):
        return conflict_table(obj.token, obj)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        response = super().change_view(request, object_id, form_url, extra_context)
        if request.method == "GET" and response.status_code == 200:
            conflict = response.context_data["original"]
            audit_record(actor=staff_actor(request), action="admin.conflict.view", obj=conflict.token)
        return response

    @admin.action(description="Apply: replace the stored data with the requested data", permissions=["resolve"])
    def apply(self, request, queryset):
        return self._resolve(request, queryset, APPLY)

    @admin.action(description="Dismiss: keep the stored data", permissions=["resolve"])
    def dismiss(self, request, queryset):
        return self._resolve(request, queryset, DISMISS)

    def _resolve(self, request, queryset, resolution: Resolution):
        """The confirmation page (stored and requested data side by side), then the service for each conflict's
        token; the service writes the ``token.conflict_<apply|dismiss>`` audit row, a failure row when it refuses."""
        actor = staff_actor(request)
        queryset = queryset.select_related("token__merchant", "token__namespace")
        if not request.POST.get("post"):
            conflicts = list(queryset)
            now = timezone.now()
            rows = []
            for conflict in conflicts:
                if conflict.is_pending(now):
                    # The page shows holder names and addresses: a view of the token, audited as the conflict
                    # page is.
                    audit_record(
                        actor=actor,
                        action="admin.conflict.view",
                        obj=conflict.token,
                        detail={"page": f"{resolution.action} confirmation"},
                    )
                    rows.append((conflict, conflict_comparison(conflict.token, conflict), ""))
                else:
                    rows.append((conflict, None, resolution.expired_note))
            expired = sum(1 for _, comparison, _ in rows if comparison is None)
            return self.confirm(
                request,
                conflicts,
                action=resolution.action,
                title=resolution.title,
                intro=resolution.intro,
                submit=resolution.submit,
                rows=rows,
                notes=[f"{expired} of these conflict(s) expired already." if expired else ""],
            )
        resolved, refused = self.run_each(
            [conflict.token for conflict in queryset], lambda token: resolution.service(token=token, actor=actor)
        )
        for token, _ in resolved:
            # On the token: the conflict row is gone, the token's history is where a clerk looks.
            self.log_change(request, token, f"{resolution.done} the pending conflict.")
        self.report(request, f"{resolution.done} {len(resolved)} conflict(s).", refused, "conflict(s)")
        return None
