"""Who may do what in the admin: the ``back-office`` and ``operators`` groups, and an audit row for every action.

beth is back-office staff (a staff user in the ``back-office`` group only, vault 0002): tokens, conflicts,
namespaces, extensions, audit log, network tokens and issuers, nothing of the webhooks and none of the network
tokens' lifecycle. olive is an operator (the ``operators`` group only, notifications 0002 and networks 0003): the
webhooks and the network-token lifecycle, nothing of the vault. admin_client is a superuser ("admin"). alice is the
merchant whose tokens, conflict, network token and webhook endpoint they all look at. The broker is outside the
product: the shared stub (``broker``, tests/conftest.py) keeps what was queued.
"""

import re
from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group
from django.contrib.messages import SUCCESS, WARNING
from django.test import Client, RequestFactory, override_settings
from django.urls import reverse
from django.utils import timezone

from core.audit import Actor
from core.models import AuditLog
from networks import services as network_services
from networks import tsp
from networks.models import LifecycleEvent, NetworkToken
from notifications import services as notification_services
from notifications.models import Delivery, Event, WebhookEndpoint
from tests.conftest import MASTERCARD, SHERLOCK, VISA, VISA_2, logged_in, staff_in
from vault import forwarding, keys, services
from vault.models import DataKey, ExpiryExtension, Token, TokenConflict

pytestmark = pytest.mark.pci("7.2.2")  # staff see and do what their group's job needs, nothing more

BACK_OFFICE_PERMISSIONS = {
    ("merchants", "view_merchant"),
    ("vault", "view_token"),
    ("vault", "change_token"),
    ("vault", "delete_token"),
    ("vault", "view_tokenconflict"),
    ("vault", "change_tokenconflict"),
    ("vault", "view_namespace"),
    ("vault", "view_expiryextension"),
    ("vault", "view_forwarddestination"),
    ("vault", "change_forwarddestination"),
    ("vault", "view_forward"),
    ("vault", "view_capturesession"),
    ("core", "view_auditlog"),
    ("networks", "view_networktoken"),
    ("networks", "view_lifecycleevent"),
    ("networks", "view_issuer"),
    ("networks", "change_issuer"),
    ("networks", "view_provisioningrequest"),
    ("networks", "view_batch"),
    ("networks", "view_batchitem"),
}
OPERATORS_PERMISSIONS = {
    ("notifications", "change_webhookendpoint"),
    ("notifications", "view_webhookendpoint"),
    ("notifications", "view_event"),
    ("notifications", "change_delivery"),
    ("notifications", "view_delivery"),
    ("notifications", "view_deliveryattempt"),
    ("networks", "change_networktoken"),
    ("networks", "view_networktoken"),
    ("networks", "view_lifecycleevent"),
    ("networks", "view_issuer"),
    ("networks", "view_provisioningrequest"),
    ("networks", "change_provisioningrequest"),
    ("networks", "view_batch"),
    ("networks", "view_batchitem"),
}


# ------------------------------------------------------------------------------------------------------------
# Actors and the world they look at
# ------------------------------------------------------------------------------------------------------------
@pytest.fixture
def back_office(db, django_user_model) -> Client:
    """beth: staff, in the back-office group, nothing else."""
    return staff_in(django_user_model, "beth", "back-office")


def sherlock(number: str = VISA, **changes) -> services.Card:
    instrument = SHERLOCK["paymentInstrument"]
    fields = {
        "number": number,
        "holder_name": instrument["cardHolderName"],
        "expiry_month": 5,
        "expiry_year": 2035,
        "billing_address": instrument["billingAddress"],
        **changes,
    }
    return services.Card(**fields)


@dataclass
class World:
    """alice's things: a vault token with a pending conflict, a network token, a webhook endpoint with an event."""

    alice: object
    token: Token
    conflict: TokenConflict
    network_token: NetworkToken
    endpoint: WebhookEndpoint
    event: Event

    @property
    def delivery(self) -> Delivery:
        return Delivery.objects.get(event=self.event, endpoint=self.endpoint)


