"""Card capture in a real browser (vault/capture): a merchant's checkout page on one origin mounts the vault's card
form, served by the live server on another, and a shopper types a public test card into it.

The merchant's page is served by a loopback server of the test (tests/receiver.py) on http://127.0.0.1:<port>, the
vault by the live server on http://localhost:<port>: two origins, as a shop and its vault are. The page is what a
merchant writes: it loads capture.js from the vault, mounts the form with the session its server made through the
API, and keeps every message the vault's origin sends it (``window.received``).

alice is the merchant whose shop it is; mallory runs a page on yet another origin that tries to frame alice's form.
dora is the demo merchant of ``make run`` (``/demo/checkout/``).
"""

import json
import re
import urllib.error
import urllib.request
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from backoffice.demo.plans import DEMO_MERCHANT
from merchants import services as merchant_services
from tests.browser.conftest import screens
from tests.conftest import MASTERCARD, VISA, VISA_2
from tests.receiver import Receiver, Reply
from vault.models import CaptureSession, Token

pytestmark = [pytest.mark.django_db(transaction=True, serialized_rollback=True), pytest.mark.pci("6.2.4")]

EXPIRY = f"12/{(timezone.now().year + 3) % 100:02d}"


def spaced(number: str) -> list[str]:
    """The forms a card number takes on a page: as digits, in fours, and Amex's 4-6-5."""
    return [number, " ".join(re.findall(".{1,4}", number)), f"{number[:4]} {number[4:10]} {number[10:]}"]


