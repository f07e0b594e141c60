"""The webhook API as a merchant sees it (`/webhook-endpoints`, `/events`): DESIGN.md "Webhooks", "Errors" and
"Security model".

Actors (tests/conftest.py): alice is a merchant with the default scopes (webhooks included); bob is another merchant
who must see none of alice's endpoints or events, and receive none of her deliveries. Deliveries are queued to the
dispatcher after commit; the broker is outside the product, so the shared ``broker`` stub records the messages instead,
and the tests run the dispatcher themselves (``dispatch``) where they look at the delivery rows, the product's record.
"""

import json
from datetime import datetime, timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from merchants import services as merchant_services
from notifications import services as notification_services
from notifications.models import Delivery, Event, WebhookEndpoint
from tests.conftest import MASTERCARD, VISA, VISA_2, client_for, path_of

HOOK = "http://127.0.0.1:9/hook"
OTHER_HOOK = "http://127.0.0.1:9/other-hook"
ENDPOINT_FIELDS = {"id", "url", "description", "eventTypes", "enabled", "disabledReason", "failingSince", "createdAt"}


# ------------------------------------------------------------------------------------------------------------
# Helpers and fixtures
# ------------------------------------------------------------------------------------------------------------
def instant(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def only_error(response) -> tuple[str, str]:
    body = response.json()
    assert body["errorName"] == "bodyDoesNotMatchSchema", body
    assert len(body["validationErrors"]) == 1, body
    error = body["validationErrors"][0]
    return error["errorName"], error["jsonPath"]


def create_endpoint(client, url=HOOK, **fields):
    response = client.post("/webhook-endpoints", {"url": url, **fields}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def dispatch() -> None:
    """What a worker does on the message an event's commit sends (``fan_out_events``): makes its deliveries. A ``db``
    test never commits, so it runs the dispatcher itself, in the transaction that sees the events."""
    notification_services.events_fan_out()


def events_of(client, query="") -> list[dict]:
    response = client.get(f"/events{query}")
    assert response.status_code == 200, response.content
    return response.json()["_embedded"]["events"]


@pytest.fixture
def endpoint(api) -> dict:
    """alice's endpoint, subscribed to every event type (as created: with its secret)."""
    return create_endpoint(api, description="Orders service")


@pytest.fixture
def token_path(tokenize, endpoint) -> str:
    """A card alice tokenized once her endpoint existed, its event dispatched."""
    response = tokenize()
    assert response.status_code == 201, response.content
    dispatch()
    return path_of(response.json()["tokenPaymentInstrument"]["href"])


@pytest.fixture
def event(api, token_path) -> dict:
    """The token.created event of alice's card, as /events shows it."""
    (created,) = events_of(api)
    return created


# ------------------------------------------------------------------------------------------------------------
# Endpoints: create, read, change, remove
# ------------------------------------------------------------------------------------------------------------
def test_creating_an_endpoint_answers_201_with_its_id_and_a_secret_shown_once(api):
    response = api.post(
        "/webhook-endpoints",
        {"url": HOOK, "eventTypes": ["token.created", "token.deleted"], "description": "Orders service"},
        format="json",
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == ENDPOINT_FIELDS | {"secret"}
    assert body["id"].startswith("ep_")
    assert body["url"] == HOOK
    assert body["eventTypes"] == ["token.created", "token.deleted"]
    assert body["description"] == "Orders service"
    assert body["enabled"] is True
    assert body["disabledReason"] is None
    assert body["failingSince"] is None
    assert body["secret"].startswith("whsec_")
    assert WebhookEndpoint.objects.get(public_id=body["id"]).secret == body["secret"]


def test_an_endpoint_without_event_types_or_description_gets_every_type_and_an_empty_description(api):
    body = create_endpoint(api)

    assert body["eventTypes"] == []
    assert body["description"] == ""


def test_the_secret_is_never_shown_again_by_get_list_or_patch(api, endpoint):
    path = f"/webhook-endpoints/{endpoint['id']}"
    answers = [
        api.get(path),
        api.get("/webhook-endpoints"),
        api.patch(path, {"description": "Renamed"}, format="json"),
    ]

    for answer in answers:
        assert answer.status_code == 200, answer.content
        assert "secret" not in answer.json()
        assert endpoint["secret"] not in answer.content.decode()
    assert "secret" not in answers[1].json()["_embedded"]["webhookEndpoints"][0]


def test_the_list_shows_alices_endpoints_without_their_secrets(api, endpoint):
    second = create_endpoint(api, OTHER_HOOK, eventTypes=["token.deleted"])

    response = api.get("/webhook-endpoints")

    assert response.status_code == 200
    listed = response.json()["_embedded"]["webhookEndpoints"]
    assert [e["id"] for e in listed] == [endpoint["id"], second["id"]]
    assert all(set(e) == ENDPOINT_FIELDS for e in listed)
    assert listed[1]["url"] == OTHER_HOOK
    assert listed[1]["eventTypes"] == ["token.deleted"]


def test_getting_one_endpoint_shows_what_was_created(api, endpoint):
    response = api.get(f"/webhook-endpoints/{endpoint['id']}")

    assert response.status_code == 200
    assert response.json() == {key: value for key, value in endpoint.items() if key != "secret"}


def test_patch_changes_url_event_types_and_description(api, endpoint):
    path = f"/webhook-endpoints/{endpoint['id']}"

    response = api.patch(
        path, {"url": OTHER_HOOK, "eventTypes": ["token.updated"], "description": "Billing"}, format="json"
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["url"], body["eventTypes"], body["description"]) == (OTHER_HOOK, ["token.updated"], "Billing")
    assert api.get(path).json() == body


def test_patch_of_one_field_leaves_the_others_alone(api):
    created = create_endpoint(api, eventTypes=["token.created"], description="Orders service")

    body = api.patch(f"/webhook-endpoints/{created['id']}", {"description": "Billing"}, format="json").json()

    assert (body["url"], body["eventTypes"], body["description"]) == (HOOK, ["token.created"], "Billing")


def test_patch_enabled_false_disables_the_endpoint_with_a_reason(api, endpoint):
    response = api.patch(f"/webhook-endpoints/{endpoint['id']}", {"enabled": False}, format="json")

    assert response.status_code == 200, response.content
    assert response.json()["enabled"] is False
    assert response.json()["disabledReason"]


def test_re_enabling_an_endpoint_clears_its_disabled_reason_and_failure_streak(api, endpoint):
    WebhookEndpoint.objects.filter(public_id=endpoint["id"]).update(
        is_enabled=False,
        disabled_reason="The endpoint answered 410 Gone",
        disabled_at=timezone.now(),
        failing_since=timezone.now() - timedelta(days=2),
    )
    before = api.get(f"/webhook-endpoints/{endpoint['id']}").json()
    assert (before["enabled"], before["disabledReason"]) == (False, "The endpoint answered 410 Gone")
    assert before["failingSince"] is not None

    response = api.patch(f"/webhook-endpoints/{endpoint['id']}", {"enabled": True}, format="json")

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["enabled"], body["disabledReason"], body["failingSince"]) == (True, None, None)
    assert api.get(f"/webhook-endpoints/{endpoint['id']}").json() == body


def test_a_disabled_endpoint_gets_no_delivery_of_new_events(api, endpoint, tokenize):
    api.patch(f"/webhook-endpoints/{endpoint['id']}", {"enabled": False}, format="json")

    tokenize()
    dispatch()

    (created,) = events_of(api)
    assert created["deliveries"] == []


def test_deleting_an_endpoint_answers_204_and_then_it_is_gone(api, endpoint):
    path = f"/webhook-endpoints/{endpoint['id']}"

    response = api.delete(path)

    assert response.status_code == 204
    assert response.content == b""
    gone = api.get(path)
    assert gone.status_code == 404
    assert gone.json()["errorName"] == "resourceNotFound"
    assert api.delete(path).status_code == 404
    assert api.get("/webhook-endpoints").json()["_embedded"]["webhookEndpoints"] == []


def test_an_unknown_endpoint_id_answers_404_resource_not_found(api):
    response = api.get("/webhook-endpoints/ep_doesnotexist")

    assert response.status_code == 404
    assert response.json()["errorName"] == "resourceNotFound"


# ------------------------------------------------------------------------------------------------------------
# Endpoints: validation, in the shared error shape
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"description": "no url"}, ("fieldIsMissing", "$.url")),
        ({"url": HOOK, "secret": "whsec_mine"}, ("unrecognizedField", "$.secret")),
        ({"url": HOOK, "eventTypes": ["token.exploded"]}, ("fieldHasInvalidValue", "$.eventTypes[0]")),
        ({"url": HOOK, "eventTypes": ["token.created", "card.stolen"]}, ("fieldHasInvalidValue", "$.eventTypes[1]")),
        ({"url": HOOK, "eventTypes": "token.created"}, ("fieldMustBeArray", "$.eventTypes")),
        ({"url": HOOK, "eventTypes": {"type": "token.created"}}, ("fieldMustBeArray", "$.eventTypes")),
        ({"url": 42}, ("fieldMustBeString", "$.url")),
        ({"url": "ftp://x"}, ("fieldHasInvalidValue", "$.url")),
        ({"url": "http://10.0.0.1/x"}, ("fieldHasInvalidValue", "$.url")),
        ({"url": "http://169.254.169.254/latest/meta-data"}, ("fieldHasInvalidValue", "$.url")),
        ({"url": "http://100.64.0.1/x"}, ("fieldHasInvalidValue", "$.url")),
        ({"url": "http://[::ffff:10.0.0.1]/x"}, ("fieldHasInvalidValue", "$.url")),
    ],
)
def test_creating_an_endpoint_refuses_a_bad_body(api, body, expected):
    response = api.post("/webhook-endpoints", body, format="json")

    assert response.status_code == 400, response.content
    assert only_error(response) == expected
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"enabled": "yes"}, ("fieldMustBeBoolean", "$.enabled")),
        ({"enabled": 1}, ("fieldMustBeBoolean", "$.enabled")),
        ({"secret": "whsec_mine"}, ("unrecognizedField", "$.secret")),
        ({"eventTypes": ["token.exploded"]}, ("fieldHasInvalidValue", "$.eventTypes[0]")),
        ({"eventTypes": "token.created"}, ("fieldMustBeArray", "$.eventTypes")),
        ({"url": "ftp://x"}, ("fieldHasInvalidValue", "$.url")),
    ],
)
def test_patch_refuses_a_bad_body_and_changes_nothing(api, endpoint, body, expected):
    path = f"/webhook-endpoints/{endpoint['id']}"
    before = api.get(path).json()

    response = api.patch(path, body, format="json")

    assert response.status_code == 400, response.content
    assert only_error(response) == expected
    assert api.get(path).json() == before