@pytest.fixture
def world(alice) -> World:
    token = services.card_tokenize(merchant=alice, card=sherlock(), namespace="baker-street").token
    conflict = services.card_tokenize(
        merchant=alice, card=sherlock(holder_name="John Watson", expiry_month=6), namespace="baker-street"
    ).conflict
    assert conflict is not None
    # A detokenize in live with less than half a lifetime left: an audit row and an expiry extension to look at.
    Token.objects.filter(pk=token.pk).update(
        created_at=timezone.now() - timedelta(days=30), expires_at=timezone.now() + timedelta(hours=1)
    )
    token.refresh_from_db()
    with override_settings(TOKENS_ENVIRONMENT="live"):
        services.token_detokenize(token=token, actor=Actor("api-key:processor", merchant=alice))
    token.refresh_from_db()
    network_token = network_services.network_token_provision(
        origin=network_services.Origin(merchant=alice, correlation_id="c-1"),
        card=tsp.CardData(MASTERCARD, 5, 2035),
        account_id="acct",
    )
    endpoint = notification_services.endpoint_create(merchant=alice, url="http://127.0.0.1:9/hooks")
    event = notification_services.event_emit(
        merchant=alice, type="token.updated", data={"tokenId": token.token_id, "cardNumber": token.masked_number}
    )
    notification_services.events_fan_out()  # the dispatcher's work once the event commits: its delivery
    return World(alice, token, conflict, network_token, endpoint, event)


def url(app_model: str, pk=None) -> str:
    """``"vault.token"`` is the list, with ``pk`` the object's page."""
    app, model = app_model.split(".")
    if pk is None:
        return reverse(f"admin:{app}_{model}_changelist")
    return reverse(f"admin:{app}_{model}_change", args=[pk])


def page_url(page: str, world: World) -> str:
    """A page named ``app.model`` (its list) or ``app.model:object`` (the page of the world's object)."""
    app_model, _, which = page.partition(":")
    if not which:
        return url(app_model)
    objects = {
        "vault.token": world.token,
        "vault.tokenconflict": world.conflict,
        "merchants.merchant": world.alice,
        "core.auditlog": AuditLog.objects.first(),
        "vault.namespace": world.token.namespace,
        "vault.expiryextension": world.token.expiry_extensions.first(),
        "networks.networktoken": world.network_token,
        "networks.issuer": world.network_token.issuer,
        "notifications.webhookendpoint": world.endpoint,
        "notifications.event": world.event,
        "notifications.delivery": world.delivery,
    }
    return url(app_model, objects[app_model].pk)


def available_actions(response) -> set[str]:
    form = response.context["action_form"]  # None when the user may run no action at all
    return {name for name, _ in form.fields["action"].choices if name} if form else set()


def run_action(client, app_model: str, action: str, pks, **extra):
    """``index`` in ``extra``: chosen from the list; ``post="yes"``: confirmed on the intermediate page."""
    data = {"action": action, "_selected_action": [str(pk) for pk in pks], **extra}
    return client.post(url(app_model), data, follow=bool(extra.get("post")))


def shown_messages(response, level) -> list[str]:
    return [str(m) for m in response.context["messages"] if m.level == level]


# ------------------------------------------------------------------------------------------------------------
# The groups
# ------------------------------------------------------------------------------------------------------------
def held_by(group: str) -> set[tuple[str, str]]:
    permissions = Group.objects.get(name=group).permissions.select_related("content_type")
    return {(p.content_type.app_label, p.codename) for p in permissions}


def test_the_back_office_group_exists_after_migrations_with_exactly_its_permissions(db):
    assert held_by("back-office") == BACK_OFFICE_PERMISSIONS


def test_the_operators_group_exists_after_migrations_with_exactly_its_permissions(db):
    assert held_by("operators") == OPERATORS_PERMISSIONS


def test_neither_group_holds_what_belongs_to_the_other(db):
    back_office, operators = held_by("back-office"), held_by("operators")

    assert not {perm for perm in back_office if perm[0] == "notifications"}
    assert ("networks", "change_networktoken") not in back_office
    assert not {perm for perm in operators if perm[0] == "vault"}
    assert ("networks", "change_issuer") not in operators
    # Nobody but a superuser issues or revokes API keys, adds anything, or drops a row.
    for _, codename in back_office | operators:
        assert "apikey" not in codename
        assert not codename.startswith("delete_") or codename == "delete_token"  # the tombstone action


