"""API fuzzing: Schemathesis against the live OpenAPI schema, with every check it has.

The Schemathesis engine (the one behind ``schemathesis run``) loads ``/api/schema/`` from the API served over HTTP
on loopback and sends its requests as alice. It runs every phase: coverage (boundary values and every kind of
invalid value for each parameter and body field, undeclared methods, missing headers and credentials), fuzzing
(valid and invalid data drawn at random), and stateful sequences whose links it infers from the schema (create,
then read, change, delete what was created, then read it again). Every response is judged by every built-in check:
no 5xx, only documented status codes, content types, headers and body schemas, valid data accepted and invalid data
rejected, missing required headers refused, undeclared methods answered 405 with ``Allow``, deleted resources gone,
created ones reachable, credentials enforced, no response hanging past ``HANG_SECONDS``, and an object read
with alice's key not readable with bob's. One check of ours is added, ``no_other_merchants_data``.

Path parameters, ``?tokenId=``, ``?namespace=``, card numbers and the ``token`` of a network-token request are drawn
half of the time from real values (Schemathesis dictionaries): alice's objects, so requests get past the 404 of a
made-up id, and bob's, so every operation is also tried on objects alice must not reach. A capture session's
``clientSecret`` is drawn the same way from alice's sessions' secrets, so that a card gets past the 401 of a made-up
secret (to any session, bob's included: his secrets are never drawn). Any string or integer is now and then one of a few
values known to break things (``TROUBLE``).

What no JSON Schema can say is made true of the data that claims to be valid (``BusinessRules``, a ``map_case`` hook on
positive cases only): a card number passes the Luhn check, a card expiry and a token expiry are in the future, a webhook
URL is a loopback one (the SSRF guard would resolve any other, here to nothing public), ``encryptedData`` is a card
really encrypted to the API's key, a capture session's origin is one a browser could have, and a forward goes under its
destination with headers a request can carry and the card's number in its body. Negative cases are left as drawn. The
operations whose documented 422 depends on the state of what they act on (a network token already deleted or suspended,
a card its network does not support) may answer it to valid data.

Bounds: ``FUZZ_EXAMPLES`` examples per operation in the fuzzing phase and as many stateful scenarios; the coverage
phase is finite by nature. ``MAX_RUN_SECONDS`` is a ceiling that fails the test, never one that quietly cuts the run
short. The seed is printed with any failure and ``FUZZ_SEED=<seed>`` replays the run; ``FUZZ_SEED=random`` draws new
data each run.

The broker is outside the product: the shared ``broker`` stub (tests/conftest.py) records what is queued, so
requests that queue work (async network tokens, batches, webhook deliveries) stop at the queue. The payment provider
is outside it too: every URL a valid request gives (webhook endpoints, forward destinations) leads to ``provider``,
a loopback server that echoes what it gets, so a forward's answer holds the card number it was sent unless the vault
masks it (``no_other_merchants_data`` looks).
"""

import contextlib
import itertools
import json
import os
import random
import re
import socket
import time
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from types import SimpleNamespace

import pytest
import schemathesis
from django.core.servers.basehttp import ThreadedWSGIServer
from django.test.testcases import LiveServerThread
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator
from jwcrypto import jwe as client_jwe
from jwcrypto import jwk as client_jwk
from schemathesis.engine import Status, StopReason, events, from_schema

from core.outbound.client import HEADER_NAME, HEADER_VALUE, OWN_HEADERS
from merchants import services as merchant_services
from merchants.models import SCOPES
from networks.models import NetworkToken
from notifications.models import WebhookEndpoint
from tests.conftest import JCB, MASTERCARD, VISA, VISA_2, card_request, client_for
from tests.receiver import Receiver, Reply
from vault.cards import brand_of
from vault.models import ForwardDestination, Token

# make test replays one seed, so that its verdict is the code's and not the draw's; FUZZ_SEED=random explores (a new
# seed each run, printed), FUZZ_SEED=<seed> replays one. 13 random runs found one gap, in the test's own data.
FIXED_SEED = 8204399526216384751
_seed = os.environ.get("FUZZ_SEED", "")
SEED = random.getrandbits(64) if _seed == "random" else int(_seed) if _seed else FIXED_SEED
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "60"))
# A request this slow hangs; speed itself is make bench's to judge (a shared CI machine once took 5 s on a tokenize).
HANG_SECONDS = 60
MAX_RUN_SECONDS = 900  # 583 s seen on a loaded machine once capture added three operations
CORRELATION = {"HTTP_X_CORRELATION_ID": "fuzz-setup"}
# A loopback receiver nobody listens on: nothing is delivered anyway, the broker being stubbed.
HOOK = "http://127.0.0.1:9/fuzz"
# Origins a capture session takes: not every string the schema's pattern admits is one (a host is DNS labels, a port
# at most 65535), which valid data is made of.
ORIGINS = ["https://shop.example", "https://checkout.shop.example:8443", "http://localhost:3000"]
SHOP = ORIGINS[0]
# Cards alice's requests may carry (dictionaries). Bob also holds JCB, which alice never sends: seeing it would
# mean bob's card reached alice.
CARDS = [VISA, VISA_2, MASTERCARD]
BOB_ONLY_CARD = JCB

