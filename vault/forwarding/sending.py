"""A forward: the merchant's request, with the card filled in, sent to one of its destinations; the provider's answer
back with every card number masked (DESIGN.md, "Forwarding").

The filled-in request lives in memory for the call and nowhere else: not in the database (a ``Forward`` row keeps
the method, the path as the merchant wrote it, masked, the status and the duration), not in the log, not in an
exception. The request is sent outside any transaction (a provider may take 30 s) by the one outbound client
(``core.outbound``: the connect-time address check, no redirects, the deadline, the answer's cap); what it did is
written afterwards, the row, the audit row and the token's use in one transaction.
"""

import re
import time
from collections import defaultdict
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from django.conf import settings
from django.db import transaction

from core import outbound
from core.audit import Actor, audit_record
from core.cards import masked_card_numbers
from core.errors import BodyDoesNotMatchSchema, BusinessRuleError, DestinationUnavailable
from core.models import AuditLog
from merchants.models import Merchant
from vault import selectors
from vault.forwarding import expressions
from vault.forwarding.destinations import destination_credentials, destination_get
from vault.forwarding.network_tokens import NetworkTokenCard, network_token_card
from vault.keys import key_ring
from vault.metrics import FORWARDED, forward_result
from vault.models import Forward, ForwardDestination, Token
from vault.services.tokens import token_use

# A credential filled in is masked wherever the answer quotes it; one shorter than this (a "1" flag) would star out
# every digit of the answer instead.
CREDENTIAL_MASKED_FROM_LENGTH = 6
CREDENTIAL_MASK = "********"
PATH_MAX_LENGTH = Forward._meta.get_field("path").max_length
NOT_PRINTABLE_ASCII = re.compile(r"[^\x21-\x7e]")


def destination_disabled() -> BusinessRuleError:
    return BusinessRuleError(
        "destinationDisabled", "Staff disabled this destination: forwards to it are refused", status_code=422
    )


@dataclass(frozen=True)
class ForwardAnswer:
    """The destination's answer, masked: what the merchant gets."""

    forward: Forward
    status: int
    headers: dict[str, str]
    body: str
    body_truncated: bool


def forward_url(destination_url: str, path: str) -> str:
    """``path`` (a path, a query, or both) appended to the destination's URL; BodyDoesNotMatchSchema at ``$.path``
    when the result would leave the destination's prefix (another scheme, host or port, a dot segment, encoded or
    not, a backslash, a fragment) or is no URL (spaces, control or non-ASCII characters: a value filled in is
    percent-encoded, the merchant's own text is not)."""
    url = destination_url.rstrip("/") + path if path[:1] == "/" else destination_url + path
    target, base = urlsplit(url), urlsplit(destination_url)
    prefix = base.path.rstrip("/")
    segments = unquote(target.path).replace("\\", "/").split("/")
    if (
        (path and path[0] not in "/?")
        or (target.scheme, target.netloc) != (base.scheme, base.netloc)
        or not (target.path == prefix or target.path.startswith(prefix + "/"))
        or any(segment in (".", "..") for segment in segments)
        or "\\" in path
        or "#" in url
        or NOT_PRINTABLE_ASCII.search(url)
    ):
        raise BodyDoesNotMatchSchema(
            validation_errors=[
                {
                    "errorName": "pathOutsideDestination",
                    "message": "The path must start with / or ? and stay under the destination's URL: no dot "
                    "segments, backslashes or fragments",
                    "jsonPath": "$.path",
                }
            ]
        )
    return url


def _card_values(token: Token) -> dict[str, str]:
    """The card's values. The number is decrypted whether the template names it or not: the answer is searched for
    it (a provider may echo it inside a longer reference, where the Luhn scan would not see it)."""
    values = {
        "card.number": key_ring().decrypt(
            token.key_version, token.pan_ciphertext, associated_data=token.associated_data()
        )
    }
    month, year = token.expiry_month or 0, token.expiry_year or 0
    values["card.expiryMonth"] = f"{month:02d}"
    values["card.expiryYear"] = f"{year:04d}"
    values["card.expiryYear2"] = f"{year % 100:02d}"
    values["card.holderName"] = token.card_holder_name
    address = token.billing_address or {}
    for field in expressions.BILLING_ADDRESS_FIELDS:
        values[expressions.BILLING_ADDRESS + field] = str(address.get(field) or "")
    return values


def _network_token_values(card: NetworkTokenCard) -> dict[str, str]:
    return {
        "networkToken.number": card.number,
        "networkToken.expiryMonth": f"{card.expiry_month:02d}",
        "networkToken.expiryYear": f"{card.expiry_year:04d}",
        "networkToken.cryptogram": card.cryptogram,
        "networkToken.eci": card.eci,
    }


def _enabled_destination(*, merchant: Merchant, destination_id: str) -> ForwardDestination:
    destination = destination_get(merchant=merchant, public_id=destination_id)
    if not destination.is_enabled:
        raise destination_disabled()
    return destination