# ------------------------------------------------------------------------------------------------------------
# The back office
# ------------------------------------------------------------------------------------------------------------
BACK_OFFICE_PAGES = [
    "vault.token",
    "vault.token:object",
    "vault.tokenconflict",
    "vault.tokenconflict:object",
    "vault.namespace",
    "vault.expiryextension",
    "vault.expiryextension:object",
    "core.auditlog",
    "core.auditlog:object",
    "merchants.merchant",
    "merchants.merchant:object",
    "networks.networktoken",
    "networks.networktoken:object",
    "networks.issuer",
    "networks.issuer:object",
    "networks.provisioningrequest",
    "networks.batch",
    "networks.batchitem",
]
WEBHOOK_PAGES = [
    "notifications.webhookendpoint",
    "notifications.webhookendpoint:object",
    "notifications.event",
    "notifications.event:object",
    "notifications.delivery",
    "notifications.delivery:object",
]


@pytest.mark.parametrize("page", BACK_OFFICE_PAGES)
def test_a_back_office_user_opens_the_vault_and_network_token_pages(back_office, world, page):
    response = back_office.get(page_url(page, world))

    assert response.status_code == 200
    assert VISA not in response.content.decode() and MASTERCARD not in response.content.decode()


@pytest.mark.parametrize("page", [*WEBHOOK_PAGES, "merchants.apikey"])
def test_a_back_office_user_gets_403_on_the_webhook_pages_and_the_api_keys(back_office, world, page):
    assert back_office.get(page_url(page, world)).status_code == 403


def test_a_back_office_user_is_offered_the_vault_actions(back_office, world):
    assert available_actions(back_office.get(url("vault.token"))) == {"tombstone_selected", "extend_expiry"}
    assert available_actions(back_office.get(url("vault.tokenconflict"))) == {"apply", "dismiss"}


def test_a_back_office_user_may_correct_an_issuer(back_office, world):
    issuer = world.network_token.issuer

    assert 'name="_save"' in back_office.get(url("networks.issuer", issuer.pk)).content.decode()


def applied(world: World) -> bool:
    world.token.refresh_from_db()
    return world.token.card_holder_name == "John Watson"


def dismissed(world: World) -> bool:
    world.token.refresh_from_db()
    return world.token.card_holder_name == "Sherlock Holmes" and not TokenConflict.objects.exists()


# action, its model, the audit action it writes for the token, and how to tell it happened
VAULT_ACTIONS = [
    ("tombstone_selected", "vault.token", "token.delete", lambda w: Token.objects.get(pk=w.token.pk).is_deleted),
    (
        "extend_expiry",
        "vault.token",
        "token.extend_expiry",
        lambda w: w.token.expiry_extensions.filter(reason="extended by staff").exists(),
    ),
    ("apply", "vault.tokenconflict", "token.conflict_apply", applied),
    ("dismiss", "vault.tokenconflict", "token.conflict_dismiss", dismissed),
]


@pytest.mark.parametrize("action, app_model, audited, happened", VAULT_ACTIONS, ids=[a[0] for a in VAULT_ACTIONS])
def test_a_back_office_user_runs_the_vault_actions_after_their_confirmation_page(
    back_office, world, action, app_model, audited, happened
):
    pk = world.token.pk if app_model == "vault.token" else world.conflict.pk

    confirmation = run_action(back_office, app_model, action, [pk], index="0")

    assert confirmation.status_code == 200
    assert 'name="post" value="yes"' in confirmation.content.decode()
    assert not happened(world)

    done = run_action(back_office, app_model, action, [pk], post="yes")

    assert done.status_code == 200
    assert happened(world)
    row = AuditLog.objects.get(action=audited)
    assert (row.actor, row.object_id, row.result) == ("admin:beth", world.token.token_id, AuditLog.SUCCESS)


LIFECYCLE_ACTIONS = ["suspend", "resume", "delete", "card_updated"]


def test_a_back_office_user_is_offered_no_network_token_lifecycle_action(back_office, world):
    listing = back_office.get(url("networks.networktoken"))

    assert listing.status_code == 200
    assert available_actions(listing) == set()


