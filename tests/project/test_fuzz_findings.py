"""What Schemathesis found (tests/project/test_fuzz_api.py), each pinned down as a merchant would meet it.

Actors (tests/conftest.py): alice is a merchant with the default scopes; her client is ``api``. Every test here runs
on SQLite and on PostgreSQL (``make test``), which is where a NUL byte used to fail: PostgreSQL refuses it in text.
"""

from io import StringIO

import pytest
import yaml
from django.core.management import call_command

from networks.models import NetworkToken
from notifications.models import WebhookEndpoint
from tests.conftest import VISA, VISA_2, card_request
from vault.models import Token

CORRELATION = {"HTTP_X_CORRELATION_ID": "findings"}
HOOK = "http://127.0.0.1:9/hook"


def error_names(response) -> list[tuple[str, str]]:
    body = response.json()
    assert set(body) <= {"errorName", "message", "validationErrors", "requestId"}, body
    return [(item["errorName"], item["jsonPath"]) for item in body.get("validationErrors", [])]


# ------------------------------------------------------------------------------------------------------------
# Malformed ids in paths: 404 in the error shape, never a 500 from the database
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/tokens/{id}"),
        ("put", "/tokens/{id}/description"),
        ("get", "/network-tokens/{id}"),
        ("post", "/network-tokens/{id}/cryptograms"),
        ("get", "/network-tokens/requests/{id}"),
        ("get", "/network-tokens/batches/{id}"),
        ("patch", "/webhook-endpoints/{id}"),
        ("get", "/events/{id}"),
    ],
)
@pytest.mark.parametrize("bad_id", ["a%00b", "%00", "x" * 5000, "a%20b"], ids=["nul", "only-nul", "long", "space"])
def test_a_malformed_id_in_a_path_answers_404_in_the_error_shape(api, method, path, bad_id):
    response = getattr(api, method)(path.format(id=bad_id), {}, format="json")

    assert response.status_code == 404, response.content[:300]
    assert response.json()["errorName"] == "endpointNotFound"


def test_a_real_id_still_reaches_its_token(api, tokenize):
    href = tokenize(card_request()).json()["tokenPaymentInstrument"]["href"]

    assert api.get("/" + href.split("/", 3)[3]).status_code == 200


# ------------------------------------------------------------------------------------------------------------
# NUL and unpaired surrogates in bodies and queries: 400 with our error names, nothing stored
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("field", ["description", "namespace"])
def test_a_nul_character_in_a_body_field_is_refused_by_name(tokenize, field):
    response = tokenize(card_request(**{field: "a\x00b"}))

    assert response.status_code == 400
    assert error_names(response) == [("stringFailedRegexCheck", f"$.{field}")]
    assert not Token.objects.exists()


def test_a_nul_character_in_a_webhook_description_is_refused_by_name(api):
    response = api.post("/webhook-endpoints", {"url": HOOK, "description": "\x00"}, format="json")

    assert response.status_code == 400
    assert error_names(response) == [("stringFailedRegexCheck", "$.description")]
    assert not WebhookEndpoint.objects.exists()


def test_a_nul_character_in_a_bare_string_body_is_refused_by_name(api, tokenize):
    href = tokenize(card_request()).json()["tokenPaymentInstrument"]["href"]

    response = api.put(f"/{href.split('/', 3)[3]}/cardHolderName", "John\x00Watson", format="json")

    assert response.status_code == 400
    assert error_names(response) == [("stringFailedRegexCheck", "$")]


def test_a_nul_character_in_a_query_is_refused_by_name(api):
    response = api.get("/tokens", {"namespace": "a\x00b"})

    assert response.status_code == 400
    assert error_names(response) == [("stringFailedRegexCheck", "$.namespace")]


@pytest.mark.parametrize(
    "raw",
    [b'{"\\ud800": 1}', b'{"description": "a\\udfffb"}', b'["\\uD83D"]'],
    ids=["in a field name", "in a value", "high surrogate alone"],
)
def test_an_unpaired_surrogate_is_not_json(api, raw):
    """It used to reach the error's jsonPath, which the renderer could not encode: a 500."""
    response = api.generic("POST", "/tokens", raw, content_type="application/json")

    assert response.status_code == 400
    assert response.json()["errorName"] == "bodyIsNotJson"


def test_a_surrogate_pair_is_one_character_and_welcome(tokenize):
    response = tokenize(card_request(description="Sherlock \U0001f575"))

    assert response.status_code == 201
    assert response.json()["description"] == "Sherlock \U0001f575"