# Card numbers as they could leak: 12 to 19 digits standing alone (not inside a longer word, as in a reference).
DIGIT_RUN = re.compile(r"(?<![0-9A-Za-z])[0-9]{12,19}(?![0-9A-Za-z])")
# The only answers that may carry a full number: the card to a detokenize key, the network token number.
FULL_NUMBER_ANSWERS = re.compile(r"^/tokens/[^/]+/detokenize$|^/network-tokens/[^/]+/cryptograms$")


# Values that break parsers, databases and arithmetic, mixed into generated strings and integers: a NUL byte
# (PostgreSQL text refuses it), SQL and path metacharacters, characters outside the BMP, combining marks, a long
# string; integers at and past the 32- and 64-bit limits (OFFSET, LIMIT, PositiveIntegerField).
TROUBLE = {
    "string": ["a\x00b", "\x00", "' OR '1'='1", "%", "%00", "../..", "\\", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "é", "x" * 5000],
    "integer": [0, -1, 2**31 - 1, 2**31, 2**63 - 1, 2**63, 2**64, 10**30, -(2**63) - 1],
}


# Operations whose documented 422 (a business rule on the state of what they act on) valid data may meet.
STATE_DEPENDENT_422 = [
    "network_tokens_create",
    "network_tokens_create_async",
    "network_token_delete",
    "network_token_cryptogram_create",
    "network_token_simulate_lifecycle",
    "forward",  # its network token deleted or suspended meanwhile: tokenNotActive
]


