"""No card number in the free text of a network-token request (issue 17, finding 8): ``accountId``, ``email``, a
batch item's ``correlationId`` and the holder name of a card, sent plain or encrypted, are stored and shown back in
clear, so a card number there is refused with 400 ``fieldContainsCardNumber`` naming the field, never echoing it.

alice (the ``api`` fixture) is the merchant asking for network tokens.
"""

import json

import pytest
from jwcrypto import jwe as client_jwe
from jwcrypto import jwk as client_jwk

from networks.models import Batch, NetworkToken, ProvisioningRequest
from tests.conftest import MASTERCARD, VISA, VISA_2

CARD_IN_TEXT = "fieldContainsCardNumber"
CARD = {"cardNumber": MASTERCARD, "cardExpiryDate": {"month": 5, "year": 2035}, "cardHolderName": "Sherlock Holmes"}


def refusal(response) -> list[tuple[str, str]]:
    assert response.status_code == 400, (response.status_code, response.content[:300])
    body = response.json()
    assert body["errorName"] == "bodyDoesNotMatchSchema", body
    return [(item["errorName"], item["jsonPath"]) for item in body["validationErrors"]]


def provision(api, body, path="/network-tokens"):
    return api.post(path, body, format="json", HTTP_X_CORRELATION_ID="free-text")


@pytest.mark.pci("3.5.1")
@pytest.mark.parametrize("path", ["/network-tokens", "/network-tokens/async"])
@pytest.mark.parametrize(
    ("changes", "where"),
    [
        ({"accountId": VISA_2}, "$.accountId"),
        ({"accountId": "shopper 4111 1111 1111 1111"}, "$.accountId"),
        ({"email": f"{VISA_2}@example.com"}, "$.email"),
        ({"card": {**CARD, "cardHolderName": f"Sherlock {VISA_2}"}}, "$.card.cardHolderName"),
    ],
    ids=["account-id", "account-id-grouped", "email", "card-holder-name"],
)
def test_a_card_number_in_a_provisioning_request_is_refused_naming_the_field(api, path, changes, where):
    response = provision(api, {"card": CARD, **changes}, path)

    assert refusal(response) == [(CARD_IN_TEXT, where)]
    assert VISA_2 not in response.content.decode() and "4111 1111" not in response.content.decode()
    assert not NetworkToken.objects.exists() and not ProvisioningRequest.objects.exists()


@pytest.mark.pci("3.5.1")
def test_a_card_number_in_the_holder_name_of_an_encrypted_card_is_refused(api):
    jwk = api.get("/network-tokens/encryption-key").json()["keys"][0]
    plaintext = json.dumps({**CARD, "cardHolderName": f"Sherlock {VISA_2}"}).encode()
    token = client_jwe.JWE(
        plaintext, protected=json.dumps({"alg": "RSA-OAEP-256", "enc": "A256GCM", "kid": jwk["kid"]})
    )
    token.add_recipient(client_jwk.JWK(**jwk))

    response = provision(api, {"encryptedData": token.serialize(compact=True)})

    assert refusal(response) == [("fieldHasInvalidValue", "$.encryptedData")]
    assert f"{CARD_IN_TEXT} at $.cardHolderName" in response.json()["validationErrors"][0]["message"]
    assert VISA_2 not in response.content.decode()


@pytest.mark.pci("3.5.1")
@pytest.mark.parametrize(
    ("item", "where"),
    [
        ({"token": "ABCDEFGHJKLMNPQRSTU", "correlationId": VISA_2}, "$.items[1].correlationId"),
        ({"token": "ABCDEFGHJKLMNPQRSTU", "accountId": f"acct-{VISA_2}"}, "$.items[1].accountId"),
        ({"token": "ABCDEFGHJKLMNPQRSTU", "email": f"x.{VISA_2}@example.com"}, "$.items[1].email"),
    ],
    ids=["correlation-id", "account-id", "email"],
)
def test_a_card_number_in_a_batch_item_is_refused_naming_the_item_and_field(api, db, item, where):
    items = [{"token": "ABCDEFGHJKLMNPQRSTU", "correlationId": "fine"}, item]

    response = api.post("/network-tokens/batches", {"items": items}, format="json")

    assert refusal(response) == [(CARD_IN_TEXT, where)]
    assert VISA_2 not in response.content.decode()
    assert not Batch.objects.exists()


def test_a_uuid_correlation_id_and_a_numeric_account_id_without_a_card_number_are_taken(api, db):
    # The middle groups of this uuid (1007 4123 8123) pass the Luhn check: dashes within a word join nothing.
    item = {"token": "ABCDEFGHJKLMNPQRSTU", "correlationId": "9b2e0c4a-1007-4123-8123-a3f5c2d1e0b9"}

    response = api.post("/network-tokens/batches", {"items": [{**item, "accountId": VISA[:-1] + "2"}]}, format="json")

    assert response.status_code == 202, response.content