def test_patch_to_a_private_url_answers_400_and_keeps_the_stored_url(api, endpoint):
    path = f"/webhook-endpoints/{endpoint['id']}"

    response = api.patch(path, {"url": "http://10.0.0.1/x", "description": "moved"}, format="json")

    assert response.status_code == 400, response.content
    assert only_error(response) == ("fieldHasInvalidValue", "$.url")
    after = api.get(path).json()
    assert (after["url"], after["description"]) == (HOOK, "Orders service")
    assert WebhookEndpoint.objects.get(public_id=endpoint["id"]).url == HOOK


@pytest.mark.parametrize("method", ["post", "patch"])
def test_an_empty_body_answers_body_is_empty(api, endpoint, method):
    path = "/webhook-endpoints" if method == "post" else f"/webhook-endpoints/{endpoint['id']}"

    response = getattr(api, method)(path, content_type="application/json")

    assert response.status_code == 400, response.content
    assert response.json()["errorName"] == "bodyIsEmpty"


def test_a_body_that_is_not_json_answers_body_is_not_json(api):
    response = api.post("/webhook-endpoints", "{url:", content_type="application/json")

    assert response.status_code == 400
    assert response.json()["errorName"] == "bodyIsNotJson"


# ------------------------------------------------------------------------------------------------------------
# Secret rotation
# ------------------------------------------------------------------------------------------------------------
def test_rotating_the_secret_answers_a_new_secret_and_keeps_the_old_one_signing_for_24_hours(api, endpoint):
    response = api.post(f"/webhook-endpoints/{endpoint['id']}/rotate-secret")

    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"secret", "previousSecretExpiresAt"}
    assert body["secret"].startswith("whsec_")
    assert body["secret"] != endpoint["secret"]
    expected_expiry = timezone.now() + timedelta(hours=24)
    assert abs(instant(body["previousSecretExpiresAt"]) - expected_expiry) < timedelta(minutes=1)
    stored = WebhookEndpoint.objects.get(public_id=endpoint["id"])
    assert stored.secret == body["secret"]
    assert stored.previous_secret == endpoint["secret"]
    assert stored.signing_secrets() == [body["secret"], endpoint["secret"]]