@pytest.mark.parametrize("action", LIFECYCLE_ACTIONS)
def test_a_forged_lifecycle_action_from_the_back_office_does_nothing(back_office, world, action):
    if action == "resume":
        network_services.lifecycle_apply(token=world.network_token, type=LifecycleEvent.SUSPENDED, source="tsp:mc")
    before = NetworkToken.objects.get(pk=world.network_token.pk)
    history = LifecycleEvent.objects.count()
    events = Event.objects.filter(type="network_token.updated").count()

    run_action(back_office, "networks.networktoken", action, [world.network_token.pk], index="0")
    run_action(
        back_office,
        "networks.networktoken",
        action,
        [world.network_token.pk],
        post="yes",
        expiry_month="7",
        expiry_year="2036",
    )

    after = NetworkToken.objects.get(pk=world.network_token.pk)
    assert (after.status, after.card_expiry_month, after.dpan_ciphertext) == (
        before.status,
        before.card_expiry_month,
        before.dpan_ciphertext,
    )
    assert LifecycleEvent.objects.count() == history
    assert Event.objects.filter(type="network_token.updated").count() == events
    assert (
        not AuditLog.objects.filter(action__startswith="admin.network_token.")
        .exclude(action="admin.network_token.view")
        .exists()
    )


@pytest.mark.parametrize(
    "action, app_model",
    [
        ("disable", "notifications.webhookendpoint"),
        ("rotate_secret", "notifications.webhookendpoint"),
        ("replay", "notifications.delivery"),
    ],
)
def test_a_forged_webhook_action_from_the_back_office_is_refused(back_office, world, action, app_model):
    pk = world.endpoint.pk if app_model.endswith("webhookendpoint") else world.delivery.pk
    secret = world.endpoint.secret

    response = run_action(back_office, app_model, action, [pk], post="yes", reason="x")

    assert response.status_code == 403
    world.endpoint.refresh_from_db()
    assert (world.endpoint.is_enabled, world.endpoint.secret) == (True, secret)
    assert not AuditLog.objects.filter(action__startswith="admin.webhook.").exists()


# ------------------------------------------------------------------------------------------------------------
# Operators
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "page",
    [
        "vault.token",
        "vault.token:object",
        "vault.tokenconflict",
        "vault.tokenconflict:object",
        "core.auditlog",
        "core.auditlog:object",
        "vault.namespace",
        "vault.expiryextension",
        "merchants.merchant",
        "merchants.apikey",
    ],
)
def test_an_operator_gets_403_on_the_vault_pages(operator, world, page):
    assert operator.get(page_url(page, world)).status_code == 403


@pytest.mark.parametrize("page", [*WEBHOOK_PAGES, "networks.networktoken", "networks.networktoken:object"])
def test_an_operator_opens_the_webhook_and_network_token_pages(operator, world, page):
    assert operator.get(page_url(page, world)).status_code == 200


@pytest.mark.parametrize("action, app_model, audited, happened", VAULT_ACTIONS, ids=[a[0] for a in VAULT_ACTIONS])
def test_an_operator_cannot_run_a_vault_action(operator, world, action, app_model, audited, happened):
    pk = world.token.pk if app_model == "vault.token" else world.conflict.pk

    assert run_action(operator, app_model, action, [pk], index="0").status_code == 403
    assert run_action(operator, app_model, action, [pk], post="yes").status_code == 403

    assert not happened(world)
    assert not AuditLog.objects.filter(action=audited).exists()


def test_an_operator_cannot_revoke_or_issue_api_keys(operator, world):
    key = world.alice.api_keys.get()

    assert run_action(operator, "merchants.apikey", "revoke", [key.pk], post="yes").status_code == 403
    assert (
        run_action(
            operator, "merchants.merchant", "create_api_key", [world.alice.pk], post="yes", name="x", scopes=["tokens"]
        ).status_code
        == 403
    )

    key.refresh_from_db()
    assert key.revoked_at is None
    assert world.alice.api_keys.count() == 1


# ------------------------------------------------------------------------------------------------------------
# Superusers
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("page", [*BACK_OFFICE_PAGES, *WEBHOOK_PAGES, "merchants.apikey"])
def test_a_superuser_opens_every_page(admin_client, world, page):
    assert admin_client.get(page_url(page, world)).status_code == 200


def test_a_superuser_is_offered_every_action(admin_client, world):
    offered = {
        app_model: available_actions(admin_client.get(url(app_model)))
        for app_model in (
            "merchants.merchant",
            "merchants.apikey",
            "vault.token",
            "vault.tokenconflict",
            "vault.forwarddestination",
            "networks.networktoken",
            "notifications.webhookendpoint",
            "notifications.delivery",
        )
    }

    assert offered == {
        "merchants.merchant": {"create_api_key"},
        "merchants.apikey": {"revoke"},
        "vault.token": {"tombstone_selected", "extend_expiry"},
        "vault.tokenconflict": {"apply", "dismiss"},
        "vault.forwarddestination": {"disable", "enable"},
        "networks.networktoken": set(LIFECYCLE_ACTIONS),
        "notifications.webhookendpoint": {"enable", "disable", "rotate_secret", "replay_failed"},
        "notifications.delivery": {"retry_now", "replay"},
    }


