"""Authentication, scopes and isolation (DESIGN.md, "Security model").

alice is a merchant with the default scopes (``api``); bob is another merchant who must see none of alice's tokens
(``bob_api``); carol is alice's payment processor, the only key allowed to detokenize (``carol_api``). Anonymous
clients carry no key at all.
"""

import hashlib
import json
import secrets
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from core.models import AuditLog
from merchants import services as merchant_services
from merchants.models import DEFAULT_SCOPES, SCOPES, ApiKey, Merchant
from tests.conftest import SHERLOCK, client_for, path_of, text_without_request_id

ORIGIN = "203.0.113.7"  # TEST-NET-3: the client address the audit rows must record


def assert_access_denied(response, status: int) -> dict:
    assert response.status_code == status, (response.status_code, response.content[:500])
    body = response.json()
    assert body["errorName"] == "accessDenied", body
    assert set(body) == {"errorName", "message", "requestId"}, body
    assert body["message"]
    return body


def assert_unauthorized(response) -> None:
    assert_access_denied(response, 401)
    assert response["WWW-Authenticate"].startswith("Bearer"), response.get("WWW-Authenticate")


def failed_auth_rows():
    return list(AuditLog.objects.filter(action="auth.failed"))


def assert_one_failure_audited(presented: str = "") -> AuditLog:
    rows = failed_auth_rows()
    assert len(rows) == 1, rows
    [row] = rows
    assert row.result == AuditLog.FAILURE
    assert row.origin == ORIGIN
    assert row.merchant is None or isinstance(row.merchant, Merchant)
    if presented:
        stored = " ".join([row.actor, row.object_type, row.object_id, row.origin, json.dumps(row.detail)])
        assert presented not in stored, "the audit row holds the full presented key"
    return row


@pytest.fixture
def anonymous() -> APIClient:
    return APIClient()


@pytest.fixture
def alice_token(tokenize) -> str:
    """The path of a token of alice's."""
    response = tokenize()
    assert response.status_code == 201, response.json()
    return path_of(response.json()["tokenPaymentInstrument"]["href"])


# ------------------------------------------------------------------------------------------------------------
# Authentication failures: 401, a Bearer challenge, an audit row without the key
# ------------------------------------------------------------------------------------------------------------
def test_it_refuses_a_request_without_an_authorization_header(db, anonymous):
    assert_unauthorized(anonymous.get("/tokens", REMOTE_ADDR=ORIGIN))
    assert_one_failure_audited()


def test_it_refuses_a_post_without_credentials_before_reading_the_body(db, anonymous):
    response = anonymous.post("/tokens", SHERLOCK, format="json", REMOTE_ADDR=ORIGIN)
    assert_unauthorized(response)
    assert "4444" not in text_without_request_id(response)
    assert_one_failure_audited()


@pytest.mark.parametrize(
    "presented", [f"sk_{secrets.token_urlsafe(32)}", "sk_short", "hunter2"], ids=["key-shaped", "short-key", "password"]
)
def test_it_refuses_an_unknown_key(db, anonymous, presented):
    anonymous.credentials(HTTP_AUTHORIZATION=f"Bearer {presented}")
    assert_unauthorized(anonymous.get("/tokens", REMOTE_ADDR=ORIGIN))
    assert_one_failure_audited(presented)


@pytest.mark.parametrize("header", ["Basic xyz", "Bearer", "Bearer ", "bearer", "Token abc", "sk_abc"])
def test_it_refuses_a_malformed_authorization_header(db, anonymous, header):
    anonymous.credentials(HTTP_AUTHORIZATION=header)
    assert_unauthorized(anonymous.get("/tokens", REMOTE_ADDR=ORIGIN))
    assert_one_failure_audited()


def test_it_refuses_a_valid_key_under_another_scheme_without_storing_it(alice, anonymous):
    anonymous.credentials(HTTP_AUTHORIZATION=f"Basic {alice.raw_key}")
    assert_unauthorized(anonymous.get("/tokens", REMOTE_ADDR=ORIGIN))
    assert_one_failure_audited(alice.raw_key)


def test_it_refuses_a_revoked_key(alice, api):
    assert api.get("/tokens").status_code == 200
    ApiKey.objects.filter(merchant=alice).update(revoked_at=timezone.now())
    assert_unauthorized(api.get("/tokens", REMOTE_ADDR=ORIGIN))
    assert_one_failure_audited(alice.raw_key)


