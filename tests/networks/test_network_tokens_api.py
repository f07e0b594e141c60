"""The network-token API (`/network-tokens`) as a merchant sees it: DESIGN.md "Network tokens" and the seed
`network-tokenization-create-a-token.md` (sync and async creation, tokenId rules per network).

Actors (tests/conftest.py): alice is a merchant with the default scopes (no detokenize); bob is another merchant who
must see none of alice's network tokens, requests or batches. ``processor_api`` is alice's payment processor key for
network tokens: it also has ``tokens:detokenize``, so its cryptograms carry the token number.

The TSP simulators are the product and run for real (no latency in tests); the broker is outside the product, so
queueing is recorded instead (``broker``, tests/conftest.py), except in the tests marked ``celery``, which run a real
worker on the real broker.
"""

import json
from datetime import timedelta

import pytest
from django.utils import timezone
from jwcrypto import jwe as client_jwe
from jwcrypto import jwk as client_jwk

from core.models import AuditLog
from merchants import services as merchant_services
from networks import selectors as network_selectors
from networks import tasks as network_tasks
from networks.models import Batch, BatchItem, NetworkToken, ProvisioningRequest
from notifications.models import Event
from tests.conftest import AMEX, DISCOVER, MASTERCARD, VISA, VISA_2, client_for, events_of, path_of, wait_for
from vault import services as vault_services
from vault.keys import key_ring
from vault.models import ExpiryExtension, Token

METADATA_FIELDS = {
    "tokenId",
    "network",
    "status",
    "tokenLastDigits",
    "tokenExpiryDate",
    "cardBin",
    "cardLastDigits",
    "cardExpiryDate",
    "paymentAccountReference",
    "cardArt",
    "issuer",
    "correlationId",
}
CORRELATION_ID = "checkout-7f3a"
EXPIRY = {"month": 5, "year": 2035}


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


def test_card_ending(last_four: str) -> str:
    """A Luhn-valid Visa test number (BIN 400000) ending in ``last_four``: the digit before them makes Luhn pass."""
    return next(number for number in (f"40000000000{digit}{last_four}" for digit in "0123456789") if luhn_valid(number))


test_card_ending.__test__ = False  # a helper, not a test
DECLINED_CARD = test_card_ending("0002")
STEP_UP_CARD = test_card_ending("0036")


def card_body(number=VISA, **extra) -> dict:
    return {"card": {"cardNumber": number, "cardExpiryDate": EXPIRY, "cardHolderName": "Sherlock Holmes"}, **extra}


def error_paths(response) -> list[tuple[str, str]]:
    return [(item["errorName"], item["jsonPath"]) for item in response.json().get("validationErrors", [])]


def token_number_of(token_id: str) -> str:
    token = NetworkToken.objects.get(token_id=token_id)
    return key_ring().decrypt(token.key_version, token.dpan_ciphertext, associated_data=token.associated_data())


@pytest.fixture
def provision(api):
    """POST /network-tokens (or ``path``) as alice, with a correlation id unless told otherwise."""

    def post(body, *, client=None, path="/network-tokens", correlation_id=CORRELATION_ID):
        headers = {} if correlation_id is None else {"HTTP_X_CORRELATION_ID": correlation_id}
        return (client or api).post(path, body, format="json", **headers)

    return post


@pytest.fixture
def vault_token(tokenize) -> dict:
    """alice's vault token for the seed's card (Sherlock Holmes, VISA 4444333322221111)."""
    response = tokenize()
    assert response.status_code == 201, response.content
    return response.json()


@pytest.fixture
def network_token(provision, vault_token) -> dict:
    """alice's ACTIVE Visa network token, provisioned from her vault token."""
    response = provision({"token": vault_token["tokenPaymentInstrument"]["href"]})
    assert response.status_code == 201, response.content
    return response.json()


@pytest.fixture
def processor_api(alice):
    """alice's payment processor key for network tokens: it may see the token number in cryptograms."""
    _, raw = merchant_services.api_key_create(
        merchant=alice, scopes=["network-tokens", "tokens:detokenize"], name="processor"
    )
    return client_for(raw)


def simulate(api, token_id, event, **extra):
    return api.post(f"/network-tokens/{token_id}/simulate-lifecycle", {"event": event, **extra}, format="json")


# ------------------------------------------------------------------------------------------------------------
# Synchronous provisioning
# ------------------------------------------------------------------------------------------------------------
def test_a_vault_token_href_gets_a_network_token_with_non_sensitive_metadata_only(provision, vault_token):
    response = provision({"token": vault_token["tokenPaymentInstrument"]["href"]})

    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == METADATA_FIELDS
    assert body["network"] == "VISA" and body["status"] == "ACTIVE"
    assert body["correlationId"] == CORRELATION_ID
    assert body["cardBin"] == VISA[:6] and body["cardLastDigits"] == VISA[-4:]
    assert body["cardExpiryDate"] == EXPIRY
    assert body["issuer"] == {"name": "Baker Street Bank"}
    assert body["cardArt"] == ["art-bsb-classic", "art-bsb-gold"]
    assert len(body["paymentAccountReference"]) == 29
    number = token_number_of(body["tokenId"])
    assert body["tokenLastDigits"] == number[-4:]
    assert VISA not in response.content.decode() and number not in response.content.decode()


def test_a_vault_token_id_gets_a_network_token_too(provision, vault_token):
    response = provision({"token": vault_token["tokenId"]})

    assert response.status_code == 201, response.content
    assert set(response.json()) == METADATA_FIELDS
    assert NetworkToken.objects.get(token_id=response.json()["tokenId"]).vault_token.token_id == vault_token["tokenId"]


def test_a_card_in_the_body_gets_a_network_token_and_its_numbers_stay_out_of_the_answer(provision):
    response = provision(card_body(MASTERCARD))

    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == METADATA_FIELDS
    assert body["network"] == "MASTERCARD" and body["issuer"] == {"name": "Maple Mutual"}
    token_number = token_number_of(body["tokenId"])
    assert luhn_valid(token_number) and token_number != MASTERCARD
    assert MASTERCARD not in response.content.decode() and token_number not in response.content.decode()


def test_the_network_token_number_is_stored_encrypted_only(provision):
    token_id = provision(card_body()).json()["tokenId"]

    row = NetworkToken.objects.get(token_id=token_id)
    assert token_number_of(token_id).encode() not in bytes(row.dpan_ciphertext)
    assert VISA not in json.dumps(list(NetworkToken.objects.filter(pk=row.pk).values())[0], default=str)


