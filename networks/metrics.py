"""The networks app's metrics: calls to the token services (TSPs) and to each issuer, cryptograms, batch items that
end, counted where the services decide them; the issuers' limits, the batch items under way and the asynchronous
requests pending, read from the database at scrape time.

Labels come from fixed sets: the networks with a token service, the outcomes below, and issuers from the registry
(a bounded table staff keep). The issuers made for a BIN outside the registry, one per BIN, are one label value,
``unregistered``, per network: a label per BIN would grow with every bank seen. Never a card or token number, a
tokenId, a merchant or a correlation id.
"""

from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime

from django.db.models import Count
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily

from core.metrics import counter, histogram
from networks.models import NETWORKS, BatchItem, Issuer, ProvisioningRequest

# ------------------------------------------------------------------------------------------------------------
# Counted by the services
# ------------------------------------------------------------------------------------------------------------
PROVISION, CRYPTOGRAM = "provision", "cryptogram"
# success: a token (ACTIVE) or a cryptogram; step_up: a token created INACTIVE; declined: the issuer said no;
# error and timeout: no answer (TspError), the second when it did not come in time.
TSP_OUTCOMES = ("success", "step_up", "declined", "error", "timeout")
TSP_REQUESTS = counter(
    "tsp_requests",
    "Calls to a network's token service, by network, operation (provision, cryptogram) and outcome (success, "
    "step_up, declined, error, timeout).",
    ["network", "operation", "outcome"],
)
TSP_DURATION = histogram(
    "tsp_request_duration_seconds",
    "How long a call to a network's token service took, whatever its outcome.",
    ["network", "operation"],
)
TSP_CALLS = {
    (network, operation, outcome): TSP_REQUESTS.labels(network=network, operation=operation, outcome=outcome)
    for network in NETWORKS
    for operation, outcomes in ((PROVISION, TSP_OUTCOMES), (CRYPTOGRAM, ("success", "error", "timeout")))
    for outcome in outcomes
}
TSP_LATENCY = {
    (network, operation): TSP_DURATION.labels(network=network, operation=operation)
    for network in NETWORKS
    for operation in (PROVISION, CRYPTOGRAM)
}

CRYPTOGRAM_RESULTS = ("issued", "not_active", "tsp_unavailable")
CRYPTOGRAMS = counter(
    "cryptograms",
    "Cryptogram requests, by network and result: issued, not_active (the token is not ACTIVE), tsp_unavailable "
    "(the token service did not answer).",
    ["network", "result"],
)
CRYPTOGRAMS_MADE = {
    (network, result): CRYPTOGRAMS.labels(network=network, result=result)
    for network in NETWORKS
    for result in CRYPTOGRAM_RESULTS
}

UNREGISTERED = "unregistered"
# An unregistered issuer's limit, as ``issuer_for`` makes one: the model's default.
DEFAULT_RATE_LIMIT = Issuer._meta.get_field("rate_limit_per_second").default
ISSUER_CALLS = counter(
    "issuer_calls",
    "Calls started to an issuer's token service under its rate limit (provisionings: sync, async, batch), by "
    "network and issuer (the registry's name; 'unregistered' for every BIN outside the registry).",
    ["network", "issuer"],
)

# The states a batch item ends in: pending_activation (an INACTIVE token: its end waits for the network) is later
# counted again as succeeded or failed.
BATCH_ITEM_ENDS = (BatchItem.SUCCEEDED, BatchItem.FAILED, BatchItem.PENDING_ACTIVATION)
BATCH_ITEMS = counter(
    "batch_items",
    "Batch items that reached a state: succeeded, failed, pending_activation (a step-up token; counted again when "
    "it succeeds or fails).",
    ["state"],
)
BATCH_ITEMS_ENDED = {state: BATCH_ITEMS.labels(state=state.lower()) for state in BATCH_ITEM_ENDS}


def issuer_label(issuer: Issuer) -> str:
    return issuer.name if issuer.registered else UNREGISTERED


def issuer_call_count(issuer: Issuer) -> None:
    """Count a call started to ``issuer`` (the scheduler gave it its slot)."""
    ISSUER_CALLS.labels(network=issuer.network, issuer=issuer_label(issuer)).inc()


def tsp_call_count(*, network: str, operation: str, outcome: str, seconds: float) -> None:
    """Count a call to ``network``'s token service that took ``seconds`` and ended in ``outcome``."""
    TSP_CALLS[network, operation, outcome].inc()
    TSP_LATENCY[network, operation].observe(seconds)


