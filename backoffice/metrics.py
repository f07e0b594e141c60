"""``GET /metrics``: what every process of this host counted (``core.metrics.process_metrics``) and the state the apps
read from the database at scrape time (each app's ``StateCollector``), in Prometheus's text format.

It reads every app, so it lives at the top of the ladder with the rest of what does. It is no API endpoint: a plain
Django view, outside the OpenAPI document, refusing in the API's error shape.

Who may read it (see config/settings/base.py's Metrics section): a bearer token, compared in constant time, or an
address list; either suffices. Production with neither refuses everyone, and the system check below says so at
start, since an unprotected /metrics would show any visitor the traffic and the state of the vault.
"""

import hmac
import ipaddress

from django.conf import settings
from django.core import checks
from django.http import HttpResponse
from django.views import View
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

import networks.metrics
import notifications.metrics
import vault.metrics
from core.errors import EndpointNotFound, Forbidden, json_error
from core.metrics import process_metrics


class MetricsView(View):
    http_method_names = ["get"]

    def get(self, request):
        if not settings.METRICS_ENABLED:
            return json_error(EndpointNotFound())  # as if there were no such path
        if not may_read_metrics(request):
            return json_error(Forbidden("Metrics are served to the configured token or addresses only"))
        # A registry per scrape: what the processes counted, and each app's state, read now. No description is asked
        # of the collectors (auto_describe off): registering them would otherwise run their queries once more.
        registry = CollectorRegistry(auto_describe=False)
        for collector in (
            process_metrics(),
            vault.metrics.StateCollector(),
            notifications.metrics.StateCollector(),
            networks.metrics.StateCollector(),
        ):
            registry.register(collector)
        # Prometheus's text format, or OpenMetrics when the scraper asks for it.
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        return HttpResponse(encoder(registry), content_type=content_type)


def may_read_metrics(request) -> bool:
    """Whether ``request`` may read /metrics: it brings ``METRICS_TOKEN`` or comes from ``METRICS_ALLOWED_ADDRESSES``;
    with neither configured, only where ``METRICS_OPEN`` (local runs, tests)."""
    token, addresses = settings.METRICS_TOKEN, settings.METRICS_ALLOWED_ADDRESSES
    if not token and not addresses:
        return settings.METRICS_OPEN
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
            return True
    if addresses:
        try:
            peer = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
        except ValueError:
            return False
        return any(peer in ipaddress.ip_network(entry, strict=False) for entry in addresses)
    return False


def metrics_protected(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """System check: /metrics refuses everyone when production settings give it neither a token nor addresses."""
    if settings.METRICS_OPEN or settings.METRICS_TOKEN or settings.METRICS_ALLOWED_ADDRESSES:
        return []
    return [
        checks.Warning(
            "/metrics refuses every request: neither METRICS_TOKEN nor METRICS_ALLOWED_ADDRESSES is set",
            hint="Set METRICS_TOKEN (Prometheus sends it as a bearer token) or METRICS_ALLOWED_ADDRESSES "
            "(the scrapers' addresses or CIDR blocks), or both.",
            id="backoffice.W001",
        )
    ]
