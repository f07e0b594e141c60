"""Signing in to the back office in a real browser: the password, then the second factor, set up at the first
sign-in.

nina is new back-office staff who has never signed in: her account has a password and no authenticator app yet.
"""

from base64 import b32decode

import pytest
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice
from playwright.sync_api import expect

from tests.browser.conftest import PASSWORD

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


@pytest.fixture
def nina(django_user_model):
    return django_user_model.objects.create_user("nina", password=PASSWORD, is_staff=True)


@pytest.mark.pci("8.4.2")
def test_new_staff_set_up_their_authenticator_app_at_the_first_sign_in(page, nina):
    page.goto("/admin/")
    page.locator("#id_username").fill("nina")
    page.locator("#id_password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()

    expect(page.locator("#enrolment-qr svg")).to_be_visible()
    key = page.locator("#enrolment-key").inner_text()  # what she types into her app, or scans
    app = TOTP(b32decode(key.replace(" ", "")))
    page.locator("#id_code").fill(f"{app.token():06d}")
    page.get_by_role("button", name="Confirm").click()

    expect(page.locator("#user-tools")).to_contain_text("nina", ignore_case=True)
    assert TOTPDevice.objects.get(user=nina).confirmed


@pytest.mark.pci("8.4.2")
def test_a_wrong_code_at_enrolment_is_refused_without_showing_the_key_again(page, nina):
    page.goto("/admin/")
    page.locator("#id_username").fill("nina")
    page.locator("#id_password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.locator("#id_code").fill("000000")
    page.get_by_role("button", name="Confirm").click()

    expect(page.locator(".errorlist")).to_contain_text("That code is not right")
    expect(page.locator("#enrolment-qr")).to_have_count(0)  # the key was shown once
