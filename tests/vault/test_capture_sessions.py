"""Capture sessions (``/capture-sessions``): what a merchant's server opens so that a shopper's browser can send a card
straight to the vault (DESIGN.md, "Card capture in the browser").

alice (the ``api`` fixture) opens sessions for her shop's checkout page at https://shop.example; bob is another
merchant who must not see them; the shopper (``shopper``) is whoever loads alice's page: a browser with no API key,
which sends the card with the session's client secret, as the vault's frame does.
"""

import hashlib
from datetime import datetime, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from core.models import AuditLog
from merchants import services as merchant_services
from tests.conftest import VISA, client_for, path_of, staff_in
from vault import capture
from vault.models import CaptureSession

SHOP = "https://shop.example"
SESSION_KEYS = {
    "id",
    "url",
    "origin",
    "namespace",
    "description",
    "status",
    "failedSubmissions",
    "createdAt",
    "expiresAt",
}


@pytest.fixture
def shopper() -> APIClient:
    """The shopper's browser (the vault's frame in it): no API key."""
    return APIClient()


def open_session(api, **body):
    return api.post("/capture-sessions", {"origin": SHOP, **body}, format="json")


def card(secret: str, number: str = VISA) -> dict:
    return {
        "clientSecret": secret,
        "cardNumber": number,
        "cardExpiryDate": {"month": 5, "year": 2035},
        "cardHolderName": "Sherlock Holmes",
    }


def refusals(response) -> list[tuple[str, str]]:
    assert response.status_code == 400, response.content[:300]
    assert response.json()["errorName"] == "bodyDoesNotMatchSchema"
    return [(item["errorName"], item["jsonPath"]) for item in response.json()["validationErrors"]]


# ------------------------------------------------------------------------------------------------------------
# Opening a session
# ------------------------------------------------------------------------------------------------------------
def test_alice_opens_a_session_for_her_checkout_page(api, alice):
    before = timezone.now().replace(microsecond=0)
    response = open_session(api)

    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == SESSION_KEYS | {"clientSecret"}
    assert body["id"].startswith("cs_")
    assert body["url"] == f"http://testserver/capture/{body['id']}"
    assert body["origin"] == SHOP
    assert body["status"] == "open" and body["failedSubmissions"] == 0
    assert body["namespace"] is None and body["description"] is None
    created = datetime.fromisoformat(body["createdAt"])
    assert before <= created <= timezone.now()
    assert datetime.fromisoformat(body["expiresAt"]) - created == timedelta(minutes=15)
    # The secret is for the page only: not cached on the way, not stored (its hash is).
    assert response["Cache-Control"] == "no-store"
    session = CaptureSession.objects.get(public_id=body["id"])
    assert session.merchant == alice
    assert session.client_secret_hash == hashlib.sha256(body["clientSecret"].encode()).hexdigest()
    assert body["clientSecret"] not in str(list(CaptureSession.objects.values_list()))


def test_each_session_has_its_own_id_and_secret(api):
    first, second = open_session(api).json(), open_session(api).json()

    assert first["id"] != second["id"]
    assert first["clientSecret"] != second["clientSecret"]
    assert len(first["clientSecret"]) >= 43  # 256 random bits, URL-safe


def test_a_session_keeps_the_namespace_and_description_its_card_is_tokenized_with(api):
    body = open_session(api, namespace="SHOPPER_42", description="Checkout of order 1234").json()

    assert body["namespace"] == "SHOPPER_42"
    assert body["description"] == "Checkout of order 1234"


def test_the_lifetime_of_a_session_is_a_setting(api, settings):
    settings.CAPTURE_SESSION_LIFETIME_SECONDS = 60

    body = open_session(api).json()

    lifetime = datetime.fromisoformat(body["expiresAt"]) - datetime.fromisoformat(body["createdAt"])
    assert lifetime == timedelta(seconds=60)


