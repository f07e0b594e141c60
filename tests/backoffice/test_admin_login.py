"""The admin login locks out brute force: per username and per client address, counted in the audit log.

staff is a back-office user with a known password; the attacker guesses from 198.51.100.7; staff's own desk is
192.0.2.10.
"""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from backoffice import admin_login
from core.models import AuditLog

PASSWORD = "correct horse battery staple"
ATTACKER = "198.51.100.7"
DESK = "192.0.2.10"
LOGIN = "/admin/login/"


@pytest.fixture
def staff(db, django_user_model):
    return django_user_model.objects.create_user("staff", password=PASSWORD, is_staff=True)


def log_in(client, username="staff", password=PASSWORD, address=DESK):
    return client.post(
        LOGIN, {"username": username, "password": password, "next": reverse("admin:index")}, REMOTE_ADDR=address
    )


def fail(client, times=admin_login.MAX_FAILURES_PER_USERNAME, username="staff", address=ATTACKER):
    for _ in range(times):
        response = log_in(client, username=username, password="wrong", address=address)
        assert response.status_code == 200
        assert response.wsgi_request.user.is_anonymous


def audit(action):
    return AuditLog.objects.filter(action=action)


def test_the_right_password_logs_in_and_is_audited(client, staff):
    response = log_in(client)

    assert response.status_code == 302
    row = audit("admin.login").get()
    assert (row.actor, row.result, row.origin, row.detail) == ("admin:staff", "success", DESK, {"username": "staff"})


def test_each_wrong_password_is_audited_with_the_username_and_address(client, staff):
    fail(client, times=2)

    rows = audit("admin.login.failed")
    assert rows.count() == 2
    assert {(r.result, r.origin, r.detail["username"]) for r in rows} == {("failure", ATTACKER, "staff")}
    assert "wrong" not in str(list(rows.values()))  # the guessed password is never written down


def test_five_wrong_passwords_then_the_right_one_is_refused_with_429(client, staff):
    fail(client)

    response = log_in(client)

    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0
    assert "Too many failed logins" in response.content.decode()
    assert response.wsgi_request.user.is_anonymous
    assert not audit("admin.login").exists()
    locked = audit("admin.login.locked").get()
    assert (locked.result, locked.origin, locked.detail) == ("failure", DESK, {"username": "staff"})


def test_a_locked_username_is_refused_without_its_password_being_checked(client, staff, monkeypatch):
    fail(client)
    checked = []
    monkeypatch.setattr(type(staff), "check_password", lambda self, raw: checked.append(raw) or True)

    assert log_in(client).status_code == 429
    assert checked == []


def test_refusals_while_locked_do_not_lengthen_the_lock(client, staff):
    fail(client)
    for _ in range(10):
        assert log_in(client, password="wrong").status_code == 429

    assert audit("admin.login.failed").count() == admin_login.MAX_FAILURES_PER_USERNAME
    assert audit("admin.login.locked").count() == 10


def test_the_username_is_locked_whatever_its_case(client, staff):
    fail(client)

    assert log_in(client, username="STAFF").status_code == 429


def test_another_username_from_another_address_is_not_locked(client, staff, django_user_model):
    django_user_model.objects.create_user("other", password=PASSWORD, is_staff=True)
    fail(client)

    assert log_in(client, username="other", address=DESK).status_code == 302


def test_another_username_from_the_attackers_address_is_not_locked_by_one_accounts_failures(
    client, staff, django_user_model
):
    django_user_model.objects.create_user("other", password=PASSWORD, is_staff=True)
    fail(client)

    assert log_in(client, username="other", address=ATTACKER).status_code == 302


def test_an_address_guessing_across_many_usernames_is_locked(client, staff):
    per_name = admin_login.MAX_FAILURES_PER_USERNAME - 1
    for index in range(admin_login.MAX_FAILURES_PER_ADDRESS // per_name):
        fail(client, times=per_name, username=f"guess{index}")

    assert log_in(client, address=ATTACKER).status_code == 429
    assert log_in(client, address=DESK).status_code == 302  # staff themselves were never locked


def test_a_successful_login_does_not_clear_the_addresses_count(client, staff, django_user_model):
    # The attacker owns a low-privileged account and logs into it between guesses at others.
    django_user_model.objects.create_user("mallory", password="mallory-pass", is_staff=True)
    per_name = admin_login.MAX_FAILURES_PER_USERNAME - 1
    for index in range(admin_login.MAX_FAILURES_PER_ADDRESS // per_name):
        fail(client, times=per_name, username=f"guess{index}")
        assert log_in(client, username="mallory", password="mallory-pass", address=ATTACKER).status_code in (302, 429)
        client.logout()

    assert log_in(client, username="guess-next", password="x", address=ATTACKER).status_code == 429


def test_a_successful_login_restarts_that_usernames_count(client, staff):
    fail(client, times=admin_login.MAX_FAILURES_PER_USERNAME - 1)
    assert log_in(client).status_code == 302
    client.logout()

    fail(client, times=1)

    assert log_in(client).status_code == 302


def test_login_works_again_once_the_window_has_passed(client, staff):
    fail(client)
    assert log_in(client).status_code == 429

    AuditLog.objects.filter(action="admin.login.failed").update(
        created_at=timezone.now() - admin_login.WINDOW - timedelta(seconds=1)
    )

    assert log_in(client).status_code == 302


def test_the_lock_ends_when_the_oldest_counted_failure_leaves_the_window(client, staff):
    fail(client)
    oldest = AuditLog.objects.filter(action="admin.login.failed").order_by("created_at").first()
    oldest.created_at = timezone.now() - admin_login.WINDOW + timedelta(minutes=2)
    oldest.save(update_fields=["created_at"])

    response = log_in(client)

    assert response.status_code == 429
    assert 60 < int(response["Retry-After"]) <= 121


def test_the_login_page_itself_still_shows(client, staff):
    fail(client)

    response = client.get(LOGIN, REMOTE_ADDR=ATTACKER)

    assert response.status_code == 200
    assert b'id="login-form"' in response.content


def test_a_post_without_a_password_is_not_counted(client, staff):
    for _ in range(10):
        client.post(LOGIN, {"username": "staff", "password": ""}, REMOTE_ADDR=ATTACKER)

    assert not audit("admin.login.failed").exists()
    assert log_in(client).status_code == 302
