"""Is something wrong now? The dashboard's status strip, its tiles coloured by thresholds, the lists they link to, and
its live part fetched again without a reload.

admin_client is a superuser who may follow every link; operator is olive, of the operators group (webhooks and
network tokens, nothing of the vault); alice is the merchant whose webhooks fail or succeed.
"""

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from backoffice.dashboard import status
from notifications.models import Delivery
from tests.backoffice.dashboard_data import (
    LIVE,
    endpoint,
    make_attempts,
    make_deliveries,
    make_failed_items,
    make_failed_requests,
    make_tokens,
    page,
    strip,
    tile,
)


# ------------------------------------------------------------------------------------------------------------
# The status strip
# ------------------------------------------------------------------------------------------------------------
def test_the_strip_says_all_clear_when_nothing_is_wrong(admin_client, alice):
    hook = endpoint(alice, "https://alice.example/hooks")
    [delivery] = make_deliveries(hook, 1, Delivery.SUCCEEDED)
    make_attempts(delivery, [timezone.now()], succeeded=True)

    shown = strip(page(admin_client))

    assert shown["tone"] == "good"
    assert shown["headline"] == "All clear"
    assert shown["items"] == {
        "endpoints-failing": ("good", "0 endpoints failing"),
        "overdue": ("good", "0 overdue"),
        "dead-letters-24h": ("good", "0 dead letters in 24 h"),
        "attempts-succeeded": ("good", "100.0 % of webhook attempts succeeded"),
        "network-requests-failed": ("good", "0 network-token requests failed"),
        "batch-items-failed": ("good", "0 batch items failed"),
    }


def test_the_strip_says_what_is_wrong_with_a_label_for_each_item(admin_client, alice):
    now = timezone.now()
    failing = endpoint(alice, "https://alice.example/failing", failing_since=now - timedelta(hours=2))
    make_deliveries(failing, 3, Delivery.FAILED, updated_at=now - timedelta(hours=1), last_error="HTTP 503")
    make_deliveries(failing, 1, Delivery.PENDING, next_attempt_at=now - timedelta(minutes=2))

    shown = strip(page(admin_client))

    assert shown["tone"] == "bad"
    assert shown["headline"] == "Something is wrong"
    assert shown["items"]["endpoints-failing"] == ("bad", "1 endpoint failing")
    assert shown["items"]["dead-letters-24h"] == ("warning", "3 dead letters in 24 h")
    assert shown["items"]["overdue"] == ("warning", "1 overdue")
    assert shown["items"]["attempts-succeeded"] == ("quiet", "no webhook attempt in 24 h")


def test_a_warning_alone_asks_for_a_look(admin_client, alice):
    make_failed_requests(alice, 2)

    shown = strip(page(admin_client))

    assert (shown["tone"], shown["headline"]) == ("warning", "Needs a look")
    assert shown["items"]["network-requests-failed"] == ("warning", "2 network-token requests failed")


# ------------------------------------------------------------------------------------------------------------
# Thresholds
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "waiting, tone",
    [
        (timedelta(minutes=-5), "good"),  # pending, due in five minutes: not overdue
        (timedelta(minutes=1), "warning"),
        (status.OVERDUE_OLDEST_BAD - timedelta(seconds=30), "warning"),
        (status.OVERDUE_OLDEST_BAD + timedelta(seconds=30), "bad"),
    ],
)
def test_overdue_deliveries_turn_amber_then_red_once_the_oldest_has_waited_too_long(admin_client, alice, waiting, tone):
    hook = endpoint(alice, "https://alice.example/hooks")
    make_deliveries(hook, 1, Delivery.PENDING, next_attempt_at=timezone.now() - waiting)

    overdue = tile(page(admin_client), "overdue")

    assert overdue["tone"] == tone
    assert "Amber from 1, red when the oldest has waited 10 min." in overdue["text"]


@pytest.mark.parametrize("failed, tone", [(0, "good"), (1, "good"), (2, "warning"), (10, "warning"), (11, "bad")])
def test_the_attempts_success_rate_turns_amber_below_99_and_red_below_90_percent(admin_client, alice, failed, tone):
    [delivery] = make_deliveries(endpoint(alice, "https://alice.example/hooks"), 1, Delivery.SUCCEEDED)
    now = timezone.now()
    make_attempts(delivery, [now] * (100 - failed), succeeded=True)
    make_attempts(delivery, [now] * failed, succeeded=False)

    rate = tile(page(admin_client), "attempts-succeeded")

    assert rate["tone"] == tone
    assert rate["figure"] == f"{100 - failed:.1f} %"
    assert f"{100 - failed} of 100 attempts" in rate["text"]
    assert "Amber below 99 %, red below 90 %." in rate["text"]


def test_each_tile_with_a_threshold_says_it_and_those_without_have_no_colour(admin_client):
    body = page(admin_client)

    assert "Red from 1." in tile(body, "endpoints-failing")["text"]
    assert "Amber from 1." in tile(body, "dead-letters-24h")["text"]
    assert "Amber from 1." in tile(body, "batch-items-failed")["text"]
    for key in ("tokens-today", "tokens-period", "pending", "dead-letters", "endpoints-disabled"):
        assert tile(body, key)["tone"] is None