# ------------------------------------------------------------------------------------------------------------
# Extend expiry
# ------------------------------------------------------------------------------------------------------------
def test_extending_an_expiry_asks_first_then_moves_it_one_lifetime_and_records_audits_and_announces_it(
    back_office, world
):
    token = world.token
    old = token.expires_at
    extensions = token.expiry_extensions.count()

    confirmation = run_action(back_office, "vault.token", "extend_expiry", [token.pk], index="0")

    assert confirmation.status_code == 200
    assert "admin/vault/token/action_confirmation.html" in [t.name for t in confirmation.templates]
    body = confirmation.content.decode()
    assert token.token_id in body and token.masked_number in body and VISA not in body
    new = old + services.default_lifetime()
    moved = rf"{old:%Y-%m-%d %H:%M}:\d\d UTC</time>.*? → <time[^>]*>{new:%Y-%m-%d %H:%M}:\d\d UTC</time>"
    assert re.search(moved, body)
    token.refresh_from_db()
    assert token.expires_at == old and token.expiry_extensions.count() == extensions

    done = run_action(back_office, "vault.token", "extend_expiry", [token.pk], post="yes")

    [extended] = shown_messages(done, SUCCESS)
    assert re.fullmatch(r"Extended the expiry of 1 token by 7 days, to \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\.", extended)
    token.refresh_from_db()
    assert token.expires_at == new
    extension = token.expiry_extensions.first()
    assert (extension.old_expires_at, extension.new_expires_at, extension.reason) == (old, new, "extended by staff")
    row = AuditLog.objects.get(action="token.extend_expiry")
    assert (row.actor, row.object_type, row.object_id, row.result, row.origin) == (
        "admin:beth",
        "token",
        token.token_id,
        AuditLog.SUCCESS,
        "127.0.0.1",
    )
    event = Event.objects.get(type="token.expiry_extended", data__reason="extended by staff")
    assert event.merchant == world.alice
    assert event.data["tokenId"] == token.token_id
    assert event.data["tokenExpiryDateTime"].startswith(f"{new:%Y-%m-%dT%H:%M}")
    assert VISA not in str(event.data)


def test_extending_in_the_live_environment_adds_four_years(back_office, world, settings):
    settings.TOKENS_ENVIRONMENT = "live"
    old = world.token.expires_at

    done = run_action(back_office, "vault.token", "extend_expiry", [world.token.pk], post="yes")

    [extended] = shown_messages(done, SUCCESS)
    assert extended.startswith("Extended the expiry of 1 token by 4 years, to ")
    world.token.refresh_from_db()
    assert world.token.expires_at == old + timedelta(days=4 * 365 + 1)


def test_extending_leaves_deleted_and_expired_tokens_alone_with_a_warning(back_office, world):
    expired = services.card_tokenize(merchant=world.alice, card=sherlock(MASTERCARD)).token
    Token.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    deleted = services.card_tokenize(merchant=world.alice, card=sherlock(VISA_2)).token
    services.token_delete(token=deleted)
    chosen = [world.token.pk, expired.pk, deleted.pk]

    confirmation = run_action(back_office, "vault.token", "extend_expiry", chosen, index="0").content.decode()

    assert "2 of these 3 tokens are deleted or expired and will be left alone." in confirmation
    assert "deleted: left alone" in confirmation and "expired" in confirmation

    done = run_action(back_office, "vault.token", "extend_expiry", chosen, post="yes")

    [extended] = shown_messages(done, SUCCESS)
    assert re.fullmatch(r"Extended the expiry of 1 token by 7 days, to \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\.", extended)
    assert shown_messages(done, WARNING) == ["The token was deleted or has expired: 2 tokens left alone."]
    assert not ExpiryExtension.objects.filter(token__in=[expired, deleted]).exists()
    assert Token.objects.get(pk=expired.pk).expires_at < timezone.now()
    assert list(AuditLog.objects.filter(action="token.extend_expiry").values_list("object_id", flat=True)) == [
        world.token.token_id
    ]