def test_it_refuses_the_key_of_an_inactive_merchant(alice, api):
    alice.is_active = False
    alice.save(update_fields=["is_active"])
    assert_unauthorized(api.get("/tokens", REMOTE_ADDR=ORIGIN))
    assert_one_failure_audited(alice.raw_key)


def test_a_revoked_key_does_not_affect_the_merchants_other_keys(alice, api):
    _, other = merchant_services.api_key_create(merchant=alice, name="second")
    ApiKey.objects.filter(merchant=alice, name="default").update(revoked_at=timezone.now())
    assert_unauthorized(api.get("/tokens"))
    assert client_for(other).get("/tokens").status_code == 200


@pytest.mark.parametrize("path", ["/tokens", "/tokens/anything", "/tokens/anything/detokenize"])
def test_every_token_endpoint_needs_a_key(db, anonymous, path):
    assert_unauthorized(anonymous.get(path) if not path.endswith("detokenize") else anonymous.post(path))


def test_a_successful_request_writes_no_failure_row(api):
    assert api.get("/tokens").status_code == 200
    assert failed_auth_rows() == []


# ------------------------------------------------------------------------------------------------------------
# Scopes
# ------------------------------------------------------------------------------------------------------------
def test_a_new_key_gets_every_scope_but_detokenize(db):
    merchant, raw = merchant_services.merchant_create(name="Dora's Deli")
    key = ApiKey.objects.get(merchant=merchant)
    assert set(key.scopes) == set(SCOPES) - {"tokens:detokenize"}
    assert set(key.scopes) == {"tokens", "network-tokens", "webhooks", "forwarding"}
    assert set(DEFAULT_SCOPES) == set(key.scopes)


def test_a_key_without_the_tokens_scope_is_forbidden_on_tokens(alice):
    _, raw = merchant_services.api_key_create(merchant=alice, scopes=["network-tokens", "webhooks"], name="no-tokens")
    client = client_for(raw)
    assert_access_denied(client.get("/tokens"), 403)
    assert_access_denied(client.post("/tokens", SHERLOCK, format="json"), 403)


def test_a_key_without_the_detokenize_scope_is_forbidden_to_detokenize(api, alice_token):
    assert_access_denied(api.post(f"{alice_token}/detokenize"), 403)


def test_a_key_with_the_detokenize_scope_detokenizes(carol_api, alice_token):
    response = carol_api.post(f"{alice_token}/detokenize")
    assert response.status_code == 200, response.json()
    assert response.json()["paymentInstrument"]["cardNumber"] == SHERLOCK["paymentInstrument"]["cardNumber"]


def test_a_detokenize_only_key_cannot_manage_tokens(alice, alice_token):
    _, raw = merchant_services.api_key_create(merchant=alice, scopes=["tokens:detokenize"], name="detokenize-only")
    client = client_for(raw)
    assert_access_denied(client.get(alice_token), 403)
    assert client.post(f"{alice_token}/detokenize").status_code == 200


# ------------------------------------------------------------------------------------------------------------
# Keys are stored hashed
# ------------------------------------------------------------------------------------------------------------
def test_it_stores_only_the_hash_of_a_key(alice):
    key = ApiKey.objects.get(merchant=alice)
    raw = alice.raw_key
    assert len(raw) >= 32
    for field in ApiKey._meta.concrete_fields:
        assert raw not in str(field.value_from_object(key)), field.name
    assert key.key_hash == hashlib.sha256(raw.encode()).hexdigest()
    assert len(key.prefix) <= 12 and raw.startswith(key.prefix)
    assert len(key.prefix) < len(raw) // 2


def test_two_keys_never_share_a_value(alice):
    _, first = merchant_services.api_key_create(merchant=alice, name="one")
    _, second = merchant_services.api_key_create(merchant=alice, name="two")
    assert len({alice.raw_key, first, second}) == 3


# ------------------------------------------------------------------------------------------------------------
# Last use, to the minute, without a query on most calls
# ------------------------------------------------------------------------------------------------------------
def key_writes(queries) -> list[str]:
    return [q["sql"] for q in queries if q["sql"].startswith("UPDATE") and "vault_apikey" in q["sql"]]


