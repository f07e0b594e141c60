from django.urls import path

from vault.api import views

ref = "tokens/<str:reference>"

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
]