@pytest.mark.parametrize(
    ("origin", "normalised"),
    [
        (SHOP, SHOP),
        ("https://shop.example:8443", "https://shop.example:8443"),
        ("HTTPS://Shop.EXAMPLE", SHOP),
        ("https://shop.example:443", SHOP),
        ("https://checkout.shop-1.example", "https://checkout.shop-1.example"),
        ("https://203.0.113.7", "https://203.0.113.7"),
        ("http://localhost:3000", "http://localhost:3000"),
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("http://localhost:80", "http://localhost"),
    ],
    ids=["https", "port", "capitals", "default-port", "sub-domain", "ipv4", "localhost", "loopback", "http-default"],
)
def test_an_origin_is_taken_as_a_browser_writes_it(api, origin, normalised):
    response = open_session(api, origin=origin)

    assert response.status_code == 201, response.content
    assert response.json()["origin"] == normalised
    assert CaptureSession.objects.get().origin == normalised


@pytest.mark.parametrize(
    "origin",
    [
        "https://shop.example/checkout",
        "https://shop.example/",
        "https://shop.example?cart=1",
        "https://shop.example#pay",
        "https://alice:secret@shop.example",
        "http://shop.example",
        "http://203.0.113.7",
        "ftp://shop.example",
        "shop.example",
        "//shop.example",
        "https://",
        "https://*.shop.example",
        "https://shop..example",
        "https://-shop.example",
        "https://shop.example:0",
        "https://shop.example:65536",
        "https://shop.example:",
        "https://shop.example:https",
        "http://[::1]:8000",
        "https://shop example",
        "https://bücher.example",
        "https://shop.example\\evil.example",
        "null",
        "",
    ],
    ids=[
        "path",
        "slash",
        "query",
        "fragment",
        "userinfo",
        "http-public-host",
        "http-public-address",
        "ftp",
        "no-scheme",
        "scheme-relative",
        "no-host",
        "wildcard",
        "empty-label",
        "hyphen-first",
        "port-zero",
        "port-too-large",
        "port-empty",
        "port-not-a-number",
        "ipv6",
        "space",
        "unicode-host",
        "backslash",
        "opaque-null",
        "empty",
    ],
)
def test_anything_but_an_exact_origin_is_refused(api, origin):
    response = open_session(api, origin=origin)

    assert refusals(response)[0][1] == "$.origin"
    assert not CaptureSession.objects.exists()


def test_an_origin_is_refused_with_a_message_that_says_what_an_origin_is(api):
    response = open_session(api, origin="https://shop.example/checkout")

    assert refusals(response) == [("fieldHasInvalidValue", "$.origin")]
    assert "no path" in response.json()["validationErrors"][0]["message"]


@pytest.mark.parametrize("origin", ["http://localhost:3000", "http://127.0.0.1:8000"], ids=["localhost", "loopback"])
def test_http_to_loopback_is_refused_where_loopback_is_not_allowed(api, settings, origin):
    settings.WEBHOOK_ALLOW_LOOPBACK = False  # as in production

    assert refusals(open_session(api, origin=origin)) == [("fieldHasInvalidValue", "$.origin")]
    assert open_session(api, origin="https://localhost:3000").status_code == 201


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"namespace": ""}, [("fieldIsEmpty", "$.namespace")]),
        ({"namespace": "N" * 65}, [("stringIsTooLong", "$.namespace")]),
        ({"namespace": f"shopper {VISA}"}, [("fieldContainsCardNumber", "$.namespace")]),
        ({"description": "Tea & biscuits"}, [("stringFailedRegexCheck", "$.description")]),
        ({"description": "d" * 256}, [("stringIsTooLong", "$.description")]),
        ({"description": f"card {VISA}"}, [("fieldContainsCardNumber", "$.description")]),
        ({"origin": None}, [("fieldIsNull", "$.origin")]),
        ({"origin": 443}, [("fieldMustBeString", "$.origin")]),
        ({"cardNumber": VISA}, [("unrecognizedField", "$.cardNumber")]),
    ],
    ids=[
        "empty-namespace",
        "long-namespace",
        "card-in-namespace",
        "ampersand-in-description",
        "long-description",
        "card-in-description",
        "null-origin",
        "number-origin",
        "unknown-field",
    ],
)
def test_the_namespace_and_description_obey_the_rules_of_post_tokens(api, body, expected):
    response = open_session(api, **body)

    assert refusals(response) == expected
    assert VISA not in response.content.decode()
    assert not CaptureSession.objects.exists()


