"""The API's card path on the ``pkcs11`` KEK provider: the data encryption keys and the fingerprint key wrapped in a
real HSM (the SoftHSM2 token of ``tests/vault/conftest.py``), a KEK rotation from one HSM key to another, and the HSM
going away and coming back while the API serves.

alice is a merchant tokenizing cards; carol is alice's payment processor, whose key may detokenize (tests/conftest.py).
The settings choose the pkcs11 provider as a server's environment would; each change makes this process start its
keys afresh, as a new server process would (``vault.keys.reset_custody``).
"""

import uuid

import pytest

from core.audit import Actor
from tests.conftest import MASTERCARD, VISA, VISA_2, card_request, path_of, wait_for
from vault import keys
from vault.models import DataKey, Token


@pytest.fixture
def hsm(softhsm, settings):
    """The pkcs11 provider on the test token, under a KEK of this test's own (made in the HSM); returns its label."""
    label = f"kek-{uuid.uuid4().hex[:8]}"
    softhsm.provider(label).create_kek()
    use_kek(softhsm, settings, label)
    return label


def use_kek(softhsm, settings, label: str) -> None:
    """This process's settings name the HSM's key ``label``: as a server restarted with them."""
    for name, value in softhsm.settings(label).items():
        setattr(settings, name, value)


def destroy_in_the_hsm(softhsm, label: str) -> None:
    """What an operator does with the HSM's own tools once no key is wrapped under ``label`` any more."""
    script = """
import sys
import pkcs11
from pkcs11 import KeyType, ObjectClass
module, token_label, label = sys.argv[1:4]
with pkcs11.lib(module).get_token(token_label=token_label).open(rw=True, user_pin=sys.stdin.read()) as session:
    session.get_key(ObjectClass.SECRET_KEY, KeyType.AES, label=label).destroy()
"""
    result = softhsm.script(script, label)
    assert result.returncode == 0, result.stderr


def href_of(response) -> str:
    assert response.status_code in (200, 201), response.content
    return response.json()["tokenPaymentInstrument"]["href"]


def detokenized(carol_api, href: str) -> str:
    response = carol_api.post(f"{path_of(href)}/detokenize")
    assert response.status_code == 200, response.content
    return response.json()["paymentInstrument"]["cardNumber"]


def test_a_card_tokenized_under_the_hsm_detokenizes(hsm, tokenize, carol_api):
    created = tokenize()

    assert created.status_code == 201, created.content
    assert detokenized(carol_api, href_of(created)) == VISA
    stored = DataKey.objects.filter(wrapped_key__isnull=False)
    assert {row.purpose for row in stored} == {DataKey.ENCRYPTION, DataKey.FINGERPRINT}
    assert {row.kek_id for row in stored} == {f"pkcs11:{hsm}"}
    assert tokenize().status_code == 200  # the same card again: the same token, by its fingerprint


def test_a_kek_rotation_in_the_hsm_keeps_every_card_and_fingerprint(softhsm, settings, hsm, tokenize, carol_api):
    numbers = [VISA, VISA_2, MASTERCARD]
    hrefs = [href_of(tokenize(cardNumber=number)) for number in numbers]
    keys.dek_create(actor=Actor("test"))  # a second DEK, for one more card: two DEKs to re-wrap
    hrefs.append(href_of(tokenize(cardNumber="5105105105105100")))
    numbers.append("5105105105105100")
    fingerprints = dict(Token.objects.values_list("token_id", "fingerprint"))
    newer = f"kek-{uuid.uuid4().hex[:8]}"
    softhsm.provider(newer).create_kek()

    use_kek(softhsm, settings, newer)  # the servers restarted with PKCS11_KEY_LABEL=<newer>, the old key still there
    keys.kek_rotate(actor=Actor("test"))
    destroy_in_the_hsm(softhsm, hsm)  # the old KEK gone for good
    use_kek(softhsm, settings, newer)  # a new process: nothing in memory, every key unwrapped under the newer KEK

    assert {row.kek_id for row in DataKey.objects.filter(wrapped_key__isnull=False)} == {f"pkcs11:{newer}"}
    assert DataKey.objects.filter(purpose=DataKey.ENCRYPTION).count() == 2
    assert [detokenized(carol_api, href) for href in hrefs] == numbers
    for number in numbers:
        assert tokenize(cardNumber=number).status_code == 200  # matched, not created again
    assert dict(Token.objects.values_list("token_id", "fingerprint")) == fingerprints


def test_the_hsm_going_away_answers_503_for_a_key_not_in_memory_and_serves_again_when_it_is_back(
    softhsm, settings, hsm, tokenize, carol_api, caplog
):
    older = href_of(tokenize(cardNumber=VISA))  # under DEK 1
    keys.dek_create(actor=Actor("test"))
    newer = href_of(tokenize(cardNumber=MASTERCARD))  # under DEK 2
    use_kek(softhsm, settings, hsm)  # a server process started afresh...
    assert detokenized(carol_api, newer) == MASTERCARD  # ...holding the fingerprint key and DEK 2 only

    with softhsm.unplugged():
        cached = carol_api.post(f"{path_of(newer)}/detokenize")
        created = tokenize(cardNumber=VISA_2)
        not_cached = carol_api.post(f"{path_of(older)}/detokenize")

    assert cached.status_code == 200 and cached.json()["paymentInstrument"]["cardNumber"] == MASTERCARD
    assert created.status_code == 201, created.content  # under DEK 2, in memory
    assert not_cached.status_code == 503, not_cached.content
    assert not_cached.json()["errorName"] == "serviceUnavailable"
    assert not_cached["Retry-After"]
    # Back: the HSM is asked again (at most every KEK_RETRY_SECONDS), a session opened anew, no restart.
    answer = wait_for(
        lambda: (r := carol_api.post(f"{path_of(older)}/detokenize")).status_code == 200 and r, timeout=10
    )
    assert answer.json()["paymentInstrument"]["cardNumber"] == VISA
    assert softhsm.pin not in caplog.text
    assert VISA not in caplog.text and MASTERCARD not in caplog.text


def test_tokenize_answers_503_while_the_hsm_is_away_from_a_server_that_holds_no_key_yet(
    softhsm, settings, hsm, tokenize
):
    assert tokenize().status_code == 201
    use_kek(softhsm, settings, hsm)  # a server process started during the outage

    with softhsm.unplugged():
        refused = tokenize(body=card_request(cardNumber=VISA_2))

    assert refused.status_code == 503, refused.content
    assert refused.json()["errorName"] == "serviceUnavailable"
    assert wait_for(lambda: tokenize(cardNumber=VISA_2).status_code == 201, timeout=10)
