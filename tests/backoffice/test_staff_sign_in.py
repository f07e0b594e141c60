"""Staff sign in to the admin with a password and a second factor (TOTP), choose passwords of 12 characters or more,
and are signed out after 15 idle minutes.

staff is a back-office user with an authenticator app; newbie is staff who has never signed in, with no app set up
yet; both sign in from their desk through the real forms. admin_client is a superuser already signed in.
"""

import io
import os
import re
from base64 import b32decode
from datetime import timedelta

import pytest
from django.contrib import admin
from django.contrib.sessions.models import Session
from django.core.management import call_command
from django.db.models import F
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from core.models import AuditLog
from tests.conftest import logged_in, otp_code, otp_device

PASSWORD = "correct horse battery staple"
DESK = "192.0.2.10"
LOGIN, CODE, ENROL = "/admin/login/", "/admin/login/code/", "/admin/login/enrol/"
INDEX = "/admin/"


@pytest.fixture
def staff(db, django_user_model):
    user = django_user_model.objects.create_user("staff", password=PASSWORD, is_staff=True)
    otp_device(user)
    return user


@pytest.fixture
def newbie(db, django_user_model):
    return django_user_model.objects.create_user("newbie", password=PASSWORD, is_staff=True)


def log_in(client, username="staff", password=PASSWORD, next=INDEX):
    return client.post(LOGIN, {"username": username, "password": password, "next": next}, REMOTE_ADDR=DESK)


def enter_code(client, code, url=CODE):
    return client.post(url, {"code": code}, REMOTE_ADDR=DESK)


def signed_in(client) -> bool:
    return client.get(INDEX).status_code == 200


def audit(action):
    return AuditLog.objects.filter(action=action)


def shown_key(response) -> str | None:
    """The key the enrolment page shows as text, as a person would type it into their app."""
    found = re.search(r'id="enrolment-key">([A-Z2-7 ]+)<', response.content.decode())
    return found and found.group(1)


def code_of(key: str) -> str:
    """What an authenticator app holding ``key`` shows now."""
    return f"{TOTP(b32decode(key.replace(' ', ''))).token():06d}"


# ------------------------------------------------------------------------------------------------------------
# The second factor
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.pci("8.4.2")
def test_the_right_password_asks_for_the_code_and_signs_no_one_in(client, staff):
    response = log_in(client)

    assert response.status_code == 302
    assert response["Location"] == CODE
    page = client.get(CODE)
    assert page.status_code == 200
    assert "6-digit code" in page.content.decode()
    assert not signed_in(client)


@pytest.mark.pci("8.4.2")
def test_the_right_code_signs_in_where_the_login_was_headed_and_is_audited(client, staff):
    log_in(client, next="/admin/core/auditlog/")

    response = enter_code(client, otp_code(otp_device(staff)))

    assert response.status_code == 302
    assert response["Location"] == "/admin/core/auditlog/"
    assert signed_in(client)
    row = audit("admin.login").get()
    assert (row.actor, row.result, row.origin, row.detail) == ("admin:staff", "success", DESK, {"username": "staff"})


@pytest.mark.pci("8.4.2", "10.2.1.4")
def test_a_wrong_code_is_refused_and_audited(client, staff):
    log_in(client)

    response = enter_code(client, "000000" if otp_code(otp_device(staff)) != "000000" else "111111")

    assert response.status_code == 200
    assert "That code is not right" in response.content.decode()
    assert not signed_in(client)
    row = audit("admin.login.otp_failed").get()
    assert (row.actor, row.result, row.origin, row.detail) == ("anonymous", "failure", DESK, {"username": "staff"})
    assert not audit("admin.login").exists()


@pytest.mark.pci("8.4.2")
def test_a_code_signs_in_once(client, staff):
    code = otp_code(otp_device(staff))
    log_in(client)
    assert enter_code(client, code).status_code == 302
    client.logout()

    log_in(client)

    assert enter_code(client, code).status_code == 200  # the same code again: someone read it over a shoulder
    assert not signed_in(client)


def test_the_code_page_without_the_password_step_goes_back_to_the_login(client, staff):
    response = client.get(CODE)

    assert response.status_code == 302
    assert response["Location"] == reverse("admin:login")
    assert enter_code(client, otp_code(otp_device(staff))).status_code == 302
    assert not signed_in(client)


