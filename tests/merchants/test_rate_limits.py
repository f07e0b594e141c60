"""Rate limits per API key (DESIGN.md, "Security model"): a general one for every call, and a much tighter one for
the calls that release card data, shared by every server process, set per merchant by staff.

alice is a merchant with the default scopes (``api``); carol is alice's payment processor, the only key allowed to
detokenize (``carol_api``); bob is another merchant, whose limits are his own. The suite's defaults are far above what
any test sends; each test here gives alice (or the settings) a low limit of its own.
"""

import os
import uuid
from io import StringIO

import pytest
import redis
import requests
import yaml
from django.core.cache import cache
from django.core.management import call_command
from django.urls import reverse

from core.models import AuditLog
from merchants import services as merchant_services
from merchants.models import Merchant
from tests.conftest import VISA, client_for, database_url, path_of
from tests.project.test_drills import api_server, free_port

TOO_MANY = {"errorName": "tooManyRequests", "message": "Too many requests; slow down and retry later"}


def limit(merchant: Merchant, **rates: str) -> None:
    """Staff's setting for ``merchant``: ``api_rate_limit`` and/or ``card_data_rate_limit``, e.g. "3/minute"."""
    Merchant.objects.filter(pk=merchant.pk).update(**rates)


def assert_too_many(response, *, at_most: int) -> None:
    assert response.status_code == 429, (response.status_code, response.content[:300])
    assert response.json() == {**TOO_MANY, "requestId": response.headers["X-Request-Id"]}
    assert 1 <= int(response["Retry-After"]) <= at_most + 1


@pytest.fixture
def href(tokenize) -> str:
    """alice's token for the seed's card."""
    response = tokenize()
    assert response.status_code == 201, response.content
    return response.json()["tokenPaymentInstrument"]["href"]


@pytest.fixture
def token_path(href) -> str:
    return path_of(href)


# ------------------------------------------------------------------------------------------------------------
# The general limit
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.pci("6.2.4")
def test_a_key_over_its_limit_is_refused_with_429_and_told_when_to_retry(alice, api):
    limit(alice, api_rate_limit="3/minute")

    answers = [api.get("/tokens") for _ in range(3)]
    refused = api.get("/tokens")

    assert [answer.status_code for answer in answers] == [200, 200, 200]
    assert_too_many(refused, at_most=60)


@pytest.mark.pci("6.2.4")
def test_a_key_further_over_a_limit_staff_lowered_is_still_told_when_to_retry(alice, api):
    limit(alice, api_rate_limit="5/minute")
    for _ in range(5):
        api.get("/tokens")

    limit(alice, api_rate_limit="2/minute")

    assert_too_many(api.get("/tokens"), at_most=60)


@pytest.mark.pci("6.2.4")
def test_every_call_counts_whatever_its_answer(alice, api, tokenize):
    limit(alice, api_rate_limit="3/minute")

    api.get("/tokens?tokenId=0000000000000000000")  # 404
    api.post("/tokens/nothing/detokenize")  # 403: the key may not detokenize
    api.post("/tokens", {"paymentInstrument": {}}, format="json")  # 400

    assert_too_many(tokenize(), at_most=60)


def test_the_limit_is_per_key(alice, bob, api, bob_api):
    _, second_key = merchant_services.api_key_create(merchant=alice, name="second")
    limit(alice, api_rate_limit="2/minute")
    api.get("/tokens")
    api.get("/tokens")

    assert api.get("/tokens").status_code == 429
    assert client_for(second_key).get("/tokens").status_code == 200
    assert bob_api.get("/tokens").status_code == 200


def test_the_defaults_come_from_the_settings_for_a_merchant_without_limits_of_its_own(settings, alice, api):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"api": "2/hour", "card-data": "1/hour"},
    }
    api.get("/tokens")
    api.get("/tokens")

    assert_too_many(api.get("/tokens"), at_most=3600)


def test_a_merchants_own_limit_replaces_the_default(settings, alice, api):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"api": "1/hour", "card-data": "1/hour"},
    }
    limit(alice, api_rate_limit="3/hour")

    assert [api.get("/tokens").status_code for _ in range(4)] == [200, 200, 200, 429]


def test_calls_without_a_key_are_not_counted_against_anyone(alice, api):
    limit(alice, api_rate_limit="1/minute")
    anonymous = client_for("sk_nonsense")

    assert [anonymous.get("/tokens").status_code for _ in range(3)] == [401, 401, 401]
    assert api.get("/tokens").status_code == 200