def test_the_created_webhook_event_carries_the_correlation_id_and_no_card_or_token_number(provision):
    token_id = provision(card_body()).json()["tokenId"]

    event = Event.objects.get(type="network_token.created")
    assert event.data["tokenId"] == token_id and event.data["correlationId"] == CORRELATION_ID
    text = json.dumps(event.data)
    assert VISA not in text and token_number_of(token_id) not in text


# ------------------------------------------------------------------------------------------------------------
# tokenId rules per network (the seed's "Token ID behavior by payment network")
# ------------------------------------------------------------------------------------------------------------
def test_mastercard_gives_a_new_token_id_for_every_request(provision):
    first = provision(card_body(MASTERCARD)).json()["tokenId"]
    second = provision(card_body(MASTERCARD)).json()["tokenId"]

    assert first != second
    assert NetworkToken.objects.filter(token_id__in=[first, second]).count() == 2


def test_visa_gives_the_same_token_id_for_the_same_merchant_card_and_account(provision):
    first = provision(card_body(VISA, accountId="shopper-1"))
    again = provision(card_body(VISA, accountId="shopper-1"))

    assert first.status_code == again.status_code == 201
    assert first.json()["tokenId"] == again.json()["tokenId"]
    assert NetworkToken.objects.filter(token_id=first.json()["tokenId"]).count() == 1


def test_visa_gives_another_token_id_for_another_account_or_another_card(provision):
    first = provision(card_body(VISA, accountId="shopper-1")).json()["tokenId"]

    assert provision(card_body(VISA, accountId="shopper-2")).json()["tokenId"] != first
    assert provision(card_body(VISA)).json()["tokenId"] != first
    assert provision(card_body(VISA_2, accountId="shopper-1")).json()["tokenId"] != first


def test_visa_gives_another_merchant_another_token_id_for_the_same_card_and_account(provision, bob_api):
    alices = provision(card_body(VISA, accountId="shopper-1")).json()["tokenId"]
    bobs = provision(card_body(VISA, accountId="shopper-1"), client=bob_api)

    assert bobs.status_code == 201
    assert bobs.json()["tokenId"] != alices


def test_amex_gives_the_same_token_id_for_the_same_card_account_and_email(provision):
    first = provision(card_body(AMEX, accountId="shopper-1", email="holmes@example.com"))
    again = provision(card_body(AMEX, accountId="shopper-1", email="holmes@example.com"))

    assert first.status_code == 201, first.content
    assert first.json()["network"] == "AMEX"
    assert first.json()["tokenId"] == again.json()["tokenId"]


def test_amex_gives_another_token_id_for_another_email(provision):
    first = provision(card_body(AMEX, accountId="shopper-1", email="holmes@example.com")).json()["tokenId"]
    other = provision(card_body(AMEX, accountId="shopper-1", email="watson@example.com")).json()["tokenId"]

    assert first != other


DELETIONS = {
    "by the merchant": lambda api, token_id: api.delete(f"/network-tokens/{token_id}"),
    "by the network": lambda api, token_id: simulate(api, token_id, "DELETED"),
}


@pytest.mark.parametrize("deletion", DELETIONS.values(), ids=DELETIONS.keys())
@pytest.mark.parametrize(
    "body",
    [
        card_body(VISA, accountId="shopper-1"),
        card_body(AMEX, accountId="shopper-1", email="holmes@example.com"),
    ],
    ids=["visa", "amex"],
)
def test_a_deleted_network_token_is_not_handed_out_again(provision, api, body, deletion):
    # Visa and Amex reuse a tokenId for the same merchant, card and account (and email): a live one only.
    first = provision(body).json()["tokenId"]
    assert deletion(api, first).status_code in (200, 204)

    again = provision(body)

    assert again.status_code == 201, again.content
    assert again.json()["tokenId"] != first and again.json()["status"] == "ACTIVE"
    assert api.get(f"/network-tokens/{first}").json()["status"] == "DELETED"
    assert provision(body).json()["tokenId"] == again.json()["tokenId"]  # the new one is reused while it lives


def test_amex_without_an_email_answers_400_at_email(provision):
    response = provision(card_body(AMEX))

    assert response.status_code == 400
    assert response.json()["errorName"] == "bodyDoesNotMatchSchema"
    assert error_paths(response) == [("fieldIsMissing", "$.email")]
    assert not NetworkToken.objects.exists()


# ------------------------------------------------------------------------------------------------------------
# Issuers and networks saying no
# ------------------------------------------------------------------------------------------------------------
def test_a_discover_card_answers_422_network_not_supported(provision):
    response = provision(card_body(DISCOVER))

    assert response.status_code == 422
    assert response.json()["errorName"] == "networkNotSupported"
    assert DISCOVER not in response.content.decode()


def test_a_card_the_issuer_declines_answers_422_tokenization_declined(provision):
    response = provision(card_body(DECLINED_CARD))

    assert response.status_code == 422
    assert response.json()["errorName"] == "tokenizationDeclined"
    assert DECLINED_CARD not in response.content.decode()
    assert not NetworkToken.objects.exists()


def test_a_card_that_needs_a_step_up_gets_an_inactive_token(provision):
    response = provision(card_body(STEP_UP_CARD))

    assert response.status_code == 201, response.content
    assert response.json()["status"] == "INACTIVE"


def test_a_network_that_does_not_answer_gives_502_or_504_network_unavailable(provision, settings):
    settings.TSP_FAILURE_RATE = 1.0

    response = provision(card_body())

    assert response.status_code in (502, 504)
    assert response.json()["errorName"] == "networkUnavailable"
    assert not NetworkToken.objects.exists()


# ------------------------------------------------------------------------------------------------------------
# Request validation
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("correlation_id", "error_name"),
    [
        (None, "fieldIsMissing"),
        ("", "fieldIsEmpty"),
        ("x" * 37, "stringIsTooLong"),
        (f"order {VISA}", "fieldContainsCardNumber"),  # stored and sent in webhooks: never a card number
    ],
    ids=["missing", "empty", "too long", "card number"],
)
def test_a_missing_or_invalid_correlation_id_answers_400(provision, correlation_id, error_name):
    response = provision(card_body(), correlation_id=correlation_id)

    assert response.status_code == 400
    assert response.json()["errorName"] == "bodyDoesNotMatchSchema"
    assert error_paths(response) == [(error_name, "$.headers.X-Correlation-Id")]


def test_a_correlation_id_of_36_characters_is_accepted_and_echoed(provision):
    correlation_id = "c" * 36
    response = provision(card_body(), correlation_id=correlation_id)

    assert response.status_code == 201
    assert response.json()["correlationId"] == correlation_id


