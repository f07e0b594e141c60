"""What the dashboard's tests build and read: rows written as the services would have left them (with bulk_create and
explicit dates, so that any day or hour can be filled), and readers of the page's HTML."""

import html
import itertools
import re
from datetime import date, datetime, time, timedelta

from django.utils import timezone

from networks.models import Batch, BatchItem, Issuer, NetworkToken, ProvisioningRequest
from notifications.models import Delivery, DeliveryAttempt, Event, WebhookEndpoint
from vault.keys import key_ring
from vault.models import Token

URL = "/admin/dashboard/"
LIVE = "/admin/dashboard/live/"
serial = itertools.count()


# ------------------------------------------------------------------------------------------------------------
# Data
# ------------------------------------------------------------------------------------------------------------
def today() -> date:
    return timezone.localdate()


def on(day: date, at: time = time(0, 1)) -> datetime:
    """A moment of ``day`` in the current time zone (a minute past midnight: never in the future for today)."""
    return datetime.combine(day, at, tzinfo=timezone.get_current_timezone())


def make_tokens(merchant, created_at: list[datetime], **fields) -> None:
    """Live Visa tokens created at each moment of ``created_at``; ``fields`` change any column."""
    key_ring()  # the keys they are under, stored first as the first card stores them (vault.keys)
    Token.objects.bulk_create(
        [
            Token(
                **{
                    "merchant": merchant,
                    "description": "bulk",
                    "fingerprint": f"fp-{next(serial)}",
                    "pan_ciphertext": b"x",
                    "key_version": 1,
                    "bin": "444433",
                    "last_four": "1111",
                    "pan_length": 16,
                    "brand": "VISA",
                    "expires_at": timezone.now() + timedelta(days=365),
                    "created_at": moment,
                    **fields,
                }
            )
            for moment in created_at
        ],
        batch_size=500,
    )


def tokens_per_day(merchant, counts: dict[date, int]) -> None:
    make_tokens(merchant, [on(day) for day, count in counts.items() for _ in range(count)])


def make_network_tokens(merchant, issuer: Issuer, status: str, count: int, *, created_at=None) -> None:
    NetworkToken.objects.bulk_create(
        [
            NetworkToken(
                merchant=merchant,
                token_id=f"nt-{next(serial)}",
                network=issuer.network,
                status=status,
                issuer=issuer,
                token_last_digits="9999",
                token_expiry_month=1,
                token_expiry_year=2031,
                card_bin=issuer.bin_low,
                card_last_digits="1111",
                card_expiry_month=1,
                card_expiry_year=2031,
                payment_account_reference="PAR",
                correlation_id="c",
                created_at=created_at or timezone.now(),
            )
            for _ in range(count)
        ]
    )


def make_failed_requests(merchant, count: int, *, vault_token=None, updated_at=None) -> None:
    ProvisioningRequest.objects.bulk_create(
        [
            ProvisioningRequest(
                merchant=merchant,
                correlation_id="c",
                status=ProvisioningRequest.FAILED,
                vault_token=vault_token,
                failure_code="tokenizationDeclined",
                updated_at=updated_at or timezone.now(),
            )
            for _ in range(count)
        ]
    )


def make_failed_items(merchant, count: int, *, issuer=None, vault_token=None, finished_at=None) -> None:
    batch = Batch.objects.create(merchant=merchant, total=count)
    BatchItem.objects.bulk_create(
        [
            BatchItem(
                batch=batch,
                index=index,
                token_reference="ref",
                issuer=issuer,
                vault_token=vault_token,
                status=BatchItem.FAILED,
                failure_code="tokenizationDeclined",
                finished_at=finished_at or timezone.now(),
            )
            for index in range(count)
        ]
    )


