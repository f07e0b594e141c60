"""The card-token API (`/tokens`) as a merchant sees it: DESIGN.md "Card tokens" and the seed
`card-tokens-create-a-token.md`.

Actors (tests/conftest.py): alice is a merchant with the default scopes (no detokenize); carol is alice's payment
processor key, the only one allowed to detokenize; bob is another merchant who must see none of alice's tokens.
"""

import base64
import io
import re
from datetime import datetime, timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from core.models import AuditLog
from merchants import services as merchant_services
from notifications.models import Event
from tests.conftest import (
    AMEX,
    DINERS,
    DISCOVER,
    JCB,
    MAESTRO,
    MASTERCARD,
    MASTERCARD_2_SERIES,
    UNIONPAY,
    VISA,
    VISA_2,
    card_request,
    client_for,
    path_of,
)
from vault import cards, services
from vault.models import ExpiryExtension, Token, TokenConflict

BASE = "http://testserver"
TOKEN_ID = re.compile(r"^[0-9A-HJ-NP-Z]{19}$")
TOKEN_INSERT = re.compile(r'INSERT (OR IGNORE )?INTO "vault_token"')  # SQLite's spelling of ON CONFLICT DO NOTHING
SHERLOCK_ADDRESS = card_request()["paymentInstrument"]["billingAddress"]
MYCROFT_ADDRESS = {
    "address1": "Diogenes Club",
    "address2": "Pall Mall",
    "postalCode": "SW1Y 5ES",
    "city": "London",
    "countryCode": "GB",
}
TOKEN_LINK_RELS = {
    "tokens:token",
    "tokens:description",
    "tokens:cardHolderName",
    "tokens:cardExpiryDate",
    "tokens:billingAddress",
    "tokens:schemeTransactionReference",
}


# ------------------------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------------------------
def luhn_valid(number: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(number)):
        digit = int(char)
        if index % 2:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def with_check_digit(partial: str) -> str:
    return next(partial + d for d in "0123456789" if luhn_valid(partial + d))


def distinct_cards(count: int) -> list[str]:
    """Luhn-valid 16-digit Visa-range numbers, all different from the conftest constants."""
    return [with_check_digit(f"4000{index:011d}") for index in range(1, count + 1)]