def test_header_and_body_errors_are_reported_together(provision):
    response = provision({"card": {"cardNumber": "4444333322221112", "cardExpiryDate": EXPIRY}}, correlation_id=None)

    assert response.status_code == 400
    assert set(error_paths(response)) == {
        ("fieldIsMissing", "$.headers.X-Correlation-Id"),
        ("panFailedLuhnCheck", "$.card.cardNumber"),
    }
    assert "4444333322221112" not in response.content.decode()


def test_a_request_without_any_card_source_answers_400(provision):
    response = provision({"accountId": "shopper-1"})

    assert response.status_code == 400
    assert error_paths(response) == [("fieldIsMissing", "$")]


def test_a_request_with_two_card_sources_answers_400(provision, vault_token):
    response = provision({**card_body(), "token": vault_token["tokenId"]})

    assert response.status_code == 400
    assert error_paths(response) == [("fieldHasInvalidValue", "$")]
    assert not NetworkToken.objects.exists()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"card": {"cardNumber": VISA}}, ("fieldIsMissing", "$.card.cardExpiryDate")),
        (
            {"card": {"cardNumber": VISA, "cardExpiryDate": {"month": 13, "year": 2035}}},
            ("integerIsTooLarge", "$.card.cardExpiryDate.month"),
        ),
        (
            {"card": {"cardNumber": VISA, "cardExpiryDate": {"month": 1, "year": 2001}}},
            ("fieldHasInvalidValue", "$.card.cardExpiryDate"),
        ),
        (
            {"card": {"cardNumber": 4444333322221111, "cardExpiryDate": EXPIRY}},
            ("fieldMustBeString", "$.card.cardNumber"),
        ),
        ({"card": {"cardNumber": "44443333", "cardExpiryDate": EXPIRY}}, ("stringIsTooShort", "$.card.cardNumber")),
        ({**card_body(), "email": "not an email"}, ("fieldHasInvalidValue", "$.email")),
        ({**card_body(), "accountId": "a" * 65}, ("stringIsTooLong", "$.accountId")),
        ({**card_body(), "cvv": "123"}, ("unrecognizedField", "$.cvv")),
        ({"token": ""}, ("fieldIsEmpty", "$.token")),
    ],
    ids=[
        "no expiry",
        "month 13",
        "expired",
        "number not a string",
        "short number",
        "bad email",
        "long accountId",
        "unknown field",
        "empty token",
    ],
)
def test_a_malformed_request_answers_400_in_the_error_shape(provision, body, expected):
    response = provision(body)

    assert response.status_code == 400
    assert response.json()["errorName"] == "bodyDoesNotMatchSchema"
    assert expected in error_paths(response)


def test_an_unknown_vault_token_answers_404(provision):
    for reference in ("ABCDEFGHJKLMNPQRSTU", "http://testserver/tokens/no-such-reference", "nonsense"):
        response = provision({"token": reference})
        assert response.status_code == 404, reference
        assert response.json()["errorName"] == "resourceNotFound"


def test_a_deleted_vault_token_answers_404(provision, api, vault_token):
    api.delete(path_of(vault_token["tokenPaymentInstrument"]["href"]))

    response = provision({"token": vault_token["tokenId"]})

    assert response.status_code == 404
    assert response.json()["errorName"] == "resourceNotFound"


def test_an_empty_body_answers_400_body_is_empty(api):
    response = api.post("/network-tokens", content_type="application/json", HTTP_X_CORRELATION_ID=CORRELATION_ID)

    assert response.status_code == 400
    assert response.json()["errorName"] == "bodyIsEmpty"


# ------------------------------------------------------------------------------------------------------------
# Encrypted cards (JWE), encrypted by an independent library as a merchant's client would
# ------------------------------------------------------------------------------------------------------------
@pytest.fixture
def public_key(api) -> dict:
    response = api.get("/network-tokens/encryption-key")
    assert response.status_code == 200
    return response.json()["keys"][0]


def encrypt(jwk: dict, payload, *, alg="RSA-OAEP-256", enc="A256GCM") -> str:
    plaintext = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    header = {"alg": alg, "enc": enc, **({"kid": jwk["kid"]} if "kid" in jwk else {})}
    # algs: the client library refuses RSA1_5 itself unless told; we want to see the server refuse it.
    token = client_jwe.JWE(plaintext, protected=json.dumps(header), algs=[alg, enc])
    token.add_recipient(client_jwk.JWK(**jwk))
    return token.serialize(compact=True)


def plain_card(number=VISA) -> dict:
    return {"cardNumber": number, "cardExpiryDate": EXPIRY, "cardHolderName": "Sherlock Holmes"}


def test_the_encryption_key_is_a_jwk_set_with_one_public_rsa_key(api):
    response = api.get("/network-tokens/encryption-key")

    assert response.status_code == 200
    (key,) = response.json()["keys"]
    assert set(key) == {"kty", "use", "alg", "kid", "n", "e"}
    assert (key["kty"], key["use"], key["alg"]) == ("RSA", "enc", "RSA-OAEP-256")
    assert client_jwk.JWK(**key).has_private is False


def test_a_card_encrypted_to_the_served_key_gets_a_network_token(provision, public_key):
    response = provision({"encryptedData": encrypt(public_key, plain_card(MASTERCARD))})

    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == METADATA_FIELDS
    assert body["network"] == "MASTERCARD" and body["cardLastDigits"] == MASTERCARD[-4:]
    assert body["cardExpiryDate"] == EXPIRY


def test_an_encrypted_amex_card_still_needs_the_email_beside_it(provision, public_key):
    encrypted = encrypt(public_key, plain_card(AMEX))

    assert provision({"encryptedData": encrypted}).status_code == 400
    assert provision({"encryptedData": encrypted, "email": "holmes@example.com"}).status_code == 201


def tampered(compact: str) -> str:
    header, key, iv, ciphertext, tag = compact.split(".")
    flipped = ("A" if ciphertext[0] != "A" else "B") + ciphertext[1:]
    return ".".join([header, key, iv, flipped, tag])


@pytest.mark.parametrize(
    "make",
    [
        lambda key: encrypt(key, plain_card(), alg="RSA-OAEP"),
        lambda key: encrypt(key, plain_card(), alg="RSA1_5"),
        lambda key: encrypt(key, plain_card(), enc="A128CBC-HS256"),
        lambda key: tampered(encrypt(key, plain_card())),
        lambda key: encrypt(client_jwk.JWK.generate(kty="RSA", size=2048).export_public(as_dict=True), plain_card()),
        lambda key: "not.a.jwe",
        lambda key: "eyJhbGciOiJSU0EtT0FFUC0yNTYifQ",
    ],
    ids=[
        "alg RSA-OAEP",
        "alg RSA1_5",
        "enc A128CBC-HS256",
        "tampered ciphertext",
        "another key",
        "garbage",
        "header only",
    ],
)
def test_encrypted_data_that_does_not_decrypt_answers_400_at_encrypted_data(provision, public_key, make):
    response = provision({"encryptedData": make(public_key)})

    assert response.status_code == 400
    assert response.json()["errorName"] == "bodyDoesNotMatchSchema"
    assert error_paths(response) == [("fieldHasInvalidValue", "$.encryptedData")]
    assert VISA not in response.content.decode()
    assert not NetworkToken.objects.exists()


