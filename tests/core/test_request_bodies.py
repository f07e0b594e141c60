"""Request bodies are bounded before they are parsed (DESIGN.md, "Security model"; issue 17, finding 7): a body larger
than ``API_MAX_BODY_BYTES`` is 413 ``bodyIsTooLarge`` without being read, and one nesting arrays and objects deeper
than the API's limit is 400 ``bodyIsNotJson`` instead of a parser recursing until it breaks. A card encrypted as a JWE
is JSON inside JSON: its plaintext is bounded the same way.

alice (the ``api`` fixture) is the merchant sending the bodies: the limits hold for authenticated requests too.
"""

import json

import pytest
from jwcrypto import jwe as client_jwe
from jwcrypto import jwk as client_jwk

from core.http import MAX_DEPTH
from networks.models import Batch, NetworkToken
from tests.conftest import SHERLOCK
from vault.models import Token


def error_of(response, status: int, name: str) -> dict:
    assert response.status_code == status, (response.status_code, response.content[:300])
    body = response.json()
    assert body["errorName"] == name, body
    assert body["message"], body
    return body


def post_raw(api, data: bytes | str, path: str = "/tokens", **extra):
    return api.post(path, data=data, content_type="application/json", **extra)


def nested(depth: int, inner: str = "1") -> str:
    """``inner`` inside ``depth`` arrays and objects, alternately: ``{"a":[{"a":[1]}]}``."""
    opening = "".join('{"a":' if level % 2 == 0 else "[" for level in range(depth))
    closing = "".join("}" if level % 2 == 0 else "]" for level in reversed(range(depth)))
    return opening + inner + closing


class ClientBody:
    """A request body as the server's socket gives it (the WSGI input): ``size`` bytes of JSON whitespace, produced as
    they are read and counted, so a test sees how much of a huge body the server read."""

    def __init__(self, size: int):
        self.size = size
        self.consumed = 0

    def read(self, size: int = -1) -> bytes:
        left = self.size - self.consumed
        size = left if size is None or size < 0 else min(size, left)
        self.consumed += size
        return b" " * size

    def readline(self, size: int = -1) -> bytes:
        return self.read(size)


# ------------------------------------------------------------------------------------------------------------
# Size
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.pci("6.2.4")
def test_a_60_mb_body_is_refused_413_without_being_read(api, settings):
    settings.API_MAX_BODY_BYTES = 64 * 1024
    body = ClientBody(60 * 1024 * 1024)

    response = api.generic(
        "POST", "/tokens", content_type="application/json", CONTENT_LENGTH=str(body.size), **{"wsgi.input": body}
    )

    error = error_of(response, 413, "bodyIsTooLarge")
    assert "validationErrors" not in error
    assert body.consumed <= settings.API_MAX_BODY_BYTES
    assert not Token.objects.exists()


@pytest.mark.pci("6.2.4")
def test_a_body_one_byte_over_the_limit_is_413_and_one_at_the_limit_is_served(api, settings):
    body = json.dumps(SHERLOCK)
    settings.API_MAX_BODY_BYTES = len(body) + 10

    over = post_raw(api, body + " " * 11)
    at = post_raw(api, body + " " * 10)

    error_of(over, 413, "bodyIsTooLarge")
    assert at.status_code == 201, at.content
    assert Token.objects.count() == 1


def test_the_limit_is_said_in_the_message_in_bytes(api, settings):
    settings.API_MAX_BODY_BYTES = 1000

    error = error_of(post_raw(api, json.dumps(SHERLOCK) + " " * 1000), 413, "bodyIsTooLarge")

    assert "1,000 bytes" in error["message"]


def test_the_default_limit_takes_a_batch_of_10000_items_with_every_field_at_its_longest(api, db):
    # 64 + "@" + 63 + "." + 63 + "." + 57 + ".com": an address of 254 characters, the longest the field takes.
    email = "a" * 64 + "@" + "b" * 63 + "." + "c" * 63 + "." + "d" * 57 + ".com"
    item = {"token": "t" * 200, "accountId": "a" * 64, "email": email, "correlationId": "c" * 36}
    items = [item] * 10_000
    items[-1] = {**item, "colour": "red"}  # refused for that, so the test writes no 10,000 rows
    assert len(json.dumps({"items": items})) > 6_000_000

    response = api.post("/network-tokens/batches", {"items": items}, format="json")

    body = error_of(response, 400, "bodyDoesNotMatchSchema")
    assert [(e["errorName"], e["jsonPath"]) for e in body["validationErrors"]] == [
        ("unrecognizedField", "$.items[9999].colour")
    ]
    assert not Batch.objects.exists()


