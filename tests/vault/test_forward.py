"""``POST /forward``: alice pays with a stored card without ever holding it.

Actors (tests/conftest.py): alice is a merchant with the default scopes (forwarding included) and a token of the
Sherlock Holmes card; bob is another merchant whose tokens and destinations alice must not reach. ``psp`` is alice's
payment provider: a real HTTP server on loopback (tests/receiver.py) that records what it gets and answers like a
card processor, echoing the card number back in its answer, so that the masking is put to the test. The test
settings allow loopback destinations (``WEBHOOK_ALLOW_LOOPBACK``), as a developer's machine does.
"""

import json
import socket
import threading
from datetime import timedelta
from urllib.parse import parse_qs

import pytest
from django.db import connection
from django.utils import timezone

from core.audit import Actor
from core.models import AuditLog
from merchants import services as merchant_services
from tests.conftest import MASTERCARD, VISA, client_for
from tests.receiver import Receiver, Reply
from vault import forwarding
from vault.models import Forward, ForwardDestination, Token

PSP_KEY = "sk_test_psp_9f3b2c"  # what alice's provider gave her: the forward fills it in, she never sends it


def psp_answer(request) -> Reply:
    """A card processor: an authorization that echoes the card it got (as some do, unmasked) and its own ids."""
    if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        card = {key: values[0] for key, values in parse_qs(request.text).items()}
    else:
        card = request.json().get("card", {}) if request.body else {}
    body = {
        "id": "pay_3Nq8xYz",
        "status": "authorized",
        "amount": 1250,
        "card": {"number": card.get("number", ""), "last4": card.get("number", "")[-4:]},
        "reference": f"00{card.get('number', '')}0000",  # the number inside a longer run: no card to the Luhn scan
    }
    return Reply(
        201, headers={"Content-Type": "application/json", "X-Card": card.get("number", "")}, body=json.dumps(body)
    )


@pytest.fixture
def psp():
    with Receiver(psp_answer, path="/v1") as receiver:
        yield receiver


