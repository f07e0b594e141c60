"""The operators' webhook console: read-only pages, audited actions through services, the operators group.

olive is an operator (a staff user in the ``operators`` group the migration makes); clerk is back-office staff
outside that group, who must not even see the webhook pages; wanda may look at every webhook page (view
permissions only) and run nothing. alice is the merchant whose endpoint and deliveries they look at. The broker is
outside the product: the shared stub (``broker``, tests/conftest.py) keeps what was queued. The receiver is a real
HTTP server on loopback.
"""

import http.server
import logging
import re
import threading
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, Permission
from django.contrib.messages import SUCCESS, WARNING
from django.contrib.sessions.models import Session
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from core.models import AuditLog
from notifications import services
from notifications.models import Delivery, DeliveryAttempt, Event, WebhookEndpoint
from tests.conftest import logged_in

RECEIVER_PATH = "/hooks/alice"


# ------------------------------------------------------------------------------------------------------------
# Actors and fixtures
# ------------------------------------------------------------------------------------------------------------
@pytest.fixture
def wanda(db, django_user_model) -> Client:
    """May view every webhook page and change nothing."""
    user = django_user_model.objects.create_user("wanda", password="x", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="notifications", codename__startswith="view_")
    )
    return logged_in(user)


class Receiver(http.server.ThreadingHTTPServer):
    """A merchant's webhook receiver on loopback: answers ``status`` with ``body`` and keeps every request."""

    def __init__(self):
        self.requests: list[dict] = []
        self.status, self.body = 204, b""

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(handler):  # the handler is "self" of the request: the server is ours
                length = int(handler.headers.get("Content-Length", 0))
                self.requests.append(
                    {"path": handler.path, "headers": dict(handler.headers.items()), "body": handler.rfile.read(length)}
                )
                handler.send_response(self.status)
                handler.send_header("Content-Length", str(len(self.body)))
                handler.end_headers()
                handler.wfile.write(self.body)

            def log_message(handler, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{RECEIVER_PATH}"


@pytest.fixture
def receiver():
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def endpoint(alice, receiver) -> WebhookEndpoint:
    return services.endpoint_create(merchant=alice, url=receiver.url, description="checkout")


def emit(merchant, *, type: str = "token.created", token_id: str = "tok_1") -> Event:
    """An event of ``merchant``'s with its deliveries: what a worker makes of it (``events_fan_out``) once it is
    committed, which a ``db`` test never is, so the test runs the dispatcher itself."""
    data = {"tokenId": token_id, "maskedCardNumber": "4444********1111"}  # what token events carry: masked only
    event = services.event_emit(merchant=merchant, type=type, data=data)
    services.events_fan_out()
    return event


def delivery_of(event: Event, endpoint: WebhookEndpoint) -> Delivery:
    return Delivery.objects.get(event=event, endpoint=endpoint)


def fail_for_good(delivery: Delivery) -> Delivery:
    """The delivery as it ends after its last scheduled attempt: a dead letter."""
    Delivery.objects.filter(pk=delivery.pk).update(
        status=Delivery.FAILED, next_attempt_at=None, attempt_count=8, last_status_code=500, last_error="HTTP 500"
    )
    delivery.refresh_from_db()
    return delivery


@pytest.fixture
def failed_delivery(alice, endpoint, receiver, settings) -> Delivery:
    """A real attempt at alice's receiver, answered 500 with an HTML body; no retries left, so a dead letter."""
    settings.WEBHOOK_RETRY_SCHEDULE = []
    receiver.status, receiver.body = 500, b"<b>down</b> " + b"x" * 2000
    delivery = delivery_of(emit(alice), endpoint)
    assert services.delivery_attempt(delivery_id=delivery.pk) is not None
    delivery.refresh_from_db()
    assert delivery.status == Delivery.FAILED
    receiver.status, receiver.body = 204, b""
    return delivery


def changelist(model: str) -> str:
    return reverse(f"admin:notifications_{model}_changelist")


def change_page(model: str, pk) -> str:
    return reverse(f"admin:notifications_{model}_change", args=[pk])


def available_actions(response) -> dict:
    form = response.context["action_form"]  # None when the user may run no action at all
    return dict(form.fields["action"].choices) if form else {}


def run_action(client, model: str, action: str, pks, **extra):
    """``index`` in ``extra``: chosen from the list; ``post="yes"``: confirmed on the intermediate page."""
    data = {"action": action, "_selected_action": [str(pk) for pk in pks], **extra}
    return client.post(changelist(model), data, follow=bool(extra.get("post")))


def inline_cell(body: str, field: str) -> str:
    """The text of a read-only inline's cell (the first row)."""
    return re.search(rf'<td class="field-{field}">\s*<p>(.*?)</p>', body, re.S).group(1)


def shown_messages(response, level=None) -> list[str]:
    return [str(m) for m in response.context["messages"] if level is None or m.level == level]


def audit_rows(action: str):
    return AuditLog.objects.filter(action=f"admin.webhook.{action}")


# ------------------------------------------------------------------------------------------------------------
# Who sees what
# ------------------------------------------------------------------------------------------------------------
def test_an_operator_can_list_and_open_endpoints(operator, alice, endpoint):
    listing = operator.get(changelist("webhookendpoint"))

    assert listing.status_code == 200
    body = listing.content.decode()
    assert endpoint.url in body and endpoint.public_id in body and "Alice&#x27;s Shop" in body
    assert set(available_actions(listing)) >= {"enable", "disable", "rotate_secret", "replay_failed"}

    page = operator.get(change_page("webhookendpoint", endpoint.pk))

    assert page.status_code == 200
    assert endpoint.url in page.content.decode()


def test_the_endpoint_list_shows_why_an_endpoint_is_disabled_and_since_when_it_fails(operator, endpoint):
    since = timezone.now() - timedelta(days=2)
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
        is_enabled=False, disabled_reason="The endpoint answered 410 Gone", failing_since=since
    )

    body = operator.get(changelist("webhookendpoint")).content.decode()

    assert "The endpoint answered 410 Gone" in body
    assert "column-failing_since" in body and "Failing since" in body
    [listed] = operator.get(changelist("webhookendpoint")).context["cl"].result_list
    assert listed.failing_since == since


