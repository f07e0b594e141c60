"""Media types of the API: strict JSON in, HAL JSON out. Named in REST_FRAMEWORK settings, so it imports no views."""

import json
import re
from datetime import UTC, datetime

from rest_framework import renderers
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.parsers import BaseParser

from core.errors import BodyIsEmpty, BodyIsNotJson

# The only way a surrogate code point gets into a parsed body: a \uD800-\uDFFF escape (raw bytes must be UTF-8).
SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


class JsonParser(BaseParser):
    """``application/json`` (and any ``+json`` type); an empty or malformed body has its own error name.

    A body whose escapes leave an unpaired surrogate is not text (RFC 8259 8.2) and is refused like malformed JSON:
    nothing downstream could store it, and echoed back in an error's ``jsonPath`` it could not even be encoded.
    """

    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):
        raw = stream.read() if stream is not None else b""
        if not raw.strip():
            raise BodyIsEmpty()
        try:
            data = json.loads(raw)
            if SURROGATE_ESCAPE.search(raw):  # rare: only then pay for a second pass
                json.dumps(data, ensure_ascii=False).encode()
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
