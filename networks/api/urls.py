from django.urls import path

from networks.api import views

# The fixed segments come before network-tokens/<token_id>, which would otherwise swallow them.
urlpatterns = [
    path("network-tokens", views.NetworkTokensView.as_view(), name="network-tokens"),
    path("network-tokens/encryption-key", views.EncryptionKeyView.as_view(), name="network-tokens-encryption-key"),
    path("network-tokens/async", views.NetworkTokensAsyncView.as_view(), name="network-tokens-async"),
    path("network-tokens/requests/<str:request_id>", views.ProvisioningRequestView.as_view(),
         name="network-token-request"),
    path("network-tokens/batches", views.BatchesView.as_view(), name="network-token-batches"),
    path("network-tokens/batches/<str:batch_id>", views.BatchView.as_view(), name="network-token-batch"),
    path("network-tokens/<str:token_id>", views.NetworkTokenView.as_view(), name="network-token"),
    path("network-tokens/<str:token_id>/cryptograms", views.CryptogramsView.as_view(),
         name="network-token-cryptograms"),
    path("network-tokens/<str:token_id>/simulate-lifecycle", views.SimulateLifecycleView.as_view(),
         name="network-token-simulate-lifecycle"),
]