@pytest.mark.parametrize(
    ("payload", "named"),
    [
        ({**plain_card(), "cardNumber": "4444333322221112"}, "panFailedLuhnCheck at $.cardNumber"),
        ({"cardNumber": VISA}, "fieldIsMissing at $.cardExpiryDate"),
        ({**plain_card(), VISA: "card number as a key"}, "unrecognizedField"),
        (VISA, "fieldMustBeObject at $"),
        (VISA.encode(), ""),
        (b"\xff\xfe not utf-8", ""),
    ],
    ids=["luhn", "no expiry", "unknown key", "bare string", "not json", "not utf-8"],
)
def test_a_decrypted_card_of_the_wrong_shape_answers_400_without_echoing_the_plaintext(
    provision, public_key, payload, named
):
    response = provision({"encryptedData": encrypt(public_key, payload)})

    assert response.status_code == 400
    assert error_paths(response) == [("fieldHasInvalidValue", "$.encryptedData")]
    text = response.content.decode()
    assert named in response.json()["validationErrors"][0]["message"]
    assert VISA not in text and "4444333322221112" not in text and "card number as a key" not in text


def test_a_new_encryption_key_setting_is_served_and_used_at_once(api, provision, settings):
    from config.settings.secrets import new_rsa_private_key

    old = api.get("/network-tokens/encryption-key").json()["keys"][0]
    settings.NETWORK_TOKENS_JWE_KEY = new_rsa_private_key()
    new = api.get("/network-tokens/encryption-key").json()["keys"][0]

    assert new["kid"] != old["kid"] and new["n"] != old["n"]
    assert provision({"encryptedData": encrypt(new, plain_card())}).status_code == 201
    assert provision({"encryptedData": encrypt(old, plain_card())}).status_code == 400


# ------------------------------------------------------------------------------------------------------------
# Asynchronous requests
# ------------------------------------------------------------------------------------------------------------
def run_queued_requests(broker) -> None:
    """What a worker would do with the queued async requests (eagerly, in this process)."""
    for args in broker.args_of("run_provisioning_request"):
        network_tasks.run_provisioning_request.apply(args=list(args))


