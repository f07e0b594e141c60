"""The pages of card capture a browser loads (vault/capture/pages.py, backoffice/demo/checkout.py): the headers that
let exactly one origin frame the card form, capture.js as a script merchants' pages load, and the demo checkout only
where demo pages are on. What the form does in a browser is tests/browser/test_capture.py's.

alice is a merchant whose shop runs at https://shop.example; the client is a shopper's browser, which holds no key.
"""

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from backoffice.demo.plans import DEMO_MERCHANT
from core.errors import NotAuthenticated
from merchants import services as merchant_services
from tests.conftest import VISA
from vault.capture import capture_session_create, capture_session_submit
from vault.models import CaptureSession

pytestmark = pytest.mark.pci("6.2.4")

SHOP = "https://shop.example"


def directives(response) -> dict[str, list[str]]:
    policy = response["Content-Security-Policy"]
    return {name: sources for name, *sources in (part.split() for part in policy.split(";") if part.strip())}


@pytest.fixture
def session(alice) -> CaptureSession:
    """alice's session for a card typed on her shop's checkout page."""
    return capture_session_create(merchant=alice, origin=SHOP)[0]


def form_page(client, session):
    return client.get(f"/capture/{session.public_id}")


# ------------------------------------------------------------------------------------------------------------
# The form page
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.pci("6.4.3")
def test_the_form_page_may_be_framed_by_the_sessions_origin_and_no_other(client, session):
    response = form_page(client, session)

    assert response.status_code == 200
    assert response["Content-Security-Policy"] == (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
        f"form-action 'self'; base-uri 'none'; frame-ancestors {SHOP}"
    )
    assert "X-Frame-Options" not in response  # it cannot name an origin: DENY would forbid alice's page too


def test_the_form_page_is_never_cached_and_sends_no_referer(client, session):
    response = form_page(client, session)

    assert response["Cache-Control"] == "no-store"
    assert response["Referrer-Policy"] == "no-referrer"


@pytest.mark.pci("6.4.3")
def test_the_form_page_holds_the_labelled_fields_and_no_inline_code(client, session):
    html = form_page(client, session).content.decode()

    for label in ("Card number", "Expiry date", "Name on card", "Save card"):
        assert label in html
    assert 'autocomplete="cc-number"' in html and 'inputmode="numeric"' in html
    assert 'autocomplete="cc-exp"' in html and 'autocomplete="cc-name"' in html
    # Every script a file of this origin, no style attribute or block: the policy would refuse them anyway.
    assert re.findall(r"<script[^>]*>", html) == ['<script src="/static/capture/frame.js" defer>']
    assert "<style" not in html and " style=" not in html
    assert "http://" not in html and "https://shop.example" in html  # the origin to answer, and nothing loaded


def test_the_form_page_knows_where_to_send_the_card_and_to_whom_to_answer(client, session):
    html = form_page(client, session).content.decode()

    assert f'data-origin="{SHOP}"' in html
    assert f'data-submit-url="/capture/{session.public_id}/card"' in html


def test_the_form_page_of_an_unknown_session_is_not_found_and_may_not_be_framed(client, session):
    response = client.get("/capture/cs_nosuchsession")

    assert response.status_code == 404
    assert directives(response)["frame-ancestors"] == ["'none'"]
    assert response["X-Frame-Options"] == "DENY"
    html = response.content.decode()
    assert "Card form not found" in html
    assert "Card number" not in html and "data-origin=" not in html.replace('data-origin=""', "")