def luhn_valid(number: str) -> bool:
    total = 0
    for index, digit in enumerate(reversed(number)):
        value = int(digit) * (2 if index % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


# ------------------------------------------------------------------------------------------------------------
# Actors: alice fuzzes with a key holding every scope. bob is another merchant with every scope, a token of one of
# alice's cards and one of a card of his own, a webhook endpoint, a network token, a request and a batch: alice
# must never see or change any of them.
# ------------------------------------------------------------------------------------------------------------
@dataclass
class Merchant:
    key: str
    token_ids: list[str] = field(default_factory=list)
    references: list[str] = field(default_factory=list)
    endpoint_ids: list[str] = field(default_factory=list)
    event_ids: list[str] = field(default_factory=list)
    network_token_ids: list[str] = field(default_factory=list)
    request_ids: list[str] = field(default_factory=list)
    batch_ids: list[str] = field(default_factory=list)
    destination_ids: list[str] = field(default_factory=list)
    capture_session_ids: list[str] = field(default_factory=list)
    capture_secrets: list[str] = field(default_factory=list)

    @property
    def object_ids(self) -> set[str]:
        return {
            *self.token_ids,
            *self.references,
            *self.endpoint_ids,
            *self.event_ids,
            *self.network_token_ids,
            *self.request_ids,
            *self.batch_ids,
            *self.destination_ids,
            *self.capture_session_ids,
        }


def merchant_with_objects(name: str, cards: list[str], *, provider: str) -> Merchant:
    """A merchant with every scope and, made through the API: a webhook endpoint, a forward destination at
    ``provider``, a token per card (the first in namespace ``fuzz``, the last with a pending conflict), an ACTIVE
    network token of the first card, an asynchronous network-token request, a batch and two capture sessions."""
    _, key = merchant_services.merchant_create(name=name, scopes=list(SCOPES))
    client = client_for(key)
    merchant = Merchant(key=key)
    endpoint = client.post("/webhook-endpoints", {"url": HOOK}, format="json")
    assert endpoint.status_code == 201, endpoint.content
    merchant.endpoint_ids.append(endpoint.json()["id"])
    destination = client.post(
        "/forward-destinations", {"name": "PSP", "url": provider, "credentials": {"apiKey": "sk_fuzz"}}, format="json"
    )
    assert destination.status_code == 201, destination.content
    merchant.destination_ids.append(destination.json()["id"])
    for _ in range(2):
        session = client.post("/capture-sessions", {"origin": SHOP}, format="json")
        assert session.status_code == 201, session.content
        merchant.capture_session_ids.append(session.json()["id"])
        merchant.capture_secrets.append(session.json()["clientSecret"])
    for index, number in enumerate(cards):
        body = card_request(cardNumber=number, **({"namespace": "fuzz"} if index == 0 else {}))
        created = client.post("/tokens", body, format="json")
        assert created.status_code == 201, created.content
        merchant.token_ids.append(created.json()["tokenId"])
        merchant.references.append(created.json()["tokenPaymentInstrument"]["href"].rsplit("/", 1)[1])
    conflict = client.post("/tokens", card_request(cardNumber=cards[-1], cardHolderName="John Watson"), format="json")
    assert conflict.status_code == 409, conflict.content
    first = {"token": merchant.token_ids[0]}
    network_token = client.post("/network-tokens", first, format="json", **CORRELATION)
    assert network_token.status_code == 201, network_token.content
    merchant.network_token_ids.append(network_token.json()["tokenId"])
    accepted = client.post("/network-tokens/async", first, format="json", **CORRELATION)
    assert accepted.status_code == 202, accepted.content
    merchant.request_ids.append(accepted.json()["requestId"])
    batch = client.post("/network-tokens/batches", {"items": [first]}, format="json")
    assert batch.status_code == 202, batch.content
    merchant.batch_ids.append(batch.json()["id"])
    merchant.event_ids.extend(event["id"] for event in client.get("/events").json()["_embedded"]["events"])
    return merchant


def objects_of(merchant: Merchant) -> dict:
    """What alice's requests must leave as it is."""
    return {
        "tokens": sorted(
            Token.objects.filter(token_id__in=merchant.token_ids, deleted_at__isnull=True).values_list(
                "token_id",
                "description",
                "card_holder_name",
                "expiry_month",
                "expiry_year",
                "billing_address",
                "scheme_transaction_reference",
                "expires_at",
            )
        ),
        "webhook endpoints": sorted(
            WebhookEndpoint.objects.filter(public_id__in=merchant.endpoint_ids).values_list(
                "public_id",
                "url",
                "description",
                "event_types",
                "is_enabled",
                "secrets_ciphertext",
            )
        ),
        "network tokens": sorted(
            NetworkToken.objects.filter(token_id__in=merchant.network_token_ids).values_list("token_id", "status")
        ),
        "forward destinations": sorted(
            ForwardDestination.objects.filter(public_id__in=merchant.destination_ids).values_list(
                "public_id", "name", "url", "description", "is_enabled", "credentials_ciphertext"
            )
        ),
    }


# ------------------------------------------------------------------------------------------------------------
# Our check
# ------------------------------------------------------------------------------------------------------------
@dataclass
class Watch:
    """What ``no_other_merchants_data`` looks for, set for the length of a run, and what it saw."""

    bob_key: str
    bob_ids: set[str]
    answers: int = 0
    successes: set[str] = field(default_factory=set)  # operations that answered alice at least one 2xx
    bob_objects_tried: int = 0  # alice's requests naming one of bob's objects

    def summary(self, operations: list[str]) -> str:
        never = sorted(set(operations) - self.successes)
        return (
            f"{self.answers} answers to alice; {len(operations) - len(never)}/{len(operations)} operations "
            f"answered her a 2xx (never: {', '.join(never) or 'none'}); {self.bob_objects_tried} of her requests "
            f"named bob's objects"
        )


WATCH: Watch | None = None  # set by the test for the length of its run


class OtherMerchantsData(AssertionError):
    pass


@schemathesis.check
def no_other_merchants_data(ctx, response, case):
    """With alice's key, a request naming one of bob's objects never succeeds and no answer shows one of bob's ids
    or cards; no answer holds a full card number except detokenize and cryptograms."""
    watch = WATCH
    if watch is None:
        return None
    if watch.bob_key in (response.request.headers.get("Authorization") or ""):
        return None  # bob's own requests (Schemathesis's object-level authorization probes judge those themselves)
    watch.answers += 1
    if 200 <= response.status_code < 300:
        watch.successes.add(case.operation.label)
    body = response.content.decode("utf-8", errors="replace")
    sent = f"{response.request.url} {_text(response.request.body)}"
    named = sorted(value for value in watch.bob_ids if value in sent)
    watch.bob_objects_tried += bool(named)
    if named and 200 <= response.status_code < 300:
        raise OtherMerchantsData(f"A request naming bob's {named} got {response.status_code}; expected 404")
    shown = sorted(value for value in watch.bob_ids if value in body)
    if shown:
        raise OtherMerchantsData(f"The answer shows bob's {shown}")
    if BOB_ONLY_CARD in body:
        raise OtherMerchantsData(f"The answer holds bob's card number {_masked(BOB_ONLY_CARD)}")
    if FULL_NUMBER_ANSWERS.match(case.formatted_path) and 200 <= response.status_code < 300:
        return None
    # Digits alice sent in another field than a card number (a postal code, a namespace) are hers, echoed back.
    own_words = [response.request.url, *_strings_other_than_card_numbers(_json(response.request.body))]
    numbers = {run for run in DIGIT_RUN.findall(body) if luhn_valid(run) and not any(run in word for word in own_words)}
    if numbers:
        raise OtherMerchantsData(f"The answer holds full card numbers: {sorted(map(_masked, numbers))}")
    return None


def _json(body):
    try:
        return json.loads(_text(body)) if body else None
    except ValueError:
        return None


def _strings_other_than_card_numbers(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [word for item in value for word in _strings_other_than_card_numbers(item)]
    if isinstance(value, dict):
        return [
            word
            for key, item in value.items()
            if key != "cardNumber"
            for word in _strings_other_than_card_numbers(item)
        ]
    return []


def _masked(number: str) -> str:
    return f"{number[:4]}…{number[-4:]} ({len(number)} digits)"


def _text(body) -> str:
    if body is None:
        return ""
    return body.decode("utf-8", errors="replace") if isinstance(body, bytes) else str(body)


# ------------------------------------------------------------------------------------------------------------
# Valid data, beyond what JSON Schema can say
# ------------------------------------------------------------------------------------------------------------
@dataclass
class BusinessRules:
    """``map_case`` for positive cases: what the schema cannot express, made true of the drawn body. Each choice
    is derived from the drawn value (crc32), so a seed replays it."""

    encrypted_cards: list[str]
    provider: str  # where every URL of valid data leads (the ``provider`` fixture)
    keys_drawn: itertools.count = field(default_factory=itertools.count)

    def __call__(self, ctx, case):
        if case.meta is None or not case.meta.generation.mode.is_positive:
            return case
        key = (case.headers or {}).get("Idempotency-Key")
        if isinstance(key, str) and key:
            # A key names one request: a valid request under a key drawn before for another is refused (422), as
            # it must be. Made unique, in the order of the run, which a seed replays.
            case.headers["Idempotency-Key"] = f"{key[:200]}.{next(self.keys_drawn)}"
        if isinstance(case.body, dict):
            self._fix(case.body)
            if case.operation.path == "/forward":
                self._fix_forward(case.body)
        return case

    def _fix_forward(self, body: dict):
        """A forward under its destination (no dot segments), with headers a request can carry, no expression but
        the card's number appended to its body, so that the provider's echo puts the masking to the test."""
        if isinstance(body.get("path"), str):
            body["path"] = f"/payments/{_pick(body['path'], 1000)}"
        if isinstance(body.get("headers"), dict):
            body["headers"] = {
                name: _without_expressions(value)
                for name, value in body["headers"].items()
                if HEADER_NAME.fullmatch(name) and name.lower() not in OWN_HEADERS and HEADER_VALUE.fullmatch(value)
            }
        text = body.get("body") if isinstance(body.get("body"), str) else ""
        body["body"] = _without_expressions(text)[:1000] + " {{ card.number }}"

    def _fix(self, value):
        if isinstance(value, list):
            for item in value:
                self._fix(item)
        if not isinstance(value, dict):
            return
        if isinstance(value.get("month"), int) and isinstance(value.get("year"), int):
            today = timezone.now().date()
            if (value["year"], value["month"]) < (today.year, today.month):
                value["year"] = today.year + 1 + _pick(value["year"], 5)
        for key, item in list(value.items()):
            if (
                key == "cardNumber"
                and isinstance(item, str)
                and not (item.isdigit() and luhn_valid(item) and len(set(item)) > 1)
            ):
                value[key] = CARDS[_pick(item, len(CARDS))]
            elif key == "tokenExpiryDateTime" and isinstance(item, str):
                later = timezone.now() + timedelta(hours=1 + _pick(item, 6 * 24))  # within the lifetime
                value[key] = later.strftime("%Y-%m-%dT%H:%M:%SZ")
            elif key == "origin" and isinstance(item, str):
                value[key] = ORIGINS[_pick(item, len(ORIGINS))]
            elif key == "url" and isinstance(item, str):
                value[key] = f"{self.provider}/{_pick(item, 1000)}"
            elif key == "encryptedData" and isinstance(item, str):
                value[key] = self.encrypted_cards[_pick(item, len(self.encrypted_cards))]
            else:
                self._fix(item)
        # Amex wants the cardholder's email (DESIGN: network tokens), which the schema cannot tie to the card's brand;
        # a drawn card number that passes the Luhn check may well begin with 34 or 37.
        card = value.get("card")
        if isinstance(card, dict) and brand_of(str(card.get("cardNumber", ""))) == "AMEX" and not value.get("email"):
            value["email"] = "cardholder@example.com"


def _without_expressions(text: str) -> str:
    while "{{" in text:
        text = text.replace("{{", "{")
    return text


def _pick(drawn, count: int) -> int:
    return zlib.crc32(repr(drawn).encode()) % count


def encrypted_cards(key: str) -> list[str]:
    """Each of alice's cards as a merchant's client would send it: a JWE compact string to the API's key."""
    jwk = client_for(key).get("/network-tokens/encryption-key").json()["keys"][0]
    expiry = {"month": 12, "year": timezone.now().year + 2}
    compact = []
    for number in CARDS:
        token = client_jwe.JWE(
            json.dumps({"cardNumber": number, "cardExpiryDate": expiry}).encode(),
            protected=json.dumps({"alg": "RSA-OAEP-256", "enc": "A256GCM", "kid": jwk["kid"]}),
        )
        token.add_recipient(client_jwk.JWK(**jwk))
        compact.append(token.serialize(compact=True))
    return compact


# ------------------------------------------------------------------------------------------------------------
# The server and the run
# ------------------------------------------------------------------------------------------------------------
class NoDelayServer(ThreadedWSGIServer):
    """Django's live server, with two changes.

    It sends each write at once: with Nagle's algorithm on, the body of an answer waits for the client to acknowledge
    its headers, which the client delays by 40 ms, and that wait would be most of the run.

    Closed, it hangs up on the connections the client kept alive and waits for their threads, which close their
    database connections on the way out: PostgreSQL does not drop a test database that still has sessions.
    """

    daemon_threads = False
    block_on_close = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.open_connections: set[socket.socket] = set()

    def get_request(self):
        connection, address = super().get_request()
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.open_connections.add(connection)
        return connection, address

    def shutdown_request(self, request):
        self.open_connections.discard(request)
        super().shutdown_request(request)

    def server_close(self):
        for connection in list(self.open_connections):
            with contextlib.suppress(OSError):  # already gone
                connection.shutdown(socket.SHUT_RDWR)
        super().server_close()  # joins the connection threads (block_on_close)


class ServerThread(LiveServerThread):
    server_class = NoDelayServer


@pytest.fixture
def provider():
    """alice's and bob's payment provider (and webhook receiver): answers every request with its body, echoed."""

    def echo(request):
        return Reply(200, headers={"Content-Type": "text/plain; charset=utf-8"}, body=request.body)

    with Receiver(echo, path="/fuzz") as receiver:
        yield receiver


@pytest.fixture
def server_url(transactional_db):
    """The API over HTTP on loopback, a thread per connection (Django's live server), on the test database.

    Not in process: with Schemathesis 4.32.5, the probes of ``ignored_auth`` and ``object_level_authorization``
    hand its WSGI transport a ``max_redirects`` argument that werkzeug refuses.
    """
    # The bare API: LiveServerThread hands us its media-files handler, which, MEDIA_URL being unset, would answer
    # every path from the files of the working directory (and a 5,000-character path with a 500 of its own).
    thread = ServerThread("127.0.0.1", static_handler=lambda media_files: media_files.application)
    thread.daemon = True
    thread.start()
    thread.is_ready.wait()
    if thread.error:
        raise thread.error
    yield f"http://127.0.0.1:{thread.port}"
    thread.terminate()


def fuzz_config(*, alice: Merchant, bob: Merchant, wfc_path: str) -> schemathesis.Config:
    def ids(*lists: list[str]) -> list[str]:
        """Real ids, alice's and bob's, and a few ids of nothing that have broken lookups elsewhere (Schemathesis
        itself keeps NUL bytes out of paths; they still reach queries and bodies)."""
        return [value for values in lists for value in values] + ["a\x00b", "' OR '1'='1", "%", "x" * 5000]

    dictionaries = {
        "references": ids(alice.references, bob.references),
        "token-ids": ids(alice.token_ids, bob.token_ids),
        "token-values": ids(alice.token_ids, bob.token_ids, alice.references, bob.references),
        "public-ids": ids(
            alice.endpoint_ids,
            alice.event_ids,
            alice.destination_ids,
            bob.endpoint_ids,
            bob.event_ids,
            bob.destination_ids,
            alice.capture_session_ids,
            bob.capture_session_ids,
        ),
        "destination-ids": ids(alice.destination_ids, bob.destination_ids),
        # alice's only: bob's session taking a card alice sent would be bob's object changed by her.
        "capture-secrets": [*alice.capture_secrets, "not-a-secret"],
        "network-token-ids": ids(alice.network_token_ids, bob.network_token_ids),
        "request-ids": ids(alice.request_ids, bob.request_ids),
        "batch-ids": ids(alice.batch_ids, bob.batch_ids),
        "namespaces": ["fuzz"],
        "cards": CARDS,
        **TROUBLE,
    }
    bindings = {
        "path.reference": "references",
        "path.public_id": "public-ids",
        "path.token_id": "network-token-ids",
        "path.request_id": "request-ids",
        "path.batch_id": "batch-ids",
        "query.tokenId": "token-ids",
        "query.namespace": "namespaces",
        "body.token": "token-values",
        "body.destination": "destination-ids",
        "body.clientSecret": "capture-secrets",
        "body.networkToken": "network-token-ids",
        "body.paymentInstrument.cardNumber": "cards",
        "body.card.cardNumber": "cards",
    }
    return schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "workers": 1,  # one client thread: the run replays from its seed, and SQLite has one writer anyway
            "continue-on-failure": True,  # every distinct failure of an operation, not only its first
            "request-timeout": 30,
            "dictionaries": {name: {"values": sorted(set(values))} for name, values in dictionaries.items()},
            "parameters": {key: {"dictionary": name, "probability": 0.5} for key, name in bindings.items()},
            "generation": {
                "mode": "all",
                "max-examples": EXAMPLES,
                "database": "none",
                # Now and then, in any string or integer, a value known to break things.
                "dictionaries": {kind: {"dictionary": kind, "probability": 0.1} for kind in TROUBLE},
            },
            "phases": {"stateful": {"generation": {"max-examples": EXAMPLES}}},
            "checks": {"max_response_time": HANG_SECONDS},
            # Schemathesis's default statuses for valid data, and 422; a 5xx stays not_a_server_error's failure.
            "operations": [
                {
                    "include-operation-id": STATE_DEPENDENT_422,
                    "checks": {
                        "positive_data_acceptance": {
                            "expected-statuses": ["2xx", "3xx", "401", "403", "404", "409", "422", "429", "5xx"],
                        }
                    },
                }
            ],
            # Reproductions show tokenIds and references as sent; keys and signing secrets stay hidden.
            "output": {
                "sanitization": {
                    "keys-to-sanitize": ["authorization", "cookie", "secret", "password"],
                    "sensitive-markers": ["auth", "secret", "password", "credential", "session"],
                }
            },
            # alice sends every request; bob's key is there for the object-level authorization probes.
            "auth": {"wfc": {"path": wfc_path, "user": "alice", "peers": ["alice", "bob"]}},
        }
    )