def test_the_old_secret_stops_signing_once_its_24_hours_are_over(api, endpoint):
    new = api.post(f"/webhook-endpoints/{endpoint['id']}/rotate-secret").json()["secret"]

    stored = WebhookEndpoint.objects.get(public_id=endpoint["id"])

    assert stored.signing_secrets(now=timezone.now() + timedelta(hours=24, minutes=1)) == [new]


def test_the_rotated_secret_is_not_shown_by_get_afterwards(api, endpoint):
    new = api.post(f"/webhook-endpoints/{endpoint['id']}/rotate-secret").json()["secret"]

    answer = api.get(f"/webhook-endpoints/{endpoint['id']}").content.decode()

    assert new not in answer
    assert endpoint["secret"] not in answer


# ------------------------------------------------------------------------------------------------------------
# Events
# ------------------------------------------------------------------------------------------------------------
def test_tokenizing_a_card_makes_a_token_created_event_with_a_pending_delivery_to_the_endpoint(api, endpoint, tokenize):
    created = tokenize()
    assert created.status_code == 201, created.content
    dispatch()

    (event,) = events_of(api)

    assert event["id"].startswith("msg_")
    assert event["type"] == "token.created"
    assert abs(instant(event["createdAt"]) - timezone.now()) < timedelta(minutes=1)
    assert event["data"]["tokenId"] == created.json()["tokenId"]
    (delivery,) = event["deliveries"]
    assert delivery["endpointId"] == endpoint["id"]
    assert delivery["url"] == HOOK
    assert delivery["status"] == "PENDING"
    assert delivery["attempts"] == 0
    assert delivery["nextAttemptAt"] is not None
    assert delivery["deliveredAt"] is None