def test_a_view_only_clerk_is_not_offered_the_extension_and_a_forged_one_does_nothing(world, django_user_model):
    user = django_user_model.objects.create_user("clerk", password="x", is_staff=True)
    user.user_permissions.set(Group.objects.get(name="back-office").permissions.filter(codename__startswith="view_"))
    clerk = logged_in(user)
    old = world.token.expires_at

    assert "extend_expiry" not in available_actions(clerk.get(url("vault.token")))
    run_action(clerk, "vault.token", "extend_expiry", [world.token.pk], post="yes")

    world.token.refresh_from_db()
    assert world.token.expires_at == old
    assert not AuditLog.objects.filter(action="token.extend_expiry").exists()


# ------------------------------------------------------------------------------------------------------------
# Every action of the admin writes an audit row
# ------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    """One admin action run by the superuser: what to select, what to post, which audit rows it must leave."""

    app_model: str
    action: str
    audited: str
    select: object  # World -> list of objects
    data: dict
    object_ids: object  # World, selected objects -> the audit rows' object ids (None: not known beforehand)


def _suspended(world: World) -> list:
    network_services.lifecycle_apply(token=world.network_token, type=LifecycleEvent.SUSPENDED, source="tsp:mc")
    return [world.network_token]


def _disabled(world: World) -> list:
    notification_services.endpoint_disable(endpoint=world.endpoint, reason="down")
    return [world.endpoint]


def _failed(world: World) -> Delivery:
    Delivery.objects.filter(pk=world.delivery.pk).update(status=Delivery.FAILED, next_attempt_at=None, attempt_count=8)
    return world.delivery


def _pending_request(world: World) -> list:
    """An async request waiting for its attempt (its message never sent: the test has no broker)."""
    return [
        network_services.provisioning_request_create(
            merchant=world.alice, correlation_id="c-stuck", vault_token=world.token
        )
    ]


def _token_ids(world, objects):
    return [world.token.token_id for _ in objects]


def _network_token_ids(world, objects):
    return [obj.token_id for obj in objects]


def _endpoint_ids(world, objects):
    return [world.endpoint.public_id]


def _destination(world: World, *, disabled: bool = False) -> list:
    """A forward destination of alice's, enabled or disabled by staff."""
    staff = Actor("admin:someone")
    destination = forwarding.destination_create(
        merchant=world.alice, name="psp", url="http://127.0.0.1:9/psp", actor=Actor("api-key:x", merchant=world.alice)
    )
    if disabled:
        forwarding.destination_disable(destination=destination, reason="provider gone", actor=staff)
    return [destination]


def _destination_ids(world, objects):
    return [destination.public_id for destination in objects]


def _delivery_ids(world, objects):
    return [f"{world.event.public_id}/{world.endpoint.public_id}"]


def _dek(version: int) -> list:
    return [DataKey.objects.get(purpose="encryption", version=version)]


def _older_dek(world: World) -> list:
    """DEK 1, holding alice's cards, and DEK 2 started since by another superuser: the cards wait to move to it."""
    keys.dek_create(actor=Actor("admin:someone"))
    return _dek(1)


