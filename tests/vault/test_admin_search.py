"""The token list's search box posts its term: a full card number typed into it is refused before it is part of any
URL (the browser's history, the proxy's and the servers' access logs, the Referer of the next page); a tokenId, last
four digits or BIN lands on the list's usual address, ``?q=<term>``, so paging, filters and links keep it.

admin_client is a superuser ("admin"); alice's Sherlock Visa (ending 1111) is the token searched for, her Mastercard
one that must not come up.
"""

import re

import pytest
from django.db import connection

from tests.conftest import MASTERCARD, VISA, logged_in
from tests.vault.test_admin import changelist, listed_token_ids, sherlock_card
from vault import services
from vault.admin.search import TokenSearch, token_id_range
from vault.models import Token

pytestmark = pytest.mark.pci("3.5.1")


@pytest.fixture
def token(alice) -> Token:
    return services.card_tokenize(merchant=alice, card=sherlock_card(), namespace="baker-street").token


def test_the_search_box_of_the_token_list_posts(admin_client, token):
    page = admin_client.get(changelist("token")).content.decode()

    form = re.search(r'<form id="changelist-search".*?</form>', page, re.DOTALL).group(0)
    assert 'method="post"' in form
    assert 'name="csrfmiddlewaretoken"' in form


@pytest.mark.parametrize("query", ["1111", "444433", "token_id"])
def test_a_posted_last_four_bin_or_token_id_lands_on_the_lists_search_for_it(admin_client, alice, token, query):
    other = services.card_tokenize(merchant=alice, card=sherlock_card(MASTERCARD)).token
    query = token.token_id if query == "token_id" else query

    response = admin_client.post(changelist("token"), {"q": query})

    assert response.status_code == 302
    assert response["Location"] == f"{changelist('token')}?q={query}"
    listing = admin_client.get(response["Location"])
    assert listed_token_ids(listing) == {token.token_id}
    assert other.token_id not in listing.content.decode()


def test_a_posted_search_keeps_the_lists_filters_and_starts_on_the_first_page(admin_client, token):
    response = admin_client.post(f"{changelist('token')}?expired=no&q=4444&p=2", {"q": "1111"})

    assert response["Location"] == f"{changelist('token')}?expired=no&q=1111"


def test_an_empty_posted_search_lists_every_token(admin_client, token):
    response = admin_client.post(f"{changelist('token')}?q=1111", {"q": " "})

    assert response["Location"] == changelist("token")


@pytest.mark.parametrize(
    "number", [VISA, "4444 3333 2222 1111", "4444-3333-2222-1111"], ids=["digits", "spaces", "dashes"]
)
def test_a_full_card_number_posted_as_a_search_is_refused_and_never_put_in_a_url(admin_client, token, number):
    response = admin_client.post(f"{changelist('token')}?expired=no", {"q": number}, follow=True)

    [(location, _)] = response.redirect_chain
    assert location == f"{changelist('token')}?expired=no"
    body = response.content.decode()
    assert number not in body and VISA not in body
    assert "Full card or token numbers are not accepted" in body
    assert listed_token_ids(response) == {token.token_id}  # the list as it was, not searched


def test_a_search_needs_the_permission_to_see_the_list(django_user_model, token):
    nobody = logged_in(django_user_model.objects.create_user("nobody", password="x", is_staff=True))

    response = nobody.post(changelist("token"), {"q": "1111"})

    assert response.status_code == 403


# ------------------------------------------------------------------------------------------------------------
# Read as a clerk means it: masked numbers, tokenId prefixes, merchant names
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "masked",
    ["4444********1111", "4444 **** **** 1111", "4444.****.****.1111", "444433******1111", "444433…1111"],
    ids=["as-shown", "spaces", "dots", "six-digit-bin", "ellipsis"],
)
def test_a_masked_number_finds_its_token_by_bin_and_last_four(admin_client, alice, token, masked):
    services.card_tokenize(merchant=alice, card=sherlock_card(MASTERCARD))
    services.card_tokenize(merchant=alice, card=sherlock_card("4111111111111111"))  # another Visa, other last four

    response = admin_client.post(changelist("token"), {"q": masked}, follow=True)

    assert listed_token_ids(response) == {token.token_id}
    assert "Full card or token numbers are not accepted" not in response.content.decode()