@dataclass
class Found:
    check: str
    operation: str
    title: str
    message: str
    status: int | None
    answer: str
    curl: str

    @property
    def key(self) -> tuple:
        return self.check, self.operation, self.status, self.answer if self.status != 500 else self.title

    def __str__(self) -> str:
        curl = self.curl if len(self.curl) <= 600 else self.curl[:600] + "…"  # FUZZ_SEED replays it in full
        return f"    -> {self.status} {self.answer or self.message.strip()}\n       {curl}"


def answer_of(response) -> str:
    """The error shape in short (``errorName: validationName@path, …``): what the API objected to."""
    if response is None:
        return "(no response)"
    try:
        body = json.loads(response.content)
    except ValueError:
        return _text(response.content)[:200]
    if not isinstance(body, dict) or "errorName" not in body:
        return json.dumps(body)[:200]
    items = sorted(
        {
            f"{item.get('errorName')}@{_generalized(item)}"
            for item in body.get("validationErrors") or []
            if isinstance(item, dict)
        }
    )
    return body["errorName"] + (": " + ", ".join(items) if items else "")


def _generalized(item: dict) -> str:
    # A made-up field name is one finding however it is spelt.
    path = str(item.get("jsonPath"))
    if item.get("errorName") == "unrecognizedField":
        return path.rsplit(".", 1)[0] + ".<unknown field>"
    return path


