"""Card rules added by the security review (issue 17): no card number in a free-text field (finding 8), no card number
of one repeated digit (finding 14), no token expiry later than the environment's lifetime (finding 11). ``POST
/tokens``, the updates of a token and the bulk import judge them alike (``vault.rules``).

alice (the ``api`` and ``tokenize`` fixtures) is the merchant sending them; her refused values must never be stored,
nor shown back in an answer.
"""

import copy
import csv
import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from tests.conftest import AMEX, MASTERCARD, SHERLOCK, VISA, VISA_2, path_of
from vault.models import Namespace, Token

CARD_IN_TEXT = "fieldContainsCardNumber"
INSTRUMENT = "$.paymentInstrument"


def body_with(**changes) -> dict:
    """The seed's body with dotted paths replaced: ``paymentInstrument.billingAddress.city``."""
    body = copy.deepcopy(SHERLOCK)
    for dotted, value in changes.items():
        *parents, leaf = dotted.split(".")
        target = body
        for parent in parents:
            target = target[parent]
        target[leaf] = value
    return body


def refusal(response) -> list[tuple[str, str]]:
    assert response.status_code == 400, (response.status_code, response.content[:300])
    body = response.json()
    assert body["errorName"] == "bodyDoesNotMatchSchema", body
    return [(item["errorName"], item["jsonPath"]) for item in body["validationErrors"]]


def when(moment) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


# ------------------------------------------------------------------------------------------------------------
# Finding 8: a card number in a free-text field
# ------------------------------------------------------------------------------------------------------------
FREE_TEXT = {
    # field: (dotted path in the body, a value holding a card number)
    "description": ("description", f"Card {VISA_2}"),
    "namespace": ("namespace", MASTERCARD),
    "cardHolderName": ("paymentInstrument.cardHolderName", "4111 1111 1111 1111"),
    "schemeTransactionReference": ("schemeTransactionReference", "REF 5555 5555 5555 4444"),
    "address1": ("paymentInstrument.billingAddress.address1", f"{VISA_2} Baker Street"),
    "address2": ("paymentInstrument.billingAddress.address2", "4111-1111-1111-1111"),
    "address3": ("paymentInstrument.billingAddress.address3", MASTERCARD),
    "postalCode": ("paymentInstrument.billingAddress.postalCode", AMEX),
    "city": ("paymentInstrument.billingAddress.city", f"London {AMEX}"),
    "state": ("paymentInstrument.billingAddress.state", VISA_2),
}


@pytest.mark.pci("3.5.1")
@pytest.mark.parametrize(("dotted", "value"), FREE_TEXT.values(), ids=FREE_TEXT.keys())
def test_a_card_number_in_a_free_text_field_is_refused_naming_the_field(tokenize, dotted, value):
    response = tokenize(body_with(**{dotted: value}))

    assert refusal(response) == [(CARD_IN_TEXT, "$." + dotted)]
    assert value not in response.content.decode()
    assert "".join(ch for ch in value if ch.isdigit()) not in response.content.decode()
    assert not Token.objects.exists() and not Namespace.objects.exists()


def test_the_message_says_what_is_wrong_without_the_value(tokenize):
    response = tokenize(body_with(namespace=VISA_2))

    [item] = response.json()["validationErrors"]
    assert "card number" in item["message"]
    assert VISA_2 not in item["message"]


def test_every_free_text_field_holding_one_is_named_at_once(tokenize):
    response = tokenize(body_with(**{dotted: value for dotted, value in FREE_TEXT.values()}))

    assert sorted(refusal(response)) == sorted((CARD_IN_TEXT, "$." + dotted) for dotted, _ in FREE_TEXT.values())


@pytest.mark.parametrize(
    "value",
    [
        "Card 4444 3333 2222 1112",  # fails the Luhn check
        "Order 2035-05-01, 12 items",
        "0000 0000 0000 0000",
        "9b2e0c4a-1007-4123-8123-a3f5c2d1e0b9",
        "1234567890123456789012",  # 22 digits: no card number
    ],
)
def test_digits_that_are_no_card_number_are_kept(tokenize, value):
    response = tokenize(body_with(description=value, namespace=value))

    assert response.status_code == 201, response.content
    assert response.json()["description"] == value and response.json()["namespace"] == value