def test_an_async_request_answers_202_and_queues_only_its_id(
    provision, vault_token, broker, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = provision({"token": vault_token["tokenId"]}, path="/network-tokens/async")

    assert response.status_code == 202, response.content
    body = response.json()
    assert set(body) == {"requestId", "correlationId", "status"}
    assert body["correlationId"] == CORRELATION_ID and body["status"] == "PENDING"
    request = ProvisioningRequest.objects.get(public_id=body["requestId"])
    assert broker.args_of("run_provisioning_request") == [(request.pk,)]


def test_an_async_request_shows_the_network_token_once_a_worker_ran_it(
    provision, api, broker, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        request_id = provision(card_body(MASTERCARD), path="/network-tokens/async").json()["requestId"]
    pending = api.get(f"/network-tokens/requests/{request_id}").json()
    assert pending["status"] == "PENDING" and pending["networkToken"] is None and pending["error"] is None

    run_queued_requests(broker)

    response = api.get(f"/network-tokens/requests/{request_id}")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {
        "requestId",
        "correlationId",
        "status",
        "createdAt",
        "updatedAt",
        "attempts",
        "networkToken",
        "error",
    }
    assert body["status"] == "SUCCEEDED" and body["attempts"] == 1 and body["error"] is None
    assert set(body["networkToken"]) == METADATA_FIELDS
    assert body["networkToken"]["network"] == "MASTERCARD"
    assert body["networkToken"]["correlationId"] == CORRELATION_ID
    assert MASTERCARD not in response.content.decode()
    assert ProvisioningRequest.objects.get(public_id=request_id).card_ciphertext is None


def test_an_async_request_the_issuer_declines_ends_failed_with_its_reason(
    provision, api, broker, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        request_id = provision(card_body(DECLINED_CARD), path="/network-tokens/async").json()["requestId"]

    run_queued_requests(broker)

    body = api.get(f"/network-tokens/requests/{request_id}").json()
    assert body["status"] == "FAILED" and body["networkToken"] is None
    assert body["error"]["errorName"] == "tokenizationDeclined" and body["error"]["message"]
    failed = Event.objects.get(type="network_token.failed")
    assert failed.data["correlationId"] == CORRELATION_ID and DECLINED_CARD not in json.dumps(failed.data)


def test_an_async_request_for_a_card_needing_a_step_up_is_announced_once_the_network_activates_it(
    provision, api, broker, django_capture_on_commit_callbacks
):
    # The seed, steps 6-8: the merchant hears of the token when it is created *and active*, and can then use it.
    with django_capture_on_commit_callbacks(execute=True):
        request_id = provision(card_body(STEP_UP_CARD), path="/network-tokens/async").json()["requestId"]
    run_queued_requests(broker)

    waiting = api.get(f"/network-tokens/requests/{request_id}").json()
    assert waiting["status"] == "PENDING_ACTIVATION" and waiting["error"] is None
    assert waiting["networkToken"]["status"] == "INACTIVE"
    assert events_of(api, "network_token.created") == []
    assert ProvisioningRequest.objects.get(public_id=request_id).card_ciphertext is None

    token_id = waiting["networkToken"]["tokenId"]
    assert simulate(api, token_id, "ACTIVE").status_code == 200

    done = api.get(f"/network-tokens/requests/{request_id}").json()
    assert done["status"] == "SUCCEEDED" and done["networkToken"]["status"] == "ACTIVE"
    [created] = events_of(api, "network_token.created")
    assert (created["tokenId"], created["status"]) == (token_id, "ACTIVE")
    assert (created["correlationId"], created["requestId"]) == (CORRELATION_ID, request_id)
    assert api.post(f"/network-tokens/{token_id}/cryptograms").status_code == 200


def test_an_async_request_whose_token_is_deleted_before_activation_ends_failed(
    provision, api, broker, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        request_id = provision(card_body(STEP_UP_CARD), path="/network-tokens/async").json()["requestId"]
    run_queued_requests(broker)
    token_id = api.get(f"/network-tokens/requests/{request_id}").json()["networkToken"]["tokenId"]

    assert api.delete(f"/network-tokens/{token_id}").status_code == 204

    body = api.get(f"/network-tokens/requests/{request_id}").json()
    assert body["status"] == "FAILED" and body["error"]["errorName"] == "tokenNotActivated"
    [failed] = events_of(api, "network_token.failed")
    assert (failed["requestId"], failed["correlationId"], failed["tokenId"]) == (request_id, CORRELATION_ID, token_id)
    assert failed["errorName"] == "tokenNotActivated"
    assert events_of(api, "network_token.created") == []


def test_an_active_async_token_is_announced_once_with_its_request(
    provision, api, broker, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        request_id = provision(card_body(VISA), path="/network-tokens/async").json()["requestId"]

    run_queued_requests(broker)

    [created] = events_of(api, "network_token.created")
    assert (created["correlationId"], created["requestId"], created["status"]) == (CORRELATION_ID, request_id, "ACTIVE")


def test_an_async_request_for_an_unsupported_network_is_refused_at_once(provision):
    response = provision(card_body(DISCOVER), path="/network-tokens/async")

    assert response.status_code == 422
    assert response.json()["errorName"] == "networkNotSupported"
    assert not ProvisioningRequest.objects.exists()


def test_an_async_request_follows_the_same_header_rules(provision):
    response = provision(card_body(), path="/network-tokens/async", correlation_id=None)

    assert response.status_code == 400
    assert error_paths(response) == [("fieldIsMissing", "$.headers.X-Correlation-Id")]


def test_an_unknown_request_answers_404(api, db):
    response = api.get("/network-tokens/requests/req_unknown")

    assert response.status_code == 404
    assert response.json()["errorName"] == "resourceNotFound"


@pytest.mark.celery
def test_a_real_worker_completes_an_async_request_on_the_real_broker(alice, celery_worker_process):
    api = client_for(alice.raw_key)
    response = api.post(
        "/network-tokens/async", card_body(MASTERCARD), format="json", HTTP_X_CORRELATION_ID=CORRELATION_ID
    )
    assert response.status_code == 202, response.content
    request_id = response.json()["requestId"]

    def ended() -> dict:
        """The request once it has ended; {} while PENDING, or while SQLite, busy with the worker's writes, answers
        503."""
        answer = api.get(f"/network-tokens/requests/{request_id}")
        assert answer.status_code in (200, 503), answer.content
        body = answer.json() if answer.status_code == 200 else {}
        return body if body.get("status", "PENDING") != "PENDING" else {}

    body = wait_for(ended, timeout=120)  # the worker's start-up included

    assert body["status"] == "SUCCEEDED", body
    assert body["networkToken"]["network"] == "MASTERCARD"


# ------------------------------------------------------------------------------------------------------------
# Batches
# ------------------------------------------------------------------------------------------------------------
@pytest.fixture
def vault_tokens(alice) -> list[Token]:
    """Three of alice's vault tokens: Visa, Mastercard, Discover."""
    return [
        vault_services.card_tokenize(merchant=alice, card=vault_services.Card(number, "Sherlock Holmes", 5, 2035)).token
        for number in (VISA, MASTERCARD, DISCOVER)
    ]


def test_a_batch_with_good_and_unknown_tokens_answers_202_and_lists_the_failed_ones(api, vault_tokens):
    visa, mastercard, discover = vault_tokens
    items = [
        {"token": visa.token_id, "accountId": "shopper-1"},
        {"token": "ABCDEFGHJKLMNPQRSTU"},
        {"token": f"http://testserver/tokens/{mastercard.reference}"},
        {"token": discover.token_id},
    ]

    response = api.post("/network-tokens/batches", {"items": items}, format="json")

    assert response.status_code == 202, response.content
    accepted = response.json()
    assert set(accepted) == {"id", "status", "counts"}
    assert accepted["counts"] == {
        "PENDING": 2,
        "QUEUED": 0,
        "RUNNING": 0,
        "PENDING_ACTIVATION": 0,
        "SUCCEEDED": 0,
        "FAILED": 2,
    }
    assert accepted["status"] == "PENDING"

    batch = api.get(f"/network-tokens/batches/{accepted['id']}")
    assert batch.status_code == 200
    body = batch.json()
    assert body["id"] == accepted["id"] and body["total"] == 4 and body["counts"] == accepted["counts"]
    assert body["completedAt"] is None and body["createdAt"]
    assert [(item["index"], item["token"], item["errorName"]) for item in body["failedItems"]] == [
        (1, "ABCDEFGHJKLMNPQRSTU", "resourceNotFound"),
        (3, discover.token_id, "networkNotSupported"),
    ]
    assert all(item["message"] for item in body["failedItems"])


def test_a_batch_of_only_unknown_tokens_is_completed_at_once(api, db):
    response = api.post("/network-tokens/batches", {"items": [{"token": "ABCDEFGHJKLMNPQRSTU"}]}, format="json")

    assert response.status_code == 202
    assert response.json()["status"] == "COMPLETED"
    assert api.get(f"/network-tokens/batches/{response.json()['id']}").json()["completedAt"]


def test_a_batch_queues_the_dispatcher_once_it_commits(api, vault_tokens, broker, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        api.post("/network-tokens/batches", {"items": [{"token": vault_tokens[0].token_id}]}, format="json")

    assert broker.args_of("dispatch_batches") == [()]


def test_a_card_number_sent_as_a_batch_token_is_never_shown_back(api, db):
    response = api.post("/network-tokens/batches", {"items": [{"token": VISA}]}, format="json")

    body = api.get(f"/network-tokens/batches/{response.json()['id']}")
    assert body.json()["failedItems"][0]["errorName"] == "resourceNotFound"
    assert VISA not in body.content.decode()


def test_another_merchants_vault_token_is_a_failed_item_of_a_batch(bob_api, vault_tokens):
    response = bob_api.post("/network-tokens/batches", {"items": [{"token": vault_tokens[0].token_id}]}, format="json")

    assert response.status_code == 202
    assert response.json()["counts"]["FAILED"] == 1
    assert BatchItem.objects.get().vault_token is None


def test_a_batch_of_10001_items_answers_400_at_items(api, db):
    response = api.post(
        "/network-tokens/batches", {"items": [{"token": "ABCDEFGHJKLMNPQRSTU"}] * 10_001}, format="json"
    )

    assert response.status_code == 400
    assert error_paths(response) == [("fieldHasInvalidValue", "$.items")]
    assert not Batch.objects.exists()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"items": []}, ("fieldIsEmpty", "$.items")),
        ({"items": "ABCDEFGHJKLMNPQRSTU"}, ("fieldMustBeArray", "$.items")),
        ({}, ("fieldIsMissing", "$.items")),
    ],
    ids=["empty", "not an array", "missing"],
)
def test_a_batch_without_a_list_of_items_answers_400_at_items(api, db, body, expected):
    response = api.post("/network-tokens/batches", body, format="json")

    assert response.status_code == 400
    assert error_paths(response) == [expected]


def test_a_batch_item_of_the_wrong_shape_answers_400_at_its_index(api, vault_tokens):
    items = [{"token": vault_tokens[0].token_id}] * 3 + [{"token": 42}, {"tokenId": "x"}]

    response = api.post("/network-tokens/batches", {"items": items}, format="json")

    assert response.status_code == 400
    assert set(error_paths(response)) == {
        ("fieldMustBeString", "$.items[3].token"),
        ("fieldIsMissing", "$.items[4].token"),
        ("unrecognizedField", "$.items[4].tokenId"),
    }
    assert not Batch.objects.exists()


def test_resolving_the_vault_tokens_of_a_batch_takes_one_query_per_kind_of_reference(
    alice, vault_tokens, django_assert_num_queries
):
    values = [token.token_id for token in vault_tokens] + [f"/tokens/{t.reference}" for t in vault_tokens]
    values += [f"ABCDEFGHJKLMNPQR{index:03d}" for index in range(500)] + [f"/tokens/x{index}" for index in range(500)]

    with django_assert_num_queries(2):
        found = network_selectors.vault_tokens_resolve(merchant=alice, values=values)

    assert {value: token.pk for value, token in found.items()} == {
        **{token.token_id: token.pk for token in vault_tokens},
        **{f"/tokens/{token.reference}": token.pk for token in vault_tokens},
    }


def test_the_failed_items_of_a_batch_are_paginated(api, db):
    items = [{"token": f"ABCDEFGHJKLMNPQR{index:03d}"} for index in range(5)]
    batch_id = api.post("/network-tokens/batches", {"items": items}, format="json").json()["id"]

    first = api.get(f"/network-tokens/batches/{batch_id}?pageSize=2").json()
    last = api.get(f"/network-tokens/batches/{batch_id}?pageSize=2&page=3").json()

    assert [item["index"] for item in first["failedItems"]] == [0, 1]
    assert first["page"] == {"number": 1, "size": 2, "totalElements": 5, "totalPages": 3}
    assert [item["index"] for item in last["failedItems"]] == [4]
    assert api.get(f"/network-tokens/batches/{batch_id}?pageSize=0").status_code == 400


def test_reading_a_batch_costs_the_same_few_queries_whatever_its_size(api, db, django_assert_max_num_queries):
    items = [{"token": f"ABCDEFGHJKLMNPQR{index:03d}"} for index in range(300)]
    batch_id = api.post("/network-tokens/batches", {"items": items}, format="json").json()["id"]

    # The key, the batch, the counts, a page of failed items; and the rate limit's count in the database cache of
    # the tests (a read, and a write of up to five statements; Redis in production).
    with django_assert_max_num_queries(12):
        response = api.get(f"/network-tokens/batches/{batch_id}")

    assert response.json()["counts"]["FAILED"] == 300 and len(response.json()["failedItems"]) == 100


# ------------------------------------------------------------------------------------------------------------
# One network token: read, delete, lifecycle, cryptograms
# ------------------------------------------------------------------------------------------------------------
def test_a_network_token_reads_with_its_metadata_dates_and_lifecycle(api, network_token):
    response = api.get(f"/network-tokens/{network_token['tokenId']}")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == METADATA_FIELDS | {"createdAt", "updatedAt", "lifecycle"}
    assert {key: body[key] for key in METADATA_FIELDS} == network_token
    assert body["lifecycle"] == []
    assert VISA not in response.content.decode()


def test_the_encryption_key_and_other_fixed_paths_are_not_taken_for_token_ids(api, db):
    assert api.get("/network-tokens/encryption-key").status_code == 200
    assert api.get("/network-tokens/async").json()["errorName"] == "methodNotAllowed"
    assert api.get("/network-tokens/batches").json()["errorName"] == "methodNotAllowed"
    assert api.get("/network-tokens/requests/req_x").json()["errorName"] == "resourceNotFound"
    assert api.get("/network-tokens").json()["errorName"] == "methodNotAllowed"


def test_delete_answers_204_and_the_token_then_reads_as_deleted(api, network_token):
    path = f"/network-tokens/{network_token['tokenId']}"

    response = api.delete(path)

    assert response.status_code == 204
    body = api.get(path).json()
    assert body["status"] == "DELETED"
    history = [(event["type"], event["oldStatus"], event["newStatus"]) for event in body["lifecycle"]]
    assert history == [("DELETED", "ACTIVE", "DELETED")]
    assert NetworkToken.objects.get(token_id=network_token["tokenId"]).dpan_ciphertext is None
    assert Event.objects.filter(type="network_token.updated", data__event="DELETED").exists()


def test_deleting_a_deleted_network_token_answers_422_and_it_stays_deleted(api, network_token):
    path = f"/network-tokens/{network_token['tokenId']}"
    api.delete(path)

    response = api.delete(path)

    assert response.status_code == 422
    assert response.json()["errorName"] == "lifecycleTransitionNotAllowed"
    assert api.get(path).json()["status"] == "DELETED"
    assert len(api.get(path).json()["lifecycle"]) == 1


def test_an_unknown_network_token_answers_404(api, db):
    for response in (
        api.get("/network-tokens/DNITHE000"),
        api.delete("/network-tokens/DNITHE000"),
        api.post("/network-tokens/DNITHE000/cryptograms"),
    ):
        assert response.status_code == 404
        assert response.json()["errorName"] == "resourceNotFound"


def test_the_simulator_suspends_resumes_and_reissues_the_card(api, network_token):
    token_id = network_token["tokenId"]

    suspended = simulate(api, token_id, "SUSPENDED")
    assert suspended.status_code == 200, suspended.content
    assert suspended.json()["status"] == "SUSPENDED"
    assert simulate(api, token_id, "ACTIVE").json()["status"] == "ACTIVE"
    updated = simulate(api, token_id, "CARD_UPDATED", cardExpiryDate={"month": 9, "year": 2039}, cardLastDigits="4242")

    body = updated.json()
    assert body["status"] == "ACTIVE"
    assert body["cardExpiryDate"] == {"month": 9, "year": 2039} and body["cardLastDigits"] == "4242"
    assert [(e["type"], e["oldStatus"], e["newStatus"]) for e in body["lifecycle"]] == [
        ("SUSPENDED", "ACTIVE", "SUSPENDED"),
        ("ACTIVE", "SUSPENDED", "ACTIVE"),
        ("CARD_UPDATED", "ACTIVE", "ACTIVE"),
    ]
    assert Event.objects.filter(type="network_token.updated").count() == 3


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"event": "EXPIRED"}, ("fieldHasInvalidValue", "$.event")),
        ({"event": "CARD_UPDATED"}, ("fieldIsMissing", "$")),
        ({"event": "SUSPENDED", "cardLastDigits": "4242"}, ("fieldHasInvalidValue", "$.cardLastDigits")),
        ({"event": "CARD_UPDATED", "cardLastDigits": "42a2"}, ("stringFailedRegexCheck", "$.cardLastDigits")),
    ],
    ids=["unknown event", "card update without changes", "digits on a suspension", "digits not digits"],
)
def test_the_simulator_refuses_a_malformed_event(api, network_token, extra, expected):
    response = api.post(f"/network-tokens/{network_token['tokenId']}/simulate-lifecycle", extra, format="json")

    assert response.status_code == 400
    assert expected in error_paths(response)


