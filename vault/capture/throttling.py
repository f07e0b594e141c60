"""Rate limits of the shopper's browser (``POST /capture/{id}/card``), which holds no API key to count against.

Two limits, both at the rates of the session's merchant (``merchants.throttling``: its own, else the defaults), in
the same shared cache, with the same 429 ``tooManyRequests`` and ``Retry-After``:

- ``CaptureRateThrottle``: every submission to any of the merchant's sessions, at the merchant's general rate (the
  ``api`` limit), as if the merchant's browsers were one more API key of it: counted apart from its real keys, so
  that no shopper can spend the limit of the merchant's own servers;
- ``CaptureClientThrottle``: each client address, at the merchant's much tighter card-data rate: one client cannot
  spend the merchant's general limit either. The 5 failed submissions a session takes are per session; this is
  what holds back a client trying cards across many sessions.

The session is the one the request's path names, found by the view's authentication (``request.auth``: see
``vault.api.capture``); a submission to an unknown session counts against the client limit at the default card-data
rate. When the cache cannot be reached, submissions are served (a card goes in, none comes out) and the error is
logged, as for the general limit.
"""

from core.audit import Actor
from merchants.authentication import client_origin
from merchants.throttling import ApiRateThrottle, CardDataRateThrottle
from vault.models import CaptureSession


def session_of(request) -> CaptureSession | None:
    return request.auth if isinstance(request.auth, CaptureSession) else None


class CaptureRateThrottle(ApiRateThrottle):
    """The merchant's general limit, over all of its capture sessions."""

    def unchecked(self) -> bool:
        return True  # a card goes in, none comes out

    def allow_request(self, request, view):
        session = session_of(request)
        if session is None:
            return True  # no merchant to count against: the client limit counts it
        return self.counted(request, view, session=session, ident=f"capture:{session.merchant_id}")

    def counted(self, request, view, *, session: CaptureSession | None, ident: str) -> bool:
        merchant = session.merchant if session is not None else None
        return self.allowed(
            request,
            view,
            merchant=merchant,
            ident=ident,
            actor=Actor("anonymous", merchant=merchant, origin=client_origin(request)),
            audited=(session.audit_type, session.audit_id) if session is not None else ("request", request.path[:64]),
        )


class CaptureClientThrottle(CaptureRateThrottle):
    """Each client address, at the merchant's card-data rate."""

    scope = CardDataRateThrottle.scope
    merchant_rate = CardDataRateThrottle.merchant_rate

    def allow_request(self, request, view):
        session = session_of(request)
        merchant = "-" if session is None else session.merchant_id
        return self.counted(request, view, session=session, ident=f"capture:{merchant}:{client_origin(request)}")
