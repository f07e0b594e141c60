"""Merchant API keys: ``Authorization: Bearer <key>``, looked up by hash, checked against the view's scope.

A key's last use (``ApiKey.last_used_at``, for staff deciding whether a key may be revoked) is recorded to the minute:
each server process remembers when it last wrote it for each key, and writes again only a minute later. Every other
call pays a dictionary look-up, no query; a minute's calls by one key cost one UPDATE per process at most, and
``api_key_used`` skips the row when another process wrote it within the minute.
"""

import time
from datetime import timedelta

from django.utils import timezone
from rest_framework import authentication, exceptions, permissions

from core.audit import Actor, audit_record
from core.models import AuditLog
from merchants.models import ApiKey
from merchants.services import api_key_used

LAST_USE_PRECISION = timedelta(minutes=1)
# This process's last write of each key's last use: key hash -> time.monotonic(). By hash rather than by id, which a
# rolled-back insert hands out again; the table's keys, revoked ones included, bound its size.
_last_use_written: dict[str, float] = {}


def client_origin(request) -> str:
    return request.META.get("REMOTE_ADDR", "")


def actor_for(request) -> Actor:
    """The audit actor behind an authenticated API request."""
    key: ApiKey = request.auth
    return Actor(f"api-key:{key.prefix}", merchant=key.merchant, origin=client_origin(request))


def attempt_actor(request) -> Actor:
    """The audit actor of an API attempt that may have failed before or at authentication: the key's when it was
    accepted, else "anonymous" from the client's address (for views that audit their refusals)."""
    try:
        key = request.auth
    except exceptions.APIException:  # the failure came before authentication, which refuses the key too
        key = None
    return actor_for(request) if isinstance(key, ApiKey) else Actor("anonymous", origin=client_origin(request))


def _recognisable_prefix(raw_key: str) -> str:
    """The prefix of a presented key worth auditing: only for keys in our format, whose prefix is no secret.

    Anything else (a password, a card number pasted by mistake) is not written down at all.
    """
    return raw_key[:11] if raw_key.startswith("sk_") and len(raw_key) >= 32 else ""


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """Authenticates the merchant; every failure is audited with the key's first characters only."""

    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None  # HasScope refuses (and audits) where the view needs a key
        scheme, _, raw_key = header.partition(" ")
        raw_key = raw_key.strip()
        if scheme.lower() != "bearer" or not raw_key:
            self._audit_failure(request, "malformed authorization header")
            raise exceptions.AuthenticationFailed()
        key = (
            ApiKey.objects.select_related("merchant")
            .filter(key_hash=ApiKey.hash(raw_key), revoked_at__isnull=True, merchant__is_active=True)
            .first()
        )
        if key is None:
            self._audit_failure(request, "unknown or revoked key", prefix=_recognisable_prefix(raw_key))
            raise exceptions.AuthenticationFailed()
        _note_use(key)
        return key.merchant, key

    def authenticate_header(self, request):
        return 'Bearer realm="api"'

    @staticmethod
    def _audit_failure(request, reason: str, prefix: str = "") -> None:
        audit_record(
            actor=Actor(f"api-key:{prefix}" if prefix else "anonymous", origin=client_origin(request)),
            action="auth.failed",
            result=AuditLog.FAILURE,
            object_type="request",
            object_id=f"{request.method} {request.path}"[:64],
            detail={"reason": reason},
        )


def _note_use(key: ApiKey) -> None:
    """Record the key's use when this process has not in the last minute (see the module's docstring)."""
    now = time.monotonic()
    written = _last_use_written.get(key.key_hash)
    if written is not None and now - written < LAST_USE_PRECISION.total_seconds():
        return
    _last_use_written[key.key_hash] = now
    api_key_used(key_id=key.pk, at=timezone.now(), precision=LAST_USE_PRECISION)


class HasScope(permissions.BasePermission):
    """The view names its scope in ``required_scope`` (or per method in ``required_scopes``)."""

    def has_permission(self, request, view):
        key = request.auth
        if not isinstance(key, ApiKey):
            ApiKeyAuthentication._audit_failure(request, "missing credentials")
            raise exceptions.NotAuthenticated()
        scope = getattr(view, "required_scopes", {}).get(request.method) or getattr(view, "required_scope", None)
        return scope is None or key.has_scope(scope)