# ------------------------------------------------------------------------------------------------------------
# Patterns hold for the whole string (a trailing newline used to slip past ``$``)
# ------------------------------------------------------------------------------------------------------------
def test_a_scheme_transaction_reference_with_a_trailing_newline_is_refused(tokenize):
    response = tokenize(card_request(schemeTransactionReference="abc\n"))

    assert response.status_code == 400
    assert error_names(response) == [("stringFailedRegexCheck", "$.schemeTransactionReference")]


def test_a_card_number_with_a_trailing_newline_is_refused_as_not_digits(tokenize):
    response = tokenize(card_request(cardNumber=VISA + "\n"))

    assert response.status_code == 400
    assert error_names(response) == [("stringFailedRegexCheck", "$.paymentInstrument.cardNumber")]


def test_last_digits_with_a_trailing_newline_are_refused(api, tokenize):
    token_id = tokenize(card_request()).json()["tokenId"]
    network_token = api.post("/network-tokens", {"token": token_id}, format="json", **CORRELATION).json()["tokenId"]

    response = api.post(
        f"/network-tokens/{network_token}/simulate-lifecycle",
        {"event": "CARD_UPDATED", "cardLastDigits": "1234\n"},
        format="json",
    )

    assert response.status_code == 400
    assert error_names(response) == [("stringFailedRegexCheck", "$.cardLastDigits")]
    assert NetworkToken.objects.get(token_id=network_token).status == "ACTIVE"


# ------------------------------------------------------------------------------------------------------------
# Links of a namespace's pages are URIs whatever the namespace
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("namespace", ["\x8e\x8e", "fish & chips #2", "a=b?c/d"])
def test_the_links_of_a_namespace_page_are_uris_that_lead_back_to_it(api, tokenize, namespace):
    tokenize(card_request(namespace=namespace))
    tokenize(card_request(namespace=namespace, cardNumber=VISA_2))

    first = api.get("/tokens", {"namespace": namespace, "pageSize": 1}).json()

    for link in ("self", "next"):
        href = first["_links"][link]["href"]
        assert all(0x21 <= ord(char) < 0x7F for char in href), href
    second = api.get("/" + first["_links"]["next"]["href"].split("/", 3)[3]).json()
    assert [token["namespace"] for token in second["_embedded"]["tokens"]] == [namespace]
    assert second["page"]["number"] == 2


# ------------------------------------------------------------------------------------------------------------
# ?tokenId= names a token or nothing
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["DM4MMC0123456789ABCDEF0123456789ABCDEF", "abc", "x" * 500])
def test_a_token_id_query_that_is_no_token_id_answers_404(api, value):
    """As a malformed id in a path: before, a network token's tokenId (38 characters) was a 400."""
    response = api.get("/tokens", {"tokenId": value})

    assert response.status_code == 404
    assert response.json()["errorName"] == "resourceNotFound"


def test_a_token_id_query_with_a_namespace_answers_the_token(api, tokenize):
    """tokenId wins over namespace: the answer is the token, one of the three documented shapes."""
    created = tokenize(card_request(namespace="shop")).json()

    response = api.get("/tokens", {"tokenId": created["tokenId"], "namespace": "shop"})

    assert response.status_code == 200
    assert response.json()["tokenId"] == created["tokenId"]


# ------------------------------------------------------------------------------------------------------------
# The schema says what the API refuses, so clients (and the fuzzer) can believe it
# ------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def schema(tmp_path_factory) -> dict:
    target = tmp_path_factory.mktemp("schema") / "schema.yaml"
    call_command("spectacular", "--file", str(target), stdout=StringIO())
    return yaml.safe_load(target.read_text())


def test_the_schema_says_a_simulated_event_carries_card_data_only_when_card_updated(api, tokenize, schema):
    rules = schema["components"]["schemas"]["SimulateLifecycleInputRequest"]["oneOf"]
    assert len(rules) == 2
    token_id = tokenize(card_request()).json()["tokenId"]
    network_token = api.post("/network-tokens", {"token": token_id}, format="json", **CORRELATION).json()["tokenId"]

    response = api.post(
        f"/network-tokens/{network_token}/simulate-lifecycle",
        {"event": "SUSPENDED", "cardLastDigits": "1234"},
        format="json",
    )

    assert response.status_code == 400


def test_the_schema_says_an_email_needs_a_top_level_label_of_two_characters(api, schema):
    email = schema["components"]["schemas"]["ProvisionInputRequest"]["properties"]["email"]
    assert email["format"] == "email" and "pattern" in email

    response = api.post(
        "/network-tokens",
        {"card": {"cardNumber": VISA, "cardExpiryDate": {"month": 1, "year": 2099}}, "email": "holmes@baker.s"},
        format="json",
        **CORRELATION,
    )

    assert response.status_code == 400
    assert error_names(response) == [("fieldHasInvalidValue", "$.email")]
