"""The token service provider (TSP) interface, ``TokenService``, and the simulator mechanics every network shares.

A token service promises:
- ``provision(request)`` returns a ``Provisioned`` token (``ACTIVE``, or ``INACTIVE`` when the issuer wants a step-up)
  or raises ``Declined`` (the issuer said no: final) or ``TspError`` (no answer: ``transient`` says whether trying
  again may help, ``timeout`` whether it was a timeout rather than an error answer).
- ``cryptogram(token_id=…)`` returns a fresh single-use cryptogram and its ECI, or raises ``TspError``.

A real integration subclasses ``TokenService`` and is named in ``TSP_PROVIDERS`` (``VISA=acme.tsp.VisaTokenService``);
lifecycle events it hears of reach the vault through ``networks.services.lifecycle_apply``. The simulators below
serve instead when ``TSP_SIMULATOR`` is on (``make run``, the tests), never by default in production.

The simulators behave like the real services, only locally:

**Issuer decisions** are fixed by the card number's last four digits, so integrations can test every path:
``…0002`` is declined, ``…0036`` needs a step-up (the token is created ``INACTIVE``), every other card is approved
(the public test cards among them).

**Latency and failures** come from the settings: ``TSP_LATENCY_MS`` (``"0"``, ``"250"`` or ``"1000-3000"``) and
``TSP_FAILURE_RATE`` (0 to 1: the share of calls that fail transiently, half of them as timeouts), unless a simulator
is made with its own (``latency_ms``, ``failure_rate``). Its draws come from its ``rng``: a seeded or scripted
``random.Random`` makes them repeatable.

**Token numbers** lie in each network's own token BIN range, pass the Luhn check and never equal the card number.
The **payment account reference** (PAR) is the same for the same card number, whatever the merchant or network.

**Deleted tokens stay deleted.** A network that reuses tokenIds (Visa, Amex) reuses only a live one: once a token is
deleted (by the merchant or by the network), the same request gets a new tokenId (``live_token_id``). A real TSP
remembers its deleted tokens; the simulators keep no state of their own and read it from the vault's copy of each
token (``NetworkToken``), which every deletion updates.
"""

import base64
import hashlib
import hmac
import random
import secrets
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from itertools import count

from django.conf import settings
from django.utils import timezone

from networks.models import NetworkToken
from vault import cards
from vault.keys import key_ring

DECLINE_SUFFIX = "0002"
STEP_UP_SUFFIX = "0036"
TOKEN_LIFETIME_YEARS = 3


class Declined(Exception):
    """The issuer refused to tokenize this card. Final."""


class TspError(Exception):
    """The TSP did not give an answer. ``transient``: worth retrying; ``timeout``: it did not answer in time."""

    def __init__(self, message: str, *, transient: bool = True, timeout: bool = False):
        super().__init__(message)
        self.transient = transient
        self.timeout = timeout


@dataclass(frozen=True)
class CardData:
    number: str
    expiry_month: int
    expiry_year: int
    holder_name: str = ""

    def __repr__(self):
        return f"CardData({cards.mask(self.number)})"


@dataclass(frozen=True)
class ProvisionRequest:
    merchant_id: str
    card: CardData
    account_id: str = ""
    email: str = ""


@dataclass(frozen=True)
class Provisioned:
    token_id: str
    token_number: str
    token_expiry_month: int
    token_expiry_year: int
    status: str  # ACTIVE or INACTIVE
    payment_account_reference: str

    def __repr__(self):
        return f"Provisioned({self.token_id}, {cards.mask(self.token_number)}, {self.status})"


def _simulator_key(purpose: str) -> bytes:
    # The simulators' own secrets, derived from the fingerprint key (HMAC of the purpose under it) so that stable ids
    # survive restarts. The key itself stays in the vault's ring, which gives its HMAC of any text.
    return bytes.fromhex(key_ring().fingerprint(purpose))


def keyed_digest(purpose: str, *parts: str) -> bytes:
    return hmac.new(_simulator_key(purpose), "\x1f".join(parts).encode(), hashlib.sha256).digest()


def digits_from(digest: bytes, count: int) -> str:
    return str(int.from_bytes(digest, "big"))[-count:].rjust(count, "0")


