"""The back-office dashboard: staff only, right numbers, drawn as SVG on the server, a fixed number of queries.

admin_client is a superuser ("admin") who may follow every link; dora is a staff member with no permission at all,
who may open the dashboard and sees no figure on it; clerk may open the vault's lists (and sees its figures only),
operator (olive) the webhooks' and the network tokens'; vic is a logged-in user who is not staff; alice is the
merchant whose tokens, network tokens and webhooks are counted. Is something wrong now
(the strip, the tiles, their links, the live part) is tested in test_dashboard_live.py.
"""

import re
from datetime import UTC, datetime, time, timedelta

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from backoffice.dashboard import charts, figures
from networks.models import Issuer, NetworkToken
from notifications.models import Delivery, DeliveryAttempt, WebhookEndpoint
from tests.backoffice.dashboard_data import (
    LIVE,
    URL,
    bars,
    endpoint,
    make_attempts,
    make_deliveries,
    make_failed_items,
    make_failed_requests,
    make_network_tokens,
    make_tokens,
    on,
    page,
    strip,
    svg,
    table,
    tile,
    today,
    tokens_per_day,
)
from tests.conftest import VISA, logged_in
from vault import selectors as vault_selectors
from vault import services
from vault.models import Token

TILE_KEYS = (
    "endpoints-failing",
    "overdue",
    "dead-letters-24h",
    "attempts-succeeded",
    "network-requests-failed",
    "batch-items-failed",
    "tokens-today",
    "tokens-period",
    "pending",
    "dead-letters",
    "endpoints-disabled",
)


@pytest.fixture
def dora(db, django_user_model) -> Client:
    """Staff, no permission at all."""
    return logged_in(django_user_model.objects.create_user("dora", password="x", is_staff=True))


@pytest.fixture
def vic(db, django_user_model) -> Client:
    """Logged in, not staff."""
    client = Client()
    client.force_login(django_user_model.objects.create_user("vic", password="x"))
    return client


@pytest.fixture
def issuers(db) -> dict[str, Issuer]:
    return {
        network: Issuer.objects.create(name=f"{network} bank", network=network, bin_low=low, bin_high=high)
        for network, low, high in (
            ("VISA", "400000", "499999"),
            ("MASTERCARD", "510000", "559999"),
            ("AMEX", "340000", "379999"),
        )
    }


# ------------------------------------------------------------------------------------------------------------
# Who may look
# ------------------------------------------------------------------------------------------------------------
def test_an_anonymous_visitor_is_sent_to_the_admin_login(client, db):
    response = client.get(URL)

    assert response.status_code == 302
    assert response["Location"] == f"{reverse('admin:login')}?next={URL}"


def test_a_user_who_is_not_staff_is_sent_to_the_admin_login(vic):
    response = vic.get(URL)

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


@pytest.fixture
def failing_hook(alice) -> WebhookEndpoint:
    """alice's endpoint, failing for an hour with a dead letter: what only those who may open endpoints see."""
    hook = endpoint(alice, "https://alice.example/hooks", failing_since=timezone.now() - timedelta(hours=1))
    make_deliveries(hook, 1, Delivery.FAILED, last_error="HTTP 503 from alice.example")
    return hook


def test_a_staff_member_without_any_permission_opens_the_page_and_sees_no_figure(dora, failing_hook):
    for body in (page(dora), dora.get(LIVE).content.decode()):
        assert "alice.example" not in body and "Alice" not in body
        assert 'id="endpoints-failing-module"' not in body
        assert 'id="tile-' not in body and '<svg id="chart-' not in body
        assert strip(body)["tone"] == "quiet" and strip(body)["headline"] == "No figure to show"
        assert 'id="tiles-none"' in body
        assert reverse("admin:notifications_delivery_changelist") not in body
        assert reverse("admin:notifications_webhookendpoint_changelist") not in body


