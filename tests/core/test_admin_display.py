"""How the admin shows states, dates, merchants and counts: one way everywhere (core.admin_display)."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from core.admin_display import (
    counted,
    expiry_shown,
    merchant_shown,
    moment_shown,
    relative,
    status_label,
    when_shown,
)
from merchants.models import Merchant

NOW = datetime(2026, 12, 2, 7, 22, 34, tzinfo=UTC)


@pytest.mark.parametrize(
    ("offset", "said"),
    [
        (timedelta(seconds=-10), "just now"),
        (timedelta(minutes=22), "in 22 min"),
        (timedelta(minutes=-3), "3 min ago"),
        (timedelta(hours=-5), "5 h ago"),
        (timedelta(hours=30), "in 30 h"),
        (timedelta(days=3), "in 3 days"),
        (timedelta(days=-400), "1 year ago"),
    ],
)
def test_a_date_is_said_relative_to_now(offset, said):
    assert relative(NOW + offset, NOW) == said


def test_every_date_has_one_format_in_utc_with_seconds_and_its_relative_time():
    paris = datetime(2026, 12, 2, 9, 22, 34, tzinfo=UTC).astimezone(ZoneInfo("Europe/Paris"))
    assert when_shown(paris) == "2026-12-02 09:22:34 UTC"
    shown = moment_shown(NOW - timedelta(hours=3), NOW)
    assert "2026-12-02 04:22:34 UTC</time>" in shown and "(3 h ago)" in shown
    assert moment_shown(None) == "—"


def test_a_status_is_a_label_of_one_of_four_tones():
    assert status_label("Failing", "bad") == '<span class="status status-bad">Failing</span>'
    with pytest.raises(ValueError):
        status_label("Odd", "green")


def test_a_merchant_is_shown_by_a_short_name_with_the_whole_name_and_id_on_hover():
    merchant = Merchant(name="Harbour Coffee Roasters (demo)", public_id="mer_abc")
    shown = merchant_shown(merchant)
    assert ">Harbour Coffee Roaste…</span>" in shown
    assert 'title="Harbour Coffee Roasters (demo) (mer_abc)"' in shown


def test_counts_are_words_without_parenthesised_plurals():
    assert counted(1, "token") == "1 token"
    assert counted(3, "token") == "3 tokens"
    assert counted(1_200, "delivery", "deliveries") == "1,200 deliveries"


def test_an_expiry_shows_as_the_card_prints_it_and_a_missing_one_as_nothing():
    assert expiry_shown(5, 2035) == "05/2035"
    assert expiry_shown(None, 2035) == expiry_shown(5, None) == "—"