def live_token_id(token_id: Callable[[int], str]) -> str:
    """The first of ``token_id(0)``, ``token_id(1)``, … that is not a deleted token: a network's reuse rule makes
    generation 0, and each deletion moves its requests on to the next generation."""
    for generation in count():
        candidate = token_id(generation)
        if not NetworkToken.objects.filter(token_id=candidate, status=NetworkToken.DELETED).exists():
            return candidate
    raise AssertionError("unreachable")


class TokenService(ABC):
    """A network's token service (see the module's docstring for what each method promises)."""

    network: str  # VISA, MASTERCARD or AMEX
    requires_email: bool = False  # a provisioning without the shopper's email is refused before the call

    @abstractmethod
    def provision(self, request: ProvisionRequest) -> Provisioned:
        """A token for ``request.card``, or ``Declined``, or ``TspError``."""

    @abstractmethod
    def cryptogram(self, *, token_id: str) -> tuple[str, str]:
        """A fresh single-use cryptogram for ``token_id`` and its ECI, or ``TspError``."""


class SimulatedProvider(TokenService):
    """A network's TSP, simulated. Subclasses give the network's name, token BIN, ECI and tokenId rule."""

    token_bin: str
    token_length: int = 16
    eci: str
    par_prefix: str

    def __init__(
        self, *, rng: random.Random | None = None, failure_rate: float | None = None, latency_ms: str | None = None
    ):
        """``rng`` draws each call's latency and failure; ``failure_rate`` and ``latency_ms`` (as the settings spell
        them) hold for every call, where None reads ``TSP_FAILURE_RATE`` and ``TSP_LATENCY_MS`` at each call."""
        self.rng = rng or random.Random()
        self.failure_rate = failure_rate
        self.latency_ms = latency_ms

    @abstractmethod
    def token_id_for(self, request: ProvisionRequest) -> str:
        """The tokenId this network gives ``request`` (its reuse rule lives here)."""

    def provision(self, request: ProvisionRequest) -> Provisioned:
        self._network_round_trip()
        number = request.card.number
        if number.endswith(DECLINE_SUFFIX):
            raise Declined("The issuer declined to tokenize this card")
        token_id = self.token_id_for(request)
        expires = timezone.now().date()
        return Provisioned(
            token_id=token_id,
            token_number=self._token_number(token_id, number),
            token_expiry_month=expires.month,
            token_expiry_year=expires.year + TOKEN_LIFETIME_YEARS,
            status="INACTIVE" if number.endswith(STEP_UP_SUFFIX) else "ACTIVE",
            payment_account_reference=self.payment_account_reference(number),
        )

    def cryptogram(self, *, token_id: str) -> tuple[str, str]:
        self._network_round_trip()
        return base64.b64encode(secrets.token_bytes(20)).decode(), self.eci

    def payment_account_reference(self, number: str) -> str:
        # PAR: 29 characters, stable per card number across merchants and networks.
        body = base64.b32encode(keyed_digest("par", number)).decode()[:25]
        return f"{self.par_prefix}{body}"

    def _token_number(self, token_id: str, card_number: str) -> str:
        # Derived from the tokenId: a reused tokenId keeps its token number.
        for salt in range(100):
            body = digits_from(keyed_digest("dpan", token_id, str(salt)), self.token_length - len(self.token_bin) - 1)
            partial = self.token_bin + body
            candidate = partial + cards.luhn_check_digit(partial)
            if candidate != card_number:
                return candidate
        raise AssertionError("unreachable")

    def latency_seconds(self) -> float:
        spec = str(settings.TSP_LATENCY_MS if self.latency_ms is None else self.latency_ms).strip() or "0"
        low, _, high = spec.partition("-")
        low, high = float(low), float(high or low)
        return (low if low == high else self.rng.uniform(low, high)) / 1000

    def _network_round_trip(self) -> None:
        delay = self.latency_seconds()
        if delay:
            time.sleep(delay)
        failure_rate = settings.TSP_FAILURE_RATE if self.failure_rate is None else self.failure_rate
        if self.rng.random() < failure_rate:
            if self.rng.random() < 0.5:
                raise TspError("The token service did not answer in time", timeout=True)
            raise TspError("The token service is unavailable")