def test_endpoints_are_searched_by_url_and_id_and_filtered_by_state(operator, alice, endpoint):
    other = services.endpoint_create(merchant=alice, url="http://127.0.0.1:9/other")
    services.endpoint_disable(endpoint=other, reason="migration")

    def listed(**query):
        return {e.public_id for e in operator.get(changelist("webhookendpoint"), query).context["cl"].result_list}

    assert listed(q="hooks/alice") == {endpoint.public_id}
    assert listed(q=other.public_id) == {other.public_id}
    assert listed(is_enabled__exact="0") == {other.public_id}
    assert listed(merchant__id__exact=str(alice.pk)) == {endpoint.public_id, other.public_id}


def test_an_operator_can_open_a_delivery_with_its_attempts_inline(operator, failed_delivery):
    listing = operator.get(changelist("delivery"))
    assert listing.status_code == 200
    assert "token.created" in listing.content.decode()
    assert set(available_actions(listing)) >= {"retry_now", "replay"}

    page = operator.get(change_page("delivery", failed_delivery.pk))

    assert page.status_code == 200
    body = page.content.decode()
    assert failed_delivery.event.public_id in body
    [attempt] = DeliveryAttempt.objects.filter(delivery=failed_delivery)
    assert inline_cell(body, "number") == "1"
    assert inline_cell(body, "duration") == f"{attempt.duration_ms} ms"
    assert 'status-bad">500</span>' in inline_cell(body, "result")
    assert inline_cell(body, "error") == "HTTP 500"
    assert '<span class="status status-bad">Dead letter</span>' in body
    # The receiver's answer, escaped and cut short: it is whatever the merchant's server said.
    response = inline_cell(body, "response")
    assert response.startswith("&lt;b&gt;down&lt;/b&gt; xxx") and "<b>down</b>" not in body
    assert response.endswith("…") and len(response) < 320


def test_deliveries_are_found_by_event_id_and_filtered_by_status(operator, alice, endpoint):
    kept, dead = emit(alice, token_id="tok_1"), emit(alice, token_id="tok_2")
    fail_for_good(delivery_of(dead, endpoint))

    def listed(**query):
        return {d.event.public_id for d in operator.get(changelist("delivery"), query).context["cl"].result_list}

    assert listed(q=kept.public_id) == {kept.public_id}
    assert listed(status__exact="FAILED") == {dead.public_id}
    assert listed(endpoint__id__exact=str(endpoint.pk)) == {kept.public_id, dead.public_id}


def test_an_operator_can_list_and_open_events_with_their_deliveries(operator, alice, endpoint):
    event = emit(alice)

    listing = operator.get(changelist("event"))
    assert listing.status_code == 200
    assert event.public_id in listing.content.decode()
    assert [
        e.public_id for e in operator.get(changelist("event"), {"q": event.public_id}).context["cl"].result_list
    ] == [event.public_id]

    page = operator.get(change_page("event", event.pk))

    assert page.status_code == 200
    body = page.content.decode()
    assert "tok_1" in body and "4444********1111" in body
    assert endpoint.url in body  # the delivery inline
    assert reverse("admin:notifications_delivery_change", args=[delivery_of(event, endpoint).pk]) in body


@pytest.mark.parametrize("model", ["event", "delivery"])
def test_an_event_is_searched_by_its_id_exactly_and_case_sensitively(operator, alice, endpoint, model):
    event, twin = emit(alice, token_id="tok_1"), emit(alice, token_id="tok_2")
    # Ids are random letters of both cases: an id differing from another only in case is another event.
    prefix, rest = event.public_id.split("_", 1)
    Event.objects.filter(pk=twin.pk).update(public_id=f"{prefix}_{rest.swapcase()}")
    twin.refresh_from_db()

    def listed(query: str) -> list[str]:
        rows = operator.get(changelist(model), {"q": query}).context["cl"].result_list
        return [row.public_id if model == "event" else row.event.public_id for row in rows]

    assert listed(twin.public_id) == [twin.public_id]
    assert listed(event.public_id.upper()) == []
    with CaptureQueriesContext(connection) as queries:
        assert listed(event.public_id) == [event.public_id]

    # An equality on the column, which its unique index answers; "=" in search_fields meant UPPER(col) = UPPER(term).
    searches = [q["sql"] for q in queries.captured_queries if event.public_id in q["sql"]]
    assert searches and all(f'"notifications_event"."public_id" = \'{event.public_id}\'' in sql for sql in searches)
    assert not any("UPPER(" in sql or " LIKE " in sql for sql in searches)


@pytest.mark.parametrize(
    "page",
    [
        "endpoint_list",
        "endpoint",
        "event_list",
        "event",
        "delivery_list",
        "delivery",
    ],
)
def test_a_staff_user_outside_the_operators_group_gets_403_on_the_webhook_pages(clerk, alice, endpoint, page):
    event = emit(alice)
    urls = {
        "endpoint_list": changelist("webhookendpoint"),
        "endpoint": change_page("webhookendpoint", endpoint.pk),
        "event_list": changelist("event"),
        "event": change_page("event", event.pk),
        "delivery_list": changelist("delivery"),
        "delivery": change_page("delivery", delivery_of(event, endpoint).pk),
    }

    assert clerk.get(urls[page]).status_code == 403


