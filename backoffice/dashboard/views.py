"""The dashboard's two views: the page, and its live part alone, which the page's script fetches again every 30
seconds and on its Refresh button (templates/admin/dashboard/live.html, backoffice_dashboard/dashboard.js).

Both sit behind the admin site's own check (urls.py wraps them in ``admin.site.admin_view``): a session signed in
with both factors, of a staff member. Each figure, chart and table shows to whoever may open the list of what it
counts (``figures.SEES``), and is not even counted for anyone else; a link shows only to whoever may open the page
it leads to.
"""

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from urllib.parse import urlencode

from django.contrib import admin
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from backoffice.dashboard import figures, status
from backoffice.dashboard.charts import DAYS, outcomes_chart, tokens_per_day_chart
from backoffice.dashboard.webhook_charts import attempts_per_hour_chart, success_rate_chart
from core.admin_display import merchant_shown, moment_shown, when_shown
from networks import selectors as network_selectors
from notifications.admin.base import endpoint_status
from notifications.models import Delivery
from vault import selectors as vault_selectors

REFRESH_SECONDS = 30


def dashboard(request):
    at, days, per_day, links, parts = _counted_now(request.user)
    charts = []
    if per_day is not None:
        charts.append(tokens_per_day_chart(per_day))
    if "network_tokens" in parts:
        outcomes = network_selectors.network_token_outcomes(since=days.first_start)
        charts.append(outcomes_chart(outcomes, links=links))
    context = {
        **admin.site.each_context(request),
        **_live(at, days, per_day, links, parts),
        "title": "Dashboard",
        "subtitle": None,
        "zone": timezone.get_current_timezone_name(),
        "refresh_seconds": REFRESH_SECONDS,
        "charts": charts,
    }
    request.current_app = admin.site.name
    return TemplateResponse(request, "admin/dashboard.html", context)


def dashboard_live(request):
    """The page's live part alone, as an HTML fragment that the page puts in place of its own."""
    at, days, per_day, links, parts = _counted_now(request.user)
    request.current_app = admin.site.name
    return TemplateResponse(request, "admin/dashboard/live.html", _live(at, days, per_day, links, parts))


def _counted_now(user):
    """The moment the figures are counted at, its days, the tokens created on each (None for whoever may not see
    them), the user's links and the parts of the page they may see."""
    parts = figures.seen_by(user)
    at = figures.Moments.at(timezone.now())
    days = _days(at.now)
    per_day = None
    if "tokens" in parts:
        per_day = vault_selectors.tokens_created_per_day(first_day=days.first, last_day=days.today)
    return at, days, per_day, _links(user, at, days), parts


@dataclass(frozen=True)
class Days:
    today: date
    first: date  # the oldest of the DAYS counted
    today_start: datetime
    first_start: datetime


def _days(now: datetime) -> Days:
    """Days run midnight to midnight in the current time zone."""
    zone = timezone.get_current_timezone()
    today = timezone.localdate(now)
    first = today - timedelta(days=DAYS - 1)
    return Days(
        today=today,
        first=first,
        today_start=datetime.combine(today, time.min, tzinfo=zone),
        first_start=datetime.combine(first, time.min, tzinfo=zone),
    )


def _live(at: figures.Moments, days: Days, per_day: dict[date, int] | None, links: dict, parts: frozenset) -> dict:
    """What the live part shows of what ``parts`` lets the user see, counted now: the strip, the endpoints in
    trouble, the tiles, the webhook charts."""
    webhooks = per_hour = attempts = endpoints = None
    if "deliveries" in parts:
        webhooks = figures.webhook_figures(at=at)
        per_hour = figures.attempts_per_hour(at=at)
        attempts = tuple(sum(counts) for counts in zip(*per_hour.values(), strict=True))  # (succeeded, failed), 24 h
    if "endpoints" in parts:
        endpoints = figures.endpoint_counts()
    trouble = status.trouble_tiles(
        now=at.now,
        webhooks=webhooks,
        endpoints=endpoints,
        attempts=attempts,
        network=figures.network_failures(at=at, parts=parts),
        links=links,
    )
    volume = status.volume_tiles(
        tokens_today=None if per_day is None else per_day[days.today],
        tokens_period=None if per_day is None else sum(per_day.values()),
        days=DAYS,
        webhooks=webhooks,
        endpoints=endpoints,
        links=links,
    )
    live = {
        "updated": when_shown(at.now),
        "updated_iso": at.now.isoformat(),
        "updated_time": f"{at.now.astimezone(UTC):%H:%M:%S} UTC",  # what a person reads: "updated 12:03:04 UTC"
        "strip": status.strip_of(trouble),
        "tiles": [*trouble, *volume],
        "live_charts": [],
        "shows_endpoints": endpoints is not None,
        "links": links,
        "live_url": reverse("admin-dashboard-live"),
    }
    if endpoints is not None:
        in_trouble = endpoints["failing"] + endpoints["disabled"]
        live["endpoint_rows"] = [_endpoint_row(e, links, at.now) for e in figures.endpoints_in_trouble()]
        live["endpoints_in_trouble"] = in_trouble
        live["endpoints_more"] = max(0, in_trouble - figures.ENDPOINTS_SHOWN)
    if webhooks is not None:
        live["live_charts"] = [attempts_per_hour_chart(per_hour), success_rate_chart(webhooks)]
    return live


