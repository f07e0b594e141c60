"""Request and response bodies of ``POST /forward`` (DESIGN.md, "Forwarding").

The fields check what can be checked of the merchant's text as written: lengths, header names (an HTTP token, and
none of those the outbound client sets itself), header values free of line breaks. The expressions inside the path,
the header values and the body are ``vault.forwarding.expressions``' to judge, and their values' once filled in.
"""

import re

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.fields import ErrorDetail

from core.api import StrictSerializer, StringField, error
from core.errors import VALIDATION_MESSAGES
from core.outbound.client import HEADER_NAME, HEADER_VALUE, METHODS, OWN_HEADERS
from vault.forwarding.sending import PATH_MAX_LENGTH

MAX_HEADERS = 50
# core.outbound.client.HEADER_VALUE and what forward_url takes of a path, as JSON Schema patterns: the published schema
# says what the API takes (a fuzzer trusting it must not be refused).
HEADER_VALUE_PATTERN = "^[\\t\\u0020-\\u007e\\u0080-\\u00ff]*$"
# A path: empty, or / or ? then printable ASCII but # and a backslash, and expressions (spaces inside the braces).
PATH_PATTERN = '^([/?]([!"$-\\[\\]-~]|\\{\\{ *[A-Za-z0-9_.-]+ *\\}\\})*)?$'
HEADER_VALUE_MAX_LENGTH = 8192
EXPRESSIONS_HELP = (
    "Expressions between double braces are filled in by the vault: `{{ card.number }}`, `{{ card.expiryMonth }}`, "
    "`{{ card.expiryYear }}`, `{{ card.expiryYear2 }}`, `{{ card.holderName }}`, `{{ card.billingAddress.<field> }}`, "
    "`{{ networkToken.number }}`, `{{ networkToken.expiryMonth }}`, `{{ networkToken.expiryYear }}`, "
    "`{{ networkToken.cryptogram }}`, `{{ networkToken.eci }}`, `{{ destination.credentials.<name> }}`."
)


@extend_schema_field({"type": "string", "enum": sorted(METHODS)})
class MethodField(StringField):
    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if value not in METHODS:
            raise error("fieldHasInvalidValue")
        return value


@extend_schema_field(
    {
        "type": "object",
        "maxProperties": MAX_HEADERS,
        "additionalProperties": {
            "type": "string",
            "maxLength": HEADER_VALUE_MAX_LENGTH,
            "pattern": "^[^\\r\\n\\u0000]*$",
        },
    }
)
class HeadersField(serializers.DictField):
    """Header name → value. A name must be an HTTP token and not one the client sets (Host, Content-Length, …); a
    value must hold no line break or control character."""

    child = StringField(max_length=HEADER_VALUE_MAX_LENGTH, allow_blank=True)
    default_error_messages = {"not_a_dict": VALIDATION_MESSAGES["fieldMustBeObject"]}

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        errors = {}
        if len(value) > MAX_HEADERS:
            raise serializers.ValidationError(f"At most {MAX_HEADERS} headers", code="fieldHasInvalidValue")
        for name, text in value.items():
            if not HEADER_NAME.fullmatch(name) or name.lower() in OWN_HEADERS:
                errors[name] = [
                    ErrorDetail("The header name is not one a forward may set", code="fieldHasInvalidValue")
                ]
            elif not HEADER_VALUE.fullmatch(text):
                errors[name] = [
                    ErrorDetail("The header value holds a line break or control character", code="fieldHasInvalidValue")
                ]
        if errors:
            raise serializers.ValidationError(errors)
        return value


@extend_schema_field({"type": "string", "pattern": PATH_PATTERN})
class PathField(StringField):
    """What the forward appends to the destination's URL, as written; ``forward_url`` judges it again once filled
    in (dot segments, the destination's prefix)."""

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if not re.fullmatch(PATH_PATTERN, value):
            raise error("stringFailedRegexCheck")
        return value


class ForwardInput(StrictSerializer):
    destination = StringField(max_length=40, help_text="The id of one of your forward destinations")
    token = StringField(max_length=2048, help_text="The card token to fill in: its href or its tokenId")
    networkToken = StringField(
        required=False,
        max_length=64,
        help_text="The tokenId of an ACTIVE network token of the same card, for `{{ networkToken.* }}` (a "
        "cryptogram is made for this forward)",
    )
    method = MethodField(required=False, default="POST")
    path = PathField(
        required=False,
        allow_blank=True,
        max_length=PATH_MAX_LENGTH,
        help_text="Appended to the destination's URL: starts with / or ?, stays under its prefix. " + EXPRESSIONS_HELP,
    )
    headers = HeadersField(
        required=False,
        help_text="The request's headers, by name (an HTTP token; Host, Content-Length, Transfer-Encoding, Connection "
        "and the like are the vault's to set). " + EXPRESSIONS_HELP,
    )
    body = StringField(
        required=False,
        allow_blank=True,
        max_length=settings.FORWARD_MAX_BODY_BYTES,
        help_text="The request's body, escaped for its Content-Type header when filled in (JSON, form, XML). "
        + EXPRESSIONS_HELP,
    )


class ForwardOutput(serializers.Serializer):
    status = serializers.IntegerField(help_text="The destination's status code")
    headers = serializers.DictField(
        child=serializers.CharField(), help_text="The destination's headers, names in lower case, card numbers masked"
    )
    body = serializers.CharField(help_text="The destination's body (UTF-8), card numbers masked")
    bodyTruncated = serializers.BooleanField(help_text="The destination's body was longer than 1 MB: this is its start")