def test_a_back_office_clerk_sees_the_vaults_figures_only(clerk, alice, failing_hook):
    make_tokens(alice, [timezone.now()])

    for body in (page(clerk), clerk.get(LIVE).content.decode()):
        assert tile(body, "tokens-today")["figure"] == "1"
        assert "alice.example" not in body
        assert 'id="endpoints-failing-module"' not in body
        assert {key for key in TILE_KEYS if f'id="tile-{key}"' in body} == {"tokens-today", "tokens-period"}
        assert 'id="chart-webhook-' not in body
        assert set(strip(body)["items"]) == set()
    body = page(clerk)
    assert '<svg id="chart-tokens-per-day"' in body
    assert 'id="chart-network-outcomes"' not in body


def test_who_may_see_deliveries_but_not_endpoints_gets_the_delivery_figures_and_no_endpoint(
    db, django_user_model, failing_hook
):
    user = django_user_model.objects.create_user("dee", password="x", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename="view_delivery"))
    dee = logged_in(user)

    body = page(dee)

    assert "alice.example" not in body and 'id="endpoints-failing-module"' not in body
    assert {key for key in TILE_KEYS if f'id="tile-{key}"' in body} == {
        "overdue",
        "dead-letters-24h",
        "attempts-succeeded",
        "pending",
        "dead-letters",
    }
    assert tile(body, "dead-letters")["figure"] == "1"
    assert '<svg id="chart-webhook-success"' in body and '<svg id="chart-webhook-hourly"' in body


def test_who_may_open_endpoints_sees_the_endpoints_failing_with_their_urls(operator, failing_hook):
    body = page(operator)

    assert list(table(body, "endpoints-failing")) == ["https://alice.example/hooks"]
    assert tile(body, "endpoints-failing")["figure"] == "1"


def test_the_page_looks_like_the_admin_with_breadcrumbs_home(admin_client):
    body = page(admin_client)

    assert '<div class="breadcrumbs">' in body
    assert f'<a href="{reverse("admin:index")}">Home</a>' in body
    assert "<h1>Dashboard</h1>" in body
    assert 'id="header-dashboard-link"' in body
    # Nothing fetched from elsewhere: no script at all beyond the admin's own, no external URL.
    assert not re.search(r'<script[^>]+src="https?://', body)
    assert "cdn" not in body.lower()


def test_the_admin_index_links_to_the_dashboard_and_keeps_the_application_list(admin_client):
    body = admin_client.get(reverse("admin:index")).content.decode()

    assert f'<a id="dashboard-link" href="{URL}">' in body
    assert 'id="recent-actions-module"' in body
    assert reverse("admin:vault_token_changelist") in body


def test_every_admin_page_header_links_to_the_dashboard(admin_client):
    body = admin_client.get(reverse("admin:vault_token_changelist")).content.decode()

    assert f'<a href="{URL}" id="header-dashboard-link">Dashboard</a>' in body


# ------------------------------------------------------------------------------------------------------------
# Tokens created per day
# ------------------------------------------------------------------------------------------------------------
def test_it_counts_the_tokens_created_each_day_of_the_last_30_with_the_empty_days_shown(admin_client, alice):
    counts = {today(): 3, today() - timedelta(days=1): 1, today() - timedelta(days=29): 7}
    tokens_per_day(alice, {**counts, today() - timedelta(days=30): 5})  # the 31st day back is outside the window
    make_tokens(
        alice, [on(today() - timedelta(days=1))], deleted_at=timezone.now(), pan_ciphertext=None, fingerprint=None
    )  # deleted since: it was still created that day

    body = page(admin_client)

    drawn = bars(body, "chart-tokens-per-day")
    expected = {f"{today() - timedelta(days=n):%Y-%m-%d}": 0 for n in range(30)}
    expected.update(
        {
            f"{today():%Y-%m-%d}": 3,
            f"{today() - timedelta(days=1):%Y-%m-%d}": 2,
            f"{today() - timedelta(days=29):%Y-%m-%d}": 7,
        }
    )
    assert drawn == expected
    assert list(drawn)[-1] == f"{today():%Y-%m-%d}"  # oldest first, today last
    assert f"<title>{today():%Y-%m-%d}: 3 tokens</title>" in body
    assert svg(body, "chart-tokens-per-day").count('class="bar bar-zero"') == 27
    assert table(body, "chart-tokens-per-day-data")[f"{today() - timedelta(days=29):%Y-%m-%d}"] == ["7"]
    assert "12 tokens created from" in body  # the chart's description