@dataclass
class EndpointRow:
    url: str
    admin_url: str | None
    merchant: str
    state: str
    since: str
    last_error: str
    last_error_at: str
    last_success: str
    pending: int
    dead_letters: int
    dead_letters_url: str | None
    replay_url: str | None


def _endpoint_row(endpoint, links: dict, now: datetime) -> EndpointRow:
    """One endpoint in trouble as the table shows it: failing since when, and why, and when it last worked."""
    if endpoint.is_enabled:
        since = moment_shown(endpoint.failing_since, now)
    else:
        when = moment_shown(endpoint.disabled_at, now) if endpoint.disabled_at else "—"
        since = format_html("{}: {}", when, endpoint.disabled_reason) if endpoint.disabled_reason else when
    error = endpoint.last_error or (f"HTTP {endpoint.last_status_code}" if endpoint.last_status_code else "")
    dead_letters_url = None
    if "deliveries" in links:
        filters = {"endpoint__id__exact": endpoint.pk, "status__exact": Delivery.FAILED}
        dead_letters_url = f"{links['deliveries']}?{urlencode(filters)}"
    can_replay = "replay" in links and endpoint.is_enabled and endpoint.dead_letters
    return EndpointRow(
        url=endpoint.url,
        admin_url=reverse(links["endpoint"], args=[endpoint.pk]) if "endpoint" in links else None,
        merchant=merchant_shown(endpoint.merchant),
        state=endpoint_status(endpoint),
        since=since,
        last_error=error or "—",
        last_error_at=moment_shown(endpoint.last_error_at, now) if error else "",
        last_success=moment_shown(endpoint.last_success_at, now) if endpoint.last_success_at else "never",
        pending=endpoint.pending,
        dead_letters=endpoint.dead_letters,
        dead_letters_url=dead_letters_url,
        replay_url=reverse(links["replay"], args=[endpoint.pk, "replay_failed"]) if can_replay else None,
    )


def _links(user, at: figures.Moments, days: Days) -> dict[str, str]:
    """Where a number leads, among the admin pages this user may open (a link to a 403 helps nobody): each list
    filtered on the same bounds the number was counted with, so that it shows exactly that many rows."""

    def filtered(url: str, **filters) -> str:
        return f"{url}?{urlencode({name: _param(value) for name, value in filters.items()})}"

    links = {}
    if user.has_perm("vault.view_token"):
        tokens = reverse("admin:vault_token_changelist")
        links["tokens_today"] = filtered(tokens, created_at__gte=days.today_start)
        links["tokens_period"] = filtered(tokens, created_at__gte=days.first_start)
    if user.has_perm("networks.view_networktoken"):
        links["network_tokens"] = reverse("admin:networks_networktoken_changelist")
    if user.has_perm("networks.view_provisioningrequest"):
        requests = reverse("admin:networks_provisioningrequest_changelist")
        links["requests_failed"] = filtered(requests, status__exact="FAILED", updated_at__gte=at.day_ago)
    if user.has_perm("networks.view_batchitem"):
        items = reverse("admin:networks_batchitem_changelist")
        links["items_failed"] = filtered(items, status__exact="FAILED", finished_at__gte=at.day_ago)
    if user.has_perm("notifications.view_delivery"):
        deliveries = links["deliveries"] = reverse("admin:notifications_delivery_changelist")
        links["pending"] = filtered(deliveries, status__exact=Delivery.PENDING)
        links["overdue"] = filtered(deliveries, status__exact=Delivery.PENDING, next_attempt_at__lt=at.now)
        links["dead_letters"] = filtered(deliveries, status__exact=Delivery.FAILED)
        links["dead_letters_24h"] = filtered(deliveries, status__exact=Delivery.FAILED, updated_at__gte=at.day_ago)
    if user.has_perm("notifications.view_webhookendpoint"):
        endpoints = links["endpoints"] = reverse("admin:notifications_webhookendpoint_changelist")
        links["endpoints_failing"] = filtered(endpoints, is_enabled__exact=1, failing_since__isnull="False")
        links["endpoints_disabled"] = filtered(endpoints, is_enabled__exact=0)
        links["endpoint"] = "admin:notifications_webhookendpoint_change"
    if user.has_perm("notifications.change_webhookendpoint"):  # the endpoints' actions' permission
        links["replay"] = "admin:notifications_webhookendpoint_object_action"
    return links


def _param(value) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)