def test_a_call_records_when_its_key_was_last_used(alice, api, carol_api):
    key = alice.api_keys.get(name="default")
    assert key.last_used_at is None
    before = timezone.now()

    assert api.get("/tokens").status_code == 200

    key.refresh_from_db()
    assert before <= key.last_used_at <= timezone.now()
    assert alice.api_keys.get(name="processor").last_used_at is None  # carol's key has not called yet


def test_a_second_call_within_the_minute_writes_nothing(alice, api):
    with CaptureQueriesContext(connection) as first:
        assert api.get("/tokens").status_code == 200
    used = alice.api_keys.get().last_used_at

    with CaptureQueriesContext(connection) as second:
        assert api.get("/tokens").status_code == 200

    assert len(key_writes(first)) == 1
    assert key_writes(second) == []
    assert len(second) == len(first) - 1
    assert alice.api_keys.get().last_used_at == used


def test_a_use_another_process_recorded_within_the_minute_is_not_written_again(alice):
    key, minute = alice.api_keys.get(), timedelta(minutes=1)
    now = timezone.now()

    assert merchant_services.api_key_used(key_id=key.pk, at=now, precision=minute)
    assert not merchant_services.api_key_used(key_id=key.pk, at=now + timedelta(seconds=50), precision=minute)
    assert not merchant_services.api_key_used(key_id=key.pk, at=now - timedelta(minutes=5), precision=minute)
    key.refresh_from_db()
    assert key.last_used_at == now
    assert merchant_services.api_key_used(key_id=key.pk, at=now + timedelta(seconds=61), precision=minute)


# ------------------------------------------------------------------------------------------------------------
# create_merchant
# ------------------------------------------------------------------------------------------------------------
def create_merchant(*args) -> str:
    out = StringIO()
    call_command("create_merchant", *args, stdout=out)
    return out.getvalue()


def test_create_merchant_prints_one_json_line_with_a_working_key(db):
    output = create_merchant("Eve's Emporium", "--json")
    lines = output.splitlines()
    assert len(lines) == 1, output
    data = json.loads(lines[0])
    assert set(data) == {"merchantId", "apiKey"}
    merchant = Merchant.objects.get(public_id=data["merchantId"])
    assert merchant.name == "Eve's Emporium"
    key = ApiKey.objects.get(merchant=merchant)
    assert key.key_hash == ApiKey.hash(data["apiKey"])
    assert set(key.scopes) == set(DEFAULT_SCOPES)
    assert client_for(data["apiKey"]).get("/tokens").status_code == 200
    assert client_for(data["apiKey"]).post("/tokens", SHERLOCK, format="json").status_code == 201


def test_create_merchant_restricts_the_scopes_it_is_told(db):
    data = json.loads(create_merchant("Frank's Fries", "--scopes", "tokens", "--json"))
    key = ApiKey.objects.get(merchant__public_id=data["merchantId"])
    assert key.scopes == ["tokens"]
    client = client_for(data["apiKey"])
    response = client.post("/tokens", SHERLOCK, format="json")
    assert response.status_code == 201
    path = path_of(response.json()["tokenPaymentInstrument"]["href"])
    assert_access_denied(client.post(f"{path}/detokenize"), 403)


def test_create_merchant_can_grant_the_detokenize_scope(db):
    data = json.loads(create_merchant("Grace's Garage", "--scopes", "tokens,tokens:detokenize", "--json"))
    assert set(ApiKey.objects.get(merchant__public_id=data["merchantId"]).scopes) == {"tokens", "tokens:detokenize"}


def test_create_merchant_refuses_an_unknown_scope_and_creates_nothing(db):
    with pytest.raises(CommandError, match="^unknown scope: everything; choose from tokens, "):
        create_merchant("Mallory's Mart", "--scopes", "tokens,everything", "--json")
    with pytest.raises(CommandError, match="^unknown scopes: all, everything; "):
        create_merchant("Mallory's Mart", "--scopes", "everything,tokens,all", "--json")
    assert not Merchant.objects.filter(name="Mallory's Mart").exists()


def test_create_merchant_without_json_shows_the_key_once(db):
    output = create_merchant("Heidi's Hats")
    key = ApiKey.objects.get(merchant__name="Heidi's Hats")
    shown = [word for word in output.split() if word.startswith(key.prefix)]
    assert len(shown) == 1 and ApiKey.hash(shown[0]) == key.key_hash