def test_the_form_page_of_an_expired_session_says_so_without_a_form(client, session):
    CaptureSession.objects.filter(pk=session.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    response = form_page(client, session)

    assert response.status_code == 200
    assert directives(response)["frame-ancestors"] == [SHOP]  # shown in alice's page, where the shopper is
    html = response.content.decode()
    assert "This card form has expired" in html
    assert 'data-error-name="captureSessionExpired"' in html
    assert "Card number" not in html and "data-submit-url" not in html


def test_the_form_page_of_a_session_with_its_card_says_so_without_a_form(client, alice):
    session, secret = capture_session_create(merchant=alice, origin=SHOP)
    capture_session_submit(
        public_id=session.public_id,
        client_secret=secret,
        card_number=VISA,
        holder_name="Mrs Hudson",
        expiry_month=12,
        expiry_year=timezone.now().year + 3,
    )

    html = form_page(client, session).content.decode()

    assert 'data-error-name="captureSessionCompleted"' in html
    assert "A card was already saved with this form" in html
    assert "Card number" not in html


def test_the_form_page_of_a_locked_session_says_so_without_a_form(client, session):
    for _ in range(5):
        with pytest.raises(NotAuthenticated):
            capture_session_submit(
                public_id=session.public_id,
                client_secret="a guess",
                card_number=VISA,
                holder_name="Mrs Hudson",
                expiry_month=12,
                expiry_year=timezone.now().year + 3,
            )

    html = form_page(client, session).content.decode()

    assert 'data-error-name="captureSessionLocked"' in html
    assert "Card number" not in html


def test_the_form_page_takes_no_post(client, session):
    response = client.post(f"/capture/{session.public_id}", {"anything": "at all"})

    assert response.status_code == 405


# ------------------------------------------------------------------------------------------------------------
# capture.js
# ------------------------------------------------------------------------------------------------------------
def test_capture_js_is_a_script_for_any_page_cached_for_minutes(client):
    response = client.get("/capture.js")

    assert response.status_code == 200
    assert response["Content-Type"] == "text/javascript; charset=utf-8"
    assert response["Cache-Control"] == "public, max-age=300"
    assert response["Cross-Origin-Resource-Policy"] == "cross-origin"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert b"window.VaultCapture" in response.content


def test_capture_js_is_revalidated_by_its_etag(client):
    etag = client.get("/capture.js")["ETag"]

    response = client.get("/capture.js", HTTP_IF_NONE_MATCH=etag)

    assert response.status_code == 304
    assert response.content == b""


def test_capture_js_puts_the_client_secret_in_the_fragment_and_posts_nowhere(client):
    script = client.get("/capture.js").content.decode()

    assert "'#' +" in script and "encodeURIComponent(settings.clientSecret)" in script
    assert "postMessage" not in script  # it only listens, and only to the vault's origin
    assert "event.origin !== VAULT_ORIGIN" in script


# ------------------------------------------------------------------------------------------------------------
# The demo checkout (dora is the demo merchant `make run` makes)
# ------------------------------------------------------------------------------------------------------------
@pytest.fixture
def dora(db):
    return merchant_services.merchant_create(name=DEMO_MERCHANT)[0]


def test_the_demo_checkout_mounts_a_form_for_its_own_origin(client, dora):
    response = client.get("/demo/checkout/", HTTP_HOST="127.0.0.1:8000")

    assert response.status_code == 200
    session = CaptureSession.objects.get(merchant=dora)
    assert session.origin == "http://127.0.0.1:8000"
    html = response.content.decode()
    assert "Harbour Coffee Roasters" in html
    assert f'data-session="{session.public_id}"' in html
    assert '<script src="/capture.js" defer>' in html
    policy = directives(response)
    assert policy["frame-src"] == ["'self'"] and policy["script-src"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert response["Cache-Control"] == "no-store"  # it holds the session's client secret


def test_the_demo_checkout_says_how_to_make_the_demo_merchant_when_there_is_none(client, db):
    response = client.get("/demo/checkout/", HTTP_HOST="127.0.0.1:8000")

    assert response.status_code == 200
    assert "make run" in response.content.decode()
    assert not CaptureSession.objects.exists()


def test_the_demo_checkout_is_not_served_where_demo_pages_are_off(client, dora, settings):
    settings.DEMO_PAGES = False

    response = client.get("/demo/checkout/", HTTP_HOST="127.0.0.1:8000")

    assert response.status_code == 404
    assert response.json()["errorName"] == "endpointNotFound"
    assert not CaptureSession.objects.exists()