@pytest.mark.pci("3.5.1")
@pytest.mark.parametrize(
    ("segment", "value"),
    [
        ("description", f"Card {VISA_2}"),
        ("cardHolderName", "4111 1111 1111 1111"),
        ("schemeTransactionReference", MASTERCARD),
    ],
    ids=["description", "holder name", "scheme reference"],
)
def test_an_update_of_a_free_text_field_holding_a_card_number_is_refused(tokenize, api, segment, value):
    created = tokenize().json()
    token_path = path_of(created["tokenPaymentInstrument"]["href"])

    response = api.put(f"{token_path}/{segment}", value, format="json")

    assert refusal(response) == [(CARD_IN_TEXT, "$")]
    after = api.get(token_path).json()
    assert after == {**created, "_links": after["_links"]}


@pytest.mark.pci("3.5.1")
def test_a_billing_address_update_holding_a_card_number_is_refused(tokenize, api):
    token_path = path_of(tokenize().json()["tokenPaymentInstrument"]["href"])
    address = {**SHERLOCK["paymentInstrument"]["billingAddress"], "address2": f"Flat {VISA_2}"}

    response = api.put(f"{token_path}/billingAddress", address, format="json")

    assert refusal(response) == [(CARD_IN_TEXT, "$.address2")]
    assert VISA_2 not in api.get(token_path).content.decode()


def test_a_namespace_query_holding_a_card_number_is_answered_as_before(tokenize, api):
    # Queries store nothing: a namespace that cannot exist lists no tokens.
    tokenize()

    response = api.get("/tokens", {"namespace": VISA_2})

    assert response.status_code == 200


# ------------------------------------------------------------------------------------------------------------
# Finding 8, the bulk import: the same rule, the same error name
# ------------------------------------------------------------------------------------------------------------
HEADER = [
    "externalReference",
    "cardNumber",
    "expiryDate",
    "cardHolderName",
    "address1",
    "postalCode",
    "city",
    "countryCode",
]
FUTURE = f"05/{timezone.now().year + 3}"