def test_a_password_changed_meanwhile_ends_the_half_done_sign_in(client, staff):
    log_in(client)
    staff.set_password("another long passphrase")
    staff.save()

    response = enter_code(client, otp_code(otp_device(staff)))

    assert response["Location"] == reverse("admin:login")
    assert not signed_in(client)


@pytest.mark.pci("8.4.2")
def test_a_session_signed_in_without_the_second_factor_reaches_no_admin_page(db, django_user_model):
    # A superuser's session with the password only: made some other way than the sign-in, or left from before.
    user = django_user_model.objects.create_superuser("root", password=PASSWORD)
    client = Client()
    client.force_login(user)
    pages = [INDEX, reverse("admin:password_change")] + [
        reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist") for model in admin.site._registry
    ]

    for page in pages:
        response = client.get(page)
        assert response.status_code == 302, page
        assert response["Location"].startswith(f"{reverse('admin:login')}?next="), page

    assert logged_in(user).get(INDEX).status_code == 200  # the same user, signed in with both factors


def test_a_signed_in_session_skips_the_login_page(staff):
    response = logged_in(staff).get(LOGIN)

    assert response.status_code == 302
    assert response["Location"] == reverse("admin:index")


# ------------------------------------------------------------------------------------------------------------
# Enrolment
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.pci("8.4.2", "10.2.1.5")
def test_staff_without_a_device_enrol_right_after_the_password(client, newbie):
    assert log_in(client, username="newbie")["Location"] == ENROL

    page = client.get(ENROL)
    key = shown_key(page)
    response = enter_code(client, code_of(key), url=ENROL)

    assert page.status_code == 200
    assert re.search(r'<figure id="enrolment-qr">\s*<svg', page.content.decode())
    assert response.status_code == 302
    assert response["Location"] == INDEX
    assert signed_in(client)
    device = TOTPDevice.objects.get(user=newbie)
    assert device.confirmed
    enrolled = audit("admin.otp.enrolled").get()
    assert (enrolled.actor, enrolled.result, enrolled.origin) == ("admin:newbie", "success", DESK)
    assert audit("admin.login").get().actor == "admin:newbie"
    assert key.replace(" ", "") not in str(list(AuditLog.objects.values()))


@pytest.mark.pci("8.4.2")
def test_the_key_is_shown_once(client, newbie):
    log_in(client, username="newbie")
    first = shown_key(client.get(ENROL))
    second = shown_key(client.get(ENROL))  # the page again: a new key, the first one forgotten
    assert first != second
    assert enter_code(client, code_of(first), url=ENROL).status_code == 200

    wrong = enter_code(client, "000000" if code_of(second) != "000000" else "111111", url=ENROL)
    assert wrong.status_code == 200
    assert shown_key(wrong) is None and 'id="enrolment-qr"' not in wrong.content.decode()

    assert enter_code(client, code_of(second), url=ENROL).status_code == 302
    client.logout()
    assert log_in(client, username="newbie")["Location"] == CODE  # enrolled: from now on, the code
    again = client.get(ENROL)
    assert again.status_code == 302 and again["Location"] == CODE
    assert TOTPDevice.objects.filter(user=newbie).count() == 1


def test_the_enrolment_page_without_the_password_step_shows_no_key(client, newbie):
    response = client.get(ENROL)

    assert response.status_code == 302
    assert response["Location"] == reverse("admin:login")
    assert not TOTPDevice.objects.exists()


@pytest.mark.pci("8.4.2")
def test_the_admin_that_make_run_creates_enrols_at_its_first_login(client, db):
    call_command("setup_local", stdout=io.StringIO())

    response = log_in(client, username="admin", password=os.environ["ADMIN_PASSWORD"])

    assert response["Location"] == ENROL
    assert shown_key(client.get(ENROL))


@pytest.mark.pci("8.4.2")
def test_the_devices_admin_page_never_shows_a_key(admin_client, staff):
    device = otp_device(staff)

    page = admin_client.get(reverse("admin:otp_totp_totpdevice_change", args=[device.pk]))

    assert page.status_code == 200
    assert device.key not in page.content.decode()
    assert admin_client.get(reverse("admin:otp_totp_totpdevice_config", args=[device.pk])).status_code == 403
    assert admin_client.get(reverse("admin:otp_totp_totpdevice_qrcode", args=[device.pk])).status_code == 403


