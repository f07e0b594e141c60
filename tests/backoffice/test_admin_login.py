"""The admin sign-in locks out brute force: per username and per client address, every guess at a password or a code
counted before it is checked, so that parallel guesses are held to the limit too.

staff is a back-office user with a known password and an authenticator app; the attacker guesses from 198.51.100.7;
staff's own desk is 192.0.2.10.
"""

import threading
import time
from datetime import timedelta

import pytest
from django.contrib.auth.hashers import MD5PasswordHasher
from django.db import connection
from django.test import Client
from django.urls import reverse

from backoffice import admin_login
from backoffice.models import SignInAttempt
from core.models import AuditLog
from tests.conftest import otp_code, otp_device, wait_for

PASSWORD = "correct horse battery staple"
ATTACKER = "198.51.100.7"
DESK = "192.0.2.10"
LOGIN = "/admin/login/"
CODE = "/admin/login/code/"
LIMIT = admin_login.MAX_FAILURES_PER_USERNAME

pytestmark = pytest.mark.pci("8.3.4")


@pytest.fixture
def staff(db, django_user_model):
    user = django_user_model.objects.create_user("staff", password=PASSWORD, is_staff=True)
    otp_device(user)
    return user


def log_in(client, username="staff", password=PASSWORD, address=DESK):
    """The password step: 302 on to the code when the password was right."""
    return client.post(
        LOGIN, {"username": username, "password": password, "next": reverse("admin:index")}, REMOTE_ADDR=address
    )


def enter_code(client, code, address=DESK):
    return client.post(CODE, {"code": code}, REMOTE_ADDR=address)


def sign_in(client, user, address=DESK, steps_ahead=0):
    """Both steps, with the code the user's app shows (``steps_ahead`` for a second sign-in within 30 seconds)."""
    assert log_in(client, username=user.username, address=address).status_code == 302
    return enter_code(client, otp_code(otp_device(user), steps_ahead=steps_ahead), address=address)


def fail(client, times=LIMIT, username="staff", address=ATTACKER):
    for _ in range(times):
        response = log_in(client, username=username, password="wrong", address=address)
        assert response.status_code == 200
        assert response.wsgi_request.user.is_anonymous


def audit(action):
    return AuditLog.objects.filter(action=action)


def signed_in(client) -> bool:
    return client.get(reverse("admin:index")).status_code == 200


def age_attempts(by: timedelta) -> None:
    """Time passes: every guess counted so far happened ``by`` earlier."""
    for attempt in SignInAttempt.objects.all():
        attempt.created_at -= by
        attempt.save(update_fields=["created_at"])


@pytest.mark.pci("10.2.1.4")
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


def test_a_locked_username_is_refused_without_its_password_being_checked(client, staff, hasher):
    fail(client)
    checked = len(hasher.checked)

    assert log_in(client).status_code == 429
    assert len(hasher.checked) == checked == LIMIT


