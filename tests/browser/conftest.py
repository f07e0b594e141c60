"""The admin in a real browser: Debian's headless Chromium, driven by Playwright's sync API, against the admin
served by pytest-django's live server.

Playwright cannot download its own browser on machines without internet, so it is pointed at Debian's
``/usr/bin/chromium`` (``make test`` installs the package when it is absent; ``$CHROMIUM`` names another binary).
One browser for the tests of this folder, a fresh context (cookies, storage) for each test. Every test's final screen
is saved under ``$TEST_OUTPUT_DIR`` (``test-results/browser`` by default) as ``<test>-<database>.png``, so the
SQLite and PostgreSQL passes keep one each; a failed test's ends in ``-failed``.

The tests are transactional, because the live server's threads and the Celery worker read what the test committed,
with serialized rollback: the flush after each transactional test wipes the groups and issuers the migrations made,
and the serialized copy brings them back, so the users below are in the groups exactly as the migrations make them.

While the browser runs, Playwright's sync API keeps an asyncio loop running in the tests' thread. Django then
refuses ORM calls unless ``DJANGO_ALLOW_ASYNC_UNSAFE`` is set, and keeps its connections per async context rather
than per thread: the tests get connection objects of their own, which the ``browser`` fixture hands the serialized
copy of the database. The browser lives only as long as this folder's tests, so nothing of this reaches the others.

bea is back-office staff (the ``back-office`` group, vault 0002); olive is an operator (the ``operators`` group,
notifications 0002 and networks 0003). Both have an authenticator app (a TOTP device) and sign in through the admin's
forms, as a person does: the password, then the code their app shows.
"""

import os
import re
import time
from pathlib import Path

import pytest
from django.contrib.auth.models import Group
from django.db import connection, connections
from playwright.sync_api import Page, expect, sync_playwright

from tests.conftest import ROOT, otp_code, otp_device, start_celery_worker, stop_celery_worker
from tests.receiver import Receiver, Reply

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# As root Chromium needs --no-sandbox; the machines' closed network refuses its background connections (updates,
# sync, safe browsing), which would only slow every start. Playwright gives each launch a fresh --user-data-dir.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]
PASSWORD = "correct horse battery staple"
ACTION_TIMEOUT_MS = 5_000
NAVIGATION_TIMEOUT_MS = 10_000
# A full-page screen of a long page (the API docs) is painted whole: under a loaded CI machine it took over 5 s.
SCREENSHOT_TIMEOUT_MS = 30_000

_reports = pytest.StashKey[dict]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    # Keeps each phase's report on the test, so the page fixture knows at teardown whether the test failed.
    report = yield
    item.stash.setdefault(_reports, {})[report.when] = report
    return report


def output_dir() -> Path:
    path = Path(os.environ.get("TEST_OUTPUT_DIR") or "test-results/browser")
    return path if path.is_absolute() else ROOT / path


# ------------------------------------------------------------------------------------------------------------
# The browser and one page per test
# ------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="package")
def browser(django_db_setup, django_db_blocker):
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"{CHROMIUM} not found: install Debian's chromium package (`make test` does it as root) "
            "or set CHROMIUM to a Chromium binary"
        )
    with django_db_blocker.unblock():
        serialized = {
            alias: connections[alias]._test_serialized_contents
            for alias in connections
            if hasattr(connections[alias], "_test_serialized_contents")
        }
    with pytest.MonkeyPatch.context() as patch:
        # The test code is plain synchronous code, whatever loop Playwright keeps running beside it.
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as playwright:
            # From here on the connections are new objects (see the module's docstring): serialized rollback finds
            # the copy of the migrated database on them.
            for alias, contents in serialized.items():
                connections[alias]._test_serialized_contents = contents
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
            yield browser
            browser.close()
            connections.close_all()  # this context's own, before the thread's connections come back


@pytest.fixture
def page(browser, live_server, request) -> Page:
    """A page in a fresh browser context, on the live server; its final screen is saved when the test ends."""
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    context.set_default_navigation_timeout(NAVIGATION_TIMEOUT_MS)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(f"{page.url}: {error}"))
    yield page
    reports = request.node.stash.get(_reports, {})
    failed = any(report.failed for report in reports.values())
    name = re.sub(r"[^\w.-]+", "-", request.node.name).strip("-")
    stem = f"{name}-{connection.vendor}"
    shot, other = output_dir() / f"{stem}.png", output_dir() / f"{stem}-failed.png"
    if failed:
        shot, other = other, shot
    shot.parent.mkdir(parents=True, exist_ok=True)
    other.unlink(missing_ok=True)  # an earlier run's screen of the other outcome would mislead
    try:
        page.screenshot(path=shot, full_page=True, timeout=SCREENSHOT_TIMEOUT_MS)
    finally:
        context.close()
    # An admin page whose script throws is broken for its users, whatever the assertions looked at.
    assert not errors, f"JavaScript errors: {errors}"