def instant(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def close_to(value: datetime, expected: datetime, *, within=timedelta(seconds=60)) -> bool:
    return abs(value - expected) <= within


def error_paths(response) -> list[tuple[str, str]]:
    return [(item["errorName"], item["jsonPath"]) for item in response.json().get("validationErrors", [])]


def all_hrefs(value):
    """Every ``href`` anywhere inside a HAL body."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "href" and isinstance(item, str):
                yield item
            else:
                yield from all_hrefs(item)
    elif isinstance(value, list):
        for item in value:
            yield from all_hrefs(item)


def token_row(response) -> Token:
    return Token.objects.get(token_id=response.json()["tokenId"])


@pytest.fixture
def created(tokenize):
    """alice's token for the seed's card (Sherlock Holmes, VISA 4444333322221111, Baker Street)."""
    response = tokenize()
    assert response.status_code == 201, response.content
    return response


@pytest.fixture
def href(created) -> str:
    return created.json()["tokenPaymentInstrument"]["href"]


@pytest.fixture
def token_path(href) -> str:
    return path_of(href)


@pytest.fixture
def bob_processor_api(bob):
    """bob's own processor key: it may detokenize bob's tokens, and still must not reach alice's."""
    _, raw = merchant_services.api_key_create(merchant=bob, scopes=["tokens", "tokens:detokenize"], name="processor")
    return client_for(raw)


# ------------------------------------------------------------------------------------------------------------
# Root resource and media type
# ------------------------------------------------------------------------------------------------------------
def test_the_root_resource_links_to_token_creation_with_curies(api):
    response = api.get("/tokens")

    assert response.status_code == 200
    links = response.json()["_links"]
    assert links["tokens:tokens"] == {"href": f"{BASE}/tokens"}
    assert links["curies"] == [{"href": f"{BASE}/rels/tokens/{{rel}}.json", "name": "tokens", "templated": True}]


def test_it_answers_in_hal_json(api, tokenize):
    assert api.get("/tokens")["Content-Type"].startswith("application/hal+json")
    created = tokenize()
    assert created["Content-Type"].startswith("application/hal+json")
    assert api.get(path_of(created.json()["tokenPaymentInstrument"]["href"]))["Content-Type"].startswith(
        "application/hal+json"
    )


def test_it_refuses_the_root_resource_without_an_api_key(db):
    from rest_framework.test import APIClient

    response = APIClient().get("/tokens")

    assert response.status_code == 401
    assert response.json()["errorName"] == "accessDenied"


# ------------------------------------------------------------------------------------------------------------
# Curies: each link relation has a document at {base}/rels/tokens/{rel}.json
# ------------------------------------------------------------------------------------------------------------
def relations_in(body: dict) -> set[str]:
    return {name for name in body["_links"] if name.startswith("tokens:")}


def relation_href(body: dict, relation: str) -> str:
    [curie] = body["_links"]["curies"]
    prefix, name = relation.split(":")
    assert curie["name"] == prefix and curie["templated"] is True
    return curie["href"].replace("{rel}", name)


def test_every_link_relation_in_an_answer_resolves_through_its_curie_without_an_api_key(api, tokenize, client):
    created = tokenize()
    href = created.json()["tokenPaymentInstrument"]["href"]
    network_token = api.post("/network-tokens", {"token": href}, format="json", HTTP_X_CORRELATION_ID="rels-1")
    assert network_token.status_code == 201, network_token.content
    answers = [api.get("/tokens").json(), tokenize(cardHolderName="Mycroft Holmes").json()]
    assert set().union(*map(relations_in, answers)) == TOKEN_LINK_RELS | {
        "tokens:tokens",
        "tokens:conflicts",
        "tokens:networkToken",
    }

    for body in answers:
        for relation in relations_in(body):
            response = client.get(path_of(relation_href(body, relation)))  # no Authorization header

            assert response.status_code == 200, relation
            assert response["Content-Type"] == "application/json"
            document = response.json()
            assert document["rel"] == relation
            assert document["description"] and document["methods"], relation
            assert not [run for run in re.findall(r"\d{12,19}", response.content.decode()) if luhn_valid(run)]


def test_the_conflicts_relation_says_what_it_links_to_and_how_to_use_it(client):
    response = client.get("/rels/tokens/conflicts.json")

    assert response.status_code == 200
    document = response.json()
    assert list(document) == ["rel", "description", "methods"]
    assert document["rel"] == "tokens:conflicts"
    assert "conflict" in document["description"]
    assert set(document["methods"]) == {"GET", "PUT"}
    put = document["methods"]["PUT"]
    assert put["body"] is None
    assert put["scope"] == "tokens"
    assert {"204", "404"} <= set(put["responses"])
    assert set(document["methods"]["GET"]["responses"]) == {"200", "404"}


def test_a_relation_that_takes_a_body_describes_it_with_an_example_the_api_accepts(created, api, token_path, client):
    put = client.get("/rels/tokens/cardExpiryDate.json").json()["methods"]["PUT"]

    assert put["body"]["description"]
    assert api.put(f"{token_path}/cardExpiryDate", put["body"]["example"], format="json").status_code == 204


def test_each_method_of_a_relation_names_its_operation_in_the_openapi_schema(client):
    schema = client.get("/api/schema/", {"format": "json"}).json()
    operations = {
        operation["operationId"]: method.upper()
        for methods in schema["paths"].values()
        for method, operation in methods.items()
    }
    names = [
        "tokens",
        "token",
        "description",
        "cardHolderName",
        "cardExpiryDate",
        "billingAddress",
        "schemeTransactionReference",
        "conflicts",
        "networkToken",
    ]

    for name in names:
        for method, described in client.get(f"/rels/tokens/{name}.json").json()["methods"].items():
            assert operations[described["operationId"]] == method, (name, method)
    assert operations["token_relation_get"] == "GET"


@pytest.mark.parametrize("name", ["detokenize", "nothing", "Conflicts", "4444333322221111"])
def test_an_unknown_relation_answers_404_resource_not_found(client, name):
    response = client.get(f"/rels/tokens/{name}.json")

    assert response.status_code == 404
    assert response.json()["errorName"] == "resourceNotFound"
    assert name not in response.content.decode()


# ------------------------------------------------------------------------------------------------------------
# 201 Created
# ------------------------------------------------------------------------------------------------------------
def test_it_answers_201_with_the_seed_body_the_first_time(created):
    body = created.json()
    href = body["tokenPaymentInstrument"]["href"]

    assert list(body) == [
        "tokenPaymentInstrument",
        "tokenId",
        "description",
        "tokenExpiryDateTime",
        "paymentInstrument",
        "_links",
    ]
    assert body["tokenPaymentInstrument"] == {"type": "card/tokenized", "href": href}
    assert body["description"] == "Test Token Description"
    assert instant(body["tokenExpiryDateTime"]) > timezone.now()
    assert body["paymentInstrument"] == {
        "type": "card/masked",
        "cardNumber": "4444********1111",
        "cardHolderName": "Sherlock Holmes",
        "cardExpiryDate": {"month": 5, "year": 2035},
        "billingAddress": SHERLOCK_ADDRESS,
        "bin": "444433",
        "brand": "VISA",
    }
    links = body["_links"]
    assert set(links) == TOKEN_LINK_RELS | {"curies"}
    assert links["tokens:token"] == {"href": href}
    for rel in TOKEN_LINK_RELS - {"tokens:token"}:
        assert links[rel]["href"].startswith(href + "/"), rel
    assert links["curies"] == [{"href": f"{BASE}/rels/tokens/{{rel}}.json", "name": "tokens", "templated": True}]


def test_tokenizing_a_new_card_stores_it_without_looking_it_up_or_asking_network_tokens(api, tokenize):
    tokenize(cardNumber=VISA_2)  # a first request: the API key's lookup and the caches are warm from now on

    with CaptureQueriesContext(connection) as queries:
        response = tokenize()

    assert response.status_code == 201 and "tokens:networkToken" not in response.json()["_links"]
    statements = [query["sql"] for query in queries]
    assert not [sql for sql in statements if "networks_networktoken" in sql]
    assert not [sql for sql in statements if sql.startswith('SELECT "vault_token"')]
    assert len([sql for sql in statements if TOKEN_INSERT.match(sql)]) == 1


def test_a_stored_card_is_looked_up_once_its_insert_wrote_nothing(created, tokenize):
    with CaptureQueriesContext(connection) as queries:
        again = tokenize()

    assert again.status_code == 200 and again.json()["tokenId"] == created.json()["tokenId"]
    statements = [query["sql"] for query in queries]
    assert len([sql for sql in statements if TOKEN_INSERT.match(sql)]) == 1
    assert len([sql for sql in statements if sql.startswith('SELECT "vault_token"')]) == 1
    assert Token.objects.count() == 1
    assert Event.objects.filter(type="token.created").count() == 1


def test_it_gives_a_token_id_of_19_characters_without_i_or_o(tokenize):
    token_ids = {tokenize(cardNumber=number).json()["tokenId"] for number in distinct_cards(5)}

    assert len(token_ids) == 5
    for token_id in token_ids:
        assert TOKEN_ID.match(token_id), token_id


def test_every_link_is_absolute(created):
    hrefs = list(all_hrefs(created.json()))

    assert len(hrefs) >= 8
    for href in hrefs:
        assert href.startswith(f"{BASE}/"), href


def test_the_href_ends_in_an_opaque_reference_not_derived_from_the_card(tokenize):
    first = tokenize().json()
    other_namespace = tokenize(namespace="SHOPPER_1").json()

    references = [body["tokenPaymentInstrument"]["href"].rsplit("/", 1)[1] for body in (first, other_namespace)]
    assert references[0] != references[1]
    for reference, body in zip(references, (first, other_namespace), strict=True):
        assert len(reference) >= 22  # at least 128 random bits in URL-safe base64
        for part in (VISA, VISA[-4:], VISA[:6], body["tokenId"]):
            assert part not in reference
        decoded = base64.urlsafe_b64decode(reference + "=" * (-len(reference) % 4))
        assert VISA.encode() not in decoded
        assert VISA[-4:].encode() not in decoded
        assert VISA not in body["tokenId"]


def test_it_makes_a_default_description_when_none_is_given(tokenize):
    response = tokenize(description=None)

    assert response.status_code == 201
    description = response.json()["description"]
    assert isinstance(description, str) and 1 <= len(description) <= 255
    assert VISA not in description


def test_it_shows_the_namespace_when_one_is_set(tokenize):
    body = tokenize(namespace="SHOPPER_ID_1234567890").json()

    assert body["namespace"] == "SHOPPER_ID_1234567890"
    assert list(body)[:5] == ["tokenPaymentInstrument", "tokenId", "description", "tokenExpiryDateTime", "namespace"]


def test_it_leaves_the_namespace_out_when_none_is_set(created):
    assert "namespace" not in created.json()


def test_it_accepts_a_card_without_billing_address(tokenize):
    response = tokenize(billingAddress=None)

    assert response.status_code == 201
    assert "billingAddress" not in response.json()["paymentInstrument"]


@pytest.mark.pci("3.3.1")
@pytest.mark.pci("3.3.2")
@pytest.mark.parametrize(
    "changes, error",
    [
        ({"cardNumber": "4444333322221112"}, ("panFailedLuhnCheck", "$.paymentInstrument.cardNumber")),
        ({"cardNumber": "44443333222"}, ("stringIsTooShort", "$.paymentInstrument.cardNumber")),
        ({"cardNumber": with_check_digit("4" * 19)}, ("stringIsTooLong", "$.paymentInstrument.cardNumber")),
        (
            {"cardExpiryDate": {"month": 13, "year": 2035}},
            ("integerIsTooLarge", "$.paymentInstrument.cardExpiryDate.month"),
        ),
        (
            {"cardExpiryDate": {"month": 1, "year": 2020}},
            ("fieldHasInvalidValue", "$.paymentInstrument.cardExpiryDate"),
        ),
        ({"cardHolderName": None}, ("fieldIsMissing", "$.paymentInstrument.cardHolderName")),
        ({"type": "card/plain"}, ("fieldHasInvalidValue", "$.paymentInstrument.type")),
        ({"description": "Fish & chips"}, ("stringFailedRegexCheck", "$.description")),
        ({"description": "x" * 256}, ("stringIsTooLong", "$.description")),
        ({"namespace": "n" * 65}, ("stringIsTooLong", "$.namespace")),
        ({"schemeTransactionReference": "MCC-123!"}, ("stringFailedRegexCheck", "$.schemeTransactionReference")),
        ({"schemeTransactionReference": "a" * 57}, ("stringIsTooLong", "$.schemeTransactionReference")),
        (
            {"billingAddress": {**SHERLOCK_ADDRESS, "countryCode": "XX"}},
            ("fieldHasInvalidValue", "$.paymentInstrument.billingAddress.countryCode"),
        ),
        (
            {"billingAddress": {"address1": "221B Baker Street", "postalCode": "NW1 6XE", "countryCode": "GB"}},
            ("fieldIsMissing", "$.paymentInstrument.billingAddress.city"),
        ),
        ({"cvv": "123"}, ("unrecognizedField", "$.cvv")),
    ],
)
def test_it_refuses_a_malformed_token_request_in_the_error_shape(tokenize, changes, error):
    response = tokenize(**changes)

    assert response.status_code == 400
    assert response.json()["errorName"] == "bodyDoesNotMatchSchema"
    assert error in error_paths(response)
    assert Token.objects.count() == 0
    assert "4444333322221112" not in response.content.decode()


@pytest.mark.parametrize("body", [["card"], "4444333322221111", 5], ids=["array", "string", "number"])
def test_a_token_request_that_is_not_a_json_object_answers_400(api, body):
    response = api.post("/tokens", body, format="json")

    assert response.status_code == 400
    assert response.json()["errorName"] == "bodyDoesNotMatchSchema"
    assert ("fieldMustBeObject", "$") in error_paths(response)
    assert VISA not in response.content.decode()


def test_a_token_request_that_is_not_json_answers_400_body_is_not_json(api):
    response = api.post("/tokens", '{"paymentInstrument": ', content_type="application/json")

    assert response.status_code == 400
    assert response.json()["errorName"] == "bodyIsNotJson"


def test_a_token_request_in_another_media_type_answers_415(api):
    response = api.post("/tokens", "cardNumber=4444333322221111", content_type="application/x-www-form-urlencoded")

    assert response.status_code == 415
    assert response.json()["errorName"] == "unsupportedContentType"
    assert VISA not in response.content.decode()


# ------------------------------------------------------------------------------------------------------------
# 200 OK: the same card again
# ------------------------------------------------------------------------------------------------------------
def test_it_answers_200_when_the_same_card_is_sent_again(created, tokenize):
    again = tokenize()

    assert again.status_code == 200
    assert again.json()["tokenPaymentInstrument"] == created.json()["tokenPaymentInstrument"]
    assert again.json()["tokenId"] == created.json()["tokenId"]
    assert "conflicts" not in again.json()
    assert "tokens:conflicts" not in again.json()["_links"]
    assert Token.objects.count() == 1


def test_it_answers_200_and_keeps_the_stored_billing_address_when_the_request_has_none(
    created, tokenize, api, token_path
):
    again = tokenize(billingAddress=None)

    assert again.status_code == 200
    assert again.json()["tokenId"] == created.json()["tokenId"]
    assert again.json()["paymentInstrument"]["billingAddress"] == SHERLOCK_ADDRESS
    assert api.get(token_path).json()["paymentInstrument"]["billingAddress"] == SHERLOCK_ADDRESS


def without(address: dict, *lines: str) -> dict:
    return {name: value for name, value in address.items() if name not in lines}


@pytest.mark.parametrize(
    "left_out",
    [("address2",), ("address3",), ("state",), ("address2", "address3", "state")],
    ids=["address2", "address3", "state", "all three"],
)
def test_it_answers_200_and_keeps_the_stored_optional_address_lines_the_request_leaves_out(
    created, tokenize, api, token_path, left_out
):
    again = tokenize(billingAddress=without(SHERLOCK_ADDRESS, *left_out))

    assert again.status_code == 200
    assert "conflicts" not in again.json()
    assert again.json()["paymentInstrument"]["billingAddress"] == SHERLOCK_ADDRESS
    assert api.get(token_path).json()["paymentInstrument"]["billingAddress"] == SHERLOCK_ADDRESS


@pytest.mark.parametrize(
    "stored, requested",
    [
        (without(SHERLOCK_ADDRESS, "address2"), SHERLOCK_ADDRESS),
        (SHERLOCK_ADDRESS, {**SHERLOCK_ADDRESS, "address2": "Regent's Park"}),
    ],
    ids=["a line the token lacks", "a line the token has otherwise"],
)
def test_an_optional_address_line_the_request_brings_differently_is_a_conflict(tokenize, stored, requested):
    assert tokenize(billingAddress=stored).status_code == 201

    response = tokenize(billingAddress=requested)

    assert response.status_code == 409
    assert response.json()["conflicts"]["paymentInstrument"] == {"billingAddress": requested}
    assert response.json()["paymentInstrument"]["billingAddress"] == stored


def test_a_conflict_at_the_same_address_keeps_the_optional_lines_the_request_left_out(
    created, tokenize, api, token_path
):
    requested = without({**SHERLOCK_ADDRESS, "address2": "Regent's Park"}, "state")

    response = tokenize(billingAddress=requested)

    assert response.status_code == 409
    kept_state = {**SHERLOCK_ADDRESS, "address2": "Regent's Park"}
    assert response.json()["conflicts"]["paymentInstrument"] == {"billingAddress": kept_state}
    assert api.put(f"{token_path}/conflicts").status_code == 204
    assert api.get(token_path).json()["paymentInstrument"]["billingAddress"] == kept_state


def test_a_conflict_with_another_address_holds_that_address_as_sent(created, tokenize, api, token_path):
    # Another place: the stored address2, address3 and state are not lines of it.
    paris = {"address1": "10 Rue de Rivoli", "postalCode": "75001", "city": "Paris", "countryCode": "FR"}

    response = tokenize(billingAddress=paris)

    assert response.json()["conflicts"]["paymentInstrument"] == {"billingAddress": paris}
    api.put(f"{token_path}/conflicts")
    assert api.get(token_path).json()["paymentInstrument"]["billingAddress"] == paris


def test_it_answers_200_when_only_the_description_differs_and_keeps_the_stored_one(created, tokenize, api, token_path):
    again = tokenize(description="Another description")

    assert again.status_code == 200
    assert again.json()["description"] == "Test Token Description"
    assert api.get(token_path).json()["description"] == "Test Token Description"


# ------------------------------------------------------------------------------------------------------------
# 409 Conflict
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "changes, conflicting",
    [
        ({"cardHolderName": "Mycroft Holmes"}, {"cardHolderName": "Mycroft Holmes"}),
        ({"cardExpiryDate": {"month": 6, "year": 2035}}, {"cardExpiryDate": {"month": 6, "year": 2035}}),
        ({"cardExpiryDate": {"month": 5, "year": 2036}}, {"cardExpiryDate": {"month": 5, "year": 2036}}),
        ({"billingAddress": MYCROFT_ADDRESS}, {"billingAddress": MYCROFT_ADDRESS}),
    ],
    ids=["cardHolderName", "expiry-month", "expiry-year", "billingAddress"],
)
def test_it_answers_409_and_keeps_the_stored_data_when_a_compared_field_differs(
    created, tokenize, api, token_path, changes, conflicting
):
    stored = created.json()["paymentInstrument"]

    response = tokenize(**changes)

    assert response.status_code == 409
    body = response.json()
    assert body["tokenId"] == created.json()["tokenId"]
    assert body["tokenPaymentInstrument"] == created.json()["tokenPaymentInstrument"]
    assert body["paymentInstrument"] == stored
    assert body["conflicts"]["paymentInstrument"] == conflicting
    assert close_to(instant(body["conflicts"]["conflictsExpiryDateTime"]), timezone.now() + timedelta(minutes=30))
    assert body["_links"]["tokens:conflicts"]["href"] == f"{BASE}{token_path}/conflicts"
    assert api.get(token_path).json()["paymentInstrument"] == stored


