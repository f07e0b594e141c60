from django.urls import path, register_converter

from core.api import IdConverter
from vault.api import capture, destinations, forward, relations, views
from vault.models import CaptureSession, ForwardDestination, Token


class ReferenceConverter(IdConverter):
    """The last segment of a token's href: URL-safe base64."""

    regex = f"[A-Za-z0-9_-]{{1,{Token._meta.get_field('reference').max_length}}}"


class RelationConverter(IdConverter):
    """The name of a link relation, in place of {rel} in the curie."""

    regex = relations.NAME_REGEX


class DestinationIdConverter(IdConverter):
    regex = f"[A-Za-z0-9_-]{{1,{ForwardDestination._meta.get_field('public_id').max_length}}}"


class CaptureSessionIdConverter(IdConverter):
    regex = f"[A-Za-z0-9_-]{{1,{CaptureSession._meta.get_field('public_id').max_length}}}"


register_converter(ReferenceConverter, "token_reference")
register_converter(DestinationIdConverter, "destination_id")
register_converter(CaptureSessionIdConverter, "capture_session_id")
register_converter(RelationConverter, "relation")

ref = "tokens/<token_reference:reference>"

urlpatterns = [
    path("tokens", views.TokensView.as_view(), name="tokens"),
    path(ref, views.TokenView.as_view(), name="token"),
    path(f"{ref}/description", views.TokenDescriptionView.as_view(), name="token-description"),
    path(f"{ref}/cardHolderName", views.TokenCardHolderNameView.as_view(), name="token-card-holder-name"),
    path(f"{ref}/cardExpiryDate", views.TokenCardExpiryDateView.as_view(), name="token-card-expiry-date"),
    path(f"{ref}/billingAddress", views.TokenBillingAddressView.as_view(), name="token-billing-address"),
    path(
        f"{ref}/schemeTransactionReference",
        views.TokenSchemeTransactionReferenceView.as_view(),
        name="token-scheme-transaction-reference",
    ),
    path(f"{ref}/conflicts", views.TokenConflictsView.as_view(), name="token-conflicts"),
    path(f"{ref}/detokenize", views.TokenDetokenizeView.as_view(), name="token-detokenize"),
    path("forward", forward.ForwardView.as_view(), name="forward"),
    path("forward-destinations", destinations.DestinationsView.as_view(), name="forward-destinations"),
    path(
        "forward-destinations/<destination_id:public_id>",
        destinations.DestinationView.as_view(),
        name="forward-destination",
    ),
    path("capture-sessions", capture.CaptureSessionsView.as_view(), name="capture-sessions"),
    path(
        "capture-sessions/<capture_session_id:public_id>", capture.CaptureSessionView.as_view(), name="capture-session"
    ),
    path("capture/<capture_session_id:public_id>/card", capture.CaptureCardView.as_view(), name="capture-card"),
    # Where the curie of every answer leads (relations.CURIE_PATH).
    path("rels/tokens/<relation:rel>.json", views.RelationView.as_view(), name="token-relation"),
]
