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

import logging

from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

from core.audit import Actor, audit_record
from core.models import AuditLog
from merchants.authentication import client_origin
from merchants.throttling import CACHE_UNAVAILABLE, ApiRateThrottle, CardDataRateThrottle
from vault.models import CaptureSession

logger = logging.getLogger(__name__)


def session_of(request) -> CaptureSession | None:
    return request.auth if isinstance(request.auth, CaptureSession) else None


class CaptureRateThrottle(ApiRateThrottle):
    """The merchant's general limit, over all of its capture sessions."""

    def allow_request(self, request, view):
        session = session_of(request)
        if session is None:
            return True  # no merchant to count against: the client limit counts it
        return self.allowed(request, view, session=session, ident=f"capture:{session.merchant_id}")

    def allowed(self, request, view, *, session, ident: str) -> bool:
        """DRF's check of this call against ``ident``'s recent calls, at the rate of ``session``'s merchant; the first
        refusal in a window is audited."""
        merchant = session.merchant if session is not None else None
        default = api_settings.DEFAULT_THROTTLE_RATES[self.scope]
        self.rate = (getattr(merchant, self.merchant_rate) if merchant is not None else "") or default
        self.num_requests, self.duration = self.parse_rate(self.rate)
        self.ident = ident
        try:
            # DRF's own check (ApiRateThrottle's is for a call with an API key).
            if SimpleRateThrottle.allow_request(self, request, view):
                return True
        except CACHE_UNAVAILABLE:
            logger.exception("the %s rate limit of capture could not be checked: the cache is unavailable", self.scope)
            return True
        if self.cache.add(f"{self.key}_audited", True, self.duration):
            audit_record(
                actor=Actor("anonymous", merchant=merchant, origin=client_origin(request)),
                action="api.rate_limited",
                result=AuditLog.FAILURE,
                object_type=session.audit_type if session is not None else "request",
                object_id=session.audit_id if session is not None else request.path[:64],
                detail={"limit": self.scope, "rate": self.rate, "endpoint": request.resolver_match.url_name},
            )
        return False

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": self.ident}


class CaptureClientThrottle(CaptureRateThrottle):
    """Each client address, at the merchant's card-data rate."""

    scope = CardDataRateThrottle.scope
    merchant_rate = CardDataRateThrottle.merchant_rate

    def allow_request(self, request, view):
        session = session_of(request)
        merchant = "-" if session is None else session.merchant_id
        return self.allowed(request, view, session=session, ident=f"capture:{merchant}:{client_origin(request)}")
