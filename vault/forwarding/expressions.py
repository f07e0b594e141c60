"""The expressions of a forward: where in its path, header values and body the vault fills in the card.

An expression is a name between double braces, spaces around it allowed: ``{{ card.number }}``. The names
(DESIGN.md, "Forwarding"):

- ``card.number``, ``card.expiryMonth`` (two digits), ``card.expiryYear`` (four), ``card.expiryYear2`` (two),
  ``card.holderName``, ``card.billingAddress.<field>`` (a field of the token's billing address; empty when the
  token has none);
- ``networkToken.number``, ``networkToken.expiryMonth``, ``networkToken.expiryYear``, ``networkToken.cryptogram``,
  ``networkToken.eci`` (the request names the network token; its cryptogram is made for this forward);
- ``destination.credentials.<name>`` (a credential of the destination: the provider's API key, say).

A template is checked whole before anything is read or sent: ``{{`` that opens no well-formed expression, and a name
outside the list, are 400 ``bodyDoesNotMatchSchema`` with one validation error each, naming where it is
(``$.body``, ``$.path``, ``$.headers.<name>``) and the character it starts at, never what it says (a card number may
have been typed there by mistake). A literal ``{{`` has no escape: no payment provider's format needs one.

A value is escaped for where it lands, so that a card holder's name cannot break the provider's format or add to it:
in the body as the request's ``Content-Type`` says (JSON string content, form-urlencoded, XML; any other type as
it is), in the path percent-encoded, in a header value as it is but refused when it holds a line break (it would
start another header) or anything else a header cannot carry. Pure functions, no I/O: the service
(``vault.forwarding.sending``) reads the values.
"""

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import quote, quote_plus
from xml.sax.saxutils import escape as xml_escape

from core.errors import BodyDoesNotMatchSchema
from core.outbound.client import HEADER_VALUE

OPEN, CLOSE = "{{", "}}"
NAME = re.compile(r"\s*([A-Za-z][A-Za-z0-9]*(?:\.[A-Za-z0-9_-]+)+)\s*")

CARD_NAMES = frozenset({"card.number", "card.expiryMonth", "card.expiryYear", "card.expiryYear2", "card.holderName"})
BILLING_ADDRESS = "card.billingAddress."
BILLING_ADDRESS_FIELDS = ("address1", "address2", "address3", "postalCode", "city", "state", "countryCode")
NETWORK_TOKEN = "networkToken."
NETWORK_TOKEN_NAMES = frozenset(
    NETWORK_TOKEN + field for field in ("number", "expiryMonth", "expiryYear", "cryptogram", "eci")
)
CREDENTIALS = "destination.credentials."
KNOWN_NAMES = CARD_NAMES | NETWORK_TOKEN_NAMES | {BILLING_ADDRESS + field for field in BILLING_ADDRESS_FIELDS}

MESSAGES = {
    "expressionIsMalformed": "A {{ at character %d opens no expression: a name such as card.number, then }}",
    "expressionIsUnknown": "The expression at character %d is not one the vault knows",
    "credentialIsUnknown": "The expression at character %d names a credential the destination does not have",
    "networkTokenIsMissing": "The expression at character %d needs the request's networkToken",
    "headerValueIsInvalid": "The header value, once filled in, holds a line break, a control character or a "
    "character beyond Latin-1",
}


@dataclass(frozen=True)
class Expression:
    name: str
    at: int  # the character its {{ stands at, for the error that names it


@dataclass(frozen=True)
class Template:
    """A text cut into literal strings and the expressions between them."""

    json_path: str
    parts: tuple[str | Expression, ...]

    @property
    def expressions(self) -> list[Expression]:
        return [part for part in self.parts if isinstance(part, Expression)]

    def filled(self, values: Mapping[str, str], escape: Callable[[str], str]) -> str:
        return "".join(part if isinstance(part, str) else escape(values[part.name]) for part in self.parts)


@dataclass(frozen=True)
class RequestTemplate:
    """The parts of a forward that may hold expressions: its path, its header values (by header name) and its body."""

    path: Template
    headers: dict[str, Template]
    body: Template

    def templates(self) -> list[Template]:
        return [self.path, *self.headers.values(), self.body]

    @property
    def names(self) -> set[str]:
        return {expression.name for template in self.templates() for expression in template.expressions}


@dataclass(frozen=True)
class FilledRequest:
    """What is sent: it holds the card. Kept in memory for the call only, never logged (no repr)."""

    path: str
    headers: dict[str, str]
    body: str

    def __repr__(self) -> str:
        return "FilledRequest(…)"


def _error(name: str, json_path: str, at: int = 0) -> dict:
    message = MESSAGES[name] % at if "%d" in MESSAGES[name] else MESSAGES[name]
    return {"errorName": name, "message": message, "jsonPath": json_path}


