"""Media types of the API: strict JSON in, HAL JSON out. Named in REST_FRAMEWORK settings, so it imports no views."""

import json
from datetime import UTC, datetime

from rest_framework import renderers
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.parsers import BaseParser

from config.errors import BodyIsEmpty, BodyIsNotJson

class JsonParser(BaseParser):
    """``application/json`` (and any ``+json`` type); an empty or malformed body has its own error name."""

    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):
        raw = stream.read() if stream is not None else b""
        if not raw.strip():
            raise BodyIsEmpty()
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise BodyIsNotJson() from None


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
        except Exception:
            return renderers[0], renderers[0].media_type




def timestamp(value: datetime | None) -> str | None:
    """Date-times in API answers and webhook payloads: ISO 8601, UTC, whole seconds (``2035-05-01T12:00:00Z``)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if value else None