# ------------------------------------------------------------------------------------------------------------
# Isolation: another merchant's token is not found, never forbidden
# ------------------------------------------------------------------------------------------------------------
def assert_not_found(response) -> None:
    assert response.status_code == 404, (response.status_code, response.content[:500])
    assert response.json()["errorName"] == "resourceNotFound", response.json()


def test_bob_cannot_get_alices_token(bob_api, alice_token):
    assert_not_found(bob_api.get(alice_token))


def test_bob_cannot_find_alices_token_by_token_id(api, bob_api, alice_token):
    token_id = api.get(alice_token).json()["tokenId"]
    assert_not_found(bob_api.get("/tokens", {"tokenId": token_id}))


def test_bob_cannot_list_alices_namespace(tokenize, bob_api):
    assert tokenize(namespace="shopper-1").status_code == 201
    response = bob_api.get("/tokens", {"namespace": "shopper-1"})
    assert response.status_code == 200
    assert response.json()["_embedded"]["tokens"] == []


def test_bob_cannot_delete_alices_token(api, bob_api, alice_token):
    assert_not_found(bob_api.delete(alice_token))
    assert api.get(alice_token).status_code == 200


@pytest.mark.parametrize(
    "detail, value",
    [
        ("description", "Bob was here"),
        ("cardHolderName", "Bob"),
        ("schemeTransactionReference", "BOB1"),
        ("cardExpiryDate", {"month": 1, "year": 2040}),
        ("billingAddress", {"address1": "1 Bob Road", "postalCode": "B0B", "city": "Bobton", "countryCode": "GB"}),
    ],
)
def test_bob_cannot_change_alices_token(api, bob_api, alice_token, detail, value):
    before = api.get(alice_token).json()
    assert_not_found(bob_api.put(f"{alice_token}/{detail}", value, format="json"))
    assert api.get(alice_token).json() == before


def test_bob_cannot_see_or_apply_alices_conflict(api, bob_api, tokenize, alice_token):
    conflicting = json.loads(json.dumps(SHERLOCK))
    conflicting["paymentInstrument"]["cardHolderName"] = "John Watson"
    assert tokenize(conflicting).status_code == 409
    assert api.get(f"{alice_token}/conflicts").status_code == 200

    assert_not_found(bob_api.get(f"{alice_token}/conflicts"))
    assert_not_found(bob_api.put(f"{alice_token}/conflicts"))
    assert api.get(alice_token).json()["paymentInstrument"]["cardHolderName"] == "Sherlock Holmes"
    assert api.get(f"{alice_token}/conflicts").status_code == 200


def test_bob_cannot_detokenize_alices_token_even_with_the_scope(bob, alice_token):
    # With the scope, so the 404 comes from the ownership check and not from a missing scope.
    _, raw = merchant_services.api_key_create(merchant=bob, scopes=["tokens", "tokens:detokenize"], name="processor")
    response = client_for(raw).post(f"{alice_token}/detokenize")
    assert_not_found(response)
    assert "4444" not in text_without_request_id(response)


def test_bob_tokenizing_the_same_card_gets_his_own_token(api, bob_api, alice_token):
    response = bob_api.post("/tokens", SHERLOCK, format="json")
    assert response.status_code == 201
    bobs = path_of(response.json()["tokenPaymentInstrument"]["href"])
    assert bobs != alice_token
    assert_not_found(api.get(bobs))


# ------------------------------------------------------------------------------------------------------------
# Public endpoints
# ------------------------------------------------------------------------------------------------------------
def test_health_answers_without_credentials(db, anonymous):
    assert anonymous.get("/healthz").status_code == 200
    response = anonymous.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"]["database"] == "ok"


def test_the_openapi_schema_answers_without_credentials(db, anonymous):
    response = anonymous.get("/api/schema/")
    assert response.status_code == 200
    assert b"/tokens" in response.content


def test_the_api_docs_answer_without_credentials(db, anonymous):
    assert anonymous.get("/api/docs/").status_code == 200


def test_public_endpoints_write_no_failure_row(db, anonymous):
    anonymous.get("/healthz")
    anonymous.get("/readyz")
    anonymous.get("/api/schema/")
    assert failed_auth_rows() == []