# ------------------------------------------------------------------------------------------------------------
# Passwords
# ------------------------------------------------------------------------------------------------------------
WEAK = [
    ("short-pass1", "This password is too short. It must contain at least 12 characters."),
    ("password1234", "This password is too common."),
    ("204967183652", "This password is entirely numeric."),
    ("olive.oyster@example", "The password is too similar to the email address."),
]


@pytest.mark.pci("8.3.6")
@pytest.mark.parametrize("password,refusal", WEAK, ids=[refusal.split(".")[0] for _, refusal in WEAK])
def test_the_admin_refuses_to_set_a_weak_password(admin_client, olive, password, refusal):
    olive.email = "olive.oyster@example.com"
    olive.save(update_fields=["email"])
    url = reverse("admin:auth_user_password_change", args=[olive.pk])

    response = admin_client.post(url, {"password1": password, "password2": password})

    assert response.status_code == 200
    assert refusal in response.content.decode()
    olive.refresh_from_db()
    assert not olive.check_password(password)


@pytest.mark.pci("8.3.6")
def test_the_admin_sets_a_password_of_twelve_characters_or_more(admin_client, olive):
    url = reverse("admin:auth_user_password_change", args=[olive.pk])

    response = admin_client.post(url, {"password1": "ink stained ledger", "password2": "ink stained ledger"})

    assert response.status_code == 302
    olive.refresh_from_db()
    assert olive.check_password("ink stained ledger")


@pytest.mark.pci("8.3.6")
def test_staff_cannot_change_their_own_password_to_a_short_one(olive):
    response = logged_in(olive).post(
        reverse("admin:password_change"),
        {"old_password": "x", "new_password1": "short-pass1", "new_password2": "short-pass1"},
    )

    assert response.status_code == 200
    assert "This password is too short" in response.content.decode()


class Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.pci("8.3.6")
def test_createsuperuser_refuses_a_short_password(db, django_user_model, monkeypatch):
    # At the prompt: a short password (refused; "create anyway?" answered no), then a long one.
    typed = iter(["short-pass1", "short-pass1", "a much longer passphrase", "a much longer passphrase"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="Password: ": next(typed))
    monkeypatch.setattr("builtins.input", lambda prompt="": "n")
    stderr = io.StringIO()

    call_command(
        "createsuperuser",
        username="rita",
        email="rita@example.com",
        interactive=True,
        stdin=Terminal(),
        stdout=io.StringIO(),
        stderr=stderr,
    )

    assert "This password is too short. It must contain at least 12 characters." in stderr.getvalue()
    rita = django_user_model.objects.get(username="rita")
    assert rita.check_password("a much longer passphrase")


# ------------------------------------------------------------------------------------------------------------
# Sessions
# ------------------------------------------------------------------------------------------------------------
def idle(minutes: float) -> None:
    """Nobody makes a request for ``minutes``: every session is that much nearer its end."""
    Session.objects.update(expire_date=F("expire_date") - timedelta(minutes=minutes))


@pytest.mark.pci("8.2.8")
def test_a_session_ends_after_fifteen_idle_minutes(staff):
    client = logged_in(staff)
    assert signed_in(client)
    session = Session.objects.get()
    assert timedelta(minutes=14) < session.expire_date - timezone.now() <= timedelta(minutes=15)

    idle(minutes=15)

    response = client.get(INDEX)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


@pytest.mark.pci("8.2.8")
def test_each_request_gives_the_session_fifteen_more_minutes(staff):
    client = logged_in(staff)
    for _ in range(3):
        idle(minutes=14)
        assert signed_in(client)

    assert timedelta(minutes=14) < Session.objects.get().expire_date - timezone.now() <= timedelta(minutes=15)


@pytest.mark.pci("8.2.8")
def test_the_session_cookie_ends_with_the_browser(client, staff):
    log_in(client)

    response = enter_code(client, otp_code(otp_device(staff)))

    cookie = response.cookies["sessionid"]
    assert (cookie["expires"], cookie["max-age"]) == ("", "")