def findings_of(recorder) -> list[Found]:
    found = []
    for case_id, checks in recorder.checks.items():
        for check in checks:
            if check.status != Status.FAILURE or check.failure_info is None:
                continue
            failure = check.failure_info.failure
            interaction = recorder.interactions.get(failure.case_id or case_id) or recorder.interactions.get(case_id)
            response = interaction.response if interaction is not None else None
            found.append(
                Found(
                    check=check.name,
                    operation=failure.operation or recorder.label,
                    title=failure.title,
                    message=failure.message,
                    status=response.status_code if response is not None else None,
                    answer=answer_of(response),
                    curl=check.failure_info.code_sample,
                )
            )
    return found


@dataclass
class Run:
    findings: list[Found]
    errors: list[str]
    phases: dict[str, str]
    stop_reason: StopReason | None
    over_time: bool = False
    operations: list[str] = field(default_factory=list)

    def report(self) -> str:
        by_operation: dict[tuple[str, str], list[Found]] = defaultdict(list)
        for finding in self.findings:
            by_operation[(finding.check, finding.operation)].append(finding)
        lines = [f"FUZZ_SEED={SEED}: {len(self.findings)} distinct failure(s)"]
        for (check, operation), found in sorted(by_operation.items()):
            lines.append(f"\n[{check}] {operation}: {found[0].title}")
            lines.extend(str(finding) for finding in found[:4])
            if len(found) > 4:
                lines.append(f"    … and {len(found) - 4} more")
        return "\n".join(lines)


