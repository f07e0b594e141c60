"""What the network-token admin pages share: how tokens and cards are shown masked, the one mapping of every
network state to its coloured label, dates, merchants, the page class."""

from django.contrib import admin
from django.contrib.auth import get_permission_codename
from django.urls import reverse
from django.utils.html import format_html

from core.admin import NUMBER_LIKE, ConfirmsActions, ObjectActions, RefusesCardNumbersInSearch, WrittenByServices
from core.admin_display import BAD, GOOD, NOTHING, QUIET, WARNING, merchant_shown, moment_shown, status_label
from networks.models import Batch, BatchItem, NetworkToken, ProvisioningRequest


# ------------------------------------------------------------------------------------------------------------
# Presentation helpers
# ------------------------------------------------------------------------------------------------------------
def masked_card(token: NetworkToken) -> str:
    # The card's length is not stored: the ellipsis does not pretend to know how many digits it hides.
    return f"{token.card_bin}…{token.card_last_digits}"


def reference_shown(text: str) -> str:
    """What a merchant sent as a vault token reference, masked if it looks like a card number after all."""
    return NUMBER_LIKE.sub(lambda m: f"{m.group()[:4]}…{m.group()[-4:]}", text)


# Every state a network page shows, as a label: (text, tone) per model and status. An inactive token waits for its
# issuer's step-up, a suspended one for someone to resume it: both need a look, neither is broken.
STATUS_LABELS = {
    NetworkToken: {
        NetworkToken.ACTIVE: ("Active", GOOD),
        NetworkToken.SUSPENDED: ("Suspended", WARNING),
        NetworkToken.INACTIVE: ("Inactive", WARNING),
        NetworkToken.DELETED: ("Deleted", QUIET),
    },
    ProvisioningRequest: {
        ProvisioningRequest.PENDING: ("Pending", WARNING),
        ProvisioningRequest.PENDING_ACTIVATION: ("Awaiting activation", WARNING),
        ProvisioningRequest.SUCCEEDED: ("Succeeded", GOOD),
        ProvisioningRequest.FAILED: ("Failed", BAD),
    },
    Batch: {
        Batch.PENDING: ("Pending", WARNING),
        Batch.RUNNING: ("Running", WARNING),
        Batch.COMPLETED: ("Completed", GOOD),
    },
    BatchItem: {
        BatchItem.PENDING: ("Pending", WARNING),
        BatchItem.QUEUED: ("Queued", WARNING),
        BatchItem.RUNNING: ("Running", WARNING),
        BatchItem.PENDING_ACTIVATION: ("Awaiting activation", WARNING),
        BatchItem.SUCCEEDED: ("Succeeded", GOOD),
        BatchItem.FAILED: ("Failed", BAD),
    },
}


def status_shown(model, status: str):
    """``status`` of a ``model`` row as its label; a state the mapping does not know yet shows as it is stored."""
    text, tone = STATUS_LABELS[model].get(status, (status, QUIET))
    return status_label(text, tone)


class ShowsVaultTokens:
    """Links to a vault token's page for whoever may open it (the back office); its tokenId alone for the others.

    Its pages find a row by its vault token's tokenId with ``vault_token__token_id__exact`` in ``search_fields``: an
    equality the tokenId's unique index answers, where ``=`` (``iexact``) compares ``UPPER()`` of every joined row.
    A tokenId is upper-case (vault.models.TOKEN_ID_ALPHABET), so the term is upper-cased as the token list does; the
    pages' other search fields match without regard to case anyway.
    """

    def get_search_results(self, request, queryset, search_term):
        return super().get_search_results(request, queryset, search_term.upper())

    def get_object(self, request, object_id, from_field=None):
        obj = super().get_object(request, object_id, from_field)
        if obj is not None:
            # Display methods get the object, never the request: the permission rides along on the object.
            obj.may_view_vault_token = request.user.has_perm("vault.view_token")
        return obj

    @staticmethod
    def vault_token_shown(obj):
        if obj.vault_token_id is None:
            return NOTHING
        token_id = obj.vault_token.token_id
        if getattr(obj, "may_view_vault_token", False):
            return format_html(
                '<a href="{}">{}</a>', reverse("admin:vault_token_change", args=[obj.vault_token_id]), token_id
            )
        return token_id


class HistoryAdmin(ObjectActions, ConfirmsActions, RefusesCardNumbersInSearch, WrittenByServices, admin.ModelAdmin):
    """Rows written by services only: looked at, never added, edited or deleted here. Their actions (from the list,
    or as buttons on the object's page) take the model's change permission (``permissions=["operate"]``)."""

    def has_operate_permission(self, request):
        return request.user.has_perm(f"{self.opts.app_label}.{get_permission_codename('change', self.opts)}")

    @admin.display(description="status", ordering="status")
    def current_status(self, obj):
        return status_shown(type(obj), obj.status)

    @admin.display(description="merchant", ordering="merchant__name")
    def merchant_name(self, obj):
        return merchant_shown(obj.merchant)

    @admin.display(description="created", ordering="created_at")
    def created(self, obj):
        return moment_shown(obj.created_at)

    @admin.display(description="updated", ordering="updated_at")
    def updated(self, obj):
        return moment_shown(obj.updated_at)
