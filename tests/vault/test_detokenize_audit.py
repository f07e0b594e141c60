"""Every detokenize attempt is audited with its result (DESIGN.md, "Security model"): the card released, and every
attempt that released nothing and why (no key, a key without the scope, another merchant's or an unknown token, the
rate limit, an error), in a row that outlives whatever the request rolled back and never holds card data.

Actors (tests/conftest.py): alice is a merchant whose default key (``api``) may not detokenize; carol is alice's payment
processor, the only key allowed to (``carol_api``); bob is another merchant, whose processor must get nothing of
alice's.
"""

import pytest

from config.settings.secrets import new_key
from core.models import AuditLog
from merchants import services as merchant_services
from merchants.models import Merchant
from tests.conftest import VISA, client_for, path_of

ORIGIN = "203.0.113.9"  # TEST-NET-3: the client address the rows must record


@pytest.fixture
def created(tokenize) -> dict:
    """alice's token for the seed's card (VISA 4444333322221111)."""
    response = tokenize()
    assert response.status_code == 201, response.content
    return response.json()


@pytest.fixture
def token_path(created) -> str:
    return path_of(created["tokenPaymentInstrument"]["href"])


@pytest.fixture
def bob_processor(bob):
    _, raw = merchant_services.api_key_create(merchant=bob, scopes=["tokens", "tokens:detokenize"], name="processor")
    return client_for(raw)


def attempts() -> list[AuditLog]:
    return list(AuditLog.objects.filter(action="token.detokenize").order_by("pk"))


def detokenize(client, path: str):
    return client.post(f"{path}/detokenize", REMOTE_ADDR=ORIGIN)


def assert_no_card_data(row: AuditLog) -> None:
    for value in (row.actor, row.object_type, row.object_id, row.origin, str(row.detail)):
        assert VISA not in value and VISA[-12:] not in value, value


@pytest.mark.pci("10.2.1.1")
@pytest.mark.pci("10.2.2")
def test_a_released_card_leaves_one_success_row(alice, created, carol_api, token_path):
    assert detokenize(carol_api, token_path).status_code == 200

    [row] = attempts()
    assert row.result == AuditLog.SUCCESS
    assert (row.merchant, row.object_type, row.object_id, row.origin) == (alice, "token", created["tokenId"], ORIGIN)
    assert row.actor.startswith("api-key:sk_")
    assert_no_card_data(row)


@pytest.mark.pci("10.2.1.4")
@pytest.mark.pci("10.2.2")
def test_a_key_without_the_scope_leaves_a_failure_row(alice, created, api, token_path):
    response = detokenize(api, token_path)

    assert response.status_code == 403
    [row] = attempts()
    assert row.result == AuditLog.FAILURE
    assert (row.merchant, row.object_type, row.object_id, row.origin) == (alice, "token", created["tokenId"], ORIGIN)
    assert row.actor == f"api-key:{alice.api_keys.get().prefix}"
    assert row.detail == {"reason": "the key lacks the tokens:detokenize scope", "status": 403}
    assert_no_card_data(row)


@pytest.mark.pci("10.2.1.4")
def test_another_merchants_token_leaves_a_failure_row_of_the_merchant_who_tried(
    bob, created, bob_processor, token_path
):
    response = detokenize(bob_processor, token_path)

    assert response.status_code == 404
    assert VISA not in response.content.decode()
    [row] = attempts()
    assert (row.result, row.merchant, row.origin) == (AuditLog.FAILURE, bob, ORIGIN)
    # Staff reading the trail see which token was tried; bob learns nothing from the answer.
    assert (row.object_type, row.object_id) == ("token", created["tokenId"])
    assert row.detail == {"reason": "no such token for this merchant", "status": 404}


@pytest.mark.pci("10.2.1.4")
@pytest.mark.parametrize(
    "reference",
    [
        "not-a-token",
        "A" * 32,
        VISA,  # a card number pasted where the token goes: refused, and not written down
    ],
)
def test_an_unknown_or_malformed_token_leaves_a_failure_row_without_the_reference(alice, carol_api, reference):
    response = detokenize(carol_api, f"/tokens/{reference}")

    assert response.status_code == 404
    [row] = attempts()
    assert (row.result, row.merchant, row.object_type, row.object_id) == (AuditLog.FAILURE, alice, "token", "")
    assert row.detail == {"reason": "no such token for this merchant", "status": 404}
    assert reference not in str(row.detail)
    assert_no_card_data(row)


@pytest.mark.pci("10.2.1.4")
def test_a_deleted_token_leaves_a_failure_row(created, api, carol_api, token_path):
    api.delete(token_path)

    assert detokenize(carol_api, token_path).status_code == 404
    [row] = attempts()
    assert (row.result, row.object_id) == (AuditLog.FAILURE, created["tokenId"])
    assert row.detail["reason"] == "no such token for this merchant"


@pytest.mark.pci("10.2.1.4")
def test_an_attempt_without_a_valid_key_leaves_a_failure_row(created, token_path):
    for client in (client_for("sk_nonsense"), client_for("")):
        assert detokenize(client, token_path).status_code == 401

    rows = attempts()
    assert [(row.result, row.actor, row.merchant, row.origin) for row in rows] == [
        (AuditLog.FAILURE, "anonymous", None, ORIGIN)
    ] * 2
    assert {row.object_id for row in rows} == {created["tokenId"]}
    assert rows[0].detail == {"reason": "no valid API key", "status": 401}


@pytest.mark.pci("10.2.1.4")
def test_an_attempt_refused_by_the_rate_limit_leaves_a_failure_row(alice, carol_api, token_path):
    Merchant.objects.filter(pk=alice.pk).update(card_data_rate_limit="1/minute")

    answers = [detokenize(carol_api, token_path).status_code for _ in range(2)]

    assert answers == [200, 429]
    assert [(row.result, row.detail) for row in attempts()] == [
        (AuditLog.SUCCESS, {}),
        (AuditLog.FAILURE, {"reason": "rate limited", "status": 429}),
    ]


@pytest.mark.pci("10.2.1.4")
def test_an_error_leaves_one_failure_row(settings, alice, tokenize, carol_api):
    # A server started with another KEK than the one the card's keys are wrapped under: 503, nothing released.
    path = path_of(tokenize(cardNumber="5555555555554444").json()["tokenPaymentInstrument"]["href"])
    settings.VAULT_KEK = new_key()

    response = detokenize(carol_api, path)

    assert response.status_code == 503
    [row] = attempts()
    assert (row.result, row.merchant, row.origin) == (AuditLog.FAILURE, alice, ORIGIN)
    assert row.detail["reason"] == "keys do not match the data"
