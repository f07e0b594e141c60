"""Token conflicts: the stored data beside the requested data, applied or dismissed through the services, from the
list or from the conflict's own page (open it, Apply or Dismiss, confirm: three clicks)."""

from collections.abc import Callable
from dataclasses import dataclass

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from core.admin import ObjectActions, staff_actor
from core.admin_display import counted, merchant_shown, moment_shown, status_label
from core.audit import audit_record
from vault import services
from vault.admin.base import ServiceActions, conflict_comparison, conflict_status, conflict_table, token_status_label
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
class TokenConflictAdmin(ObjectActions, ServiceActions):
    confirmation_template = "admin/vault/tokenconflict/action_confirmation.html"
    list_display = ["token", "status", "expires", "merchant", "created"]
    list_filter = [PendingFilter]
    list_select_related = ["token__merchant"]
    search_fields = ["=token__token_id"]
    search_help_text = "tokenId, exactly."
    actions = ["apply", "dismiss"]
    object_actions = {"apply": "Apply", "dismiss": "Dismiss"}
    fields = ["token_link", "status", "merchant", "created", "expires", "comparison"]
    readonly_fields = fields

    def has_resolve_permission(self, request):
        return request.user.has_perm("vault.change_tokenconflict")

    def object_action_applies(self, obj, name: str) -> bool:
        # An expired conflict has nothing left to apply; dismissing it clears it away.
        return name != "apply" or obj.is_pending()

    def object_action_view(self, request, object_id, action):
        """As ObjectActions', but a conflict applied or dismissed is gone: its token's page shows the outcome."""
        conflict = self.get_object(request, unquote(object_id))
        response = super().object_action_view(request, object_id, action)
        resolved = conflict is not None and not TokenConflict.objects.filter(pk=conflict.pk).exists()
        if resolved and isinstance(response, HttpResponseRedirect):
            if request.user.has_perm("vault.view_token"):
                return HttpResponseRedirect(reverse("admin:vault_token_change", args=[conflict.token_id]))
            return HttpResponseRedirect(reverse("admin:vault_tokenconflict_changelist"))
        return response

    @admin.display(description="token", ordering="token__token_id")
    def token_link(self, obj):
        token = obj.token
        link = format_html('<a href="{}">{}</a>', reverse("admin:vault_token_change", args=[token.pk]), token.token_id)
        return format_html("{} {} {}", link, token.masked_number, token_status_label(token))

    @admin.display(description="merchant", ordering="token__merchant__name")
    def merchant(self, obj):
        return merchant_shown(obj.token.merchant)

    @admin.display(description="status", ordering="expires_at")
    def status(self, obj):
        return status_label(*conflict_status(obj))

    @admin.display(description="expires", ordering="expires_at")
    def expires(self, obj):
        return moment_shown(obj.expires_at)

    @admin.display(description="created", ordering="created_at")
    def created(self, obj):
        return moment_shown(obj.created_at)

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
                    comparison = conflict_comparison(conflict.token, conflict)
                    rows.append(
                        (conflict, comparison, format_html("Pending until {}.", moment_shown(conflict.expires_at)))
                    )
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
                notes=[self._expired_note(expired, len(conflicts))],
            )
        resolved, refused = self.run_each(
            [conflict.token for conflict in queryset], lambda token: resolution.service(token=token, actor=actor)
        )
        for token, _ in resolved:
            # On the token: the conflict row is gone, the token's history is where a clerk looks.
            self.log_change(request, token, f"{resolution.done} the pending conflict.")
        self.report(request, f"{resolution.done} {counted(len(resolved), 'conflict')}.", refused, "conflict")
        return None

    @staticmethod
    def _expired_note(expired: int, selected: int) -> str:
        if not expired:
            return ""
        if selected == 1:
            return "This conflict expired already."
        return f"{expired} of these {selected} conflicts expired already."