def test_a_session_without_an_origin_is_refused(api):
    response = api.post("/capture-sessions", {}, format="json")

    assert refusals(response) == [("fieldIsMissing", "$.origin")]


def test_the_service_judges_what_it_stores_whoever_calls_it(alice):
    with pytest.raises(capture.ValuesRefused) as refused:
        capture.capture_session_create(
            merchant=alice, origin="http://shop.example", namespace=VISA, description="a < b"
        )

    assert [(name, broken.name) for name, broken in refused.value.problems] == [
        ("origin", "fieldHasInvalidValue"),
        ("namespace", "fieldContainsCardNumber"),
        ("description", "stringFailedRegexCheck"),
    ]
    assert VISA not in str(refused.value)
    assert not CaptureSession.objects.exists()


# ------------------------------------------------------------------------------------------------------------
# Keys and scopes
# ------------------------------------------------------------------------------------------------------------
def test_a_session_needs_an_api_key_with_the_tokens_scope(alice):
    _, webhooks_only = merchant_services.api_key_create(merchant=alice, scopes=["webhooks"], name="hooks")
    session = capture.capture_session_create(merchant=alice, origin=SHOP)[0]

    assert APIClient().post("/capture-sessions", {"origin": SHOP}, format="json").status_code == 401
    assert APIClient().get(f"/capture-sessions/{session.public_id}").status_code == 401
    refused = client_for(webhooks_only).post("/capture-sessions", {"origin": SHOP}, format="json")
    assert refused.status_code == 403 and refused.json()["errorName"] == "accessDenied"
    assert client_for(webhooks_only).get(f"/capture-sessions/{session.public_id}").status_code == 403
    assert CaptureSession.objects.count() == 1


def test_bob_cannot_see_alices_session(api, bob_api):
    session_id = open_session(api).json()["id"]

    response = bob_api.get(f"/capture-sessions/{session_id}")

    assert response.status_code == 404
    assert response.json()["errorName"] == "resourceNotFound"


def test_an_unknown_session_answers_404(api):
    response = api.get("/capture-sessions/cs_nothing_at_all")

    assert response.status_code == 404 and response.json()["errorName"] == "resourceNotFound"


# ------------------------------------------------------------------------------------------------------------
# Reading a session
# ------------------------------------------------------------------------------------------------------------
def test_alice_reads_her_open_session_without_its_secret(api):
    created = open_session(api, namespace="SHOPPER_42").json()

    response = api.get(f"/capture-sessions/{created['id']}")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == SESSION_KEYS
    assert body == {key: created[key] for key in SESSION_KEYS}


def test_once_the_shopper_saved_the_card_alice_reads_the_token_and_outcome(api, shopper):
    created = open_session(api).json()
    saved = shopper.post(f"/capture/{created['id']}/card", card(created["clientSecret"]), format="json")
    assert saved.status_code == 201, saved.content

    body = api.get(f"/capture-sessions/{created['id']}").json()

    assert body["status"] == "completed"
    assert body["outcome"] == "created"
    assert body["tokenId"] == saved.json()["tokenId"]
    assert body["href"] == saved.json()["href"]
    assert datetime.fromisoformat(body["completedAt"]) >= datetime.fromisoformat(body["createdAt"])
    token = api.get(path_of(body["href"])).json()
    assert token["tokenId"] == body["tokenId"]
    assert token["tokenPaymentInstrument"]["href"] == body["href"]
    assert "clientSecret" not in body