def template_parse(text: str, *, json_path: str) -> tuple[Template, list[dict]]:
    """``text`` cut into a Template, and a validation error for each malformed or unknown expression in it."""
    parts: list[str | Expression] = []
    errors = []
    position = 0
    while (start := text.find(OPEN, position)) != -1:
        end = text.find(CLOSE, start + len(OPEN))
        match = NAME.fullmatch(text, start + len(OPEN), end) if end != -1 else None
        if match is None:
            errors.append(_error("expressionIsMalformed", json_path, start))
            position = start + len(OPEN)
            continue
        parts.append(text[position:start])
        name = match.group(1)
        if not (name in KNOWN_NAMES or (name.startswith(CREDENTIALS) and len(name) > len(CREDENTIALS))):
            errors.append(_error("expressionIsUnknown", json_path, start))
        parts.append(Expression(name, start))
        position = end + len(CLOSE)
    parts.append(text[position:])
    return Template(json_path, tuple(part for part in parts if part != "")), errors


def request_template(*, path: str, headers: Mapping[str, str], body: str) -> RequestTemplate:
    """The forward's path, header values and body parsed; raises BodyDoesNotMatchSchema naming every malformed or
    unknown expression at once."""
    errors = []

    def parsed(text: str, json_path: str) -> Template:
        template, found = template_parse(text, json_path=json_path)
        errors.extend(found)
        return template

    template = RequestTemplate(
        path=parsed(path, "$.path"),
        headers={name: parsed(value, f"$.headers.{name}") for name, value in headers.items()},
        body=parsed(body, "$.body"),
    )
    if errors:
        raise BodyDoesNotMatchSchema(validation_errors=errors)
    return template


def request_template_check(
    template: RequestTemplate, *, credential_names: Iterable[str], has_network_token: bool
) -> None:
    """Raise BodyDoesNotMatchSchema for each expression the forward cannot fill: a credential the destination does
    not have, a network token's value when the request names none."""
    credentials = {CREDENTIALS + name for name in credential_names}
    errors = []
    for part in template.templates():
        for expression in part.expressions:
            if expression.name.startswith(CREDENTIALS) and expression.name not in credentials:
                errors.append(_error("credentialIsUnknown", part.json_path, expression.at))
            elif expression.name in NETWORK_TOKEN_NAMES and not has_network_token:
                errors.append(_error("networkTokenIsMissing", part.json_path, expression.at))
    if errors:
        raise BodyDoesNotMatchSchema(validation_errors=errors)


def request_fill(template: RequestTemplate, values: Mapping[str, str]) -> FilledRequest:
    """The request with every expression replaced by its value from ``values`` (name → value), escaped for where it
    lands. Raises BodyDoesNotMatchSchema when a filled header value is no header value (``HEADER_VALUE``: a line
    break would start another header)."""
    headers = {name: part.filled(values, str) for name, part in template.headers.items()}
    if broken := [name for name, value in headers.items() if not HEADER_VALUE.fullmatch(value)]:
        raise BodyDoesNotMatchSchema(
            validation_errors=[_error("headerValueIsInvalid", f"$.headers.{name}") for name in broken]
        )
    content_type = next((value for name, value in headers.items() if name.lower() == "content-type"), "")
    return FilledRequest(
        path=template.path.filled(values, path_escape),
        headers=headers,
        body=template.body.filled(values, body_escape(content_type)),
    )


# ------------------------------------------------------------------------------------------------------------
# Escaping, by where a value lands
# ------------------------------------------------------------------------------------------------------------
def json_string_escape(value: str) -> str:
    """The content of a JSON string: the template writes the quotes (``"number": "{{ card.number }}"``)."""
    return json.dumps(value, ensure_ascii=False)[1:-1]


def form_escape(value: str) -> str:
    """A value of application/x-www-form-urlencoded: ``&``, ``=`` and ``+`` encoded, spaces as ``+``."""
    return quote_plus(value, safe="")


def xml_text_escape(value: str) -> str:
    """Text or an attribute's value in XML, quotes of either kind included."""
    return xml_escape(value, {'"': "&quot;", "'": "&apos;"})


def path_escape(value: str) -> str:
    """One path segment's worth: ``/``, ``?`` and ``#`` encoded, so a value cannot move the request elsewhere."""
    return quote(value, safe="")


def as_is(value: str) -> str:
    return value


def body_escape(content_type: str) -> Callable[[str], str]:
    """The escape for a body of ``content_type`` (a Content-Type header's value, parameters and case aside)."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type == "application/json" or media_type.endswith("+json"):
        return json_string_escape
    if media_type == "application/x-www-form-urlencoded":
        return form_escape
    if media_type in ("application/xml", "text/xml") or media_type.endswith("+xml"):
        return xml_text_escape
    return as_is