def run_schemathesis(url: str, config: schemathesis.Config, rules: BusinessRules) -> Run:
    schema = schemathesis.openapi.from_url(f"{url}/api/schema/", config=config)
    schema.hooks.register_hook_with_name(rules, "map_case")
    findings: dict[tuple, Found] = {}
    operations = [result.ok().label for result in schema.get_all_operations()]
    run = Run(findings=[], errors=[], phases={}, stop_reason=None, operations=operations)
    # Not the engine's own `max-time`: that is a budget, which it fills by running its phases again and again.
    deadline = time.monotonic() + MAX_RUN_SECONDS
    stream = from_schema(schema).execute()
    started: dict[str, float] = {}
    for event in stream:
        if time.monotonic() > deadline and not run.over_time:
            run.over_time = True
            stream.stop()
        if isinstance(event, events.ScenarioFinished):
            for finding in findings_of(event.recorder):
                findings.setdefault(finding.key, finding)
        elif isinstance(event, events.NonFatalError):
            run.errors.append(f"{event.label}: {event.info.format()}")
        elif isinstance(event, events.FatalError):
            run.errors.append(f"fatal: {event.exception!r}")
        elif isinstance(event, events.PhaseStarted):
            started[event.phase.name.value] = time.monotonic()
        elif isinstance(event, events.PhaseFinished):
            reason = f" ({event.phase.skip_reason.value})" if event.phase.skip_reason else ""
            took = time.monotonic() - started.get(event.phase.name.value, time.monotonic())
            run.phases[event.phase.name.value] = f"{event.status.value}{reason}, {took:.0f} s"
        elif isinstance(event, events.EngineFinished):
            run.stop_reason = event.stop_reason
    run.findings = list(findings.values())
    return run