def test_days_are_counted_in_the_current_time_zone(db, alice, settings):
    settings.TIME_ZONE = "Asia/Tokyo"  # UTC+9, no daylight saving
    day = timezone.localdate()
    late_evening_utc = datetime.combine(day - timedelta(days=2), time(20, 0), tzinfo=UTC)  # next day in Tokyo
    make_tokens(alice, [late_evening_utc])

    counts = vault_selectors.tokens_created_per_day(first_day=day - timedelta(days=3), last_day=day)

    assert counts[day - timedelta(days=1)] == 1
    assert counts[day - timedelta(days=2)] == 0


# ------------------------------------------------------------------------------------------------------------
# Network-token outcomes
# ------------------------------------------------------------------------------------------------------------
def test_network_token_outcomes_are_grouped_by_network_and_status(admin_client, alice, issuers):
    make_network_tokens(alice, issuers["VISA"], NetworkToken.ACTIVE, 3)
    make_network_tokens(alice, issuers["VISA"], NetworkToken.SUSPENDED, 1)
    make_network_tokens(alice, issuers["MASTERCARD"], NetworkToken.DELETED, 2)
    make_network_tokens(
        alice, issuers["MASTERCARD"], NetworkToken.ACTIVE, 4, created_at=on(today() - timedelta(days=40))
    )  # before the window
    make_tokens(alice, [timezone.now()], brand="AMEX", bin="378282")
    amex_card = Token.objects.get(brand="AMEX")
    make_tokens(alice, [timezone.now()], brand="DISCOVER", bin="601111")
    discover_card = Token.objects.get(brand="DISCOVER")
    make_failed_requests(alice, 2, vault_token=amex_card)
    make_failed_requests(alice, 1)  # its card came in the request body and is gone: network unknown
    make_failed_requests(alice, 5, vault_token=amex_card, updated_at=timezone.now() - timedelta(days=31))
    make_failed_items(alice, 3, issuer=issuers["MASTERCARD"])
    make_failed_items(alice, 1, vault_token=discover_card)  # refused at once: networkNotSupported, no issuer

    body = page(admin_client)

    assert bars(body, "chart-network-outcomes") == {
        "VISA:ACTIVE": 3,
        "VISA:SUSPENDED": 1,
        "MASTERCARD:DELETED": 2,
        "MASTERCARD:FAILED_BATCH_ITEMS": 3,
        "AMEX:FAILED_REQUESTS": 2,
        "UNKNOWN:FAILED_REQUESTS": 1,
        "DISCOVER:FAILED_BATCH_ITEMS": 1,
    }
    rows = table(body, "chart-network-outcomes-data")
    # active, inactive, suspended, deleted, failed requests, failed batch items, created, failed
    assert rows["VISA"] == ["3", "0", "1", "0", "0", "0", "4", "0"]
    assert rows["MASTERCARD"] == ["0", "0", "0", "2", "0", "3", "2", "3"]
    assert rows["AMEX"] == ["0", "0", "0", "0", "2", "0", "0", "2"]
    assert list(rows)[:3] == ["VISA", "MASTERCARD", "AMEX"]
    assert f"{reverse('admin:networks_networktoken_changelist')}?network__exact=VISA" in body
    assert "<title>VISA, active: 3</title>" in body