def test_an_event_has_one_delivery_per_subscribed_endpoint_only(api, tokenize):
    everything = create_endpoint(api)
    creations = create_endpoint(api, OTHER_HOOK, eventTypes=["token.created"])
    create_endpoint(api, "http://127.0.0.1:9/deletions", eventTypes=["token.deleted"])

    tokenize()
    dispatch()

    (event,) = events_of(api)
    assert sorted(d["endpointId"] for d in event["deliveries"]) == sorted([everything["id"], creations["id"]])


def test_an_event_is_recorded_even_without_any_endpoint(api, tokenize):
    tokenize()
    dispatch()

    (event,) = events_of(api)
    assert event["type"] == "token.created"
    assert event["deliveries"] == []


def test_getting_one_event_shows_token_id_href_and_the_masked_card_never_the_number(api, event, token_path):
    response = api.get(f"/events/{event['id']}")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body == event
    data = body["data"]
    assert path_of(data["href"]) == token_path
    assert data["tokenId"] == api.get(token_path).json()["tokenId"]
    assert data["paymentInstrument"]["cardNumber"] == "4444********1111"
    assert VISA not in response.content.decode()
    assert VISA not in json.dumps(Event.objects.get(public_id=event["id"]).data)


def test_an_unknown_event_id_answers_404_resource_not_found(api):
    response = api.get("/events/msg_doesnotexist")

    assert response.status_code == 404
    assert response.json()["errorName"] == "resourceNotFound"