@pytest.mark.django_db(transaction=True, serialized_rollback=True)  # the server thread sees what is committed
def test_schemathesis_finds_nothing_wrong_with_the_api(server_url, provider, tmp_path, monkeypatch, settings):
    settings.TSP_LATENCY_MS, settings.TSP_FAILURE_RATE = "0", 0.0  # whatever the environment says: a quick, sure TSP
    alice = merchant_with_objects("Alice's Shop", [VISA, MASTERCARD], provider=provider.url)
    bob = merchant_with_objects("Bob's Bikes", [VISA, BOB_ONLY_CARD], provider=provider.url)
    identities = tmp_path / "merchants.json"  # Web Fuzzing Commons authentication: one entry per merchant
    identities.write_text(
        json.dumps(
            {
                "auth": [
                    {"name": name, "fixedHeaders": [{"name": "Authorization", "value": f"Bearer {merchant.key}"}]}
                    for name, merchant in (("alice", alice), ("bob", bob))
                ]
            }
        )
    )
    bobs_objects = objects_of(bob)

    watch = Watch(bob_key=bob.key, bob_ids=bob.object_ids)
    monkeypatch.setitem(globals(), "WATCH", watch)
    rules = BusinessRules(encrypted_cards=encrypted_cards(alice.key), provider=provider.url)
    run = run_schemathesis(server_url, fuzz_config(alice=alice, bob=bob, wfc_path=str(identities)), rules)

    print(f"FUZZ_SEED={SEED}, {EXAMPLES} examples; phases: {run.phases}\n{watch.summary(run.operations)}")
    problems = []
    if run.over_time:
        problems.append(f"The run took more than {MAX_RUN_SECONDS} s and was stopped.")
    elif run.stop_reason != StopReason.COMPLETED:
        problems.append(f"The run stopped early: {run.stop_reason}.")
    if run.errors:
        problems.append("Schemathesis could not test everything:\n" + "\n".join(run.errors))
    if objects_of(bob) != bobs_objects:
        problems.append("alice's requests changed bob's objects.")
    if problems or run.findings:
        pytest.fail("\n\n".join([*problems, run.report()]), pytrace=False)


# ------------------------------------------------------------------------------------------------------------
# Our check, checked: it must fail on what it is there to catch, or a green run proves nothing.
# ------------------------------------------------------------------------------------------------------------
def fake_answer(
    body: str, *, status: int = 200, url: str = "http://testserver/tokens", key: str = "sk_alice", path: str = "/tokens"
):
    request = SimpleNamespace(url=url, body=None, headers={"Authorization": f"Bearer {key}"})
    response = SimpleNamespace(status_code=status, content=body.encode(), request=request)
    return response, SimpleNamespace(formatted_path=path, operation=SimpleNamespace(label=f"GET {path}"))


@pytest.mark.parametrize(
    ("body", "status", "url", "path"),
    [
        pytest.param(
            '{"tokenId": "BOBSTOKEN0000000001"}',
            200,
            "http://testserver/tokens",
            "/tokens",
            id="bob's tokenId in an answer",
        ),
        pytest.param(
            '{"errorName": "resourceNotFound"}',
            204,
            "http://testserver/tokens/bobs-reference",
            "/tokens/bobs-reference",
            id="a 2xx to a request naming bob's object",
        ),
        pytest.param(
            f'{{"message": "card {VISA} refused"}}',
            400,
            "http://testserver/tokens",
            "/tokens",
            id="a full card number in an error",
        ),
        pytest.param(
            f'{{"cardNumber": "{JCB}"}}',
            200,
            "http://testserver/tokens/x/detokenize",
            "/tokens/x/detokenize",
            id="bob's card even in a detokenize answer",
        ),
    ],
)
def test_our_check_fails_on_what_it_is_there_to_catch(body, status, url, path, monkeypatch):
    monkeypatch.setitem(globals(), "WATCH", Watch(bob_key="sk_bob", bob_ids={"BOBSTOKEN0000000001", "bobs-reference"}))
    with pytest.raises(OtherMerchantsData):
        no_other_merchants_data(None, *fake_answer(body, status=status, url=url, path=path))