def batch_items_count(state: str, count: int = 1) -> None:
    """Count ``count`` batch items that reached ``state`` (one of ``BATCH_ITEM_ENDS``)."""
    if count:
        BATCH_ITEMS_ENDED[state].inc(count)


# ------------------------------------------------------------------------------------------------------------
# Read at scrape time
# ------------------------------------------------------------------------------------------------------------
# The states of the items still under way; those ended are the counter's (their number only grows).
BATCH_ITEM_STATES_UNDER_WAY = (BatchItem.PENDING, BatchItem.QUEUED, BatchItem.RUNNING, BatchItem.PENDING_ACTIVATION)


def calls_in_window(*, rate: int, next_call_at: datetime | None, now: datetime) -> float:
    """The calls reserved on an issuer's clock (``networks.scheduling``) in the coming second, the window its
    ``rate`` limit counts in: ``rate`` when its clock is booked a second or more ahead (calls wait for their slot),
    0 when it is idle."""
    if next_call_at is None or next_call_at <= now:
        return 0.0
    return min(float(rate), (next_call_at - now).total_seconds() * rate)


class StateCollector:
    """The networks app's state gauges, computed at each scrape: four queries, on the issuers (a few rows, and the
    BINs outside the registry) and on the ranges of the batch items and requests under way (their status indexes)."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = timezone.now()
        yield from self._issuers(now)
        yield self._batch_items()
        yield GaugeMetricFamily(
            "tokenvault_async_requests_pending",
            "Asynchronous network-token requests waiting for a worker (PENDING: due now or retrying later).",
            value=ProvisioningRequest.objects.filter(status=ProvisioningRequest.PENDING).count(),
        )

    def _issuers(self, now: datetime) -> Iterator[GaugeMetricFamily]:
        limit = GaugeMetricFamily(
            "tokenvault_issuer_call_limit",
            "An issuer's rate limit (calls a second). For 'unregistered': the limit of its busiest BIN now.",
            labels=["network", "issuer"],
        )
        in_window = GaugeMetricFamily(
            "tokenvault_issuer_calls_in_window",
            "Calls reserved on an issuer's clock for the coming second: at its limit, calls wait for their slot. "
            "For 'unregistered': its busiest BIN now.",
            labels=["network", "issuer"],
        )
        # The registry: a table staff keep, a few rows. Ranges under one name (a bank with several) add up.
        registered = defaultdict(lambda: [0, 0.0])
        for network, name, rate, next_call_at in (
            Issuer.objects.filter(registered=True)
            .order_by()
            .values_list("network", "name", "rate_limit_per_second", "next_call_at")
        ):
            registered[network, name][0] += rate
            registered[network, name][1] += calls_in_window(rate=rate, next_call_at=next_call_at, now=now)
        for (network, name), (rate, calls) in registered.items():
            limit.add_metric([network, name], rate)
            in_window.add_metric([network, name], calls)
        # The issuers of BINs outside it whose clock is ahead of now: those called in the last moments, however
        # many BINs were ever seen.
        busiest = {network: (0.0, DEFAULT_RATE_LIMIT) for network in NETWORKS}
        for network, rate, next_call_at in (
            Issuer.objects.filter(registered=False, next_call_at__gt=now)
            .order_by()
            .values_list("network", "rate_limit_per_second", "next_call_at")
        ):
            calls = calls_in_window(rate=rate, next_call_at=next_call_at, now=now)
            if calls / rate > busiest[network][0] / busiest[network][1]:
                busiest[network] = (calls, rate)
        for network, (calls, rate) in busiest.items():
            limit.add_metric([network, UNREGISTERED], rate)
            in_window.add_metric([network, UNREGISTERED], calls)
        yield limit
        yield in_window

    def _batch_items(self) -> GaugeMetricFamily:
        counts = dict(
            BatchItem.objects.filter(status__in=BATCH_ITEM_STATES_UNDER_WAY)
            .order_by()
            .values_list("status")
            .annotate(Count("pk"))
        )
        gauge = GaugeMetricFamily(
            "tokenvault_batch_items",
            "Batch items under way, by state: pending, queued, running, pending_activation (those ended are "
            "tokenvault_batch_items_total).",
            labels=["state"],
        )
        for state in BATCH_ITEM_STATES_UNDER_WAY:
            gauge.add_metric([state.lower()], counts.get(state, 0))
        return gauge