def test_a_staff_user_outside_the_operators_group_cannot_run_an_action(clerk, endpoint):
    response = clerk.post(
        changelist("webhookendpoint"),
        {"action": "disable", "_selected_action": [endpoint.pk], "reason": "x", "post": "yes"},
    )

    assert response.status_code == 403
    endpoint.refresh_from_db()
    assert endpoint.is_enabled
    assert not audit_rows("disable").exists()


def test_an_operator_cannot_see_the_vault(operator):
    assert operator.get(reverse("admin:vault_token_changelist")).status_code == 403
    assert operator.get(reverse("admin:core_auditlog_changelist")).status_code == 403


def test_a_view_only_user_sees_read_only_pages_and_can_run_no_action(wanda, alice, endpoint):
    delivery = fail_for_good(delivery_of(emit(alice), endpoint))

    for model, pk in (("webhookendpoint", endpoint.pk), ("delivery", delivery.pk)):
        listing = wanda.get(changelist(model))
        assert listing.status_code == 200
        assert available_actions(listing) == {}
        assert wanda.get(change_page(model, pk)).status_code == 200

    run_action(wanda, "webhookendpoint", "disable", [endpoint.pk], reason="x", post="yes")
    run_action(wanda, "delivery", "replay", [delivery.pk], index="0")

    endpoint.refresh_from_db()
    delivery.refresh_from_db()
    assert endpoint.is_enabled
    assert delivery.status == Delivery.FAILED
    assert not AuditLog.objects.filter(action__startswith="admin.webhook.").exists()


def test_pages_are_read_only_even_for_operators_and_superusers(operator, admin_client, alice, endpoint):
    event = emit(alice)
    delivery = delivery_of(event, endpoint)

    for client in (operator, admin_client):
        for model, pk in (("webhookendpoint", endpoint.pk), ("event", event.pk), ("delivery", delivery.pk)):
            page = client.get(change_page(model, pk))
            assert page.status_code == 200
            assert 'name="_save"' not in page.content.decode()
            assert client.post(change_page(model, pk), {"url": "http://127.0.0.1:9/x"}).status_code == 403
            assert client.get(reverse(f"admin:notifications_{model}_add")).status_code == 403
            assert client.get(reverse(f"admin:notifications_{model}_delete", args=[pk])).status_code == 403
            assert "delete_selected" not in available_actions(client.get(changelist(model)))
    endpoint.refresh_from_db()
    assert endpoint.url != "http://127.0.0.1:9/x"


@pytest.mark.parametrize("model", ["webhookendpoint", "event", "delivery"])
def test_the_lists_take_as_many_queries_for_many_rows_as_for_one(operator, alice, bob, endpoint, model):
    def queries_for_the_list() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert operator.get(changelist(model)).status_code == 200
        return len(queries)

    emit(alice)
    one = queries_for_the_list()
    for number in range(5):
        emit(alice, token_id=f"tok_more_{number}")
    services.endpoint_create(merchant=bob, url="http://127.0.0.1:9/bob")

    assert queries_for_the_list() == one


# ------------------------------------------------------------------------------------------------------------
# The signing secret
# ------------------------------------------------------------------------------------------------------------
def test_the_endpoint_pages_never_contain_the_full_secret(operator, admin_client, endpoint):
    old_secret = endpoint.secret
    rotated = services.endpoint_rotate_secret(endpoint=endpoint)

    for client in (operator, admin_client):
        for url in (changelist("webhookendpoint"), change_page("webhookendpoint", endpoint.pk)):
            body = client.get(url).content.decode()
            for secret in (rotated.secret, old_secret):
                assert secret not in body
                assert secret[:12] not in body  # no more than the mask's "whsec_" and four characters
    page = operator.get(change_page("webhookendpoint", endpoint.pk)).content.decode()
    assert f"{rotated.secret[:10]}…" in page
    assert f"{old_secret[:10]}…" in page  # the previous one, still signing for 24 hours


# ------------------------------------------------------------------------------------------------------------
# Endpoint actions
# ------------------------------------------------------------------------------------------------------------
def test_enabling_asks_for_confirmation_then_enables_clears_the_streak_and_is_audited(operator, endpoint):
    services.endpoint_disable(endpoint=endpoint, reason="Every delivery failed for 5 days")
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(failing_since=timezone.now() - timedelta(days=5))

    confirmation = run_action(operator, "webhookendpoint", "enable", [endpoint.pk], index="0")

    assert confirmation.status_code == 200
    assert "admin/action_confirmation.html" in [t.name for t in confirmation.templates]
    assert "Every delivery failed for 5 days" in confirmation.content.decode()
    endpoint.refresh_from_db()
    assert not endpoint.is_enabled  # nothing happens before the confirmation

    done = run_action(operator, "webhookendpoint", "enable", [endpoint.pk], post="yes")

    assert shown_messages(done, SUCCESS) == ["Enabled 1 endpoint."]
    endpoint.refresh_from_db()
    assert endpoint.is_enabled
    assert (endpoint.disabled_reason, endpoint.disabled_at, endpoint.failing_since) == ("", None, None)
    row = audit_rows("enable").get()
    assert (row.actor, row.object_type, row.object_id, row.result, row.origin) == (
        "admin:olive",
        "webhook_endpoint",
        endpoint.public_id,
        AuditLog.SUCCESS,
        "127.0.0.1",
    )


