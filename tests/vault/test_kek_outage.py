"""The KEK's provider out of reach (an HSM whose link drops): card operations needing a key not in memory answer 503
``serviceUnavailable`` and come back by themselves once it answers; what is in memory keeps working; nothing else
stops; one log line when the outage starts and one when it ends.

``NetworkHsm`` stands for an HSM across a network: the KEK provider of the contract (``vault.kek``), plugged in as
an installation plugs its own key manager (``VAULT_KEK_PROVIDER`` naming its class), whose link the test cuts. The
tests with a real HSM (SoftHSM2 unplugged) are the pkcs11 provider's (tests/vault/test_kek_pkcs11*.py).

alice is a merchant tokenizing cards; carol is her payment processor, who detokenizes.
"""

import base64
import logging

import pytest
from django.conf import settings as django_settings
from rest_framework.test import APIClient

from core.audit import SYSTEM
from tests.conftest import AMEX, MASTERCARD, VISA, VISA_2, path_of, wait_for
from vault import keys
from vault.crypto import check_value
from vault.kek import KekUnavailable
from vault.kek.local import LocalProvider
from vault.models import DataKey, Token

UNREACHABLE = {
    "errorName": "serviceUnavailable",
    "message": "The keys of card data cannot be reached just now; retry later",
}


class NetworkHsm(LocalProvider):
    """A KEK provider across a network: ``link_up`` is the network."""

    name = "network-hsm"
    link_up = True

    def __init__(self):
        super().__init__(base64.b64decode(django_settings.VAULT_KEK))

    def wrap(self, key):
        self._through_the_link()
        return super().wrap(key)

    def unwrap(self, kek_id, wrapped):
        self._through_the_link()
        return super().unwrap(kek_id, wrapped)

    def _through_the_link(self):
        if not NetworkHsm.link_up:
            raise KekUnavailable("the HSM does not answer (connection timed out)")


@pytest.fixture
def hsm(settings):
    """This server's KEK in NetworkHsm; the link up, and up again once the test ends."""
    settings.VAULT_KEK_PROVIDER = f"{__name__}.NetworkHsm"
    NetworkHsm.link_up = True
    yield NetworkHsm
    NetworkHsm.link_up = True


def restart(settings):
    """This server restarted: its settings read again, no key in memory."""
    settings.VAULT_KEK_PROVIDER = settings.VAULT_KEK_PROVIDER


def href(response) -> str:
    return path_of(response.json()["tokenPaymentInstrument"]["href"])


def outage_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "vault.keys" and "KEK provider" in r.getMessage()]


@pytest.mark.pci("3.6.1")
def test_an_hsm_out_of_reach_fails_only_what_needs_a_key_not_in_memory_and_it_recovers_by_itself(
    hsm, settings, tokenize, carol_api, api, caplog
):
    under_1 = href(tokenize(cardNumber=VISA))
    keys.dek_create(actor=SYSTEM)
    under_2 = href(tokenize(cardNumber=MASTERCARD))
    restart(settings)
    assert tokenize(cardNumber=AMEX).status_code == 201  # in memory now: the fingerprint key and DEK 2, not DEK 1

    with caplog.at_level(logging.INFO):
        hsm.link_up = False
        # What is in memory keeps working: tokenize, again and anew, and detokenize under DEK 2.
        assert tokenize(cardNumber=MASTERCARD).status_code == 200
        assert tokenize(cardNumber=VISA_2).status_code == 201
        assert carol_api.post(f"{under_2}/detokenize").status_code == 200
        # A card under DEK 1, not in memory: 503, for every try while the HSM is away.
        answers = [carol_api.post(f"{under_1}/detokenize") for _ in range(3)]
        # Nothing else stops: the token's page, the webhooks, the health of this server (it holds its keys).
        assert api.get(under_1).status_code == 200
        assert api.get("/webhook-endpoints").status_code == 200
        assert APIClient().get("/readyz").json()["checks"]["keys"] == "ok"

        hsm.link_up = True
        back = wait_for(lambda: (answer := carol_api.post(f"{under_1}/detokenize")).status_code == 200 and answer)

    for answer in answers:
        assert answer.status_code == 503 and answer["Retry-After"] == "1"
        assert answer.json() == {**UNREACHABLE, "requestId": answer.headers["X-Request-Id"]}
    assert back.json()["paymentInstrument"]["cardNumber"] == VISA
    said = outage_lines(caplog)
    assert len(said) == 2  # when it went, and when it came back: not once per request
    assert said[0].startswith("the KEK provider cannot unwrap keys (the HSM does not answer")
    assert said[1] == "the KEK provider unwraps keys again: card operations resume"


def test_a_server_started_while_the_hsm_is_away_answers_503_and_serves_once_it_is_back(hsm, settings, tokenize):
    assert tokenize(cardNumber=VISA).status_code == 201
    restart(settings)
    hsm.link_up = False

    refused = tokenize(cardNumber=MASTERCARD)
    health = APIClient().get("/readyz")

    assert refused.status_code == 503
    assert refused.json() == {**UNREACHABLE, "requestId": refused.headers["X-Request-Id"]}
    assert health.status_code == 503 and health.json()["checks"]["keys"] == "down"  # it cannot serve a card
    hsm.link_up = True
    wait_for(lambda: tokenize(cardNumber=MASTERCARD).status_code == 201)
    assert Token.objects.count() == 2


def test_a_first_card_while_the_hsm_is_away_stores_no_key_and_answers_503(hsm, tokenize):
    hsm.link_up = False

    refused = tokenize()
    assert refused.json() == {**UNREACHABLE, "requestId": refused.headers["X-Request-Id"]}
    assert not DataKey.objects.exists() and not Token.objects.exists()


def test_a_new_dek_the_hsm_cannot_unwrap_yet_leaves_the_server_encrypting_under_the_one_it_holds(
    hsm, settings, tokenize
):
    settings.VAULT_KEY_CHECK_SECONDS = 0
    assert tokenize(cardNumber=VISA).status_code == 201
    # Another server starts DEK 2 (its HSM link up), while this one's is down.
    dek_2 = bytes(range(32))
    kek_id, wrapped = LocalProvider(base64.b64decode(settings.VAULT_KEK)).wrap(dek_2)
    DataKey.objects.create(
        purpose="encryption", version=2, wrapped_key=wrapped, kek_id=kek_id, check_value=check_value(dek_2)
    )
    hsm.link_up = False

    kept = tokenize(cardNumber=MASTERCARD)

    assert kept.status_code == 201 and Token.objects.get(token_id=kept.json()["tokenId"]).key_version == 1
    hsm.link_up = True
    wait_for(lambda: keys.key_ring().active_version == 2)
    assert Token.objects.get(token_id=tokenize(cardNumber=AMEX).json()["tokenId"]).key_version == 2


def test_the_cryptoperiod_s_new_dek_waits_for_the_hsm_and_the_server_goes_on_meanwhile(hsm, settings, tokenize, caplog):
    settings.VAULT_KEY_CHECK_SECONDS, settings.VAULT_DEK_MAX_USES = 0, 1
    assert tokenize(cardNumber=VISA).status_code == 201
    hsm.link_up = False

    with caplog.at_level(logging.WARNING):
        assert tokenize(cardNumber=MASTERCARD).status_code == 201  # a new DEK is due: it cannot be wrapped now

    assert not DataKey.objects.filter(version=2).exists()
    assert any("a new data encryption key is due" in r.getMessage() for r in caplog.records)
    hsm.link_up = True
    assert tokenize(cardNumber=AMEX).status_code == 201
    assert DataKey.objects.filter(version=2).exists()
