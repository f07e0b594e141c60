"""What the network-token admin pages share: how tokens and cards are shown masked, the page classes."""

from django.urls import reverse
from django.utils.html import format_html

from core.admin import NUMBER_LIKE, RefusesCardNumbersInSearch
from networks.models import NetworkToken
from notifications.admin import OperationsAdmin


# ------------------------------------------------------------------------------------------------------------
# Presentation helpers
# ------------------------------------------------------------------------------------------------------------
def expiry_shown(month: int | None, year: int | None) -> str:
    return f"{month:02d}/{year}" if month and year else "—"


def masked_card(token: NetworkToken) -> str:
    # The card's length is not stored: the ellipsis does not pretend to know how many digits it hides.
    return f"{token.card_bin}…{token.card_last_digits}"


def reference_shown(text: str) -> str:
    """What a merchant sent as a vault token reference, masked if it looks like a card number after all."""
    return NUMBER_LIKE.sub(lambda m: f"{m.group()[:4]}…{m.group()[-4:]}", text)


class ShowsVaultTokens:
    """Links to a vault token's page for whoever may open it (the back office); its tokenId alone for the others."""

    def get_object(self, request, object_id, from_field=None):
        obj = super().get_object(request, object_id, from_field)
        if obj is not None:
            # Display methods get the object, never the request: the permission rides along on the object.
            obj.may_view_vault_token = request.user.has_perm("vault.view_token")
        return obj

    @staticmethod
    def vault_token_shown(obj):
        if obj.vault_token_id is None:
            return "—"
        token_id = obj.vault_token.token_id
        if getattr(obj, "may_view_vault_token", False):
            return format_html(
                '<a href="{}">{}</a>', reverse("admin:vault_token_change", args=[obj.vault_token_id]), token_id
            )
        return token_id


class HistoryAdmin(RefusesCardNumbersInSearch, OperationsAdmin):
    """Rows written by services only: looked at, never added, edited or deleted here."""