# ------------------------------------------------------------------------------------------------------------
# The merchant: its server (the API over HTTP) and its page (a loopback server of its own)
# ------------------------------------------------------------------------------------------------------------
def call(live_server, key: str, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    """The merchant's server calling the vault's API over HTTP."""
    request = urllib.request.Request(
        f"{live_server.url}{path}",
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json", "Accept": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def checkout_page(vault: str, session: dict, *, forms: int = 1, secret: str | None = None) -> str:
    """A merchant's checkout page, as the guide shows it: capture.js from the vault, the form mounted ``forms``
    times (a second tab, as it were) with the session the merchant's server made."""
    boxes = "".join(f'<div id="card-{n}" class="card"></div>' for n in range(forms))
    mounts = "".join(
        f"VaultCapture.mount(document.getElementById('card-{n}'), "
        f"{{session: {json.dumps(session['id'])}, clientSecret: {json.dumps(secret or session['clientSecret'])}}});"
        for n in range(forms)
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Alice's shop: checkout</title></head>
<body><h1>Alice's shop</h1><p>Pay for your order</p>{boxes}
<script src="{vault}/capture.js"></script>
<script>
  window.received = [];
  window.addEventListener('message', function (event) {{
    if (event.origin !== {json.dumps(vault)}) {{ return; }}
    if (event.data && event.data.type !== 'vault.resize') {{ window.received.push(event.data); }}
  }});
  {mounts}
</script></body></html>"""


class Shop(Receiver):
    """A merchant's web server on loopback: every path answers the page it was given."""

    def __init__(self):
        super().__init__(path="/checkout")

    def serve(self, html: str) -> str:
        self.always(Reply(200, headers={"Content-Type": "text/html; charset=utf-8"}, body=html))
        return self.url

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
def shop():
    """alice's web server, on an origin of its own."""
    with Shop() as server:
        yield server


@pytest.fixture
def open_session(live_server, alice, shop):
    """alice's server opening a capture session for her checkout page's origin, through the API."""

    def open_(origin: str | None = None) -> dict:
        status, body = call(live_server, alice.raw_key, "POST", "/capture-sessions", {"origin": origin or shop.origin})
        assert status == 201, body
        return body

    return open_


@pytest.fixture
def requests(page: Page) -> list:
    """Every request the browser makes, from any frame of the page."""
    seen = []
    page.on("request", lambda request: seen.append(request))
    return seen


def card_form(page: Page, index: int = 0):
    return page.frame_locator("iframe[title='Card details']").nth(index)


def fill_card(form, *, number: str = VISA, expiry: str = EXPIRY, name: str = "Mrs Hudson") -> None:
    """As a shopper types: key by key, so the form spaces the number and puts in the expiry's slash."""
    form.get_by_label("Card number").press_sequentially(number)
    form.get_by_label("Expiry date").press_sequentially(expiry.replace("/", ""))
    form.get_by_label("Name on card").press_sequentially(name)


def received(page: Page, count: int = 1) -> list[dict]:
    page.wait_for_function(f"window.received.length >= {count}")
    return page.evaluate("window.received")


# ------------------------------------------------------------------------------------------------------------
# A card saved
# ------------------------------------------------------------------------------------------------------------
def test_a_shopper_saves_a_card_and_the_page_receives_only_the_token(
    page, live_server, alice, shop, open_session, requests
):
    session = open_session()
    page.goto(shop.serve(checkout_page(live_server.url, session)))
    form = card_form(page)

    fill_card(form)
    expect(form.get_by_label("Card number")).to_have_value("4444 3333 2222 1111")
    expect(form.locator("#card-brand")).to_have_text("Visa")
    expect(form.get_by_label("Expiry date")).to_have_value(EXPIRY)
    form.get_by_role("button", name="Save card").click()

    expect(form.locator("#done")).to_have_text("Card saved · Visa •••• 1111")
    expect(form.get_by_label("Card number")).to_have_count(0)  # gone from the frame's DOM too
    [message] = received(page)
    assert message["type"] == "vault.token" and message["outcome"] == "created"
    assert message["paymentInstrument"]["cardNumber"] == "4444********1111"
    status, token = call(live_server, alice.raw_key, "GET", f"/tokens/{message['href'].rsplit('/', 1)[1]}")
    assert status == 200 and token["tokenId"] == message["tokenId"]

    # The card went from the vault's frame to the vault: nothing of it in the merchant's page, its scripts or its
    # requests, and the client secret never in a URL a server saw.
    main = [request for request in requests if request.frame == page.main_frame]
    assert {request.url.split("/")[2] for request in main} == {shop.origin[7:], live_server.url[7:]}
    texts = [page.content(), *page.evaluate("[...document.scripts].map((s) => s.textContent)")]
    texts += [f"{request.url} {request.post_data or ''}" for request in main]
    texts.append(urllib.request.urlopen(f"{live_server.url}/capture.js", timeout=10).read().decode())
    for text in texts:
        for form_of_it in spaced(VISA):
            assert form_of_it not in text
    [sent] = [request for request in requests if request.url.endswith("/card")]
    assert sent.frame != page.main_frame and sent.frame.url.startswith(f"{live_server.url}/capture/")
    assert "#" not in sent.frame.url  # the secret left the frame's address once read
    assert not [request.url for request in requests if session["clientSecret"] in request.url]


def test_a_second_card_in_the_same_session_is_refused_in_the_frame(page, live_server, alice, shop, open_session):
    page.goto(shop.serve(checkout_page(live_server.url, open_session(), forms=2)))
    first, second = card_form(page, 0), card_form(page, 1)
    fill_card(first)
    fill_card(second, number=MASTERCARD, name="Mr Hudson")

    first.get_by_role("button", name="Save card").click()
    expect(first.locator("#done")).to_contain_text("Card saved")
    second.get_by_role("button", name="Save card").click()

    expect(second.locator("#done")).to_contain_text("has its card already")
    token, error = received(page, 2)
    assert token["type"] == "vault.token"
    assert error["type"] == "vault.error" and error["errorName"] == "captureSessionCompleted"
    assert Token.objects.count() == 1


def test_an_expired_session_shows_its_error_in_the_frame(page, live_server, shop, open_session):
    session = open_session()
    CaptureSession.objects.filter(public_id=session["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))

    page.goto(shop.serve(checkout_page(live_server.url, session)))

    form = card_form(page)
    expect(form.get_by_role("alert")).to_contain_text("This card form has expired")
    expect(form.get_by_label("Card number")).to_have_count(0)
    [message] = received(page)
    assert message["type"] == "vault.error" and message["errorName"] == "captureSessionExpired"


def test_a_wrong_client_secret_shows_an_error_in_the_frame_and_saves_nothing(page, live_server, shop, open_session):
    page.goto(shop.serve(checkout_page(live_server.url, open_session(), secret="not-the-secret")))
    form = card_form(page)
    fill_card(form)

    form.get_by_role("button", name="Save card").click()

    expect(form.locator("#done")).to_contain_text("The client secret is wrong")
    expect(form.get_by_label("Card number")).to_have_count(0)
    [message] = received(page)
    assert message["type"] == "vault.error" and message["errorName"] == "accessDenied"
    assert not Token.objects.exists()


@pytest.mark.pci("6.4.3")
def test_a_page_on_another_origin_cannot_frame_the_form(page, live_server, shop, open_session):
    session = open_session()  # for alice's page
    refusals = []
    page.on("console", lambda message: refusals.append(message.text) if "frame-ancestors" in message.text else None)

    with Shop() as mallory:  # another port: another origin
        page.goto(mallory.serve(checkout_page(live_server.url, session)))
        for _ in range(100):  # the frame's navigation, refused by the browser, which says so in the console
            if refusals:
                break
            page.wait_for_timeout(100)

        assert card_form(page).get_by_label("Card number").count() == 0
        [frame] = [frame for frame in page.frames if frame != page.main_frame]
        assert not frame.url.startswith(live_server.url)  # Chromium shows its own error page instead
        assert refusals and f"frame-ancestors {shop.origin}" in refusals[0]
        assert page.evaluate("window.received") == []


# ------------------------------------------------------------------------------------------------------------
# Checked in the frame before anything is sent
# ------------------------------------------------------------------------------------------------------------
def test_the_form_shows_what_is_wrong_before_sending_anything(page, live_server, shop, open_session, requests):
    page.goto(shop.serve(checkout_page(live_server.url, open_session())))
    form = card_form(page)
    number = form.get_by_label("Card number")
    expiry = form.get_by_label("Expiry date")
    name = form.get_by_label("Name on card")

    number.press_sequentially(VISA[:-1] + "2")  # one digit off: the Luhn check fails
    expiry.press_sequentially("0120")
    form.get_by_role("button", name="Save card").click()

    expect(form.locator("#card-number-error")).to_have_text("This card number is not valid")
    expect(form.locator("#card-expiry-error")).to_have_text("The expiry date is in the past")
    expect(form.locator("#card-name-error")).to_have_text("Enter the name on the card")
    for field, error in ((number, "card-number-error"), (expiry, "card-expiry-error"), (name, "card-name-error")):
        expect(field).to_have_attribute("aria-invalid", "true")
        expect(field).to_have_attribute("aria-describedby", re.compile(rf"\b{error}\b"))
    expect(form.locator("#announce")).to_contain_text("Card number: This card number is not valid")
    expect(number).to_be_focused()

    number.fill("")
    number.press_sequentially(VISA[:8])
    expiry.fill("")
    expiry.press_sequentially("1")
    form.get_by_role("button", name="Save card").click()

    expect(form.locator("#card-number-error")).to_have_text("The card number is incomplete")
    expect(form.locator("#card-expiry-error")).to_contain_text("The expiry date is incomplete")
    assert not [request for request in requests if request.url.endswith("/card")]
    assert page.evaluate("window.received") == []


def test_the_form_spaces_amex_numbers_and_names_the_brands_as_typed(page, live_server, shop, open_session):
    page.goto(shop.serve(checkout_page(live_server.url, open_session())))
    form = card_form(page)
    number = form.get_by_label("Card number")

    for typed, shown, brand in (
        ("37828224631000599", "3782 822463 10005", "Amex"),  # two digits more than Amex's 15: not taken
        ("555555555555444499", "5555 5555 5555 4444", "Mastercard"),  # nor more than Mastercard's 16
        ("6011111111111117", "6011 1111 1111 1117", "Discover"),
        ("4111", "4111", "Visa"),
    ):
        number.fill("")
        number.press_sequentially(typed)
        expect(number).to_have_value(shown)
        expect(form.locator("#card-brand")).to_have_text(brand)


# ------------------------------------------------------------------------------------------------------------
# On a phone, by keyboard
# ------------------------------------------------------------------------------------------------------------
def test_a_shopper_on_a_phone_saves_a_card_with_the_keyboard_alone(page, live_server, shop, open_session):
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(shop.serve(checkout_page(live_server.url, open_session())))
    form = card_form(page)

    form.get_by_label("Card number").click()
    page.keyboard.type(VISA_2)
    page.keyboard.press("Tab")
    page.keyboard.type(EXPIRY.replace("/", ""))
    page.keyboard.press("Tab")
    page.keyboard.type("Mrs Hudson")
    page.keyboard.press("Enter")

    expect(form.locator("#done")).to_have_text("Card saved · Visa •••• 1111")
    frame_box = page.locator("iframe").bounding_box()
    assert frame_box["x"] >= 0 and frame_box["x"] + frame_box["width"] <= 390
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing wider than the phone
    assert received(page)[0]["type"] == "vault.token"


# ------------------------------------------------------------------------------------------------------------
# The demo checkout of `make run`
# ------------------------------------------------------------------------------------------------------------
@pytest.fixture
def dora(transactional_db):
    """The demo merchant `make run` makes (manage.py setup_local), with its API key."""
    merchant, key = merchant_services.merchant_create(name=DEMO_MERCHANT)
    merchant.raw_key = key
    return merchant


def test_the_demo_checkout_takes_a_card_and_shows_its_token(page, live_server, dora, requests):
    page.goto("/demo/checkout/")
    form = card_form(page)
    expect(page.get_by_role("heading", name="Payment")).to_be_visible()

    # The README's pictures (docs/screenshots/capture-*.png, copied from the run's output folder): the form half
    # filled in, the number still being typed, on a desktop and a phone.
    form.get_by_label("Name on card").press_sequentially("Mrs Hudson")
    form.get_by_label("Expiry date").press_sequentially(EXPIRY.replace("/", ""))
    form.get_by_label("Card number").press_sequentially(MASTERCARD[:10])
    expect(form.locator("#card-brand")).to_have_text("Mastercard")
    screens(page, "capture")

    form.get_by_label("Card number").press("End")
    form.get_by_label("Card number").press_sequentially(MASTERCARD[10:])
    form.get_by_role("button", name="Save card").click()

    expect(form.locator("#done")).to_have_text("Card saved · Mastercard •••• 4444")
    token_id = page.locator("#token-id").inner_text()
    session = CaptureSession.objects.get(merchant=dora)
    assert session.token.token_id == token_id and session.origin == live_server.url
    status, body = call(live_server, dora.raw_key, "GET", f"/capture-sessions/{session.public_id}")
    assert status == 200 and body["tokenId"] == token_id and body["outcome"] == "created"
    page.get_by_role("button", name="Pay £67.15").click()
    expect(page.locator("#result")).to_contain_text("would now charge token")
    main = [request for request in requests if request.frame == page.main_frame]
    for text in [page.content(), *(f"{request.url} {request.post_data or ''}" for request in main)]:
        for form_of_it in spaced(MASTERCARD):
            assert form_of_it not in text
