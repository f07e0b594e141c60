"""The demo checkout (``GET /demo/checkout/``): a small coffee shop's payment step that takes the card through browser
capture, so a newcomer sees the card form work after ``make run`` without writing a page of their own.

It does what a merchant's checkout does, in one place: its server side makes a capture session for the demo merchant
(the one ``make run`` creates and prints an API key for, so the token can then be looked up with that key), bound to
the origin this page is served from; its page loads ``/capture.js`` and mounts the vault's form, and shows the token
the form's ``vault.token`` message brings. The card never passes through this page.

Served only where ``DEMO_PAGES`` is on (the embedded run and the tests); elsewhere it answers like any unknown path.
"""

from django.conf import settings
from django.http import Http404
from django.shortcuts import render
from django.views.decorators.http import require_safe

from backoffice.demo.plans import DEMO_MERCHANT
from merchants.models import Merchant
from vault.capture import ValuesRefused, capture_session_create

# Everything from this origin, which is also the vault's in the embedded run: its script and capture.js, its styles,
# and the vault's frame. The page itself may not be framed.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "frame-src 'self'",
        "form-action 'self'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    ]
)

ORDER = [
    {"name": "Yirgacheffe, washed · 250 g whole bean", "quantity": 2, "price": "12.50", "total": "25.00"},
    {"name": "Harbour House Blend · 1 kg", "quantity": 1, "price": "34.00", "total": "34.00"},
    {"name": "Paper filters, size 02 · 100", "quantity": 1, "price": "4.20", "total": "4.20"},
]
SHIPPING = "3.95"
TOTAL = "67.15"


@require_safe
def checkout(request):
    if not settings.DEMO_PAGES:
        raise Http404
    context = {"order": ORDER, "shipping": SHIPPING, "total": TOTAL, "merchant_name": DEMO_MERCHANT}
    merchant = Merchant.objects.filter(name=DEMO_MERCHANT).first()
    if merchant is None:
        context["problem"] = (
            f"There is no “{DEMO_MERCHANT}” in this database yet: `make run` makes it (`manage.py setup_local`)."
        )
    else:
        # The origin the shopper's browser shows for this page: the one the vault's frame will let frame it.
        origin = f"{request.scheme}://{request.get_host()}"
        try:
            session, client_secret = capture_session_create(
                merchant=merchant, origin=origin, description="Demo checkout, Harbour Coffee Roasters"
            )
        except ValuesRefused as refused:  # an origin the vault refuses: plain http away from loopback
            reasons = "; ".join(broken.message for _, broken in refused.problems)
            context["problem"] = f"The vault refused a capture session for {origin}: {reasons}"
        else:
            context.update(session=session, client_secret=client_secret)
    response = render(request, "demo/checkout.html", context)
    response["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    # The page holds a session's client secret: neither kept by a cache nor shown again from history.
    response["Cache-Control"] = "no-store"
    return response
