"""The browser's side of card capture: ``/capture.js``, which a merchant's page loads, and ``/capture/<id>``, the form
page it frames (the package's docstring says why a frame).

The form page is the one page of the vault meant to be framed, and only by the origin its session was made for: its
own Content-Security-Policy says ``frame-ancestors <origin>`` (``core.middleware`` leaves a policy a view set alone)
and it is exempt from ``X-Frame-Options: DENY``, which cannot name an origin. Everything else in that policy is
``'self'`` or nothing: the form's script and style are static files of this app, no inline code, no other host.
It is never cached (it is the session's current state) and sends no Referer on (``no-referrer``).

The client secret never reaches these views: capture.js puts it in the frame URL's fragment, which the browser keeps
to itself, and the page's script (``frame.js``) reads it from there.
"""

from hashlib import sha256
from pathlib import Path

from django.http import HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.clickjacking import xframe_options_exempt
from django.views.decorators.http import etag, require_safe

from vault.capture.selectors import capture_session_get

# capture.js as written (vault/static/capture/capture.js): read once, served from here at a stable address, which a
# merchant's page names. Short-lived in caches, so a fix reaches every shop within minutes; revalidated by its hash.
SCRIPT = (Path(__file__).resolve().parent.parent / "static" / "capture" / "capture.js").read_bytes()
SCRIPT_ETAG = f'"{sha256(SCRIPT).hexdigest()[:32]}"'
SCRIPT_MAX_AGE = 300


def frame_policy(ancestors: str) -> str:
    """The form page's Content-Security-Policy, framed by ``ancestors`` (an origin, or ``'none'``)."""
    return "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "connect-src 'self'",
            "img-src 'self' data:",
            "form-action 'self'",
            "base-uri 'none'",
            f"frame-ancestors {ancestors}",
        ]
    )


# What the page says of a session that takes no card (``CaptureSession.status``), to the shopper; the errorName is
# the one the card's submission would answer, and is what the page tells its parent.
CLOSED = {
    "expired": (
        "captureSessionExpired",
        "This card form has expired",
        "A card form is open for a few minutes only. Go back to the shop's checkout to start again.",
    ),
    "completed": (
        "captureSessionCompleted",
        "A card was already saved with this form",
        "Each form saves one card. Go back to the shop's checkout to add another.",
    ),
    "locked": (
        "captureSessionLocked",
        "This card form is locked",
        "It had too many failed attempts. Go back to the shop's checkout to start again.",
    ),
}
NOT_FOUND = ("resourceNotFound", "Card form not found", "This card form does not exist. Go back to the shop.")


@require_safe
@etag(lambda request: SCRIPT_ETAG)
def capture_script(request):
    response = HttpResponse(SCRIPT, content_type="text/javascript; charset=utf-8")
    response["Cache-Control"] = f"public, max-age={SCRIPT_MAX_AGE}"
    # Loaded by pages of other origins, which may ask that whatever they embed says it may be (COEP).
    response["Cross-Origin-Resource-Policy"] = "cross-origin"
    return response


@require_safe
@xframe_options_exempt
def capture_frame(request, public_id: str):
    session = capture_session_get(public_id=public_id)
    if session is None:
        # No origin to trust: the page may not be framed by anyone.
        response = _page(request, problem=NOT_FOUND, status=404)
        response["Content-Security-Policy"] = frame_policy("'none'")
        response["X-Frame-Options"] = "DENY"
        return response
    status = session.status()
    response = _page(
        request,
        origin=session.origin,
        problem=CLOSED.get(status),
        submit_url=reverse("capture-card", kwargs={"public_id": session.public_id}) if status == "open" else None,
    )
    response["Content-Security-Policy"] = frame_policy(session.origin)
    return response


def _page(request, *, problem=None, origin: str = "", submit_url: str | None = None, status: int = 200):
    context = {"origin": origin, "submit_url": submit_url}
    if problem:
        context["problem"] = dict(zip(("name", "title", "message"), problem, strict=True))
    response = render(request, "capture/frame.html", context, status=status)
    response["Cache-Control"] = "no-store"
    response["Referrer-Policy"] = "no-referrer"
    return response
