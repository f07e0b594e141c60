"""Every read the network-token API makes: scoped to a merchant; another merchant's object is NotFound, as a missing
one (the API answers 404 resourceNotFound)."""

from datetime import datetime

from django.db.models import Count, Q, QuerySet, Value
from django.db.models.functions import Coalesce, NullIf

from core.errors import NotFound
from merchants.models import Merchant
from networks.models import NETWORKS, Batch, BatchItem, LifecycleEvent, NetworkToken, ProvisioningRequest
from vault import selectors as vault_selectors
from vault.models import Token


# ------------------------------------------------------------------------------------------------------------
# Vault tokens named in requests: an href (…/tokens/<reference>) or a tokenId (``vault.selectors.token_named``)
# ------------------------------------------------------------------------------------------------------------
def vault_token_get(*, merchant: Merchant, value: str) -> Token:
    """The merchant's live vault token named by href or tokenId, else NotFound."""
    return vault_selectors.token_named_get(merchant=merchant, value=value)


def vault_tokens_resolve(*, merchant: Merchant, values: list[str]) -> dict[str, Token]:
    """Each value (href or tokenId) that names a live vault token of the merchant, mapped to it.

    One query per kind of reference, whatever the number of values: a batch of 10,000 costs two queries.
    """
    wanted: dict[str, dict[str, list[str]]] = {"token_id": {}, "reference": {}}
    for value in values:
        lookup = vault_selectors.token_named(value)
        if lookup is not None:
            [(kind, key)] = lookup.items()
            wanted[kind].setdefault(key, []).append(value)
    found: dict[str, Token] = {}
    for kind, keys in wanted.items():
        if not keys:
            continue
        for token in vault_selectors.live_tokens(merchant=merchant).filter(**{f"{kind}__in": list(keys)}):
            for value in keys[getattr(token, kind)]:
                found[value] = token
    return found


# ------------------------------------------------------------------------------------------------------------
# Network tokens
# ------------------------------------------------------------------------------------------------------------
def network_token_get(*, merchant: Merchant, token_id: str) -> NetworkToken:
    """The merchant's network token, deleted ones included (they remain the TSP's record)."""
    token = (
        NetworkToken.objects.select_related("issuer", "vault_token")
        .filter(merchant=merchant, token_id=token_id)
        .first()
    )
    if token is None:
        raise NotFound("The network token does not exist")
    return token


def lifecycle_list(*, token: NetworkToken) -> QuerySet[LifecycleEvent]:
    """What happened to the token, oldest first."""
    return LifecycleEvent.objects.filter(network_token=token).order_by("created_at", "pk")


# ------------------------------------------------------------------------------------------------------------
# Asynchronous requests and batches
# ------------------------------------------------------------------------------------------------------------
def provisioning_request_get(*, merchant: Merchant, request_id: str) -> ProvisioningRequest:
    request = (
        ProvisioningRequest.objects.select_related("network_token__issuer")
        .filter(merchant=merchant, public_id=request_id)
        .first()
    )
    if request is None:
        raise NotFound("The network token request does not exist")
    return request


def batch_get(*, merchant: Merchant, batch_id: str) -> Batch:
    batch = Batch.objects.filter(merchant=merchant, public_id=batch_id).first()
    if batch is None:
        raise NotFound("The batch does not exist")
    return batch


def batch_counts(*, batch: Batch) -> dict[str, int]:
    """Items of ``batch`` per status, every status present (one aggregate query)."""
    return BatchItem.objects.filter(batch=batch).aggregate(
        **{status: Count("pk", filter=Q(status=status)) for status, _ in BatchItem.STATUSES}
    )


def batch_failed_items(*, batch: Batch) -> QuerySet[BatchItem]:
    return BatchItem.objects.filter(batch=batch, status=BatchItem.FAILED).order_by("index")


# ------------------------------------------------------------------------------------------------------------
# The back-office dashboard: aggregates only, a fixed number of queries whatever the number of rows
# ------------------------------------------------------------------------------------------------------------
UNKNOWN_NETWORK = "UNKNOWN"
OUTCOMES = (*(status for status, _ in NetworkToken.STATUSES), "FAILED_REQUESTS", "FAILED_BATCH_ITEMS")


def network_token_outcomes(*, since: datetime) -> dict[str, dict[str, int]]:
    """What provisioning gave since ``since``, per network: the network tokens created, by their status now, and
    the asynchronous requests and batch items that failed. Every network of ``NETWORKS`` is present, then any other
    a failure was counted under; every outcome of ``OUTCOMES`` is present. Three GROUP BY queries.

    A failure counts under its issuer's network, else its vault card's brand (a batch entry refused as
    networkNotSupported), else ``UNKNOWN``: a card sent in a request's body is destroyed when the request ends.
    """
    outcomes: dict[str, dict[str, int]] = {network: dict.fromkeys(OUTCOMES, 0) for network in NETWORKS}

    def add(network: str | None, outcome: str, count: int) -> None:
        outcomes.setdefault(network or UNKNOWN_NETWORK, dict.fromkeys(OUTCOMES, 0))[outcome] += count

    created = (
        NetworkToken.objects.filter(created_at__gte=since)
        .values("network", "status")
        .annotate(count=Count("pk"))
        .order_by()
    )
    for row in created:
        add(row["network"], row["status"], row["count"])
    failed_requests = (
        ProvisioningRequest.objects.filter(status=ProvisioningRequest.FAILED, updated_at__gte=since)
        .values(
            card_network=Coalesce(
                NullIf("network", Value("")), "network_token__network", "vault_token__brand", Value(UNKNOWN_NETWORK)
            )
        )
        .annotate(count=Count("pk"))
        .order_by()
    )
    for row in failed_requests:
        add(row["card_network"], "FAILED_REQUESTS", row["count"])
    failed_items = (
        BatchItem.objects.filter(status=BatchItem.FAILED, finished_at__gte=since)
        .values(card_network=Coalesce("issuer__network", "vault_token__brand", Value(UNKNOWN_NETWORK)))
        .annotate(count=Count("pk"))
        .order_by()
    )
    for row in failed_items:
        add(row["card_network"], "FAILED_BATCH_ITEMS", row["count"])
    return outcomes


def provisioning_requests_failed(*, since: datetime) -> int:
    """Asynchronous provisioning requests that failed since ``since`` (by their last change). One count."""
    return ProvisioningRequest.objects.filter(status=ProvisioningRequest.FAILED, updated_at__gte=since).count()


def batch_items_failed(*, since: datetime) -> int:
    """Batch items that failed since ``since`` (by when they finished). One count."""
    return BatchItem.objects.filter(status=BatchItem.FAILED, finished_at__gte=since).count()


# ------------------------------------------------------------------------------------------------------------
# The back office's token page
# ------------------------------------------------------------------------------------------------------------
def network_tokens_of(*, vault_token: Token) -> QuerySet[NetworkToken]:
    """The network tokens provisioned from ``vault_token``, deleted ones included, the newest first."""
    return NetworkToken.objects.filter(vault_token=vault_token).select_related("issuer").order_by("-created_at", "-pk")