def test_every_network_has_its_place_even_with_no_network_token_at_all(admin_client):
    body = page(admin_client)

    assert bars(body, "chart-network-outcomes") == {}
    assert set(table(body, "chart-network-outcomes-data")) == {"VISA", "MASTERCARD", "AMEX"}


# ------------------------------------------------------------------------------------------------------------
# Webhooks: success rate, attempts per hour, endpoints failing
# ------------------------------------------------------------------------------------------------------------
def test_webhook_success_rate_over_24_hours_and_7_days(admin_client, alice):
    hook = endpoint(alice, "https://alice.example/hooks")
    now = timezone.now()
    make_deliveries(hook, 3, Delivery.SUCCEEDED, updated_at=now - timedelta(hours=1))
    make_deliveries(hook, 1, Delivery.FAILED, updated_at=now - timedelta(hours=2))
    make_deliveries(hook, 4, Delivery.SUCCEEDED, updated_at=now - timedelta(days=3))
    make_deliveries(hook, 1, Delivery.FAILED, updated_at=now - timedelta(days=10))  # outside both windows

    body = page(admin_client)

    rows = table(body, "chart-webhook-success-data")
    # success rate, succeeded, failed, finished
    assert rows["Last 24 h"] == ["75.0 %", "3", "1", "4"]
    assert rows["Last 7 days"] == ["87.5 %", "7", "1", "8"]
    assert bars(body, "chart-webhook-success") == {"24h:succeeded": 3, "24h:dead": 1, "7d:succeeded": 7, "7d:dead": 1}
    assert "Last 24 h: 75.0 % succeeded (3 of 4 finished)" in body


def test_a_window_without_finished_deliveries_says_so_rather_than_a_rate(admin_client):
    body = page(admin_client)

    assert table(body, "chart-webhook-success-data")["Last 24 h"] == ["—", "0", "0", "0"]
    assert "no delivery finished" in svg(body, "chart-webhook-success")


def test_attempts_are_counted_per_hour_over_the_last_24_hours_in_utc(admin_client, alice):
    [delivery] = make_deliveries(endpoint(alice, "https://alice.example/hooks"), 1, Delivery.SUCCEEDED)
    for _ in range(2):
        hour = timezone.now().astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        make_attempts(delivery, [hour + timedelta(seconds=1)] * 3, succeeded=True)  # this hour
        make_attempts(delivery, [hour + timedelta(seconds=2)], succeeded=False)
        make_attempts(delivery, [hour - timedelta(hours=5, minutes=-10)] * 2, succeeded=False)  # five hours back
        make_attempts(delivery, [hour - timedelta(hours=23)], succeeded=True)  # the oldest hour shown
        make_attempts(delivery, [hour - timedelta(hours=24)] * 4, succeeded=True)  # the hour before: not shown

        body = page(admin_client)
        if timezone.now() < hour + timedelta(hours=1):
            break
        # The page was drawn in the next hour, not the one the attempts were made for: make them again for that one.
        DeliveryAttempt.objects.filter(delivery=delivery).delete()

    this, five_back, oldest = (f"{hour - timedelta(hours=n):%Y-%m-%d %H:00}" for n in (0, 5, 23))
    drawn = bars(body, "chart-webhook-hourly")
    assert {key: value for key, value in drawn.items() if value} == {
        f"{this}:succeeded": 3,
        f"{this}:failed": 1,
        f"{five_back}:failed": 2,
        f"{oldest}:succeeded": 1,
    }
    assert len([key for key in drawn if not drawn[key]]) == 21  # the quiet hours keep a hairline
    rows = table(body, "chart-webhook-hourly-data")
    assert len(rows) == 24 and list(rows)[0] == oldest and list(rows)[-1] == this
    # attempts, succeeded, failed, success rate
    assert rows[this] == ["4", "3", "1", "75.0 %"]
    assert rows[five_back] == ["2", "0", "2", "0.0 %"]
    assert rows[f"{hour - timedelta(hours=1):%Y-%m-%d %H:00}"] == ["0", "0", "0", "—"]
    assert f"<title>{this} UTC: 3 attempts succeeded</title>" in body