def card_forward(
    *,
    merchant: Merchant,
    actor: Actor,
    destination_id: str,
    token: str,
    method: str = "POST",
    path: str = "",
    headers: dict[str, str] | None = None,
    body: str = "",
    network_token_id: str | None = None,
) -> ForwardAnswer:
    """Send the merchant's request to its destination ``destination_id`` with the card of ``token`` (href or
    tokenId) filled in, and return the destination's answer with every card number masked (and the credentials
    filled in).

    Checks everything before anything is read or sent, and sends nothing when a check fails: the expressions
    (BodyDoesNotMatchSchema naming each bad one), the destination (NotFound; ``destinationDisabled``), the
    credentials and network token the expressions need, the token (NotFound), the path (``pathOutsideDestination``).
    A network token named by ``network_token_id`` gets a fresh cryptogram from the networks app
    (``network_token_card``, its own errors and audit row).

    Once sent, writes in one transaction a ``Forward`` row, a ``token.forward`` audit row (key, token, destination,
    method, status, duration) and a use of the token (``token_use``: the live expiry extension). A destination that
    gives no answer is written the same way, as a failure, and raises ``DestinationUnavailable`` (502, or 504 after
    ``FORWARD_TIMEOUT_SECONDS``). An answer of more than ``FORWARD_MAX_ANSWER_BYTES`` is cut there
    (``body_truncated``): the provider acted, so its status and headers must reach the merchant. Every forward sent
    is counted by what the destination did (``tokenvault_forwards_total``).
    """
    headers = headers or {}
    template = expressions.request_template(path=path, headers=headers, body=body)
    destination = _enabled_destination(merchant=merchant, destination_id=destination_id)
    names = template.names
    uses_credentials = any(name.startswith(expressions.CREDENTIALS) for name in names)
    credentials = destination_credentials(destination) if uses_credentials else {}
    expressions.request_template_check(template, credential_names=credentials, has_network_token=bool(network_token_id))
    card_token = selectors.token_named_get(merchant=merchant, value=token)
    # The path checked with every value a plain letter first: a path that leaves the prefix costs no decryption,
    # no cryptogram and no use of the token.
    forward_url(destination.url, template.path.filled(defaultdict(lambda: "x"), expressions.as_is))
    values = _card_values(card_token)
    values.update({expressions.CREDENTIALS + name: secret for name, secret in credentials.items()})
    network_token = None
    if network_token_id:
        network_token = network_token_card(
            merchant=merchant, token=card_token, network_token_id=network_token_id, actor=actor
        )
        values.update(_network_token_values(network_token))
    filled = expressions.request_fill(template, values)
    url = forward_url(destination.url, filled.path)
    payload = filled.body.encode()
    if len(payload) > settings.FORWARD_MAX_BODY_BYTES:
        raise BodyDoesNotMatchSchema(
            validation_errors=[
                {
                    "errorName": "stringIsTooLong",
                    "message": f"The body, once filled in, is larger than {settings.FORWARD_MAX_BODY_BYTES:,} bytes",
                    "jsonPath": "$.body",
                }
            ]
        )
    record = Forward(
        merchant=merchant,
        destination=destination,
        token=card_token,
        network_token_id=network_token_id or "",
        method=method,
        path=masked_card_numbers(path)[:PATH_MAX_LENGTH],
    )
    started = time.monotonic()
    try:
        answer = outbound.send(
            method=method,
            url=url,
            headers=filled.headers,
            body=payload or None,
            timeout=settings.FORWARD_TIMEOUT_SECONDS,
            max_body=settings.FORWARD_MAX_ANSWER_BYTES,
        )
    except outbound.TransportError as exc:
        record.duration_ms = round((time.monotonic() - started) * 1000)
        record.error = DestinationUnavailable.error_name
        _forward_record(record, actor=actor, failure=str(exc))
        FORWARDED["timeout" if isinstance(exc, outbound.OutboundTimeout) else "unreachable"].inc()
        raise DestinationUnavailable(timed_out=isinstance(exc, outbound.OutboundTimeout)) from None
    record.duration_ms = round((time.monotonic() - started) * 1000)
    record.status_code = answer.status
    _forward_record(record, actor=actor)
    FORWARDED[forward_result(answer.status)].inc()
    also = (values["card.number"], network_token.number) if network_token else (values["card.number"],)

    def masked(text: str) -> str:
        # The credentials too: "never shown again", even when a provider quotes its API key in an error.
        for secret in credentials.values():
            if len(secret) >= CREDENTIAL_MASKED_FROM_LENGTH:
                text = text.replace(secret, CREDENTIAL_MASK)
        return masked_card_numbers(text, also=also)

    return ForwardAnswer(
        forward=record,
        status=answer.status,
        headers={name: masked(value) for name, value in answer.headers.items()},
        body=masked(answer.body.decode("utf-8", "replace")),
        body_truncated=answer.truncated,
    )


@transaction.atomic
def _forward_record(record: Forward, *, actor: Actor, failure: str = "") -> None:
    """The forward's row, its audit row and its use of the token (a failed forward uses the token too: the card
    was filled in)."""
    record.save()
    token_use(token=record.token, reason="forward")
    detail = {
        "forward": record.public_id,
        "destination": record.destination.public_id,
        "method": record.method,
        "status": record.status_code,
        "durationMs": record.duration_ms,
    }
    if record.network_token_id:
        detail["networkToken"] = record.network_token_id
    if failure:
        detail.update(error=record.error, reason=failure)
    audit_record(
        actor=actor,
        action="token.forward",
        obj=record.token,
        result=AuditLog.FAILURE if failure else AuditLog.SUCCESS,
        detail=detail,
    )


def card_forward_refused(*, actor: Actor, reason: str, status: int) -> AuditLog:
    """Audit a forward refused before anything was sent (no key, scope, rate limit, a bad template, an unknown
    token or destination): one failure row with ``reason`` and the answer's ``status``, counted as refused. The
    request's values are not written down (anything may be typed there, a card number too). Call it once the
    attempt's own transactions are rolled back."""
    FORWARDED["refused"].inc()
    return audit_record(
        actor=actor,
        action="token.forward",
        result=AuditLog.FAILURE,
        object_type=Token.audit_type,
        detail={"reason": reason, "status": status},
    )