def test_enabling_an_enabled_endpoint_changes_nothing_and_audits_nothing(operator, endpoint):
    done = run_action(operator, "webhookendpoint", "enable", [endpoint.pk], post="yes")

    assert shown_messages(done, SUCCESS) == ["Enabled 0 endpoints."]
    assert not audit_rows("enable").exists()


def test_disabling_asks_for_a_reason_records_it_and_is_audited(operator, alice, endpoint):
    confirmation = run_action(operator, "webhookendpoint", "disable", [endpoint.pk], index="0")
    assert 'name="reason"' in confirmation.content.decode()

    no_reason = run_action(operator, "webhookendpoint", "disable", [endpoint.pk], post="yes")
    assert no_reason.status_code == 200
    assert "This field is required." in no_reason.content.decode()
    endpoint.refresh_from_db()
    assert endpoint.is_enabled

    run_action(
        operator,
        "webhookendpoint",
        "disable",
        [endpoint.pk],
        post="yes",
        reason="Merchant asked: receiver being migrated",
    )

    endpoint.refresh_from_db()
    assert not endpoint.is_enabled
    assert endpoint.disabled_reason == "Merchant asked: receiver being migrated"
    assert endpoint.disabled_at is not None
    row = audit_rows("disable").get()
    assert (row.actor, row.object_id) == ("admin:olive", endpoint.public_id)
    assert row.detail == {"merchant": alice.public_id, "reason": "Merchant asked: receiver being migrated"}
    # A disabled endpoint gets no delivery for new events.
    assert not Delivery.objects.filter(event=emit(alice), endpoint=endpoint).exists()


SECRET_ON_PAGE = re.compile(r'<code class="api-key-value"[^>]*>(whsec_[A-Za-z0-9+/=_-]+)</code>')


def test_rotating_a_secret_shows_the_new_one_once_keeps_the_old_one_and_is_audited(operator, endpoint, caplog):
    caplog.set_level(logging.DEBUG)
    old_secret = endpoint.secret

    confirmation = run_action(operator, "webhookendpoint", "rotate_secret", [endpoint.pk], index="0")
    assert "24 hours" in confirmation.content.decode()
    endpoint.refresh_from_db()
    assert endpoint.secret == old_secret

    done = run_action(operator, "webhookendpoint", "rotate_secret", [endpoint.pk], post="yes")

    endpoint.refresh_from_db()
    assert endpoint.secret != old_secret
    assert endpoint.signing_secrets() == [endpoint.secret, old_secret]
    # On the answer to the POST that rotated it, which no cache keeps, and in nothing else.
    assert done.status_code == 200 and not done.redirect_chain
    assert SECRET_ON_PAGE.findall(done.content.decode()) == [endpoint.secret]
    assert old_secret not in done.content.decode()
    assert "no-store" in done["Cache-Control"]
    assert f'href="{change_page("webhookendpoint", endpoint.pk)}" class="button default"' in done.content.decode()
    assert all(endpoint.secret not in message for message in shown_messages(done))
    assert all(endpoint.secret not in value for _, value in done.items())
    assert endpoint.secret not in done.wsgi_request.get_full_path()
    assert not any(endpoint.secret in str(session.get_decoded()) for session in Session.objects.all())
    assert endpoint.secret not in caplog.text
    # Once: the next pages no longer have it.
    assert endpoint.secret not in operator.get(changelist("webhookendpoint")).content.decode()
    assert endpoint.secret not in operator.get(change_page("webhookendpoint", endpoint.pk)).content.decode()
    row = audit_rows("rotate_secret").get()
    assert (row.actor, row.object_id) == ("admin:olive", endpoint.public_id)
    assert endpoint.secret not in str(row.detail) and old_secret not in str(row.detail)


def test_a_secret_rotated_from_the_endpoints_page_is_shown_on_the_answer_to_that_post(operator, endpoint):
    action = reverse("admin:notifications_webhookendpoint_object_action", args=[endpoint.pk, "rotate_secret"])

    done = operator.post(action, {"action": "rotate_secret", "_selected_action": [endpoint.pk], "post": "yes"})

    endpoint.refresh_from_db()
    assert done.status_code == 200
    assert SECRET_ON_PAGE.findall(done.content.decode()) == [endpoint.secret]
    assert "no-store" in done["Cache-Control"]
    assert not any(endpoint.secret in str(session.get_decoded()) for session in Session.objects.all())


# ------------------------------------------------------------------------------------------------------------
# Delivery actions
# ------------------------------------------------------------------------------------------------------------
def test_retry_now_makes_a_pending_delivery_due_now_and_leaves_a_failed_one_alone(
    operator, alice, endpoint, broker, django_capture_on_commit_callbacks
):
    later = timezone.now() + timedelta(hours=2)
    pending = delivery_of(emit(alice, token_id="tok_1"), endpoint)
    Delivery.objects.filter(pk=pending.pk).update(attempt_count=3, next_attempt_at=later)
    dead = fail_for_good(delivery_of(emit(alice, token_id="tok_2"), endpoint))

    with django_capture_on_commit_callbacks(execute=True):
        done = run_action(operator, "delivery", "retry_now", [pending.pk, dead.pk], index="0", post="yes")

    pending.refresh_from_db()
    dead.refresh_from_db()
    assert pending.status == Delivery.PENDING
    assert pending.next_attempt_at <= timezone.now()
    assert pending.attempt_count == 3  # the same cycle, just sooner
    assert (dead.status, dead.next_attempt_at, dead.attempt_count) == (Delivery.FAILED, None, 8)
    assert broker.deliveries == [pending.pk]
    messages = shown_messages(done)  # confirmed, then redirected back to the list
    assert "1 delivery will be attempted now." in messages
    assert any("not pending" in m for m in messages)
    assert done.redirect_chain[-1][1] == 302
    row = audit_rows("retry_now").get()
    assert row.object_id == f"{pending.event.public_id}/{endpoint.public_id}"
    assert row.actor == "admin:olive"