def test_the_conflict_lists_every_differing_field_and_nothing_else(created, tokenize):
    response = tokenize(cardHolderName="Mycroft Holmes", billingAddress=MYCROFT_ADDRESS)

    assert response.status_code == 409
    assert response.json()["conflicts"]["paymentInstrument"] == {
        "cardHolderName": "Mycroft Holmes",
        "billingAddress": MYCROFT_ADDRESS,
    }


def test_a_conflict_answer_follows_the_seed_shape(created, tokenize):
    body = tokenize(cardHolderName="Mycroft Holmes").json()

    assert list(body) == [
        "tokenPaymentInstrument",
        "tokenId",
        "description",
        "tokenExpiryDateTime",
        "paymentInstrument",
        "conflicts",
        "_links",
    ]
    assert list(body["conflicts"]) == ["paymentInstrument", "conflictsExpiryDateTime"]
    assert set(body["_links"]) == TOKEN_LINK_RELS | {"tokens:conflicts", "curies"}


def test_the_token_shows_a_conflicts_link_while_a_conflict_is_pending(created, tokenize, api, token_path):
    tokenize(cardHolderName="Mycroft Holmes")

    links = api.get(token_path).json()["_links"]

    assert links["tokens:conflicts"] == {"href": f"{BASE}{token_path}/conflicts"}