def imported(alice, tmp_path, rows, *args) -> list[dict]:
    """Runs ``manage.py import_cards`` on ``rows`` for alice; returns the reject file's rows."""
    source = tmp_path / "cards.csv"
    with open(source, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER + (["shopper"] if args else []))
        writer.writerows(rows)
    out = io.StringIO()
    call_command("import_cards", str(source), "--merchant", alice.public_id, *args, stdout=out, stderr=io.StringIO())
    with open(tmp_path / "cards.rejects.csv", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.pci("3.5.1")
def test_the_import_rejects_a_row_whose_holder_name_holds_a_card_number(alice, tmp_path):
    rows = [
        ["ok", VISA, FUTURE, "Sherlock Holmes", "221B Baker Street", "NW1 6XE", "London", "GB"],
        ["holder", MASTERCARD, FUTURE, f"Mycroft {VISA_2}", "221B Baker Street", "NW1 6XE", "London", "GB"],
        ["street", AMEX, FUTURE, "Irene Adler", f"{VISA_2} Baker Street", "NW1 6XE", "London", "GB"],
    ]

    rejects = imported(alice, tmp_path, rows)

    assert {(r["externalReference"], r["field"], r["reason"]) for r in rejects} == {
        ("holder", "cardHolderName", CARD_IN_TEXT),
        ("street", "address1", CARD_IN_TEXT),
    }
    assert [token.card_holder_name for token in Token.objects.filter(merchant=alice)] == ["Sherlock Holmes"]
    assert VISA_2 not in (tmp_path / "cards.rejects.csv").read_text()


def test_the_import_rejects_a_namespace_holding_a_card_number(alice, tmp_path):
    rows = [["ns", VISA, FUTURE, "Sherlock Holmes", "221B Baker Street", "NW1 6XE", "London", "GB", VISA_2]]

    rejects = imported(alice, tmp_path, rows, "--namespace-column", "shopper")

    assert [(r["field"], r["reason"]) for r in rejects] == [("shopper", CARD_IN_TEXT)]
    assert not Namespace.objects.exists()


# ------------------------------------------------------------------------------------------------------------
# Finding 14: one digit repeated
# ------------------------------------------------------------------------------------------------------------
# Every number of one repeated digit and 12 to 19 digits that passes the Luhn check.
ONE_DIGIT_REPEATED = ["0" * 12, "0" * 16, "0" * 19, "8" * 12, "8" * 16, "6" * 13, "2" * 17, "4" * 17]


@pytest.mark.pci("6.2.4")
@pytest.mark.parametrize("number", ONE_DIGIT_REPEATED, ids=lambda n: f"{n[0]}x{len(n)}")
def test_a_card_number_of_one_repeated_digit_is_refused(tokenize, number):
    response = tokenize(body_with(**{"paymentInstrument.cardNumber": number}))

    assert refusal(response) == [("fieldHasInvalidValue", f"{INSTRUMENT}.cardNumber")]
    assert number not in response.content.decode()
    assert not Token.objects.exists()


def test_a_network_token_request_refuses_a_card_of_one_repeated_digit_too(api):
    card = {"cardNumber": "0" * 16, "cardExpiryDate": {"month": 5, "year": 2035}}

    response = api.post("/network-tokens", {"card": card}, format="json", HTTP_X_CORRELATION_ID="zeros")

    assert refusal(response) == [("fieldHasInvalidValue", "$.card.cardNumber")]


def test_the_import_rejects_a_card_number_of_one_repeated_digit(alice, tmp_path):
    rows = [["zeros", "0" * 16, FUTURE, "Sherlock Holmes", "221B Baker Street", "NW1 6XE", "London", "GB"]]

    rejects = imported(alice, tmp_path, rows)

    assert [(r["field"], r["reason"]) for r in rejects] == [("cardNumber", "fieldHasInvalidValue")]
    assert not Token.objects.exists()


# ------------------------------------------------------------------------------------------------------------
# Finding 11: tokenExpiryDateTime no later than the environment's lifetime
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.pci("6.2.4")
@pytest.mark.parametrize("environment", ["try", "live"])
def test_a_token_expiry_in_year_9999_is_refused(tokenize, settings, environment):
    settings.TOKENS_ENVIRONMENT = environment

    response = tokenize(body_with(tokenExpiryDateTime="9999-12-31T23:59:59Z"))

    assert refusal(response) == [("fieldHasInvalidValue", "$.tokenExpiryDateTime")]
    assert not Token.objects.exists()


@pytest.mark.parametrize(
    ("environment", "lifetime"), [("try", timedelta(days=7)), ("live", timedelta(days=4 * 365 + 1))]
)
def test_a_token_expiry_is_bounded_by_the_environments_lifetime(tokenize, settings, environment, lifetime):
    settings.TOKENS_ENVIRONMENT = environment
    now = timezone.now()

    beyond = tokenize(body_with(tokenExpiryDateTime=when(now + lifetime + timedelta(minutes=1))))
    within = tokenize(body_with(tokenExpiryDateTime=when(now + lifetime - timedelta(minutes=1))))

    assert refusal(beyond) == [("fieldHasInvalidValue", "$.tokenExpiryDateTime")]
    assert f"{lifetime.days} days" in beyond.json()["validationErrors"][0]["message"]
    assert within.status_code == 201, within.content
    assert within.json()["tokenExpiryDateTime"] == when(now + lifetime - timedelta(minutes=1))


def test_a_token_expiry_within_the_lifetime_is_used_as_given(tokenize):
    later = timezone.now() + timedelta(days=3)

    response = tokenize(body_with(tokenExpiryDateTime=when(later)))

    assert response.status_code == 201
    assert response.json()["tokenExpiryDateTime"] == when(later)