def test_refusals_while_locked_do_not_lengthen_the_lock(client, staff):
    fail(client)
    for _ in range(10):
        assert log_in(client, password="wrong").status_code == 429

    assert audit("admin.login.failed").count() == LIMIT
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
    per_name = LIMIT - 1
    for index in range(admin_login.MAX_FAILURES_PER_ADDRESS // per_name):
        fail(client, times=per_name, username=f"guess{index}")

    assert log_in(client, address=ATTACKER).status_code == 429
    assert log_in(client, address=DESK).status_code == 302  # staff themselves were never locked


def test_signing_in_does_not_clear_the_addresses_count(staff, django_user_model):
    # The attacker owns a low-privileged account and signs into it between guesses at others.
    mallory = django_user_model.objects.create_user("mallory", password="mallory's own long passphrase", is_staff=True)
    otp_device(mallory)
    per_name = LIMIT - 1
    for index in range(admin_login.MAX_FAILURES_PER_ADDRESS // per_name):
        client = Client()
        fail(client, times=per_name, username=f"guess{index}")
        response = log_in(client, username="mallory", password="mallory's own long passphrase", address=ATTACKER)
        assert response.status_code in (302, 429)  # 429 once the address holds its limit
        if response.status_code == 302:
            device = otp_device(mallory)
            device.last_t = -1  # a code a step of 30 seconds accepts once: let the next round use it again
            device.save(update_fields=["last_t"])
            assert enter_code(client, otp_code(device), address=ATTACKER).status_code == 302

    assert log_in(Client(), username="guess-next", password="x", address=ATTACKER).status_code == 429


def test_signing_in_restarts_that_usernames_count(client, staff):
    fail(client, times=LIMIT - 1)
    assert sign_in(client, staff).status_code == 302
    client.logout()

    fail(client, times=1)

    assert log_in(client).status_code == 302


def test_the_right_password_alone_does_not_restart_the_count(client, staff):
    fail(client, times=LIMIT - 1)
    assert log_in(client).status_code == 302  # the code is never given

    fail(client, times=1)

    assert log_in(client).status_code == 429


@pytest.mark.pci("10.2.1.4")
def test_wrong_codes_count_towards_the_same_lock(client, staff):
    # The password is known; the code is guessed.
    assert log_in(client, address=ATTACKER).status_code == 302
    for guess in range(LIMIT):
        response = enter_code(client, f"{guess:06d}", address=ATTACKER)
        assert response.status_code == 200
        assert "That code is not right" in response.content.decode()

    response = enter_code(client, otp_code(otp_device(staff)), address=ATTACKER)

    assert response.status_code == 429
    assert not signed_in(client)
    assert log_in(client).status_code == 429  # from staff's desk too
    assert audit("admin.login.otp_failed").count() == LIMIT
    assert {(r.actor, r.result, r.origin) for r in audit("admin.login.otp_failed")} == {
        ("anonymous", "failure", ATTACKER)
    }


def test_wrong_passwords_and_codes_add_up(client, staff):
    fail(client, times=LIMIT - 1)
    assert log_in(client).status_code == 302
    assert enter_code(client, "000000").status_code == 200

    assert log_in(client).status_code == 429


def test_login_works_again_once_the_lock_has_passed(client, staff):
    fail(client)
    assert log_in(client).status_code == 429

    age_attempts(admin_login.LOCKOUT + timedelta(seconds=1))

    assert log_in(client).status_code == 302


def test_the_lock_lasts_thirty_minutes_from_the_failure_that_reached_the_limit(client, staff):
    fail(client, times=LIMIT - 1)
    age_attempts(timedelta(minutes=10))  # four failures ten minutes ago, the fifth now
    fail(client, times=1)

    response = log_in(client)

    assert response.status_code == 429
    assert 29 * 60 < int(response["Retry-After"]) <= 30 * 60 + 1
    assert "Try again in 30 minutes." in response.content.decode()
    age_attempts(timedelta(minutes=29, seconds=30))
    response = log_in(client)
    assert response.status_code == 429
    assert "Try again in 1 minute." in response.content.decode()
    age_attempts(timedelta(seconds=31))
    assert log_in(client).status_code == 302


def test_failures_further_apart_than_the_window_do_not_lock(client, staff):
    for _ in range(LIMIT - 1):
        fail(client, times=1)
        age_attempts(admin_login.WINDOW / (LIMIT - 2))  # five failures spread over more than 15 minutes
    fail(client, times=1)

    assert log_in(client).status_code == 302


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


def test_a_code_that_is_not_six_digits_is_not_counted(client, staff):
    assert log_in(client, address=ATTACKER).status_code == 302
    for code in ["", "12345", "abcdef", "1234567"]:
        response = enter_code(client, code, address=ATTACKER)
        assert response.status_code == 200
        assert response.context["form"].errors["code"]

    assert not audit("admin.login.otp_failed").exists()
    assert enter_code(client, otp_code(otp_device(staff))).status_code == 302


# ------------------------------------------------------------------------------------------------------------
# Guesses in parallel
# ------------------------------------------------------------------------------------------------------------
class CountingHasher(MD5PasswordHasher):
    """The test settings' MD5, noting each password it checks; ``while_checking`` runs in the middle of a check, and
    ``seconds`` makes each check last that long, as a real hash does."""

    checked: list[str] = []
    while_checking = None
    seconds = 0.0

    def verify(self, password, encoded):
        type(self).checked.append(password)
        if type(self).while_checking:
            type(self).while_checking()
        time.sleep(type(self).seconds)
        return super().verify(password, encoded)


@pytest.fixture
def hasher(settings):
    """Passwords are checked by ``CountingHasher`` (a password hasher is a setting: no product code is touched)."""
    settings.PASSWORD_HASHERS = [f"{__name__}.CountingHasher"]
    CountingHasher.checked, CountingHasher.while_checking, CountingHasher.seconds = [], None, 0.0
    yield CountingHasher
    CountingHasher.while_checking = None


def test_guesses_arriving_while_others_are_checked_are_refused_unchecked(staff, hasher):
    # Five wrong guesses are being checked at once (each arrives while the one before is hashed); then the right
    # password and ten more wrong guesses arrive.
    later = []

    def next_guess():
        if len(hasher.checked) < LIMIT:
            log_in(Client(), password="wrong", address=ATTACKER)
        elif len(hasher.checked) == LIMIT:
            hasher.while_checking = None
            later.append(log_in(Client(), address=DESK))
            later.extend(log_in(Client(), password="wrong", address=ATTACKER) for _ in range(10))

    hasher.while_checking = next_guess
    log_in(Client(), password="wrong", address=ATTACKER)

    assert len(hasher.checked) == LIMIT
    assert [response.status_code for response in later] == [429] * 11
    assert later[0].wsgi_request.user.is_anonymous


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_parallel_guesses_check_no_more_passwords_than_the_limit(staff, hasher):
    # Fifteen wrong guesses at once, each check lasting a while as a real hash does; the right password arrives
    # while the first ones are still being checked.
    hasher.seconds = 0.5
    guesses = 15
    barrier = threading.Barrier(guesses)
    statuses = []

    def guess():
        try:
            barrier.wait()
            statuses.append(log_in(Client(), password="wrong", address=ATTACKER).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=guess) for _ in range(guesses)]
    for thread in threads:
        thread.start()
    wait_for(lambda: len(hasher.checked) >= LIMIT, timeout=10)
    right = log_in(Client(), address=DESK)
    for thread in threads:
        thread.join()

    assert len(hasher.checked) == LIMIT
    assert right.status_code == 429
    assert right.wsgi_request.user.is_anonymous
    assert sorted(statuses) == [200] * LIMIT + [429] * (guesses - LIMIT)
    assert audit("admin.login.failed").count() == LIMIT


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_parallel_guesses_at_the_code_check_no_more_codes_than_the_limit(staff):
    # The password is known: twenty sessions past it guess the code at once; then the right code comes.
    clients = [Client() for _ in range(21)]
    for client in clients:
        assert log_in(client, address=ATTACKER).status_code == 302
    right = otp_code(otp_device(staff))
    wrong = [f"{(int(right) + 1 + index) % 1_000_000:06d}" for index in range(20)]
    barrier = threading.Barrier(len(wrong))
    statuses = []

    def guess(index):
        try:
            barrier.wait()
            statuses.append(enter_code(clients[index], wrong[index], address=ATTACKER).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=guess, args=(index,)) for index in range(len(wrong))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(statuses) == [200] * LIMIT + [429] * (len(wrong) - LIMIT)
    assert audit("admin.login.otp_failed").count() == LIMIT
    assert enter_code(clients[-1], right, address=ATTACKER).status_code == 429
    assert not signed_in(clients[-1])