# ------------------------------------------------------------------------------------------------------------
# schemeTransactionReference
# ------------------------------------------------------------------------------------------------------------
def test_it_stores_a_scheme_transaction_reference_silently_when_the_token_has_none(created, tokenize):
    response = tokenize(schemeTransactionReference="MCC123456789")

    assert response.status_code == 200
    assert "conflicts" not in response.json()
    assert token_row(created).scheme_transaction_reference == "MCC123456789"


def test_the_same_scheme_transaction_reference_again_answers_200(tokenize):
    created = tokenize(schemeTransactionReference="ABC123")

    again = tokenize(schemeTransactionReference="ABC123")
    without = tokenize()

    assert (again.status_code, without.status_code) == (200, 200)
    assert token_row(created).scheme_transaction_reference == "ABC123"


def test_a_different_scheme_transaction_reference_is_a_conflict_and_the_stored_one_stays(tokenize, api):
    created = tokenize(schemeTransactionReference="ABC123")
    token_path = path_of(created.json()["tokenPaymentInstrument"]["href"])

    response = tokenize(schemeTransactionReference="XYZ999")

    assert response.status_code == 409
    conflicts = response.json()["conflicts"]
    assert list(conflicts) == ["schemeTransactionReference", "conflictsExpiryDateTime"]
    assert conflicts["schemeTransactionReference"] == "XYZ999"
    assert response.json()["_links"]["tokens:conflicts"]["href"] == f"{BASE}{token_path}/conflicts"
    assert response.json()["paymentInstrument"] == created.json()["paymentInstrument"]
    assert token_row(created).scheme_transaction_reference == "ABC123"


def test_a_different_scheme_transaction_reference_is_listed_beside_the_other_conflicts(tokenize):
    created = tokenize(schemeTransactionReference="FIRST123")

    response = tokenize(cardHolderName="Mycroft Holmes", schemeTransactionReference="SECOND456")

    assert response.status_code == 409
    conflicts = response.json()["conflicts"]
    assert list(conflicts) == ["paymentInstrument", "schemeTransactionReference", "conflictsExpiryDateTime"]
    assert conflicts["paymentInstrument"] == {"cardHolderName": "Mycroft Holmes"}
    assert conflicts["schemeTransactionReference"] == "SECOND456"
    assert token_row(created).scheme_transaction_reference == "FIRST123"


def test_a_conflict_still_fills_an_empty_scheme_transaction_reference(created, tokenize):
    response = tokenize(cardHolderName="Mycroft Holmes", schemeTransactionReference="MCC123456789")

    assert response.status_code == 409
    assert "schemeTransactionReference" not in str(response.json()["conflicts"])
    assert token_row(created).scheme_transaction_reference == "MCC123456789"


# ------------------------------------------------------------------------------------------------------------
# The conflicts resource
# ------------------------------------------------------------------------------------------------------------
def test_get_conflicts_shows_the_stored_and_the_pending_data(created, tokenize, api, token_path):
    conflict = tokenize(cardHolderName="Mycroft Holmes", cardExpiryDate={"month": 7, "year": 2037}).json()

    response = api.get(f"{token_path}/conflicts")

    assert response.status_code == 200
    body = response.json()
    assert body["paymentInstrument"] == created.json()["paymentInstrument"]
    assert body["conflicts"]["paymentInstrument"] == {
        "cardHolderName": "Mycroft Holmes",
        "cardExpiryDate": {"month": 7, "year": 2037},
    }
    assert body["conflicts"]["conflictsExpiryDateTime"] == conflict["conflicts"]["conflictsExpiryDateTime"]
    for link in all_hrefs(body):
        assert link.startswith(f"{BASE}/")


def test_put_conflicts_applies_every_pending_value(created, tokenize, api, token_path):
    tokenize(cardHolderName="Mycroft Holmes", cardExpiryDate={"month": 7, "year": 2037}, billingAddress=MYCROFT_ADDRESS)

    response = api.put(f"{token_path}/conflicts")

    assert response.status_code == 204
    token = api.get(token_path).json()
    assert token["paymentInstrument"]["cardHolderName"] == "Mycroft Holmes"
    assert token["paymentInstrument"]["cardExpiryDate"] == {"month": 7, "year": 2037}
    assert token["paymentInstrument"]["billingAddress"] == MYCROFT_ADDRESS
    assert "tokens:conflicts" not in token["_links"]
    assert api.get(f"{token_path}/conflicts").status_code == 404
    assert (
        tokenize(
            cardHolderName="Mycroft Holmes", cardExpiryDate={"month": 7, "year": 2037}, billingAddress=MYCROFT_ADDRESS
        ).status_code
        == 200
    )


def test_put_conflicts_keeps_the_stored_values_that_did_not_conflict(created, tokenize, api, token_path):
    tokenize(cardHolderName="Mycroft Holmes")

    api.put(f"{token_path}/conflicts")

    card = api.get(token_path).json()["paymentInstrument"]
    assert card["cardHolderName"] == "Mycroft Holmes"
    assert card["cardExpiryDate"] == {"month": 5, "year": 2035}
    assert card["billingAddress"] == SHERLOCK_ADDRESS


def test_get_conflicts_shows_a_pending_scheme_transaction_reference(tokenize, api):
    created = tokenize(schemeTransactionReference="ABC123")
    token_path = path_of(created.json()["tokenPaymentInstrument"]["href"])
    tokenize(schemeTransactionReference="XYZ999")

    body = api.get(f"{token_path}/conflicts").json()

    assert body["paymentInstrument"] == created.json()["paymentInstrument"]
    assert "paymentInstrument" not in body["conflicts"]
    assert body["conflicts"]["schemeTransactionReference"] == "XYZ999"


def test_put_conflicts_applies_a_pending_scheme_transaction_reference(tokenize, api):
    created = tokenize(schemeTransactionReference="ABC123")
    token_path = path_of(created.json()["tokenPaymentInstrument"]["href"])
    tokenize(cardHolderName="Mycroft Holmes", schemeTransactionReference="XYZ999")

    response = api.put(f"{token_path}/conflicts")

    assert response.status_code == 204
    assert tokenize(cardHolderName="Mycroft Holmes", schemeTransactionReference="XYZ999").status_code == 200
    assert tokenize(cardHolderName="Mycroft Holmes", schemeTransactionReference="ABC123").status_code == 409
    assert token_row(created).scheme_transaction_reference == "XYZ999"


def test_conflicts_answer_404_when_none_is_pending(created, api, token_path):
    response = api.get(f"{token_path}/conflicts")

    assert response.status_code == 404
    assert response.json()["errorName"] == "resourceNotFound"
    assert api.put(f"{token_path}/conflicts").status_code == 404


def test_a_conflict_answers_404_after_its_expiry(created, tokenize, api, token_path):
    tokenize(cardHolderName="Mycroft Holmes")
    TokenConflict.objects.filter(token=token_row(created)).update(expires_at=timezone.now() - timedelta(seconds=1))

    assert api.get(f"{token_path}/conflicts").status_code == 404
    assert api.put(f"{token_path}/conflicts").status_code == 404
    token = api.get(token_path).json()
    assert "tokens:conflicts" not in token["_links"]
    assert token["paymentInstrument"]["cardHolderName"] == "Sherlock Holmes"


def test_the_conflict_lifetime_follows_the_setting(created, tokenize, settings):
    settings.TOKEN_CONFLICT_TTL_SECONDS = 120

    # The clock is read around the request, however long it takes; the answer cuts the time to whole seconds.
    before = timezone.now()
    response = tokenize(cardHolderName="Mycroft Holmes")
    after = timezone.now()

    expiry = instant(response.json()["conflicts"]["conflictsExpiryDateTime"])
    ttl = timedelta(seconds=120)
    assert before + ttl - timedelta(seconds=1) <= expiry <= after + ttl, (before, expiry, after)


def test_a_newer_conflict_replaces_the_pending_one(created, tokenize, api, token_path):
    tokenize(cardHolderName="Mycroft Holmes")
    tokenize(cardHolderName="John Watson")

    body = api.get(f"{token_path}/conflicts").json()

    assert body["conflicts"]["paymentInstrument"] == {"cardHolderName": "John Watson"}


