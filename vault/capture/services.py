"""Capture sessions: opened by a merchant's server for one page origin, completed by the card the shopper's browser
sends (see the package's docstring for what a session promises).

Each service is keyword-only and says in its docstring what it writes and raises.
"""

import hmac
import re
import secrets
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.audit import Actor, audit_record
from core.errors import (
    CaptureSessionCompleted,
    CaptureSessionExpired,
    CaptureSessionLocked,
    NotAuthenticated,
    NotFound,
)
from core.models import AuditLog
from merchants.models import Merchant
from vault import rules
from vault.models import CaptureSession
from vault.services import Card, TokenizeResult, card_tokenize

# A host as a browser writes it in an origin: DNS labels (an IPv4 address is four of them), lower case.
HOST = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*")
HOST_MAX_LENGTH = 253
# The hosts an http origin may have, where loopback is allowed: a page on the developer's own machine.
LOOPBACK_HOSTS = ("localhost", "127.0.0.1")
DEFAULT_PORTS = {"https": 443, "http": 80}


class ValuesRefused(ValueError):
    """Values the rules refuse: ``problems`` is a list of (the service's keyword, ``rules.RuleBroken``), the first
    problem of each. Never holds a value: one may be a card number."""

    def __init__(self, problems: list[tuple[str, rules.RuleBroken]]):
        self.problems = problems
        super().__init__(", ".join(f"{name}: {broken.name}" for name, broken in problems))


def _checked(problems: list, name: str, rule, *args):
    """``rule(*args)``, or None with its refusal added to ``problems`` under ``name``."""
    try:
        return rule(*args)
    except rules.RuleBroken as broken:
        problems.append((name, broken))
        return None


# ------------------------------------------------------------------------------------------------------------
# Opening a session (the merchant's server)
# ------------------------------------------------------------------------------------------------------------
def capture_origin_normalise(origin: str) -> str:
    """``origin`` as a browser writes a page's origin (``scheme://host[:port]``, lower case, no default port), the
    only form a ``frame-ancestors`` source and a ``postMessage`` target compare equal to. Raises
    ``rules.RuleBroken`` (``fieldHasInvalidValue``) unless it is https, or http to ``localhost`` or ``127.0.0.1``
    where loopback is allowed (``WEBHOOK_ALLOW_LOOPBACK``), with nothing but a scheme, a host name or IPv4 address
    and a port: no path (not even ``/``), query, fragment or user."""

    def refused(message: str) -> rules.RuleBroken:
        return rules.RuleBroken("fieldHasInvalidValue", message)

    scheme, separator, rest = origin.partition("://")
    scheme = scheme.lower()
    if not separator or scheme not in DEFAULT_PORTS:
        raise refused("The origin must be https://host or https://host:port")
    if not rest.isascii() or any(character in rest for character in "/?#@\\") or not rest.isprintable():
        raise refused(
            "The origin is a scheme, a host and an optional port, as the page's window.location.origin shows it: "
            "no path (not even /), query, fragment or user"
        )
    host, colon, port = rest.rpartition(":") if ":" in rest else (rest, "", "")
    host = host.lower()
    if len(host) > HOST_MAX_LENGTH or not HOST.fullmatch(host):
        raise refused("The origin's host must be a domain name (in its ASCII form) or an IPv4 address")
    number = DEFAULT_PORTS[scheme]
    if colon:
        if not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
            raise refused("The origin's port must be a number from 1 to 65535")
        number = int(port)
    if scheme == "http" and not (settings.WEBHOOK_ALLOW_LOOPBACK and host in LOOPBACK_HOSTS):
        raise refused("The origin must be https://")
    return f"{scheme}://{host}" if number == DEFAULT_PORTS[scheme] else f"{scheme}://{host}:{number}"


@transaction.atomic
def capture_session_create(
    *, merchant: Merchant, origin: str, namespace: str | None = None, description: str | None = None
) -> tuple[CaptureSession, str]:
    """Open a session for ``merchant`` that takes one card from a page of ``origin`` for
    ``CAPTURE_SESSION_LIFETIME_SECONDS``, to be tokenized in ``namespace`` with ``description`` as ``POST /tokens``
    would. Returns the session and its client secret, which is not stored (its hash is) and cannot be had again.

    The origin is normalised (``capture_origin_normalise``); the namespace and the description are judged by the
    rules of ``POST /tokens`` (``vault.rules``). Raises ``ValuesRefused`` (keywords ``origin``, ``namespace``,
    ``description``) and writes nothing when any is refused.
    """
    problems = []
    origin = _checked(problems, "origin", capture_origin_normalise, origin)
    if namespace is not None:
        _checked(problems, "namespace", rules.namespace, namespace)
    if description is not None:
        _checked(problems, "description", rules.description, description)
    if problems:
        raise ValuesRefused(problems)
    client_secret = secrets.token_urlsafe(32)
    now = timezone.now()
    session = CaptureSession.objects.create(
        merchant=merchant,
        origin=origin,
        namespace=namespace,
        description=description,
        client_secret_hash=CaptureSession.secret_hash(client_secret),
        created_at=now,
        expires_at=now + timedelta(seconds=settings.CAPTURE_SESSION_LIFETIME_SECONDS),
    )
    return session, client_secret