# ------------------------------------------------------------------------------------------------------------
# Actors
# ------------------------------------------------------------------------------------------------------------
def staff_in(django_user_model, username: str, group: str):
    """A staff user in ``group`` as its migration made it, and nothing else, with an authenticator app."""
    migrated = Group.objects.filter(name=group).first()
    assert migrated is not None, f"no {group!r} group: a migration makes it"
    user = django_user_model.objects.create_user(username, password=PASSWORD, is_staff=True)
    user.groups.add(migrated)
    otp_device(user)
    return user


@pytest.fixture
def bea(django_user_model):
    """Back-office staff: the vault (tokens, conflicts, ...) and the network tokens read-mostly, no webhooks."""
    return staff_in(django_user_model, "bea", "back-office")


@pytest.fixture
def olive(django_user_model):
    """An operator: webhook endpoints, events, deliveries and the network tokens' lifecycle, nothing of the vault."""
    return staff_in(django_user_model, "olive", "operators")


@pytest.fixture
def receiver():
    """The merchant's webhook receiver, a real HTTP server on loopback; it answers 500 until told otherwise."""
    with Receiver(Reply(500, body="down for maintenance")) as server:
        yield server


@pytest.fixture
def worker():
    """Starts a real Celery worker on the real broker when called; it is stopped when the test ends."""
    started = []

    def start():
        started.append(start_celery_worker())
        return started[-1]

    yield start
    for process in started:
        stop_celery_worker(process)


# ------------------------------------------------------------------------------------------------------------
# What a person does in the admin
# ------------------------------------------------------------------------------------------------------------
def log_in(page: Page, user, *, next: str = "/admin/") -> None:
    """Through the admin's sign-in forms, as a person would: the password, then the code their authenticator app
    shows. The page it lands on is ``next``."""
    page.goto(next)
    expect(page).to_have_url(re.compile(r"/admin/login/"))
    page.locator("#id_username").fill(user.username)
    page.locator("#id_password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/admin/login/code/"))
    page.locator("#id_code").fill(otp_code(otp_device(user)))
    page.get_by_role("button", name="Verify").click()
    expect(page.locator("#user-tools")).to_contain_text(user.username, ignore_case=True)


def open_list(page: Page, app_label: str, model: str) -> None:
    """From the admin index: follow the model's link (the app's own link may bear the same name)."""
    page.locator(f"#{app_label}-{model} a").first.click()


def result_row(page: Page, text: str):
    """The changelist row that mentions ``text``."""
    return page.locator("#result_list tbody tr").filter(has_text=text)


def run_action(page: Page, action: str, *rows: str) -> None:
    """On a changelist: tick the rows that mention each of ``rows``, choose ``action`` and press Go."""
    for text in rows:
        result_row(page, text).locator("input.action-select").check()
    page.locator("select[name=action]").select_option(action)
    page.locator("button[name=index]").click()


def confirm(page: Page) -> None:
    """On an action's intermediate page: press its submit button (the form that posts ``post=yes``)."""
    page.locator("form:has(input[name=post][value=yes]) [type=submit]").click()


def success_message(page: Page):
    return page.locator("ul.messagelist li.success")


def field(page: Page, name: str):
    """A read-only field's value on a change page."""
    return page.locator(f".field-{name} .readonly")


def reload_until(page: Page, locator, text: str, *, timeout: float = 15.0) -> None:
    """Reload the page, as a person waiting for a worker would, until ``locator`` reads ``text``."""
    deadline = time.monotonic() + timeout
    while True:
        if locator.count() and locator.inner_text().strip() == text:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"{locator} still reads {locator.inner_text().strip()!r}, not {text!r}, after {timeout}s")
        page.wait_for_timeout(300)
        page.reload()


# Where the README's tour is taken: a desktop and a phone.
SCREENS = {"1440": {"width": 1440, "height": 900}, "390": {"width": 390, "height": 844}}


def screens(page: Page, name: str) -> list[Path]:
    """The page as it is now at 1440×900 and at 390×844, saved as ``<name>-1440.png`` and ``<name>-390.png`` under
    the run's output folder (the tour's pictures come from there); the viewport is put back afterwards."""
    saved, viewport = [], page.viewport_size
    for width, size in SCREENS.items():
        page.set_viewport_size(size)
        path = output_dir() / f"{name}-{width}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=path, full_page=True, timeout=SCREENSHOT_TIMEOUT_MS)
        saved.append(path)
    page.set_viewport_size(viewport)
    return saved
