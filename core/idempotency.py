"""``Idempotency-Key``: every POST of the API, sent again with the same key, is served once (DESIGN.md, "Idempotency").

``ApiView.dispatch`` (``core.api``) runs it for every POST of every app, between the key's checks and the view:

1. **Claim** (``idempotent_request_claim``): one INSERT of the (merchant, key) row, committed on its own before any
   work; the unique constraint decides between concurrent requests, never Python. A request that finds the row
   already there gets the stored answer when it is the same request (SHA-256 of method, path and body) and that
   answer is ready, ``requestInProgress`` (409) while the first still runs, ``idempotencyKeyReused`` (422) when it
   is another request.
2. **Work**: the view, whose services commit their own transactions (no ``ATOMIC_REQUESTS``).
3. **Finish** (``idempotent_request_finish``): once the view answered, and so once its transactions committed, the
   answer (status, body and the headers that matter) is stored encrypted. A 5xx answer or an exception instead
   **releases** the key (``idempotent_request_release``): nothing was done, or nothing that must not be done again,
   and the retry does the work. A 4xx answer is kept like a 2xx: the same request would be refused the same way.
   So is a 504: a service behind us (a forward's destination, a card network) did not answer in time and may have
   acted, so a retry under the key must not ask it again (a forward is not sent twice); a new key asks anew.

A process that dies between claim and finish leaves the claim running. Its repeat waits (409) until the claim is
``IDEMPOTENCY_ABANDONED_AFTER`` seconds old, longer than any request takes, and then takes it over and does the work:
the work the dead process committed, if any, is then done again, the one case where it can be (the tokenize of the
same card again is a 200, a network token asked again is a second one). The window is the time between the view's
last commit and the finish's UPDATE, which the same process runs next.

Keys live ``IDEMPOTENCY_KEY_TTL`` seconds (24 hours) from their first request; an expired key is free again, and
``idempotent_requests_purge_expired`` (a periodic task) deletes them in batches.
"""

import base64
import hashlib
import json
import logging
import re
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpResponse
from django.utils import timezone

from core import crypto
from core.cards import holds_card_number
from core.db import RowInsert
from core.errors import VALIDATION_MESSAGES, BodyDoesNotMatchSchema, IdempotencyKeyReused, RequestInProgress
from core.models import IdempotentRequest

logger = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
KEY_MAX_LENGTH = 255
# Printable ASCII. HTTP drops the spaces around a header's value, so the published pattern has none at either end.
KEY_CHARACTERS = re.compile(r"[ -~]+")
KEY_PATTERN = "^[!-~]([ -~]*[!-~])?$"
# The headers of an answer a repeat gets back with its status and body; the others are the server's of the moment.
KEPT_HEADERS = ("Content-Type", "Location", "Cache-Control")
# The one failure of ours kept like a success: the service behind us may have acted (see the module's docstring).
KEPT_FAILURES = {504}
# Set on an answer served from the stored one, as the payment APIs that honour the header do.
REPLAYED_HEADER = "Idempotent-Replayed"

_claim_insert = RowInsert(IdempotentRequest, ignore_conflicts=True)


@dataclass
class Claim:
    """A request's hold on its key: ``answer`` is the stored answer of the request it repeats (nothing to do), else
    the request holds the key and owes it a finish or a release."""

    row: IdempotentRequest
    answer: HttpResponse | None = None


# ------------------------------------------------------------------------------------------------------------
# The HTTP edge: what ApiView.dispatch calls
# ------------------------------------------------------------------------------------------------------------
def claim_for(request) -> Claim | None:
    """The claim of a POST that carries the header, for its merchant; None for any other request. Raises
    ``BodyDoesNotMatchSchema`` (400) for a malformed key, what the body's parser raises for a body that is not JSON,
    ``IdempotencyKeyReused`` (422) and ``RequestInProgress`` (409)."""
    if request.method != "POST" or HEADER not in request.headers or getattr(request.user, "pk", None) is None:
        return None
    key = request.headers[HEADER]
    _check_key(key)
    return idempotent_request_claim(
        merchant_id=request.user.pk,
        key=key,
        fingerprint=request_fingerprint(method=request.method, path=request.path, body=_body_of(request)),
    )


def _check_key(key: str) -> None:
    if not key:
        name, message = "fieldIsEmpty", f"The {HEADER} header must not be empty"
    elif len(key) > KEY_MAX_LENGTH:
        name, message = "stringIsTooLong", f"The {HEADER} header has at most {KEY_MAX_LENGTH} characters"
    elif not KEY_CHARACTERS.fullmatch(key):
        name, message = "stringFailedRegexCheck", f"The {HEADER} header must be printable ASCII characters"
    elif holds_card_number(key):  # the key is kept in clear: never a card number
        name, message = "fieldContainsCardNumber", VALIDATION_MESSAGES["fieldContainsCardNumber"]
    else:
        return
    raise BodyDoesNotMatchSchema(
        validation_errors=[{"errorName": name, "message": message, "jsonPath": f"$.headers.{HEADER}"}]
    )


def _body_of(request) -> str:
    """The body as the view will read it: the same JSON value is the same body, however its client spaced it or
    ordered its keys (parsing here costs nothing more: the view reads ``request.data``, parsed once). No body is
    ``""``, which no JSON text is."""
    if request.stream is None:
        return ""
    return json.dumps(request.data, sort_keys=True, separators=(",", ":"))


def request_fingerprint(*, method: str, path: str, body: str) -> str:
    """What makes two requests the same request: SHA-256 of the method, the path and the body."""
    return hashlib.sha256(f"{method}\n{path}\n{body}".encode()).hexdigest()