# ------------------------------------------------------------------------------------------------------------
# Calls that release card data
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.pci("6.2.4")
def test_detokenize_has_a_much_tighter_limit_than_the_other_calls(alice, carol_api, token_path):
    limit(alice, card_data_rate_limit="2/minute")

    released = [carol_api.post(f"{token_path}/detokenize") for _ in range(2)]
    refused = carol_api.post(f"{token_path}/detokenize")

    assert [answer.status_code for answer in released] == [200, 200]
    assert_too_many(refused, at_most=60)
    assert carol_api.get(token_path).status_code == 200  # the general limit is not reached


def test_the_card_data_limit_is_set_apart_from_the_general_one(alice, carol_api, token_path):
    limit(alice, api_rate_limit="3/minute", card_data_rate_limit="100/minute")

    answers = [carol_api.post(f"{token_path}/detokenize").status_code for _ in range(4)]

    assert answers == [200, 200, 200, 429]  # detokenize calls count against the general limit too


@pytest.fixture
def network_token_id(api, href) -> str:
    """alice's ACTIVE Visa network token for her vault token."""
    response = api.post("/network-tokens", {"token": href}, format="json", HTTP_X_CORRELATION_ID="limits")
    assert response.status_code == 201, response.content
    return response.json()["tokenId"]


@pytest.mark.pci("6.2.4")
def test_cryptograms_carrying_the_token_number_count_as_card_data(alice, network_token_id):
    _, processor = merchant_services.api_key_create(merchant=alice, scopes=["network-tokens", "tokens:detokenize"])
    processor_api = client_for(processor)
    limit(alice, card_data_rate_limit="1/minute")
    path = f"/network-tokens/{network_token_id}/cryptograms"

    assert "tokenNumber" in processor_api.post(path).json()
    assert_too_many(processor_api.post(path), at_most=60)


def test_cryptograms_without_the_token_number_count_only_against_the_general_limit(alice, api, network_token_id):
    limit(alice, card_data_rate_limit="1/minute")
    path = f"/network-tokens/{network_token_id}/cryptograms"

    assert [api.post(path).status_code for _ in range(3)] == [200, 200, 200]


def test_the_schema_says_every_call_with_a_key_may_answer_429_with_retry_after(tmp_path):
    target = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target), stdout=StringIO())
    paths = yaml.safe_load(target.read_text())["paths"]

    for path, operations in paths.items():
        for method, operation in operations.items():
            if operation.get("security"):
                assert "Retry-After" in operation["responses"]["429"]["headers"], (method, path)
    assert "429" not in paths["/rels/tokens/{rel}.json"]["get"]["responses"]  # public: no key, no limit


# ------------------------------------------------------------------------------------------------------------
# Refusals in the audit log
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.pci("10.2.1")
def test_a_key_refused_by_a_limit_leaves_one_audit_row_per_window_naming_the_limit(alice, carol_api, token_path):
    limit(alice, card_data_rate_limit="1/minute")
    carol_api.post(f"{token_path}/detokenize")

    for _ in range(5):
        assert carol_api.post(f"{token_path}/detokenize").status_code == 429

    row = AuditLog.objects.get(action="api.rate_limited")
    assert row.result == AuditLog.FAILURE
    assert row.merchant == alice
    assert row.actor.startswith("api-key:sk_")
    assert row.object_type == "api_key" and row.actor == f"api-key:{row.object_id}"
    assert row.detail == {"limit": "card-data", "rate": "1/minute", "endpoint": "token-detokenize"}


def test_each_limit_refusing_a_key_is_audited_under_its_own_name(alice, api, carol_api, token_path):
    limit(alice, api_rate_limit="2/minute", card_data_rate_limit="1/minute")
    carol_api.post(f"{token_path}/detokenize")
    carol_api.post(f"{token_path}/detokenize")  # the card-data limit refuses
    api.get("/tokens")
    api.get("/tokens")
    api.get("/tokens")  # the general limit refuses

    limits = sorted(AuditLog.objects.filter(action="api.rate_limited").values_list("detail__limit", flat=True))
    assert limits == ["api", "card-data"]


# ------------------------------------------------------------------------------------------------------------
# Staff set the limits
# ------------------------------------------------------------------------------------------------------------
def merchant_form(merchant: Merchant, **fields) -> dict:
    key = merchant.api_keys.get()
    return {
        "name": merchant.name,
        "is_active": "on",
        "api_rate_limit": "",
        "card_data_rate_limit": "",
        "api_keys-TOTAL_FORMS": "1",
        "api_keys-INITIAL_FORMS": "1",
        "api_keys-MIN_NUM_FORMS": "0",
        "api_keys-MAX_NUM_FORMS": "0",
        "api_keys-0-id": str(key.pk),
        "api_keys-0-merchant": str(merchant.pk),
        **fields,
    }