# ------------------------------------------------------------------------------------------------------------
# The card (the shopper's browser)
# ------------------------------------------------------------------------------------------------------------
def capture_card_problems(
    *, card_number: str, holder_name: str, expiry_month: int, expiry_year: int
) -> list[tuple[str, rules.RuleBroken]]:
    """What the card rules of ``POST /tokens`` (``vault.rules``) refuse in a card's details, by keyword (``expiry``
    for a month and year each valid but together in the past); empty when nothing is."""
    problems = []
    _checked(problems, "card_number", rules.card_number, card_number)
    _checked(problems, "holder_name", rules.holder_name, holder_name)
    month = _checked(problems, "expiry_month", rules.expiry_month, expiry_month)
    year = _checked(problems, "expiry_year", rules.expiry_year, expiry_year)
    if month is not None and year is not None:
        _checked(problems, "expiry", rules.expiry_not_past, month, year)
    return problems


def capture_session_submit(
    *,
    public_id: str,
    client_secret: str | None,
    card_number: str,
    holder_name: str,
    expiry_month: int,
    expiry_year: int,
    client_address: str = "",
) -> TokenizeResult:
    """Tokenize the card a shopper's browser sent to session ``public_id``, proving itself with ``client_secret``.

    Checked in this order, under a lock on the session's row, so that submissions arriving together are judged one
    after the other (one card per session, whatever the timing):

    1. an unknown session: ``NotFound``;
    2. a wrong client secret, or none (compared in constant time): a failed submission, audited as a failed
       authentication of the session from ``client_address``; ``NotAuthenticated``;
    3. the session's time is up: ``CaptureSessionExpired``;
    4. it has its card already: ``CaptureSessionCompleted``;
    5. it had its 5 failed submissions: ``CaptureSessionLocked``;
    6. a card the rules of ``POST /tokens`` refuse (``capture_card_problems``): a failed submission;
       ``ValuesRefused`` with the problems;
    7. ``card_tokenize`` for the session's merchant, in its namespace, with its description, as ``POST /tokens``
       does (its events and errors, ``namespaceCardLimitReached`` among them, which is no failed submission: the
       shopper did nothing wrong). The session records the token and the outcome, in the same transaction.

    A failed submission is committed although the call raises (the 5th locks the session, audited as
    ``capture_session.locked``). Returns the tokenize result: its outcome decides 201, 200 or 409 as for
    ``POST /tokens``.
    """
    with transaction.atomic():
        session = CaptureSession.objects.select_for_update().filter(public_id=public_id).first()
        if session is None:
            raise NotFound("The capture session does not exist")
        actor = Actor("anonymous", merchant=session.merchant, origin=client_address)
        if not _secret_matches(session, client_secret):
            audit_record(
                actor=actor,
                action="auth.failed",
                result=AuditLog.FAILURE,
                obj=session,
                detail={"reason": "wrong client secret" if client_secret else "no client secret"},
            )
            _failure_count(session, actor=actor)
            refusal = NotAuthenticated("The client secret is wrong")
        elif session.is_expired():
            raise CaptureSessionExpired("The capture session has expired; the merchant must open a new one")
        elif session.is_completed:
            raise CaptureSessionCompleted("The capture session has its card already")
        elif session.is_locked:
            raise CaptureSessionLocked(
                "The capture session had too many failed submissions; the merchant must open a new one"
            )
        elif problems := capture_card_problems(
            card_number=card_number, holder_name=holder_name, expiry_month=expiry_month, expiry_year=expiry_year
        ):
            _failure_count(session, actor=actor)
            refusal = ValuesRefused(problems)
        else:
            result = card_tokenize(
                merchant=session.merchant,
                card=Card(
                    number=card_number, holder_name=holder_name, expiry_month=expiry_month, expiry_year=expiry_year
                ),
                namespace=session.namespace,
                description=session.description,
            )
            _completed(session, result)
            return result
    # Raised once the failure is committed: an exception inside the block would roll it back with the rest.
    raise refusal


def _secret_matches(session: CaptureSession, client_secret: str | None) -> bool:
    # Hashes compared, in constant time: how much of a guess was right shows in no timing.
    matches = hmac.compare_digest(CaptureSession.secret_hash(client_secret or ""), session.client_secret_hash)
    return matches and bool(client_secret)


def _failure_count(session: CaptureSession, *, actor: Actor) -> None:
    """One more failed submission, up to the most a session takes (reached: locked, and audited)."""
    if session.is_locked:
        return
    session.failed_submissions += 1
    session.save(update_fields=["failed_submissions"])
    if session.is_locked:
        audit_record(
            actor=actor,
            action="capture_session.locked",
            result=AuditLog.FAILURE,
            obj=session,
            detail={"failedSubmissions": session.failed_submissions},
        )


def _completed(session: CaptureSession, result: TokenizeResult) -> None:
    """Record the session's card. The UPDATE is conditional on the session being open, so that the database, not
    this process's reading of it, keeps a second card out (the row lock makes it the only writer anyway)."""
    now = timezone.now()
    written = CaptureSession.objects.filter(pk=session.pk, completed_at__isnull=True).update(
        token=result.token, outcome=result.outcome.value, completed_at=now
    )
    if written != 1:
        raise CaptureSessionCompleted("The capture session has its card already")
    session.token, session.outcome, session.completed_at = result.token, result.outcome.value, now
