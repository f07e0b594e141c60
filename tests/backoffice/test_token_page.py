"""The token page is where a clerk finds what happened around a token: its network tokens, the events about it and
their deliveries, and its Activity (the audit rows), with the staff's own views of it folded into one line; and the
audit log links its actors and objects to their pages.

beth is back-office staff (the ``back-office`` group: nothing of the webhooks); admin_client is a superuser ("admin");
dora reads events and deliveries but not the endpoints, nor the audit log. alice's Sherlock Visa is the token; carol
is alice's payment processor key, the one that detokenizes it.
"""

import re

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from core.audit import Actor, audit_record
from core.models import AuditLog
from networks import services as network_services
from networks.services.provisioning import card_from_vault
from notifications import services as notification_services
from tests.conftest import MASTERCARD, VISA, logged_in, path_of, staff_in
from vault import services
from vault.models import Token


def tokenize_another(merchant) -> Token:
    card = services.Card(number=MASTERCARD, holder_name="Sherlock Holmes", expiry_month=5, expiry_year=2035)
    return services.card_tokenize(merchant=merchant, card=card).token


def token_page(token: Token) -> str:
    return reverse("admin:vault_token_change", args=[token.pk])


def section(body: str, name: str) -> str:
    found = re.search(rf'<div class="module token-section" id="{name}">.*?\n</div>', body, re.S)
    assert found, f"no {name} section"
    return found.group()


@pytest.fixture
def back_office(db, django_user_model):
    """beth: staff, in the back-office group, nothing else."""
    return staff_in(django_user_model, "beth", "back-office")


@pytest.fixture
def dora(db, django_user_model):
    """dora: staff who may view tokens, events and deliveries, and neither the webhook endpoints nor the audit log."""
    user = django_user_model.objects.create_user("dora", password="x", is_staff=True)
    wanted = {("vault", "view_token"), ("notifications", "view_event"), ("notifications", "view_delivery")}
    user.user_permissions.set(
        p for p in Permission.objects.select_related("content_type") if (p.content_type.app_label, p.codename) in wanted
    )
    return logged_in(user)


@pytest.fixture
def token(tokenize, carol_api) -> Token:
    """Sherlock's Visa, tokenized by alice and detokenized once by carol, her payment processor."""
    created = tokenize().json()
    path = path_of(created["tokenPaymentInstrument"]["href"])
    assert carol_api.post(f"{path}/detokenize", REMOTE_ADDR="203.0.113.7").status_code == 200
    return Token.objects.get(token_id=created["tokenId"])


@pytest.fixture
def network_token(token):
    return network_services.network_token_provision(
        origin=network_services.Origin(merchant=token.merchant, correlation_id="c-1", vault_token=token),
        card=card_from_vault(token),
        account_id="acct",
    )


@pytest.fixture
def delivered_event(token, network_token):
    """An endpoint of alice's, and the token.updated event about the token fanned out to it: one delivery."""
    endpoint = notification_services.endpoint_create(merchant=token.merchant, url="http://127.0.0.1:9/hooks")
    event = notification_services.event_emit(
        merchant=token.merchant, type="token.updated", data={"tokenId": token.token_id}
    )
    notification_services.events_fan_out()
    return endpoint, event


# ------------------------------------------------------------------------------------------------------------
# The sections
# ------------------------------------------------------------------------------------------------------------
def test_the_token_page_lists_its_network_tokens_masked_with_their_status_and_a_link(back_office, token, network_token):
    body = back_office.get(token_page(token)).content.decode()

    listed = section(body, "network-tokens")
    assert network_token.token_id in listed
    assert f"••••{network_token.token_last_digits}" in listed
    assert '<span class="status status-good">Active</span>' in listed
    assert reverse("admin:networks_networktoken_change", args=[network_token.pk]) in listed


def test_the_token_page_lists_the_events_about_it_with_each_delivery_and_its_endpoint(
    admin_client, token, delivered_event
):
    endpoint, event = delivered_event
    delivery = event.deliveries.get()

    listed = section(admin_client.get(token_page(token)).content.decode(), "events")

    assert "token.updated" in listed and endpoint.url in listed
    assert '<span class="status status-warning">Pending</span>' in listed
    assert "network_token.created" in listed  # about its network token, named by the network's tokenId
    assert reverse("admin:notifications_delivery_change", args=[delivery.pk]) in listed
    assert reverse("admin:notifications_event_change", args=[event.pk]) in listed
    assert reverse("admin:notifications_webhookendpoint_change", args=[endpoint.pk]) in listed


def test_back_office_staff_read_that_the_events_need_a_permission_and_nothing_of_them(
    back_office, token, delivered_event
):
    endpoint, _ = delivered_event

    listed = section(back_office.get(token_page(token)).content.decode(), "events")

    assert "Seeing the events about a token needs a permission you do not have." in listed
    assert "token.updated" not in listed and "Pending" not in listed
    assert endpoint.url not in listed and "/admin/notifications/" not in listed


def test_who_may_see_events_but_not_endpoints_sees_the_deliveries_without_where_they_go(dora, token, delivered_event):
    endpoint, event = delivered_event

    body = dora.get(token_page(token)).content.decode()

    listed = section(body, "events")
    assert "token.updated" in listed and '<span class="status status-warning">Pending</span>' in listed
    assert reverse("admin:notifications_delivery_change", args=[event.deliveries.get().pk]) in listed
    assert endpoint.url not in body


def test_who_may_not_read_the_audit_log_reads_that_activity_needs_a_permission(dora, token):
    body = dora.get(token_page(token)).content.decode()

    activity = section(body, "activity")
    assert "Seeing what was done with a token needs a permission you do not have." in activity
    assert "Detokenized" not in activity and "staff-views" not in activity
    assert reverse("admin:core_auditlog_changelist") not in body