def test_endpoints_failing_come_first_with_their_last_error_last_success_and_a_replay_button(admin_client, alice):
    now = timezone.now()
    failing = endpoint(alice, "https://alice.example/failing", failing_since=now - timedelta(hours=3))
    make_deliveries(failing, 1, Delivery.SUCCEEDED, delivered_at=now - timedelta(hours=4), last_status_code=200)
    make_deliveries(
        failing, 1, Delivery.FAILED, updated_at=now - timedelta(hours=2), last_status_code=500, last_error="HTTP 500"
    )
    make_deliveries(
        failing,
        2,
        Delivery.PENDING,
        next_attempt_at=now,
        updated_at=now - timedelta(minutes=5),
        last_error="timed out after 15 s",
    )
    disabled = endpoint(
        alice,
        "https://alice.example/disabled",
        is_enabled=False,
        disabled_reason="Gone (HTTP 410)",
        disabled_at=now - timedelta(days=1),
    )
    endpoint(alice, "https://alice.example/healthy")

    body = page(admin_client)

    rows = table(body, "endpoints-failing")
    assert list(rows) == ["https://alice.example/failing", "https://alice.example/disabled"]
    merchant, state, since, last_error, last_success, pending, dead, action = rows["https://alice.example/failing"]
    assert (merchant, state, pending, dead, action) == ("Alice's Shop", "Failing", "2", "1", "Replay failed")
    assert since.endswith("(3 h ago)")
    assert last_error.startswith("timed out after 15 s") and last_error.endswith("(5 min ago)")
    assert last_success.endswith("(4 h ago)")
    assert rows["https://alice.example/disabled"][1] == "Disabled"
    assert rows["https://alice.example/disabled"][2].endswith("(24 h ago): Gone (HTTP 410)")
    assert rows["https://alice.example/disabled"][4] == "never"
    assert rows["https://alice.example/disabled"][-1] == ""  # nothing to replay, and a disabled endpoint is left alone
    replay = reverse("admin:notifications_webhookendpoint_object_action", args=[failing.pk, "replay_failed"])
    assert f'<a class="button bo-replay" href="{replay}">Replay failed</a>' in body
    for hook in (failing, disabled):
        assert f'<a href="{reverse("admin:notifications_webhookendpoint_change", args=[hook.pk])}">' in body
    assert "https://alice.example/healthy" not in body
    assert body.index('id="endpoints-failing"') < body.index('id="tiles"') < body.index('id="chart-tokens-per-day"')


def test_only_the_longest_failing_endpoints_are_listed_with_the_total(admin_client, alice):
    now = timezone.now()
    WebhookEndpoint.objects.bulk_create(
        [
            WebhookEndpoint(
                merchant=alice,
                url=f"https://alice.example/{n}",
                failing_since=now - timedelta(minutes=n),
                public_id=f"ep_{n}",
                secret=f"whsec_{n}",
            )
            for n in range(figures.ENDPOINTS_SHOWN + 5)
        ]
    )

    body = page(admin_client)

    assert len(table(body, "endpoints-failing")) == figures.ENDPOINTS_SHOWN
    assert f"https://alice.example/{figures.ENDPOINTS_SHOWN + 4}<" in body  # the longest failing
    assert "https://alice.example/0<" not in body
    assert f"longest-failing of {figures.ENDPOINTS_SHOWN + 5}" in body