# ------------------------------------------------------------------------------------------------------------
# PUT updates
# ------------------------------------------------------------------------------------------------------------
def test_put_description_replaces_it(created, api, token_path):
    response = api.put(f"{token_path}/description", "Sherlock's card", format="json")

    assert response.status_code == 204
    assert api.get(token_path).json()["description"] == "Sherlock's card"


def test_put_card_holder_name_replaces_it(created, api, token_path):
    response = api.put(f"{token_path}/cardHolderName", "Mrs Hudson", format="json")

    assert response.status_code == 204
    assert api.get(token_path).json()["paymentInstrument"]["cardHolderName"] == "Mrs Hudson"


def test_put_scheme_transaction_reference_replaces_it(created, api, token_path):
    response = api.put(f"{token_path}/schemeTransactionReference", "MCC 987654", format="json")

    assert response.status_code == 204
    assert token_row(created).scheme_transaction_reference == "MCC 987654"


def test_put_card_expiry_date_replaces_it(created, api, token_path):
    response = api.put(f"{token_path}/cardExpiryDate", {"month": 11, "year": 2038}, format="json")

    assert response.status_code == 204
    assert api.get(token_path).json()["paymentInstrument"]["cardExpiryDate"] == {"month": 11, "year": 2038}


def test_put_billing_address_replaces_it(created, api, token_path):
    response = api.put(f"{token_path}/billingAddress", MYCROFT_ADDRESS, format="json")

    assert response.status_code == 204
    assert api.get(token_path).json()["paymentInstrument"]["billingAddress"] == MYCROFT_ADDRESS


def test_an_updated_value_is_what_a_later_request_is_compared_with(created, api, token_path, tokenize):
    api.put(f"{token_path}/cardHolderName", "Mrs Hudson", format="json")

    assert tokenize(cardHolderName="Mrs Hudson").status_code == 200
    assert tokenize(cardHolderName="Sherlock Holmes").status_code == 409


@pytest.mark.parametrize(
    "detail, value, error",
    [
        ("description", "Fish & chips", ("stringFailedRegexCheck", "$")),
        ("description", "<b>bold</b>", ("stringFailedRegexCheck", "$")),
        ("description", "", ("fieldIsEmpty", "$")),
        ("description", "x" * 256, ("stringIsTooLong", "$")),
        ("description", 5, ("fieldMustBeString", "$")),
        ("description", {"description": "x"}, ("fieldMustBeString", "$")),
        ("cardHolderName", "", ("fieldIsEmpty", "$")),
        ("cardHolderName", ["Mrs Hudson"], ("fieldMustBeString", "$")),
        ("schemeTransactionReference", "MCC-1!", ("stringFailedRegexCheck", "$")),
        ("schemeTransactionReference", "a" * 57, ("stringIsTooLong", "$")),
        ("cardExpiryDate", {"month": 13, "year": 2035}, ("integerIsTooLarge", "$.month")),
        ("cardExpiryDate", {"month": 0, "year": 2035}, ("integerIsTooSmall", "$.month")),
        ("cardExpiryDate", {"month": "5", "year": 2035}, ("fieldMustBeInteger", "$.month")),
        ("cardExpiryDate", {"month": 5}, ("fieldIsMissing", "$.year")),
        ("cardExpiryDate", {"month": 1, "year": 2020}, ("fieldHasInvalidValue", "$")),
        ("cardExpiryDate", {"month": 5, "year": 2035, "day": 1}, ("unrecognizedField", "$.day")),
        ("cardExpiryDate", "05/35", ("fieldMustBeObject", "$")),
        ("cardExpiryDate", [5, 2035], ("fieldMustBeObject", "$")),
        ("billingAddress", "221B Baker Street", ("fieldMustBeObject", "$")),
        ("billingAddress", {**MYCROFT_ADDRESS, "countryCode": "XX"}, ("fieldHasInvalidValue", "$.countryCode")),
        ("billingAddress", {k: v for k, v in MYCROFT_ADDRESS.items() if k != "city"}, ("fieldIsMissing", "$.city")),
        ("billingAddress", {**MYCROFT_ADDRESS, "country": "UK"}, ("unrecognizedField", "$.country")),
    ],
)
def test_a_bad_update_answers_400_in_the_error_shape_and_changes_nothing(
    created, api, token_path, detail, value, error
):
    before = api.get(token_path).json()

    response = api.put(f"{token_path}/{detail}", value, format="json")

    assert response.status_code == 400
    body = response.json()
    assert body["errorName"] == "bodyDoesNotMatchSchema"
    assert isinstance(body["message"], str) and body["message"]
    assert error in error_paths(response)
    assert api.get(token_path).json() == before


def test_an_update_without_a_body_answers_400(created, api, token_path):
    response = api.put(f"{token_path}/description", content_type="application/json")

    assert response.status_code == 400
    assert response.json()["errorName"] == "bodyIsEmpty"


# ------------------------------------------------------------------------------------------------------------
# Namespaces
# ------------------------------------------------------------------------------------------------------------
def test_the_same_card_in_two_namespaces_gets_two_tokens(tokenize):
    first = tokenize(namespace="SHOPPER_1")
    second = tokenize(namespace="SHOPPER_2")

    assert (first.status_code, second.status_code) == (201, 201)
    assert first.json()["tokenId"] != second.json()["tokenId"]
    assert first.json()["tokenPaymentInstrument"]["href"] != second.json()["tokenPaymentInstrument"]["href"]
    assert (first.json()["namespace"], second.json()["namespace"]) == ("SHOPPER_1", "SHOPPER_2")


def test_the_same_card_with_and_without_a_namespace_gets_two_tokens(created, tokenize):
    in_namespace = tokenize(namespace="SHOPPER_1")

    assert in_namespace.status_code == 201
    assert in_namespace.json()["tokenId"] != created.json()["tokenId"]


def test_the_same_card_in_the_same_namespace_answers_200(tokenize):
    first = tokenize(namespace="SHOPPER_1")
    again = tokenize(namespace="SHOPPER_1")

    assert again.status_code == 200
    assert again.json()["tokenId"] == first.json()["tokenId"]


def test_a_namespace_holds_16_cards_and_refuses_the_17th(tokenize, api):
    numbers = distinct_cards(17)
    for number in numbers[:16]:
        assert tokenize(cardNumber=number, namespace="FAMILY").status_code == 201

    refused = tokenize(cardNumber=numbers[16], namespace="FAMILY")

    assert refused.status_code == 400
    assert refused.json()["errorName"] == "namespaceCardLimitReached"
    assert isinstance(refused.json()["message"], str)
    assert numbers[16] not in refused.content.decode()
    assert Token.objects.filter(namespace__name="FAMILY", deleted_at__isnull=True).count() == 16
    # A card already in the full namespace is still found, and the 17th fits elsewhere.
    assert tokenize(cardNumber=numbers[0], namespace="FAMILY").status_code == 200
    assert tokenize(cardNumber=numbers[16], namespace="OTHER").status_code == 201
    assert tokenize(cardNumber=numbers[16]).status_code == 201


def test_deleting_a_card_makes_room_in_a_full_namespace(tokenize, api):
    numbers = distinct_cards(17)
    hrefs = [tokenize(cardNumber=n, namespace="FAMILY").json()["tokenPaymentInstrument"]["href"] for n in numbers[:16]]
    assert api.delete(path_of(hrefs[0])).status_code == 204

    assert tokenize(cardNumber=numbers[16], namespace="FAMILY").status_code == 201


