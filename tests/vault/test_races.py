"""Concurrent requests for the same card end in one token: the database constraint decides, never Python."""

import threading

import pytest
from django.db import IntegrityError, connection

from tests.conftest import card_request, client_for
from vault import services
from vault.models import Token

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def race(raw_key: str, bodies: list[dict]) -> list[int]:
    """Send ``bodies`` to POST /tokens at once, one thread and one database connection each."""
    barrier = threading.Barrier(len(bodies))
    statuses: list[int] = [0] * len(bodies)

    def send(index: int):
        client = client_for(raw_key)
        client.raise_request_exception = False
        try:
            barrier.wait()
            statuses[index] = client.post("/tokens", bodies[index], format="json").status_code
        finally:
            connection.close()

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(bodies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


@pytest.mark.parametrize("namespace", [None, "SHOPPER_1"])
def test_fifty_concurrent_requests_for_one_card_make_exactly_one_token(alice, namespace):
    body = card_request(namespace=namespace) if namespace else card_request()
    statuses = race(alice.raw_key, [body] * 50)
    assert sorted(statuses) == [200] * 49 + [201]
    assert Token.objects.filter(merchant=alice, deleted_at__isnull=True).count() == 1


def test_concurrent_requests_with_differing_data_end_in_one_token_and_conflicts(alice):
    bodies = [card_request(cardHolderName=f"Holder {i % 2}") for i in range(20)]
    statuses = race(alice.raw_key, bodies)
    assert statuses.count(201) == 1
    assert set(statuses) <= {200, 201, 409} and 409 in statuses
    assert Token.objects.filter(merchant=alice).count() == 1


def test_concurrent_new_cards_cannot_push_a_namespace_past_sixteen(alice):
    numbers = [_luhn_number(f"411111111111{i:03d}") for i in range(24)]
    bodies = [card_request(cardNumber=number, namespace="FAMILY") for number in numbers]
    statuses = race(alice.raw_key, bodies)
    assert statuses.count(201) == 16
    assert statuses.count(400) == 8
    assert Token.objects.filter(namespace__name="FAMILY", deleted_at__isnull=True).count() == 16


def test_the_database_itself_refuses_a_second_live_token_for_the_same_card(alice):
    token = services.card_tokenize(
        merchant=alice, card=services.Card("4444333322221111", "Sherlock Holmes", 5, 2035)
    ).token
    duplicate = Token(
        merchant=alice,
        fingerprint=token.fingerprint,
        pan_ciphertext=token.pan_ciphertext,
        key_version=1,
        bin=token.bin,
        last_four=token.last_four,
        pan_length=16,
        brand="VISA",
        expires_at=token.expires_at,
    )
    with pytest.raises(IntegrityError):
        duplicate.save()


def _luhn_number(partial: str) -> str:
    from vault.cards import luhn_check_digit

    return partial + luhn_check_digit(partial)