@pytest.mark.parametrize(
    ("body", "path", "key"),
    [
        pytest.param(
            f'{{"paymentInstrument": {{"cardNumber": "{VISA}"}}}}',
            "/tokens/x/detokenize",
            "sk_alice",
            id="alice's card in her detokenize answer",
        ),
        pytest.param('{"tokenId": "BOBSTOKEN0000000001"}', "/tokens", "sk_bob", id="bob reading his own token"),
        pytest.param(
            '{"cardNumber": "4444********1111", "href": "http://testserver/tokens/a1234567890123b"}',
            "/tokens",
            "sk_alice",
            id="a masked number and digits inside a reference",
        ),
        pytest.param(
            '{"billingAddress": {"postalCode": "00000000000000"}}',
            "/tokens",
            "sk_alice",
            id="a postal code alice sent, echoed back",
        ),
    ],
)
def test_our_check_lets_legitimate_answers_through(body, path, key, monkeypatch):
    monkeypatch.setitem(globals(), "WATCH", Watch(bob_key="sk_bob", bob_ids={"BOBSTOKEN0000000001"}))
    response, case = fake_answer(body, path=path, key=key)
    response.request.body = json.dumps({"paymentInstrument": {"cardNumber": VISA, **json.loads(body)}}).encode()
    assert no_other_merchants_data(None, response, case) is None


def test_our_check_still_sees_the_card_number_alice_sent_echoed_back(monkeypatch):
    monkeypatch.setitem(globals(), "WATCH", Watch(bob_key="sk_bob", bob_ids=set()))
    response, case = fake_answer(f'{{"errorName": "x", "message": "{VISA}"}}', status=400)
    response.request.body = json.dumps({"paymentInstrument": {"cardNumber": VISA, "cardHolderName": "S"}}).encode()
    with pytest.raises(OtherMerchantsData):
        no_other_merchants_data(None, response, case)


# ------------------------------------------------------------------------------------------------------------
# What the fuzzer cannot send, or finds only by luck, sent on purpose.
# ------------------------------------------------------------------------------------------------------------
def operations_with_ids() -> list[tuple[str, str]]:
    """Every operation of the schema with an id in its path."""
    paths = SchemaGenerator().get_schema(request=None, public=True)["paths"]
    return [
        (method.upper(), path)
        for path, operations in paths.items()
        if "{" in path
        for method in operations
        if method in ("get", "post", "put", "patch", "delete")
    ]


@pytest.mark.parametrize(("method", "path"), operations_with_ids())
def test_an_id_with_a_nul_byte_is_an_id_of_nothing(method, path, db):
    """Schemathesis never puts a NUL byte in a path (web servers tend to refuse it before routing), so this test
    does: the API must answer 404 in its error shape as for any unknown id (or path), not fail on the database's
    refusal of NUL in text."""
    _, key = merchant_services.merchant_create(name="Alice's Shop", scopes=list(SCOPES))
    url = re.sub(r"\{[^}]+\}", "a%00b", path)
    response = client_for(key).generic(method, url, "{}", content_type="application/json", HTTP_X_CORRELATION_ID="nul")
    assert response.status_code == 404, response.content
    assert response.json()["errorName"] in ("resourceNotFound", "endpointNotFound")


@pytest.mark.parametrize("page", [2**31, 2**63, 10**30])
@pytest.mark.parametrize("listing", ["/tokens?namespace=fuzz", "/events?", "/network-tokens/batches/{batch}?"])
def test_a_page_far_past_the_last_is_an_empty_page_or_refused(listing, page, db):
    """Found by the fuzzer now and then: a page number whose offset does not fit in 64 bits."""
    _, key = merchant_services.merchant_create(name="Alice's Shop", scopes=list(SCOPES))
    client = client_for(key)
    token = client.post("/tokens", card_request(namespace="fuzz"), format="json").json()["tokenId"]
    batch = client.post("/network-tokens/batches", {"items": [{"token": token}]}, format="json").json()["id"]
    response = client.get(f"{listing.format(batch=batch)}&page={page}")
    assert response.status_code in (200, 400), response.content
    if response.status_code == 400:
        assert response.json()["validationErrors"][0]["errorName"] == "integerIsTooLarge"