# ------------------------------------------------------------------------------------------------------------
# Aggregates only: a fixed number of queries, no card data
# ------------------------------------------------------------------------------------------------------------
def fill(merchant, issuers, *, scale: int) -> None:
    """A data set whose size grows with ``scale`` and touches every part of the page."""
    tokens_per_day(merchant, {today() - timedelta(days=n): scale * (n % 7) for n in range(35)})
    for status in ("ACTIVE", "INACTIVE", "SUSPENDED", "DELETED"):
        for issuer in issuers.values():
            make_network_tokens(merchant, issuer, status, scale)
    card = Token.objects.filter(merchant=merchant).first()
    make_failed_requests(merchant, scale, vault_token=card)
    make_failed_requests(merchant, scale)
    make_failed_items(merchant, scale, issuer=issuers["AMEX"])
    now = timezone.now()
    for n in range(scale):
        hook = endpoint(merchant, f"https://shop.example/{scale}/{n}", failing_since=now - timedelta(hours=n))
        delivered = make_deliveries(hook, scale, Delivery.SUCCEEDED, updated_at=now - timedelta(hours=n))
        make_deliveries(hook, 2, Delivery.FAILED, last_error="HTTP 503")
        make_deliveries(hook, 2, Delivery.PENDING, next_attempt_at=now - timedelta(minutes=n))
        make_attempts(delivered[0], [now - timedelta(hours=n)] * scale, succeeded=True)
        make_attempts(delivered[0], [now - timedelta(hours=n, minutes=1)] * scale, succeeded=False)


def queries_for(client, url: str = URL) -> list[str]:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200
    return [query["sql"] for query in captured.captured_queries]


def test_the_page_makes_the_same_few_queries_whatever_the_size_of_the_data(admin_client, dora, alice, issuers):
    fill(alice, issuers, scale=1)
    small = queries_for(admin_client)
    small_for_dora = queries_for(dora)
    small_live = queries_for(admin_client, LIVE)

    fill(alice, issuers, scale=30)  # 2,000+ tokens over 30 days, 360 network tokens, 31 failing endpoints…
    assert Token.objects.count() > 2000
    assert WebhookEndpoint.objects.count() > figures.ENDPOINTS_SHOWN
    large = queries_for(admin_client)
    large_for_dora = queries_for(dora)
    large_live = queries_for(admin_client, LIVE)

    assert len(large) == len(small), "\n".join(large)
    assert len(large_for_dora) == len(small_for_dora)
    assert len(large_live) == len(small_live)
    # Session, user and second-factor device (3); the live part: tokens per day (1), delivery health and the dead
    # letters of 24 hours (2), attempts per hour (1), endpoint counts (1), endpoints in trouble and their last
    # errors (2), network-token failures (2); network-token outcomes (3, the page only); and the session saved
    # again for its idle timeout (3). Dora, who may see no figure, costs her permissions (2) and no count at all.
    assert len(large) <= 18, "\n".join(large)
    assert len(large_live) <= 15, "\n".join(large_live)
    assert len(large_for_dora) <= 8, "\n".join(large_for_dora)
    per_day_queries = [sql for sql in large if 'FROM "vault_token"' in sql]
    assert len(per_day_queries) == 1


def test_no_card_number_or_token_reaches_the_page(admin_client, alice):
    result = services.card_tokenize(
        merchant=alice,
        namespace="baker-street",
        card=services.Card(
            number=VISA, holder_name="Sherlock Holmes", expiry_month=5, expiry_year=2035, billing_address=None
        ),
    )

    body = page(admin_client)

    assert bars(body, "chart-tokens-per-day")[f"{today():%Y-%m-%d}"] == 1
    assert VISA not in body
    assert not re.search(r"(?<!\d)\d{12,19}(?!\d)", body)  # nothing shaped like a card number
    for private in (result.token.token_id, result.token.reference, "Sherlock"):
        assert private not in body


# ------------------------------------------------------------------------------------------------------------
# The scale of an axis
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "largest, top, step",
    [
        (0, 1, 1),
        (1, 1, 1),
        (3, 3, 1),
        (7, 8, 2),
        (10, 10, 5),
        (97, 100, 50),
        (1234, 1500, 500),
    ],
)
def test_an_axis_ends_on_a_round_number_just_above_the_largest_count(largest, top, step):
    assert charts.nice_scale(largest) == (top, step)