def settle(claim: Claim, response) -> None:
    """After the view answered (and its transactions committed): keep the answer, or release the key for a 5xx."""
    if (response.status_code >= 500 and response.status_code not in KEPT_FAILURES) or response.streaming:
        idempotent_request_release(claim=claim)
        return
    try:
        if hasattr(response, "render"):
            response.render()
        headers = {name: response[name] for name in KEPT_HEADERS if response.has_header(name)}
        idempotent_request_finish(claim=claim, status=response.status_code, headers=headers, body=response.content)
    except Exception:  # the answer is served all the same; the key is released for the retry
        logger.exception("the answer of an idempotent request could not be stored; its key is released")
        idempotent_request_release(claim=claim)


# ------------------------------------------------------------------------------------------------------------
# The services: claim, finish, release, purge
# ------------------------------------------------------------------------------------------------------------
def idempotent_request_claim(*, merchant_id: int, key: str, fingerprint: str) -> Claim:
    """Claim ``key`` for the merchant's request ``fingerprint``, or find the answer of that request.

    Writes one row (its own statement, committed at once outside a transaction), or takes over an expired key or an
    abandoned claim with one conditional UPDATE. Raises ``IdempotencyKeyReused`` when the key is held for another
    request, ``RequestInProgress`` while the same request runs elsewhere.
    """
    for _ in range(3):  # each turn loses a race only to a request that changed the row meanwhile
        now = timezone.now()
        fresh = {"fingerprint": fingerprint, "created_at": now, "expires_at": now + _ttl()}
        row = IdempotentRequest(
            merchant_id=merchant_id, key=key, state=IdempotentRequest.RUNNING, claimed_at=now, **fresh
        )
        if _claim_insert(row):
            return Claim(row=row)
        held = IdempotentRequest.objects.filter(merchant_id=merchant_id, key=key).first()
        if held is None:
            continue  # purged since the INSERT
        if held.expires_at <= now:
            if _take_over(
                held, now=now, fresh={**fresh, "status": None, "answer_ciphertext": None, "key_version": None}
            ):
                return Claim(row=held)
            continue
        if held.fingerprint != fingerprint:
            raise IdempotencyKeyReused()
        if held.state == IdempotentRequest.DONE:
            return Claim(row=held, answer=_answer(held))
        if held.claimed_at > now - timedelta(seconds=settings.IDEMPOTENCY_ABANDONED_AFTER):
            raise RequestInProgress()
        if _take_over(held, now=now):
            logger.warning("an abandoned idempotent request was taken over after %s", now - held.claimed_at)
            return Claim(row=held)
    raise RequestInProgress()


def _take_over(held: IdempotentRequest, *, now, fresh: dict | None = None) -> bool:
    """Make ``held`` this request's running claim, if nobody changed it since it was read."""
    changes = {"state": IdempotentRequest.RUNNING, "claimed_at": now, **(fresh or {})}
    taken = IdempotentRequest.objects.filter(pk=held.pk, state=held.state, claimed_at=held.claimed_at).update(**changes)
    if taken:
        for name, value in changes.items():
            setattr(held, name, value)
    return bool(taken)


def _owned(claim: Claim):
    row = claim.row
    return IdempotentRequest.objects.filter(pk=row.pk, state=IdempotentRequest.RUNNING, claimed_at=row.claimed_at)


def idempotent_request_finish(*, claim: Claim, status: int, headers: dict[str, str], body: bytes) -> None:
    """Store the answer of the claimed request, encrypted and bound to its merchant and key, and mark it done. Writes
    nothing when the claim was taken over meanwhile (this process was taken for dead): the other request's answer
    wins."""
    row = claim.row
    plain = json.dumps({"status": status, "headers": headers, "body": base64.b64encode(body).decode()})
    version, ciphertext = crypto.key_ring().encrypt(plain, associated_data=row.associated_data())
    _owned(claim).update(state=IdempotentRequest.DONE, status=status, key_version=version, answer_ciphertext=ciphertext)


def idempotent_request_release(*, claim: Claim) -> None:
    """Free the key of a request that failed (5xx, an exception): its retry does the work. Keeps a claim another
    request has taken over."""
    try:
        _owned(claim).delete()
    except DatabaseError:  # the database is what failed: the claim is left to be taken over as abandoned
        logger.exception("the claim of an idempotent request could not be released")


def _answer(row: IdempotentRequest) -> HttpResponse:
    stored = json.loads(
        crypto.key_ring().decrypt(row.key_version, bytes(row.answer_ciphertext), associated_data=row.associated_data())
    )
    response = HttpResponse(base64.b64decode(stored["body"]), status=stored["status"])
    if "Content-Type" not in stored["headers"]:
        del response["Content-Type"]
    for name, value in stored["headers"].items():
        response[name] = value
    response[REPLAYED_HEADER] = "true"
    return response


def idempotent_requests_purge_expired(*, batch_size: int = 1000) -> int:
    """Delete the keys whose 24 hours have passed, a batch per statement; returns how many. A key taken over since it
    was selected (its expiry moved on) is kept: the DELETE checks the expiry again."""
    purged = 0
    while True:
        now = timezone.now()
        batch = list(
            IdempotentRequest.objects.filter(expires_at__lte=now)
            .order_by("pk")
            .values_list("pk", flat=True)[:batch_size]
        )
        if batch:
            purged += IdempotentRequest.objects.filter(pk__in=batch, expires_at__lte=now).delete()[0]
        if len(batch) < batch_size:
            return purged


def _ttl() -> timedelta:
    return timedelta(seconds=settings.IDEMPOTENCY_KEY_TTL)