def test_activity_names_who_detokenized_the_token_with_their_merchant_and_key(admin_client, alice, token):
    body = admin_client.get(token_page(token)).content.decode()

    activity = section(body, "activity")
    row = re.search(r"<tr>(?:(?!</tr>).)*Detokenized(?:(?!</tr>).)*</tr>", activity, re.S).group()
    key = alice.api_keys.get(name="processor")
    assert f"key {key.prefix}…" in row
    assert reverse("admin:merchants_merchant_change", args=[alice.pk]) in row
    assert reverse("admin:merchants_apikey_change", args=[key.pk]) in row
    assert '<span class="status status-good">Success</span>' in row


def test_activity_shows_a_refused_detokenize_with_its_reason(admin_client, api, token):
    api.post(f"/tokens/{token.reference}/detokenize")  # alice's default key lacks the scope

    activity = section(admin_client.get(token_page(token)).content.decode(), "activity")

    assert '<span class="status status-bad">Failure</span>' in activity


def test_the_staffs_own_views_are_one_line_that_opens_on_the_list(back_office, token):
    for _ in range(3):
        back_office.get(token_page(token))

    activity = section(back_office.get(token_page(token)).content.decode(), "activity")

    summary = re.search(r"<details class=\"staff-views\"><summary>(.*?)</summary>(.*?)</details>", activity, re.S)
    assert summary.group(1) == "Viewed 3 times by staff, last just now"
    assert summary.group(2).count("staff beth") == 3
    # Not rows of their own among what was done with the token.
    outside = activity.replace(summary.group(), "")
    assert "admin.token.view" not in outside and "staff beth" not in outside


def test_the_token_page_shows_no_card_number_anywhere(admin_client, token, network_token, delivered_event):
    body = admin_client.get(token_page(token)).content.decode()

    assert VISA not in body and VISA[6:] not in body and VISA[:12] not in body


def test_the_history_button_is_activity_and_the_history_address_lands_there(back_office, token):
    body = back_office.get(token_page(token)).content.decode()

    assert re.search(r'<a href="#activity" id="activity-link"[^>]*>Activity</a>', body)
    assert "/history/" not in body
    response = back_office.get(reverse("admin:vault_token_history", args=[token.pk]))
    assert response.status_code == 302
    assert response["Location"] == f"{token_page(token)}#activity"


def test_the_token_page_costs_the_same_queries_whatever_its_activity(admin_client, alice, token, delivered_event):
    def queries_of_the_page() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert admin_client.get(token_page(token)).status_code == 200
        return len(queries)

    admin_client.get(token_page(token))  # the session's first page: later ones cost the same
    with_little = queries_of_the_page()
    for number in range(20):
        notification_services.event_emit(merchant=alice, type="token.updated", data={"tokenId": token.token_id})
        audit_record(actor=Actor(f"admin:clerk{number}"), action="token.extend_expiry", obj=token)
        admin_client.get(token_page(token))  # a staff view more
    notification_services.events_fan_out()
    with_much = queries_of_the_page()

    assert with_much == with_little
    activity = section(admin_client.get(token_page(token)).content.decode(), "activity")
    assert activity.count("Expiry extended") == 20  # the rows were there to be shown


def test_every_audit_row_of_the_token_is_its_rows_found_by_exact_filters(admin_client, alice, token):
    other = tokenize_another(alice)
    audit_record(actor=Actor("admin:clerk"), action="token.extend_expiry", obj=other)
    activity = section(admin_client.get(token_page(token)).content.decode(), "activity")
    link = re.search(r'<a href="([^"]+)">Every audit row of this token</a>', activity).group(1).replace("&amp;", "&")

    assert link == f"{reverse('admin:core_auditlog_changelist')}?object_type=token&object_id={token.token_id}"
    listing = admin_client.get(link)
    assert listing.status_code == 200
    rows = listing.context["cl"].result_list
    assert {row.action for row in rows} >= {"token.detokenize", "admin.token.view"}
    assert {(row.object_type, row.object_id) for row in rows} == {("token", token.token_id)}


# ------------------------------------------------------------------------------------------------------------
# The audit log links its actors and objects
# ------------------------------------------------------------------------------------------------------------
def test_the_audit_log_links_the_actor_to_merchant_and_key_and_the_object_to_its_page(admin_client, alice, token):
    listing = admin_client.get(reverse("admin:core_auditlog_changelist"), {"action__exact": "token.detokenize"})

    body = listing.content.decode()
    key = alice.api_keys.get(name="processor")
    assert reverse("admin:merchants_merchant_change", args=[alice.pk]) in body
    assert reverse("admin:merchants_apikey_change", args=[key.pk]) in body
    assert f'<a href="{token_page(token)}">token {token.token_id}</a>' in body


def test_the_audit_log_names_what_the_reader_may_not_open_without_a_link(back_office, alice, token):
    body = back_office.get(reverse("admin:core_auditlog_changelist")).content.decode()

    key = alice.api_keys.get(name="processor")
    assert f"key {key.prefix}…" in body
    assert reverse("admin:merchants_apikey_change", args=[key.pk]) not in body  # beth may not open API keys
    assert f'<a href="{token_page(token)}">token {token.token_id}</a>' in body


def test_an_audit_row_page_links_its_object(admin_client, token):
    row = AuditLog.objects.get(action="token.detokenize")

    body = admin_client.get(reverse("admin:core_auditlog_change", args=[row.pk])).content.decode()

    assert f'<a href="{token_page(token)}">token {token.token_id}</a>' in body
