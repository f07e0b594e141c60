"""Media types of the API: strict JSON in, HAL JSON out. Named in REST_FRAMEWORK settings, so it imports no views.

A body is bounded before it is parsed (DESIGN.md, "Security model"): by its size (``API_MAX_BODY_BYTES``, 413
``bodyIsTooLarge``, told by its Content-Length before a byte is read) and by how deep it nests arrays and objects
(``MAX_DEPTH``, 400 ``bodyIsNotJson``): json's parser recurses once a level, and a body of a thousand ``[`` was a
RecursionError, a 500. The nesting is found without parsing, in time linear in the body's length (``parse_json``).
"""

import json
import re
from datetime import UTC, datetime

from django.conf import settings
from rest_framework import renderers
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.parsers import BaseParser

from core.errors import BodyIsEmpty, BodyIsNotJson, BodyIsTooLarge

# The only way a surrogate code point gets into a parsed body: a \uD800-\uDFFF escape (raw bytes must be UTF-8).
SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")

# How deep a JSON text may nest arrays and objects. The API's deepest bodies nest three (a card's billing address, a
# batch's items); anything past this is an attack or a bug, and no schema of ours could take it anyway.
MAX_DEPTH = 32


class NestedTooDeep(ValueError):
    def __init__(self):
        super().__init__(f"The body nests arrays and objects more than {MAX_DEPTH} deep")


def _well_nested(depth: int) -> re.Pattern:
    """Balanced brackets at most ``depth`` deep: ``depth`` nested possessive groups, matched without backtracking."""
    pattern = b""
    for _ in range(depth):
        pattern = rb"(?:\[" + pattern + rb"\])*+"
    return re.compile(pattern)


# The nesting of a JSON text is that of its brackets outside strings. Once its escaped backslashes and quotes are
# gone, every quote left opens or closes a string, and the brackets between strings, ``{}`` written ``[]``, are
# judged by WELL_NESTED.
WELL_NESTED = _well_nested(MAX_DEPTH)
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))
_SQUARE = bytes.maketrans(b"{}", b"[]")


def parse_json(raw: bytes):
    """``raw`` parsed as JSON (UTF-8, or UTF-16 or 32 as json reads them), its nesting checked first. Raises
    ``NestedTooDeep`` for a text nesting arrays and objects more than ``MAX_DEPTH`` deep, ValueError or UnicodeError
    for one that is not JSON."""
    encoding = json.detect_encoding(raw)
    if not encoding.startswith("utf-8"):
        raw = raw.decode(encoding, "surrogatepass").encode("utf-8", "surrogatepass")
    outside_strings = raw.replace(b"\\\\", b"").replace(b'\\"', b"").split(b'"')[::2]
    brackets = b"".join(outside_strings).translate(_SQUARE, _NOT_BRACKETS)
    end = WELL_NESTED.match(brackets).end()
    if end < len(brackets):
        # Where the pattern stops at an opening bracket of balanced brackets, the group it opens closes (all before
        # it balance), deeper than the pattern goes.
        if brackets[end] == ord("[") and brackets.count(b"[") == brackets.count(b"]"):
            raise NestedTooDeep()
        raise ValueError("the brackets do not balance")
    return json.loads(raw)


def read_body(stream, request) -> bytes:
    """The body, refused with ``BodyIsTooLarge`` above ``API_MAX_BODY_BYTES``: before a byte is read when its
    Content-Length says so, else once one byte more than the limit has been read."""
    limit = settings.API_MAX_BODY_BYTES
    declared = request.META.get("CONTENT_LENGTH", "") if request is not None else ""
    if declared.isdigit() and int(declared) > limit:
        raise BodyIsTooLarge(limit)
    raw = stream.read(limit + 1) if stream is not None else b""
    if len(raw) > limit:
        raise BodyIsTooLarge(limit)
    return raw


class JsonParser(BaseParser):
    """``application/json`` (and any ``+json`` type); an empty or malformed body has its own error name.

    A body whose escapes leave an unpaired surrogate is not text (RFC 8259 8.2) and is refused like malformed JSON:
    nothing downstream could store it, and echoed back in an error's ``jsonPath`` it could not even be encoded.
    """

    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):
        raw = read_body(stream, (parser_context or {}).get("request"))
        if not raw.strip():
            raise BodyIsEmpty()
        try:
            data = parse_json(raw)
            if SURROGATE_ESCAPE.search(raw):  # rare: only then pay for a second pass
                json.dumps(data, ensure_ascii=False).encode()
        except NestedTooDeep as exc:
            raise BodyIsNotJson(str(exc)) from None
        except (ValueError, UnicodeError):
            raise BodyIsNotJson() from None
        return data


class HalJsonParser(JsonParser):
    media_type = "application/hal+json"


class HalJsonRenderer(renderers.JSONRenderer):
    media_type = "application/hal+json"


class JsonRenderer(renderers.JSONRenderer):
    media_type = "application/json"


class LenientContentNegotiation(DefaultContentNegotiation):
    """An Accept header we cannot satisfy gets HAL JSON rather than a 406: every client of ours reads JSON."""

    def select_renderer(self, request, renderers, format_suffix=None):
        try:
            return super().select_renderer(request, renderers, format_suffix)
        except Exception:  # noqa: BLE001 - whatever the Accept header broke, the first renderer answers
            return renderers[0], renderers[0].media_type


def timestamp(value: datetime | None) -> str | None:
    """Date-times in API answers and webhook payloads: ISO 8601, UTC, whole seconds (``2035-05-01T12:00:00Z``)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if value else None