def test_replay_makes_a_failed_delivery_pending_with_attempts_reset(
    operator, failed_delivery, broker, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        run_action(operator, "delivery", "replay", [failed_delivery.pk], index="0", post="yes")

    failed_delivery.refresh_from_db()
    assert failed_delivery.status == Delivery.PENDING
    assert failed_delivery.attempt_count == 0
    assert failed_delivery.next_attempt_at <= timezone.now()
    assert failed_delivery.attempts.count() == 1  # the history stays
    assert broker.deliveries == [failed_delivery.pk]
    row = audit_rows("replay").get()
    assert (row.actor, row.object_type, row.object_id) == (
        "admin:olive",
        "webhook_delivery",
        f"{failed_delivery.event.public_id}/{failed_delivery.endpoint.public_id}",
    )
    assert row.detail["status_before"] == Delivery.FAILED


def test_replay_leaves_deliveries_to_a_disabled_endpoint_alone(operator, alice, endpoint):
    dead = fail_for_good(delivery_of(emit(alice), endpoint))
    services.endpoint_disable(endpoint=endpoint, reason="gone")

    done = run_action(operator, "delivery", "replay", [dead.pk], index="0", post="yes")

    dead.refresh_from_db()
    assert dead.status == Delivery.FAILED
    assert not audit_rows("replay").exists()
    assert any("disabled endpoint" in m for m in shown_messages(done, WARNING))


def test_replaying_failed_in_a_window_replays_only_failed_deliveries_whose_event_is_inside_it(
    operator, alice, endpoint
):
    now = timezone.now()

    def delivery_at(hours_ago: int, *, failed: bool = True, target=endpoint) -> Delivery:
        event = emit(alice, token_id=f"tok_{hours_ago}_{failed}")
        Event.objects.filter(pk=event.pk).update(created_at=now - timedelta(hours=hours_ago))
        delivery = delivery_of(event, target)
        return fail_for_good(delivery) if failed else delivery

    other_endpoint = services.endpoint_create(merchant=alice, url="http://127.0.0.1:9/other")
    inside = delivery_at(5)
    before, after = delivery_at(30), delivery_at(1)
    inside_succeeded = delivery_at(6, failed=False)
    Delivery.objects.filter(pk=inside_succeeded.pk).update(
        status=Delivery.SUCCEEDED, next_attempt_at=None, delivered_at=now
    )
    inside_elsewhere = Delivery.objects.get(event=inside.event, endpoint=other_endpoint)
    fail_for_good(inside_elsewhere)
    since, until = now - timedelta(hours=24), now - timedelta(hours=2)

    form_page = run_action(operator, "webhookendpoint", "replay_failed", [endpoint.pk], index="0")
    assert form_page.status_code == 200
    body = form_page.content.decode()
    assert 'name="since"' in body and 'name="until"' in body
    assert "3 deliveries failed in all" in body

    done = run_action(
        operator,
        "webhookendpoint",
        "replay_failed",
        [endpoint.pk],
        post="yes",
        since=since.strftime("%Y-%m-%dT%H:%M"),
        until=until.strftime("%Y-%m-%dT%H:%M"),
    )

    [message] = shown_messages(done, SUCCESS)
    assert message.startswith("Replayed 1 failed delivery. ")
    statuses = {d.pk: d.status for d in Delivery.objects.all()}
    assert statuses[inside.pk] == Delivery.PENDING
    assert Delivery.objects.get(pk=inside.pk).attempt_count == 0
    assert statuses[before.pk] == statuses[after.pk] == Delivery.FAILED
    assert statuses[inside_succeeded.pk] == Delivery.SUCCEEDED
    assert statuses[inside_elsewhere.pk] == Delivery.FAILED  # not a selected endpoint
    row = audit_rows("replay_failed").get()
    assert (row.actor, row.object_id, row.detail["replayed"]) == ("admin:olive", endpoint.public_id, 1)


def test_the_replay_window_must_not_end_before_it_starts(operator, alice, endpoint):
    dead = fail_for_good(delivery_of(emit(alice), endpoint))

    response = run_action(
        operator,
        "webhookendpoint",
        "replay_failed",
        [endpoint.pk],
        post="yes",
        since="2030-01-02T00:00",
        until="2030-01-01T00:00",
    )

    assert response.status_code == 200
    assert "The window ends before it starts." in response.content.decode()
    dead.refresh_from_db()
    assert dead.status == Delivery.FAILED
    assert not audit_rows("replay_failed").exists()


def test_the_default_window_holds_what_failed_a_moment_ago(operator, alice, endpoint):
    dead = fail_for_good(delivery_of(emit(alice), endpoint))
    form = run_action(operator, "webhookendpoint", "replay_failed", [endpoint.pk], index="0").context["form"]
    window = {name: form[name].value().strftime("%Y-%m-%dT%H:%M") for name in ("since", "until")}

    run_action(operator, "webhookendpoint", "replay_failed", [endpoint.pk], post="yes", **window)

    dead.refresh_from_db()
    assert dead.status == Delivery.PENDING


def test_a_real_receiver_gets_the_replayed_delivery(operator, failed_delivery, receiver, endpoint):
    run_action(operator, "delivery", "replay", [failed_delivery.pk], index="0", post="yes")

    attempt = services.delivery_attempt(delivery_id=failed_delivery.pk)

    assert attempt is not None and attempt.succeeded
    first, second = receiver.requests
    assert second["path"] == RECEIVER_PATH
    assert second["headers"]["webhook-id"] == first["headers"]["webhook-id"] == failed_delivery.event.public_id
    assert second["body"] == first["body"]
    payload = Webhook(endpoint.secret).verify(second["body"], second["headers"])
    assert payload["data"]["tokenId"] == "tok_1"
    failed_delivery.refresh_from_db()
    assert failed_delivery.status == Delivery.SUCCEEDED
    assert failed_delivery.delivered_at is not None
    assert [a.number for a in failed_delivery.attempts.order_by("number")] == [1, 2]


# ------------------------------------------------------------------------------------------------------------
# The group
# ------------------------------------------------------------------------------------------------------------
def test_the_operators_group_exists_after_migrations_with_the_expected_permissions(db):
    group = Group.objects.get(name="operators")

    permissions = group.permissions.filter(content_type__app_label="notifications")
    assert {(p.content_type.app_label, p.codename) for p in permissions} == {
        ("notifications", "change_webhookendpoint"),
        ("notifications", "view_webhookendpoint"),
        ("notifications", "view_event"),
        ("notifications", "change_delivery"),
        ("notifications", "view_delivery"),
        ("notifications", "view_deliveryattempt"),
    }
    # The back office (vault 0002) gets nothing of the webhooks.
    back_office = Group.objects.get(name="back-office")
    assert not back_office.permissions.filter(content_type__app_label="notifications").exists()


@pytest.mark.parametrize("action", ["retry_now", "replay"])
def test_retry_and_replay_ask_for_confirmation_first_and_change_nothing_before(operator, failed_delivery, action):
    page = run_action(operator, "delivery", action, [failed_delivery.pk], index="0")
    assert page.status_code == 200
    assert "admin/action_confirmation.html" in [t.name for t in page.templates]
    failed_delivery.refresh_from_db()
    assert failed_delivery.status == Delivery.FAILED
    assert not audit_rows(action).exists()


# ------------------------------------------------------------------------------------------------------------
# Replaying an endpoint's failed deliveries: the default window, the count, a zero replay refused, the result
# ------------------------------------------------------------------------------------------------------------
def dead_letter_at(merchant, endpoint, *, hours_ago: float, token_id: str) -> Delivery:
    """A dead letter of ``endpoint`` whose event happened ``hours_ago``, and which died then."""
    event = emit(merchant, token_id=token_id)
    then = timezone.now() - timedelta(hours=hours_ago)
    Event.objects.filter(pk=event.pk).update(created_at=then)
    delivery = fail_for_good(delivery_of(event, endpoint))
    Delivery.objects.filter(pk=delivery.pk).update(updated_at=then)
    return delivery


def replay_form(client, endpoint):
    return run_action(client, "webhookendpoint", "replay_failed", [endpoint.pk], index="0")


def window_of(response) -> dict:
    """The window the replay form shows (in UTC, the admin's time zone)."""
    form = response.context["form"]
    return {name: form.initial[name] for name in ("since", "until")}


def test_the_replay_window_starts_when_the_endpoint_started_failing(operator, alice, endpoint):
    dead_letter_at(alice, endpoint, hours_ago=60, token_id="tok_old")  # an older incident's, before the run
    failing_since = timezone.now() - timedelta(days=2, minutes=3)
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(failing_since=failing_since)

    asked_at = timezone.now()
    form_page = replay_form(operator, endpoint)

    assert window_of(form_page)["since"] == failing_since.replace(second=0, microsecond=0)
    # In whole minutes, rounded up: past the moment the operator asked (not the moment the test reads it, which may
    # be in the next minute).
    assert window_of(form_page)["until"] > asked_at
    assert "Starts when the endpoint began failing" in form_page.content.decode()


def test_the_replay_window_holds_a_dead_letter_of_the_run_whose_event_came_before_the_first_failure(
    operator, alice, endpoint
):
    failing_since = timezone.now() - timedelta(hours=20)
    queued_before = dead_letter_at(alice, endpoint, hours_ago=21, token_id="tok_queued")  # died during the run
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(failing_since=failing_since)
    Delivery.objects.filter(pk=queued_before.pk).update(updated_at=timezone.now())

    since = window_of(replay_form(operator, endpoint))["since"]

    assert since <= queued_before.event.created_at.replace(second=0, microsecond=0) < failing_since


def test_for_a_healthy_endpoint_the_replay_window_starts_at_its_oldest_dead_letter(operator, alice, endpoint):
    oldest = dead_letter_at(alice, endpoint, hours_ago=72, token_id="tok_oldest")
    dead_letter_at(alice, endpoint, hours_ago=30, token_id="tok_newer")

    since = window_of(replay_form(operator, endpoint))["since"]

    assert since == oldest.event.created_at.replace(second=0, microsecond=0)


def test_with_no_dead_letter_the_replay_window_is_the_last_24_hours(operator, endpoint):
    since = window_of(replay_form(operator, endpoint))["since"]

    assert abs(since - (timezone.now() - timedelta(hours=24))) < timedelta(minutes=2)


def test_the_replay_form_says_how_many_failed_deliveries_its_window_holds(operator, alice, endpoint):
    dead_letter_at(alice, endpoint, hours_ago=50, token_id="tok_1")
    for number in range(2):
        dead_letter_at(alice, endpoint, hours_ago=3, token_id=f"tok_new_{number}")
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(failing_since=timezone.now() - timedelta(hours=4))

    body = replay_form(operator, endpoint).content.decode()

    assert re.search(r'<p id="replay-count"[^>]*>2 of 3 failed deliveries will be replayed\.</p>', body)
    assert "notifications/replay_count.js" in body  # keeps it current as the window changes


def test_the_count_view_answers_the_count_of_a_window_as_json(operator, alice, endpoint):
    dead_letter_at(alice, endpoint, hours_ago=50, token_id="tok_1")
    dead_letter_at(alice, endpoint, hours_ago=3, token_id="tok_2")
    url = reverse("admin:notifications_webhookendpoint_replay_count")
    since = (timezone.now() - timedelta(hours=60)).strftime("%Y-%m-%dT%H:%M")
    until = (timezone.now() + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M")

    wide = operator.get(url, {"endpoint": endpoint.pk, "since": since, "until": until})
    empty = operator.get(url, {"endpoint": endpoint.pk, "since": "2020-01-01T00:00", "until": "2020-01-02T00:00"})
    reversed_window = operator.get(url, {"endpoint": endpoint.pk, "since": until, "until": since})

    assert wide.json() == {"inWindow": 2, "failed": 2, "text": "2 of 2 failed deliveries will be replayed."}
    assert empty.json()["inWindow"] == 0
    assert (
        empty.json()["text"]
        == "None of the 2 failed deliveries has its event in this window: nothing would be replayed."
    )
    assert reversed_window.status_code == 400
    assert reversed_window.json() == {"text": "The window ends before it starts."}


def test_the_count_view_is_for_operators_only(wanda, clerk, endpoint):
    url = reverse("admin:notifications_webhookendpoint_replay_count")
    query = {"endpoint": endpoint.pk, "since": "2020-01-01T00:00", "until": "2020-01-02T00:00"}

    assert wanda.get(url, query).status_code == 403
    assert clerk.get(url, query).status_code == 403
    assert Client().get(url, query).status_code == 302  # to the sign-in page


def test_a_replay_of_nothing_is_refused_with_a_warning_and_does_nothing(operator, alice, endpoint):
    dead = dead_letter_at(alice, endpoint, hours_ago=50, token_id="tok_1")

    refused = run_action(
        operator,
        "webhookendpoint",
        "replay_failed",
        [endpoint.pk],
        post="yes",
        since="2020-01-01T00:00",
        until="2020-01-02T00:00",
    )

    assert refused.status_code == 200
    assert "admin/action_confirmation.html" in [t.name for t in refused.templates]  # the form again, to widen
    assert shown_messages(refused, SUCCESS) == []
    [warning] = shown_messages(refused, WARNING)
    assert warning.startswith("Nothing was replayed: no failed delivery of it has its event between 2020-01-01")
    dead.refresh_from_db()
    assert dead.status == Delivery.FAILED
    assert not audit_rows("replay_failed").exists()


def test_the_replay_message_links_to_the_replayed_deliveries(operator, alice, endpoint):
    replayed = [dead_letter_at(alice, endpoint, hours_ago=hours, token_id=f"tok_{hours}") for hours in (3, 4)]
    outside = dead_letter_at(alice, endpoint, hours_ago=50, token_id="tok_outside")
    delivered_before = delivery_of(emit(alice, token_id="tok_delivered"), endpoint)
    Delivery.objects.filter(pk=delivered_before.pk).update(
        status=Delivery.SUCCEEDED,
        next_attempt_at=None,
        delivered_at=timezone.now() - timedelta(hours=1),
        updated_at=timezone.now() - timedelta(hours=1),
    )
    Event.objects.filter(pk=delivered_before.event_id).update(created_at=timezone.now() - timedelta(hours=3))
    window = {
        "since": (timezone.now() - timedelta(hours=10)).strftime("%Y-%m-%dT%H:%M"),
        "until": (timezone.now() + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M"),
    }

    done = run_action(operator, "webhookendpoint", "replay_failed", [endpoint.pk], post="yes", **window)

    [message] = [m for m in done.context["messages"] if m.level == SUCCESS]
    assert str(message).startswith("Replayed 2 failed deliveries. ")
    link = re.search(r'<a href="([^"]+)" id="replayed-deliveries">', done.content.decode()).group(1)
    listed = operator.get(link.replace("&amp;", "&")).context["cl"].result_list
    assert {d.pk for d in listed} == {d.pk for d in replayed}
    assert outside.pk not in {d.pk for d in listed} and delivered_before.pk not in {d.pk for d in listed}


# ------------------------------------------------------------------------------------------------------------
# The endpoint's page: why it fails, and its actions as buttons
# ------------------------------------------------------------------------------------------------------------
def test_the_endpoint_page_shows_its_last_attempts_the_errors_and_the_last_success(
    operator, alice, endpoint, receiver, settings
):
    settings.WEBHOOK_RETRY_SCHEDULE = []
    delivered = delivery_of(emit(alice, token_id="tok_ok"), endpoint)
    services.delivery_attempt(delivery_id=delivered.pk)  # the receiver answers 204
    receiver.status = 503
    failed = [delivery_of(emit(alice, token_id=f"tok_{n}"), endpoint) for n in range(2)]
    for delivery in failed:
        services.delivery_attempt(delivery_id=delivery.pk)
    endpoint.refresh_from_db()
    assert endpoint.failing_since is not None

    body = operator.get(change_page("webhookendpoint", endpoint.pk)).content.decode()

    health = body[body.index('id="endpoint-health"') : body.index('id="endpoint-attempts"')]
    assert '<span class="status status-bad">Failing</span> since <time' in health
    assert '<span class="error-reason">503 ×2</span>' in health
    assert f'<a href="{change_page("delivery", delivered.pk)}"><time' in health  # the last success
    attempts = body[body.index('id="endpoint-attempts"') :]
    rows = re.findall(r'<tr>\s*<td><a href="[^"]+" class="attempt-when"><time.*?</tr>', attempts, re.S)
    assert len(rows) == 3
    assert change_page("delivery", failed[-1].pk) in rows[0] and 'status-bad">503<' in rows[0]  # newest first
    assert change_page("delivery", delivered.pk) in rows[2] and 'status-good">204<' in rows[2]


def test_a_new_endpoint_page_says_it_was_never_attempted(operator, endpoint):
    body = operator.get(change_page("webhookendpoint", endpoint.pk)).content.decode()

    assert '<span class="status status-good">Healthy</span>' in body
    assert "No attempt yet." in body
    assert re.search(r'id="endpoint-last-success">Never<', body)


def object_buttons(client, model: str, pk) -> set[str]:
    return set(re.findall(r'id="object-action-([a-z_]+)"', client.get(change_page(model, pk)).content.decode()))


def test_an_endpoint_page_has_the_buttons_its_state_allows(operator, wanda, endpoint):
    assert object_buttons(operator, "webhookendpoint", endpoint.pk) == {"replay_failed", "disable", "rotate_secret"}
    assert object_buttons(wanda, "webhookendpoint", endpoint.pk) == set()

    services.endpoint_disable(endpoint=endpoint, reason="gone")

    assert object_buttons(operator, "webhookendpoint", endpoint.pk) == {"enable", "rotate_secret"}


def test_a_delivery_page_offers_retry_now_while_pending_and_replay_once_done(operator, alice, endpoint):
    delivery = delivery_of(emit(alice), endpoint)
    assert object_buttons(operator, "delivery", delivery.pk) == {"retry_now"}

    fail_for_good(delivery)
    assert object_buttons(operator, "delivery", delivery.pk) == {"replay"}

    services.endpoint_disable(endpoint=endpoint, reason="gone")
    assert object_buttons(operator, "delivery", delivery.pk) == set()


def test_replay_failed_from_the_endpoint_page_confirms_then_comes_back_to_it(operator, alice, endpoint):
    dead = dead_letter_at(alice, endpoint, hours_ago=2, token_id="tok_1")
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(failing_since=timezone.now() - timedelta(hours=3))
    url = reverse("admin:notifications_webhookendpoint_object_action", args=[endpoint.pk, "replay_failed"])

    form_page = operator.get(url)
    assert "1 of 1 failed delivery will be replayed." in form_page.content.decode()
    dead.refresh_from_db()
    assert dead.status == Delivery.FAILED

    window = {name: value.strftime("%Y-%m-%dT%H:%M") for name, value in window_of(form_page).items()}
    done = operator.post(url, {"post": "yes", **window}, follow=True)

    assert done.redirect_chain[-1][0] == change_page("webhookendpoint", endpoint.pk)
    assert shown_messages(done, SUCCESS)[0].startswith("Replayed 1 failed delivery.")
    dead.refresh_from_db()
    assert dead.status == Delivery.PENDING


# ------------------------------------------------------------------------------------------------------------
# Lists: labels, dates, search by tokenId, empty results
# ------------------------------------------------------------------------------------------------------------
def test_the_lists_show_states_as_labels_and_dates_with_relative_time(operator, alice, endpoint):
    dead = fail_for_good(delivery_of(emit(alice), endpoint))
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(failing_since=timezone.now() - timedelta(hours=3))

    endpoints = operator.get(changelist("webhookendpoint")).content.decode()
    deliveries = operator.get(changelist("delivery")).content.decode()

    assert '<span class="status status-bad">Failing</span>' in endpoints
    assert re.search(r"UTC</time> <span class=\"relative\">\(3 h ago\)</span>", endpoints)
    assert '<span class="merchant" title="Alice&#x27;s Shop' in endpoints
    assert '<span class="status status-bad">Dead letter</span>' in deliveries
    assert dead.event.type in deliveries and "(s)" not in deliveries


@pytest.mark.parametrize("model", ["event", "delivery"])
def test_events_and_deliveries_are_found_by_the_token_id_they_carry(operator, alice, endpoint, model):
    wanted, other = emit(alice, token_id="tok_Wanted1"), emit(alice, token_id="tok_other")

    def listed(query: str) -> list[str]:
        rows = operator.get(changelist(model), {"q": query}).context["cl"].result_list
        return [row.public_id if model == "event" else row.event.public_id for row in rows]

    assert listed("tok_Wanted1") == [wanted.public_id]
    assert listed("tok_wanted1") == []  # exactly as written
    assert listed(other.public_id) == [other.public_id]


def test_an_empty_search_says_what_was_searched_and_what_to_try(operator, alice, endpoint):
    emit(alice)

    body = operator.get(changelist("delivery"), {"q": "tok_missing", "status__exact": "FAILED"}).content.decode()

    empty = body[body.index('id="empty-results"') :]
    assert "No deliveries" in empty and "“<strong>tok_missing</strong>” with the filters chosen" in empty
    assert "Search takes a whole event id (msg_…) or a whole tokenId" in empty
    assert 'id="empty-results-unfiltered"' in empty and 'id="empty-results-all"' in empty