def test_listing_a_namespace_shows_its_tokens_in_pages(tokenize, api):
    token_ids = {tokenize(cardNumber=n, namespace="SHOPPER_1").json()["tokenId"] for n in distinct_cards(3)}

    first = api.get("/tokens", {"namespace": "SHOPPER_1", "pageSize": 2})

    assert first.status_code == 200
    assert first["Content-Type"].startswith("application/hal+json")
    page_one = first.json()["_embedded"]["tokens"]
    assert len(page_one) == 2
    next_href = first.json()["_links"]["next"]["href"]
    assert next_href.startswith(f"{BASE}/tokens?")
    second = api.get(path_of(next_href))
    page_two = second.json()["_embedded"]["tokens"]
    assert len(page_two) == 1
    assert "next" not in second.json()["_links"]
    assert {t["tokenId"] for t in page_one + page_two} == token_ids
    for token in page_one + page_two:
        assert token["namespace"] == "SHOPPER_1"
        assert token["tokenPaymentInstrument"]["href"].startswith(f"{BASE}/tokens/")
        assert token["paymentInstrument"]["type"] == "card/masked"


def test_listing_a_namespace_by_page_number(tokenize, api):
    token_ids = [tokenize(cardNumber=n, namespace="SHOPPER_1").json()["tokenId"] for n in distinct_cards(3)]

    pages = [api.get("/tokens", {"namespace": "SHOPPER_1", "pageSize": 1, "page": page}).json() for page in (1, 2, 3)]

    listed = [page["_embedded"]["tokens"][0]["tokenId"] for page in pages]
    assert sorted(listed) == sorted(token_ids)
    assert "next" in pages[0]["_links"] and "next" not in pages[2]["_links"]


def test_listing_a_namespace_leaves_out_other_namespaces_and_tokens_without_one(tokenize, api):
    mine = tokenize(namespace="SHOPPER_1").json()["tokenId"]
    tokenize(namespace="SHOPPER_2")
    tokenize()

    listed = api.get("/tokens", {"namespace": "SHOPPER_1"}).json()["_embedded"]["tokens"]

    assert [token["tokenId"] for token in listed] == [mine]


def test_listing_an_unknown_namespace_is_empty(api):
    response = api.get("/tokens", {"namespace": "NOBODY"})

    assert response.status_code == 200
    assert response.json()["_embedded"]["tokens"] == []


def test_a_token_id_query_finds_that_token(created, api):
    response = api.get("/tokens", {"tokenId": created.json()["tokenId"]})

    assert response.status_code == 200
    assert response.json()["tokenPaymentInstrument"] == created.json()["tokenPaymentInstrument"]
    assert response.json()["paymentInstrument"] == created.json()["paymentInstrument"]


def test_a_token_id_query_for_an_unknown_token_answers_404(api):
    response = api.get("/tokens", {"tokenId": "0000000000000000000"})

    assert response.status_code == 404
    assert response.json()["errorName"] == "resourceNotFound"


# ------------------------------------------------------------------------------------------------------------
# GET and DELETE
# ------------------------------------------------------------------------------------------------------------
def test_get_href_returns_the_token(created, api, token_path):
    response = api.get(token_path)

    assert response.status_code == 200
    assert response.json() == created.json()


def test_an_unknown_href_answers_404(api):
    response = api.get("/tokens/not-a-real-reference-at-all")

    assert response.status_code == 404
    assert response.json()["errorName"] == "resourceNotFound"


def test_delete_answers_204_and_the_token_then_answers_404(created, api, token_path):
    response = api.delete(token_path)

    assert response.status_code == 204
    gone = api.get(token_path)
    assert gone.status_code == 404
    assert gone.json()["errorName"] == "resourceNotFound"
    assert api.get("/tokens", {"tokenId": created.json()["tokenId"]}).status_code == 404
    assert api.put(f"{token_path}/description", "x", format="json").status_code == 404
    assert api.delete(token_path).status_code == 404


def test_tokenizing_a_deleted_card_again_gives_a_new_token(created, api, token_path, tokenize):
    api.delete(token_path)

    again = tokenize()

    assert again.status_code == 201
    assert again.json()["tokenId"] != created.json()["tokenId"]
    assert again.json()["tokenPaymentInstrument"]["href"] != created.json()["tokenPaymentInstrument"]["href"]
    assert api.get(token_path).status_code == 404


@pytest.mark.pci("3.2.1")
def test_a_deleted_token_leaves_a_tombstone_without_card_data(created, api, token_path):
    api.delete(token_path)

    row = Token.objects.get(token_id=created.json()["tokenId"])
    assert row.deleted_at is not None
    assert row.pan_ciphertext is None
    assert row.fingerprint is None
    assert row.token_id == created.json()["tokenId"]
    assert row.last_four == "1111"
    assert row.card_holder_name == ""
    assert row.billing_address is None


def test_deleting_a_token_drops_its_pending_conflict(created, tokenize, api, token_path):
    tokenize(cardHolderName="Mycroft Holmes")

    api.delete(token_path)

    assert not TokenConflict.objects.filter(token__token_id=created.json()["tokenId"]).exists()


# ------------------------------------------------------------------------------------------------------------
# Detokenize
# ------------------------------------------------------------------------------------------------------------
def test_detokenize_returns_the_full_card_to_a_key_with_the_scope(created, carol_api, token_path):
    response = carol_api.post(f"{token_path}/detokenize")

    assert response.status_code == 200
    body = response.json()
    assert body["tokenId"] == created.json()["tokenId"]
    assert body["paymentInstrument"]["cardNumber"] == VISA
    assert body["paymentInstrument"]["cardHolderName"] == "Sherlock Holmes"
    assert body["paymentInstrument"]["cardExpiryDate"] == {"month": 5, "year": 2035}
    assert "no-store" in response["Cache-Control"]


@pytest.mark.pci("7.2.1")
def test_detokenize_is_refused_to_a_key_without_the_scope(created, api, token_path):
    response = api.post(f"{token_path}/detokenize")

    assert response.status_code == 403
    assert response.json()["errorName"] == "accessDenied"
    assert VISA not in response.content.decode()
    assert not AuditLog.objects.filter(action="token.detokenize", result=AuditLog.SUCCESS).exists()


def test_detokenize_writes_an_audit_row(alice, created, carol_api, token_path):
    carol_api.post(f"{token_path}/detokenize")

    row = AuditLog.objects.get(action="token.detokenize")
    assert row.merchant == alice
    assert row.object_id == created.json()["tokenId"]
    assert row.result == AuditLog.SUCCESS
    assert row.actor
    assert VISA not in str(row.detail) and VISA not in row.actor


def test_detokenize_of_a_deleted_token_answers_404(created, api, carol_api, token_path):
    api.delete(token_path)

    response = carol_api.post(f"{token_path}/detokenize")

    assert response.status_code == 404
    assert VISA not in response.content.decode()


# ------------------------------------------------------------------------------------------------------------
# Expiry
# ------------------------------------------------------------------------------------------------------------
def test_a_token_lives_7_days_by_default_in_try(tokenize, settings):
    settings.TOKENS_ENVIRONMENT = "try"

    expiry = instant(tokenize().json()["tokenExpiryDateTime"])

    assert close_to(expiry, timezone.now() + timedelta(days=7))


def test_a_token_lives_about_4_years_by_default_in_live(tokenize, settings):
    settings.TOKENS_ENVIRONMENT = "live"
    now = timezone.now()

    expiry = instant(tokenize().json()["tokenExpiryDateTime"])

    assert now + timedelta(days=4 * 365) - timedelta(minutes=1) <= expiry <= now + timedelta(days=4 * 366)