def test_the_simulator_refuses_an_event_that_does_not_fit_the_status(api, network_token):
    simulate(api, network_token["tokenId"], "SUSPENDED")

    response = simulate(api, network_token["tokenId"], "SUSPENDED")

    assert response.status_code == 422
    assert response.json()["errorName"] == "lifecycleTransitionNotAllowed"
    assert len(api.get(f"/network-tokens/{network_token['tokenId']}").json()["lifecycle"]) == 1


def test_an_inactive_token_activated_after_its_step_up_gets_cryptograms(api, provision):
    token_id = provision(card_body(STEP_UP_CARD)).json()["tokenId"]

    activated = simulate(api, token_id, "ACTIVE")

    assert activated.status_code == 200 and activated.json()["status"] == "ACTIVE"
    assert api.post(f"/network-tokens/{token_id}/cryptograms").status_code == 200


def test_the_simulator_endpoint_does_not_exist_when_switched_off(api, network_token, settings):
    settings.TSP_SIMULATOR_ENDPOINTS = False

    response = simulate(api, network_token["tokenId"], "SUSPENDED")

    assert response.status_code == 404
    assert response.json()["errorName"] == "endpointNotFound"
    assert NetworkToken.objects.get(token_id=network_token["tokenId"]).status == "ACTIVE"
    assert (
        client_for("sk_nonsense")
        .post(f"/network-tokens/{network_token['tokenId']}/simulate-lifecycle")
        .json()["errorName"]
        == "endpointNotFound"
    )