# ------------------------------------------------------------------------------------------------------------
# Every tile leads to the list it counts, showing that many rows
# ------------------------------------------------------------------------------------------------------------
@pytest.fixture
def trouble(alice, bob):
    """A bit of everything, each with rows just outside what the tiles count."""
    now = timezone.now()
    # A few minutes ago, but never before today's midnight: in the first minutes of a day they would be yesterday's.
    today_start = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
    make_tokens(alice, [max(now - timedelta(minutes=m), today_start) for m in (1, 2, 3)])
    make_tokens(alice, [now - timedelta(days=2), now - timedelta(days=40)])
    failing = endpoint(alice, "https://alice.example/failing", failing_since=now - timedelta(hours=5))
    endpoint(bob, "https://bob.example/failing", failing_since=now - timedelta(days=1))
    endpoint(bob, "https://bob.example/off", is_enabled=False, disabled_reason="by the merchant")
    endpoint(alice, "https://alice.example/healthy")
    make_deliveries(failing, 4, Delivery.FAILED, updated_at=now - timedelta(hours=3), last_error="HTTP 503")
    make_deliveries(failing, 2, Delivery.FAILED, updated_at=now - timedelta(days=2), last_error="HTTP 503")
    make_deliveries(failing, 3, Delivery.PENDING, next_attempt_at=now - timedelta(minutes=20))
    make_deliveries(failing, 5, Delivery.PENDING, next_attempt_at=now + timedelta(minutes=20))
    make_failed_requests(alice, 2)
    make_failed_requests(alice, 1, updated_at=now - timedelta(days=2))
    make_failed_items(alice, 3)
    make_failed_items(alice, 1, finished_at=now - timedelta(days=2))


EXPECTED = {
    "endpoints-failing": 2,
    "overdue": 3,
    "dead-letters-24h": 4,
    "network-requests-failed": 2,
    "batch-items-failed": 3,
    "tokens-today": 3,
    "tokens-period": 4,
    "pending": 8,
    "dead-letters": 6,
    "endpoints-disabled": 1,
}


def result_count(client, url: str) -> int:
    response = client.get(url)
    assert response.status_code == 200, url  # a lookup the list refuses would redirect with ?e=1
    return response.context_data["cl"].result_count


def test_every_tile_links_to_a_list_showing_exactly_the_number_it_counts(admin_client, trouble):
    body = page(admin_client)

    for key, count in EXPECTED.items():
        shown = tile(body, key)
        assert shown["figure"] == f"{count:,}", key
        assert shown["url"], key
        assert result_count(admin_client, shown["url"]) == count, (key, shown["url"])
    assert tile(body, "attempts-succeeded")["url"] == "#chart-webhook-hourly-module"


def test_an_operator_follows_the_webhook_tiles_and_sees_nothing_of_the_vault(operator, trouble):
    body = page(operator)

    for key in ("endpoints-failing", "overdue", "dead-letters-24h", "pending", "dead-letters", "endpoints-disabled"):
        assert result_count(operator, tile(body, key)["url"]) == EXPECTED[key], key
    assert 'id="tile-tokens-today"' not in body and 'id="chart-tokens-per-day"' not in body
    assert reverse("admin:vault_token_changelist") not in body


def test_the_strip_links_each_item_to_its_list(admin_client, trouble):
    body = page(admin_client)

    failing_item = re.search(r'<li id="strip-endpoints-failing"[^>]*><a href="([^"]+)">', body).group(1)
    assert failing_item.replace("&amp;", "&") == tile(body, "endpoints-failing")["url"]


# ------------------------------------------------------------------------------------------------------------
# The live part, fetched again without a reload
# ------------------------------------------------------------------------------------------------------------
def test_the_live_part_answers_its_figures_counted_now_as_a_fragment(admin_client, alice):
    before = admin_client.get(LIVE)
    endpoint(alice, "https://alice.example/failing", failing_since=timezone.now())
    after = admin_client.get(LIVE)

    assert before.status_code == after.status_code == 200
    assert tile(before.content.decode(), "endpoints-failing")["figure"] == "0"
    body = after.content.decode()
    assert tile(body, "endpoints-failing")["figure"] == "1"
    assert strip(body)["tone"] == "bad"
    assert body.lstrip().startswith('<div id="dashboard-live" data-updated="')
    assert "<html" not in body and "<script" not in body
    assert "no-store" in after["Cache-Control"]


def test_the_page_loads_its_refresh_script_from_a_file_and_says_when_it_was_updated(admin_client):
    body = page(admin_client)

    assert re.search(r'<script src="/static/backoffice_dashboard/dashboard\.js" defer></script>', body)
    assert f'data-live-url="{LIVE}"' in body
    assert re.search(r'<span id="dashboard-updated" aria-live="polite">updated \d\d:\d\d:\d\d UTC</span>', body)
    assert '<button type="button" class="button" id="dashboard-refresh">Refresh</button>' in body


def test_the_live_part_is_for_staff_signed_in_with_both_factors(client, db, django_user_model):
    assert client.get(LIVE)["Location"] == f"{reverse('admin:login')}?next={LIVE}"
    client.force_login(django_user_model.objects.create_user("sam", password="x", is_staff=True))  # password only
    assert client.get(LIVE)["Location"].startswith(reverse("admin:login"))


def test_the_page_and_its_live_part_agree(admin_client, trouble):
    whole_page = page(admin_client)
    page_tiles = {key: tile(whole_page, key)["figure"] for key in EXPECTED}
    live_tiles = {key: tile(admin_client.get(LIVE).content.decode(), key)["figure"] for key in EXPECTED}

    assert page_tiles == live_tiles
