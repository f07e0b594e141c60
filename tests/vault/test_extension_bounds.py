"""An expiry extension is bounded: a token that expires near the largest date a datetime holds (stored before
``tokenExpiryDateTime`` had an upper bound, e.g. 9999-12-31) is never extended past ``LATEST_EXPIRY``, and neither a
staff extension nor a use of the token turns into a 500.

alice is a merchant; carol is alice's payment processor, the only key allowed to detokenize; the superuser
(``admin_client``) extends tokens in the back office.
"""

from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse

from core.audit import SYSTEM
from core.errors import BusinessRuleError
from core.models import AuditLog
from notifications.models import Event
from tests.conftest import path_of
from vault import services
from vault.models import ExpiryExtension, Token
from vault.services.tokens import LATEST_EXPIRY

END_OF_TIME = datetime(9999, 12, 31, tzinfo=UTC)  # what tokenExpiryDateTime accepted before it had a bound


@pytest.fixture
def created(tokenize) -> dict:
    response = tokenize()
    assert response.status_code == 201, response.content
    return response.json()


def expiring_at(created: dict, expires_at: datetime) -> Token:
    Token.objects.filter(token_id=created["tokenId"]).update(expires_at=expires_at)
    return Token.objects.get(token_id=created["tokenId"])


@pytest.mark.pci("6.2.4")
@pytest.mark.parametrize("expires_at", [END_OF_TIME, datetime.max.replace(tzinfo=UTC), LATEST_EXPIRY])
def test_staff_extending_a_token_already_at_the_latest_expiry_is_refused_and_changes_nothing(
    settings, created, expires_at
):
    settings.TOKENS_ENVIRONMENT = "live"
    token = expiring_at(created, expires_at)

    with pytest.raises(BusinessRuleError) as refused:
        services.token_extend_expiry(token=token, actor=SYSTEM)

    assert refused.value.error_name == "tokenExpiryAtLatest"
    token.refresh_from_db()
    assert token.expires_at == expires_at
    assert not ExpiryExtension.objects.exists()
    assert not AuditLog.objects.filter(action="token.extend_expiry").exists()
    assert not Event.objects.filter(type="token.expiry_extended").exists()


def test_an_extension_near_the_latest_expiry_stops_there(settings, created):
    settings.TOKENS_ENVIRONMENT = "live"
    token = expiring_at(created, LATEST_EXPIRY - timedelta(days=30))

    extension = services.token_extend_expiry(token=token, actor=SYSTEM)

    assert extension.new_expires_at == LATEST_EXPIRY
    token.refresh_from_db()
    assert token.expires_at == LATEST_EXPIRY


@pytest.mark.parametrize("environment", ["try", "live"])
@pytest.mark.parametrize(
    "expires_at",
    [
        END_OF_TIME,
        LATEST_EXPIRY - timedelta(days=1),
        LATEST_EXPIRY - timedelta(days=4 * 365 + 1),
        datetime.max.replace(tzinfo=UTC) - timedelta(seconds=1),
    ],
)
def test_the_extended_expiry_is_never_past_the_latest_nor_before_the_current_one(
    settings, created, environment, expires_at
):
    settings.TOKENS_ENVIRONMENT = environment
    token = expiring_at(created, expires_at)

    extended = services.token_extended_expiry(token)

    assert extended <= max(LATEST_EXPIRY, expires_at)
    assert extended >= expires_at


def test_an_ordinary_extension_is_still_one_default_lifetime(settings, created):
    settings.TOKENS_ENVIRONMENT = "live"
    token = Token.objects.get(token_id=created["tokenId"])

    extension = services.token_extend_expiry(token=token, actor=SYSTEM)

    assert extension.new_expires_at - extension.old_expires_at == services.default_lifetime()


@pytest.mark.pci("6.2.4")
def test_the_back_office_offers_and_refuses_the_extension_of_such_a_token_without_a_500(admin_client, created):
    token = expiring_at(created, END_OF_TIME)
    changelist = reverse("admin:vault_token_changelist")
    chosen = {"action": "extend_expiry", "_selected_action": [str(token.pk)], "index": "0"}

    confirmation = admin_client.post(changelist, chosen)
    done = admin_client.post(changelist, {**chosen, "post": "yes"}, follow=True)

    assert confirmation.status_code == 200
    assert done.status_code == 200
    shown = " ".join(str(message) for message in done.context["messages"])
    assert "latest" in shown
    token.refresh_from_db()
    assert token.expires_at == END_OF_TIME


@pytest.mark.pci("6.2.4")
def test_a_use_of_a_live_token_that_expires_at_the_end_of_time_releases_the_card_and_keeps_the_expiry(
    settings, created, carol_api
):
    settings.TOKENS_ENVIRONMENT = "live"
    expiring_at(created, END_OF_TIME)

    response = carol_api.post(f"{path_of(created['tokenPaymentInstrument']['href'])}/detokenize")

    assert response.status_code == 200
    assert response.json()["tokenExpiryDateTime"] == "9999-12-31T00:00:00Z"
    assert not ExpiryExtension.objects.exists()