def make_deliveries(endpoint, count: int, status: str, *, updated_at=None, next_attempt_at=None, **fields):
    """``count`` deliveries to ``endpoint``, each of its own event; ``fields`` change any column."""
    events = Event.objects.bulk_create(
        [Event(merchant=endpoint.merchant, type="token.created", data={}) for _ in range(count)]
    )
    return Delivery.objects.bulk_create(
        [
            Delivery(
                event=event,
                endpoint=endpoint,
                status=status,
                updated_at=updated_at or timezone.now(),
                next_attempt_at=next_attempt_at if status == Delivery.PENDING else None,
                **fields,
            )
            for event in events
        ]
    )


def make_attempts(delivery, started_at: list[datetime], *, succeeded: bool) -> None:
    """Attempts of ``delivery`` started at each moment: a 200, or a 503."""
    first = DeliveryAttempt.objects.filter(delivery=delivery).count() + 1
    DeliveryAttempt.objects.bulk_create(
        [
            DeliveryAttempt(
                delivery=delivery,
                number=first + n,
                started_at=moment,
                duration_ms=12,
                status_code=200 if succeeded else 503,
                error="" if succeeded else "HTTP 503",
                succeeded=succeeded,
            )
            for n, moment in enumerate(started_at)
        ]
    )


def endpoint(merchant, url: str, **fields) -> WebhookEndpoint:
    return WebhookEndpoint.objects.create(merchant=merchant, url=url, **fields)


# ------------------------------------------------------------------------------------------------------------
# Reading the page
# ------------------------------------------------------------------------------------------------------------
def svg(body: str, chart_id: str) -> str:
    match = re.search(rf'<svg id="{chart_id}".*?</svg>', body, re.S)
    assert match, f"no svg#{chart_id}"
    return match.group(0)


def bars(body: str, chart_id: str) -> dict[str, int]:
    """data-key → data-value of the chart's bars."""
    return {
        key: int(value)
        for key, value in re.findall(
            r'<rect class="bar[^"]*"[^>]*data-key="([^"]+)" data-value="(\d+)"', svg(body, chart_id)
        )
    }


def table(body: str, table_id: str) -> dict[str, list[str]]:
    """The first cell of each body row → the text of the other cells."""
    match = re.search(rf'<table id="{table_id}">.*?<tbody>(.*?)</tbody>', body, re.S)
    assert match, f"no table#{table_id}"
    rows = {}
    for row in re.findall(r"<tr>(.*?)</tr>", match.group(1), re.S):
        cells = [
            html.unescape(re.sub(r"<[^>]+>", "", cell)).strip()
            for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)
        ]
        rows[cells[0]] = cells[1:]
    return rows


def page(client) -> str:
    response = client.get(URL)
    assert response.status_code == 200
    return response.content.decode()


def tile(body: str, key: str) -> dict:
    """A tile's figure, tone (None for a figure with no threshold) and link."""
    match = re.search(rf'<li id="tile-{key}" class="[^"]*"(?: data-tone="(\w+)")?>(.*?)</li>', body, re.S)
    assert match, f"no tile {key}"
    figure = re.search(r'class="figure"(?: href="([^"]+)")?>([^<]+)<', match.group(2))
    url = html.unescape(figure.group(1)) if figure.group(1) else None
    return {"tone": match.group(1), "figure": figure.group(2), "url": url, "text": text_of(match.group(2))}


def strip(body: str) -> dict:
    """The status strip: its tone, headline, and each item's tone and words."""
    match = re.search(r'<section class="bo-strip[^"]*" id="status-strip" data-tone="(\w+)".*?</section>', body, re.S)
    assert match, "no status strip"
    items = {
        key: (tone, text_of(item))
        for key, tone, item in re.findall(r'<li id="strip-([\w-]+)" data-tone="(\w+)">(.*?)</li>', match.group(0), re.S)
    }
    headline = text_of(re.search(r'<span class="bo-headline">(.*?)</span>\s*<ul>', match.group(0), re.S).group(1))
    return {"tone": match.group(1), "headline": headline, "items": items}


def text_of(fragment: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())