def destination_for(client, url: str, **fields) -> str:
    body = {"name": "Loopback PSP", "url": url, "credentials": {"apiKey": PSP_KEY}, **fields}
    response = client.post("/forward-destinations", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()["id"]


@pytest.fixture
def destination(api, psp) -> str:
    """alice's destination: her provider's URL with its /v1 prefix."""
    return destination_for(api, psp.url)


@pytest.fixture
def token(tokenize) -> str:
    response = tokenize()
    assert response.status_code == 201
    return response.json()["tokenId"]


JSON_PAYMENT = {
    "method": "POST",
    "path": "/payments",
    "headers": {"Content-Type": "application/json", "Authorization": "Bearer {{ destination.credentials.apiKey }}"},
    "body": json.dumps(
        {
            "amount": 1250,
            "card": {
                "number": "{{ card.number }}",
                "exp_month": "{{ card.expiryMonth }}",
                "exp_year": "{{ card.expiryYear }}",
                "name": "{{ card.holderName }}",
                "postcode": "{{ card.billingAddress.postalCode }}",
            },
        }
    ),
}


def forward(client, destination: str, token: str, **changes):
    """POST /forward: JSON_PAYMENT with ``changes`` (``HTTP_*`` ones are headers of the call itself)."""
    extra = {name: changes.pop(name) for name in list(changes) if name.startswith("HTTP_")}
    body = {**JSON_PAYMENT, "destination": destination, "token": token, **changes}
    return client.post("/forward", body, format="json", **extra)


def error_paths(response) -> list[tuple[str, str]]:
    assert response.status_code == 400, response.content
    return [(item["errorName"], item["jsonPath"]) for item in response.json()["validationErrors"]]


def holder_named(api, token: str, name: str) -> None:
    reference = Token.objects.get(token_id=token).reference
    response = api.put(f"/tokens/{reference}/cardHolderName", json.dumps(name), content_type="application/json")
    assert response.status_code == 204


# ------------------------------------------------------------------------------------------------------------
# The card reaches the provider; the merchant gets the answer without it
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.pci("3.4.1")
def test_the_provider_gets_the_card_and_alice_gets_its_answer_masked(api, psp, destination, token):
    response = forward(api, destination, token)

    assert response.status_code == 200, response.content
    [received] = psp.requests
    assert received.method == "POST"
    assert received.path == "/v1/payments"
    assert received.headers["authorization"] == f"Bearer {PSP_KEY}"
    assert received.json()["card"] == {
        "number": VISA,
        "exp_month": "05",
        "exp_year": "2035",
        "name": "Sherlock Holmes",
        "postcode": "NW1 6XE",
    }
    answer = response.json()
    assert answer["status"] == 201
    assert answer["bodyTruncated"] is False
    body = json.loads(answer["body"])
    assert body["id"] == "pay_3Nq8xYz"
    assert body["card"] == {"number": "4444********1111", "last4": "1111"}
    assert body["reference"] == "004444********11110000"
    assert answer["headers"]["x-card"] == "4444********1111"
    assert VISA not in response.content.decode()
    assert PSP_KEY not in response.content.decode()
    assert response["Cache-Control"] == "no-store"


def test_a_form_encoded_request_gets_its_values_form_encoded(api, psp, destination, token):
    holder = "Holmes & Watson+Co"
    holder_named(api, token, holder)
    response = forward(
        api,
        destination,
        token,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        body="amount=1250&number={{ card.number }}&exp={{ card.expiryMonth }}%2F{{ card.expiryYear2 }}"
        "&name={{ card.holderName }}",
    )

    assert response.status_code == 200, response.content
    assert parse_qs(psp.requests[0].text) == {
        "amount": ["1250"],
        "number": [VISA],
        "exp": ["05/35"],
        "name": [holder],
    }
    assert json.loads(response.json()["body"])["card"]["number"] == "4444********1111"


def test_a_provider_quoting_the_credential_does_not_show_it_to_alice(api, psp, destination, token):
    psp.reply(Reply(401, body=f"Invalid API key: {PSP_KEY}"))

    response = forward(api, destination, token)

    assert response.json()["status"] == 401
    assert response.json()["body"] == "Invalid API key: ********"


def test_the_token_may_be_named_by_its_href(api, psp, destination, tokenize):
    href = tokenize(cardNumber=MASTERCARD).json()["tokenPaymentInstrument"]["href"]

    response = forward(api, destination, href)

    assert response.status_code == 200, response.content
    assert psp.requests[0].json()["card"]["number"] == MASTERCARD


def test_the_answer_comes_back_as_the_provider_gave_it_redirects_included(api, psp, destination, token):
    psp.reply(Reply(302, headers={"Location": "https://elsewhere.example/3ds"}, body=""))

    response = forward(api, destination, token, method="PUT", path="/payments/pay_1?expand=card")

    assert response.status_code == 200
    assert response.json()["status"] == 302
    assert response.json()["headers"]["location"] == "https://elsewhere.example/3ds"
    assert len(psp.requests) == 1  # not followed
    assert psp.requests[0].method == "PUT"
    assert psp.requests[0].path == "/v1/payments/pay_1?expand=card"


def test_a_network_token_is_filled_in_with_a_fresh_cryptogram(api, psp, destination, token):
    provisioned = api.post("/network-tokens", {"token": token}, format="json", HTTP_X_CORRELATION_ID="fwd-1")
    assert provisioned.status_code == 201, provisioned.content
    network_token = provisioned.json()["tokenId"]
    body = json.dumps(
        {
            "card": {
                "number": "{{ networkToken.number }}",
                "exp": "{{ networkToken.expiryMonth }}/{{ networkToken.expiryYear }}",
                "cryptogram": "{{ networkToken.cryptogram }}",
                "eci": "{{ networkToken.eci }}",
            }
        }
    )

    first = forward(api, destination, token, networkToken=network_token, body=body)
    second = forward(api, destination, token, networkToken=network_token, body=body)

    assert first.status_code == second.status_code == 200, first.content
    one, two = (request.json()["card"] for request in psp.requests)
    dpan = one["number"]
    assert dpan != VISA and dpan.endswith(provisioned.json()["tokenLastDigits"])
    assert one["cryptogram"] and one["cryptogram"] != two["cryptogram"]
    assert one["eci"]
    assert dpan not in first.content.decode()
    assert json.loads(first.json()["body"])["card"]["number"] == f"{dpan[:4]}{'*' * (len(dpan) - 8)}{dpan[-4:]}"
    assert AuditLog.objects.filter(action="network_token.cryptogram", object_id=network_token).count() == 2


def test_a_suspended_network_token_is_not_filled_in(api, psp, destination, token):
    network_token = api.post("/network-tokens", {"token": token}, format="json", HTTP_X_CORRELATION_ID="fwd-3")
    network_token = network_token.json()["tokenId"]
    suspended = api.post(f"/network-tokens/{network_token}/simulate-lifecycle", {"event": "SUSPENDED"}, format="json")
    assert suspended.status_code in (200, 202, 204), suspended.content

    response = forward(api, destination, token, networkToken=network_token, body="{{ networkToken.cryptogram }}")

    assert response.status_code == 422
    assert response.json()["errorName"] == "tokenNotActive"
    assert psp.requests == []


def test_a_network_token_of_another_card_is_not_found(api, psp, destination, token, tokenize):
    other = tokenize(cardNumber=MASTERCARD).json()["tokenId"]
    provisioned = api.post("/network-tokens", {"token": other}, format="json", HTTP_X_CORRELATION_ID="fwd-2")

    response = forward(
        api, destination, token, networkToken=provisioned.json()["tokenId"], body="{{ networkToken.number }}"
    )

    assert response.status_code == 404
    assert psp.requests == []


# ------------------------------------------------------------------------------------------------------------
# Refusals: nothing is sent
# ------------------------------------------------------------------------------------------------------------
def test_an_unknown_destination_or_bobs_is_not_found(api, bob_api, psp, destination, token):
    bobs = destination_for(bob_api, psp.url)

    for unknown in ("fwd_nothing_here", bobs):
        response = forward(api, unknown, token)
        assert response.status_code == 404, response.content
        assert response.json()["errorName"] == "resourceNotFound"
    assert psp.requests == []


def test_bobs_token_is_not_found(api, bob_api, psp, destination, tokenize):
    bobs_token = tokenize(client=bob_api).json()["tokenId"]

    response = forward(api, destination, bobs_token)

    assert response.status_code == 404
    assert response.json()["errorName"] == "resourceNotFound"
    assert psp.requests == []


def test_a_deleted_token_is_not_found_as_detokenize_answers(api, psp, destination, tokenize):
    created = tokenize().json()
    api.delete(f"/tokens/{created['tokenPaymentInstrument']['href'].rsplit('/', 1)[1]}")

    assert forward(api, destination, created["tokenId"]).status_code == 404
    assert psp.requests == []


@pytest.mark.parametrize(
    "path",
    ["/../admin", "/payments/../../admin", "/%2e%2e/admin", "/%2E%2E/admin", "/."],
)
def test_a_path_climbing_out_of_the_destination_is_refused(api, psp, destination, token, path):
    assert error_paths(forward(api, destination, token, path=path)) == [("pathOutsideDestination", "$.path")]
    assert psp.requests == []


@pytest.mark.parametrize(
    "path",
    ["payments", "https://evil.example/v1", "@evil.example/", "/pay ments", "/payments#fragment", "/pay\\admin", "/é"],
)
def test_a_path_that_is_no_path_under_the_destination_is_refused(api, psp, destination, token, path):
    assert error_paths(forward(api, destination, token, path=path)) == [("stringFailedRegexCheck", "$.path")]
    assert psp.requests == []


def test_a_filled_in_value_stays_one_segment_of_the_path(api, psp, destination, token):
    holder_named(api, token, "Holmes/admin?x=1#y")

    response = forward(api, destination, token, path="/cards/{{ card.holderName }}")

    assert response.status_code == 200, response.content
    assert psp.requests[0].path == "/v1/cards/Holmes%2Fadmin%3Fx%3D1%23y"


def test_a_filled_in_value_that_would_climb_out_of_the_prefix_is_refused(api, psp, destination, token):
    # Encoded, its slashes are no separators; some servers decode them all the same.
    holder_named(api, token, "../../admin")

    response = forward(api, destination, token, path="/cards/{{ card.holderName }}")

    assert error_paths(response) == [("pathOutsideDestination", "$.path")]
    assert psp.requests == []


def test_every_template_error_is_named_by_where_it_is(api, psp, destination, token):
    response = forward(
        api,
        destination,
        token,
        path="/payments/{{ card.pin }}",
        headers={"X-Api-Key": "{{ destination.credentials.missing }}", "X-Other": "{{ card.number"},
        body=f"{{{{ card.cvv }}}} {{{{ networkToken.cryptogram }}}} {{{{ {VISA} }}}}",
    )

    assert error_paths(response) == [
        ("expressionIsUnknown", "$.path"),
        ("expressionIsMalformed", "$.headers.X-Other"),
        ("expressionIsUnknown", "$.body"),
        ("expressionIsMalformed", "$.body"),
    ]
    assert VISA not in response.content.decode()
    assert psp.requests == []


def test_a_credential_or_network_token_the_forward_cannot_fill_is_refused(api, psp, destination, token):
    response = forward(
        api,
        destination,
        token,
        headers={"X-Api-Key": "{{ destination.credentials.missing }}"},
        body="{{ networkToken.cryptogram }}",
    )

    assert error_paths(response) == [
        ("credentialIsUnknown", "$.headers.X-Api-Key"),
        ("networkTokenIsMissing", "$.body"),
    ]
    assert psp.requests == []


@pytest.mark.parametrize(
    ("headers", "path"),
    [
        ({"Host": "evil.example"}, "$.headers.Host"),
        ({"Content-Length": "5"}, "$.headers.Content-Length"),
        ({"Bad Name": "x"}, "$.headers.Bad Name"),
        ({"X-Split": "a\r\nX-Injected: 1"}, "$.headers.X-Split"),
    ],
)
def test_headers_the_client_sets_or_that_would_split_are_refused(api, psp, destination, token, headers, path):
    assert error_paths(forward(api, destination, token, headers=headers)) == [("fieldHasInvalidValue", path)]
    assert psp.requests == []


def test_a_body_over_64_kb_is_refused(api, psp, destination, token):
    response = forward(api, destination, token, body="x" * (64 * 1024 + 1))

    assert error_paths(response) == [("stringIsTooLong", "$.body")]
    assert psp.requests == []


def test_a_disabled_destination_says_so(api, psp, destination, token):
    forwarding.destination_disable(
        destination=ForwardDestination.objects.get(public_id=destination),
        reason="provider compromised",
        actor=Actor("staff:admin"),
    )

    response = forward(api, destination, token)

    assert response.status_code == 422
    assert response.json()["errorName"] == "destinationDisabled"
    assert psp.requests == []


def test_a_key_without_the_forwarding_scope_is_refused(alice, psp, destination, token):
    _, raw = merchant_services.api_key_create(merchant=alice, scopes=["tokens"], name="no forwarding")

    response = forward(client_for(raw), destination, token)

    assert response.status_code == 403
    assert psp.requests == []
    assert AuditLog.objects.filter(action="token.forward", result=AuditLog.FAILURE).exists()


def test_forwards_count_against_the_card_data_limit(alice, api, psp, destination, token):
    alice.card_data_rate_limit = "1/minute"
    alice.save(update_fields=["card_data_rate_limit"])

    assert forward(api, destination, token).status_code == 200
    refused = forward(api, destination, token)

    assert refused.status_code == 429
    assert refused["Retry-After"]
    assert len(psp.requests) == 1


# ------------------------------------------------------------------------------------------------------------
# The destination failing
# ------------------------------------------------------------------------------------------------------------
def test_a_destination_that_does_not_answer_in_time_is_504(api, psp, destination, token, settings):
    settings.FORWARD_TIMEOUT_SECONDS = 0.5
    psp.always(Reply(hang=True))

    response = forward(api, destination, token)

    assert response.status_code == 504
    assert response.json()["errorName"] == "destinationUnavailable"
    row = Forward.objects.get()
    assert row.error == "destinationUnavailable" and row.status_code is None
    assert 400 <= row.duration_ms < 5000


def test_a_destination_refusing_the_connection_is_502(api, token):
    with socket.socket() as unused:  # a port nobody listens on once closed
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    destination = destination_for(api, f"http://127.0.0.1:{port}/v1")

    response = forward(api, destination, token)

    assert response.status_code == 502
    assert response.json()["errorName"] == "destinationUnavailable"
    audit = AuditLog.objects.get(action="token.forward")
    assert audit.result == AuditLog.FAILURE and audit.detail["error"] == "destinationUnavailable"


def test_an_answer_over_the_limit_is_cut_and_said_to_be(api, psp, destination, token, settings):
    settings.FORWARD_MAX_ANSWER_BYTES = 1000
    psp.reply(Reply(200, body=f"{VISA} " + "x" * 5000))

    response = forward(api, destination, token)

    assert response.status_code == 200
    assert response.json()["bodyTruncated"] is True
    assert response.json()["body"] == "4444********1111 " + "x" * 983


# ------------------------------------------------------------------------------------------------------------
# What a forward leaves behind
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.pci("10.2.1")
def test_a_forward_is_audited_logged_and_a_use_of_the_token(api, psp, destination, token, settings):
    settings.TOKENS_ENVIRONMENT = "live"
    stored = Token.objects.get(token_id=token)
    # Created four years ago and due in a day: past half its lifetime, so a use extends it.
    Token.objects.filter(pk=stored.pk).update(
        created_at=timezone.now() - timedelta(days=4 * 365), expires_at=timezone.now() + timedelta(days=1)
    )

    response = forward(api, destination, token, path=f"/payments/{VISA}")

    assert response.status_code == 200
    row = Forward.objects.get()
    assert (row.merchant_id, row.token_id, row.destination.public_id) == (stored.merchant_id, stored.pk, destination)
    assert (row.method, row.status_code, row.error) == ("POST", 201, "")
    assert row.path == "/payments/4444********1111"  # as written, card numbers masked
    audit = AuditLog.objects.get(action="token.forward")
    assert audit.object_id == token and audit.result == AuditLog.SUCCESS
    assert audit.actor.startswith("api-key:")
    assert audit.detail["destination"] == destination
    assert audit.detail["method"] == "POST" and audit.detail["status"] == 201
    assert isinstance(audit.detail["durationMs"], int)
    assert stored.expiry_extensions.get().reason == "forward"


def test_an_idempotent_retry_is_sent_once(api, psp, destination, token):
    first = forward(api, destination, token, HTTP_IDEMPOTENCY_KEY="order-1042")
    again = forward(api, destination, token, HTTP_IDEMPOTENCY_KEY="order-1042")

    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert len(psp.requests) == 1
    assert Forward.objects.count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_forwards_of_one_token_all_succeed(alice, api, psp, destination, token, settings):
    """Ten forwards of one card at once, in live (each a use of the token, under its row's lock): each is sent,
    answered and recorded once."""
    settings.TOKENS_ENVIRONMENT = "live"
    barrier = threading.Barrier(10)
    statuses = [0] * 10

    def send(index: int):
        client = client_for(alice.raw_key)
        client.raise_request_exception = False
        try:
            barrier.wait()
            statuses[index] = forward(client, destination, token).status_code
        finally:
            connection.close()

    threads = [threading.Thread(target=send, args=(index,)) for index in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert statuses == [200] * 10
    assert len(psp.requests) == 10
    assert Forward.objects.filter(status_code=201).count() == 10
    assert AuditLog.objects.filter(action="token.forward", result=AuditLog.SUCCESS).count() == 10