def test_a_cryptogram_for_an_active_token_leaves_out_the_token_number_without_the_detokenize_scope(api, network_token):
    response = api.post(f"/network-tokens/{network_token['tokenId']}/cryptograms")

    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"cryptogram", "eci", "tokenExpiryDate", "cryptogramExpiryDateTime"}
    assert body["eci"] == "05" and body["cryptogram"]
    assert body["tokenExpiryDate"] == network_token["tokenExpiryDate"]
    assert response["Cache-Control"] == "no-store"
    assert token_number_of(network_token["tokenId"]) not in response.content.decode()


def test_a_cryptogram_carries_the_token_number_for_a_key_with_the_detokenize_scope(processor_api, network_token):
    response = processor_api.post(f"/network-tokens/{network_token['tokenId']}/cryptograms")

    assert response.status_code == 200, response.content
    number = response.json()["tokenNumber"]
    assert number == token_number_of(network_token["tokenId"])
    assert luhn_valid(number) and number != VISA and number.endswith(network_token["tokenLastDigits"])
    assert response["Cache-Control"] == "no-store"


def test_each_cryptogram_is_new(api, network_token):
    path = f"/network-tokens/{network_token['tokenId']}/cryptograms"

    assert api.post(path).json()["cryptogram"] != api.post(path).json()["cryptogram"]


def test_a_suspended_token_gets_no_cryptogram(api, network_token):
    simulate(api, network_token["tokenId"], "SUSPENDED")

    response = api.post(f"/network-tokens/{network_token['tokenId']}/cryptograms")

    assert response.status_code == 422
    assert response.json()["errorName"] == "tokenNotActive"


def test_an_inactive_token_waiting_for_a_step_up_gets_no_cryptogram(api, provision):
    token_id = provision(card_body(STEP_UP_CARD)).json()["tokenId"]

    response = api.post(f"/network-tokens/{token_id}/cryptograms")

    assert response.status_code == 422
    assert response.json()["errorName"] == "tokenNotActive"


def test_a_cryptogram_is_audited(api, alice, network_token):
    api.post(f"/network-tokens/{network_token['tokenId']}/cryptograms")

    row = AuditLog.objects.get(action="network_token.cryptogram")
    assert row.object_id == network_token["tokenId"] and row.merchant == alice
    assert row.result == AuditLog.SUCCESS and row.actor.startswith("api-key:")


def test_a_cryptogram_extends_a_vault_token_past_half_its_lifetime_in_live(api, network_token, vault_token, settings):
    settings.TOKENS_ENVIRONMENT = "live"
    soon = timezone.now() + timedelta(days=30)  # a year-long token with a month left
    Token.objects.filter(token_id=vault_token["tokenId"]).update(created_at=soon - timedelta(days=365), expires_at=soon)

    api.post(f"/network-tokens/{network_token['tokenId']}/cryptograms")

    extension = ExpiryExtension.objects.get(token__token_id=vault_token["tokenId"])
    assert extension.reason == "cryptogram"
    assert Token.objects.get(token_id=vault_token["tokenId"]).expires_at == soon + timedelta(days=4 * 365 + 1)


def test_a_cryptogram_never_extends_a_vault_token_in_try(api, network_token, vault_token, settings):
    # The seed: "For Try, expiry date extensions are not applicable."
    settings.TOKENS_ENVIRONMENT = "try"
    soon = timezone.now() + timedelta(hours=1)
    Token.objects.filter(token_id=vault_token["tokenId"]).update(expires_at=soon)

    assert api.post(f"/network-tokens/{network_token['tokenId']}/cryptograms").status_code == 200

    assert not ExpiryExtension.objects.exists()
    assert Token.objects.get(token_id=vault_token["tokenId"]).expires_at == soon


def test_a_cryptogram_leaves_a_vault_token_with_more_than_half_its_lifetime_alone(api, network_token, vault_token):
    api.post(f"/network-tokens/{network_token['tokenId']}/cryptograms")

    assert not ExpiryExtension.objects.exists()


