"""Rate limits per API key, shared by every server process: DRF's SimpleRateThrottle over Django's cache
(settings.CACHES: Redis in production, a table of the database otherwise), at the rates of the key's merchant.

Two limits, each a throttle scope with its default in ``REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]``:

- ``api``: every call of a key, whatever its answer (``core.api.ApiView`` checks the limits before the key's scopes);
- ``card-data``: the calls that release card data, on views whose ``releases_card_data`` is true (detokenize, a
  cryptogram carrying the token number); they count against both limits.

A merchant's own rates (``Merchant.api_rate_limit`` and ``card_data_rate_limit``, set by staff) replace the defaults
from its next call on. Over a limit the call answers 429 ``tooManyRequests`` with ``Retry-After`` (core.errors), and
the key's first refusal by that limit in a window writes an ``api.rate_limited`` audit row: a client hammering a
limit leaves one row per window, not one per call.

When the cache cannot be reached (Redis down), the API keeps serving as it does while the broker is down, but no
card data is released: the general limit lets calls through, the card-data limit answers 503 ``serviceUnavailable``;
both log the error.

DRF reads a key's recent calls and writes them back: calls of one key that arrive at the same moment may read the
same list, so a burst of parallel calls may get a few calls past the limit (DRF's documentation says as much).
Measured: 100 detokenize calls from 16 threads on 4 gunicorn workers, limit 10 a minute, served 10 on SQLite and on
Redis, and 11 on PostgreSQL with the database cache.
"""

import logging

from django.db import DatabaseError
from redis import RedisError
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

from core.audit import audit_record
from core.errors import ServiceUnavailable
from core.models import AuditLog
from merchants.authentication import actor_for
from merchants.models import ApiKey

logger = logging.getLogger(__name__)

# What the cache raises when it cannot be reached: the database's errors, or Redis'.
CACHE_UNAVAILABLE = (DatabaseError, RedisError)


class ApiRateThrottle(SimpleRateThrottle):
    """The general limit: every call of an API key. Calls without a key are not counted (they are refused)."""

    scope = "api"
    merchant_rate = "api_rate_limit"  # the Merchant field that replaces the default

    def __init__(self):
        # DRF's reads one rate here, for every call; ours is the merchant's, read in allow_request.
        pass

    def counts(self, view) -> bool:
        return True

    def unchecked(self) -> bool:
        """What a call gets when its limit cannot be checked: served."""
        return True

    def allow_request(self, request, view):
        key = request.auth
        if not isinstance(key, ApiKey) or not self.counts(view):
            return True
        actor = actor_for(request)
        return self.allowed(
            request, view, merchant=key.merchant, ident=key.pk, actor=actor, audited=("api_key", key.prefix)
        )

    def allowed(self, request, view, *, merchant, ident, actor, audited: tuple[str, str]) -> bool:
        """DRF's check of this call against the recent calls of ``ident``, at ``merchant``'s rate (the default when
        it has none, or when there is no merchant); the first refusal in a window is audited by ``actor`` on the
        object ``audited`` (type, id)."""
        own = getattr(merchant, self.merchant_rate) if merchant is not None else ""
        self.rate = own or api_settings.DEFAULT_THROTTLE_RATES[self.scope]
        self.num_requests, self.duration = self.parse_rate(self.rate)
        self.ident = ident
        try:
            if super().allow_request(request, view):
                return True
        except CACHE_UNAVAILABLE:
            logger.exception("the %s rate limit could not be checked: the cache is unavailable", self.scope)
            return self.unchecked()
        if self.cache.add(f"{self.key}_audited", True, self.duration):
            audit_record(
                actor=actor,
                action="api.rate_limited",
                result=AuditLog.FAILURE,
                object_type=audited[0],
                object_id=audited[1],
                detail={"limit": self.scope, "rate": self.rate, "endpoint": request.resolver_match.url_name},
            )
        return False

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": self.ident}

    def wait(self):
        # Until the call that filled the limit leaves the window (the newest call comes first). DRF's says nothing
        # when the key is further over, as after staff lowered its limit: a 429 always says when to retry.
        return self.duration - (self.now - self.history[self.num_requests - 1])


class CardDataRateThrottle(ApiRateThrottle):
    """The much tighter limit of the calls that release card data: views say so with ``releases_card_data``."""

    scope = "card-data"
    merchant_rate = "card_data_rate_limit"

    def counts(self, view) -> bool:
        return getattr(view, "releases_card_data", False)

    def unchecked(self) -> bool:
        """Refused: no card data without its limit checked; the client retries."""
        raise ServiceUnavailable()


def default_rates() -> dict[str, str]:
    """The rate each of the merchant's limit fields falls back to when it is empty, by field name."""
    return {
        throttle.merchant_rate: api_settings.DEFAULT_THROTTLE_RATES[throttle.scope]
        for throttle in (ApiRateThrottle, CardDataRateThrottle)
    }


def rate_limits_in_schema(result, generator, request, public):
    """SPECTACULAR_SETTINGS' POSTPROCESSING_HOOKS: every operation that takes an API key may answer 429, in the
    error shape of its 401, with ``Retry-After``."""
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            if not isinstance(operation, dict) or {"ApiKey": []} not in operation.get("security", []):
                continue
            operation["responses"]["429"] = {
                "content": operation["responses"]["401"]["content"],
                "description": "tooManyRequests: the key is over its rate limit, or over the tighter one of the calls "
                "that release card data",
                "headers": {
                    "Retry-After": {
                        "schema": {"type": "integer", "minimum": 1},
                        "description": "Seconds to wait before the key's next call may be served",
                    }
                },
            }
    return result