def test_a_masked_number_of_another_length_finds_nothing(admin_client, token):
    response = admin_client.get(changelist("token"), {"q": "4444*********1111"})  # 17 digits

    assert listed_token_ids(response) == set()


def test_the_start_of_a_token_id_finds_it_and_no_other(admin_client, alice, token):
    others = [services.card_tokenize(merchant=alice, card=sherlock_card(MASTERCARD)).token]

    response = admin_client.get(changelist("token"), {"q": token.token_id[:8].lower()})

    assert listed_token_ids(response) == {token.token_id}
    assert others[0].token_id not in response.content.decode()


@pytest.mark.parametrize(
    ("prefix", "bounds"),
    [("7ABC", ("7ABC", "7ABD")), ("7AB9", ("7AB9", "7ABA")), ("7AHZ", ("7AHZ", "7AJ")), ("ZZZZ", ("ZZZZ", None))],
    ids=["letter", "digit-to-letter", "last-is-z", "only-z"],
)
def test_a_token_id_prefix_is_a_range_holding_every_token_id_it_starts(prefix, bounds):
    lookups = dict(token_id_range(prefix).children)

    assert (lookups["token_id__gte"], lookups.get("token_id__lt")) == bounds
    for token_id in (prefix + "0" * 15, prefix + "Z" * 15):
        assert token_id >= bounds[0] and (bounds[1] is None or token_id < bounds[1])


@pytest.mark.postgres
def test_the_start_of_a_token_id_is_found_through_the_token_id_index_on_postgresql(alice, token):
    prefix = token.token_id[:6]
    found = TokenSearch.read(prefix).filter(Token.objects.all())

    with connection.cursor() as cursor:
        # Whatever the table's size: an index the query can use is used rather than reading the table.
        # Unordered, so that walking the created_at index for the list's order is no rival plan (the
        # planner picked it on a one-row table in CI).
        cursor.execute("SET LOCAL enable_seqscan = off")
        plan = found.order_by().explain()

    assert re.search(r"Index Cond: .*token_id\)::text >= ", plan), plan
    assert "token_token_id_unique" in plan, plan
    assert list(found) == [token]


def test_a_merchant_name_finds_its_tokens(admin_client, bob, token):
    bobs = services.card_tokenize(merchant=bob, card=sherlock_card(MASTERCARD)).token

    response = admin_client.get(changelist("token"), {"q": bob.name.split()[0].lower()})

    assert listed_token_ids(response) == {bobs.token_id}


@pytest.mark.parametrize("number", ["4444.3333.2222.1111", "4444 3333 2222 1111"], ids=["dots", "spaces"])
def test_a_full_number_with_dots_or_spaces_is_still_refused(admin_client, token, number):
    response = admin_client.get(changelist("token"), {"q": number}, follow=True)

    body = response.content.decode()
    assert number not in body and VISA not in body
    assert "Full card or token numbers are not accepted" in body


def test_a_search_that_finds_nothing_says_what_was_searched_how_it_was_read_and_what_to_try(admin_client, token):
    body = admin_client.get(changelist("token"), {"q": "9999"}).content.decode()

    empty = re.search(r'<div class="module empty-results" id="empty-results".*?</div>', body, re.S).group()
    assert re.search(r"No tokens\s+match “9999”\.", empty)
    assert "Searched for the last four digits 9999" in empty
    assert "Try a masked number as the pages show it" in empty
    assert f'<a href="{changelist("token")}" id="empty-results-all">Show all tokens</a>' in empty


def test_a_search_that_finds_something_says_nothing_of_the_kind(admin_client, token):
    body = admin_client.get(changelist("token"), {"q": "1111"}).content.decode()

    assert 'id="empty-results"' not in body
