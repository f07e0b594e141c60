from django.urls import path, register_converter

from core.api import IdConverter
from networks.api import views
from networks.models import Batch, NetworkToken, ProvisioningRequest


class NetworkTokenIdConverter(IdConverter):
    """A network's tokenId (letters and digits in every simulator; room for ``_`` and ``-``)."""

    regex = f"[A-Za-z0-9_-]{{1,{NetworkToken._meta.get_field('token_id').max_length}}}"


class RequestIdConverter(IdConverter):
    regex = f"[A-Za-z0-9_-]{{1,{ProvisioningRequest._meta.get_field('public_id').max_length}}}"


class BatchIdConverter(IdConverter):
    regex = f"[A-Za-z0-9_-]{{1,{Batch._meta.get_field('public_id').max_length}}}"


register_converter(NetworkTokenIdConverter, "network_token_id")
register_converter(RequestIdConverter, "request_id")
register_converter(BatchIdConverter, "batch_id")

# The fixed segments come before network-tokens/<token_id>, which would otherwise swallow them.
urlpatterns = [
    path("network-tokens", views.NetworkTokensView.as_view(), name="network-tokens"),
    path("network-tokens/encryption-key", views.EncryptionKeyView.as_view(), name="network-tokens-encryption-key"),
    path("network-tokens/async", views.NetworkTokensAsyncView.as_view(), name="network-tokens-async"),
    path(
        "network-tokens/requests/<request_id:request_id>",
        views.ProvisioningRequestView.as_view(),
        name="network-token-request",
    ),
    path("network-tokens/batches", views.BatchesView.as_view(), name="network-token-batches"),
    path("network-tokens/batches/<batch_id:batch_id>", views.BatchView.as_view(), name="network-token-batch"),
    path("network-tokens/<network_token_id:token_id>", views.NetworkTokenView.as_view(), name="network-token"),
    path(
        "network-tokens/<network_token_id:token_id>/cryptograms",
        views.CryptogramsView.as_view(),
        name="network-token-cryptograms",
    ),
    path(
        "network-tokens/<network_token_id:token_id>/simulate-lifecycle",
        views.SimulateLifecycleView.as_view(),
        name="network-token-simulate-lifecycle",
    ),
]