# ------------------------------------------------------------------------------------------------------------
# Nesting
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.pci("6.2.4")
@pytest.mark.parametrize(
    "data",
    ["[" * 1000, "[" * 1000 + "]" * 1000, nested(1000), '{"description": ' + nested(5000) + "}"],
    ids=["1000-open-brackets", "1000-deep-array", "1000-deep-objects-and-arrays", "5000-deep-in-a-field"],
)
def test_a_deeply_nested_body_is_400_body_is_not_json(api, data):
    body = error_of(post_raw(api, data), 400, "bodyIsNotJson")

    assert "validationErrors" not in body
    assert not Token.objects.exists()


def test_a_body_nested_one_level_too_deep_says_so(api):
    body = error_of(post_raw(api, nested(MAX_DEPTH + 1)), 400, "bodyIsNotJson")

    assert f"more than {MAX_DEPTH}" in body["message"]


def test_a_body_nested_to_the_limit_is_parsed_and_judged_by_its_schema(api):
    body = error_of(post_raw(api, nested(MAX_DEPTH)), 400, "bodyDoesNotMatchSchema")

    assert sorted((e["errorName"], e["jsonPath"]) for e in body["validationErrors"]) == [
        ("fieldIsMissing", "$.paymentInstrument"),
        ("unrecognizedField", "$.a"),
    ]


def test_brackets_and_escaped_quotes_inside_strings_are_text_not_nesting(api):
    body = json.loads(json.dumps(SHERLOCK))
    body["description"] = '[[[[{{{{\\"' * 20
    body["paymentInstrument"]["cardHolderName"] = '"]]]]' * 40

    response = post_raw(api, json.dumps(body))

    assert response.status_code == 201, response.content
    assert response.json()["description"] == body["description"]


@pytest.mark.parametrize(
    "data",
    ["]", "[}", '{"a": [}', '["unterminated', "[" * 40 + "]" * 39],
    ids=["lone-close", "mismatched", "mismatched-inside", "unterminated-string", "unclosed-deep"],
)
def test_unbalanced_brackets_are_plain_bodies_that_are_not_json(api, data):
    body = error_of(post_raw(api, data), 400, "bodyIsNotJson")

    assert body["message"] == "The body provided is not valid JSON"


def test_a_body_in_utf16_is_still_read_as_before(api):
    response = post_raw(api, json.dumps(SHERLOCK).encode("utf-16"))

    assert response.status_code == 201, response.content


# ------------------------------------------------------------------------------------------------------------
# The plaintext of an encrypted card
# ------------------------------------------------------------------------------------------------------------
def encrypted(api, plaintext: bytes) -> str:
    jwk = api.get("/network-tokens/encryption-key").json()["keys"][0]
    token = client_jwe.JWE(
        plaintext, protected=json.dumps({"alg": "RSA-OAEP-256", "enc": "A256GCM", "kid": jwk["kid"]})
    )
    token.add_recipient(client_jwk.JWK(**jwk))
    return token.serialize(compact=True)


@pytest.mark.pci("6.2.4")
@pytest.mark.parametrize("plaintext", [b"[" * 1000, nested(1000).encode()], ids=["open-brackets", "deep"])
def test_a_deeply_nested_encrypted_card_is_400_at_encrypted_data(api, plaintext):
    response = api.post(
        "/network-tokens",
        {"encryptedData": encrypted(api, plaintext)},
        format="json",
        HTTP_X_CORRELATION_ID="deep",
    )

    body = error_of(response, 400, "bodyDoesNotMatchSchema")
    assert [(e["errorName"], e["jsonPath"]) for e in body["validationErrors"]] == [
        ("fieldHasInvalidValue", "$.encryptedData")
    ]
    assert not NetworkToken.objects.exists()