def test_alice_sees_an_expired_session_as_expired(api):
    created = open_session(api).json()
    CaptureSession.objects.filter(public_id=created["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))

    assert api.get(f"/capture-sessions/{created['id']}").json()["status"] == "expired"


def test_alice_sees_a_session_locked_after_five_failures_as_locked(api, shopper):
    created = open_session(api).json()
    for _ in range(5):
        shopper.post(f"/capture/{created['id']}/card", card("not-the-secret"), format="json")

    body = api.get(f"/capture-sessions/{created['id']}").json()

    assert body["status"] == "locked" and body["failedSubmissions"] == 5


# ------------------------------------------------------------------------------------------------------------
# Idempotency-Key
# ------------------------------------------------------------------------------------------------------------
def test_the_same_request_with_the_same_idempotency_key_opens_one_session(api):
    first = api.post("/capture-sessions", {"origin": SHOP}, format="json", HTTP_IDEMPOTENCY_KEY="checkout-1234")
    again = api.post("/capture-sessions", {"origin": SHOP}, format="json", HTTP_IDEMPOTENCY_KEY="checkout-1234")

    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()  # the same session and secret, which still works
    assert again["Idempotent-Replayed"] == "true"
    assert CaptureSession.objects.count() == 1


def test_another_request_with_the_same_idempotency_key_is_refused(api):
    api.post("/capture-sessions", {"origin": SHOP}, format="json", HTTP_IDEMPOTENCY_KEY="checkout-1234")

    other = api.post(
        "/capture-sessions", {"origin": "https://other.example"}, format="json", HTTP_IDEMPOTENCY_KEY="checkout-1234"
    )

    assert other.status_code == 422 and other.json()["errorName"] == "idempotencyKeyReused"
    assert CaptureSession.objects.count() == 1


# ------------------------------------------------------------------------------------------------------------
# Audit: a session is the merchant's own doing; a wrong secret is a failed authentication (test_capture_submit.py)
# ------------------------------------------------------------------------------------------------------------
def test_opening_a_session_writes_no_secret_anywhere(api):
    secret = open_session(api).json()["clientSecret"]

    assert secret not in str(list(AuditLog.objects.values_list()))


# ------------------------------------------------------------------------------------------------------------
# The back office: bea is back-office staff (the ``back-office`` group), who reads the sessions and changes none
# ------------------------------------------------------------------------------------------------------------
@pytest.fixture
def bea(db, django_user_model):
    return staff_in(django_user_model, "bea", "back-office")


def test_back_office_staff_read_the_sessions_with_their_status_and_token(api, shopper, bea):
    completed = open_session(api).json()
    saved = shopper.post(f"/capture/{completed['id']}/card", card(completed["clientSecret"]), format="json").json()
    locked = open_session(api, origin="https://other.example").json()
    for _ in range(5):
        shopper.post(f"/capture/{locked['id']}/card", card("not-the-secret"), format="json")

    page = bea.get(reverse("admin:vault_capturesession_changelist"))

    assert page.status_code == 200
    html = page.content.decode()
    assert completed["id"] in html and locked["id"] in html
    assert "Completed" in html and "Locked" in html
    assert saved["tokenId"] in html and "4444********1111" in html
    assert VISA not in html and completed["clientSecret"] not in html
    session = CaptureSession.objects.get(public_id=completed["id"])
    detail = bea.get(reverse("admin:vault_capturesession_change", args=[session.pk]))
    assert detail.status_code == 200 and "https://shop.example" in detail.content.decode()
    assert session.client_secret_hash not in detail.content.decode()


def test_sessions_cannot_be_added_changed_or_deleted_in_the_admin(admin_client, alice):
    session, _ = capture.capture_session_create(merchant=alice, origin=SHOP)

    assert admin_client.get(reverse("admin:vault_capturesession_add")).status_code == 403
    assert admin_client.post(reverse("admin:vault_capturesession_delete", args=[session.pk])).status_code == 403
    changed = admin_client.post(reverse("admin:vault_capturesession_change", args=[session.pk]), {"origin": "x"})
    assert changed.status_code == 403
    assert CaptureSession.objects.get().origin == SHOP