WINDOW = {
    "since": (timezone.now() - timedelta(days=1)).strftime("%Y-%m-%d %H:%M"),
    "until": (timezone.now() + timedelta(days=1)).strftime("%Y-%m-%d %H:%M"),
}
CASES = [
    Case(
        "vault.forwarddestination",
        "disable",
        "forward_destination.disable",
        _destination,
        {"reason": "provider gone"},
        _destination_ids,
    ),
    Case(
        "vault.forwarddestination",
        "enable",
        "forward_destination.enable",
        lambda w: _destination(w, disabled=True),
        {},
        _destination_ids,
    ),
    Case(
        "merchants.merchant",
        "create_api_key",
        "admin.api_key.create",
        lambda w: [w.alice],
        {"name": "processor", "scopes": ["tokens"]},
        None,
    ),
    Case(
        "merchants.apikey",
        "revoke",
        "admin.api_key.revoke",
        lambda w: [w.alice.api_keys.get()],
        {},
        lambda w, objects: [key.prefix for key in objects],
    ),
    Case("vault.token", "tombstone_selected", "token.delete", lambda w: [w.token], {}, _token_ids),
    Case("vault.token", "extend_expiry", "token.extend_expiry", lambda w: [w.token], {}, _token_ids),
    Case("vault.tokenconflict", "apply", "token.conflict_apply", lambda w: [w.conflict], {}, _token_ids),
    Case("vault.tokenconflict", "dismiss", "token.conflict_dismiss", lambda w: [w.conflict], {}, _token_ids),
    Case(
        "networks.networktoken",
        "suspend",
        "admin.network_token.suspend",
        lambda w: [w.network_token],
        {},
        _network_token_ids,
    ),
    Case("networks.networktoken", "resume", "admin.network_token.resume", _suspended, {}, _network_token_ids),
    Case(
        "networks.networktoken",
        "delete",
        "admin.network_token.delete",
        lambda w: [w.network_token],
        {},
        _network_token_ids,
    ),
    Case(
        "networks.networktoken",
        "card_updated",
        "admin.network_token.card_updated",
        lambda w: [w.network_token],
        {"expiry_month": "7", "expiry_year": "2036", "card_last_digits": ""},
        _network_token_ids,
    ),
    Case(
        "networks.provisioningrequest",
        "retry_now",
        "admin.network_token_request.retry_now",
        _pending_request,
        {},
        lambda w, objects: [request.public_id for request in objects],
    ),
    Case("notifications.webhookendpoint", "enable", "admin.webhook.enable", _disabled, {}, _endpoint_ids),
    Case(
        "notifications.webhookendpoint",
        "disable",
        "admin.webhook.disable",
        lambda w: [w.endpoint],
        {"reason": "merchant asked"},
        _endpoint_ids,
    ),
    Case(
        "notifications.webhookendpoint",
        "rotate_secret",
        "admin.webhook.rotate_secret",
        lambda w: [w.endpoint],
        {},
        _endpoint_ids,
    ),
    Case(
        "notifications.webhookendpoint",
        "replay_failed",
        "admin.webhook.replay_failed",
        lambda w: [_failed(w).endpoint],
        WINDOW,
        _endpoint_ids,
    ),
    Case("notifications.delivery", "retry_now", "admin.webhook.retry_now", lambda w: [w.delivery], {}, _delivery_ids),
    Case("notifications.delivery", "replay", "admin.webhook.replay", lambda w: [_failed(w)], {}, _delivery_ids),
    # Key custody: each action is one run of its service over every key, audited once (superusers only).
    Case("vault.datakey", "start_new_dek", "keys.dek.create", lambda w: _dek(1), {}, None),
    Case("vault.datakey", "reencrypt", "keys.rotate.finish", _older_dek, {}, None),
    Case("vault.datakey", "rewrap", "keys.kek.rotate", lambda w: _dek(1), {}, None),
]


def every_admin_action(superuser) -> set[tuple[str, str]]:
    """Every action the admin offers a superuser on the product's models (Django's own removed where they are)."""
    request = RequestFactory().get("/admin/")
    request.user = superuser
    found = set()
    for model, model_admin in admin.site._registry.items():
        if model._meta.app_label in ("core", "merchants", "vault", "networks", "notifications"):
            for name in model_admin.get_actions(request):
                found.add((f"{model._meta.app_label}.{model._meta.model_name}", name))
    return found


def test_the_audit_cases_cover_every_action_of_the_admin(admin_user):
    assert {(case.app_model, case.action) for case in CASES} == every_admin_action(admin_user)


@pytest.mark.parametrize("case", CASES, ids=[f"{c.app_model}.{c.action}" for c in CASES])
def test_every_admin_action_writes_an_audit_row_per_object(admin_client, world, case):
    objects = case.select(world)
    before = set(AuditLog.objects.values_list("pk", flat=True))

    response = run_action(
        admin_client, case.app_model, case.action, [obj.pk for obj in objects], post="yes", **case.data
    )

    assert response.status_code == 200
    assert shown_messages(response, SUCCESS) or shown_messages(response, WARNING)
    rows = list(AuditLog.objects.exclude(pk__in=before).filter(action=case.audited))
    assert len(rows) == len(objects)
    assert {(row.actor, row.result) for row in rows} == {("admin:admin", AuditLog.SUCCESS)}
    if case.object_ids is not None:
        assert sorted(row.object_id for row in rows) == sorted(case.object_ids(world, objects))
    # One row per object for the action itself: nothing else but that row is written by it.
    assert AuditLog.objects.exclude(pk__in=before).count() == len(objects)