def test_deleting_the_token_makes_a_token_deleted_event(api, event, token_path):
    assert api.delete(token_path).status_code == 204

    newest = events_of(api)[0]

    assert newest["type"] == "token.deleted"
    assert newest["data"]["tokenId"] == event["data"]["tokenId"]
    assert VISA not in json.dumps(newest)


def test_changing_the_description_makes_a_token_updated_event_naming_what_changed(api, event, token_path):
    assert api.put(f"{token_path}/description", "Sherlock's card", format="json").status_code == 204

    newest = events_of(api)[0]

    assert newest["type"] == "token.updated"
    assert newest["data"]["changed"] == ["description"]
    assert newest["data"]["tokenId"] == event["data"]["tokenId"]


def test_the_type_filter_shows_only_that_type(api, event, token_path):
    api.put(f"{token_path}/description", "Sherlock's card", format="json")
    api.delete(token_path)

    assert [e["type"] for e in events_of(api)] == ["token.deleted", "token.updated", "token.created"]
    assert [e["id"] for e in events_of(api, "?type=token.created")] == [event["id"]]
    assert [e["type"] for e in events_of(api, "?type=token.deleted")] == ["token.deleted"]
    assert events_of(api, "?type=network_token.created") == []


def test_an_unknown_type_filter_answers_400(api):
    response = api.get("/events?type=token.exploded")

    assert response.status_code == 400
    assert response.json()["errorName"] == "bodyDoesNotMatchSchema"


def test_events_are_paginated_newest_first(api, tokenize):
    token_ids = [tokenize(cardNumber=number).json()["tokenId"] for number in (VISA, VISA_2, MASTERCARD)]

    first = api.get("/events?page=1&pageSize=2").json()
    second = api.get("/events?page=2&pageSize=2").json()

    assert first["page"] == {"number": 1, "size": 2, "totalElements": 3, "totalPages": 2}
    assert second["page"] == {"number": 2, "size": 2, "totalElements": 3, "totalPages": 2}
    listed = first["_embedded"]["events"] + second["_embedded"]["events"]
    assert [e["data"]["tokenId"] for e in listed] == token_ids[::-1]
    assert [instant(e["createdAt"]) for e in listed] == sorted((instant(e["createdAt"]) for e in listed), reverse=True)


def test_the_default_page_is_the_first_with_twenty_events(api, event):
    page = api.get("/events").json()["page"]

    assert page == {"number": 1, "size": 20, "totalElements": 1, "totalPages": 1}


@pytest.mark.parametrize("query", ["?page=0", "?pageSize=0", "?pageSize=101", "?page=x"])
def test_a_bad_page_answers_400(api, query):
    response = api.get(f"/events{query}")

    assert response.status_code == 400
    assert response.json()["errorName"] == "bodyDoesNotMatchSchema"


# ------------------------------------------------------------------------------------------------------------
# Redelivery
# ------------------------------------------------------------------------------------------------------------
def test_redeliver_answers_202_with_the_number_of_deliveries_started(api, event):
    response = api.post(f"/events/{event['id']}/redeliver")

    assert response.status_code == 202, response.content
    assert response.json() == {"deliveries": 1}


def test_redeliver_makes_a_failed_delivery_pending_again_with_no_attempts(api, event):
    Delivery.objects.filter(event__public_id=event["id"]).update(
        status=Delivery.FAILED, attempt_count=8, next_attempt_at=None, last_status_code=500, last_error="HTTP 500"
    )
    (failed,) = api.get(f"/events/{event['id']}").json()["deliveries"]
    assert (failed["status"], failed["attempts"]) == ("FAILED", 8)

    response = api.post(f"/events/{event['id']}/redeliver")

    assert response.status_code == 202
    assert response.json() == {"deliveries": 1}
    (delivery,) = api.get(f"/events/{event['id']}").json()["deliveries"]
    assert delivery["status"] == "PENDING"
    assert delivery["attempts"] == 0
    assert delivery["nextAttemptAt"] is not None