# ------------------------------------------------------------------------------------------------------------
# The vault token links to its network token
# ------------------------------------------------------------------------------------------------------------
def test_a_vault_token_links_to_its_network_token_once_one_exists(api, vault_token, provision):
    path = path_of(vault_token["tokenPaymentInstrument"]["href"])
    assert "tokens:networkToken" not in api.get(path).json()["_links"]

    token_id = provision({"token": vault_token["tokenId"]}).json()["tokenId"]

    link = api.get(path).json()["_links"]["tokens:networkToken"]["href"]
    assert link == f"http://testserver/network-tokens/{token_id}"
    assert api.get(path_of(link)).json()["tokenId"] == token_id


def test_the_vault_token_link_follows_the_newest_network_token_that_is_not_deleted(api, alice, provision):
    card = vault_services.Card(MASTERCARD, "John Watson", 5, 2035)
    token = vault_services.card_tokenize(merchant=alice, card=card).token
    path = f"/tokens/{token.reference}"
    older = provision({"token": token.token_id}).json()["tokenId"]
    newer = provision({"token": token.token_id}).json()["tokenId"]
    assert api.get(path).json()["_links"]["tokens:networkToken"]["href"].endswith(newer)

    api.delete(f"/network-tokens/{newer}")

    assert api.get(path).json()["_links"]["tokens:networkToken"]["href"].endswith(older)
    api.delete(f"/network-tokens/{older}")
    assert "tokens:networkToken" not in api.get(path).json()["_links"]


def test_the_vault_token_link_costs_no_query(alice, vault_token, provision, rf, django_assert_num_queries):
    # The networks app keeps the link on the vault token's row (vault.services.tokens_network_token_set).
    from vault.api.representations import token_links

    provision({"token": vault_token["tokenId"]})
    token = Token.objects.get(token_id=vault_token["tokenId"])

    with django_assert_num_queries(0):
        links = token_links(rf.get("/"), token, conflict_pending=False)

    assert "tokens:networkToken" in links


# ------------------------------------------------------------------------------------------------------------
# Authentication, scope and isolation
# ------------------------------------------------------------------------------------------------------------
def test_a_key_without_the_network_tokens_scope_answers_403(alice, network_token):
    _, raw = merchant_services.api_key_create(merchant=alice, scopes=["tokens", "webhooks"], name="no-network-tokens")
    client = client_for(raw)
    token_id = network_token["tokenId"]

    responses = [
        client.get("/network-tokens/encryption-key"),
        client.post("/network-tokens", card_body(), format="json", HTTP_X_CORRELATION_ID=CORRELATION_ID),
        client.post("/network-tokens/async", card_body(), format="json", HTTP_X_CORRELATION_ID=CORRELATION_ID),
        client.post("/network-tokens/batches", {"items": [{"token": "ABCDEFGHJKLMNPQRSTU"}]}, format="json"),
        client.get(f"/network-tokens/{token_id}"),
        client.delete(f"/network-tokens/{token_id}"),
        client.post(f"/network-tokens/{token_id}/cryptograms"),
        client.post(f"/network-tokens/{token_id}/simulate-lifecycle", {"event": "SUSPENDED"}, format="json"),
    ]

    assert [r.status_code for r in responses] == [403] * len(responses)
    assert {r.json()["errorName"] for r in responses} == {"accessDenied"}
    assert NetworkToken.objects.get(token_id=token_id).status == "ACTIVE"


def test_no_api_key_answers_401(db):
    from rest_framework.test import APIClient

    response = APIClient().get("/network-tokens/encryption-key")

    assert response.status_code == 401
    assert response.json()["errorName"] == "accessDenied"


def test_bob_cannot_see_or_use_alices_network_token(bob_api, network_token, api):
    token_id = network_token["tokenId"]

    responses = [
        bob_api.get(f"/network-tokens/{token_id}"),
        bob_api.delete(f"/network-tokens/{token_id}"),
        bob_api.post(f"/network-tokens/{token_id}/cryptograms"),
        bob_api.post(f"/network-tokens/{token_id}/simulate-lifecycle", {"event": "SUSPENDED"}, format="json"),
    ]

    assert [(r.status_code, r.json()["errorName"]) for r in responses] == [(404, "resourceNotFound")] * 4
    assert api.get(f"/network-tokens/{token_id}").json()["status"] == "ACTIVE"
    assert not AuditLog.objects.filter(action="network_token.cryptogram").exists()


def test_bob_cannot_see_alices_request_or_batch(bob_api, provision, api, vault_token):
    request_id = provision(card_body(), path="/network-tokens/async").json()["requestId"]
    batch_id = api.post(
        "/network-tokens/batches", {"items": [{"token": vault_token["tokenId"]}]}, format="json"
    ).json()["id"]

    for path in (f"/network-tokens/requests/{request_id}", f"/network-tokens/batches/{batch_id}"):
        response = bob_api.get(path)
        assert response.status_code == 404, path
        assert response.json()["errorName"] == "resourceNotFound"


def test_bob_cannot_provision_from_alices_vault_token(provision, bob_api, vault_token):
    for reference in (vault_token["tokenId"], vault_token["tokenPaymentInstrument"]["href"]):
        for path in ("/network-tokens", "/network-tokens/async"):
            response = provision({"token": reference}, client=bob_api, path=path)
            assert response.status_code == 404, (reference, path)
            assert response.json()["errorName"] == "resourceNotFound"
    assert not NetworkToken.objects.exists() and not ProvisioningRequest.objects.exists()


# ------------------------------------------------------------------------------------------------------------
# OpenAPI
# ------------------------------------------------------------------------------------------------------------
def test_the_schema_describes_every_network_token_operation(client, db):
    paths = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()["paths"]

    assert "post" in paths["/network-tokens"] and "post" in paths["/network-tokens/async"]
    assert "get" in paths["/network-tokens/encryption-key"]
    assert "post" in paths["/network-tokens/batches"] and "get" in paths["/network-tokens/batches/{batch_id}"]
    assert "get" in paths["/network-tokens/requests/{request_id}"]
    assert {"get", "delete"} <= set(paths["/network-tokens/{token_id}"])
    assert "post" in paths["/network-tokens/{token_id}/cryptograms"]
    assert "post" in paths["/network-tokens/{token_id}/simulate-lifecycle"]
    create = paths["/network-tokens"]["post"]
    assert {"201", "400", "401", "403", "404", "422", "502", "504"} <= set(create["responses"])
    assert any(p["name"] == "X-Correlation-Id" and p["in"] == "header" and p["required"] for p in create["parameters"])