def test_an_explicit_future_expiry_is_used(tokenize):
    expiry = (timezone.now() + timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ")  # within the lifetime (7 days here)
    response = tokenize(tokenExpiryDateTime=expiry)

    assert response.status_code == 201
    assert response.json()["tokenExpiryDateTime"] == expiry


def test_an_expiry_in_the_past_is_refused(tokenize):
    response = tokenize(tokenExpiryDateTime="2020-01-01T00:00:00Z")

    assert response.status_code == 400
    assert response.json()["errorName"] == "bodyDoesNotMatchSchema"
    assert [path for _, path in error_paths(response)] == ["$.tokenExpiryDateTime"]
    assert Token.objects.count() == 0


def test_an_expiry_that_is_not_a_date_is_refused(tokenize):
    response = tokenize(tokenExpiryDateTime="next tuesday")

    assert response.status_code == 400
    assert ("dateHasInvalidFormat", "$.tokenExpiryDateTime") in error_paths(response)


def test_an_expired_token_answers_404(created, api, carol_api, token_path):
    Token.objects.filter(token_id=created.json()["tokenId"]).update(expires_at=timezone.now() - timedelta(seconds=1))

    assert api.get(token_path).status_code == 404
    assert api.get(token_path).json()["errorName"] == "resourceNotFound"
    assert api.get("/tokens", {"tokenId": created.json()["tokenId"]}).status_code == 404
    assert carol_api.post(f"{token_path}/detokenize").status_code == 404
    assert api.put(f"{token_path}/description", "x", format="json").status_code == 404


def test_an_expired_token_is_left_out_of_its_namespace_listing(tokenize, api):
    expired = tokenize(namespace="SHOPPER_1").json()["tokenId"]
    Token.objects.filter(token_id=expired).update(expires_at=timezone.now() - timedelta(seconds=1))

    listed = api.get("/tokens", {"namespace": "SHOPPER_1"}).json()["_embedded"]["tokens"]

    assert listed == []


def test_tokenizing_an_expired_card_again_gives_a_new_token(created, tokenize, token_path, api):
    Token.objects.filter(token_id=created.json()["tokenId"]).update(expires_at=timezone.now() - timedelta(seconds=1))

    again = tokenize()

    assert again.status_code == 201
    assert again.json()["tokenId"] != created.json()["tokenId"]
    assert api.get(path_of(again.json()["tokenPaymentInstrument"]["href"])).status_code == 200


def lived(response, *, for_: timedelta, left: timedelta) -> datetime:
    """Make the token of ``response`` one created ``for_`` ago that expires in ``left``; returns its expiry."""
    now = timezone.now().replace(microsecond=0)
    Token.objects.filter(token_id=response.json()["tokenId"]).update(created_at=now - for_, expires_at=now + left)
    return now + left


def expiry_seen_by_alice(api, response) -> datetime:
    return instant(api.get(path_of(response.json()["tokenPaymentInstrument"]["href"])).json()["tokenExpiryDateTime"])


def test_detokenizing_in_try_never_extends_the_expiry(created, carol_api, api, token_path, settings):
    settings.TOKENS_ENVIRONMENT = "try"
    old = lived(created, for_=timedelta(days=6), left=timedelta(days=1))

    response = carol_api.post(f"{token_path}/detokenize")

    assert response.status_code == 200
    assert instant(response.json()["tokenExpiryDateTime"]) == old
    assert expiry_seen_by_alice(api, created) == old
    assert not ExpiryExtension.objects.exists()


def test_detokenizing_in_live_with_less_than_half_its_lifetime_left_extends_by_4_years(
    tokenize, carol_api, api, settings
):
    settings.TOKENS_ENVIRONMENT = "live"
    created = tokenize()
    old = lived(created, for_=timedelta(days=3 * 365), left=timedelta(days=365))

    response = carol_api.post(f"{path_of(created.json()['tokenPaymentInstrument']['href'])}/detokenize")

    new = instant(response.json()["tokenExpiryDateTime"])
    assert timedelta(days=4 * 365) <= new - old <= timedelta(days=4 * 366)
    assert expiry_seen_by_alice(api, created) == new
    extension = ExpiryExtension.objects.get(token__token_id=created.json()["tokenId"])
    assert (extension.old_expires_at, extension.new_expires_at) == (old, new)
    assert extension.reason


def test_detokenizing_in_live_with_more_than_half_its_lifetime_left_does_not_extend(tokenize, carol_api, api, settings):
    settings.TOKENS_ENVIRONMENT = "live"
    created = tokenize()
    before = expiry_seen_by_alice(api, created)

    carol_api.post(f"{path_of(created.json()['tokenPaymentInstrument']['href'])}/detokenize")

    assert expiry_seen_by_alice(api, created) == before
    assert not ExpiryExtension.objects.exists()


def test_a_one_year_token_is_not_extended_by_a_use_on_its_first_day_in_live(tokenize, carol_api, api, settings):
    # Less than half of the 4-year default is left, but nearly all of the token's own year.
    settings.TOKENS_ENVIRONMENT = "live"
    one_year = (timezone.now() + timedelta(days=365)).replace(microsecond=0)
    created = tokenize(tokenExpiryDateTime=one_year.strftime("%Y-%m-%dT%H:%M:%SZ"))

    response = carol_api.post(f"{path_of(created.json()['tokenPaymentInstrument']['href'])}/detokenize")

    assert response.status_code == 200
    assert instant(response.json()["tokenExpiryDateTime"]) == one_year
    assert expiry_seen_by_alice(api, created) == one_year


def test_a_one_year_token_is_extended_by_a_use_once_less_than_half_its_year_is_left_in_live(
    tokenize, carol_api, settings
):
    settings.TOKENS_ENVIRONMENT = "live"
    created = tokenize()
    old = lived(created, for_=timedelta(days=200), left=timedelta(days=165))

    response = carol_api.post(f"{path_of(created.json()['tokenPaymentInstrument']['href'])}/detokenize")

    assert timedelta(days=4 * 365) <= instant(response.json()["tokenExpiryDateTime"]) - old <= timedelta(days=4 * 366)


def test_a_ten_year_token_is_extended_by_a_use_past_its_own_half_life_in_live(tokenize, carol_api, settings):
    # Four years left: more than half of the default lifetime, less than half of the token's own ten years.
    settings.TOKENS_ENVIRONMENT = "live"
    created = tokenize()
    old = lived(created, for_=timedelta(days=6 * 365), left=timedelta(days=4 * 365))

    response = carol_api.post(f"{path_of(created.json()['tokenPaymentInstrument']['href'])}/detokenize")

    assert timedelta(days=4 * 365) <= instant(response.json()["tokenExpiryDateTime"]) - old <= timedelta(days=4 * 366)


# ------------------------------------------------------------------------------------------------------------
# Purge
# ------------------------------------------------------------------------------------------------------------
def _one_expired_one_live(tokenize):
    expired, live = (tokenize(cardNumber=n).json() for n in (VISA, VISA_2))
    Token.objects.filter(token_id=expired["tokenId"]).update(expires_at=timezone.now() - timedelta(minutes=1))
    return expired, live


def _assert_purged(expired, live, api):
    gone = Token.objects.get(token_id=expired["tokenId"])
    assert gone.deleted_at is not None
    assert gone.pan_ciphertext is None and gone.fingerprint is None
    assert gone.last_four == "1111"
    kept = Token.objects.get(token_id=live["tokenId"])
    assert kept.deleted_at is None and kept.pan_ciphertext is not None
    assert api.get(path_of(live["tokenPaymentInstrument"]["href"])).status_code == 200


@pytest.mark.pci("3.2.1")
def test_the_purge_tombstones_expired_tokens_only(tokenize, api):
    expired, live = _one_expired_one_live(tokenize)

    purged = services.tokens_purge_expired()

    assert purged == 1
    _assert_purged(expired, live, api)
    assert services.tokens_purge_expired() == 0


@pytest.mark.pci("3.2.1")
def test_the_purge_expired_command_tombstones_expired_tokens_only(tokenize, api):
    expired, live = _one_expired_one_live(tokenize)

    call_command("purge_expired", stdout=io.StringIO())

    _assert_purged(expired, live, api)


@pytest.mark.pci("10.5.1")
def test_the_purge_destroys_card_data_and_keeps_the_audit_history_however_old(tokenize, api, carol_api):
    expired, _ = _one_expired_one_live(tokenize)
    carol_api.post(f"{path_of(expired['tokenPaymentInstrument']['href'])}/detokenize")
    AuditLog.objects.update(created_at=timezone.now() - timedelta(days=400))  # older than a year
    history = list(AuditLog.objects.values_list("pk", "action", "result"))
    assert history

    call_command("purge_expired", stdout=io.StringIO())

    assert list(AuditLog.objects.filter(pk__in=[pk for pk, _, _ in history]).values_list("pk", "action", "result")) == (
        history
    )


# ------------------------------------------------------------------------------------------------------------
# Brands and masking
# ------------------------------------------------------------------------------------------------------------
UNKNOWN_BRAND = with_check_digit("9" + "0" * 14)


@pytest.mark.pci("3.4.1")
@pytest.mark.parametrize(
    "number, brand",
    [
        (VISA, "VISA"),
        (VISA_2, "VISA"),
        (MASTERCARD, "MASTERCARD"),
        (MASTERCARD_2_SERIES, "MASTERCARD"),
        (AMEX, "AMEX"),
        (DISCOVER, "DISCOVER"),
        (DINERS, "DINERS"),
        (JCB, "JCB"),
        (UNIONPAY, "UNIONPAY"),
        (MAESTRO, "MAESTRO"),
        (UNKNOWN_BRAND, "UNKNOWN"),
    ],
)
def test_it_detects_the_brand_and_masks_the_number(tokenize, number, brand):
    assert luhn_valid(number)

    response = tokenize(cardNumber=number)

    assert response.status_code == 201
    card = response.json()["paymentInstrument"]
    assert card["brand"] == brand
    assert card["bin"] == number[:6]
    assert card["cardNumber"] == number[:4] + "*" * (len(number) - 8) + number[-4:]
    assert number not in response.content.decode()


# ------------------------------------------------------------------------------------------------------------
# Isolation between merchants
# ------------------------------------------------------------------------------------------------------------
BOB_ATTEMPTS = [
    ("get", "", None),
    ("delete", "", None),
    ("put", "/description", "Bob's now"),
    ("put", "/cardHolderName", "Bob"),
    ("put", "/schemeTransactionReference", "BOB123"),
    ("put", "/cardExpiryDate", {"month": 1, "year": 2039}),
    ("put", "/billingAddress", MYCROFT_ADDRESS),
    ("get", "/conflicts", None),
    ("put", "/conflicts", None),
    ("post", "/detokenize", None),
]


@pytest.mark.pci("7.2.1")
@pytest.mark.parametrize("method, suffix, body", BOB_ATTEMPTS, ids=[f"{m} {s or '/'}" for m, s, _ in BOB_ATTEMPTS])
def test_another_merchant_gets_404_on_alices_token_and_changes_nothing(
    created, tokenize, api, bob_processor_api, token_path, method, suffix, body
):
    tokenize(cardHolderName="Mycroft Holmes")  # a pending conflict, so /conflicts exists for alice
    before = api.get(token_path).json()

    kwargs = {"format": "json"} if body is not None else {}
    response = getattr(bob_processor_api, method)(
        f"{token_path}{suffix}", *([body] if body is not None else []), **kwargs
    )

    assert response.status_code == 404
    assert response.json()["errorName"] == "resourceNotFound"
    assert VISA not in response.content.decode()
    assert api.get(token_path).json() == before


def test_a_key_without_the_detokenize_scope_cannot_tell_alices_token_from_a_missing_one(created, bob_api, token_path):
    # bob's default key lacks tokens:detokenize: refused on scope for any href, so alice's token stays invisible.
    # Under one request id, so the bodies must be the same to the byte.
    on_alices = bob_api.post(f"{token_path}/detokenize", HTTP_X_REQUEST_ID="probe")
    on_missing = bob_api.post("/tokens/no-such-reference-anywhere/detokenize", HTTP_X_REQUEST_ID="probe")

    assert (on_alices.status_code, on_alices.json()) == (on_missing.status_code, on_missing.json())
    assert VISA not in on_alices.content.decode()


def test_another_merchants_token_id_query_answers_404(created, bob_api):
    response = bob_api.get("/tokens", {"tokenId": created.json()["tokenId"]})

    assert response.status_code == 404
    assert response.json()["errorName"] == "resourceNotFound"


def test_another_merchant_tokenizing_the_same_card_gets_its_own_token(created, tokenize, bob_api, api):
    bobs = tokenize(client=bob_api, cardHolderName="Someone Else")

    assert bobs.status_code == 201
    assert bobs.json()["tokenId"] != created.json()["tokenId"]
    assert api.get(path_of(bobs.json()["tokenPaymentInstrument"]["href"])).status_code == 404


def test_another_merchants_namespace_is_not_listed(tokenize, bob_api, api):
    tokenize(namespace="SHOPPER_1")
    bobs = tokenize(client=bob_api, cardNumber=VISA_2, namespace="SHOPPER_1").json()["tokenId"]

    listed = bob_api.get("/tokens", {"namespace": "SHOPPER_1"}).json()["_embedded"]["tokens"]

    assert [token["tokenId"] for token in listed] == [bobs]


def test_another_merchants_cards_do_not_count_towards_a_namespace_limit(tokenize, bob_api):
    numbers = distinct_cards(17)
    for number in numbers[:16]:
        tokenize(cardNumber=number, namespace="FAMILY")

    assert tokenize(client=bob_api, cardNumber=numbers[16], namespace="FAMILY").status_code == 201


# ------------------------------------------------------------------------------------------------------------
# The card number never leaves the vault, except through detokenize
# ------------------------------------------------------------------------------------------------------------
def test_no_response_but_detokenize_contains_the_card_number(tokenize, api, carol_api):
    responses = [
        tokenize(namespace="SHOPPER_1"),
        tokenize(namespace="SHOPPER_1"),
        tokenize(namespace="SHOPPER_1", cardHolderName="Mycroft Holmes"),
    ]
    body = responses[0].json()
    path = path_of(body["tokenPaymentInstrument"]["href"])
    responses += [
        api.get("/tokens"),
        api.get(path),
        api.get(f"{path}/conflicts"),
        api.get("/tokens", {"namespace": "SHOPPER_1"}),
        api.get("/tokens", {"tokenId": body["tokenId"]}),
        api.put(f"{path}/cardHolderName", "Mrs Hudson", format="json"),
        api.get(path),
        api.put(f"{path}/description", "Fish & chips", format="json"),
        tokenize(cardNumber=VISA[:-1] + "2"),
        api.post(f"{path}/detokenize"),
    ]
    for response in responses[:-3]:
        text = response.content.decode()
        assert VISA not in text, (response.status_code, text)
    for response in responses[-3:]:
        assert VISA[:-1] + "2" not in response.content.decode()

    detokenized = carol_api.post(f"{path}/detokenize")
    assert VISA in detokenized.content.decode()


def test_listing_a_namespace_costs_the_same_queries_however_many_tokens_and_network_tokens(api, alice):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from networks import services as network_services
    from networks import tsp

    def add_cards(first: int, count: int):
        for i in range(first, first + count):
            partial = f"411111111{i:06d}"
            number = partial + cards.luhn_check_digit(partial)
            token = services.card_tokenize(
                merchant=alice, namespace="FAMILY", card=services.Card(number, "Sherlock Holmes", 5, 2035)
            ).token
            network_services.network_token_provision(
                origin=network_services.Origin(merchant=alice, correlation_id="q", vault_token=token),
                card=tsp.CardData(number, 5, 2035),
            )

    def queries_to_list() -> int:
        with CaptureQueriesContext(connection) as queries:
            body = api.get("/tokens", {"namespace": "FAMILY", "pageSize": 16}).json()
        assert all("tokens:networkToken" in t["_links"] for t in body["_embedded"]["tokens"])
        return len(queries)

    add_cards(0, 2)
    queries_to_list()  # the key's first use of the minute also records it (ApiKey.last_used_at)
    few = queries_to_list()
    add_cards(2, 10)
    assert queries_to_list() == few


@pytest.mark.parametrize("path", ["/tokens?namespace=N&page=9223372036854775808", "/events?page=9223372036854775808"])
def test_an_absurd_page_number_is_a_400_not_a_server_error(api, path):
    response = api.get(path)
    assert response.status_code == 400
    assert response.json()["validationErrors"][0]["jsonPath"] == "$.page"