def test_redeliver_also_sends_to_an_endpoint_added_after_the_event_when_it_is_subscribed(api, endpoint, event):
    later = create_endpoint(api, OTHER_HOOK, eventTypes=["token.created"])
    create_endpoint(api, "http://127.0.0.1:9/deletions", eventTypes=["token.deleted"])

    response = api.post(f"/events/{event['id']}/redeliver")

    assert response.status_code == 202
    assert response.json() == {"deliveries": 2}
    deliveries = api.get(f"/events/{event['id']}").json()["deliveries"]
    assert sorted(d["endpointId"] for d in deliveries) == sorted([endpoint["id"], later["id"]])
    assert all((d["status"], d["attempts"]) == ("PENDING", 0) for d in deliveries)


def test_redeliver_skips_a_disabled_endpoint(api, endpoint, event):
    api.patch(f"/webhook-endpoints/{endpoint['id']}", {"enabled": False}, format="json")

    response = api.post(f"/events/{event['id']}/redeliver")

    assert response.status_code == 202
    assert response.json() == {"deliveries": 0}


def test_redeliver_of_an_unknown_event_answers_404(api):
    response = api.post("/events/msg_doesnotexist/redeliver")

    assert response.status_code == 404
    assert response.json()["errorName"] == "resourceNotFound"


# ------------------------------------------------------------------------------------------------------------
# Scope and authentication
# ------------------------------------------------------------------------------------------------------------
def webhook_routes(endpoint_id: str, event_id: str) -> list[tuple[str, str, dict | None]]:
    return [
        ("get", "/webhook-endpoints", None),
        ("post", "/webhook-endpoints", {"url": OTHER_HOOK}),
        ("get", f"/webhook-endpoints/{endpoint_id}", None),
        ("patch", f"/webhook-endpoints/{endpoint_id}", {"description": "x"}),
        ("delete", f"/webhook-endpoints/{endpoint_id}", None),
        ("post", f"/webhook-endpoints/{endpoint_id}/rotate-secret", None),
        ("get", "/events", None),
        ("get", f"/events/{event_id}", None),
        ("post", f"/events/{event_id}/redeliver", None),
    ]


ROUTE_NAMES = [
    "list endpoints",
    "create endpoint",
    "get endpoint",
    "patch endpoint",
    "delete endpoint",
    "rotate secret",
    "list events",
    "get event",
    "redeliver",
]


@pytest.mark.parametrize("route", range(len(ROUTE_NAMES)), ids=ROUTE_NAMES)
def test_a_key_without_the_webhooks_scope_is_refused_403_on_every_webhook_route(alice, endpoint, event, route):
    _, raw = merchant_services.api_key_create(merchant=alice, scopes=["tokens"])
    method, path, body = webhook_routes(endpoint["id"], event["id"])[route]

    response = getattr(client_for(raw), method)(path, body, format="json")

    assert response.status_code == 403, response.content
    assert response.json()["errorName"] == "accessDenied"
    stored = WebhookEndpoint.objects.get(public_id=endpoint["id"])
    assert (stored.secret, stored.description) == (endpoint["secret"], "Orders service")
    assert WebhookEndpoint.objects.count() == 1


@pytest.mark.parametrize("route", range(len(ROUTE_NAMES)), ids=ROUTE_NAMES)
def test_a_request_without_a_key_is_refused_401_on_every_webhook_route(endpoint, event, route):
    method, path, body = webhook_routes(endpoint["id"], event["id"])[route]

    response = getattr(APIClient(), method)(path, body, format="json")

    assert response.status_code == 401, response.content
    assert response.json()["errorName"] == "accessDenied"
    assert WebhookEndpoint.objects.count() == 1