def change_page(merchant: Merchant) -> str:
    return reverse("admin:merchants_merchant_change", args=[merchant.pk])


def test_the_merchant_page_shows_the_limits_and_the_defaults_they_fall_back_to(admin_client, alice, settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"api": "123/second", "card-data": "45/minute"},
    }

    page = admin_client.get(change_page(alice)).content.decode()

    assert 'name="api_rate_limit"' in page and 'name="card_data_rate_limit"' in page
    assert "123/second" in page and "45/minute" in page


def test_staff_set_a_merchants_limits_and_the_change_is_audited_and_applies_at_once(admin_client, alice, api):
    form = merchant_form(alice, api_rate_limit="2/minute", card_data_rate_limit="1/hour")
    asked = admin_client.post(change_page(alice), form)  # the confirmation page: old and new limits
    alice.refresh_from_db()
    assert asked.status_code == 200 and alice.api_rate_limit != "2/minute"

    response = admin_client.post(change_page(alice), {**form, "_confirmed": "yes"})

    assert response.status_code == 302
    alice.refresh_from_db()
    assert (alice.api_rate_limit, alice.card_data_rate_limit) == ("2/minute", "1/hour")
    row = AuditLog.objects.get(action="admin.merchant.change")
    assert row.detail == {"api_rate_limit": "2/minute", "card_data_rate_limit": "1/hour"}
    assert [api.get("/tokens").status_code for _ in range(3)] == [200, 200, 429]


@pytest.mark.parametrize("rate", ["lots", "0/minute", "10", "10/fortnight", "-1/second", "100000/second"])
def test_a_limit_that_is_no_rate_is_refused_in_the_form(admin_client, alice, rate):
    response = admin_client.post(change_page(alice), merchant_form(alice, api_rate_limit=rate))

    assert response.status_code == 200  # the form again, with its error
    assert response.context["adminform"].form.errors["api_rate_limit"]
    alice.refresh_from_db()
    assert alice.api_rate_limit == ""


# ------------------------------------------------------------------------------------------------------------
# Shared by every server process
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.pci("6.2.4")
@pytest.mark.django_db(transaction=True)
def test_the_limits_are_shared_by_every_server_process(tmp_path):
    merchant, raw_key = merchant_services.merchant_create(name="Shared Shop")
    limit(merchant, api_rate_limit="6/minute")
    headers = {"Authorization": f"Bearer {raw_key}"}
    try:
        # gunicorn with two worker processes, and this process: one limit between them.
        with api_server(env={"DATABASE_URL": database_url()}, log=tmp_path / "gunicorn.log") as (url, _):
            served = [requests.get(f"{url}/tokens", headers=headers, timeout=10).status_code for _ in range(5)]
            here = client_for(raw_key).get("/tokens").status_code
            then = requests.get(f"{url}/tokens", headers=headers, timeout=10)

        assert served == [200] * 5 and here == 200
        assert then.status_code == 429 and then.json() == {**TOO_MANY, "requestId": then.headers["X-Request-Id"]}
        assert client_for(raw_key).get("/tokens").status_code == 429
    finally:
        cache.clear()  # the next transactional test's keys may have this one's id


def test_the_limits_hold_on_redis_as_in_production(settings, alice, api):
    broker = os.environ.get("CELERY_BROKER_URL", "")
    if not broker.startswith("redis://"):
        pytest.fail("this test needs a real Redis server: run it through `make test` or set CELERY_BROKER_URL")
    prefix = f"test-{uuid.uuid4().hex}"
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": broker, "KEY_PREFIX": prefix}
    }
    limit(alice, api_rate_limit="2/minute")

    answers = [api.get("/tokens").status_code for _ in range(3)]

    assert answers == [200, 200, 429]
    assert AuditLog.objects.filter(action="api.rate_limited").count() == 1
    assert redis.Redis.from_url(broker).keys(f"{prefix}:*")  # counted there, not in the database


def test_while_the_cache_is_unreachable_calls_are_served_but_no_card_data_is_released(
    settings, carol_api, token_path, caplog
):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{free_port()}/0",  # nothing listens there: Redis is down
        }
    }

    served = carol_api.get(token_path)
    refused = carol_api.post(f"{token_path}/detokenize")

    assert served.status_code == 200
    assert refused.status_code == 503 and refused.json()["errorName"] == "serviceUnavailable"
    assert refused["Retry-After"] == "1"
    assert VISA not in refused.content.decode()
    assert "rate limit could not be checked: the cache is unavailable" in caplog.text