def test_an_unknown_key_is_refused_401(db):
    response = client_for("not-a-key").get("/webhook-endpoints")

    assert response.status_code == 401
    assert response.json()["errorName"] == "accessDenied"


# ------------------------------------------------------------------------------------------------------------
# Isolation between merchants
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "template", "body"),
    [
        ("get", "/webhook-endpoints/{endpoint}", None),
        ("patch", "/webhook-endpoints/{endpoint}", {"description": "bob was here"}),
        ("patch", "/webhook-endpoints/{endpoint}", {"enabled": False}),
        ("delete", "/webhook-endpoints/{endpoint}", None),
        ("post", "/webhook-endpoints/{endpoint}/rotate-secret", None),
        ("get", "/events/{event}", None),
        ("post", "/events/{event}/redeliver", None),
    ],
    ids=[
        "get endpoint",
        "patch endpoint",
        "disable endpoint",
        "delete endpoint",
        "rotate secret",
        "get event",
        "redeliver",
    ],
)
def test_bob_gets_404_never_403_for_alices_endpoint_and_event(bob_api, endpoint, event, method, template, body):
    Delivery.objects.filter(event__public_id=event["id"]).update(
        status=Delivery.FAILED, attempt_count=8, next_attempt_at=None
    )
    path = template.format(endpoint=endpoint["id"], event=event["id"])

    response = getattr(bob_api, method)(path, body, format="json")

    assert response.status_code == 404, response.content
    assert response.json()["errorName"] == "resourceNotFound"
    stored = WebhookEndpoint.objects.get(public_id=endpoint["id"])
    assert (stored.secret, stored.description, stored.is_enabled) == (endpoint["secret"], "Orders service", True)
    assert set(Delivery.objects.values_list("status", flat=True)) == {Delivery.FAILED}


def test_bobs_lists_show_none_of_alices_endpoints_or_events(bob_api, event):
    assert bob_api.get("/webhook-endpoints").json()["_embedded"]["webhookEndpoints"] == []
    events = bob_api.get("/events").json()
    assert events["_embedded"]["events"] == []
    assert events["page"]["totalElements"] == 0


def test_alices_events_are_never_delivered_to_bobs_endpoints(api, bob_api, endpoint, tokenize):
    bobs = create_endpoint(bob_api, OTHER_HOOK)

    tokenize()
    dispatch()
    (event,) = events_of(api)
    api.post(f"/events/{event['id']}/redeliver")

    assert [d["endpointId"] for d in api.get(f"/events/{event['id']}").json()["deliveries"]] == [endpoint["id"]]
    assert not Delivery.objects.filter(endpoint__public_id=bobs["id"]).exists()
    assert events_of(bob_api) == []


def test_alice_does_not_see_bobs_endpoints(api, bob_api, endpoint):
    bobs = create_endpoint(bob_api, OTHER_HOOK)

    listed = api.get("/webhook-endpoints").json()["_embedded"]["webhookEndpoints"]

    assert [e["id"] for e in listed] == [endpoint["id"]]
    assert api.get(f"/webhook-endpoints/{bobs['id']}").status_code == 404


# ------------------------------------------------------------------------------------------------------------
# OpenAPI
# ------------------------------------------------------------------------------------------------------------
def test_the_openapi_schema_lists_the_webhook_routes(client):
    response = client.get("/api/schema/?format=json")

    assert response.status_code == 200
    paths = json.loads(response.content)["paths"]
    assert {"get", "post"} <= set(paths["/webhook-endpoints"])
    assert {"get", "patch", "delete"} <= set(paths["/webhook-endpoints/{public_id}"])
    assert "post" in paths["/webhook-endpoints/{public_id}/rotate-secret"]
    assert "get" in paths["/events"]
    assert "get" in paths["/events/{public_id}"]
    assert "post" in paths["/events/{public_id}/redeliver"]
    assert "201" in paths["/webhook-endpoints"]["post"]["responses"]
    assert "202" in paths["/events/{public_id}/redeliver"]["post"]["responses"]
